"""What negotiates per endpoint and profile (`openscws.tls.suites`): the tables in
docs/tls.md are the ones in-memory handshakes give now, and the profiles keep their promises
(modern: TLS 1.2+ AEAD only; compat: TLS 1.0 server authentication with RSA and DHE key
exchange)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from openscws.tls.context import FFDHE2048_PEM
from openscws.tls.suites import Negotiable, all_tables, negotiable, render_markdown, section

DOCS = Path(__file__).resolve().parents[2] / "docs" / "tls.md"


@pytest.fixture(scope="module")
def tables() -> list[Negotiable]:
    return all_tables()


def test_docs_list_exactly_what_negotiates(tables: list[Negotiable]) -> None:
    documented = section(DOCS.read_text())
    assert documented is not None, "docs/tls.md lost its tls-suites markers"
    assert documented.strip() == render_markdown(tables).strip(), (
        "docs/tls.md is out of date: run scripts/tls-suites"
    )


def _table(tables: list[Negotiable], endpoint: str, profile: str) -> Negotiable:
    return next(t for t in tables if (t.endpoint, t.profile) == (endpoint, profile))


def test_modern_is_strict(tables: list[Negotiable]) -> None:
    for endpoint in ("card", "admin"):
        modern = _table(tables, endpoint, "modern")
        assert set(modern.versions) <= {"TLSv1.2", "TLSv1.3"}
        assert "AES128-SHA" not in modern.suites
        assert "PSK-3DES-EDE-CBC-SHA" not in modern.suites
    card = _table(tables, "card", "modern")
    # certificate suites: forward secret AEAD only
    cert = {s for s in card.versions["TLSv1.2"] if not s[0].startswith("PSK")}
    assert cert
    assert all(s[0].startswith(("ECDHE-", "DHE-")) for s in cert)
    assert all(("GCM" in s[0] or "CHACHA20" in s[0]) for s in cert)


def test_compat_has_tls1_0_server_authentication(tables: list[Negotiable]) -> None:
    """SCWS §11.1.2: TLS 1.0 with the card's certificate, with the suite every TLS 1.0 client
    has (TLS_RSA_WITH_AES_128_CBC_SHA) and with DHE (RFC 7919 ffdhe2048)."""
    tls10 = {name for name, _, _ in _table(tables, "card", "compat").versions["TLSv1"]}
    assert {"AES128-SHA", "DHE-RSA-AES128-SHA", "ECDHE-RSA-AES128-SHA"} <= tls10


def test_dhe_negotiates_in_modern_too() -> None:
    card = negotiable("card", "modern")
    assert "DHE-RSA-AES128-GCM-SHA256" in card.suites


def _rfc7919_ffdhe2048() -> int:
    """RFC 7919 Appendix A.1: p = 2^2048 - 2^1984 + (floor(2^1918 * e) + 560316) * 2^64 - 1,
    with e = sum of 1/k! taken to 400 terms (far past 1918 bits)."""
    terms = 400
    factorials = [1]
    for k in range(1, terms + 1):
        factorials.append(factorials[-1] * k)
    top = factorials[terms]
    series = sum(top // factorials[k] for k in range(terms + 1))  # = e * 400! (floor)
    floor_e = (series << 1918) // top
    return 2**2048 - 2**1984 + (floor_e + 560316) * 2**64 - 1


def _der_integers(der: bytes) -> list[int]:
    """The INTEGERs of a DER SEQUENCE (PKCS #3 DHParameter: prime, base)."""

    def length(at: int) -> tuple[int, int]:
        first = der[at]
        if first < 0x80:
            return first, at + 1
        n = first & 0x7F
        return int.from_bytes(der[at + 1 : at + 1 + n]), at + 1 + n

    assert der[0] == 0x30
    _, at = length(1)
    out = []
    while at < len(der):
        assert der[at] == 0x02
        size, at = length(at + 1)
        out.append(int.from_bytes(der[at : at + size]))
        at += size
    return out


def test_dh_group_is_rfc7919_ffdhe2048() -> None:
    body = b"".join(FFDHE2048_PEM.strip().splitlines()[1:-1])
    prime, base = _der_integers(base64.b64decode(body))
    assert base == 2
    assert prime.bit_length() == 2048
    assert prime == _rfc7919_ffdhe2048()
