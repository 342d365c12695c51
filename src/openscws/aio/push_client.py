"""The terminal's OMA Push Client and the SCWS Push Gateway.

`PushClient` is a SIP user agent: it REGISTERs its contact with the OMA push feature tag for
every application registered on its PUSH-CAI API (digest authentication when the registrar
challenges, refresh at half the granted lifetime), takes a MESSAGE only from a configured PPG
identity (`P-Asserted-Identity` from a trusted proxy, else From) and for an application it
serves, and hands the push to that application by HTTP POST. Refusals: 403 foreign sender,
488 no such application, 415 content type, 400 malformed; 480 when the application did not
take it.

PUSH-CAI, the project's reading (OMA-TS-PushCAI's binding was not readable to us): a loopback
HTTP API, `PUT /push-cai/apps/<application id>` with the application's delivery URL as a
text/plain body registers it, `DELETE` the same path unregisters; deliveries are
`POST <delivery URL>` with the push's Content-Type, `X-Wap-Application-Id` and body.

`ScwsPushGateway` registers for `x-oma-application:push.scws` and forwards each push to the
SCWS Gateway's SCWS-6 endpoint (`Scws6Endpoint`), which checks it and hands it to the card in
the SMS-PP data download ENVELOPE, as an SMS."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from openscws.aio.http_small import (
    ConnectionPool,
    HttpReply,
    HttpRequest,
    SmallHttpServer,
    is_loopback,
    post,
)
from openscws.aio.sip_endpoint import Peer, SipEndpoint, SipTimeout, new_branch, new_tag
from openscws.errors import HttpError
from openscws.ota.sms import SmsAddress
from openscws.push.content import (
    FEATURE_TAG,
    SCWS_APP_ID,
    PushRefused,
    app_id_of,
    check_push,
    feature_value,
)
from openscws.push.digest import Challenge, DigestError, authorization
from openscws.push.gateway import SCWS6_PATH, check_scws6, push_tpdu
from openscws.push.sip import (
    NameAddr,
    SipError,
    SipRequest,
    SipResponse,
    request,
    response_to,
    uri_target,
)
from openscws.terminal.engine import SmsResult, SmsStatus

__all__ = ["PushClient", "PushClientConfig", "Scws6Endpoint", "ScwsPushGateway"]

log = logging.getLogger(__name__)

CAI_PREFIX: Final = "/push-cai/apps/"
MIN_REFRESH: Final = 5.0
UNREGISTER_WAIT: Final = 2.0
"""Seconds the closing client waits for its Expires: 0 REGISTER to be answered."""


@dataclass(frozen=True, slots=True)
class PushClientConfig:
    aor: str
    """The device's SIP address of record, e.g. sip:device1@scws.test."""
    registrar: str
    """`sip:host:port[;transport=tcp]`: the registrar (the PPG's own, or the proxy's)."""
    trusted_ppg: frozenset[str]
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    expires: int = 600
    sip_host: str = "127.0.0.1"
    sip_port: int = 0
    transport: str = "UDP"
    cai_host: str = "127.0.0.1"
    cai_port: int = 0


class PushClient:
    def __init__(self, config: PushClientConfig) -> None:
        self.config = config
        self.sip = SipEndpoint(self._on_sip, host=config.sip_host, port=config.sip_port)
        self.cai = SmallHttpServer(self._on_cai, host=config.cai_host, port=config.cai_port)
        self.apps: dict[str, str] = {}
        self.registered = asyncio.Event()
        self.granted: int | None = None
        self.announced: frozenset[str] = frozenset()
        """The application ids in the feature tag of the registration in force."""
        self._call_id = f"{secrets.token_hex(8)}@{config.sip_host}"
        self._cseq = 0
        self._refresher: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._apps_pool = ConnectionPool(max_idle=8)
        """Kept-alive connections to the applications' delivery URLs."""

    async def start(self) -> None:
        await self.sip.start()
        await self.cai.start()
        self._refresher = asyncio.create_task(self._keep_registered())

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        with contextlib.suppress(SipTimeout, SipError, OSError, TimeoutError):
            if self.granted:
                async with asyncio.timeout(UNREGISTER_WAIT):
                    await self.register(expires=0)
        await self.cai.close()
        await self.sip.close()
        await self._apps_pool.close()

    @property
    def cai_url(self) -> str:
        return self.cai.url(CAI_PREFIX)

    @property
    def contact_uri(self) -> str:
        user = self.config.aor.split(":", 1)[1].split("@", 1)[0]
        transport = self.config.transport.lower()
        return f"sip:{user}@{self.config.sip_host}:{self.sip.port};transport={transport}"

    # -- registration --------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Registered, with every application registered on PUSH-CAI in the feature tag:
        from here a push to any of them can be routed to this client."""
        return self.registered.is_set() and self.announced == frozenset(self.apps)

    def _contact(self, expires: int, apps: frozenset[str]) -> str:
        values = ",".join(sorted(feature_value(a) for a in apps))
        tag = f';{FEATURE_TAG}="{values}"' if values else ""
        return f"<{self.contact_uri}>{tag};expires={expires}"

    async def register(self, *, expires: int | None = None) -> int:
        """One REGISTER (answering a digest challenge once); the final status."""
        lifetime = self.config.expires if expires is None else expires
        host, port, transport = uri_target(self.config.registrar)
        domain = self.config.aor.split("@", 1)[1]
        apps = frozenset(self.apps)
        extra: list[tuple[str, str]] = []
        for _ in range(2):
            self._cseq += 1
            req = request(
                "REGISTER",
                f"sip:{domain}",
                [
                    ("Via", self.sip.via(transport, new_branch())),
                    ("Max-Forwards", "70"),
                    ("From", f"<{self.config.aor}>;tag={new_tag()}"),
                    ("To", f"<{self.config.aor}>"),
                    ("Call-ID", self._call_id),
                    ("CSeq", f"{self._cseq} REGISTER"),
                    ("Contact", self._contact(lifetime, apps)),
                    ("Expires", str(lifetime)),
                    *extra,
                ],
            )
            answer = await self.sip.request(req, host, port, transport)
            if answer.status in (401, 407) and not extra and self.config.password is not None:
                name = "WWW-Authenticate" if answer.status == 401 else "Proxy-Authenticate"
                try:
                    challenge = Challenge.parse(answer.header(name) or "")
                except DigestError as e:
                    log.warning("push client: registrar challenge: %s", e)
                    return answer.status
                header = authorization(
                    challenge,
                    username=self.config.username or domain,
                    password=self.config.password,
                    method="REGISTER",
                    uri=f"sip:{domain}",
                    cnonce=secrets.token_hex(8),
                )
                auth_name = "Authorization" if answer.status == 401 else "Proxy-Authorization"
                extra = [(auth_name, header)]
                continue
            if 200 <= answer.status < 300:
                self.granted = self._granted(answer, lifetime) if lifetime else None
                if lifetime:
                    self.announced = apps
                    self.registered.set()
                else:
                    self.announced = frozenset()
                    self.registered.clear()
            return answer.status
        return 401

    def _granted(self, answer: SipResponse, asked: int) -> int:
        for value in answer.values("Contact"):
            try:
                contact = NameAddr.parse(value)
            except SipError:
                continue
            if contact.uri == self.contact_uri and contact.params.get("expires", "").isdigit():
                return int(contact.params["expires"])
        header = answer.header("Expires")
        return int(header) if header and header.isdigit() else asked

    async def _keep_registered(self) -> None:
        backoff = 1.0
        while True:
            # Cleared before the REGISTER: an application that comes or goes while it is in
            # flight sets it again, so the next round announces it.
            self._changed.clear()
            try:
                status = await self.register()
            except (SipTimeout, SipError, OSError) as e:
                status = 0
                log.warning("push client: REGISTER to %s: %s", self.config.registrar, e)
            if 200 <= status < 300 and self.granted:
                backoff = 1.0
                wait = max(self.granted / 2, MIN_REFRESH)
                log.info("push client: registered %s for %ds", self.config.aor, self.granted)
            else:
                log.warning("push client: REGISTER answered %s", status)
                wait, backoff = backoff, min(backoff * 2, 60.0)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._changed.wait()

    # -- pushes in -----------------------------------------------------------------------------

    async def _on_sip(self, req: SipRequest, peer: Peer) -> SipResponse:
        tag = new_tag()
        if req.method == "OPTIONS":
            return response_to(req, 200, to_tag=tag)
        try:
            push = check_push(req, trusted=self.config.trusted_ppg, serves=frozenset(self.apps))
        except PushRefused as e:
            log.info("push client: refused %s from %s:%d: %s", req.method, peer.host, peer.port, e)
            return response_to(req, e.status, to_tag=tag)
        ok = await self._deliver(self.apps[push.app_id], push.app_id, push.content_type, push.body)
        return response_to(req, 200 if ok else 480, to_tag=tag)

    async def _deliver(self, url: str, app_id: str, content_type: str, body: bytes) -> bool:
        headers = (("Content-Type", content_type), ("X-Wap-Application-Id", app_id))
        try:
            answer = await post(url, body, headers, pool=self._apps_pool)
        except (OSError, TimeoutError) as e:
            log.info("push client: application at %s: %s", url, e)
            return False
        return 200 <= answer.status < 300

    # -- PUSH-CAI ------------------------------------------------------------------------------

    async def _on_cai(self, req: HttpRequest) -> HttpReply:
        if not is_loopback(req.peer):
            return HttpReply(403, b"PUSH-CAI takes local applications only\n")
        if not req.path.startswith(CAI_PREFIX):
            return HttpReply(404, b"no such PUSH-CAI resource\n")
        try:
            app_id = app_id_of(urllib.parse.unquote(req.path[len(CAI_PREFIX) :]))
        except ValueError:
            return HttpReply(404, b"unknown application id\n")
        if req.method == "PUT":
            url = req.body.decode("utf-8", "replace").strip()
            parsed = urllib.parse.urlsplit(url)
            if parsed.scheme != "http" or not is_loopback(parsed.hostname or ""):
                return HttpReply(400, b"the delivery URL is http:// on loopback\n")
            self.apps[app_id] = url
            self._changed.set()
            return HttpReply(204)
        if req.method == "DELETE":
            found = self.apps.pop(app_id, None) is not None
            self._changed.set()
            return HttpReply(204 if found else 404)
        return HttpReply(405, b"PUT or DELETE\n", (("Allow", "PUT, DELETE"),))


def register_app(cai_url: str, app_id: str, delivery_url: str) -> None:
    """PUSH-CAI registration, blocking (for a thread)."""
    url = cai_url + urllib.parse.quote(app_id, safe="")
    request = urllib.request.Request(
        url, data=delivery_url.encode(), method="PUT", headers={"Content-Type": "text/plain"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        if response.status != 204:
            raise OSError(f"PUSH-CAI answered {response.status}")


class ScwsPushGateway:
    """Registers for the SCWS application id and forwards each push to SCWS-6."""

    PATH: Final = "/scws-push-gateway"

    def __init__(self, cai_url: str, scws6_url: str, *, host: str = "127.0.0.1") -> None:
        self.cai_url = cai_url
        self.scws6_url = scws6_url
        self.http = SmallHttpServer(self._on, host=host, max_body=4096)
        self._pool = ConnectionPool(max_idle=8)
        """Kept-alive connections to SCWS-6."""

    async def start(self) -> None:
        await self.http.start()
        await asyncio.to_thread(register_app, self.cai_url, SCWS_APP_ID, self.http.url(self.PATH))

    async def close(self) -> None:
        await self.http.close()
        await self._pool.close()

    async def _on(self, req: HttpRequest) -> HttpReply:
        if not is_loopback(req.peer):
            return HttpReply(403)
        if req.path != self.PATH or req.method != "POST":
            return HttpReply(404)
        status = await self._forward(req)
        return HttpReply(204 if 200 <= status < 300 else 502)

    async def _forward(self, req: HttpRequest) -> int:
        headers = (
            ("Content-Type", req.header("content-type") or ""),
            ("X-Wap-Application-Id", SCWS_APP_ID),
        )
        try:
            answer = await post(self.scws6_url, req.body, headers, pool=self._pool)
        except (OSError, TimeoutError) as e:
            log.info("SCWS push gateway: SCWS-6: %s", e)
            return 503
        if not 200 <= answer.status < 300:
            log.info("SCWS push gateway: SCWS-6 answered %d", answer.status)
        return answer.status


Deliver = Callable[[bytes], Awaitable[SmsResult]]


class Scws6Endpoint:
    """The SCWS Gateway's SCWS-6 endpoint: `POST /scws-push` from loopback with one command
    packet; the card gets it as an SMS-PP data download (`deliver` takes the SMS-DELIVER
    TPDU, as `Gateway.deliver_sms` does). `200` carries the card's answer as the local SMS
    entry point does (`X-SMS-Status`, `X-SMS-SW`, the PoR user data as body); `503` when the
    card's toolkit stayed busy."""

    def __init__(
        self,
        deliver: Deliver,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        originating: str = "12345",
    ) -> None:
        self.deliver = deliver
        self.originating = SmsAddress.from_digits(originating, 0x81)
        self.http = SmallHttpServer(self._on, host=host, port=port, max_body=1024)

    @property
    def url(self) -> str:
        return self.http.url(SCWS6_PATH)

    async def start(self) -> None:
        await self.http.start()

    async def close(self) -> None:
        await self.http.close()

    async def _on(self, req: HttpRequest) -> HttpReply:
        if req.path != SCWS6_PATH:
            return HttpReply(404, b"only /scws-push here\n")
        if req.method != "POST":
            return HttpReply(405, b"POST a command packet\n", (("Allow", "POST"),))
        try:
            packet = check_scws6(
                loopback=is_loopback(req.peer),
                content_type=req.header("content-type"),
                app_id=req.header("x-wap-application-id"),
                body=req.body,
            )
        except HttpError as e:
            return HttpReply(e.status, f"{e.reason}\n".encode())
        tpdu = push_tpdu(packet, self.originating, datetime.now(UTC))
        try:
            result = await self.deliver(tpdu)
        except ConnectionError:
            return HttpReply(503, b"the card is gone\n", (("Retry-After", "5"),))
        # As the local SMS entry point: the card's answer (a PoR, if any) in the body.
        headers = (
            ("X-SMS-Status", result.status.value),
            ("X-SMS-SW", f"{result.sw:04X}"),
            ("Content-Type", "application/octet-stream"),
        )
        if result.status is SmsStatus.BUSY:
            return HttpReply(503, result.data, (*headers, ("Retry-After", "5")))
        return HttpReply(200, result.data, headers)
