"""The card link: one method, `transmit(apdu) -> response`, the same bytes whichever way the
terminal reaches the card (docs/architecture.md, "card link")."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

from openscws.apdu.iso7816 import LinkTiming
from openscws.uicc.card import VirtualUicc
from openscws.uicc.vpcd import Control, Deframer, frame

log = logging.getLogger(__name__)

ApduObserver = Callable[[bytes, bytes, float], None]
"""Called with (command, response, time) after each exchange: the tracer."""


class CardLink(Protocol):
    immediate: bool
    """True when `transmit_now` always answers (never None): the gateway may then drive the
    card from socket callbacks."""

    async def power_on(self) -> bytes:
        """Powers the card and returns its ATR."""
        ...

    async def transmit(self, apdu: bytes) -> bytes: ...

    def transmit_now(self, apdu: bytes) -> bytes | None:
        """The same exchange without awaiting, when the link can do it at once (in-process);
        None otherwise. Lets the gateway run many APDUs per event-loop turn."""
        ...

    async def close(self) -> None: ...


class InProcessLink:
    """The card in this process. Still a byte link: every exchange is encoded APDUs."""

    immediate = True

    def __init__(self, card: VirtualUicc, clock: Callable[[], float] = time.time) -> None:
        self.card = card
        self.clock = clock

    async def power_on(self) -> bytes:
        return self.card.power_on()

    async def transmit(self, apdu: bytes) -> bytes:
        return self.card.transmit(apdu, self.clock())

    def transmit_now(self, apdu: bytes) -> bytes | None:
        return self.card.transmit(apdu, self.clock())

    async def close(self) -> None:
        self.card.power_off()


class TimedLink:
    """Another link made as slow as a card's contacts: each exchange takes the time the
    ISO/IEC 7816-3 model (`openscws.apdu.iso7816.LinkTiming`) gives it, on a line that
    carries one APDU at a time (`--link iso7816`).

    The line is free again at `free_at`: an exchange starts at once, or when the previous one
    is over; the answer comes when the model's time has passed. An exchange that arrives within
    `SLACK` of the line falling free starts when it fell free: the event loop's late wake-ups
    are the shell's, not the card's, and must not add up over a download."""

    immediate = False
    SLACK = 0.002

    def __init__(self, inner: CardLink, timing: LinkTiming) -> None:
        self.inner = inner
        self.timing = timing
        self.free_at = 0.0
        self.apdus = 0
        """Exchanges carried so far."""
        self.line_seconds = 0.0
        """The model's time for them, summed."""

    async def power_on(self) -> bytes:
        return await self.inner.power_on()

    async def transmit(self, apdu: bytes) -> bytes:
        response = await self.inner.transmit(apdu)
        loop = asyncio.get_running_loop()
        now = loop.time()
        cost = self.timing.exchange(apdu, response).seconds
        start = self.free_at if now - self.free_at < self.SLACK else now
        self.free_at = start + cost
        self.apdus += 1
        self.line_seconds += cost
        delay = self.free_at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        return response

    def transmit_now(self, apdu: bytes) -> bytes | None:
        return None

    async def close(self) -> None:
        await self.inner.close()


class CardGone(ConnectionError):
    """The card process closed its vpcd connection."""


class VpcdLink:
    """The gateway plays the reader side of vsmartcard's vpcd: it listens, and the card
    process (a "vicc") connects to it, exactly as it would to pcscd's vpcd driver."""

    immediate = False

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._deframer = Deframer()
        self._frames: list[bytes] = []

    async def _request(self, payload: bytes) -> bytes:
        self.writer.write(frame(payload))
        while not self._frames:
            chunk = await self.reader.read(65536)
            if not chunk:
                raise CardGone("card disconnected")
            self._frames.extend(self._deframer.feed(chunk))
        return self._frames.pop(0)

    async def power_on(self) -> bytes:
        self.writer.write(frame(bytes((Control.POWER_ON,))))
        return await self._request(bytes((Control.GET_ATR,)))

    async def transmit(self, apdu: bytes) -> bytes:
        return await self._request(apdu)

    def transmit_now(self, apdu: bytes) -> bytes | None:
        return None

    async def close(self) -> None:
        try:
            self.writer.write(frame(bytes((Control.POWER_OFF,))))
            self.writer.close()
            await self.writer.wait_closed()
        except ConnectionError:
            pass


async def accept_vpcd_card(host: str, port: int) -> VpcdLink:
    """Listens on host:port until one card connects, and returns its link."""
    connected: asyncio.Future[VpcdLink] = asyncio.get_running_loop().create_future()

    async def on_card(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if connected.done():
            log.warning("a second card tried to connect; refused")
            writer.close()
            return
        connected.set_result(VpcdLink(reader, writer))

    server = await asyncio.start_server(on_card, host, port)
    log.info("waiting for a card on vpcd %s:%d", host, port)
    try:
        return await connected
    finally:
        server.close()
