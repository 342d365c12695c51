"""The card's HTTP engine against hostile pages in an allowed browser: Host (DNS rebinding),
Origin on state-changing requests to card applications, throttled wrong passwords, Basic
refused on plain HTTP by realm setting."""

from __future__ import annotations

import base64

import pytest

from openscws.config import CardSettings
from openscws.errors import HttpError
from openscws.http.connection import HttpServerConnection
from openscws.http.limits import CardLimits, RamBudget
from openscws.scws.card import build_site, host_policy_for
from openscws.scws.guard import HostPolicy, RealmThrottle
from openscws.scws.model import MemoryStore, Realm, Resource
from openscws.scws.site import Site

PORTS = host_policy_for(CardSettings(), {3516: 8080})


def site(policy: HostPolicy = PORTS) -> Site:
    store = MemoryStore()
    store.put(Resource("/index.html", b"hello", "text/html", last_modified=1))
    store.put(Resource("/staff/", b"secret", "text/html", last_modified=1, realm="staff"))
    store.put_realm(Realm("staff", {"alice": "right"}))
    store.put_realm(Realm("tls", {"alice": "right"}, basic_https_only=True))
    store.put(Resource("/tls/", b"tls", "text/html", last_modified=1, realm="tls"))
    return build_site(store, "8988211000000000001", host_policy=policy)


def exchange(
    s: Site, *requests: bytes, scheme: str = "http"
) -> tuple[list[int], list[bytes], HttpServerConnection]:
    limits = CardLimits()
    conn = HttpServerConnection(s, limits, RamBudget.for_limits(limits), scheme=scheme)
    conn.receive_data(b"".join(requests), 0.0)
    wire = b""
    while chunk := conn.data_to_send():
        wire += chunk
    heads = [part for part in wire.split(b"HTTP/1.1 ")[1:]]
    return [int(h[:3]) for h in heads], heads, conn


def get(path: str, host: str, *headers: str, method: str = "GET", body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", *headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("127.0.0.1:3516", 200),
        ("localhost:3516", 200),
        ("LOCALHOST:8080", 200),  # the terminal's local port for 3516
        ("scws.localhost:3516", 200),
        ("[::1]:3516", 200),
        ("127.1.2.3", 200),  # no port: the one the request came on
        ("card", 200),  # a name without a dot: only a local resolver knows it
        ("rebind.example:3516", 421),  # DNS rebinding
        ("192.0.2.1:3516", 421),
        ("127.0.0.1:4116", 421),  # the HTTPS port, on plain HTTP
        ("127.0.0.1:9999", 421),
        ("127.0.0.1:99999", 400),
        ("[::1", 400),
        ("a b", 400),
    ],
)
def test_host(host: str, status: int) -> None:
    statuses, _, _ = exchange(site(), get("/index.html", host))
    assert statuses == [status]


def test_rebinding_cannot_read_a_card_application() -> None:
    statuses, heads, _ = exchange(site(), get("/app/info/json", "rebind.example:3516"))
    assert statuses == [421]
    assert b"Misdirected Request" in heads[0]


def test_host_ports_unknown_to_a_card_process_are_not_checked() -> None:
    statuses, _, _ = exchange(site(HostPolicy()), get("/index.html", "127.0.0.1:9999"))
    assert statuses == [200]
    statuses, _, _ = exchange(site(HostPolicy()), get("/index.html", "evil.example"))
    assert statuses == [421]


def test_https_ports() -> None:
    ok = get("/index.html", "127.0.0.1:4116")
    assert exchange(site(), ok, scheme="https")[0] == [200]
    assert exchange(site(), get("/index.html", "127.0.0.1:3516"), scheme="https")[0] == [421]


def test_cross_origin_writes_to_card_applications_are_refused() -> None:
    reset = "/app/info/reset"
    host = "127.0.0.1:3516"
    evil = get(reset, host, "Origin: http://evil.example", method="POST", body=b"x")
    assert exchange(site(), evil)[0] == [403]
    null = get(reset, host, "Origin: null", method="POST", body=b"x")
    assert exchange(site(), null)[0] == [403]
    other_port = get(reset, host, "Origin: http://127.0.0.1:8000", method="POST", body=b"x")
    assert exchange(site(), other_port)[0] == [403]
    same = get(reset, host, "Origin: http://127.0.0.1:3516", method="POST", body=b"x")
    assert exchange(site(), same)[0] == [303]
    tool = get(reset, host, method="POST", body=b"x")  # no Origin: curl, the admin agent
    assert exchange(site(), tool)[0] == [303]
    read = get("/app/info/json", host, "Origin: http://evil.example")
    assert exchange(site(), read)[0] == [200]


def basic(user: str, password: str) -> str:
    return "Authorization: Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_wrong_passwords_close_the_connection_after_three() -> None:
    wrong = get("/staff/", "card", basic("alice", "wrong"))
    statuses, heads, conn = exchange(site(), wrong, wrong, wrong, wrong)
    assert statuses == [401, 401, 401]  # the fourth is never read
    assert b"connection: close" in heads[2].lower()
    assert conn.should_close


def test_wrong_passwords_throttled_per_realm() -> None:
    s = site()
    s.throttle = RealmThrottle(limit=4, window=60.0)
    for _ in range(2):
        statuses, _, _ = exchange(s, *[get("/staff/", "card", basic("alice", "no"))] * 2)
        assert statuses == [401, 401]
    statuses, heads, _ = exchange(s, get("/staff/", "card", basic("alice", "right")))
    assert statuses == [429]
    assert b"retry-after:" in heads[0].lower()
    assert exchange(s, get("/index.html", "card"))[0] == [200]  # other resources go on
    later = s.throttle
    with pytest.raises(HttpError):
        later.check("staff", 59.0)
    later.check("staff", 61.0)  # the window moved on


def test_basic_refused_on_plain_http_by_realm_setting() -> None:
    statuses, heads, _ = exchange(site(), get("/tls/", "card"))
    assert statuses == [401]
    assert b"Basic" not in heads[0]
    assert b"Digest" in heads[0]
    assert exchange(site(), get("/tls/", "card", basic("alice", "right")))[0] == [401]
    statuses, _, _ = exchange(
        site(), get("/tls/", "127.0.0.1:4116", basic("alice", "right")), scheme="https"
    )
    assert statuses == [200]
    assert exchange(site(), get("/staff/", "card", basic("alice", "right")))[0] == [200]


def test_realm_setting_is_kept_by_the_card_image_and_the_admin_command(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from openscws.agent.commands import ScwsAdminExecutor
    from openscws.amdb.embedded import EmbeddedRequest
    from openscws.store.cardimage import CardImage

    image = CardImage.create(tmp_path / "card", iccid="8988211000000000001", now=1)
    ex = ScwsAdminExecutor(image, max_resource=4096)
    tx = ("X-SCWS-Transaction", "t1")
    doc = {"users": {"alice": "pw"}, "basic_https_only": True}
    put = EmbeddedRequest("PUT", "/.scws/realms/staff", (tx,), json.dumps(doc).encode())
    assert ex.execute(put, 1.0).status == 201
    assert ex.execute(EmbeddedRequest("POST", "/.scws/commit", (tx,)), 1.0).status == 200
    realm = CardImage.open(tmp_path / "card").realm("staff")
    assert realm is not None
    assert realm.basic_https_only
    bad = EmbeddedRequest(
        "PUT", "/.scws/realms/x", (("X-SCWS-Transaction", "t2"),), b'{"basic_https_only": 1}'
    )
    assert ex.execute(bad, 1.0).status == 400
