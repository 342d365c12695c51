"""`ensure_card_admin`: the card's agent and the admin server in step, also halfway through
a key change (the card committed it, the server has not recorded it yet)."""

from __future__ import annotations

import time
from pathlib import Path

from ras_contract import POLICY

from openscws.agent.credentials import AgentSecrets, KeyChange
from openscws.ras.db import RasDatabase
from openscws.ras.provision import AdminEndpoint, ensure_card_admin
from openscws.ras.service import RasService
from openscws.ras.vault import Vault
from openscws.store.cardimage import CardImage

ICCID = "8988211000000000003"
ENDPOINT = AdminEndpoint("127.0.0.1", 4443, "localhost", "/scws/admin")


def test_in_step_also_while_a_key_change_is_unrecorded(
    tmp_path: Path, sqlite_db: RasDatabase, vault: Vault
) -> None:
    ras = RasService(sqlite_db, vault, POLICY)
    image = CardImage.create(tmp_path / "card", iccid=ICCID, now=int(time.time()))
    try:
        assert ensure_card_admin(ras, image, iccid=ICCID, msisdn="+1555", endpoint=ENDPOINT)
        assert not ensure_card_admin(ras, image, iccid=ICCID, msisdn="+1555", endpoint=ENDPOINT)
        agent = AgentSecrets(image)
        creds = agent.credentials()
        assert creds is not None
        # The card took new keys; the server still knows the old identity.
        change = KeyChange(f"{creds.psk_identity}#k1", bytes(32), 2, b"k" * 16, 2, b"d" * 16)
        agent.set_credentials(creds.rekeyed(change))
        assert not ensure_card_admin(ras, image, iccid=ICCID, msisdn="+1555", endpoint=ENDPOINT)
        known = ras.card(ICCID)
        assert known is not None
        assert known.psk_identity == creds.psk_identity  # not re-registered with new keys
        # Out of step for real (neither identity): new keys on both sides.
        agent.set_credentials(creds.rekeyed(change).settled())
        assert ensure_card_admin(ras, image, iccid=ICCID, msisdn="+1555", endpoint=ENDPOINT)
    finally:
        image.close()
