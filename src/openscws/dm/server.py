"""The DM server (OMA-TS-DM_Protocol V1.2 over HTTP, OMA-TS-DM_Security V1.2): `DmService`
answers one HTTP request at a time (the transport check, the DM session of the device, its
job), and `start_dm_server` is its network shell: HTTPS (`dm.server_tls`) on an asyncio
server, TLS through `ssl.MemoryBIO` so the shell sees each connection's PSK identity, HTTP/1.1
through h11, each request handed to the service in a worker thread (the database blocks).

The endpoint is ``POST /dm`` with Content-Type application/vnd.syncml.dm+xml or
application/vnd.syncml.dm+wbxml. A device is known by its DevId (the SyncHdr's Source
LocURI) and authenticates twice: at the transport as its account says (HTTP Basic, Digest, a
TLS client certificate, PSK-TLS, or nothing more than TLS), then in the DM session with its
SyncML credentials (the session core, `dm.session.ServerSession`).

What a device gets for bad input: HTTP 404, 405, 411, 413 or 415 for a wrong request; 401
with fresh challenges for missing or wrong transport credentials (the same for an unknown
DevId); 403 when the TLS connection belongs to another device or its client certificate is
too weak; HTTP 400 with the SyncML status in the body for a message that does not parse
(malformed XML or WBXML, an entity, a DTD subset) or that the session refuses (wrong MsgRef
or MsgID, a foreign SessionID): the session is left as it was. Wrong or replayed SyncML
credentials are answered inside the session (SyncML 401 or 407 with a fresh nonce).

Sessions live in the memory of the process that serves them; several processes can share the
database (jobs are claimed once, and a Digest (nonce, nc) pair is accepted once among them all:
its use is recorded there), with a load balancer keeping a device's connection on one."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import datetime
import functools
import logging
import secrets
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import h11
from cryptography.hazmat.primitives import serialization

from openscws.dm import auth
from openscws.dm import message as m
from openscws.dm.api import API_PREFIX, DmApi
from openscws.dm.console import DmConsole
from openscws.dm.db import DeviceSecrets, DmStore, JobInfo
from openscws.dm.db_models import HttpAuth
from openscws.dm.errors import MessageError, ProtocolError
from openscws.dm.server_auth import Challenger, NonceUse, parse_authorization
from openscws.dm.server_tls import DmTls, certificate_fingerprint, weak_certificate
from openscws.dm.session import CommandResult, DeviceAccount, ServerSession, ServerState
from openscws.tls.hello import ClientHelloReader, HelloError
from openscws.tls.psk_peek import PskIdentityPeek

__all__ = [
    "DM_PATH",
    "DmAnswer",
    "DmRequest",
    "DmServer",
    "DmService",
    "TlsInfo",
    "ensure_server_certificate",
    "job_commands",
    "start_dm_server",
]

log = logging.getLogger(__name__)

DM_PATH: Final = "/dm"
MAX_BODY: Final = 1 << 20
SESSION_IDLE_S: Final = 300.0
MAX_SESSIONS: Final = 10_000
"""Open sessions a server process keeps at most (then new ones get 503)."""
MAX_SESSIONS_PER_DEVICE: Final = 4
"""Open sessions of one DevId at most (then new ones get 503): a device runs one at a time."""
PURGE_EVERY_S: Final = 1.0
NONCE_PURGE_EVERY_S: Final = 60.0
"""How often a server process deletes the records of expired Digest nonces."""
NONCE_KEEP_FACTOR: Final = 2
"""Used Digest nonces are kept for this many nonce lifetimes: a process whose clock is behind
another's (by less than a lifetime) still finds the record of a nonce it holds live."""
DEFAULT_WORKERS: Final = 5
"""Worker threads when the database pool does not say its size."""
HANDSHAKE_TIMEOUT_S: Final = 15.0
IDLE_TIMEOUT_S: Final = 60.0
_DM_TYPES: Final = (m.CONTENT_TYPE_XML, m.CONTENT_TYPE_WBXML)
_HTTP_FOR_SYNCML: Final = frozenset({400, 401, 403, 404, 407})


@dataclass(frozen=True, slots=True)
class TlsInfo:
    """What the TLS handshake of the request's connection established."""

    version: str | None = None
    cipher: str | None = None
    peer_cert: bytes | None = None
    psk_identity: str | None = None


@dataclass(frozen=True, slots=True)
class DmRequest:
    method: str
    path: str
    headers: dict[str, str]
    """Lower-case names."""
    body: bytes
    tls: TlsInfo = TlsInfo()
    peer: str = "-"
    """The client's address (for the console's login throttle and audit trail)."""


@dataclass(frozen=True, slots=True)
class DmAnswer:
    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""


def _text(status: int, text: str, *extra: tuple[str, str]) -> DmAnswer:
    return DmAnswer(
        status, (("Content-Type", "text/plain; charset=utf-8"), *extra), text.encode() + b"\n"
    )


def job_commands(job: JobInfo) -> list[m.Command]:
    """A job's commands as DM commands (OMA-TS-DM_RepPro), in order."""
    out: list[m.Command] = []
    for c in job.commands:
        target = m.Target(loc_uri=c["uri"])
        data = c.get("data")
        match c["op"]:
            case "Get":
                out.append(m.Get(cmd_id=0, items=(m.Item(target=target),)))
            case "Replace":
                meta = m.Meta(format="chr")
                out.append(
                    m.Replace(cmd_id=0, items=(m.Item(target=target, meta=meta, data=data),))
                )
            case "Add":
                meta = m.Meta(format="chr")
                out.append(m.Add(cmd_id=0, items=(m.Item(target=target, meta=meta, data=data),)))
            case "Delete":
                out.append(m.Delete(cmd_id=0, items=(m.Item(target=target),)))
            case "Exec":
                out.append(m.Exec(cmd_id=0, item=m.Item(target=target, data=data)))
    return out


def _item_data(item: m.Item) -> str | None:
    if item.data is None:
        return None
    if isinstance(item.data, bytes):
        return base64.b64encode(item.data).decode("ascii")
    return item.data


@dataclass(slots=True)
class _Live:
    device: DeviceSecrets
    job: JobInfo | None
    last: float
    saved: tuple[bytes, bytes]
    """The nonces (the device's, the server's) as the database has them."""
    session: ServerSession = field(init=False)
    lock: threading.Lock = field(default_factory=threading.Lock)


class DmService:
    """Answers the DM endpoint's requests (thread-safe: sessions are locked one by one)."""

    def __init__(
        self,
        store: DmStore,
        *,
        server_uri: str,
        realm: str = "openscws DM",
        new_nonce: Callable[[], bytes] = lambda: secrets.token_bytes(16),
        clock: Callable[[], float] = time.time,
        api: DmApi | None = None,
        digest_secret: bytes | None = None,
        console: DmConsole | None = None,
    ) -> None:
        """`digest_secret` keys the Digest nonces: give every server process sharing the
        database the same one, so a nonce one issued checks at another (default: random).
        The used (nonce, nc) pairs are recorded in the database, so a request one process
        accepted is refused as a replay by every other."""
        self.store = store
        self.api = api
        self.console = console
        self.server_uri = server_uri
        self.challenger = Challenger(realm, secret=digest_secret)
        self.new_nonce = new_nonce
        self.clock = clock
        self._sessions: dict[tuple[str, str], _Live] = {}
        self._per_device: dict[str, int] = {}
        self._lock = threading.Lock()
        self._purged = 0.0
        self._nonces_purged_ms: int | None = None

    # -- HTTP --

    def handle(self, req: DmRequest) -> DmAnswer:
        if req.path.startswith(API_PREFIX) and self.api is not None:
            return self.api.handle(req)
        if self.console is not None and self.console.owns(req.path):
            return self.console.handle(req)
        if req.path.split("?")[0] != DM_PATH:
            return _text(404, "not found: the DM endpoint is POST /dm")
        if req.method != "POST":
            return _text(405, "POST only", ("Allow", "POST"))
        media = req.headers.get("content-type", "").split(";")[0].strip().lower()
        if media not in _DM_TYPES:
            return _text(415, f"Content-Type must be {' or '.join(_DM_TYPES)}")
        if len(req.body) > MAX_BODY:
            return _text(413, "message too large")
        if not req.body and "authorization" not in req.headers:
            # An empty POST is how HTTP clients (curl --digest) ask for the challenge first.
            now_ms = int(self.clock() * 1000)
            return self._unauthorised(now_ms)
        try:
            msg = m.decode(req.body, media)
        except MessageError as exc:
            return _text(400, f"SyncML status {exc.status}: {exc}")
        now = self.clock()
        self._purge(now)
        dev_id = msg.hdr.source.loc_uri
        key = (dev_id, msg.hdr.session_id)
        with self._lock:
            live = self._sessions.get(key)
        device = live.device if live is not None else self.store.secrets(dev_id)
        refused = self._transport(req, device, now)
        if refused is not None:
            return refused
        assert device is not None
        if live is None:
            with self._lock:
                busy = (
                    len(self._sessions) >= MAX_SESSIONS
                    or self._per_device.get(dev_id, 0) >= MAX_SESSIONS_PER_DEVICE
                )
            if busy:
                return _text(503, "too many open sessions", ("Retry-After", "60"))
            mine = self._open(device, media == m.CONTENT_TYPE_WBXML, now)
            with self._lock:
                live = self._sessions.setdefault(key, mine)
                if live is mine:
                    self._per_device[dev_id] = self._per_device.get(dev_id, 0) + 1
        with live.lock:
            return self._receive(key, live, req.body, media, req.headers, now, msg)

    def _unauthorised(self, now_ms: int) -> DmAnswer:
        return DmAnswer(
            401,
            (("Content-Type", "text/plain; charset=utf-8"), *self.challenger.challenges(now_ms)),
            b"transport authentication required\n",
        )

    def _transport(
        self, req: DmRequest, device: DeviceSecrets | None, now: float
    ) -> DmAnswer | None:
        """None if the request may reach the session, else the refusal."""
        now_ms = int(now * 1000)
        tls = req.tls
        if tls.peer_cert is not None:
            weak = weak_certificate(tls.peer_cert)
            if weak is not None:
                return _text(403, f"client certificate refused: {weak}")
        if device is None:
            return self._unauthorised(now_ms)
        info = device.info
        if tls.psk_identity is not None and tls.psk_identity != info.psk_identity:
            return _text(403, "this PSK-TLS connection is another device's")
        match info.http_auth:
            case HttpAuth.NONE:
                return None
            case HttpAuth.PSK:
                if tls.psk_identity is None:
                    return _text(403, "this device connects with PSK-TLS")
                return None
            case HttpAuth.CERT:
                if tls.peer_cert is None:
                    return _text(403, "this device authenticates with a client certificate")
                if certificate_fingerprint(tls.peer_cert) != info.cert_sha256:
                    return _text(403, "the client certificate is not this device's")
                return None
        cred = parse_authorization(req.headers.get("authorization"))
        user, password = info.http_username or "", device.http_password or ""
        if info.http_auth == HttpAuth.BASIC:
            if cred is not None and cred.scheme == "basic":
                if self.challenger.check_basic(cred, user, password):
                    return None
            return self._unauthorised(now_ms)
        if cred is None or cred.scheme != "digest":
            return self._unauthorised(now_ms)
        uri = cred.params.get("uri", "")
        if urlsplit(uri).path != urlsplit(req.path).path:
            return self._unauthorised(now_ms)
        verdict = self.challenger.check_digest(cred, req.method, user, password, now_ms)
        if isinstance(verdict, NonceUse):
            if self._use_nonce(verdict, now_ms):
                return None
            return self._unauthorised(now_ms)  # a replay, here or at another process
        if verdict == "stale":
            return DmAnswer(
                401,
                (
                    ("Content-Type", "text/plain; charset=utf-8"),
                    *self.challenger.challenges(now_ms, stale=True),
                ),
                b"the digest nonce has expired\n",
            )
        return self._unauthorised(now_ms)

    def _use_nonce(self, use: NonceUse, now_ms: int) -> bool:
        """Records `use` in the database (shared by every server process on it): False if
        it was there already. Every NONCE_PURGE_EVERY_S the same transaction first deletes
        the records of nonces long expired, so the table holds the last few lifetimes."""
        purge_before = None
        with self._lock:
            last = self._nonces_purged_ms
            if last is None or now_ms - last >= NONCE_PURGE_EVERY_S * 1000:
                self._nonces_purged_ms = now_ms
                purge_before = now_ms - NONCE_KEEP_FACTOR * self.challenger.lifetime_ms
        return self.store.use_digest_nonce(
            use.nonce, use.nc, use.issued_ms, purge_before=purge_before
        )

    # -- sessions --

    def _open(self, device: DeviceSecrets, wbxml: bool, now: float) -> _Live:
        account = _copy_account(device)
        live = _Live(device, job=None, last=now, saved=(account.nonce, account.server_nonce))

        def claim(nonce: bytes, server_nonce: bytes) -> list[m.Command]:
            # The device has authenticated: its job is claimed, and the nonces that message
            # rolled over are saved, in one transaction.
            job = self.store.claim_job(device.info.dev_id, nonces=(nonce, server_nonce))
            live.saved = (nonce, server_nonce)
            live.job = job
            return job_commands(job) if job is not None else []

        live.session = ServerSession(
            server_uri=self.server_uri,
            account=account,
            new_nonce=self.new_nonce,
            wbxml_form=wbxml,
            on_authenticated=claim,
        )
        return live

    def _receive(
        self, key: tuple[str, str], live: _Live, body: bytes, media: str,
        headers: dict[str, str], now: float, msg: m.SyncML,
    ) -> DmAnswer:  # fmt: skip
        s = live.session
        acc = s.account
        try:
            out = s.receive(body, media, headers.get(auth.HMAC_HEADER.lower()), decoded=msg)
        except (MessageError, ProtocolError) as exc:
            status = exc.status
            http = status if status in _HTTP_FOR_SYNCML else 400
            if s.state is ServerState.IDLE and s.client_msg_id == 0:
                self._drop(key, live)  # nothing of it was accepted: no session to keep
                if live.job is not None:
                    self.store.requeue_job(live.job.id)
                    live.job = None
            return _text(http, f"SyncML status {status}: {exc}")
        live.last = now
        nonces = (acc.nonce, acc.server_nonce)
        unsaved = nonces != live.saved
        if s.state in (ServerState.ENDED, ServerState.ABORTED):
            self._drop(key, live)
            unsaved = not self._finish(live, nonces if unsaved else None)
        if unsaved:
            self.store.save_nonces(live.device.info.dev_id, *nonces)
        live.saved = nonces
        if out is None:
            return DmAnswer(204)
        return DmAnswer(200, (("Content-Type", out.content_type), *out.headers), out.body)

    def _drop(self, key: tuple[str, str], live: _Live) -> None:
        with self._lock:
            if self._sessions.get(key) is live:
                self._forget(key)

    def _forget(self, key: tuple[str, str]) -> None:
        """Under the lock."""
        del self._sessions[key]
        left = self._per_device.get(key[0], 1) - 1
        if left > 0:
            self._per_device[key[0]] = left
        else:
            self._per_device.pop(key[0], None)

    def _finish(self, live: _Live, nonces: tuple[bytes, bytes] | None) -> bool:
        """Stores the job's results (with `nonces`, if given, in the same transaction);
        False if `nonces` are still to be saved."""
        job, s = live.job, live.session
        if job is None:
            return False
        live.job = None
        got = [s.results.get(cid) for cid in s.granted]
        if not any(got):  # nothing ran (authentication failed, or an abort): run it next time
            self.store.requeue_job(job.id)
            return False
        ok = s.state is ServerState.ENDED and all(r is not None for r in got)
        results = [_result(c, r) for c, r in zip(job.commands, got, strict=True)]
        dev = (live.device.info.dev_id, *nonces) if nonces is not None else None
        self.store.finish_job(job.id, results, ok=ok, nonces=dev)
        return True

    def _purge(self, now: float) -> None:
        """Drops the sessions idle for SESSION_IDLE_S (their jobs wait for the next one)."""
        with self._lock:
            if now - self._purged < PURGE_EVERY_S:
                return
            self._purged = now
            old = [(k, v) for k, v in self._sessions.items() if now - v.last > SESSION_IDLE_S]
            for k, _ in old:
                self._forget(k)
        for _, live in old:
            if live.job is not None:
                self.store.requeue_job(live.job.id)

    @property
    def workers(self) -> int:
        """Requests the service should handle at once: the database pool's connections."""
        size = getattr(self.store.db.engine.pool, "size", None)
        return max(2, size()) if callable(size) else DEFAULT_WORKERS

    @property
    def session_count(self) -> int:
        with self._lock:
            return len(self._sessions)


def _copy_account(device: DeviceSecrets) -> DeviceAccount:
    return dataclasses.replace(device.account)


def _result(command: dict[str, Any], r: CommandResult | None) -> dict[str, Any]:
    out: dict[str, Any] = {"op": command["op"], "uri": command["uri"]}
    if r is None:
        out["status"] = None
        return out
    out["status"] = r.status
    if r.items:
        out["data"] = _item_data(r.items[0])
    return out


# -- the network shell ---------------------------------------------------------------------


def ensure_server_certificate(
    directory: Path, hosts: tuple[str, ...], *, now: datetime.datetime
) -> tuple[Path, Path, Path]:
    """(certificate chain, key, CA certificate) for a DM server started without --cert:
    an RSA 2048 key (RSA_PSK suites need one) and a certificate from a CA of its own in
    `directory`, both made once and kept."""
    from openscws.pki.authority import CertificateAuthority, parse_csr
    from openscws.pki.keys import build_csr, generate_key, key_to_pem
    from openscws.store.atomic import atomic_write

    cert_path, key_path, ca_path = (directory / n for n in ("cert.pem", "key.pem", "ca.pem"))
    if cert_path.exists() and key_path.exists() and ca_path.exists():
        return cert_path, key_path, ca_path
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca = CertificateAuthority.create(now=now, common_name="openscws DM server CA")
    key = generate_key("rsa")
    csr = parse_csr(
        build_csr(
            key, common_name=hosts[0], organization="openscws DM server", hosts=hosts
        ).public_bytes(serialization.Encoding.PEM)
    )
    issued = ca.sign(csr, now=now, hosts=hosts)
    atomic_write(key_path, (key_to_pem(key),), 0o600)
    atomic_write(ca_path, (ca.cert_pem,), 0o644)
    atomic_write(cert_path, (issued.pem + ca.cert_pem,), 0o644)
    return cert_path, key_path, ca_path


class _Connection(asyncio.Protocol):
    """One TLS connection: records in through a MemoryBIO pair, HTTP/1.1 through h11."""

    def __init__(self, server: DmServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.tls: ssl.SSLObject | None = None  # made once the ClientHello picks the context
        self.hello: ClientHelloReader | None = ClientHelloReader()
        self.http = h11.Connection(h11.SERVER, max_incomplete_event_size=16384)
        self.open = False
        self.busy = False
        self.info = TlsInfo()
        self.timer: asyncio.TimerHandle | None = None
        self.request: h11.Request | None = None
        self.body = bytearray()
        self.peek: PskIdentityPeek | None = PskIdentityPeek() if server.tls.keys else None
        self.held: bytearray | None = None
        self.peer = "-"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]) if isinstance(peer, tuple) and peer else "-"
        self._arm(HANDSHAKE_TIMEOUT_S)
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.server.connections.discard(self)

    def _arm(self, delay: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(delay, self.close)

    def _flush(self) -> None:
        data = self.outgoing.read()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if self.open:
            with contextlib.suppress(ssl.SSLError):
                self._ssl.unwrap()
        self._flush()
        self.transport.close()

    @property
    def _ssl(self) -> ssl.SSLObject:
        assert self.tls is not None
        return self.tls

    def _wrap(self, context: ssl.SSLContext) -> ssl.SSLObject:
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_side=True)
        return self.tls

    def data_received(self, data: bytes) -> None:
        if self.hello is not None:  # the ClientHello picks the context (`DmTls.context_for`)
            try:
                hello = self.hello.feed(data)
            except HelloError:  # not a ClientHello OpenSSL would take: it sends the alert
                hello = None
                context = self.server.tls.context
            else:
                if hello is None:
                    return
                context = self.server.tls.context_for(hello.cipher_suites)
            data, self.hello = self.hello.buffered, None
            self._wrap(context)
        if self.held is not None:  # waiting for the PSK's key: keep the bytes in order
            self.held += data
            return
        if self.peek is not None and not self.open:
            identity = self.peek.feed(data)
            if self.peek.done:
                self.peek = None
            if identity is not None and self.server.tls.keys is not None:
                self.held = bytearray(data)
                if self.transport is not None:
                    self.transport.pause_reading()
                task = asyncio.get_running_loop().create_task(self._fetch(identity))
                self.server.tasks.add(task)
                task.add_done_callback(self.server.tasks.discard)
                return
        self._feed(data)

    async def _fetch(self, identity: str) -> None:
        keys = self.server.tls.keys
        assert keys is not None
        try:
            key = await self.server.in_thread(keys.lookup, identity)
        except Exception:  # the table's contract says it does not raise
            log.exception("DM server: PSK lookup failed")
            key = None
        self.server.tls.prefetched(self._ssl, identity, key)
        held, self.held = bytes(self.held or b""), None
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.resume_reading()
        self._feed(held)

    def _feed(self, data: bytes) -> None:
        self.incoming.write(data)
        if not self.open:
            self.server.tls.active = self._ssl
            try:
                self._ssl.do_handshake()
            except ssl.SSLWantReadError:
                self._flush()
                return
            except ssl.SSLError as exc:
                self._flush()  # the alert OpenSSL wrote
                log.info("DM server: TLS handshake refused: %s", exc.reason or exc)
                if self.transport is not None:
                    self.transport.close()
                return
            finally:
                self.server.tls.active = None
            self._flush()
            self.open = True
            cipher = self._ssl.cipher()
            self.info = TlsInfo(
                self._ssl.version(),
                cipher[0] if cipher else None,
                self._ssl.getpeercert(binary_form=True),
                self.server.tls.psk_identity(self._ssl),
            )
            self._arm(IDLE_TIMEOUT_S)
        plain = bytearray()
        while True:
            try:
                chunk = self._ssl.read(16384)
            except ssl.SSLWantReadError:
                break
            except (ssl.SSLZeroReturnError, ssl.SSLError):
                self.close()
                return
            if not chunk:  # the peer's close_notify: answer it and close
                self.close()
                return
            plain += chunk
        self._flush()
        if plain:
            self._arm(IDLE_TIMEOUT_S)
            self.http.receive_data(bytes(plain))
            self._next()

    def eof_received(self) -> bool | None:
        with contextlib.suppress(h11.RemoteProtocolError):
            self.http.receive_data(b"")
        return None

    def _send(self, event: Any) -> None:
        try:
            data = self.http.send(event)
        except h11.LocalProtocolError:
            self.close()
            return
        if data:
            try:
                self._ssl.write(data)
            except ssl.SSLError:
                self.close()
                return
            self._flush()

    def _answer(self, answer: DmAnswer) -> None:
        headers = [(k, v) for k, v in answer.headers]
        headers.append(("Content-Length", str(len(answer.body))))
        self._send(h11.Response(status_code=answer.status, headers=headers))
        if answer.body:
            self._send(h11.Data(data=answer.body))
        self._send(h11.EndOfMessage())
        if self.http.our_state is h11.MUST_CLOSE or self.http.their_state is h11.MUST_CLOSE:
            self.close()
            return
        try:
            self.http.start_next_cycle()
        except h11.LocalProtocolError:
            self.close()
            return
        self._next()

    def _next(self) -> None:
        while not self.busy:
            try:
                event = self.http.next_event()
            except h11.RemoteProtocolError as exc:
                if self.http.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    self._answer(_text(exc.error_status_hint, "bad HTTP request"))
                self.close()
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                self.request = event
                self.body = bytearray()
                length = dict(event.headers).get(b"content-length")
                if length is not None and length.isdigit() and int(length) > MAX_BODY:
                    self._answer(_text(413, "message too large", ("Connection", "close")))
                    self.close()
                    return
            elif isinstance(event, h11.Data):
                self.body += event.data
                if len(self.body) > MAX_BODY:
                    self._answer(_text(413, "message too large", ("Connection", "close")))
                    self.close()
                    return
            elif isinstance(event, h11.EndOfMessage):
                self._dispatch()
            elif isinstance(event, h11.ConnectionClosed):
                self.close()
                return

    def _dispatch(self) -> None:
        assert self.request is not None
        r = self.request
        req = DmRequest(
            r.method.decode("ascii", "replace"),
            r.target.decode("ascii", "replace"),
            {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in r.headers},
            bytes(self.body),
            self.info,
            self.peer,
        )
        self.busy = True
        task = asyncio.get_running_loop().create_task(self._run(req))
        self.server.tasks.add(task)
        task.add_done_callback(self.server.tasks.discard)

    async def _run(self, req: DmRequest) -> None:
        try:
            answer = await self.server.in_thread(self.server.service.handle, req)
        except Exception:
            log.exception("DM server: the request failed")
            answer = _text(500, "internal error")
        self.busy = False
        if self.transport is not None and not self.transport.is_closing():
            self._answer(answer)


@dataclass(eq=False)
class DmServer:
    service: DmService
    tls: DmTls
    server: asyncio.Server | None = None
    port: int = 0
    connections: set[_Connection] = field(default_factory=set)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    executor: ThreadPoolExecutor = field(init=False)

    def __post_init__(self) -> None:
        # As many worker threads as the database pool keeps connections: more would take
        # overflow connections, opened and closed again request after request.
        self.executor = ThreadPoolExecutor(self.service.workers, thread_name_prefix="dm")

    async def in_thread[**P, T](self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`fn` in one of the server's worker threads (the database blocks)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}{DM_PATH}"

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for c in list(self.connections):
            c.close()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=5)
        if self.server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.server.wait_closed(), 5)
        self.executor.shutdown(wait=False, cancel_futures=True)


async def start_dm_server(
    service: DmService, tls: DmTls, *, host: str = "127.0.0.1", port: int = 0
) -> DmServer:
    """Serves `service` over HTTPS on host:port (0: a free port)."""
    dm = DmServer(service, tls)
    loop = asyncio.get_running_loop()
    dm.server = await loop.create_server(lambda: _Connection(dm), host, port, backlog=256)
    dm.port = int(dm.server.sockets[0].getsockname()[1])
    log.info("DM server on https://%s:%d%s", host, dm.port, DM_PATH)
    return dm
