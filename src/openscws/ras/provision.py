"""Puts a card and an admin server in step: the card's admin agent holds the same PSK and OTA
keys the server has for it (what a card issuer's personalisation does once per card).

Fresh keys are made whenever either side lacks them or they differ; the card's side is written
first, so a crash in between only means new keys next time. The server's OTA counter starts at
the card's last accepted one, so the next trigger is above it."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, replace

from openscws.agent.credentials import ADMIN_TAR, AgentCredentials, AgentSecrets
from openscws.ids import default_agent_id, default_psk_identity
from openscws.ras.accounts import key_checksum
from openscws.ras.service import RasService
from openscws.uicc.keystore import SecretStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AdminEndpoint:
    """Where the card's agent calls when a trigger does not say."""

    address: str
    port: int
    host: str
    uri: str


def ensure_card_admin(
    service: RasService,
    card_secrets: SecretStore,
    *,
    iccid: str,
    msisdn: str,
    endpoint: AdminEndpoint,
) -> bool:
    """Registers the card with the server and provisions its agent; True when keys were made."""
    agent = AgentSecrets(card_secrets)
    creds = agent.credentials()
    known = service.card(iccid)
    # A key change the card committed but whose end the server has not recorded yet leaves
    # the server one identity behind: still in step (the job's retry settles it).
    if (
        creds is not None
        and known is not None
        and (known.psk_identity == creds.psk_identity or known.psk_identity in creds.previous_psks)
    ):
        wanted = replace(
            creds,
            server_address=endpoint.address,
            server_port=endpoint.port,
            server_host=endpoint.host,
            server_uri=endpoint.uri,
        )
        if wanted != creds:
            agent.set_credentials(wanted)
        return False
    if known is not None:
        log.info("card %s: keys out of step with the admin server, making new ones", iccid)
        service.remove_card(iccid)
    psk, kic, kid = (secrets.token_bytes(16) for _ in range(3))
    identity = default_psk_identity(iccid)
    agent_id = default_agent_id(iccid)
    agent.set_credentials(
        AgentCredentials(
            agent_id=agent_id,
            psk_identity=identity,
            psk_key=psk,
            server_address=endpoint.address,
            server_port=endpoint.port,
            server_host=endpoint.host,
            server_uri=endpoint.uri,
            tar=ADMIN_TAR,
            kic_keys={1: kic},
            kid_keys={1: kid},
        )
    )
    service.add_card(
        iccid,
        msisdn,
        psk_identity=identity,
        psk_key=psk,
        agent_id=agent_id,
        ota_tar=ADMIN_TAR,
        kic_key=kic,
        kid_key=kid,
        ota_counter=agent.counters().get(ADMIN_TAR, 0),
    )
    service.accounts.audit(
        "local:enrol",
        "card.create",
        iccid,
        "ok",
        detail=(
            f"psk-identity {identity}, PSK check {key_checksum(psk)}, "
            f"KIc 12 check {key_checksum(kic)}, KID 12 check {key_checksum(kid)}"
            + (" (re-registered: the keys were out of step)" if known is not None else "")
        ),
    )
    log.info("card %s registered with the admin server as %r", iccid, identity)
    return True
