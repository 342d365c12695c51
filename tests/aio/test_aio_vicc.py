"""The card process's reader link: with no reader it says so once and backs off."""

from __future__ import annotations

import asyncio
import logging
from typing import cast

import pytest

from openscws.aio import vicc
from openscws.aio.vicc import Backoff, serve_card
from openscws.uicc.card import VirtualUicc


def test_backoff_doubles_up_to_its_most_and_resets() -> None:
    b = Backoff(1.0, 30.0)
    assert [b.next() for _ in range(7)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    b.reset()
    assert b.next() == 1.0
    with pytest.raises(ValueError, match="first"):
        Backoff(0, 1)


def test_no_reader_is_said_once_then_tries_back_off(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    attempts = 0
    delays: list[float] = []
    real_sleep = asyncio.sleep

    async def refuse(host: str, port: int) -> None:
        nonlocal attempts
        attempts += 1
        raise ConnectionRefusedError(111, "Connection refused")

    async def sleep(delay: float) -> None:
        delays.append(delay)
        if len(delays) >= 8:
            raise asyncio.CancelledError
        await real_sleep(0)

    monkeypatch.setattr(vicc.asyncio, "open_connection", refuse)
    monkeypatch.setattr(vicc.asyncio, "sleep", sleep)
    card = cast(VirtualUicc, object())  # never reached: no reader answers
    with caplog.at_level(logging.DEBUG, logger="openscws.aio.vicc"):
        with pytest.raises(asyncio.CancelledError):
            asyncio.run(serve_card(card, "127.0.0.1", 9, retry=1.0, max_retry=30.0))
    assert attempts == 8
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    infos = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert len(infos) == 1
    assert "waiting for a vpcd reader at 127.0.0.1:9" in infos[0].getMessage()
