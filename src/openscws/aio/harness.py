"""A virtual card and its BIP gateway running in this process on a thread of their own, for
synchronous code (tests): `CardHarness.start()` returns once the card serves, on free ports.

Everything the card does happens on the harness's event loop thread; `put`, `delete` and the
trace are handed over to that thread, so the caller never races the card over its image."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from openscws.aio.stack import Stack, start_stack, under
from openscws.config import Settings
from openscws.scws.model import Resource
from openscws.store.content import guess_content_type
from openscws.trace.decode import describe_exchange
from openscws.trace.tracer import ApduTracer

__all__ = ["ApduExchange", "CardHarness"]

T = TypeVar("T")
STARTUP_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class ApduExchange:
    """One command and its response on the card link (the ATR: an empty `command`)."""

    command: bytes
    response: bytes
    time: float

    def describe(self) -> str:
        """The `--trace` line: e.g. "FETCH -> SEND_DATA ch1 ... [9000 normal ending]"."""
        if not self.command:
            return f"ATR {self.response.hex(' ').upper()}"
        return describe_exchange(self.command, self.response)


class _Recorder(ApduTracer):
    def __init__(self) -> None:
        super().__init__()
        self.exchanges: list[ApduExchange] = []

    def __call__(self, command: bytes, response: bytes, now: float) -> None:
        self.count += 1
        self.exchanges.append(ApduExchange(command, response, now))


class CardHarness:
    """A card (image in `data_dir`) and its gateway on `host`, each card port on a free local
    port. `demo`: a new image gets the demo site; `link`: the `gateway.link` setting
    ("direct", "iso7816:..."); `settings`: a base to start from (its data directories are
    moved under `data_dir` all the same)."""

    def __init__(
        self,
        data_dir: Path,
        *,
        demo: bool = False,
        link: str = "direct",
        settings: Settings | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        base = under(settings or Settings(), Path(data_dir))
        ports = dict.fromkeys(base.card.ports, 0)
        gateway = replace(base.gateway, host=host, port_map=ports, sms_port=0, link=link)
        self.settings = replace(base, gateway=gateway)
        self.demo = demo
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stack: Stack | None = None
        self._recorder = _Recorder()

    # -- life cycle -----------------------------------------------------------------------

    def start(self) -> CardHarness:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="openscws-card", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            self._stack = self._run(
                start_stack(self.settings, demo=self.demo, admin=False, tracer=self._recorder)
            )
        except BaseException:
            self._shutdown()
            raise
        return self

    def stop(self) -> None:
        """Stops the gateway and the card, releases the image; idempotent."""
        try:
            if self._stack is not None:
                stack, self._stack = self._stack, None
                self._run(stack.stop())
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()

    def __enter__(self) -> CardHarness:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        assert self._loop is not None, "the card is not running"
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(STARTUP_TIMEOUT)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError("the virtual card did not answer in time") from None

    def _call(self, fn: Callable[[], T]) -> T:
        async def call() -> T:
            return fn()

        return self._run(call())

    @property
    def stack(self) -> Stack:
        if self._stack is None:
            raise RuntimeError("the card is not running: start() it first")
        return self._stack

    # -- where it serves -------------------------------------------------------------------

    def local_port(self, card_port: int) -> int:
        """The local TCP port that serves card port `card_port` (3516, 4116)."""
        return self.stack.gateway.local_port(card_port)

    def url(self, path: str = "/", *, https: bool = False) -> str:
        """The URL of `path` on the card, over HTTP (card port 3516) or HTTPS (4116)."""
        c = self.settings.card
        ports = [p for p in c.ports if (p in c.tls_ports) == https]
        if not ports:
            raise RuntimeError(f"the card serves no {'HTTPS' if https else 'HTTP'} port")
        scheme = "https" if https else "http"
        host = self.settings.gateway.host
        return f"{scheme}://{host}:{self.local_port(ports[0])}{path}"

    @property
    def ca_pem(self) -> Path:
        """The issuer CA that signed the card's certificate: trust it for HTTPS."""
        return self.settings.ca.dir / "ca.pem"

    @property
    def data_dir(self) -> Path:
        """The card image."""
        return self.settings.card.data_dir

    # -- content ---------------------------------------------------------------------------

    def put(
        self,
        path: str,
        body: bytes | str,
        *,
        content_type: str | None = None,
        cache_control: str | None = None,
    ) -> Resource:
        """Store a resource in the card image (atomically); the next request serves it."""
        data = body.encode() if isinstance(body, str) else body
        resource = Resource(
            path,
            data,
            content_type or guess_content_type(path.rsplit("/", 1)[-1]),
            last_modified=int(time.time()),
            cache_control=cache_control,
        )
        self._call(lambda: self.stack.image.put(resource))
        return resource

    def delete(self, path: str) -> bool:
        """Remove a resource from the card image; False if there was none."""
        return self._call(lambda: self.stack.image.delete(path))

    def paths(self) -> list[str]:
        return self._call(lambda: self.stack.image.paths())

    # -- the APDU trace --------------------------------------------------------------------

    @property
    def apdus(self) -> list[ApduExchange]:
        """Every exchange on the card link since the start (or `clear_trace`)."""
        return self._call(lambda: list(self._recorder.exchanges))

    def trace(self) -> list[str]:
        """The exchanges as `--trace` lines."""
        return [e.describe() for e in self.apdus]

    def clear_trace(self) -> None:
        self._call(self._recorder.exchanges.clear)
