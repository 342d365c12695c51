"""The DM client shell over real sockets: its tree file, TLS versions and PSK suites, HTTP Basic
and Digest and the X.509 client certificate at the transport, and the TLS report in Package #1,
against the small server shell built on the session core (openscws.dm.scr_server)."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openscws.dm import auth, client_store
from openscws.dm import message as m
from openscws.dm.client import DmClient, DmClientError
from openscws.dm.client_store import AccountSettings
from openscws.dm.scr_server import HttpAuth, MiniDmServer, Pki, make_pki, server_context
from openscws.dm.session import DeviceAccount
from openscws.dm.transport import TlsSettings, client_context, psk_suites
from openscws.dm.transport_auth import HttpCredentials, TransportAuthError, auth_params
from openscws.errors import ConfigError

PSK_ID = "IMEI:490154203237518"
PSK = bytes(range(16))


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki()


def account() -> DeviceAccount:
    return DeviceAccount(
        "dev",
        "s3cret",
        auth.AUTH_MD5,
        b"N0",
        server_id="srv",
        server_password="srvpw",
        server_auth_type=auth.AUTH_MD5,
    )


def job() -> list[m.Command]:
    return [
        m.Get(cmd_id=0, items=(m.Item(target=m.Target(loc_uri="./DevInfo/Ext/TLS/Suite")),)),
        m.Replace(
            cmd_id=0, items=(m.Item(target=m.Target(loc_uri="./DMAcc/1/Name"), data="Operator"),)
        ),
    ]


def make_tree(path: Path, url: str, pki: Pki, tls: TlsSettings, **kw: object) -> None:
    tree = client_store.new_tree("IMEI:490154203237518")
    acc = AccountSettings(
        server_id="srv",
        server_url=url,
        client_name="dev",
        client_secret="s3cret",
        server_secret="srvpw",
        tls=tls,
        **kw,  # type: ignore[arg-type]
    )
    client_store.add_account(tree, "1", acc)
    client_store.save(tree, path)


def ca(tmp_path: Path, pki: Pki) -> Path:
    p = tmp_path / "ca.pem"
    p.write_bytes(pki.ca_pem)
    return p


async def session(
    tmp_path: Path, server: MiniDmServer, pki: Pki, tls: TlsSettings, **kw: object
) -> DmClient:
    await server.start()
    try:
        path = tmp_path / "tree.json"
        make_tree(path, server.url, pki, tls, **kw)
        client = DmClient(path, timeout=10)
        await client.run("1")
        return client
    finally:
        await server.close()


@pytest.mark.parametrize("version", ["1.1", "1.2", "1.0"])
def test_certificate_session_reports_tls(tmp_path: Path, pki: Pki, version: str) -> None:
    server = MiniDmServer(
        account=account, commands=job, context=server_context(pki, versions=(version, version))
    )
    tls = TlsSettings(min_version="1.0", ca_file=ca(tmp_path, pki))
    client = asyncio.run(session(tmp_path, server, pki, tls))
    report = client.last
    assert report is not None
    want = {"1.0": "TLSv1", "1.1": "TLSv1.1", "1.2": "TLSv1.2"}[version]
    assert report.tls_version == want
    assert report.state == "ended"
    served = server.last()
    assert served is not None
    # The TLS the client reports in Package #1 is what the server's end negotiated.
    assert served.core.devinfo["Ext/TLS/Version"] == want
    assert (want, served.core.devinfo["Ext/TLS/Suite"]) == served.tls[0]
    results = {r.cmd: r for r in served.core.results.values()}
    assert results["Get"].items[0].data == report.tls_suite
    assert ("Replace", "./DMAcc/1/Name", 200) in report.commands
    tree = client_store.load(tmp_path / "tree.json")
    assert tree.get("./DMAcc/1/Name").data == "Operator"


def test_default_profile_refuses_tls10_server(tmp_path: Path, pki: Pki) -> None:
    server = MiniDmServer(account=account, context=server_context(pki, versions=("1.0", "1.0")))
    tls = TlsSettings(ca_file=ca(tmp_path, pki))  # TLS 1.1 and 1.2
    with pytest.raises(DmClientError, match="TLS handshake"):
        asyncio.run(session(tmp_path, server, pki, tls))


@pytest.mark.parametrize("suite", [name for _, name in psk_suites()])
def test_psk_suites(tmp_path: Path, pki: Pki, suite: str) -> None:
    server = MiniDmServer(
        account=account,
        commands=job,
        context=server_context(pki, suites=suite, psk=(PSK_ID, PSK)),
    )
    tls = TlsSettings(psk_identity=PSK_ID, psk_key=PSK, suites=suite)
    client = asyncio.run(session(tmp_path, server, pki, tls))
    assert client.last is not None
    assert (client.last.tls_version, client.last.tls_suite) == ("TLSv1.2", suite)
    served = server.last()
    assert served is not None
    assert served.core.devinfo["Ext/TLS/Suite"] == suite


def test_psk_wrong_key_fails_handshake(tmp_path: Path, pki: Pki) -> None:
    server = MiniDmServer(account=account, context=server_context(pki, psk=(PSK_ID, PSK)))
    tls = TlsSettings(psk_identity=PSK_ID, psk_key=b"\x01" * 16)
    with pytest.raises(DmClientError, match="TLS handshake"):
        asyncio.run(session(tmp_path, server, pki, tls))


@pytest.mark.parametrize(
    ("kind", "algorithm"), [("basic", "MD5"), ("digest", "MD5"), ("digest", "SHA-256")]
)
def test_http_auth(tmp_path: Path, pki: Pki, kind: str, algorithm: str) -> None:
    server = MiniDmServer(
        account=account,
        commands=job,
        context=server_context(pki, psk=(PSK_ID, PSK)),
        http_auth=HttpAuth(kind, "dev-http", "pw", algorithm),
    )
    tls = TlsSettings(psk_identity=PSK_ID, psk_key=PSK)
    http = "HTTP-BASIC" if kind == "basic" else "HTTP-DIGEST"
    client = asyncio.run(
        session(tmp_path, server, pki, tls, http_auth=http, http_name="dev-http", http_secret="pw")
    )
    assert client.last is not None
    assert client.last.state == "ended"
    assert client.last.http_auth == http
    served = server.last()
    assert served is not None
    assert served.http_user == "dev-http"


def test_http_auth_wrong_password(tmp_path: Path, pki: Pki) -> None:
    server = MiniDmServer(
        account=account,
        context=server_context(pki, psk=(PSK_ID, PSK)),
        http_auth=HttpAuth("digest", "dev-http", "pw"),
    )
    tls = TlsSettings(psk_identity=PSK_ID, psk_key=PSK)
    with pytest.raises(DmClientError, match="HTTP 401"):
        asyncio.run(
            session(
                tmp_path,
                server,
                pki,
                tls,
                http_auth="HTTP-DIGEST",
                http_name="dev-http",
                http_secret="wrong",
            )
        )
    assert server.http_refusals == 2  # the first challenge, then the refused answer


def test_x509_client_certificate(tmp_path: Path, pki: Pki) -> None:
    server = MiniDmServer(account=account, context=server_context(pki, require_client_cert=True))
    tls = TlsSettings(ca_file=ca(tmp_path, pki))
    client = asyncio.run(
        session(
            tmp_path,
            server,
            pki,
            tls,
            client_cert_pem=pki.client_pem,
            client_key_pem=pki.client_key_pem,
        )
    )
    assert client.last is not None
    assert client.last.state == "ended"
    served = server.last()
    assert served is not None
    assert served.client_cert


def test_server_without_client_cert_refuses(tmp_path: Path, pki: Pki) -> None:
    server = MiniDmServer(account=account, context=server_context(pki, require_client_cert=True))
    tls = TlsSettings(ca_file=ca(tmp_path, pki), max_version="1.2")
    with pytest.raises(DmClientError):
        asyncio.run(session(tmp_path, server, pki, tls))


def test_package0_starts_session(tmp_path: Path, pki: Pki) -> None:
    server = MiniDmServer(account=account, commands=job, context=server_context(pki))

    async def go() -> DmClient:
        await server.start()
        try:
            path = tmp_path / "tree.json"
            make_tree(path, server.url, pki, TlsSettings(ca_file=ca(tmp_path, pki)))
            client = DmClient(path, timeout=10)
            pkg0 = account().package0(0x1A2B)
            assert client.account_for(pkg0) == "1"
            await client.run("1", pkg0)
            return client
        finally:
            await server.close()

    client = asyncio.run(go())
    assert client.last is not None
    assert client.last.session_id == "1A2B"
    assert "1A2B" in server.sessions
    forged = bytes(16) + account().package0(7)[16:]
    with pytest.raises(DmClientError, match="Package #0 refused"):
        asyncio.run(session_with(tmp_path, server, forged))


async def session_with(tmp_path: Path, server: MiniDmServer, pkg0: bytes) -> None:
    await server.start()
    try:
        client = DmClient(tmp_path / "tree.json", timeout=10)
        await client.run("1", pkg0)
    finally:
        await server.close()


def test_tree_file_is_private_and_round_trips(tmp_path: Path, pki: Pki) -> None:
    path = tmp_path / "sub" / "tree.json"
    make_tree(
        path,
        "https://dm.example/dm",
        pki,
        TlsSettings(psk_identity="id", psk_key=b"k" * 16),
        client_cert_pem=pki.client_pem,
        client_key_pem=pki.client_key_pem,
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    tree = client_store.load(path)
    tls = client_store.account_tls(tree, "1")
    assert tls.psk_key == b"k" * 16
    assert tls.client_cert_pem == pki.client_pem
    assert tree.get("./DMAcc/1/Ext/TLS/PskKey").status == 405  # never read back
    assert list(tmp_path.joinpath("sub").iterdir()) == [path]  # no temporary left
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not a DM client tree"):
        client_store.load(path)


@pytest.mark.parametrize("version", ["3.0", "2.0"])
def test_ssl_versions_are_not_in_this_stack(version: str) -> None:
    with pytest.raises(ConfigError, match="not supported by this TLS stack"):
        client_context(TlsSettings(min_version=version))


def test_plain_http_needs_allow(tmp_path: Path, pki: Pki) -> None:
    server = MiniDmServer(account=account)

    async def go(allow: bool) -> None:
        await server.start()
        try:
            path = tmp_path / "tree.json"
            make_tree(path, server.url, pki, TlsSettings())
            await DmClient(path, allow_http=allow, timeout=10).run("1")
        finally:
            await server.close()

    with pytest.raises(DmClientError, match="must be https"):
        asyncio.run(go(False))
    asyncio.run(go(True))


@pytest.mark.parametrize(
    ("algorithm", "response"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_digest_answer_matches_rfc7616_example(algorithm: str, response: str) -> None:
    """RFC 7616 §3.9.1: Mufasa / "Circle of Life", GET /dir/index.html."""
    creds = HttpCredentials(
        "HTTP-DIGEST",
        "Mufasa",
        "Circle of Life",
        lambda: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    )
    assert creds.authorization("GET", "/dir/index.html") is None  # nothing before a challenge
    challenge = (
        f'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={algorithm}, '
        'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
        'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
    )
    assert creds.challenged([challenge])
    value = creds.authorization("GET", "/dir/index.html")
    assert value is not None
    params = auth_params(value.removeprefix("Digest "))
    assert params["response"] == response
    assert params["nc"] == "00000001"
    assert params["opaque"] == "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
    # The same nonce challenged again (not stale): the password was refused.
    assert not creds.challenged([challenge])


def test_malformed_challenge_is_typed() -> None:
    creds = HttpCredentials("HTTP-DIGEST", "u", "p", lambda: "c")
    with pytest.raises(TransportAuthError):
        creds.challenged(['Digest realm="x", nonce="y", =broken'])
    with pytest.raises(TransportAuthError):
        HttpCredentials("HTTP-NTLM", "u", "p", lambda: "c")


@pytest.mark.parametrize(("wbxml", "hmac"), [(True, False), (False, True), (True, True)])
def test_wbxml_and_hmac_over_https(tmp_path: Path, pki: Pki, wbxml: bool, hmac: bool) -> None:
    """WBXML bodies and the x-syncml-hmac header travel through the HTTPS transport."""

    def acc() -> DeviceAccount:
        a = account()
        if hmac:
            a.auth_type = auth.AUTH_MAC
            a.server_auth_type = auth.AUTH_MAC
        return a

    server = MiniDmServer(account=acc, commands=job, context=server_context(pki, psk=(PSK_ID, PSK)))

    async def go() -> DmClient:
        await server.start()
        try:
            path = tmp_path / "tree.json"
            tree = client_store.new_tree("IMEI:490154203237518")
            kind = "HMAC" if hmac else "DIGEST"
            client_store.add_account(
                tree,
                "1",
                AccountSettings(
                    server_id="srv",
                    server_url=server.url,
                    client_name="dev",
                    client_secret="s3cret",
                    client_auth=kind,
                    server_secret="srvpw",
                    server_auth=kind,
                    tls=TlsSettings(psk_identity=PSK_ID, psk_key=PSK),
                ),
            )
            client_store.save(tree, path)
            client = DmClient(path, wbxml=wbxml, timeout=10)
            await client.run("1")
            return client
        finally:
            await server.close()

    client = asyncio.run(go())
    assert client.last is not None
    assert client.last.state == "ended"
    assert ("Replace", "./DMAcc/1/Name", 200) in client.last.commands
    served = server.last()
    assert served is not None
    assert served.core.wbxml_form is wbxml


@given(st.text(max_size=200))
def test_fuzz_challenges_typed_errors_only(text: str) -> None:
    creds = HttpCredentials("HTTP-DIGEST", "u", "p", lambda: "c")
    try:
        creds.challenged([text, "Digest " + text])
    except TransportAuthError:
        pass
