"""Context builders, `describe_stack`, and the real HTTP engine behind TLS."""

from __future__ import annotations

import ssl
import tempfile
import warnings
from pathlib import Path

import pytest
from tlspair import NOW, EchoInner, Pki, RawClient, pump

from openscws.errors import ConfigError
from openscws.http import CardLimits, HttpServerConnection, RamBudget
from openscws.scws.model import MemoryStore, Resource
from openscws.scws.site import Site
from openscws.tls import (
    TlsServerHandler,
    describe_stack,
    psk_client_context,
    psk_server_context,
    server_context,
)
from openscws.tls.alert import TlsAlert, alert_name
from openscws.tls.context import PSK_SPEC_SUITES
from openscws.tls.psk import PskKeys

WEAK = ("NULL", "RC4", "EXP", "ADH", "AECDH", "MD5", "DES-CBC-", "3DES", "anon", "SRP")


def suites(ctx: ssl.SSLContext) -> list[str]:
    return [str(s["name"]) for s in ctx.get_ciphers()]


@pytest.mark.parametrize("profile", ["modern", "compat"])
def test_certificate_context_offers_no_weak_suites(pki: Pki, profile: str) -> None:
    ctx = server_context(pki.chain_pem, pki.key_pem, profile=profile)  # type: ignore[arg-type]
    names = suites(ctx)
    assert names
    assert not [n for n in names if any(w in n for w in WEAK)]
    assert not [n for n in names if n.startswith("PSK-")]
    assert ctx.num_tickets == 0
    assert ctx.options & ssl.OP_NO_RENEGOTIATION
    expected = ssl.TLSVersion.TLSv1_2 if profile == "modern" else ssl.TLSVersion.TLSv1
    assert ctx.minimum_version == expected


@pytest.mark.parametrize("profile", ["modern", "compat"])
def test_psk_contexts(profile: str) -> None:
    server = psk_server_context(PskKeys(lambda i: b"k" * 16), profile=profile)  # type: ignore[arg-type]
    client = psk_client_context("id", b"k" * 16, profile=profile)  # type: ignore[arg-type]
    for ctx in (server, client):
        assert ctx.maximum_version == ssl.TLSVersion.TLSv1_2
        names = suites(ctx)
        # the SCWS suite TLS_PSK_WITH_AES_128_CBC_SHA is CBC: compat only; modern is AEAD only
        assert ("PSK-AES128-CBC-SHA" in names) == (profile == "compat")
        if profile == "modern":
            assert not [n for n in names if "CBC" in n]
        assert all(n.startswith("PSK-") or n.startswith("TLS_") for n in names)
        assert not [n for n in names if any(w in n for w in WEAK if w != "3DES")]
    if profile == "modern":
        assert "PSK-3DES-EDE-CBC-SHA" not in suites(server)


def test_empty_psk_refused() -> None:
    with pytest.raises(ConfigError):
        psk_client_context("id", b"")


def test_unknown_profile(pki: Pki) -> None:
    with pytest.raises(ConfigError, match="profile"):
        server_context(pki.chain_pem, pki.key_pem, profile="legacy")  # type: ignore[arg-type]


def test_bad_key_is_config_error_and_temp_files_go(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(ConfigError, match="certificate or key"):
        server_context(
            pki.chain_pem, b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
        )
    assert list(tmp_path.iterdir()) == []
    server_context(pki.chain_pem, pki.key_pem)
    assert list(tmp_path.iterdir()) == []


def test_mismatched_key_refused(pki: Pki) -> None:
    from tlspair import make_pki

    with pytest.raises(ConfigError):
        server_context(pki.chain_pem, make_pki().key_pem)


def test_describe_stack() -> None:
    info = describe_stack()
    assert str(info["openssl"]).startswith("OpenSSL")
    assert info["psk"] is True
    assert info["max_fragment_length"] is True
    for suite in PSK_SPEC_SUITES:
        assert isinstance(info[suite], bool)
        assert (info[suite + "_why"] == "") == info[suite]
    assert info["PSK-AES128-CBC-SHA"] is True  # the spec's mandatory AES suite


def test_describe_stack_matches_what_contexts_do() -> None:
    info = describe_stack()
    three_des = "PSK-3DES-EDE-CBC-SHA" in suites(
        psk_server_context(PskKeys(lambda i: b"k" * 16), profile="compat")
    )
    assert three_des == info["PSK-3DES-EDE-CBC-SHA"]


def test_certificate_tls10_needs_seclevel0(pki: Pki) -> None:
    """Why "compat" lowers the security level: OpenSSL 3 refuses TLS 1.0 signatures above 0."""
    if not describe_stack()["tls1_0_cert_needs_seclevel0"]:
        pytest.skip("OpenSSL < 3 allows TLS 1.0 at level 1")
    server_ctx = server_context(pki.chain_pem, pki.key_pem, profile="compat")
    assert server_ctx.security_level == 0
    server_ctx.set_ciphers("HIGH:!aNULL:!PSK:!SRP:@SECLEVEL=1")
    client_ctx = ssl.create_default_context(cadata=pki.ca_pem.decode())
    client_ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        client_ctx.minimum_version = client_ctx.maximum_version = ssl.TLSVersion.TLSv1
    server = TlsServerHandler(server_ctx, EchoInner(), now=NOW)
    client = RawClient(client_ctx, server_hostname="localhost")
    with pytest.raises(ssl.SSLError, match="alert internal error"):
        pump(client, server, step=client.handshake)
    assert server.should_close
    assert server.error is not None
    assert server.error.reason == "NO_SUITABLE_SIGNATURE_ALGORITHM"
    assert server.error.description == 80  # internal_error


def test_alert_parsing() -> None:
    assert alert_name(20) == "bad_record_mac"
    assert alert_name(115) == "unknown_psk_identity"
    assert alert_name(250) == "250"
    assert "decrypt_error (51) sent" in str(TlsAlert("X", 51))
    assert str(TlsAlert("handshake timed out")) == "TLS failure: handshake timed out"


# -- the card's HTTP engine behind TLS -------------------------------------------------------


def test_http_engine_behind_tls(pki: Pki) -> None:
    store = MemoryStore()
    store.put(Resource("/index.html", b"<p>hello over TLS</p>", "text/html"))
    site = Site(store, card={"ICCID": "8944500102198304826"}, secret=b"0" * 32)
    limits = CardLimits()
    http = HttpServerConnection(site, limits, RamBudget.for_limits(limits), scheme="https", now=NOW)
    server = TlsServerHandler(server_context(pki.chain_pem, pki.key_pem), http, now=NOW)
    client = RawClient(
        ssl.create_default_context(cadata=pki.ca_pem.decode()), server_hostname="localhost"
    )
    pump(client, server, step=client.handshake)
    client.obj.write(b"GET /index.html HTTP/1.1\r\nHost: card\r\nConnection: close\r\n\r\n")
    pump(client, server)
    answer = client.read_all()
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert answer.endswith(b"<p>hello over TLS</p>")
    assert server.should_close
    assert client.obj.read(1) == b""  # close_notify followed the response
