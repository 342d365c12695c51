"""The DM client's TLS against third-party servers: `openssl s_server` and `gnutls-serv`,
every TLS version and every DM PSK suite this OpenSSL has, checking that the version and suite
the client reports are the ones the peer says it negotiated."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from openscws.dm.scr_peers import PeerUnavailable, gnutls_server, openssl_server
from openscws.dm.scr_server import Pki, make_pki
from openscws.dm.transport import TlsInfo, TlsSettings, Transport, client_context, psk_suites
from openscws.tls.context import FFDHE2048_PEM

pytestmark = pytest.mark.peer

PSK = bytes(range(16))
NAMES = {"1.0": "TLSv1", "1.1": "TLSv1.1", "1.2": "TLSv1.2"}


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki()


def handshake(port: int, tls: TlsSettings) -> TlsInfo:
    async def go() -> TlsInfo:
        t = Transport(client_context(tls), timeout=10)
        try:
            info = await t.connect(f"https://127.0.0.1:{port}/dm")
        finally:
            await t.close()
        assert info is not None
        return info

    return asyncio.run(go())


def cases() -> list[tuple[str, str]]:
    out = []
    for _, suite in psk_suites():
        for version in ("1.0", "1.1", "1.2"):
            if "GCM" in suite and version != "1.2":
                continue  # AEAD suites are TLS 1.2 only
            out.append((version, suite))
    return out


def _peer(need_tool: object, program: str, package: str) -> None:
    need_tool(program, package)  # type: ignore[operator]


@pytest.mark.parametrize(("version", "suite"), cases())
def test_psk_against_openssl_s_server(
    need_tool: object, pki: Pki, version: str, suite: str
) -> None:
    _peer(need_tool, "openssl", "openssl")
    extra = {}
    if suite.startswith("RSA-PSK"):
        extra = {"cert_pem": pki.server_pem, "key_pem": pki.server_key_pem}
    if suite.startswith("DHE-PSK"):
        extra = {"dh_pem": FFDHE2048_PEM}
    with openssl_server(version=version, suite=suite, psk=PSK, **extra) as peer:  # type: ignore[arg-type]
        tls = TlsSettings(
            min_version=version, max_version=version, psk_identity="dm", psk_key=PSK, suites=suite
        )
        info = handshake(peer.port, tls)
        assert (info.version, info.suite) == (NAMES[version], suite)
        assert peer.wait_for(f"CIPHER is {suite}")


@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2"])
def test_certificate_versions_against_openssl_s_server(
    need_tool: object, pki: Pki, version: str, tmp_path: Path
) -> None:
    _peer(need_tool, "openssl", "openssl")
    ca = tmp_path / "ca.pem"
    ca.write_bytes(pki.ca_pem)
    suite = "AES128-SHA"  # TLS_RSA_WITH_AES_128_CBC_SHA, which every version has
    with openssl_server(
        version=version, suite=suite, cert_pem=pki.server_pem, key_pem=pki.server_key_pem
    ) as peer:
        tls = TlsSettings(min_version="1.0", ca_file=ca)
        info = handshake(peer.port, tls)
        assert (info.version, info.suite) == (NAMES[version], suite)
        assert peer.wait_for(f"CIPHER is {suite}")


def test_default_profile_refuses_tls10_only_server(need_tool: object, pki: Pki) -> None:
    _peer(need_tool, "openssl", "openssl")
    from openscws.dm.transport import TransportError

    with openssl_server(
        version="1.0", suite="AES128-SHA", cert_pem=pki.server_pem, key_pem=pki.server_key_pem
    ) as peer:
        with pytest.raises(TransportError, match="TLS handshake"):
            handshake(peer.port, TlsSettings(check_hostname=False))  # TLS 1.1 and 1.2


GNUTLS_NAMES = {"1.0": "TLS1.0", "1.1": "TLS1.1", "1.2": "TLS1.2"}


def gnutls_cases() -> list[tuple[str, str]]:
    # GnuTLS has the SHA-256 suites from TLS 1.2 on (OpenSSL from TLS 1.0).
    return [(v, s) for v, s in cases() if v == "1.2"] + [
        ("1.0", "PSK-AES128-CBC-SHA"),
        ("1.1", "PSK-AES128-CBC-SHA"),
    ]


@pytest.mark.parametrize(("version", "suite"), gnutls_cases())
def test_psk_against_gnutls_serv(need_tool: object, pki: Pki, version: str, suite: str) -> None:
    _peer(need_tool, "gnutls-serv", "gnutls-bin")
    from openscws.dm.scr_peers import GNUTLS_SUITES

    cert = {}
    if suite.startswith("RSA-PSK"):
        cert = {"cert_pem": pki.server_pem, "key_pem": pki.server_key_pem}
    try:
        with gnutls_server(
            version=version, suite=suite, psk_identity="dm", psk=PSK, **cert
        ) as peer:  # type: ignore[arg-type]
            tls = TlsSettings(
                min_version=version,
                max_version=version,
                psk_identity="dm",
                psk_key=PSK,
                suites=suite,
            )
            info = handshake(peer.port, tls)
            assert (info.version, info.suite) == (NAMES[version], suite)
            kx, cipher, mac = GNUTLS_SUITES[suite]
            assert peer.wait_for(f"- Version: {GNUTLS_NAMES[version]}")
            out = peer.output()
            assert f"- Key Exchange: {kx}" in out
            assert f"- Cipher: {cipher}" in out
            assert f"- MAC: {mac}" in out
            assert "Connected as 'dm'" in out
    except PeerUnavailable as exc:
        pytest.fail(str(exc))
