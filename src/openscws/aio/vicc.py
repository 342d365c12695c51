"""The card process: a virtual UICC that connects to a vpcd reader (openscws's gateway, or
pcscd with vsmartcard's vpcd driver) and answers its frames."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable

from openscws.errors import OpenScwsError
from openscws.uicc.card import VirtualUicc
from openscws.uicc.vpcd import Control, Deframer, frame

log = logging.getLogger(__name__)

QUICK_ACK_ENV = "OPENSCWS_VPCD_QUICKACK"
"""Set to 0 to leave delayed ACKs on (benchmarks/bench_pcsc.py measures what they cost)."""


def answer(card: VirtualUicc, payload: bytes, now: float) -> bytes | None:
    """The card's reply to one vpcd payload; None when the payload wants no reply."""
    if len(payload) == 1:
        code = payload[0]
        if code == Control.GET_ATR:
            return card.atr
        if code in (Control.POWER_ON, Control.RESET):
            card.power_on()
        elif code == Control.POWER_OFF:
            card.power_off()
        else:
            log.warning("unknown vpcd control code %02X", code)
        return None
    return card.transmit(payload, now)


class Backoff:
    """Delays between attempts: `first`, doubling up to `most`; `reset` after a success."""

    def __init__(self, first: float, most: float) -> None:
        if not 0 < first <= most:
            raise ValueError("backoff wants 0 < first <= most")
        self.first = first
        self.most = most
        self._next = first

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.most)
        return delay

    def reset(self) -> None:
        self._next = self.first


async def serve_card(
    card: VirtualUicc, host: str, port: int, *, retry: float = 0.5, max_retry: float = 2.0
) -> None:
    """Connects to the reader and serves it, reconnecting while the reader restarts. While
    no reader answers it says so once, then waits longer between tries (`retry` doubling up to
    `max_retry` seconds), each further try logged at debug level only."""
    backoff = Backoff(retry, max(retry, max_retry))
    waiting = False
    while True:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError as e:
            delay = backoff.next()
            if not waiting:
                log.info(
                    "waiting for a vpcd reader at %s:%d (%s): `openscws gateway`, or pcscd "
                    "with vsmartcard's vpcd driver; trying again every %g s, then less often",
                    host,
                    port,
                    e.strerror or e,
                    delay,
                )
                waiting = True
            else:
                log.debug("still no vpcd reader at %s:%d; next try in %g s", host, port, delay)
            await asyncio.sleep(delay)
            continue
        waiting = False
        backoff.reset()
        log.info("card inserted into vpcd reader %s:%d", host, port)
        deframer = Deframer()
        quick_ack = _quick_ack(writer)
        try:
            while chunk := await reader.read(65536):
                quick_ack()
                for payload in deframer.feed(chunk):
                    reply = answer(card, payload, time.time())
                    if reply is not None:
                        writer.write(frame(reply))
                await writer.drain()
        except (ConnectionError, ValueError, OpenScwsError) as e:
            log.warning("vpcd link error: %s", e)
        finally:
            writer.close()
        log.info("reader closed the link; card removed")
        await asyncio.sleep(retry)


def _quick_ack(writer: asyncio.StreamWriter) -> Callable[[], None]:
    """Re-arms TCP_QUICKACK after each read (Linux clears it as it goes). pcscd's vpcd driver
    sends each frame's length and its APDU in two writes with Nagle on, so the APDU waits
    for our ACK of the length: with delayed ACKs that is up to 40 ms per APDU."""
    sock = writer.get_extra_info("socket")
    option = getattr(socket, "TCP_QUICKACK", None)
    if sock is None or option is None or os.environ.get(QUICK_ACK_ENV) == "0":
        return lambda: None

    def arm() -> None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, option, 1)
        except OSError:
            pass

    return arm
