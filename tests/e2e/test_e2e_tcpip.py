"""A card with its own TCP/IP (OMA SCWS §8.2): `openscws card --tcpip` listens itself, no
BIP gateway, HTTP and HTTPS on configurable ports (80/443 by default)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from openscws.demo import demo_files


def test_card_listens_directly(  # type: ignore[no-untyped-def]
    need_tool: Callable[[str, str], str], openscws_proc, free_port, tmp_path: Path
) -> None:
    curl = need_tool("curl", "curl")
    http, https = free_port(), free_port()
    ca = tmp_path / "ca"
    config = tmp_path / "c.toml"
    config.write_text(f'[ca]\ndir = "{ca}"\n')
    card = openscws_proc(
        "card", "--tcpip", "--data-dir", tmp_path / "card", "-c", config,
        "--http-port", str(http), "--https-port", str(https), name="tcpip",
    )  # fmt: skip
    assert card.wait_ready() == f"http://127.0.0.1:{http}"
    card.wait_for(f"https://127.0.0.1:{https}/")
    assert "APDU" not in card.stderr
    assert "BIP gateway" not in card.stderr
    want = demo_files()["/index.html"]
    for url, extra in (
        (f"http://127.0.0.1:{http}/", []),
        (f"https://127.0.0.1:{https}/", ["--cacert", str(ca / "ca.pem")]),
        (f"https://localhost:{https}/", ["--cacert", str(ca / "ca.pem")]),
    ):
        got = subprocess.run(
            [curl, "-sS", "--max-time", "15", *extra, url], capture_output=True, timeout=20
        )
        assert got.returncode == 0, got.stderr
        assert got.stdout == want


def test_privileged_port_refusal_is_explained(  # type: ignore[no-untyped-def]
    openscws_proc, free_port, tmp_path: Path
) -> None:
    import os

    if os.geteuid() == 0:
        # root may bind 80: bind a port that is already taken instead.
        import socket

        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            card = openscws_proc(
                "card", "--tcpip", "--data-dir", tmp_path / "card",
                "--http-port", str(port), "--https-port", str(free_port()), name="busy",
            )  # fmt: skip
            assert card.proc.wait(20) == 2
            assert f"cannot listen on 127.0.0.1:{port}" in card.stderr
        return
    card = openscws_proc(
        "card", "--tcpip", "--data-dir", tmp_path / "card", "--https-port", str(free_port()),
        name="low",
    )  # fmt: skip
    assert card.proc.wait(20) == 2
    assert "CAP_NET_BIND_SERVICE" in card.stderr
