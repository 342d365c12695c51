"""The card's secure area: key pair, device certificate, key-use policy, PSK table."""

from __future__ import annotations

import datetime
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from openscws.errors import ConfigError, KeyUseDenied
from openscws.pki.authority import CertificateAuthority, parse_csr
from openscws.uicc.keystore import CardKeyStore, PskTable

NOW = datetime.datetime(2026, 11, 22, tzinfo=datetime.UTC)


class MemorySecrets:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def get_secret(self, name: str) -> bytes | None:
        return self.files.get(name)

    def set_secret(self, name: str, data: bytes) -> None:
        self.files[name] = data

    def delete_secret(self, name: str) -> bool:
        return self.files.pop(name, None) is not None


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create(now=NOW, key_type="ec")


@pytest.fixture
def keys() -> CardKeyStore:
    store = CardKeyStore(MemorySecrets())
    store.generate("ec")
    return store


def _install(keys: CardKeyStore, ca: CertificateAuthority) -> x509.Certificate:
    csr = parse_csr(keys.make_csr(common_name="localhost", hosts=("localhost",)))
    return keys.install_chain(ca.sign(csr, now=NOW).pem + ca.cert_pem)


def test_no_method_returns_the_private_key(keys: CardKeyStore) -> None:
    public = [name for name in dir(keys) if not name.startswith("_")]
    assert not any("private" in name or name == "key" for name in public)
    pem = keys.public_key_pem()
    assert b"PUBLIC KEY" in pem
    assert b"PRIVATE" not in pem


def test_generate_refuses_to_replace_silently(keys: CardKeyStore) -> None:
    before = keys.public_key_pem()
    with pytest.raises(ConfigError, match="already has a key pair"):
        keys.generate("ec")
    keys.generate("rsa", replace=True)
    assert keys.public_key_pem() != before
    assert keys.key_type() == "rsa"


def test_missing_key_is_a_clear_error() -> None:
    empty = CardKeyStore(MemorySecrets())
    assert not empty.has_key
    with pytest.raises(ConfigError, match="openscws card init"):
        empty.public_key_pem()
    with pytest.raises(ConfigError, match="no device certificate"):
        empty.server_context()


def test_install_chain_checks_key_and_chain(keys: CardKeyStore, ca: CertificateAuthority) -> None:
    leaf = _install(keys, ca)
    assert keys.device_certificate() == leaf
    chain = keys.chain_pem()
    assert chain is not None
    assert chain.count(b"BEGIN CERTIFICATE") == 2
    other = CardKeyStore(MemorySecrets())
    other.generate("ec")
    with pytest.raises(ConfigError, match="not for this card"):
        other.install_chain(chain)
    stranger = CertificateAuthority.create(now=NOW, key_type="ec")
    csr = parse_csr(keys.make_csr(common_name="localhost"))
    with pytest.raises(ConfigError, match="chain is broken"):
        keys.install_chain(ca.sign(csr, now=NOW).pem + stranger.cert_pem)
    with pytest.raises(ConfigError, match="not a PEM"):
        keys.install_chain(b"nonsense")


def test_new_key_voids_the_certificate(keys: CardKeyStore, ca: CertificateAuthority) -> None:
    _install(keys, ca)
    keys.generate("ec", replace=True)
    assert keys.device_certificate() is None


def test_signer_obeys_the_policy(keys: CardKeyStore) -> None:
    with pytest.raises(KeyUseDenied, match="wallet"):
        keys.signer("wallet")
    keys.set_authorised_apps(["wallet"])
    sign = keys.signer("wallet")
    signature = sign(b"challenge")
    public = serialization.load_pem_public_key(keys.public_key_pem())
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(signature, b"challenge", ec.ECDSA(hashes.SHA256()))
    with pytest.raises(KeyUseDenied):
        keys.signer("other")
    keys.set_authorised_apps([])
    with pytest.raises(KeyUseDenied):
        keys.signer("wallet")


def test_rsa_signer(ca: CertificateAuthority) -> None:
    keys = CardKeyStore(MemorySecrets())
    keys.generate("rsa")
    keys.set_authorised_apps(["app"])
    public = serialization.load_pem_public_key(keys.public_key_pem())
    assert isinstance(public, rsa.RSAPublicKey)
    public.verify(keys.signer("app")(b"m"), b"m", padding.PKCS1v15(), hashes.SHA256())


def test_server_context_offers_psk_only_when_enabled(
    keys: CardKeyStore, ca: CertificateAuthority
) -> None:
    with pytest.raises(ConfigError, match="no device certificate"):
        keys.server_context()
    _install(keys, ca)

    def psk_suites(ctx: ssl.SSLContext) -> list[str]:
        return [c["name"] for c in ctx.get_ciphers() if c["name"].startswith("PSK-")]

    assert psk_suites(keys.server_context()) == []
    with pytest.raises(ConfigError, match="add a PSK identity first"):
        keys.set_psk_enabled(True)
    keys.add_psk("card1", bytes(range(16)))
    assert psk_suites(keys.server_context()) == []  # added, not enabled
    keys.set_psk_enabled(True, hint="scws")
    assert "PSK-AES128-GCM-SHA256" in psk_suites(keys.server_context())
    # the SCWS CBC suite: compat only (modern is AEAD only)
    assert "PSK-AES128-CBC-SHA" not in psk_suites(keys.server_context())
    assert "PSK-AES128-CBC-SHA" in psk_suites(keys.server_context("compat"))
    keys.set_psk_enabled(False)
    assert psk_suites(keys.server_context()) == []


def test_psk_table_rules(keys: CardKeyStore) -> None:
    keys.add_psk("a", b"k" * 16)
    keys.add_psk("b", b"k" * 32)
    with pytest.raises(ConfigError, match="16-64 bytes"):
        keys.add_psk("c", b"short")
    with pytest.raises(ConfigError, match="identity"):
        keys.add_psk("", b"k" * 16)
    with pytest.raises(ConfigError, match="identity"):
        keys.add_psk("x" * 129, b"k" * 16)
    with pytest.raises(ConfigError, match="identity"):
        keys.add_psk("bad\nname", b"k" * 16)
    assert keys.remove_psk("a")
    assert not keys.remove_psk("a")
    table = keys.psk_table()
    assert set(table.keys) == {"b"}
    assert table.lookup("b") is None  # disabled
    keys.set_psk_enabled(True)
    assert keys.psk_table().lookup("b") == b"k" * 32
    assert keys.psk_table().lookup("zz") is None
    assert keys.psk_table().lookup(None) is None


def test_psk_table_json_round_trip_and_corruption() -> None:
    table = PskTable(True, "hint", {"id": b"\x01" * 16})
    assert PskTable.from_json(table.to_json()) == table
    for bad in (b"{", b'{"enabled": true}', b'{"enabled": 1, "keys": {"a": "zz"}}'):
        with pytest.raises(ConfigError, match="corrupt"):
            PskTable.from_json(bad)


def test_policy_corruption_is_reported() -> None:
    secrets = MemorySecrets()
    secrets.files["key-policy.json"] = b"[1, 2"
    with pytest.raises(ConfigError, match="corrupt"):
        CardKeyStore(secrets).authorised_apps()
