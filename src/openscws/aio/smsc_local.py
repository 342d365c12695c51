"""The terminal's local SMS entry point: a loopback HTTP endpoint through which another
process (the remote administration server's `LocalTerminalSender`, curl) hands a card an
SMS, as the network would over the air.

    POST /sms?msisdn=<the card's MSISDN> HTTP/1.1
    Content-Type: application/vnd.3gpp.sms
    <the SMS-DELIVER TPDU, 3GPP TS 23.040 §9.2.2.1>

answers `200` with the card's response data (the PoR user data, or nothing) and
`X-SMS-Status: delivered | por | busy | error` (`terminal.engine.SmsStatus`) plus `X-SMS-SW`,
the status word in hex; `400` for a TPDU that does not decode, `415` for another media type,
`404` for an MSISDN no card here has, `503` when the card is gone. An SMS-DELIVER names only
its originator, so the destination is the `msisdn` query parameter, as an SMSC knows it from
the submission. With `routes` (MSISDN -> the card's delivery, `openscws up --cards N`) the
endpoint routes by it; without (one card) any or no MSISDN goes to that card. Keep-alive is
served (`aio/http_small.py`).

It is local only: it listens on a loopback address (another `host` is refused), closes any
connection whose peer is not a loopback address, and serves at most `max_connections` at once
(default MAX_CONNECTIONS): one more is answered `503` with `Retry-After` and closed. Nothing
but processes on this machine can hand a card an SMS."""

from __future__ import annotations

import ipaddress
import logging
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any, Final

from openscws.aio.http_small import HttpReply, HttpRequest, SmallHttpServer, is_loopback, peer_host
from openscws.errors import ConfigError, DecodeError
from openscws.ota.sms import SmsDeliver
from openscws.terminal.engine import SmsResult

log = logging.getLogger(__name__)

SMS_MEDIA_TYPE = "application/vnd.3gpp.sms"
SMS_PATH = "/sms"
MAX_TPDU = 200
"""Bytes of request body accepted: an SMS-DELIVER is at most 164 octets."""
MAX_CONNECTIONS: Final = 16
"""Connections served at once; the admin server's sender uses one or two."""


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_loopback_peer(peername: Any) -> bool:
    """Whether a socket peer name (host, port[, ...]) is a loopback address."""
    host = peer_host(peername)
    return host is not None and is_loopback(host)


Deliver = Callable[[bytes], Awaitable[SmsResult]]


def msisdn_key(msisdn: str) -> str:
    """An MSISDN as routes compare it: its digits (a leading '+' or spaces do not count)."""
    return "".join(c for c in msisdn if c.isdigit())


class SmsLocalEndpoint:
    """Serves `POST /sms` on `host:port` (port 0: the OS picks one, see `port`)."""

    def __init__(
        self,
        deliver: Deliver,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_connections: int = MAX_CONNECTIONS,
        routes: dict[str, Deliver] | None = None,
    ) -> None:
        address = _address(host)
        if address is None or not address.is_loopback:
            raise ConfigError(f"the local SMS entry point listens on loopback only, not {host!r}")
        self.deliver = deliver
        self.host = host
        self.routes: dict[str, Deliver] | None = None
        """MSISDN digits -> that card's delivery; None: every SMS goes to `deliver`."""
        if routes is not None:
            self.set_routes(routes)
        self.http = SmallHttpServer(
            self._answer,
            host=host,
            port=port,
            max_body=MAX_TPDU,
            max_connections=max_connections,
            loopback_only=True,
        )

    def set_routes(self, routes: dict[str, Deliver]) -> None:
        """Routes SMS by the MSISDN they are sent to (`?msisdn=`): MSISDN -> delivery."""
        self.routes = {msisdn_key(m): d for m, d in routes.items()}

    @property
    def refused(self) -> int:
        """Connections refused (not loopback, or over max_connections)."""
        return self.http.refused

    async def start(self) -> None:
        await self.http.start()
        log.info("local SMS entry point on %s", self.url)

    @property
    def port(self) -> int:
        return self.http.port

    @property
    def url(self) -> str:
        return self.http.url(SMS_PATH)

    async def close(self) -> None:
        await self.http.close()

    def _route(self, request: HttpRequest) -> tuple[str, Deliver | None]:
        query = urllib.parse.parse_qs(request.target.partition("?")[2])
        msisdn = (query.get("msisdn") or [""])[0]
        if self.routes is None:
            return msisdn, self.deliver
        if not msisdn:
            return msisdn, self.deliver
        return msisdn, self.routes.get(msisdn_key(msisdn))

    async def _answer(self, request: HttpRequest) -> HttpReply:
        if request.path != SMS_PATH:
            return HttpReply(404, b"only /sms here\n")
        if request.method != "POST":
            return HttpReply(405, b"POST an SMS-DELIVER TPDU\n", (("Allow", "POST"),))
        media = (request.header("content-type") or "").split(";", 1)[0].strip().lower()
        if media != SMS_MEDIA_TYPE:
            return HttpReply(415, f"Content-Type must be {SMS_MEDIA_TYPE}\n".encode())
        msisdn, deliver = self._route(request)
        if deliver is None:
            return HttpReply(404, f"no card with MSISDN {msisdn[:24]!r} here\n".encode())
        try:
            SmsDeliver.decode(request.body)
        except (DecodeError, ValueError) as e:
            return HttpReply(400, f"not an SMS-DELIVER TPDU: {e}\n".encode())
        try:
            result = await deliver(request.body)
        except ConnectionError:
            return HttpReply(503, b"the card is gone\n", (("Retry-After", "5"),))
        except ValueError as e:
            return HttpReply(400, f"{e}\n".encode())
        headers = (
            ("X-SMS-Status", result.status.value),
            ("X-SMS-SW", f"{result.sw:04X}"),
            ("Content-Type", "application/octet-stream"),
        )
        return HttpReply(200, result.data, headers)
