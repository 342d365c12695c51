"""Remote administration end to end, in one process but over real sockets: the admin server
builds a trigger, the local sender hands it to the gateway's SMS entry point, the card checks it
(SMS-PP download ENVELOPE), opens a BIP client channel, runs PSK-TLS and the Amd B session, and
applies the campaign's content in one transaction; the page then comes through 3516."""

from __future__ import annotations

import asyncio
import urllib.request
from dataclasses import replace
from pathlib import Path

from e2e_wire import free_port

from openscws.aio.stack import Stack, start_stack, under
from openscws.config import Settings


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


async def _wait_done(stack: Stack, campaign: int, timeout: float = 30.0) -> dict[str, int]:
    assert stack.admin is not None
    service = stack.admin.service
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        progress = service.campaign_progress(campaign)
        if progress.get("done", 0) + progress.get("failed", 0) == sum(progress.values()):
            return progress
        assert loop.time() < deadline, f"campaign stuck: {progress}"
        await asyncio.sleep(0.05)


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
            progress = await _wait_done(stack, campaign.id)
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
            progress = await _wait_done(stack, campaign.id)
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
            assert (await _wait_done(stack, campaign.id))["done"] == 1
            (entry,) = service.session_logs(settings.card.iccid)
            assert "TLSv1.2 PSK-" in entry.detail[0], entry.detail
            assert "3DES" not in entry.detail[0]
            assert "GCM" in entry.detail[0] or "CHACHA20" in entry.detail[0], entry.detail
        finally:
            await stack.stop()

    asyncio.run(main())
