"""`openscws content put --cache-control` and `openscws content cache-policy`: the cache policy
goes into the card image and out on the wire as Cache-Control."""

from __future__ import annotations

from pathlib import Path

import pytest

from openscws.cli import main
from openscws.scws.apps import Request, Response
from openscws.scws.site import Site
from openscws.store import CardImage


def _served_policy(image: Path, path: str) -> str:
    site = Site(CardImage.open(image), secret=b"s" * 32)
    response = site.prepare(Request("GET", path, path, "", ()), 1e9)
    assert isinstance(response, Response)
    return dict(response.headers)["Cache-Control"]


def test_resource_policy_and_site_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "card"
    where = ["--data-dir", str(image)]
    assert main(["init", *where, "--no-demo", "-q"]) == 0
    page = tmp_path / "page.html"
    page.write_bytes(b"<p>page</p>")
    logo = tmp_path / "logo.png"
    logo.write_bytes(b"\x89PNG")
    assert main(["content", "put", str(page), "/page.html", *where]) == 0
    put = ["content", "put", str(logo), "/logo.png", "--cache-control", "Public, max-age=86400"]
    assert main([*put, *where]) == 0
    capsys.readouterr()
    assert main(["content", "ls", *where]) == 0
    listing = capsys.readouterr().out
    assert "/logo.png cache-control='public, max-age=86400'" in listing
    assert "/page.html\n" in listing

    assert _served_policy(image, "/logo.png") == "public, max-age=86400"
    assert _served_policy(image, "/page.html") == "no-cache"
    assert main(["content", "cache-policy", *where]) == 0
    assert "built-in" in capsys.readouterr().out

    assert main(["content", "cache-policy", "max-age=300", *where]) == 0
    assert capsys.readouterr().out == "site default: max-age=300\n"
    assert _served_policy(image, "/page.html") == "max-age=300"
    assert _served_policy(image, "/logo.png") == "public, max-age=86400"

    assert main(["content", "cache-policy", "--builtin", *where]) == 0
    assert "built-in" in capsys.readouterr().out
    assert _served_policy(image, "/page.html") == "no-cache"


@pytest.mark.parametrize(
    "command",
    [
        ["content", "put", "PAGE", "/x.html", "--cache-control", "max-age"],
        ["content", "put", "PAGE", "/x.html", "--cache-control", "no cache"],
        ["content", "cache-policy", "max-age=soon"],
        ["content", "cache-policy", "max-age=5", "--builtin"],
    ],
)
def test_bad_policy_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    image = tmp_path / "card"
    assert main(["init", "--data-dir", str(image), "--no-demo", "-q"]) == 0
    page = tmp_path / "page.html"
    page.write_bytes(b"<p>page</p>")
    capsys.readouterr()
    argv = [str(page) if word == "PAGE" else word for word in command]
    assert main([*argv, "--data-dir", str(image)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("openscws: "), err
    assert "Traceback" not in err
    assert CardImage.open(image).get("/x.html") is None
