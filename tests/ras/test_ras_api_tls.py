"""TLS for the REST API and console: the bind check, the certificate from the issuer CA, the
strict context (checked with real handshakes from Python's ssl client), and the settings."""

from __future__ import annotations

import datetime
import logging
import socket
import ssl
import threading
import warnings
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography import x509

from openscws.config import AdminSettings, CaSettings, Settings, load
from openscws.errors import ConfigError
from openscws.ras.api_tls import (
    api_tls,
    check_api_bind,
    ensure_api_certificate,
    is_loopback,
    server_context,
)

NOW = datetime.datetime(2026, 6, 1, tzinfo=datetime.UTC)


def _settings(tmp_path: Path, **admin: object) -> Settings:
    return Settings(
        admin=AdminSettings(data_dir=tmp_path / "ras", **admin),  # type: ignore[arg-type]
        ca=CaSettings(dir=tmp_path / "ca"),
    )


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_loopback_addresses(host: str) -> None:
    assert is_loopback(host)
    check_api_bind(AdminSettings(api_host=host))


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "192.0.2.10", "2001:db8::1"])
def test_plain_http_off_loopback_is_refused_in_one_line(host: str) -> None:
    assert not is_loopback(host)
    with pytest.raises(ConfigError) as info:
        check_api_bind(AdminSettings(api_host=host))
    text = str(info.value)
    assert "\n" not in text
    for hint in ('admin.api_tls = "ca"', "admin.api_cert", "--insecure-bind"):
        assert hint in text


def test_insecure_bind_overrides_loudly(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="openscws.ras.api_tls"):
        check_api_bind(AdminSettings(api_host="0.0.0.0", api_insecure_bind=True))
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert "WITHOUT TLS" in record.getMessage()


def test_tls_makes_any_address_acceptable() -> None:
    check_api_bind(AdminSettings(api_host="0.0.0.0", api_tls="ca"))


def test_certificate_from_the_issuer_ca_is_kept_then_renewed(tmp_path: Path) -> None:
    admin = AdminSettings(data_dir=tmp_path / "ras", api_tls="ca", api_host="127.0.0.1")
    cert, key, ca = ensure_api_certificate(admin, tmp_path / "ca", now=NOW)
    assert ca == tmp_path / "ca" / "ca.pem"
    assert key.stat().st_mode & 0o077 == 0
    first = cert.read_bytes()
    leaf, issuer = x509.load_pem_x509_certificates(first)
    leaf.verify_directly_issued_by(issuer)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    # The same settings: the same certificate.
    ensure_api_certificate(admin, tmp_path / "ca", now=NOW)
    assert cert.read_bytes() == first
    # Another name: a new one for it.
    more = replace(admin, api_hosts=("ras.example.net",))
    ensure_api_certificate(more, tmp_path / "ca", now=NOW)
    renamed = x509.load_pem_x509_certificates(cert.read_bytes())[0]
    names = renamed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "ras.example.net" in names.get_values_for_type(x509.DNSName)
    # Close to expiry: a new one.
    late = leaf.not_valid_after_utc - datetime.timedelta(days=10)
    ensure_api_certificate(more, tmp_path / "ca", now=late)
    renewed = x509.load_pem_x509_certificates(cert.read_bytes())[0]
    assert renewed.not_valid_after_utc > leaf.not_valid_after_utc


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A one-thread TLS echo of the API's context on 127.0.0.1: (port, CA file)."""
    admin = AdminSettings(data_dir=tmp_path / "ras", api_tls="ca")
    cert, key, ca = ensure_api_certificate(
        admin, tmp_path / "ca", now=datetime.datetime.now(datetime.UTC)
    )
    context = server_context(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(5)
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(tls.recv(16))
            except (ssl.SSLError, OSError):
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], ca
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def _client(ca: Path, **limits: object) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.1 on purpose
        context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        for name, value in limits.items():
            if name == "ciphers":
                context.set_ciphers(str(value))
            else:
                setattr(context, name, value)
    return context


def _handshake(port: int, context: ssl.SSLContext) -> tuple[str | None, str]:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(b"ping")
        assert tls.recv(16) == b"ping"
        cipher = tls.cipher()
        assert cipher is not None
        return tls.version(), cipher[0]


def test_context_speaks_tls_1_3_and_1_2_with_aead_only(tls_server: tuple[int, Path]) -> None:
    port, ca = tls_server
    assert _handshake(port, _client(ca))[0] == "TLSv1.3"
    version, suite = _handshake(port, _client(ca, maximum_version=ssl.TLSVersion.TLSv1_2))
    assert version == "TLSv1.2"
    assert suite.startswith("ECDHE-")
    assert "GCM" in suite or "CHACHA20" in suite


@pytest.mark.parametrize(
    "limits",
    [
        {"maximum_version": ssl.TLSVersion.TLSv1_1, "ciphers": "ALL:@SECLEVEL=0"},
        {"maximum_version": ssl.TLSVersion.TLSv1_2, "ciphers": "AES128-SHA:AES256-SHA"},
        {"maximum_version": ssl.TLSVersion.TLSv1_2, "ciphers": "ECDHE+AES+SHA1"},
        {"maximum_version": ssl.TLSVersion.TLSv1_2, "ciphers": "AES128-GCM-SHA256"},
    ],
    ids=["tls1.1", "rsa-kx-cbc", "ecdhe-cbc", "static-rsa-gcm"],
)
def test_context_refuses_old_protocols_and_suites(
    tls_server: tuple[int, Path], limits: dict[str, object]
) -> None:
    port, ca = tls_server
    try:
        client = _client(ca, **limits)
    except ssl.SSLError:
        pytest.skip("this OpenSSL cannot even offer it")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _handshake(port, client)


def test_api_tls_files_and_off(tmp_path: Path) -> None:
    assert api_tls(_settings(tmp_path)) is None
    ca_made = api_tls(_settings(tmp_path, api_tls="ca"), now=datetime.datetime.now(datetime.UTC))
    assert ca_made is not None
    assert ca_made.ca_path == tmp_path / "ca" / "ca.pem"
    cert, key = ca_made.cert_path, tmp_path / "ras" / "api-tls" / "key.pem"
    given = api_tls(_settings(tmp_path, api_tls="files", api_cert=cert, api_key=key))
    assert given is not None
    assert given.ca_path is None
    key.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        api_tls(_settings(tmp_path, api_tls="files", api_cert=cert, api_key=key))
    with pytest.raises(ConfigError, match="no such file"):
        api_tls(_settings(tmp_path, api_tls="files", api_cert=cert, api_key=tmp_path / "nope"))


def test_settings_check_the_tls_keys(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[admin]\napi_tls = "files"\napi_cert = "/x.pem"\napi_key = "~/k.pem"\n')
    admin = load(cfg).admin
    assert admin.api_cert == Path("/x.pem")
    assert admin.api_key == Path("~/k.pem").expanduser()
    for text, error in (
        ('api_tls = "yes"', "off, ca or files"),
        ('api_tls = "files"', "needs admin.api_cert"),
        ('api_cert = "/x.pem"', 'api_tls = "files"'),
    ):
        cfg.write_text(f"[admin]\n{text}\n")
        with pytest.raises(ConfigError, match=error):
            load(cfg)
