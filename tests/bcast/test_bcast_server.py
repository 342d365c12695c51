"""The BSM over real sockets: the BSP-C's Service Request gets 401, then 200; the LTKMs arrive
over UDP, open in the terminal (GBA_ME) and are acknowledged, which stops the resending; an
unacknowledged LTKM is resent and then given up. curl --digest passes with base64(MRK) only.
The Zn key source turns the BSF's JSON into MRK and MUK for both GBA modes."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable

import pytest

from openscws.bcast.bsm import BsmCore, MemoryStore, UserKeys
from openscws.bcast.bspc import BspcExchange, HttpRequest, LtkmReceiver
from openscws.bcast.keys import mbms_keys_gba_me, mrk_from_naf_key, srk_password
from openscws.bcast.mikey import MikeyError
from openscws.bcast.server import start_bsm, user_keys_of_zn
from openscws.bcast.sprov import MEDIA_TYPE, KeyId, MessageKind, Request, Response, StatusCode
from openscws.gba.client import http_request

K1 = KeyId(bytes.fromhex("00f110"), bytes.fromhex("00010001"))
KEYS = mbms_keys_gba_me(bytes(range(32)))
BTID = "I1U8vpY3qJ0hiuZNrke/NQ==@bsf.example.org"


def core() -> BsmCore:
    assert KEYS.muk is not None
    store = MemoryStore(items={"urn:pi:news": (K1,)}, keys={K1: b"\x11" * 16})
    return BsmCore("bsm.example.org", store, {BTID: UserKeys(KEYS.mrk, KEYS.muk)}.get)


class Terminal(asyncio.DatagramProtocol):
    def __init__(self, receiver: LtkmReceiver, answer: bool) -> None:
        self.receiver = receiver
        self.answer = answer
        self.got: asyncio.Queue[int] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.DatagramTransport)
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            ltkm, ack = self.receiver.datagram(data, 0.0)
        except MikeyError:
            self.got.put_nowait(-1)
            return
        if ack is not None and self.answer and self.transport is not None:
            self.transport.sendto(ack, addr)
        self.got.put_nowait(ltkm.counter)


async def _provision(url: str, request: Request) -> Response:
    exchange = BspcExchange(request, BTID, KEYS.mrk)
    http: HttpRequest | Response = exchange.start()
    statuses = []
    while isinstance(http, HttpRequest):
        answer = await http_request(
            url.rstrip("/") + http.path, http.method, http.headers, http.body
        )
        statuses.append(answer.status)
        http = exchange.receive(answer.status, tuple(answer.headers.items()), answer.body)
    assert statuses == [401, 200]
    return http


@pytest.mark.parametrize("acknowledge", [True, False])
def test_service_request_and_ltkm_over_sockets(acknowledge: bool) -> None:
    async def main() -> None:
        assert KEYS.muk is not None
        loop = asyncio.get_running_loop()
        transport, terminal = await loop.create_datagram_endpoint(
            lambda: Terminal(LtkmReceiver(KEYS.muk or b""), acknowledge),
            local_addr=("127.0.0.1", 0),
        )
        port = transport.get_extra_info("sockname")[1]
        server = await start_bsm(core(), ltkm_port=port, resend_s=0.2, tries=3)
        try:
            response = await _provision(
                server.url, Request(MessageKind.SERVICE, "r1", ("urn:pi:news",))
            )
            assert response.status is StatusCode.SUCCESS
            assert await asyncio.wait_for(terminal.got.get(), 10) == 1
            assert terminal.receiver.keys == {K1: b"\x11" * 16}
            if acknowledge:
                for _ in range(100):
                    if server.pusher.acknowledged:
                        break
                    await asyncio.sleep(0.05)
                assert server.pusher.acknowledged == 1
                assert server.pusher.pending == {}
            else:
                # Resent copies are refused by the terminal's replay check; then the BSM gives up.
                assert await asyncio.wait_for(terminal.got.get(), 10) == -1
                for _ in range(200):
                    if server.pusher.given_up:
                        break
                    await asyncio.sleep(0.05)
                assert server.pusher.given_up == 1
        finally:
            await server.stop()
            transport.close()

    asyncio.run(main())


@pytest.mark.peer
def test_curl_digest_with_the_mrk(need_tool: Callable[[str, str], str]) -> None:
    curl = need_tool("curl", "curl")
    body = Request(MessageKind.SERVICE, "c1", ("urn:pi:news",)).to_xml()

    async def main() -> None:
        server = await start_bsm(core(), ltkm_port=9)
        try:
            for password, expected in ((srk_password(KEYS.mrk).decode(), "200"), ("wrong", "401")):
                cmd = [
                    curl, "-sS", "--digest", "-u", f"{BTID}:{password}", "-o", "-",
                    "-w", "\n%{http_code}", "-H", f"Content-Type: {MEDIA_TYPE}",
                    "--data-binary", body.decode(), server.url.rstrip("/") + "/bcast/service",
                ]  # fmt: skip
                run = await asyncio.to_thread(
                    subprocess.run, cmd, capture_output=True, text=True, timeout=30
                )
                assert run.stdout.rsplit("\n", 1)[1] == expected, run.stderr
                if expected == "200":
                    assert 'globalStatusCode="0"' in run.stdout
        finally:
            await server.stop()

    asyncio.run(main())


def test_zn_answer_to_keys() -> None:
    ext, intk = bytes(range(32)), bytes(range(32, 64))
    u = user_keys_of_zn({"gba_type": "GBA_U", "ks_ext_naf": ext.hex(), "ks_int_naf": intk.hex()})
    assert u == UserKeys(mrk_from_naf_key(ext), intk)
    me = user_keys_of_zn({"gba_type": "GBA_ME", "ks_naf": ext.hex()})
    assert me == UserKeys(mrk_from_naf_key(ext), ext)
    assert user_keys_of_zn({"gba_type": "GBA_ME"}) is None
    assert user_keys_of_zn({"gba_type": "GBA_U", "ks_ext_naf": "zz", "ks_int_naf": "00"}) is None
