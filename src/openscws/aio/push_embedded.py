"""The embedded SIP push path of `openscws up` with `admin.trigger = "sip-push"`: a PPG (its own
registrar, on loopback) and, for each card of the run (`up --cards N`), the terminal's push client
registered as `sip:<MSISDN>@<sip.domain>`, the SCWS Push Gateway and the SCWS-6 endpoint that
hands pushes to that card's gateway. No external service: the PPG reaches the push clients'
contacts on loopback. With `sip.proxy` set, the PPG sends every MESSAGE through that proxy and
the push clients register there instead (a real registrar and proxy, e.g. the Kamailio of
deploy/kamailio). The PPG's state is `<admin data dir>/ppg.db`. With `sip.ppg_process` (the
default) the PPG runs in a child process (openscws.aio.ppg_process); otherwise in this one."""

from __future__ import annotations

import secrets
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from openscws.aio.ppg import Ppg, PpgConfig
from openscws.aio.ppg_process import PpgProcess, start_ppg_process
from openscws.aio.push_client import (
    Deliver,
    PushClient,
    PushClientConfig,
    Scws6Endpoint,
    ScwsPushGateway,
)
from openscws.config import Settings
from openscws.push.ppg import Initiator
from openscws.push.sip import uri_target

__all__ = ["EmbeddedPush", "PushCard", "PushFleet", "start_embedded_push", "start_push_cards"]

DOMAIN: Final = "scws.test"
"""The default `sip.domain`."""
PPG_IDENTITY: Final = f"sip:ppg@{DOMAIN}"


def ppg_identity(domain: str) -> str:
    """The PPG's SIP identity in `domain` (the From of its MESSAGEs)."""
    return f"sip:ppg@{domain}"


@dataclass
class PushCard:
    """One card's terminal side of the push path."""

    msisdn: str
    client: PushClient
    scws6: Scws6Endpoint
    gateway: ScwsPushGateway | None = None

    async def stop(self) -> None:
        if self.gateway is not None:
            await self.gateway.close()
        await self.client.close()
        await self.scws6.close()


@dataclass
class PushFleet:
    """The terminals' side of the push path for a set of cards."""

    cards: list[PushCard] = field(default_factory=list)

    async def stop(self) -> None:
        for card in self.cards:
            await card.stop()


@dataclass
class EmbeddedPush:
    ppg: Ppg | PpgProcess
    """The PPG: in this process, or the handle on its own."""
    cards: list[PushCard] = field(default_factory=list)

    @property
    def ppg_database_url(self) -> str:
        """The PPG's delivery state and registrar bindings (open a `PpgStore` on it)."""
        return self.ppg.config.database_url

    @property
    def client(self) -> PushClient:
        """Card 1's push client."""
        return self.cards[0].client

    @property
    def scws6(self) -> Scws6Endpoint:
        """Card 1's SCWS-6 endpoint."""
        return self.cards[0].scws6

    async def stop(self) -> None:
        try:
            for card in self.cards:
                await card.stop()
        finally:
            await self.ppg.close()


async def start_embedded_push(
    settings: Settings, cards: Sequence[tuple[str, Deliver]]
) -> EmbeddedPush:
    """The PPG and, per (MSISDN, delivery) of `cards`, a push client, SCWS Push Gateway and
    SCWS-6 endpoint; the delivery hands the card an SMS-DELIVER (a terminal's
    `Gateway.deliver_sms`)."""
    admin = settings.admin
    url = urllib.parse.urlsplit(admin.pap_url)
    if url.scheme != "http" or not url.hostname or not url.port:
        raise ValueError(f"admin.pap_url must be http://HOST:PORT/PATH, got {admin.pap_url!r}")
    domain = settings.sip.domain
    identity = ppg_identity(domain)
    proxy = settings.sip.proxy or None
    passwords = {msisdn: secrets.token_urlsafe(16) for msisdn, _ in cards}
    config = PpgConfig(
        database_url=f"sqlite:///{admin.data_dir / 'ppg.db'}",
        initiators=(Initiator(admin.pap_username, admin.pap_password),),
        identity=identity,
        pap_host=url.hostname,
        pap_port=url.port,
        pap_path=url.path or "/",
        proxy=proxy,
        plmn_domain=domain,
        realm=domain,
        registrar_users=passwords,
    )
    ppg: Ppg | PpgProcess
    if settings.sip.ppg_process:
        ppg = await start_ppg_process(config)
        sip_port = ppg.sip_port
    else:
        ppg = Ppg(config)
        await ppg.start()
        sip_port = ppg.sip.port
    push = EmbeddedPush(ppg)
    try:
        fleet = await start_push_cards(
            cards,
            registrar=proxy or f"sip:127.0.0.1:{sip_port}",
            domain=domain,
            passwords=passwords,
        )
        push.cards = fleet.cards
    except BaseException:
        await push.stop()
        raise
    return push


async def start_push_cards(
    cards: Sequence[tuple[str, Deliver]],
    *,
    registrar: str,
    domain: str = DOMAIN,
    passwords: Mapping[str, str] | None = None,
) -> PushFleet:
    """Per (MSISDN, delivery) of `cards`: a push client registered as `sip:<MSISDN>@<domain>`
    with `registrar` (a proxy's, or a PPG's own), trusting the PPG identity of `domain`, its
    SCWS Push Gateway and its SCWS-6 endpoint. `passwords` (by MSISDN) answer a registrar's
    digest challenge."""
    identity = ppg_identity(domain)
    transport = uri_target(registrar)[2]
    fleet = PushFleet()
    try:
        for msisdn, deliver in cards:
            card = PushCard(
                msisdn,
                PushClient(
                    PushClientConfig(
                        aor=f"sip:{msisdn}@{domain}",
                        registrar=registrar,
                        trusted_ppg=frozenset({identity}),
                        username=msisdn,
                        password=None if passwords is None else passwords[msisdn],
                        transport=transport,
                    )
                ),
                Scws6Endpoint(deliver),
            )
            fleet.cards.append(card)
            await card.scws6.start()
            await card.client.start()
            card.gateway = ScwsPushGateway(card.client.cai_url, card.scws6.url)
            await card.gateway.start()
    except BaseException:
        await fleet.stop()
        raise
    return fleet
