"""The DM server end to end over HTTPS: PSK-TLS, HTTP Basic, Digest (MD5 and SHA-256) and
client-certificate transport authentication per device, a management job run in a device's
session with its results stored."""

from __future__ import annotations

import datetime
import itertools
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from dm_server_env import (
    NOW,
    Env,
    Reply,
    add_device,
    basic,
    cert_context,
    device_tree,
    digest_header,
    make_client_cert,
    post,
    run_env,
    run_session,
)
from sqlalchemy import event
from sqlalchemy.engine import Connection

from openscws.dm import message as m
from openscws.dm.db_models import HttpAuth
from openscws.dm.server_tls import certificate_fingerprint
from openscws.dm.session import ClientSession, Outgoing
from openscws.tls.context import psk_client_context

XML = m.CONTENT_TYPE_XML
JOB = [
    {"op": "Get", "uri": "./DevInfo/Mod", "data": None},
    {"op": "Replace", "uri": "./DMAcc/1/Name", "data": "Operator"},
    {"op": "Get", "uri": "./DMAcc/1/Name", "data": None},
    {"op": "Get", "uri": "./Nope", "data": None},
]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    yield from run_env(tmp_path_factory.mktemp("dms"))


_ids = itertools.count()


def dev_id() -> str:
    return f"IMEI:49015420323751{next(_ids)}"


def client(dev: str, **kw: object) -> ClientSession:
    return ClientSession(device_tree(dev), "1", session_id=f"{next(_ids) + 1:X}", **kw)  # type: ignore[arg-type]


def sender(env: Env, ctx: object, headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    def send(out: Outgoing) -> Reply:
        return post(env, ctx, out.body, out.content_type, {**(headers or {}), **dict(out.headers)})  # type: ignore[arg-type]

    return send


def test_psk_tls_session_runs_the_job(env: Env) -> None:
    dev = dev_id()
    add_device(env, dev, http_auth=HttpAuth.PSK, psk_identity=f"psk-{dev}", psk_key=b"k" * 16)
    job = env.store.create_job(dev, JOB)
    ctx = psk_client_context(f"psk-{dev}", b"k" * 16, ciphers="PSK-AES128-GCM-SHA256")
    replies = run_session(client(dev), sender(env, ctx))
    assert len(replies) >= 2
    done = env.store.job(job.id)
    assert done is not None
    assert done.state == "done"
    assert [r["status"] for r in done.results] == [200, 200, 200, 404]
    assert done.results[0]["data"] == "virtual"
    assert done.results[2]["data"] == "Operator"
    assert env.service.session_count == 0


def test_a_session_writes_its_nonces_with_the_job(env: Env) -> None:
    """A device challenged once (its stored nonce is stale): the challenge's nonce is saved,
    then the job is claimed together with the nonces of the authenticated Package #1, and
    its results are stored: three write transactions, and none of them before the device
    has authenticated holds the job."""
    dev = dev_id()
    add_device(env, dev, http_auth=HttpAuth.PSK, psk_identity=f"psk-{dev}", psk_key=b"k" * 16)
    job = env.store.create_job(dev, JOB)
    ctx = psk_client_context(f"psk-{dev}", b"k" * 16, ciphers="PSK-AES128-GCM-SHA256")
    states: list[str] = []

    def begin(connection: Connection) -> None:
        if not connection.get_execution_options().get("openscws_read_only", False):
            got = env.store.job(job.id)
            states.append(got.state if got is not None else "?")

    engine = env.store.db.engine
    event.listen(engine, "begin", begin)
    try:
        run_session(client(dev), sender(env, ctx))
    finally:
        event.remove(engine, "begin", begin)
    assert states == ["pending", "pending", "running"]
    done = env.store.job(job.id)
    assert done is not None
    assert done.state == "done"


def test_basic_transport_auth(env: Env) -> None:
    dev = dev_id()
    add_device(env, dev, http_auth=HttpAuth.BASIC, http_username="u1", http_password="pw1")
    ctx = cert_context(env)
    pkg1 = client(dev).start()
    # No credentials, wrong password, an unknown user: the same 401 with the challenges.
    for headers in ({}, basic("u1", "wrong"), basic("nobody", "pw1")):
        r = post(env, ctx, pkg1.body, XML, headers)
        assert r.status == 401
        offered = r.headers.get_all("WWW-Authenticate") or []
        assert any(h.startswith("Basic ") for h in offered)
        assert any("algorithm=SHA-256" in h for h in offered)
        assert any("algorithm=MD5" in h for h in offered)
    run_session(client(dev), sender(env, ctx, basic("u1", "pw1")))


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_digest_transport_auth(env: Env, algorithm: str) -> None:
    dev = dev_id()
    add_device(env, dev, http_auth=HttpAuth.DIGEST, http_username="u2", http_password="pw2")
    ctx = cert_context(env)

    def send(out: Outgoing) -> Reply:
        first = post(env, ctx, out.body, out.content_type)
        assert first.status == 401
        chal = next(h for h in first.headers.get_all("WWW-Authenticate") or [] if algorithm in h)
        auth = digest_header(chal, "u2", "pw2", "POST", "/dm", algorithm)
        r = post(env, ctx, out.body, out.content_type, {"Authorization": auth})
        # The same Authorization again is a replay: refused.
        again = post(env, ctx, out.body, out.content_type, {"Authorization": auth})
        assert again.status == 401
        wrong = digest_header(chal, "u2", "bad", "POST", "/dm", algorithm).replace(
            "00000001", "00000002"
        )
        assert post(env, ctx, out.body, out.content_type, {"Authorization": wrong}).status == 401
        return r

    client_session = client(dev)
    out = client_session.start()
    reply = send(out)
    assert reply.status == 200
    assert m.decode(reply.body).hdr.target.loc_uri == dev


def test_client_certificate_auth(env: Env) -> None:
    dev = dev_id()
    cert_pem, key_pem, der = make_client_cert(env.client_ca, dev)
    add_device(env, dev, http_auth=HttpAuth.CERT, cert_sha256=certificate_fingerprint(der))
    job = env.store.create_job(dev, JOB[:1])
    run_session(client(dev), sender(env, cert_context(env, (cert_pem, key_pem))))
    done = env.store.job(job.id)
    assert done is not None
    assert done.state == "done"
    # Without a certificate, or with another device's from the same CA: 403.
    other = make_client_cert(env.client_ca, "someone else")
    pkg1 = client(dev).start()
    assert post(env, cert_context(env), pkg1.body, XML).status == 403
    ctx = cert_context(env, other[:2])
    assert post(env, ctx, pkg1.body, XML).status == 403


def test_client_certificate_from_unknown_ca_is_refused(env: Env) -> None:
    dev = dev_id()
    cert_pem, key_pem, der = make_client_cert(env.rogue_ca, dev)
    add_device(env, dev, http_auth=HttpAuth.CERT, cert_sha256=certificate_fingerprint(der))
    pkg1 = client(dev).start()
    with pytest.raises(ssl.SSLError, match=r"(?i)unknown.ca"):
        post(env, cert_context(env, (cert_pem, key_pem)), pkg1.body, XML)


def test_wrong_psk_fails_the_handshake(env: Env) -> None:
    dev = dev_id()
    add_device(env, dev, http_auth=HttpAuth.PSK, psk_identity=f"psk-{dev}", psk_key=b"k" * 16)
    pkg1 = client(dev).start()
    for identity, key in ((f"psk-{dev}", b"x" * 16), ("unknown", b"k" * 16)):
        ctx = psk_client_context(identity, key, ciphers="PSK-AES128-GCM-SHA256")
        with pytest.raises(ssl.SSLError):
            post(env, ctx, pkg1.body, XML)


def test_psk_connection_of_another_device_is_refused(env: Env) -> None:
    a, b = dev_id(), dev_id()
    add_device(env, a, http_auth=HttpAuth.PSK, psk_identity=f"psk-{a}", psk_key=b"a" * 16)
    add_device(env, b)
    ctx = psk_client_context(f"psk-{a}", b"a" * 16, ciphers="PSK-AES128-GCM-SHA256")
    assert post(env, ctx, client(b).start().body, XML).status == 403


def test_wbxml_session(env: Env) -> None:
    dev = dev_id()
    add_device(env, dev)
    job = env.store.create_job(dev, JOB)
    replies = run_session(client(dev, wbxml_form=True), sender(env, cert_context(env)))
    assert replies[0].headers["Content-Type"] == m.CONTENT_TYPE_WBXML
    done = env.store.job(job.id)
    assert done is not None
    assert done.state == "done"


def test_wrong_application_credentials_keep_the_job(env: Env) -> None:
    dev = dev_id()
    add_device(env, dev, app_password="other")
    job = env.store.create_job(dev, JOB)
    session = client(dev)
    out: Outgoing | None = session.start()
    while out is not None:
        r = post(env, cert_context(env), out.body, out.content_type)
        assert r.status == 200
        out = session.receive(r.body, r.headers["Content-Type"])
    waiting = env.store.job(job.id)
    assert waiting is not None
    assert waiting.state == "pending"


def test_garbage_on_the_wire_closes_only_that_connection(env: Env) -> None:
    import socket

    with socket.create_connection(("127.0.0.1", env.port), timeout=10) as raw:
        raw.sendall(b"GET / HTTP/1.1\r\n\r\n" * 4)  # not TLS: an alert, then the close
        data = raw.recv(100)
        assert data[:1] in (b"\x15", b"")
    ctx = cert_context(env)
    with (
        socket.create_connection(("127.0.0.1", env.port), timeout=10) as plain,
        ctx.wrap_socket(plain) as tls,
    ):
        tls.sendall(b"\x00\x01 not http\r\n\r\n")
        answer = tls.recv(200)
        assert answer.startswith(b"HTTP/1.1 400")
    dev = dev_id()
    add_device(env, dev)
    run_session(client(dev), sender(env, ctx))  # the server goes on


def test_psk_keys_are_fetched_off_the_event_loop(env: Env) -> None:
    import threading

    from openscws.tls.psk import PskKeys

    dev = dev_id()
    add_device(env, dev, http_auth=HttpAuth.PSK, psk_identity=f"psk-{dev}", psk_key=b"q" * 16)
    seen: list[str] = []
    original = env.server.tls.keys
    assert original is not None

    def lookup(identity: str | None) -> bytes | None:
        seen.append(threading.current_thread().name)
        return original.lookup(identity)

    env.server.tls.keys = PskKeys(lookup, original.hint)
    try:
        for suite in ("PSK-AES128-GCM-SHA256", "DHE-PSK-AES128-CBC-SHA256"):
            ctx = psk_client_context(f"psk-{dev}", b"q" * 16, ciphers=suite)
            assert post(env, ctx, client(dev).start().body, XML).status == 200
    finally:
        env.server.tls.keys = original
    loop_thread = env.loop_thread.name
    assert len(seen) == 2
    assert loop_thread not in seen


def test_weak_client_certificate_is_refused(env: Env) -> None:
    dev = dev_id()
    cert_pem, key_pem, der = make_client_cert(env.client_ca, dev, rsa_bits=1024)
    add_device(env, dev, http_auth=HttpAuth.CERT, cert_sha256=certificate_fingerprint(der))
    ctx = cert_context(env, (cert_pem, key_pem), seclevel0=True)
    r = post(env, ctx, client(dev).start().body, XML)
    assert r.status == 403
    assert b"RSA key of 1024 bits" in r.body


def test_weak_server_certificate_is_a_config_error(env: Env, tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    from openscws.dm.server_tls import dm_server_context
    from openscws.errors import ConfigError

    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "weak")])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    c, k = tmp_path / "c.pem", tmp_path / "k.pem"
    c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(ConfigError, match="1024 bits"):
        dm_server_context(c, k)


def test_concurrent_devices(env: Env) -> None:
    """Twelve devices at once, each with its job, over PSK-TLS and certificate TLS."""
    from concurrent.futures import ThreadPoolExecutor

    devices = [dev_id() for _ in range(12)]
    jobs = {}
    for i, dev in enumerate(devices):
        if i % 2:
            add_device(env, dev, http_auth=HttpAuth.PSK, psk_identity=f"c-{dev}",
                       psk_key=b"c" * 16)  # fmt: skip
        else:
            add_device(env, dev)
        jobs[dev] = env.store.create_job(dev, JOB).id

    def one(i: int, dev: str) -> None:
        ctx = (
            psk_client_context(f"c-{dev}", b"c" * 16, ciphers="DHE-PSK-AES128-GCM-SHA256")
            if i % 2
            else cert_context(env)
        )
        run_session(client(dev), sender(env, ctx))

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(one, range(len(devices)), devices))
    for dev, job_id in jobs.items():
        done = env.store.job(job_id)
        assert done is not None
        assert done.state == "done", (dev, done)
        assert [r["status"] for r in done.results] == [200, 200, 200, 404]


def test_close_notify_is_answered(env: Env) -> None:
    import socket

    dev = dev_id()
    add_device(env, dev)
    body = client(dev).start().body
    head = (
        f"POST /dm HTTP/1.1\r\nHost: x\r\nContent-Type: {XML}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with (
        socket.create_connection(("127.0.0.1", env.port), timeout=5) as plain,
        cert_context(env).wrap_socket(plain) as tls,
    ):
        tls.sendall(head + body)
        answer = b""
        while b"</SyncML>" not in answer:
            answer += tls.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200")
        tls.unwrap()  # sends close_notify and waits for the server's (timeout: 5 s)
