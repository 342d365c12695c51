"""What users read cites documents they can get: the public specifications by name and clause,
never internal working notes, their file paths or tracker numbers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Internal references a user cannot follow: the requirement drafts ("seed 000"), the internal
# notes and their paths, tracker numbers ("issue 3"), and the internal spec digests.
FORBIDDEN = re.compile(
    r"seed 0\d|\bthe seeds?\b|shared/|(?-i:ARCHITECTURE\.md)|\bissues? #?\d|spec digest|\bdigest §"
    r"|cat-bip-apdu|scws-admin-acp|dm-bcast-gba|push-pap-sip",
    re.IGNORECASE,
)
TEXT = {".md", ".py", ".html", ".css", ".toml", ".txt", ".js"}


def _published() -> list[Path]:
    files = [ROOT / "README.md"]
    for top in ("docs", "src", "benchmarks"):
        files += sorted(
            p for p in (ROOT / top).rglob("*") if p.suffix in TEXT and "egg-info" not in str(p)
        )
    return files


def _hits(text: str) -> list[str]:
    return [
        f"{n}: {line.strip()}"
        for n, line in enumerate(text.splitlines(), 1)
        if FORBIDDEN.search(line)
    ]


@pytest.mark.parametrize("path", _published(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_internal_citation(path: Path) -> None:
    assert _hits(path.read_text(encoding="utf-8", errors="replace")) == []


@pytest.mark.parametrize(
    "line",
    [
        "The operator's side of SCWS (seed 000 §11, seed 001 §5)",
        "see `shared/spec/scws-admin-acp.md` §2.5",
        "The map in `shared/ARCHITECTURE.md` places the next pieces",
        "## TLS (issue 3)",
        "ENVELOPE data is one short APDU (spec digest §3.9).",
        "The seeds make card RAM the scarce resource.",
    ],
)
def test_the_check_catches_internal_citations(line: str) -> None:
    assert _hits(line)


def test_public_citations_pass() -> None:
    assert not _hits("OMA-TS-Smartcard_Web_Server §11.1.1.1 requires TLS_PSK_WITH_AES_128_CBC_SHA")
    assert not _hits("Package #0's digest is dm.auth.keyed_digest; random.seed(seed)")
