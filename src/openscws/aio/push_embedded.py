"""The embedded SIP push path of `openscws up` with `admin.trigger = "sip-push"`: a PPG (its own
registrar, on loopback), the terminal's push client registered with it as
`sip:<MSISDN>@<domain>`, the SCWS Push Gateway and the SCWS-6 endpoint that hands pushes to
this gateway's card. No external service: the PPG reaches the push client's contact on
loopback. The PPG's state is `<admin data dir>/ppg.db`."""

from __future__ import annotations

import secrets
import urllib.parse
from dataclasses import dataclass
from typing import Final

from openscws.aio.gateway import Gateway
from openscws.aio.ppg import Ppg, PpgConfig
from openscws.aio.push_client import PushClient, PushClientConfig, Scws6Endpoint, ScwsPushGateway
from openscws.config import Settings
from openscws.push.ppg import Initiator

__all__ = ["EmbeddedPush", "start_embedded_push"]

DOMAIN: Final = "scws.test"
PPG_IDENTITY: Final = f"sip:ppg@{DOMAIN}"


@dataclass
class EmbeddedPush:
    ppg: Ppg
    client: PushClient
    gateway: ScwsPushGateway
    scws6: Scws6Endpoint

    async def stop(self) -> None:
        await self.gateway.close()
        await self.client.close()
        await self.scws6.close()
        await self.ppg.close()


async def start_embedded_push(settings: Settings, gateway: Gateway) -> EmbeddedPush:
    admin = settings.admin
    url = urllib.parse.urlsplit(admin.pap_url)
    if url.scheme != "http" or not url.hostname or not url.port:
        raise ValueError(f"admin.pap_url must be http://HOST:PORT/PATH, got {admin.pap_url!r}")
    password = secrets.token_urlsafe(16)
    ppg = Ppg(
        PpgConfig(
            database_url=f"sqlite:///{admin.data_dir / 'ppg.db'}",
            initiators=(Initiator(admin.pap_username, admin.pap_password),),
            identity=PPG_IDENTITY,
            pap_host=url.hostname,
            pap_port=url.port,
            pap_path=url.path or "/",
            plmn_domain=DOMAIN,
            realm=DOMAIN,
            registrar_users={settings.card.msisdn: password},
        )
    )
    await ppg.start()
    scws6 = Scws6Endpoint(gateway.deliver_sms)
    client = PushClient(
        PushClientConfig(
            aor=f"sip:{settings.card.msisdn}@{DOMAIN}",
            registrar=f"sip:127.0.0.1:{ppg.sip.port}",
            trusted_ppg=frozenset({PPG_IDENTITY}),
            username=settings.card.msisdn,
            password=password,
        )
    )
    push_gateway: ScwsPushGateway | None = None
    try:
        await scws6.start()
        await client.start()
        push_gateway = ScwsPushGateway(client.cai_url, scws6.url)
        await push_gateway.start()
    except BaseException:
        if push_gateway is not None:
            await push_gateway.close()
        await client.close()
        await scws6.close()
        await ppg.close()
        raise
    return EmbeddedPush(ppg, client, push_gateway, scws6)
