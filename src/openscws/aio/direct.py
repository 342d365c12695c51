"""A card with its own TCP/IP (OMA SCWS §8.2): the SCWS listens on sockets itself, with no
BIP gateway in between ("the HTTP application in the terminal SHALL directly communicate
with the SCWS"). Each accepted connection gets the same `StreamHandler` the card would put
on a BIP channel (the HTTP engine, or the card's TLS around it), driven by this thin shell.

The benchmarks' "direct engine" baseline is this shell too."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from openscws.bip.card import StreamHandler

__all__ = ["DirectServer", "StreamProtocol"]

log = logging.getLogger(__name__)
_clock = time.time


class StreamProtocol(asyncio.Protocol):
    """One TCP connection driving one `StreamHandler`."""

    def __init__(self, handler: StreamHandler) -> None:
        self.handler = handler
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._arm()

    def data_received(self, data: bytes) -> None:
        self.handler.receive_data(data, _clock())
        self._flush()

    def eof_received(self) -> bool | None:
        self.handler.receive_data(b"", _clock())
        self._flush()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.handler.close()

    def _flush(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        out = self.handler.data_to_send()
        if out:
            transport.write(out)
        if self.handler.should_close:
            transport.close()
        else:
            self._arm()

    def _arm(self) -> None:
        due = self.handler.get_timer()
        if due is None:
            return
        if self.timer is not None:
            if self.timer.when() <= due:  # an earlier check re-arms itself
                return
            self.timer.cancel()
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(max(0.0, due - _clock()), self._fire)

    def _fire(self) -> None:
        self.timer = None
        self.handler.handle_timer(_clock())
        self._flush()


def _protocol_factory(
    factory: Callable[[int, float], StreamHandler], port: int
) -> Callable[[], StreamProtocol]:
    def make() -> StreamProtocol:
        return StreamProtocol(factory(port, _clock()))

    return make


@dataclass
class DirectServer:
    """Listens on `host` for each (card port -> local port) in `ports`, serving each with
    the factory of the card port (`openscws.scws.card.handler_factories`)."""

    host: str
    factories: Mapping[int, Callable[[int, float], StreamHandler]]
    ports: Mapping[int, int]

    def __post_init__(self) -> None:
        self._servers: dict[int, asyncio.Server] = {}

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for card_port, factory in self.factories.items():
            local = self.ports.get(card_port, card_port)
            try:
                server = await loop.create_server(
                    _protocol_factory(factory, card_port),
                    self.host,
                    local,
                    backlog=128,
                )
            except OSError as exc:
                await self.stop()
                raise OSError(
                    exc.errno, f"cannot listen on {self.host}:{local} ({exc.strerror})"
                ) from exc
            self._servers[card_port] = server
            log.info("card listens on %s:%d", self.host, self.local_port(card_port))

    def local_port(self, card_port: int) -> int:
        port: int = self._servers[card_port].sockets[0].getsockname()[1]
        return port

    async def stop(self) -> None:
        for server in self._servers.values():
            server.close()
        for server in self._servers.values():
            await server.wait_closed()
        self._servers.clear()
