"""The admin server's SIP push trigger: PAP to a real PPG, the job's outcome from the PPG's
result notification (delivered) or its PAP code (undeliverable)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from ras_contract import POLICY, T0, add_card
from sqlalchemy import text

from openscws.aio.ppg import Ppg, PpgConfig
from openscws.aio.ppg_store import DuplicatePush, PpgStore
from openscws.aio.sip_endpoint import Peer, SipEndpoint, new_branch, new_tag
from openscws.config import AdminSettings, ConfigError, Settings
from openscws.push.ppg import DeliveryPolicy, Initiator
from openscws.push.sip import SipRequest, SipResponse, request, response_to
from openscws.ras.db import RasDatabase, RasError
from openscws.ras.push_sender import SipPushSender
from openscws.ras.senders import DeliveryStatus, SendError
from openscws.ras.service import RasService
from openscws.ras.vault import Vault

PACKET = b"\x00\x10" + bytes(16)
MSISDN = "+15550100001"


def test_push_trigger_follows_the_ppg(tmp_path: Path) -> None:
    async def main() -> None:
        ppg = Ppg(
            PpgConfig(
                database_url=f"sqlite:///{tmp_path / 'ppg.db'}",
                initiators=(Initiator("ras", "pw"),),
                plmn_domain="scws.test",
                policy=DeliveryPolicy(max_attempts=2, backoff=0.05, backoff_cap=0.05),
                poll=0.05,
            )
        )
        got: list[bytes] = []

        async def on(req: SipRequest, peer: Peer) -> SipResponse:
            got.append(req.body)
            return response_to(req, 200, to_tag=new_tag())

        device = SipEndpoint(on)
        await ppg.start()
        await device.start()
        sender = SipPushSender(ppg.pap_url, username="ras", password="pw", poll=0.2)
        try:
            # not registered: the PPG gives up, the sender says why in PAP's terms
            with pytest.raises(SendError, match=r"PAP undeliverable 4001"):
                await sender.send(MSISDN, PACKET)
            aor = f"sip:{MSISDN}@scws.test"
            register = request(
                "REGISTER",
                "sip:scws.test",
                [
                    ("Via", device.via("UDP", new_branch())),
                    ("From", f"<{aor}>;tag=1"),
                    ("To", f"<{aor}>"),
                    ("Call-ID", "r1"),
                    ("CSeq", "1 REGISTER"),
                    ("Contact", f"<sip:d@127.0.0.1:{device.port}>"),
                ],
            )
            answer = await device.request(register, "127.0.0.1", ppg.sip.port, "UDP")
            assert answer.status == 200
            result = await sender.send(MSISDN, PACKET)
            assert result.status is DeliveryStatus.DELIVERED
            assert got == [PACKET]
            wrong = SipPushSender(ppg.pap_url, username="ras", password="guess")
            with pytest.raises(SendError, match="refused the push initiator"):
                await wrong.send(MSISDN, PACKET)
            await wrong.close()
        finally:
            await sender.close()
            await device.close()
            await ppg.close()

    asyncio.run(main())


def test_trigger_setting() -> None:
    assert Settings().admin.trigger == "sms"
    with pytest.raises(ConfigError, match="sms or sip-push"):
        Settings(admin=AdminSettings(trigger="carrier-pigeon"))


def test_campaign_trigger_is_stored_and_claimed(sqlite_db: RasDatabase, vault: Vault) -> None:
    ras = RasService(sqlite_db, vault, POLICY)
    add_card(ras, 1)
    ras.put_content("/a.txt", b"a", "text/plain", now=T0)
    with pytest.raises(RasError, match="trigger must be one of sms, sip-push"):
        ras.create_campaign("bad", trigger="fax", now=T0)
    ras.create_campaign("by push", trigger="sip-push", now=T0)
    (work,) = ras.claim_triggers("me", 10, T0 + timedelta(seconds=1))
    assert work.trigger == "sip-push"
    assert ras.finish_job(work.job_id, "me", "done", "ok", T0 + timedelta(seconds=2))
    ras.create_campaign("default", now=T0 + timedelta(seconds=3))
    (work,) = ras.claim_triggers("me", 10, T0 + timedelta(seconds=4))
    assert work.trigger is None


def test_two_ppgs_share_one_postgresql(postgres: Any) -> None:
    """Several PPG processes over one PostgreSQL: the ppg_* tables sit beside the admin
    server's schema, and a push is leased to one PPG at a time."""
    name = postgres.create_database()
    first, second = PpgStore(postgres.url(name)), PpgStore(postgres.url(name))
    try:
        first.add(
            push_id="p1",
            initiator="ras",
            address="WAPPUSH=+1555/TYPE=PLMN",
            target="sip:+1555@scws.test",
            app_id="x-oma-application:push.scws",
            content_type="application/octet-stream",
            body=PACKET,
            next_at=0.0,
            created=0.0,
        )
        with pytest.raises(DuplicatePush):
            second.add(
                push_id="p1",
                initiator="ras",
                address="a",
                target="t",
                app_id="a",
                content_type="c",
                body=b"",
                next_at=0.0,
                created=0.0,
            )
        claimed = first.claim_due(10.0, owner="a", lease=60.0, limit=10)
        assert [p.push_id for p in claimed] == ["p1"]
        assert second.claim_due(10.0, owner="b", lease=60.0, limit=10) == []
        # once the lease has run out (the first PPG died), the other takes it over
        assert [p.push_id for p in second.claim_due(71.0, owner="b", lease=60.0, limit=10)] == [
            "p1"
        ]
        second.finish(claimed[0].id, state="delivered", code=1000, desc="SIP 200", now=72.0)
        record = first.get("p1")
        assert record is not None
        assert (record.state, record.code) == ("delivered", 1000)
    finally:
        first.close()
        second.close()
        postgres.drop_database(name)


def test_cli_campaign_trigger(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from openscws.cli import main

    data = tmp_path / "ras"

    def admin(*words: str) -> int:
        return main(["admin", *words, "--data-dir", str(data), "-q"])

    assert admin("init") == 0
    page = tmp_path / "a.html"
    page.write_bytes(b"a")
    assert admin("content", "put", "/a.html", str(page)) == 0
    assert admin("card", "add", "8988211000000000003", "--msisdn", "+15550100001") == 0
    capsys.readouterr()
    with pytest.raises(SystemExit):
        admin("campaign", "create", "x", "--trigger", "fax")
    assert "invalid choice: 'fax'" in capsys.readouterr().err
    assert admin("campaign", "create", "by push", "--trigger", "sip-push") == 0
    db = RasDatabase(f"sqlite:///{data / 'ras.db'}")
    try:
        with db.read() as s:
            assert s.execute(text("SELECT trigger FROM campaigns")).scalars().all() == ["sip-push"]
    finally:
        db.dispose()
