"""docs/benchmarks.md has sections owned by different benchmarks (benchmarks/_docs.py): a full
benchmarks/run.py write must not drop the admin benchmark's section, and replacing one section
leaves the rest of the page as it was."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import _docs

A = ("<!-- a: begin -->", "<!-- a: end -->")
B = ("<!-- b: begin -->", "<!-- b: end -->")
PAGE = "# Benchmarks\n\nintro\n\n## Method\n\nhow\n"


def test_splice_inserts_before_method_then_replaces(tmp_path: Path) -> None:
    page = tmp_path / "benchmarks.md"
    page.write_text(PAGE)
    _docs.splice(page, *A, "## A\n\nfirst\n")
    assert page.read_text() == (
        "# Benchmarks\n\nintro\n\n<!-- a: begin -->\n## A\n\nfirst\n<!-- a: end -->\n\n"
        "## Method\n\nhow\n"
    )
    _docs.splice(page, *A, "## A\n\nsecond")
    text = page.read_text()
    assert _docs.section_of(text, *A) == "## A\n\nsecond"
    assert text.endswith("<!-- a: end -->\n\n## Method\n\nhow\n")
    assert text.count("<!-- a: begin -->") == 1


def test_splice_into_a_new_page(tmp_path: Path) -> None:
    page = tmp_path / "new.md"
    _docs.splice(page, *B, "b")
    assert page.read_text() == "# Benchmarks\n\n<!-- b: begin -->\nb\n<!-- b: end -->\n"


def test_rewrite_keeps_sections_the_new_text_lacks(tmp_path: Path) -> None:
    page = tmp_path / "benchmarks.md"
    page.write_text(PAGE)
    _docs.splice(page, *A, "old a")
    _docs.splice(page, *B, "old b")
    new = (
        "# Benchmarks\n\nnew intro\n\n<!-- b: begin -->\nnew b\n<!-- b: end -->\n\n## Method\n\nx\n"
    )
    _docs.rewrite(page, new, (A, B))
    text = page.read_text()
    assert "new intro" in text
    assert _docs.section_of(text, *A) == "old a"  # kept
    assert _docs.section_of(text, *B) == "new b"  # the new text's own
    assert text.index("<!-- a: end -->") < text.index("## Method")


def test_a_busy_machine_is_noted_on_the_page() -> None:
    import run

    busy = {"loadavg": "6.68 5.98 3.95", "loadavg_after": "8.24 7.74 5.63", "nproc": "2"}
    note = "\n".join(run.contention_note(busy))
    assert "**Shared machine.**" in note
    assert "6.68 before the run and 8.24 after it, above the 2 CPUs" in note
    idle = {"loadavg": "0.26 0.79 1.26", "loadavg_after": "1.10 0.90 1.00", "nproc": "2"}
    assert run.contention_note(idle) == []
