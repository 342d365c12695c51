"""The Push Proxy Gateway over real sockets: PAP in over HTTP (the initiator's PapClient), SIP
MESSAGE out to a device that registered with the PPG's own registrar (digest), delivery state in
SQLite, retries, deliver-before expiry, result notifications; refusals in PAP's terms."""

from __future__ import annotations

import asyncio
import contextlib
import urllib.request
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from openscws.aio.http_small import HttpReply, HttpRequest, SmallHttpServer
from openscws.aio.pap_client import PapClient, PapClientError
from openscws.aio.ppg import Ppg, PpgConfig
from openscws.aio.sip_endpoint import Peer, SipEndpoint, new_branch, new_tag
from openscws.push import pap
from openscws.push.content import SCWS_APP_ID, check_push
from openscws.push.digest import Challenge, authorization
from openscws.push.pap import (
    Address,
    BadMessageResponse,
    CancelResponse,
    MessageState,
    PushResponse,
    ResultNotificationMessage,
    ResultNotificationResponse,
    StatusQueryResponse,
)
from openscws.push.ppg import DeliveryPolicy, Initiator
from openscws.push.sip import SipRequest, SipResponse, request, response_to

PACKET = bytes.fromhex("0016 15 160A 12 12 B20100") + bytes(14)
AOR = "sip:device1@scws.test"
FAST = DeliveryPolicy(max_attempts=3, backoff=0.05, backoff_cap=0.1)


class Device:
    """A SIP UA standing in for the terminal's push client: answers MESSAGE with `status`."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.received: list[SipRequest] = []
        self.sip = SipEndpoint(self._on)

    async def _on(self, req: SipRequest, peer: Peer) -> SipResponse:
        self.received.append(req)
        return response_to(req, self.status, to_tag=new_tag())

    async def register(
        self, ppg: Ppg, *, password: str | None = "pw", transport: str = "UDP"
    ) -> int:
        contact = f"<sip:device1@127.0.0.1:{self.sip.port};transport={transport.lower()}>"
        status = 0
        auth: tuple[tuple[str, str], ...] = ()
        for cseq in (1, 2):
            req = request(
                "REGISTER",
                "sip:scws.test",
                [
                    ("Via", self.sip.via(transport, new_branch())),
                    ("From", f"<{AOR}>;tag={new_tag()}"),
                    ("To", f"<{AOR}>"),
                    ("Call-ID", "reg-1"),
                    ("CSeq", f"{cseq} REGISTER"),
                    ("Contact", contact),
                    ("Expires", "600"),
                    *auth,
                ],
            )
            answer = await self.sip.request(req, "127.0.0.1", ppg.sip.port, transport)
            status = answer.status
            if status != 401 or password is None:
                return status
            challenge = Challenge.parse(answer.header("WWW-Authenticate") or "")
            header = authorization(
                challenge,
                username="device1",
                password=password,
                method="REGISTER",
                uri="sip:scws.test",
                cnonce="c0ffee",
            )
            auth = (("Authorization", header),)
        return status


class Initiator_:
    """The push initiator's notification URL."""

    def __init__(self) -> None:
        self.notes: list[ResultNotificationMessage] = []
        self.http = SmallHttpServer(self._on)

    async def _on(self, req: HttpRequest) -> HttpReply:
        doc = pap.parse(req.body)
        assert isinstance(doc, ResultNotificationMessage)
        self.notes.append(doc)
        answer = ResultNotificationResponse(push_id=doc.push_id, code=1000, address=doc.address)
        return HttpReply(200, pap.encode(answer), (("Content-Type", "application/xml"),))


@contextlib.asynccontextmanager
async def stack(
    tmp_path: Path, **config: object
) -> AsyncIterator[tuple[Ppg, Device, Initiator_, PapClient]]:
    settings = {
        "database_url": f"sqlite:///{tmp_path / 'ppg.db'}",
        "initiators": (Initiator("ras", "s3cret"),),
        "registrar_users": {"device1": "pw"},
        "policy": FAST,
        "poll": 0.05,
        **config,
    }
    ppg = Ppg(PpgConfig(**settings))  # type: ignore[arg-type]
    device = Device()
    notes = Initiator_()
    await ppg.start()
    await device.sip.start()
    await notes.http.start()
    client = PapClient(ppg.pap_url, username="ras", password="s3cret")
    try:
        yield ppg, device, notes, client
    finally:
        await notes.http.close()
        await device.sip.close()
        await ppg.close()


async def until(check: object, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():  # type: ignore[operator]
            await asyncio.sleep(0.02)


@pytest.mark.parametrize("transport", ["UDP", "TCP"])
def test_push_is_delivered_and_notified(tmp_path: Path, transport: str) -> None:
    async def main() -> None:
        async with stack(tmp_path) as (ppg, device, notes, client):
            assert await device.register(ppg, transport=transport) == 200
            answer = await asyncio.to_thread(
                client.push, "job-1", Address.sip(AOR), PACKET, notify_to=notes.http.url("/n")
            )
            assert isinstance(answer, PushResponse)
            assert answer.code == 1001
            await until(lambda: notes.notes)
            note = notes.notes[0]
            assert (note.push_id, note.state, note.code) == ("job-1", MessageState.DELIVERED, 1000)
            [message] = device.received
            push = check_push(
                message, trusted=frozenset({"sip:ppg@scws.test"}), serves=frozenset({SCWS_APP_ID})
            )
            assert push.body == PACKET
            assert message.top_via.transport == transport
            status = await asyncio.to_thread(client.status, "job-1")
            assert isinstance(status, StatusQueryResponse)
            assert status.results[0].state is MessageState.DELIVERED
            again = await asyncio.to_thread(client.push, "job-1", Address.sip(AOR), PACKET)
            assert isinstance(again, PushResponse)
            assert again.code == 2007

    asyncio.run(main())


def test_pap_connections_over_the_limit_get_503_and_nobody_is_dropped(tmp_path: Path) -> None:
    """More push initiators' connections than the PPG takes: the extra one is answered 503
    with Retry-After (the admin server retries it), the others are served in full."""

    async def main() -> None:
        async with stack(tmp_path, max_connections=3) as (ppg, device, _notes, client):
            assert await device.register(ppg) == 200
            port = int(ppg.pap_url.split(":")[2].split("/")[0])
            held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
            await until(lambda: len(ppg.http._conns) == 3)
            with pytest.raises(PapClientError, match="answered HTTP 503"):
                await client.push_async("over", Address.sip(AOR), PACKET)
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /pap HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
            async with asyncio.timeout(10):
                answer = await reader.read()  # answered, then closed
            assert answer.startswith(b"HTTP/1.1 503 ")
            assert b"\r\nretry-after: 1\r\n" in answer.lower()
            writer.close()
            assert ppg.http.refused == 2
            # the held connections are still served
            for r, w in held:
                w.write(b"POST /pap HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
                await w.drain()
                assert (await r.readuntil(b"\r\n")).startswith(b"HTTP/1.1 401 ")
                w.close()
            # and once they are gone, a push goes through
            await until(lambda: not ppg.http._conns)
            answer = await client.push_async("after", Address.sip(AOR), PACKET)
            assert isinstance(answer, PushResponse)
            assert answer.code == 1001
            await until(lambda: len(device.received) == 1)

    asyncio.run(main())


def test_unregistered_device_expires_and_refusal_is_final(tmp_path: Path) -> None:
    async def main() -> None:
        async with stack(
            tmp_path, policy=DeliveryPolicy(max_attempts=50, backoff=0.05, backoff_cap=0.1)
        ) as (ppg, device, notes, client):
            soon = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
            await asyncio.to_thread(
                client.push,
                "job-2",
                Address.sip(AOR),
                PACKET,
                notify_to=notes.http.url("/n"),
                deliver_before=soon,
            )
            await until(lambda: notes.notes)
            assert notes.notes[0].state is MessageState.EXPIRED
            assert not device.received
            device.status = 403
            await device.register(ppg)
            await asyncio.to_thread(
                client.push, "job-3", Address.sip(AOR), PACKET, notify_to=notes.http.url("/n")
            )
            await until(lambda: len(notes.notes) == 2)
            assert (notes.notes[1].state, notes.notes[1].code) == (MessageState.UNDELIVERABLE, 2001)
            assert len(device.received) == 1  # a refusal is not retried

    asyncio.run(main())


def test_busy_device_is_retried_with_backoff(tmp_path: Path) -> None:
    async def main() -> None:
        async with stack(tmp_path) as (ppg, device, notes, client):
            device.status = 480
            await device.register(ppg)
            await asyncio.to_thread(
                client.push, "job-4", Address.sip(AOR), PACKET, notify_to=notes.http.url("/n")
            )
            await until(lambda: notes.notes)
            assert (notes.notes[0].state, notes.notes[0].code) == (MessageState.UNDELIVERABLE, 4001)
            assert len(device.received) == FAST.max_attempts

    asyncio.run(main())


def test_cancel_pending_push(tmp_path: Path) -> None:
    async def main() -> None:
        async with stack(
            tmp_path, policy=DeliveryPolicy(max_attempts=5, backoff=30, backoff_cap=30)
        ) as (_ppg, _device, _notes, client):
            await asyncio.to_thread(client.push, "job-5", Address.sip(AOR), PACKET)
            await asyncio.sleep(0.3)  # tried once (no registration), waiting for its retry
            answer = await asyncio.to_thread(client.cancel, "job-5")
            assert isinstance(answer, CancelResponse)
            assert answer.results[0].code == 1000
            status = await asyncio.to_thread(client.status, "job-5")
            assert isinstance(status, StatusQueryResponse)
            assert status.results[0].state is MessageState.CANCELLED
            answer = await asyncio.to_thread(client.cancel, "job-5")
            assert isinstance(answer, CancelResponse)
            assert answer.results[0].code == 2008
            missing = await asyncio.to_thread(client.status, "nope")
            assert isinstance(missing, BadMessageResponse)
            assert missing.code == 2004

    asyncio.run(main())


BILLION = (
    b'<?xml version="1.0"?><!DOCTYPE pap [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]>'
    b'<pap><statusquery-message push-id="&b;"/></pap>'
)


def test_refusals(tmp_path: Path) -> None:
    async def main() -> None:
        async with stack(tmp_path) as (ppg, device, _notes, _client):
            wrong = PapClient(ppg.pap_url, username="ras", password="guess")
            with pytest.raises(PapClientError, match="401"):
                await asyncio.to_thread(wrong.status, "x")

            def raw(body: bytes, content_type: str) -> tuple[int, bytes]:
                req = urllib.request.Request(
                    ppg.pap_url,
                    data=body,
                    method="POST",
                    headers={"Content-Type": content_type, "Authorization": "Bearer s3cret"},
                )
                try:
                    with urllib.request.urlopen(req, timeout=5) as r:
                        return r.status, r.read()
                except urllib.error.HTTPError as e:
                    return e.code, e.read()

            status, body = await asyncio.to_thread(raw, BILLION, "application/xml")
            doc = pap.parse(body)
            assert status == 400
            assert isinstance(doc, BadMessageResponse)
            assert doc.code == 2000
            bad_address = (
                b'--b\r\nContent-Type: application/xml\r\n\r\n<pap><push-message push-id="p">'
                b'<address address-value="WAPPUSH=+1/TYPE=FAX"/></push-message></pap>'
                b"\r\n--b\r\nContent-Type: application/octet-stream\r\n\r\nx\r\n--b--\r\n"
            )
            status, body = await asyncio.to_thread(
                raw, bad_address, 'multipart/related; boundary="b"'
            )
            doc = pap.parse(body)
            assert isinstance(doc, BadMessageResponse)
            assert doc.code == 2002
            # the registrar wants digest credentials
            assert await device.register(ppg, password=None) == 401
            assert await device.register(ppg, password="wrong") == 403

    asyncio.run(main())


def test_cli_refuses_bad_options_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from openscws.cli import main

    assert main(["ppg", "--data-dir", str(tmp_path), "--pap", "nonsense"]) == 2
    err = capsys.readouterr().err
    assert err == "openscws ppg: --pap wants HOST:PORT, got 'nonsense'\n"
    with pytest.raises(SystemExit) as stop:
        main(["ppg", "--data-dir", str(tmp_path), "--max-connections", "0"])
    assert stop.value.code == 2
    assert "expected a whole number of at least 1, got '0'" in capsys.readouterr().err
    (tmp_path / "bad").write_text("only-a-name\n")
    assert main(["ppg", "--initiators", str(tmp_path / "bad")]) == 2
    assert "want 'NAME SECRET'" in capsys.readouterr().err
    # the generated initiators file is private
    assert main(["ppg", "--data-dir", str(tmp_path), "--sip", "x"]) == 2
    assert (tmp_path / "initiators").stat().st_mode & 0o077 == 0


def test_store_adds_a_batch_and_tells_duplicates(tmp_path: Path) -> None:
    """Submissions that arrive together are committed together; a push-id already known in
    the batch is reported as such and the others are still added."""
    from openscws.aio.ppg_store import DuplicatePush, PpgStore

    store = PpgStore(f"sqlite:///{tmp_path / 'ppg.db'}")
    try:

        def push(push_id: str) -> dict[str, object]:
            return {
                "push_id": push_id,
                "initiator": "ras",
                "address": "WAPPUSH=+15550100001/TYPE=PLMN",
                "target": "sip:+15550100001@scws.test",
                "app_id": SCWS_APP_ID,
                "content_type": "application/octet-stream",
                "body": b"x",
                "next_at": 0.0,
                "created": 0.0,
            }

        assert store.add_many([push("a"), push("b")]) == [True, True]
        assert store.add_many([push("c"), push("a"), push("d")]) == [True, False, True]
        with pytest.raises(DuplicatePush):
            store.add(**push("d"))
        assert {p.push_id for p in store.claim_due(1.0, owner="o", lease=5, limit=10)} == {
            "a",
            "b",
            "c",
            "d",
        }
        store.finish_many([(1, "delivered", 1000, "SIP 200", 2.0), (2, "expired", 4000, "x", 2.0)])
        store.notified_many([(1, True), (2, False)])
        first, second = store.get("a"), store.get("b")
        assert first is not None
        assert second is not None
        assert (first.state, first.code, first.notified) == ("delivered", 1000, True)
        assert (second.state, second.code, second.notified) == ("expired", 4000, False)
    finally:
        store.close()


def test_store_adds_due_pushes_leased_to_their_process(tmp_path: Path) -> None:
    """A due push is stored leased to the PPG process that accepted it: no other process
    claims it until the lease has run out; a push-id already known gets no record."""
    from openscws.aio.ppg_store import PpgStore

    store = PpgStore(f"sqlite:///{tmp_path / 'ppg.db'}")
    try:

        def push(push_id: str) -> dict[str, object]:
            return {
                "push_id": push_id,
                "initiator": "ras",
                "address": "WAPPUSH=+15550100001/TYPE=PLMN",
                "target": "sip:+15550100001@scws.test",
                "app_id": SCWS_APP_ID,
                "content_type": "application/octet-stream",
                "body": b"x",
                "next_at": 0.0,
                "created": 0.0,
            }

        first = store.add_leased([push("a"), push("b")], owner="me", lease_until=10.0)
        assert [r.push_id if r else None for r in first] == ["a", "b"]
        again = store.add_leased([push("c"), push("a")], owner="me", lease_until=10.0)
        assert [r.push_id if r else None for r in again] == ["c", None]
        assert store.claim_due(5.0, owner="other", lease=5, limit=10) == []
        late = store.claim_due(11.0, owner="other", lease=5, limit=10)
        assert {p.push_id for p in late} == {"a", "b", "c"}
        # Every path reads a push whole, as the row read by push-id has it.
        assert [store.get(r.push_id) for r in first] == first
        assert [store.get(p.push_id) for p in late] == late
        noted = store.add_leased(
            [{**push("e"), "notify_to": "http://127.0.0.1:1/n"}], owner="me", lease_until=10.0
        )
        store.finish_many([(p.id, "delivered", 1000, "SIP 200", 12.0) for p in [*late, *noted]])
        assert [p.push_id for p in store.to_notify(10, 3)] == ["e"]
        assert store.to_notify(10, 3) == [store.get("e")]
    finally:
        store.close()


def test_due_push_is_sent_without_a_claim_round(tmp_path: Path) -> None:
    """The PPG sends a push that is due at once from the submission itself: the delivery
    loop's claim never sees it."""

    async def main() -> None:
        async with stack(tmp_path, poll=30.0) as (ppg, device, notes, client):
            claimed: list[str] = []
            claim_due = ppg.store.claim_due

            def spy(*args: Any, **kwargs: Any) -> Any:
                pushes = claim_due(*args, **kwargs)
                claimed.extend(p.push_id for p in pushes)
                return pushes

            ppg.store.claim_due = spy  # type: ignore[method-assign]
            assert await device.register(ppg) == 200
            answer = await client.push_async(
                "job-now", Address.sip(AOR), PACKET, notify_to=notes.http.url("/n")
            )
            assert isinstance(answer, PushResponse)
            assert answer.code == 1001
            await until(lambda: notes.notes)
            assert notes.notes[0].state is MessageState.DELIVERED
            assert len(device.received) == 1
            assert claimed == []
            await client.aclose()

    asyncio.run(main())


def test_group_write_commits_together_and_hands_errors_to_each() -> None:
    from openscws.aio.ppg import _GroupWrite

    async def main() -> None:
        writes: list[list[int]] = []

        async def write(items: list[int]) -> list[int]:
            writes.append(items)
            await asyncio.sleep(0.01)
            if 13 in items:
                raise ValueError("unlucky")
            return [i * 2 for i in items]

        group: _GroupWrite[int, int] = _GroupWrite(write)
        assert await asyncio.gather(*(group.submit(i) for i in range(5))) == [0, 2, 4, 6, 8]
        assert writes == [[0, 1, 2, 3, 4]]
        with pytest.raises(ValueError, match="unlucky"):
            await group.submit(13)
        assert await group.submit(7) == 14
        # A submitter cancelled while its batch is written: its item is written all the
        # same, and the others of the batch get their results.
        writes.clear()
        gone = asyncio.create_task(group.submit(20))
        kept = asyncio.create_task(group.submit(21))
        await asyncio.sleep(0)
        gone.cancel()
        assert await kept == 42
        assert gone.cancelled()
        assert writes == [[20, 21]]
        await group.drain()

    asyncio.run(main())


def test_sip_endpoint_udp_takes_a_burst() -> None:
    """The UDP socket asks for a receive buffer that holds a batch's burst of answers (as
    large as the system allows), not the small default that drops them."""
    import socket

    from openscws.aio.sip_endpoint import UDP_RCVBUF

    async def handler(req: SipRequest, peer: Peer) -> SipResponse:
        return response_to(req, 200, to_tag=new_tag())

    async def main() -> None:
        endpoint = SipEndpoint(handler)
        await endpoint.start()
        try:
            assert endpoint._udp is not None
            sock = endpoint._udp.get_extra_info("socket")
            got = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
            cap = Path("/proc/sys/net/core/rmem_max")
            most = int(cap.read_text()) if cap.exists() else UDP_RCVBUF
            assert got >= min(UDP_RCVBUF, most)
        finally:
            await endpoint.close()

    asyncio.run(main())


def test_sip_endpoint_tcp_over_the_limit_gets_503_and_the_others_are_served() -> None:
    """More TCP connections than the endpoint takes: the first request on the extra one is
    answered 503 with Retry-After (RFC 3261 §21.5.4) and it is closed; those within the limit
    are served."""

    async def handler(req: SipRequest, peer: Peer) -> SipResponse:
        return response_to(req, 200, to_tag=new_tag())

    def options(n: int) -> bytes:
        return request(
            "OPTIONS",
            "sip:ppg@scws.test",
            [
                ("Via", f"SIP/2.0/TCP 127.0.0.1:9;branch={new_branch()}"),
                ("From", f"<sip:a@scws.test>;tag={new_tag()}"),
                ("To", "<sip:ppg@scws.test>"),
                ("Call-ID", f"c{n}@test"),
                ("CSeq", f"{n} OPTIONS"),
                ("Max-Forwards", "70"),
            ],
        ).encode()

    async def main() -> None:
        endpoint = SipEndpoint(handler, max_tcp=2)
        await endpoint.start()
        try:
            held = [await asyncio.open_connection("127.0.0.1", endpoint.port) for _ in range(2)]
            await until(lambda: endpoint._tcp_open == 2)
            reader, writer = await asyncio.open_connection("127.0.0.1", endpoint.port)
            writer.write(options(3))
            async with asyncio.timeout(10):
                answer = await reader.read()  # answered, then closed
            assert answer.startswith(b"SIP/2.0 503 ")
            assert b"\r\nRetry-After: 5\r\n" in answer
            assert b"\r\nCall-ID: c3@test\r\n" in answer
            writer.close()
            assert endpoint.refused == 1
            for n, (r, w) in enumerate(held):
                w.write(options(n))
                assert (await r.readuntil(b"\r\n")).startswith(b"SIP/2.0 200 ")
                w.close()
            await until(lambda: endpoint._tcp_open == 0)
        finally:
            await endpoint.close()

    asyncio.run(main())


def test_sip_endpoint_closes_a_silent_connection_over_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A connection over the limit that sends nothing is closed, unanswered, after
    REFUSE_WAIT; the one within the limit is untouched."""
    from openscws.aio import sip_endpoint

    monkeypatch.setattr(sip_endpoint, "REFUSE_WAIT", 0.3)

    async def handler(req: SipRequest, peer: Peer) -> SipResponse:
        return response_to(req, 200, to_tag=new_tag())

    async def main() -> None:
        endpoint = SipEndpoint(handler, max_tcp=1)
        await endpoint.start()
        try:
            _, held = await asyncio.open_connection("127.0.0.1", endpoint.port)
            await until(lambda: endpoint._tcp_open == 1)
            reader, writer = await asyncio.open_connection("127.0.0.1", endpoint.port)
            async with asyncio.timeout(10):
                assert await reader.read() == b""  # closed, nothing said
            writer.close()
            assert endpoint.refused == 1
            assert endpoint._tcp_open == 1
            held.close()
        finally:
            await endpoint.close()

    asyncio.run(main())


def test_sip_endpoint_picks_again_when_the_udp_twin_is_taken() -> None:
    """Port 0: TCP picks a free port; when that port is taken for UDP, another is picked."""
    import errno

    async def handler(req: SipRequest, peer: Peer) -> SipResponse:
        return response_to(req, 200, to_tag=new_tag())

    async def main() -> None:
        loop = asyncio.get_running_loop()
        real = loop.create_datagram_endpoint
        refused: list[int] = []

        async def once_taken(*args: object, **kwargs: object) -> object:
            if not refused:
                refused.append(1)
                raise OSError(errno.EADDRINUSE, "Address already in use")
            return await real(*args, **kwargs)  # type: ignore[arg-type]

        loop.create_datagram_endpoint = once_taken  # type: ignore[method-assign,assignment]
        endpoint = SipEndpoint(handler)
        await endpoint.start()
        try:
            assert refused
            assert endpoint._udp is not None
            udp_port = endpoint._udp.get_extra_info("sockname")[1]
            assert udp_port == endpoint.port
        finally:
            await endpoint.close()

    asyncio.run(main())


def test_sip_endpoint_absorbs_retransmitted_datagrams(monkeypatch: pytest.MonkeyPatch) -> None:
    """A UDP request sent again byte for byte (timer E) reaches the handler once: while it
    is handled nothing is sent back; once answered, the answer again, each without parsing
    the copy; a request that differs is parsed and, with the same branch, absorbed too. The
    transaction's end forgets its datagram."""
    import socket

    from openscws.aio import sip_endpoint

    parsed: list[bytes] = []
    real_parse = sip_endpoint.parse_message

    def counting(data: bytes) -> Any:
        parsed.append(data)
        return real_parse(data)

    monkeypatch.setattr(sip_endpoint, "parse_message", counting)
    release = asyncio.Event()
    handled: list[str] = []

    async def handler(req: SipRequest, peer: Peer) -> SipResponse:
        handled.append(req.method)
        await release.wait()
        return response_to(req, 200, to_tag=new_tag())

    async def main() -> None:
        endpoint = SipEndpoint(handler)
        await endpoint.start()
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        try:
            port = sock.getsockname()[1]
            branch = new_branch()

            def message(call_id: str) -> bytes:
                return request(
                    "MESSAGE",
                    "sip:device1@127.0.0.1",
                    [
                        ("Via", f"SIP/2.0/UDP 127.0.0.1:{port};branch={branch}"),
                        ("From", "<sip:ppg@scws.test>;tag=1"),
                        ("To", "<sip:device1@scws.test>"),
                        ("Call-ID", call_id),
                        ("CSeq", "1 MESSAGE"),
                    ],
                    b"x",
                ).encode()

            data = message("a@b")
            for _ in range(3):
                sock.sendto(data, ("127.0.0.1", endpoint.port))
            await asyncio.sleep(0.2)
            assert handled == ["MESSAGE"]
            assert parsed == [data]
            assert list(endpoint._datagrams) == [data]
            release.set()
            first = await asyncio.wait_for(loop.sock_recv(sock, 65536), 5)
            assert first.startswith(b"SIP/2.0 200 OK\r\n")
            sock.sendto(data, ("127.0.0.1", endpoint.port))
            again = await asyncio.wait_for(loop.sock_recv(sock, 65536), 5)
            assert again == first
            assert parsed == [data]
            other = message("c@d")  # same branch, other bytes: parsed, then matched
            sock.sendto(other, ("127.0.0.1", endpoint.port))
            assert await asyncio.wait_for(loop.sock_recv(sock, 65536), 5) == first
            assert parsed == [data, other]
            assert handled == ["MESSAGE"]
            ((tx, _, _),) = endpoint._servers.values()
            endpoint._expire_server(tx)
            assert endpoint._datagrams == {}
            assert endpoint._servers == {}
        finally:
            sock.close()
            await endpoint.close()

    asyncio.run(main())
