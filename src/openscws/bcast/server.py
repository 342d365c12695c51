"""The BSM's network shell: the provisioning endpoints over HTTP (uvicorn, each request handed
to `BsmCore` in a worker thread: the database and the BSF's Zn block), and the LTKM pusher on
UDP: each LTKM goes to the requesting terminal's address on the LTKM port (4359, IANA
"omabcastltkm"), and one that asks for an acknowledgement is sent again every `resend_s`
seconds, at most `tries` times, until the terminal's verification message arrives.

Subscribers with a B-TID get their keys from the BSF over Zn (`ZnKeys`): the BSM's NAF_Id uses
the MBMS Ua protocol id; MRK and MUK follow `openscws.bcast.keys`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from openscws.bcast.bsm import BsmCore, Push, UserKeys
from openscws.bcast.keys import mrk_from_naf_key
from openscws.bcast.ltkm import check_verification
from openscws.bcast.mikey import LTKM_UDP_PORT, MikeyError, decode
from openscws.bsf.server import (
    MAX_BODY,
    AppServer,
    Receive,
    Scope,
    Send,
    SmallApp,
    send_answer,
    serve_app,
    server_url,
)
from openscws.bsf.service import HttpAnswer
from openscws.gba.client import GbaError, fetch_naf_keys
from openscws.gba.kdf import UA_MBMS

__all__ = ["BsmServer", "LtkmPusher", "ZnKeys", "first_keys", "start_bsm"]

log = logging.getLogger(__name__)

RESEND_S: Final = 2.0
TRIES: Final = 5


@dataclass(slots=True)
class ZnKeys:
    """`keys_of` for B-TIDs: asks the BSF on Zn (from a worker thread, on the event loop),
    keeps the answer until the bootstrapping lifetime ends."""

    zn_url: str
    token: str = field(repr=False)
    fqdn: str
    loop: asyncio.AbstractEventLoop
    _cache: dict[str, tuple[float, UserKeys]] = field(default_factory=dict, repr=False)

    def __call__(self, btid: str) -> UserKeys | None:
        hit = self._cache.get(btid)
        if hit is not None and hit[0] > time.time():
            return hit[1]
        future = asyncio.run_coroutine_threadsafe(
            fetch_naf_keys(self.zn_url, self.token, btid, self.fqdn, UA_MBMS), self.loop
        )
        try:
            got = future.result(timeout=15)
        except (GbaError, TimeoutError) as exc:
            log.warning("BSM: Zn: %s", exc)
            return None
        if got is None:
            return None
        keys = user_keys_of_zn(got)
        if keys is not None:
            self._cache[btid] = (time.time() + 300.0, keys)
        return keys


def first_keys(
    *sources: Callable[[str], UserKeys | None],
) -> Callable[[str], UserKeys | None]:
    """`keys_of` asking each source in turn (the RK store for NAIs, then Zn for B-TIDs)."""

    def keys_of(user: str) -> UserKeys | None:
        for source in sources:
            found = source(user)
            if found is not None:
                return found
        return None

    return keys_of


def user_keys_of_zn(answer: Mapping[str, str]) -> UserKeys | None:
    """The BSF's Zn JSON (keys in hex) to SRK and SMK: GBA_U gives Ks_ext_NAF and Ks_int_NAF,
    GBA_ME gives Ks_NAF (TS 33.220 §4.5.3, §5.3.3)."""
    try:
        if answer.get("gba_type") == "GBA_U":
            ext, muk = bytes.fromhex(answer["ks_ext_naf"]), bytes.fromhex(answer["ks_int_naf"])
        else:
            ext = bytes.fromhex(answer["ks_naf"])
            muk = ext
    except (KeyError, ValueError):
        return None
    return UserKeys(srk=mrk_from_naf_key(ext), smk=muk)


@dataclass(slots=True)
class _Pending:
    push: Push
    smk: bytes
    address: tuple[str, int]
    tries: int = 0


class LtkmPusher(asyncio.DatagramProtocol):
    """Sends LTKMs, resends those waiting for an acknowledgement, matches acknowledgements."""

    def __init__(self, resend_s: float = RESEND_S, tries: int = TRIES) -> None:
        self.resend_s = resend_s
        self.tries = tries
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: dict[tuple[str, int, int], _Pending] = {}
        self.acknowledged = 0
        self.given_up = 0
        self._task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.DatagramTransport)
        self.transport = transport
        self._task = asyncio.get_running_loop().create_task(self._resend(), name="bsm-ltkm")

    def push(self, push: Push, smk: bytes, address: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(push.datagram, address)
        if push.ltkm.ack:
            key = (push.username, int.from_bytes(push.ltkm.key_id), push.ltkm.counter)
            self.pending[key] = _Pending(push, smk, address, 1)

    def push_all(self, pushes: Iterable[Push], smk: bytes, address: tuple[str, int]) -> None:
        for push in pushes:
            self.push(push, smk, address)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        try:
            message = decode(data)
        except MikeyError:
            log.info("BSM: a datagram from %s that is not MIKEY", addr[0])
            return
        for key, pending in list(self.pending.items()):
            if key[1] != message.header.csb_id or pending.address[0] != addr[0]:
                continue
            try:
                check_verification(data, pending.push.ltkm, pending.smk)
            except MikeyError:
                continue
            del self.pending[key]
            self.acknowledged += 1
            return
        log.info("BSM: an acknowledgement from %s that matches no LTKM", addr[0])

    async def _resend(self) -> None:
        while True:
            await asyncio.sleep(self.resend_s)
            for key, pending in list(self.pending.items()):
                if pending.tries >= self.tries:
                    del self.pending[key]
                    self.given_up += 1
                    log.warning("BSM: LTKM for %s not acknowledged, given up", key[0])
                    continue
                pending.tries += 1
                if self.transport is not None:
                    self.transport.sendto(pending.push.datagram, pending.address)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self.transport is not None:
            self.transport.close()


class _BsmApp(SmallApp):
    """The BSF's ASGI app shape, with the client's address handed on."""

    def __init__(
        self, handler: Callable[[str, str, dict[str, str], bytes, str], HttpAnswer]
    ) -> None:
        super().__init__("BSM", lambda *_: HttpAnswer(500))
        self.bsm_handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        client = (scope.get("client") or ("", 0))[0]
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > MAX_BODY:
                await send_answer(send, HttpAnswer(413))
                return
            if not message.get("more_body"):
                break
        args = (scope["method"], scope["path"], headers, bytes(body), client)
        try:
            if "authorization" in headers:
                answer = await asyncio.to_thread(self.bsm_handler, *args)
            else:  # answered before any lookup (a challenge): no worker thread needed
                answer = self.bsm_handler(*args)
        except Exception:
            log.exception("BSM: the request failed")
            answer = HttpAnswer(500)
        await send_answer(send, answer)


@dataclass
class BsmServer:
    core: BsmCore
    http: AppServer
    pusher: LtkmPusher
    url: str
    udp_port: int

    async def stop(self) -> None:
        self.pusher.close()
        self.http.should_exit = True
        if self.http.task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self.http.task), 5)
            except TimeoutError:
                self.http.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self.http.task


async def start_bsm(
    core: BsmCore,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    udp_port: int = 0,
    ltkm_port: int = LTKM_UDP_PORT,
    resend_s: float = RESEND_S,
    tries: int = TRIES,
) -> BsmServer:
    """Serves the provisioning endpoints on host:port; LTKMs leave from udp_port (0: any) to
    the terminal's address on `ltkm_port`."""
    loop = asyncio.get_running_loop()
    transport, pusher = await loop.create_datagram_endpoint(
        lambda: LtkmPusher(resend_s, tries), local_addr=(host, udp_port)
    )
    bound = transport.get_extra_info("sockname")[1]

    def handle(
        method: str, path: str, headers: dict[str, str], body: bytes, client: str
    ) -> HttpAnswer:
        answer = core.handle(method, path, headers, body, time.time())
        if answer.pushes and client:
            loop.call_soon_threadsafe(
                pusher.push_all, answer.pushes, answer.smk, (client, ltkm_port)
            )
        return HttpAnswer(answer.status, answer.headers, answer.body)

    try:
        http = await serve_app(_BsmApp(handle), host, port, None)
    except BaseException:
        pusher.close()
        raise
    url = server_url("http", host, http.port)
    log.info(
        "BSM %s: provisioning on %s, LTKMs from UDP %d to port %d", core.fqdn, url, bound, ltkm_port
    )
    return BsmServer(core, http, pusher, url, bound)
