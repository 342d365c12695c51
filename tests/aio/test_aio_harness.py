"""The in-process card harness behind the `openscws.testing` pytest plugin: free ports, a
clean stop that releases the ports and the image, and the plugin loaded by its entry point."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path

import pytest

from openscws.aio.harness import CardHarness


def test_the_plugin_is_loaded_by_its_entry_point(pytestconfig: pytest.Config) -> None:
    assert pytestconfig.pluginmanager.has_plugin("openscws.testing")


def test_stop_releases_the_ports_and_the_image(tmp_path: Path) -> None:
    card = CardHarness(tmp_path, demo=True).start()
    url = card.url("/")
    port = card.local_port(3516)
    with urllib.request.urlopen(url, timeout=10) as answer:
        assert answer.status == 200
    assert card.apdus[0].command == b""  # the ATR first
    assert card.apdus[0].describe().startswith("ATR 3B")
    card.stop()
    card.stop()  # idempotent
    with socket.socket() as s, pytest.raises(ConnectionRefusedError):
        s.connect(("127.0.0.1", port))
    # The image is free again: another card starts on it, with what the first one stored.
    with CardHarness(tmp_path) as again:
        assert "/index.html" in again.paths()


def test_a_card_on_a_timed_link_serves(tmp_path: Path) -> None:
    with CardHarness(tmp_path, link="iso7816:ta1=0x96") as card:
        card.put("/x.txt", b"x" * 4000)
        card.clear_trace()
        with urllib.request.urlopen(card.url("/x.txt"), timeout=30) as answer:
            assert answer.read() == b"x" * 4000
        assert any("SEND_DATA" in line for line in card.trace())


def test_a_card_not_started_says_so(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="not running"):
        CardHarness(tmp_path).url("/")
