"""The sample app's streamed log: a body of unknown length, sent chunked."""

import h11

from openscws.http.connection import HttpServerConnection
from openscws.http.limits import CardLimits, RamBudget
from openscws.scws.model import MemoryStore
from openscws.scws.sample_app import CardInfoApp
from openscws.scws.site import Site


def _site() -> Site:
    site = Site(MemoryStore(), card={"ICCID": "8988211000000000003"})
    site.register_app("/app/info", CardInfoApp())
    return site


def _get(target: str, version: bytes = b"1.1") -> tuple[h11.Response, bytes]:
    limits = CardLimits()
    conn = HttpServerConnection(_site(), limits, RamBudget.for_limits(limits))
    conn.receive_data(b"GET " + target.encode() + b" HTTP/" + version + b"\r\nHost: c\r\n\r\n", 0.0)
    wire = b""
    while chunk := conn.data_to_send(64):
        wire += chunk
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target=target, headers=[("Host", "c")]))
    client.receive_data(wire)
    response = client.next_event()
    assert isinstance(response, h11.Response)
    body = b""
    while isinstance(event := client.next_event(), h11.Data):
        body += event.data
    return response, body


def test_log_is_chunked_for_http11() -> None:
    response, body = _get("/app/info/log?lines=3")
    assert response.status_code == 200
    assert (b"transfer-encoding", b"chunked") in response.headers
    assert body.decode().splitlines() == [
        f"0000{i} card 8988211000000000003: line {i} of 3" for i in (1, 2, 3)
    ]


def test_log_line_count_is_checked() -> None:
    assert _get("/app/info/log?lines=nope")[0].status_code == 400
    assert _get("/app/info/log?lines=10001")[0].status_code == 400
    response, body = _get("/app/info/log?lines=0")
    assert response.status_code == 200
    assert body == b""
