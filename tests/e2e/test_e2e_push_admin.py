"""A campaign triggered by OMA SIP Push end to end over real sockets (the embedded default of
`admin.trigger = "sip-push"`, with the PPG in its own process and in this one): admin server
-> PAP -> PPG -> SIP MESSAGE -> push client -> PUSH-CAI -> SCWS Push Gateway -> SCWS-6 -> the
card's SMS-PP download, which checks the trigger, opens the PSK-TLS admin session and takes the
new content. A replayed push reaches the card, which refuses it (PoR: counter too low) exactly
as a replayed SMS. A campaign that asks for the SMS trigger still goes by SMS. A PPG process
that dies is restarted and pushes go on."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from e2e_wire import free_port, wait_campaign
from sqlalchemy import select

from openscws.aio.ppg_process import PpgProcess
from openscws.aio.ppg_store import PpgStore, ppg_push
from openscws.aio.push_embedded import EmbeddedPush
from openscws.aio.stack import Stack, start_stack, under
from openscws.config import Settings
from openscws.ota.packet import PorStatus, ResponseContent
from openscws.ota.sms import response_packet_of


def _settings(tmp_path: Path, *, ppg_process: bool = True) -> Settings:
    s = under(Settings(), tmp_path)
    return replace(
        s,
        sip=replace(s.sip, ppg_process=ppg_process),
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
            retry_base=0.2,
            retry_max=1.0,
            trigger="sip-push",
            pap_url=f"http://127.0.0.1:{free_port()}/pap",
        ),
    )


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.read()


def _post(url: str, body: bytes) -> tuple[int, str, bytes]:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/octet-stream"}
    )
    with urllib.request.urlopen(request, timeout=10) as r:
        return r.status, r.headers.get("X-SMS-Status", ""), r.read()


@contextlib.contextmanager
def _ppg_store(push: EmbeddedPush) -> Iterator[PpgStore]:
    """The PPG's database, wherever the PPG runs."""
    store = PpgStore(push.ppg_database_url)
    try:
        yield store
    finally:
        store.close()


async def _ready_push(stack: Stack) -> EmbeddedPush:
    """The stack's push path, once card 1's push client has announced the SCWS application."""
    assert stack.admin is not None
    push = stack.extra["push"]
    assert isinstance(push, EmbeddedPush)
    async with asyncio.timeout(10):
        while not (push.client.ready and push.client.apps):
            await asyncio.sleep(0.05)
    return push


@pytest.mark.parametrize("ppg_process", [True, False], ids=["ppg-process", "ppg-inline"])
def test_campaign_by_sip_push_and_a_replay_refused(tmp_path: Path, ppg_process: bool) -> None:
    settings = _settings(tmp_path, ppg_process=ppg_process)

    async def main() -> None:
        stack = await start_stack(settings, demo=True, api=False)
        try:
            push = await _ready_push(stack)
            assert stack.admin is not None
            service = stack.admin.service
            base = f"http://127.0.0.1:{settings.gateway.port_map[3516]}"
            service.put_content("/index.html", b"<h1>pushed</h1>", "text/html; charset=utf-8")
            campaign = service.create_campaign("by push")
            stack.admin.server.wake()
            progress = await wait_campaign(stack, campaign.id, 40.0)
            assert progress["done"] == 1
            assert sum(progress.values()) == 1
            status, page = await asyncio.to_thread(_get, base + "/index.html")
            assert (status, page) == (200, b"<h1>pushed</h1>")
            assert isinstance(push.ppg, PpgProcess) is ppg_process
            # the PPG delivered it over SIP, and kept the packet it pushed
            with _ppg_store(push) as store, store.db.read() as s:
                rows = s.execute(select(ppg_push.c.state, ppg_push.c.body)).all()
            assert [r.state for r in rows] == ["delivered"]
            # the job keeps the PAP result code the console shows; the campaign its trigger
            assert [c.pap_code for c in service.campaign_cards(campaign.id)] == [1000]
            assert service.list_campaigns()[-1].trigger is None  # the server's default
            # a campaign may choose the SMS trigger while SIP push is the default
            service.put_content("/index.html", b"<h1>by sms</h1>", "text/html; charset=utf-8")
            second = service.create_campaign("by sms", trigger="sms")
            stack.admin.server.wake()
            assert (await wait_campaign(stack, second.id, 40.0))["done"] == 1
            assert [c.pap_code for c in service.campaign_cards(second.id)] == [None]
            assert service.list_campaigns()[-1].trigger == "sms"
            status, page = await asyncio.to_thread(_get, base + "/index.html")
            assert (status, page) == (200, b"<h1>by sms</h1>")
            with _ppg_store(push) as store, store.db.read() as s:
                assert len(s.execute(select(ppg_push.c.id)).all()) == 1  # no second push
            # the same packet again: the card takes the ENVELOPE and refuses the trigger
            status, sms_status, por = await asyncio.to_thread(_post, push.scws6.url, rows[0].body)
            assert (status, sms_status) == (200, "por")
            _, packet = response_packet_of(por)
            assert ResponseContent.decode(packet.sealed, 0).status == PorStatus.CNTR_LOW
        finally:
            await stack.stop()

    asyncio.run(main())


def test_a_ppg_process_that_dies_is_restarted_and_pushes_go_on(tmp_path: Path) -> None:
    settings = _settings(tmp_path)

    async def main() -> None:
        stack = await start_stack(settings, demo=True, api=False)
        try:
            push = await _ready_push(stack)
            assert stack.admin is not None
            assert isinstance(push.ppg, PpgProcess)
            first = push.ppg.pid
            os.kill(first, signal.SIGKILL)
            async with asyncio.timeout(30):
                while push.ppg.restarts == 0:
                    await asyncio.sleep(0.05)
            assert push.ppg.pid != first
            # the registrar's bindings are in the PPG's database: no new REGISTER needed
            service = stack.admin.service
            service.put_content("/index.html", b"<h1>after</h1>", "text/html; charset=utf-8")
            campaign = service.create_campaign("after the restart")
            stack.admin.server.wake()
            progress = await wait_campaign(stack, campaign.id, 40.0)
            assert progress["done"] == 1, progress
            base = f"http://127.0.0.1:{settings.gateway.port_map[3516]}"
            assert await asyncio.to_thread(_get, base + "/index.html") == (200, b"<h1>after</h1>")
            child = push.ppg.pid
        finally:
            await stack.stop()
        with pytest.raises(ProcessLookupError):
            os.kill(child, 0)  # stopped with the stack, not left behind

    asyncio.run(main())
