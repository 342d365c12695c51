"""`openscws card ...`, `openscws ca ...` and `openscws doctor`, run in-process."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509

from openscws.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "card", tmp_path / "ca"


def test_issuer_flow_by_hand(capsys: pytest.CaptureFixture[str], dirs: tuple[Path, Path]) -> None:
    card, ca = dirs
    d = ("--data-dir", card)
    c = ("--ca-dir", ca)
    code, out, _ = run(capsys, "card", "init", *d, "--key-type", "ec", "--no-demo")
    assert code == 0
    assert "made an EC key pair" in out
    assert "openscws card csr" in out
    code, out, _ = run(capsys, "card", "init", *d)
    assert code == 0
    assert "already has an EC key pair" in out
    assert run(capsys, "card", "csr", *d, "-o", card / "card.csr")[0] == 0
    csr = x509.load_pem_x509_csr((card / "card.csr").read_bytes())
    assert csr.is_signature_valid
    # Signing before the CA exists is a clear error.
    code, _, err = run(capsys, "ca", "sign", card / "card.csr", *c)
    assert code == 2
    assert "openscws ca init" in err
    code, out, _ = run(capsys, "ca", "init", *c, "--key-type", "ec", "--name", "Test Issuer")
    assert code == 0
    assert "CN=Test Issuer" in out
    code, _, err = run(capsys, "ca", "sign", card / "card.csr", *c, "-o", card / "chain.pem")
    assert code == 0
    assert "recorded in" in err
    code, out, _ = run(capsys, "card", "install-cert", card / "chain.pem", *d)
    assert code == 0
    assert "CN=localhost" in out
    code, out, _ = run(capsys, "card", "show", *d)
    assert "key pair: EC" in out
    assert "issuer: CN=Test Issuer" in out
    code, out, _ = run(capsys, "ca", "show", *c)
    assert "issued: 1 certificate(s)" in out
    code, out, _ = run(capsys, "ca", "profile", *c)
    assert "WAP-211" in out
    assert "subjectAltName" in out
    # A chain for another key is refused, and the installed one stays.
    run(capsys, "card", "init", *d, "--force")
    code, _, err = run(capsys, "card", "install-cert", card / "chain.pem", *d)
    assert code == 2
    assert "not for this card's key pair" in err
    code, _, err = run(capsys, "card", "install-cert", card / "missing.pem", *d)
    assert code == 2
    assert "cannot read" in err


def test_card_init_issue(capsys: pytest.CaptureFixture[str], dirs: tuple[Path, Path]) -> None:
    card, ca = dirs
    code, out, _ = run(capsys, "card", "init", "--issue", "--data-dir", card, "--ca-dir", ca)
    assert code == 0
    assert "installed device certificate" in out
    assert (ca / "ca.pem").exists()


def test_psk_commands(capsys: pytest.CaptureFixture[str], dirs: tuple[Path, Path]) -> None:
    card, _ = dirs
    d = ("--data-dir", card)
    run(capsys, "init", *d, "--no-demo")
    code, _, err = run(capsys, "card", "psk", "enable", *d)
    assert code == 2
    assert "add a PSK identity first" in err
    key = "00112233445566778899aabbccddeeff"
    code, out, _ = run(capsys, "card", "psk", "add", "card1", "--key", key, *d)
    assert code == 0
    assert key not in out
    code, out, _ = run(capsys, "card", "psk", "add", "card2", *d)
    assert "key (shown once): " in out
    code, out, _ = run(capsys, "card", "psk", "enable", "--hint", "scws", *d)
    assert code == 0
    code, out, _ = run(capsys, "card", "psk", "ls", *d)
    assert "enabled, hint 'scws'" in out
    assert "card1" in out
    assert key not in out
    code, _, err = run(capsys, "card", "psk", "add", "x", "--key", "zz", *d)
    assert code == 2
    assert "hex" in err
    code, _, err = run(capsys, "card", "psk", "add", "x", "--key", "0011", *d)
    assert code == 2
    assert "16-64 bytes" in err
    assert run(capsys, "card", "psk", "rm", "card2", *d)[0] == 0
    assert run(capsys, "card", "psk", "rm", "card2", *d)[0] == 1
    assert "disabled" in run(capsys, "card", "psk", "disable", *d)[1]
    # The key file is in the secure area, never in the log.
    assert key in (card / "secure" / "psk.json").read_text()


def test_policy_commands(capsys: pytest.CaptureFixture[str], dirs: tuple[Path, Path]) -> None:
    card, _ = dirs
    d = ("--data-dir", card)
    run(capsys, "init", *d, "--no-demo")
    assert run(capsys, "card", "policy", "allow", "wallet", *d)[1] == "wallet\n"
    assert run(capsys, "card", "policy", "allow", "id", *d)[1] == "id\nwallet\n"
    assert run(capsys, "card", "policy", "deny", "wallet", *d)[1] == "id\n"
    assert run(capsys, "card", "policy", "ls", *d)[1] == "id\n"


def test_card_actions_need_an_image(
    capsys: pytest.CaptureFixture[str], dirs: tuple[Path, Path]
) -> None:
    card, _ = dirs
    code, _, err = run(capsys, "card", "show", "--data-dir", card)
    assert code == 2
    assert "openscws init" in err


def test_doctor(capsys: pytest.CaptureFixture[str], dirs: tuple[Path, Path]) -> None:
    card, ca = dirs
    code, out, _ = run(capsys, "doctor", "--data-dir", card)
    assert code == 0
    assert "openssl OpenSSL" in out
    assert "PSK-AES128-CBC-SHA: available" in out
    assert "PSK-3DES-EDE-CBC-SHA" in out
    if "PSK-3DES-EDE-CBC-SHA: NOT available in OpenSSL" in out:
        assert "no 3DES TLS suites" in out
        if "available through GnuTLS" in out:  # openscws.tls.gnutls serves it instead
            assert "TLS_PSK_WITH_3DES_EDE_CBC_SHA (0x008B): available through GnuTLS 3." in out
        else:
            assert "does not implement TLS or 3DES" in out
    assert "curl" in out
    assert "gnutls-cli" in out
    assert "card image" in out
    assert "none yet" in out
    assert "PC/SC readers" in out
    run(capsys, "card", "init", "--issue", "--data-dir", card, "--ca-dir", ca)
    cfg = card.parent / "c.toml"
    cfg.write_text(f'[ca]\ndir = "{ca}"\n')
    code, out, _ = run(capsys, "doctor", "--data-dir", card, "-c", cfg)
    assert "key pair: RSA" in out
    assert "days left" in out
    assert f"issuer CA: {ca}" in out
