"""The SCWS Gateway's access-control enforcer (shell): reads the card's access rules through the
card link, identifies each local client, and admits or refuses it before any of its bytes
reach the card. The decisions are `acp.policy`'s; this module does the I/O around them.

- `AccessControl.link` wraps the gateway's card link: at power-on it reads the rules (the ARA-M
  APDUs, `acp.reader`, shown by --trace like every other APDU); every later exchange of the
  gateway goes through it too, one at a time, so a read never interleaves with the gateway's
  own APDUs on a link that has to wait (vpcd, PC/SC), and the end of each administration session
  is seen in the CAT traffic (`acp.watch`).
- On a new connection the refresh tag is checked when `refresh_interval` seconds have passed
  since the last check, or an administration session ended since: a changed tag means the rules
  are read again, so a new policy takes effect on the next connection, with no restart.
- `AccessControl.wrap_client` is the gateway's hook for each accepted connection. A denied
  connection on an HTTP port (3516) gets a gateway-made 403 whose body names the reason; on other
  ports (4116) it is closed before any TLS handshake. An admitted connection whose rules carry
  path prefixes has each request head checked (`acp.heads`): a denied request gets a 403 and
  the connection goes on.
- `open_unix` adds a Unix-domain entry point in front of a card port: its clients' identity comes
  from SO_PEERCRED, and their bytes are relayed to the port's TCP listener.

Every decision is logged (logger `openscws.acp`) with the identity, the rule and the result."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from openscws.acp.heads import HeadGate, refusal
from openscws.acp.policy import Decision, Mode, Policy, Subject
from openscws.acp.reader import Outcome, ReaderError, ReadResult, RulesReader
from openscws.acp.watch import AdminWatch
from openscws.aio.links import ApduObserver, CardLink
from openscws.aio.peer import PeerIdentity, tcp_peer, unix_peer
from openscws.errors import OpenScwsError

__all__ = ["AccessControl", "GuardedLink"]

log = logging.getLogger("openscws.acp")


class GuardedLink:
    """The gateway's card link with the enforcer's reads slotted in between its exchanges."""

    def __init__(self, inner: CardLink, control: AccessControl) -> None:
        self.inner = inner
        self.control = control
        self.immediate = inner.immediate
        self._lock = asyncio.Lock()
        self.loaded = False
        """The rules were read once (just before the gateway's first APDU, after the ATR)."""

    async def power_on(self) -> bytes:
        self.loaded = False
        return await self.inner.power_on()

    async def transmit(self, apdu: bytes) -> bytes:
        if not self.loaded:
            self.loaded = True
            await self.control.read(start=True)
        async with self._lock:
            response = await self.inner.transmit(apdu)
        if self.control.watch.exchange(apdu, response):
            self.control.admin_session_ended()
        return response

    def transmit_now(self, apdu: bytes) -> bytes | None:
        if not self.loaded:
            if not self.immediate:
                return None  # transmit() reads the rules first
            self.loaded = True
            self.control.read_now(start=True)
        response = self.inner.transmit_now(apdu)
        if response is not None and self.control.watch.exchange(apdu, response):
            self.control.admin_session_ended()
        return response

    async def exchange_locked(self, apdu: bytes) -> bytes:
        async with self._lock:
            return await self.inner.transmit(apdu)

    async def close(self) -> None:
        await self.control.close()
        await self.inner.close()


class AccessControl:
    def __init__(
        self,
        link: CardLink,
        *,
        http_ports: frozenset[int] = frozenset({3516}),
        refresh_interval: float = 1.0,
        observer: ApduObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
        unix_socket: Path | None = None,
        unix_target: Callable[[], tuple[str, int]] | None = None,
    ) -> None:
        self.link = GuardedLink(link, self)
        self.http_ports = http_ports
        self.refresh_interval = refresh_interval
        self.observer = observer
        self.clock = clock
        self.policy = Policy.deny_all("not read yet")
        self.tag: bytes | None = None
        self.watch = AdminWatch()
        self._checked = float("-inf")
        self._stale = True
        self._refreshing: asyncio.Task[None] | None = None
        self._relayed: dict[tuple[str, int], PeerIdentity] = {}
        self.decisions = 0
        self.denied = 0
        self.reads = 0
        self.unix_socket = unix_socket
        self.unix_target = unix_target
        self._unix: asyncio.Server | None = None
        self._unix_task: asyncio.Task[None] | None = None

    async def close(self) -> None:
        if self._unix_task is not None:
            self._unix_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await self._unix_task
        if self._unix is not None:
            self._unix.close()
            if self.unix_socket is not None:
                with contextlib.suppress(OSError):
                    self.unix_socket.unlink()

    # -- reading the rules ---------------------------------------------------------------------

    def _trace(self, apdu: bytes, response: bytes) -> None:
        if self.observer is not None:
            self.observer(apdu, response, time.time())

    def _transmit_now(self, apdu: bytes) -> bytes:
        response = self.link.inner.transmit_now(apdu)
        if response is None:
            raise ReaderError("the card link cannot answer at once")
        self._trace(apdu, response)
        return response

    def _apply(self, result: ReadResult, *, start: bool) -> None:
        self._checked = self.clock()
        self._stale = False
        if result.outcome is Outcome.UNCHANGED:
            return
        self.reads += 1
        before = self.policy.describe()
        if result.outcome is Outcome.NO_APPLICATION:
            self.policy = Policy.unrestricted("the card has no access-rule application")
        elif result.outcome is Outcome.NO_RULES:
            self.policy = Policy.unrestricted("the card holds no SCWS access rules")
        elif result.outcome is Outcome.RULES:
            self.policy = Policy(Mode.RULES, result.rules, http_ports=self.http_ports)
        else:
            self.policy = Policy.deny_all(result.error)
        self.tag = result.tag
        if start and self.unix_socket is not None and self._unix_task is None:
            self._unix_task = asyncio.get_running_loop().create_task(self._start_unix())
        now = self.policy.describe()
        if start or now != before or result.outcome is Outcome.RULES:
            level = logging.ERROR if self.policy.mode is Mode.DENY_ALL else logging.INFO
            verb = "SCWS access control" if start else "SCWS access rules changed"
            log.log(level, "%s: %s", verb, now)

    def _failed(self, e: Exception, *, start: bool) -> None:
        self._apply(ReadResult(Outcome.ERROR, error=f"reading the rules failed: {e}"), start=start)

    def read_now(self, *, start: bool = False) -> None:
        """One read through a link that answers at once (the card in this process)."""
        reader = RulesReader(None if start else self.tag)
        try:
            while (apdu := reader.next_apdu()) is not None:
                reader.receive(self._transmit_now(apdu))
        except ReaderError as e:
            self._failed(e, start=start)
            return
        assert reader.result is not None
        self._apply(reader.result, start=start)

    async def read(self, *, start: bool = False) -> None:
        """One read through any link, between the gateway's own exchanges."""
        if self.link.immediate:
            self.read_now(start=start)
            return
        reader = RulesReader(None if start else self.tag)
        try:
            while (apdu := reader.next_apdu()) is not None:
                response = await self.link.exchange_locked(apdu)
                self._trace(apdu, response)
                reader.receive(response)
        except (OpenScwsError, OSError) as e:  # ReaderError, a lost card, a PC/SC failure
            self._failed(e, start=start)
            return
        assert reader.result is not None
        self._apply(reader.result, start=start)

    def admin_session_ended(self) -> None:
        log.debug("administration session ended: the access rules are checked again")
        self._stale = True

    def _due(self) -> bool:
        return self._stale or self.clock() - self._checked >= self.refresh_interval

    # -- identity and decisions ----------------------------------------------------------------

    def identity(self, transport: asyncio.BaseTransport) -> PeerIdentity:
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        if not isinstance(peer, tuple) or not isinstance(local, tuple):
            return PeerIdentity(how="no peer address")
        relayed = self._relayed.pop((peer[0], peer[1]), None)
        if relayed is not None:
            return relayed
        need_exe = self.policy.mode is Mode.RULES and self.policy.needs_exe
        return tcp_peer((local[0], local[1]), (peer[0], peer[1]), need_exe=need_exe)

    def decide(self, who: PeerIdentity, port: int) -> Decision:
        if self.policy.mode is Mode.UNRESTRICTED:
            decision = Decision(True, self.policy.error)
        else:
            decision = self.policy.admit(_subject(who), port)
        self._log(who, port, decision)
        return decision

    def _log(self, who: PeerIdentity, port: int, decision: Decision, what: str = "") -> None:
        self.decisions += 1
        if not decision.allow:
            self.denied += 1
        level = logging.DEBUG if self.policy.mode is Mode.UNRESTRICTED else logging.INFO
        if log.isEnabledFor(level):
            # One record per decision, made directly: a connection's cost matters here, and
            # the caller's file and line (logging's stack walk) would always be this one.
            args = ("ALLOW" if decision.allow else "DENY", port, what, who.describe())
            record = log.makeRecord(
                log.name,
                level,
                __file__,
                0,
                "%s port %d%s from %s: %s",
                (*args, decision.reason),
                None,
            )
            log.handle(record)

    def wrap_client(self, client: asyncio.Protocol, port: int) -> asyncio.Protocol:
        """The gateway's hook: the protocol that guards `client` (a connection to card
        port `port`)."""
        return _Guarded(self, client, port)

    async def refresh(self) -> None:
        if self._refreshing is None:
            self._refreshing = asyncio.get_running_loop().create_task(self.read())
        task = self._refreshing
        try:
            await asyncio.shield(task)
        finally:
            if self._refreshing is task and task.done():
                self._refreshing = None

    # -- the Unix-domain entry point -----------------------------------------------------------

    async def _start_unix(self) -> None:
        assert self.unix_socket is not None
        assert self.unix_target is not None
        try:
            self._unix = await self.open_unix(self.unix_socket, self.unix_target)
        except OSError as e:
            log.error("cannot open the Unix-domain entry point %s: %s", self.unix_socket, e)

    async def open_unix(self, path: Path, target: Callable[[], tuple[str, int]]) -> asyncio.Server:
        """A Unix-domain socket at `path` whose clients reach the TCP listener `target()`
        returns, their identity taken from SO_PEERCRED. Anyone may connect (mode 0666): the
        rules decide."""
        with contextlib.suppress(FileNotFoundError):
            if path.is_socket():
                path.unlink()

        async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sock = writer.get_extra_info("socket")
            who = unix_peer(sock) if sock is not None else PeerIdentity(how="no socket")
            host, port = target()
            out = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
            try:
                out.bind((host, 0))
                out.setblocking(False)
                name = out.getsockname()
                self._relayed[(name[0], name[1])] = who
                await asyncio.get_running_loop().sock_connect(out, (host, port))
                up_reader, up_writer = await asyncio.open_connection(sock=out)
            except OSError as e:
                if out.fileno() >= 0:
                    with contextlib.suppress(OSError):
                        name = out.getsockname()
                        self._relayed.pop((name[0], name[1]), None)
                out.close()
                log.warning("Unix entry point: cannot reach %s:%d: %s", host, port, e)
                writer.close()
                return
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

        server = await asyncio.start_unix_server(relay, path=str(path))
        os.chmod(path, 0o666)
        log.info("SCWS Unix-domain entry point %s", path)
        return server


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        with contextlib.suppress(ConnectionError, RuntimeError):
            writer.close()


LINGER = 2.0
"""Seconds a refused HTTP client has to read its answer before the connection is closed."""


def _linger(transport: asyncio.Transport) -> None:
    """Ends our side after what was written (a FIN), drops what the client still sends, and
    closes when the client does or after LINGER seconds. Closing at once with its request
    unread would reset the connection, and the client could lose the answer."""
    if transport.is_closing():
        return
    if transport.can_write_eof():
        transport.write_eof()
    asyncio.get_running_loop().call_later(LINGER, transport.close)


_UNLOOKED = PeerIdentity(how="not looked up: access unrestricted")


def _subject(who: PeerIdentity) -> Subject:
    return Subject(uid=who.uid, sha256=who.sha256, sha1=who.sha1)


class _Guarded(asyncio.Protocol):
    """A client connection as the enforcer sees it: decided first, then passed on to the
    gateway's own protocol (`inner`), through a request gate when paths must be checked."""

    def __init__(self, control: AccessControl, inner: asyncio.Protocol, port: int) -> None:
        self.control = control
        self.inner = inner
        self.port = port
        self.transport: asyncio.Transport | None = None
        self.decided = False
        self.admitted = False
        self.early = bytearray()
        self.gate: HeadGate | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        control = self.control
        if control._due():
            if control.link.immediate:
                control.read_now()
            else:
                transport.pause_reading()
                asyncio.get_running_loop().create_task(self._decide_later())
                return
        self._decide()

    async def _decide_later(self) -> None:
        await self.control.refresh()
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.resume_reading()  # before the gateway's protocol may pause it again
            self._decide()

    def _decide(self) -> None:
        transport = self.transport
        assert transport is not None
        if self.control.policy.mode is Mode.UNRESTRICTED and not log.isEnabledFor(logging.DEBUG):
            who = _UNLOOKED  # nothing to decide: no lookup
        else:
            who = self.control.identity(transport)
        decision = self.control.decide(who, self.port)
        self.decided = True
        if not decision.allow:
            if self.port in self.control.http_ports:
                transport.write(refusal(403, f"SCWS access control: {decision.reason}", close=True))
                _linger(transport)
            else:
                transport.close()  # no byte of a TLS handshake
            return
        self.admitted = True
        if decision.check_requests and self.port in self.control.http_ports:
            policy = self.control.policy
            subject = _subject(who)

            def check(method: str, target: str) -> Decision:
                d = policy.request(subject, self.port, target)
                self.control._log(who, self.port, d, f" {method} {target[:80]}")
                return d

            self.gate = HeadGate(check)
            self.inner.connection_made(_GateTransport(transport, self.gate))
        else:
            self.inner.connection_made(transport)
        if self.early:
            data = bytes(self.early)
            self.early.clear()
            self.data_received(data)

    def data_received(self, data: bytes) -> None:
        if not self.decided:
            self.early += data
            return
        if not self.admitted:
            return
        gate = self.gate
        if gate is None:
            self.inner.data_received(data)
            return
        forward, now = gate.from_client(data)
        transport = self.transport
        assert transport is not None
        if now:
            transport.write(now)
        if forward:
            self.inner.data_received(forward)
        if gate.closing and not gate.owed:
            _linger(transport)

    def eof_received(self) -> bool | None:
        if self.admitted:
            return self.inner.eof_received()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.admitted:
            self.inner.connection_lost(exc)
        self.transport = None

    def pause_writing(self) -> None:
        if self.admitted:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.admitted:
            self.inner.resume_writing()


class _GateTransport(asyncio.Transport):
    """The transport the gateway's protocol writes the card's bytes to, through the gate."""

    def __init__(self, real: asyncio.Transport, gate: HeadGate) -> None:
        super().__init__()
        self._real = real
        self._gate = gate

    def write(self, data: bytes | bytearray | memoryview) -> None:
        real = self._real
        if real.is_closing():
            return
        gate = self._gate
        out = gate.from_card(bytes(data))
        try:
            real.write(out)
        except RuntimeError:  # our side already ended (write_eof): nothing more to say
            return
        if gate.closing and not gate.owed:
            _linger(real)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._real.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self._real.pause_reading()

    def resume_reading(self) -> None:
        self._real.resume_reading()

    def is_reading(self) -> bool:
        return self._real.is_reading()

    def close(self) -> None:
        self._real.close()

    def is_closing(self) -> bool:
        return self._real.is_closing()

    def abort(self) -> None:
        self._real.abort()

    def get_write_buffer_size(self) -> int:
        return self._real.get_write_buffer_size()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._real.set_write_buffer_limits(high, low)

    def can_write_eof(self) -> bool:
        return False
