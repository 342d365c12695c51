"""A fleet of cards in one process (`openscws up --cards N`): each card with its own terminal,
ICCID, MSISDN and SIP URI, all enrolled with the admin server. A campaign by SMS reaches every
card through the one local SMS entry point, which routes by MSISDN (a second card's trigger
goes to the second card). A campaign by SIP push over 20 cards, with Kamailio (Debian
`kamailio`, the shipped deploy/kamailio/kamailio.cfg) as registrar and proxy (`sip.proxy`),
finishes and every card serves the new content."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from e2e_wire import free_port, wait_campaign
from sqlalchemy import select
from test_e2e_push_peers import kamailio

from openscws.aio.ppg_store import PpgStore, ppg_push
from openscws.aio.push_embedded import EmbeddedPush
from openscws.aio.stack import Stack, fleet_settings, start_stack, under
from openscws.config import Settings
from openscws.ids import iccid_problem

pytestmark = pytest.mark.e2e

FLEET = 20


def _settings(tmp_path: Path, **admin: object) -> Settings:
    s = under(Settings(), tmp_path)
    return replace(
        s,
        gateway=replace(
            s.gateway,
            port_map={3516: free_port(), 4116: free_port()},
            sms_port=free_port(),
            poll_interval=0.2,
        ),
        admin=replace(
            s.admin,
            port=0,
            trigger_interval=0.1,
            retry_base=0.5,
            retry_max=2.0,
            **admin,  # type: ignore[arg-type]
        ),
    )


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=20) as r:
        return r.status, r.read()


def _http_bases(stack: Stack) -> list[str]:
    return [f"http://127.0.0.1:{g.local_port(3516)}" for g in stack.gateways]


async def _campaign_reaches_every_card(stack: Stack, page: bytes, timeout: float) -> None:
    assert stack.admin is not None
    service = stack.admin.service
    await asyncio.to_thread(service.put_content, "/index.html", page, "text/html; charset=utf-8")
    campaign = await asyncio.to_thread(service.create_campaign, "fleet")
    stack.admin.server.wake()
    progress = await wait_campaign(stack, campaign.id, timeout)
    assert progress["done"] == sum(progress.values()) == len(stack.gateways), progress
    for base in _http_bases(stack):
        assert await asyncio.to_thread(_get, base + "/index.html") == (200, page), base


def test_fleet_settings_per_card(tmp_path: Path) -> None:
    settings = under(Settings(), tmp_path)
    second = fleet_settings(settings, 1, port_base=20000)
    third = fleet_settings(settings, 2, port_base=20000)
    assert fleet_settings(settings, 0) is settings
    assert second.card.data_dir == tmp_path / "card-2"
    assert (second.card.msisdn, third.card.msisdn) == ("+15550100002", "+15550100003")
    assert iccid_problem(second.card.iccid) is None
    assert second.card.iccid != settings.card.iccid
    assert second.gateway.port_map == {3516: 20000, 4116: 20001}
    assert third.gateway.port_map == {3516: 20002, 4116: 20003}
    assert second.gateway.sms_port == 0
    assert fleet_settings(settings, 1, port_base=0).gateway.port_map == {3516: 0, 4116: 0}


def test_three_cards_by_sms_each_its_own(tmp_path: Path) -> None:
    settings = _settings(tmp_path)

    async def main() -> None:
        stack = await start_stack(settings, demo=True, api=False, cards=3, fleet_port=0)
        try:
            assert stack.admin is not None
            iccids = [stack.image.meta.iccid, *(c.image.meta.iccid for c in stack.fleet)]
            assert len(set(iccids)) == 3
            enrolled = {c.iccid for c in await asyncio.to_thread(stack.admin.service.list_cards)}
            assert set(iccids) <= enrolled
            await _campaign_reaches_every_card(stack, b"<h1>fleet by sms</h1>", 60.0)
            # each card's trigger went to that card: one admin session each
            for iccid in iccids:
                logs = await asyncio.to_thread(stack.admin.service.session_logs, iccid)
                assert [entry.outcome for entry in logs] == ["done"], iccid
        finally:
            await stack.stop()

    asyncio.run(main())


@pytest.mark.peer
def test_twenty_cards_by_sip_push_through_kamailio(
    tmp_path: Path, free_port: Callable[[], int], need_tool: Callable[[str, str], str]
) -> None:
    sip_port = free_port()
    settings = _settings(
        tmp_path, trigger="sip-push", pap_url=f"http://127.0.0.1:{free_port()}/pap"
    )
    settings = replace(settings, sip=replace(settings.sip, proxy=f"sip:127.0.0.1:{sip_port}"))

    async def main() -> None:
        stack = await start_stack(settings, demo=True, api=False, cards=FLEET, fleet_port=0)
        try:
            push = stack.extra["push"]
            assert isinstance(push, EmbeddedPush)
            assert len(push.cards) == FLEET
            async with asyncio.timeout(30):
                while not all(c.client.ready and c.client.apps for c in push.cards):
                    await asyncio.sleep(0.1)
            # the push clients registered with Kamailio, not with the PPG's own registrar
            aor = f"sip:{settings.card.msisdn}@{settings.sip.domain}"
            store = PpgStore(push.ppg_database_url)
            try:
                assert store.contacts(aor, 0.0) == []
                await _campaign_reaches_every_card(stack, b"<h1>fleet by sip push</h1>", 100.0)
                with store.db.read() as s:
                    states = [r.state for r in s.execute(select(ppg_push.c.state)).all()]
            finally:
                store.close()
            assert states == ["delivered"] * FLEET, states
        finally:
            await stack.stop()

    with kamailio(tmp_path, sip_port, need_tool):
        asyncio.run(main())
    log = (tmp_path / "kamailio.log").read_text(errors="replace")
    relayed = {
        line.rsplit(" to ", 1)[1].split("@")[0]
        for line in log.splitlines()
        if "relaying MESSAGE from sip:ppg@" in line
    }
    assert relayed == {f"sip:+155501000{k:02d}" for k in range(1, FLEET + 1)}
