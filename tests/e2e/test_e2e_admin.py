"""Remote administration end to end, in one process but over real sockets: the admin server
builds a trigger, the local sender hands it to the gateway's SMS entry point, the card checks it
(SMS-PP download ENVELOPE), opens a BIP client channel, runs PSK-TLS and the Amd B session, and
applies the campaign's content in one transaction; the page then comes through 3516."""

from __future__ import annotations

import asyncio
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest
from e2e_wire import free_port, wait_campaign

from openscws.agent.credentials import AgentSecrets
from openscws.aio.stack import start_stack, under
from openscws.config import Settings
from openscws.ota import KeyRef
from openscws.ota.packet import CommandRejected, check_command
from openscws.ras.trigger import CardOtaKeys, build_trigger


def _settings(tmp_path: Path) -> Settings:
    s = under(Settings(), tmp_path)
    return replace(
        s,
        gateway=replace(
            s.gateway,
            port_map={3516: free_port(), 4116: free_port()},
            sms_port=free_port(),
            poll_interval=0.2,
        ),
        admin=replace(s.admin, port=0, trigger_interval=0.1, retry_base=0.2, retry_max=1.0),
    )


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.read()


def test_campaign_updates_the_card_through_sms_bip_and_psk_tls(tmp_path: Path) -> None:
    settings = _settings(tmp_path)

    async def main() -> None:
        stack = await start_stack(settings, demo=True, api=False)
        try:
            assert stack.admin is not None
            service = stack.admin.service
            base = f"http://127.0.0.1:{settings.gateway.port_map[3516]}"
            status, before = await asyncio.to_thread(_get, base + "/index.html")
            assert status == 200
            assert b"new page" not in before
            service.put_content("/index.html", b"<h1>new page</h1>", "text/html; charset=utf-8")
            service.put_content("/extra/news.txt", b"fresh news", "text/plain; charset=utf-8")
            campaign = service.create_campaign("first")
            stack.admin.server.wake()
            progress = await wait_campaign(stack, campaign.id)
            assert progress["done"] == 1
            assert sum(progress.values()) == 1
            status, after = await asyncio.to_thread(_get, base + "/index.html")
            assert (status, after) == (200, b"<h1>new page</h1>")
            status, news = await asyncio.to_thread(_get, base + "/extra/news.txt")
            assert (status, news) == (200, b"fresh news")
            logs = service.session_logs(settings.card.iccid)
            assert logs
            assert logs[0].outcome == "done"
            assert any("commit" in line for line in logs[0].detail)
        finally:
            await stack.stop()

    asyncio.run(main())


def test_campaign_over_psk_3des(tmp_path: Path) -> None:
    """SCWS §11.1.1.1's TLS_PSK_WITH_3DES_EDE_CBC_SHA on the admin link: the server in its
    "compat" profile, the card's agent offering only that suite (both through GnuTLS: OpenSSL
    here has no 3DES); the session log shows the suite the handshake negotiated."""
    settings = _settings(tmp_path)
    settings = replace(
        settings,
        card=replace(
            settings.card,
            tls_profile="compat",
            admin_tls_suites=("TLS_PSK_WITH_3DES_EDE_CBC_SHA",),
        ),
        admin=replace(settings.admin, tls_profile="compat"),
    )

    async def main() -> None:
        stack = await start_stack(settings, demo=True, api=False)
        try:
            assert stack.admin is not None
            service = stack.admin.service
            service.put_content("/extra/3des.txt", b"over 3DES", "text/plain; charset=utf-8")
            campaign = service.create_campaign("3des")
            stack.admin.server.wake()
            progress = await wait_campaign(stack, campaign.id)
            assert progress["done"] == 1
            assert sum(progress.values()) == 1
            base = f"http://127.0.0.1:{settings.gateway.port_map[3516]}"
            status, body = await asyncio.to_thread(_get, base + "/extra/3des.txt")
            assert (status, body) == (200, b"over 3DES")
            (entry,) = service.session_logs(settings.card.iccid)
            assert entry.outcome == "done"
            assert entry.detail[0].endswith(": TLSv1.2 TLS_PSK_3DES_EDE_CBC_SHA1 (GnuTLS)"), (
                entry.detail
            )
        finally:
            await stack.stop()

    asyncio.run(main())


def test_campaign_modern_default_uses_openssl_aead(tmp_path: Path) -> None:
    """The defaults (card and admin "modern"): no 3DES, an AEAD PSK suite over TLS 1.2."""
    settings = _settings(tmp_path)

    async def main() -> None:
        stack = await start_stack(settings, demo=True, api=False)
        try:
            assert stack.admin is not None
            service = stack.admin.service
            service.put_content("/extra/m.txt", b"modern", "text/plain; charset=utf-8")
            campaign = service.create_campaign("modern")
            stack.admin.server.wake()
            assert (await wait_campaign(stack, campaign.id))["done"] == 1
            (entry,) = service.session_logs(settings.card.iccid)
            assert "TLSv1.2 PSK-" in entry.detail[0], entry.detail
            assert "3DES" not in entry.detail[0]
            assert "GCM" in entry.detail[0] or "CHACHA20" in entry.detail[0], entry.detail
        finally:
            await stack.stop()

    asyncio.run(main())


def test_key_rotation_campaign_then_the_next_session_and_trigger_use_the_new_keys(
    tmp_path: Path,
) -> None:
    """A "rotate-keys" campaign gives the card a new PSK, PSK identity and OTA keys in the
    job's card transaction; the server moves to them when the job is done; the next campaign
    triggers with the new KIc / KID version and runs PSK-TLS under the new identity, and the
    card then drops the old keys: a trigger sealed with them is refused."""

    settings = _settings(tmp_path)

    async def main() -> None:
        stack = await start_stack(settings, demo=True, api=False)
        try:
            assert stack.admin is not None
            service = stack.admin.service
            iccid = settings.card.iccid
            agent = AgentSecrets(stack.image)
            before_card = service.card(iccid)
            before = agent.credentials()
            assert before_card is not None
            assert before is not None
            campaign = service.create_key_rotation("new keys")
            assert [op.op for op in campaign.operations] == ["rotate-keys"]
            stack.admin.server.wake()
            progress = await wait_campaign(stack, campaign.id)
            assert progress["done"] == 1, service.campaign_cards(campaign.id)
            after_card = service.card(iccid)
            after = agent.credentials()
            assert after_card is not None
            assert after is not None
            # Both sides moved together: a new identity, the next key version, new keys.
            assert after.psk_identity == after_card.psk_identity != before.psk_identity
            assert after_card.ota_kic >> 4 == (before_card.ota_kic >> 4) % 15 + 1
            assert after.psk_key != before.psk_key
            assert service.psk_lookup(after.psk_identity) == after.psk_key
            assert service.psk_lookup(before.psk_identity) is None
            new_version = after_card.ota_kic >> 4
            assert after.kic_keys[new_version] != before.kic_keys[before_card.ota_kic >> 4]
            # The old keys are still accepted until a trigger names the new identity.
            assert after.previous_psks == {before.psk_identity: before.psk_key}
            # No key material in the job as stored, now that it is done.
            (row,) = service.campaign_cards(campaign.id)
            job = service.job(row.job_id)
            assert job is not None
            assert all(op.keys is None for op in job.operations)

            service.put_content("/after-rekey.txt", b"under new keys", "text/plain")
            second = service.create_campaign("content after rekey")
            stack.admin.server.wake()
            progress = await wait_campaign(stack, second.id)
            assert progress["done"] == 1, service.campaign_cards(second.id)
            base = f"http://127.0.0.1:{settings.gateway.port_map[3516]}"
            status, body = await asyncio.to_thread(_get, base + "/after-rekey.txt")
            assert (status, body) == (200, b"under new keys")
            settled = agent.credentials()
            assert settled is not None
            assert settled.previous_psks == {}
            assert set(settled.kic_keys) == {new_version}
            (log,) = service.session_logs(iccid, limit=1)
            assert log.outcome == "done"

            # A trigger sealed with the old keys (a counter well above the last) is refused
            # by the card's checks now; the same under the new keys is accepted.
            def trigger(ref: int, kic: bytes, kid: bytes) -> bytes:
                keys = CardOtaKeys(
                    tar=bytes.fromhex(before_card.ota_tar),
                    kic=KeyRef.from_byte(ref),
                    kid=KeyRef.from_byte(ref),
                    kic_key=kic,
                    kid_key=kid,
                )
                return build_trigger(
                    keys,
                    service.card(iccid).ota_counter + 10,  # type: ignore[union-attr]
                    admin_host="127.0.0.1",
                    admin_port=stack.admin.server.port,  # type: ignore[union-attr]
                    admin_uri="/scws/admin",
                    agent_id=None,
                    psk_identity=settled.psk_identity,
                )

            old_version = before_card.ota_kic >> 4
            table = agent.tar_table()
            with pytest.raises(CommandRejected):
                check_command(
                    trigger(
                        before_card.ota_kic,
                        before.kic_keys[old_version],
                        before.kid_keys[old_version],
                    ),
                    table,
                )
            check_command(
                trigger(
                    after_card.ota_kic,
                    settled.kic_keys[new_version],
                    settled.kid_keys[new_version],
                ),
                table,
            )
        finally:
            await stack.stop()

    asyncio.run(main())


def test_key_rotation_whose_end_the_server_never_recorded_is_retried_under_the_old_keys(
    tmp_path: Path,
) -> None:
    """The card commits the key change, but the server loses the session's end (as if it
    died before recording it). The job's lease runs out, the retry is triggered with the old
    keys, the card still takes them, reports the transaction committed, and only then does
    the server move to the new keys."""
    settings = _settings(tmp_path)
    settings = replace(settings, admin=replace(settings.admin, session_ttl=2.0))

    async def main() -> None:
        stack = await start_stack(settings, demo=False, api=False)
        try:
            assert stack.admin is not None
            service = stack.admin.service
            iccid = settings.card.iccid
            agent = AgentSecrets(stack.image)
            before = service.card(iccid)
            assert before is not None
            real_end = service.end_session
            lost: list[str] = []

            def lose_first_end(job_id: str, *args: object, **kwargs: object) -> bool:
                if not lost:
                    lost.append(job_id)
                    return False  # nothing recorded: the job stays in_session
                return real_end(job_id, *args, **kwargs)  # type: ignore[arg-type]

            service.end_session = lose_first_end  # type: ignore[method-assign]
            campaign = service.create_key_rotation("rekey")
            stack.admin.server.wake()
            progress = await wait_campaign(stack, campaign.id, timeout=60)
            assert progress["done"] == 1, service.campaign_cards(campaign.id)
            assert lost
            creds = agent.credentials()
            after = service.card(iccid)
            assert creds is not None
            assert after is not None
            assert after.psk_identity == creds.psk_identity != before.psk_identity
            (row,) = service.campaign_cards(campaign.id)
            assert row.attempts == 2
            (log, *_) = service.session_logs(iccid)
            assert any("committed in an earlier attempt" in line for line in log.detail), log
        finally:
            await stack.stop()

    asyncio.run(main())
