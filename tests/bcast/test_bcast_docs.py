"""docs/bcast.md follows one subscriber byte by byte: this recomputes every value it shows
(MILENAGE test set 1 Ks, the BSM's NAF keys, MRK, the digest password, the LTKM, its keys and
the verification MAC) and finds each in the page."""

from __future__ import annotations

from pathlib import Path

from openscws.bcast.keys import bsm_naf_id, mrk_from_naf_key, srk_password
from openscws.bcast.ltkm import Ltkm, build_ltkm, build_verification, open_ltkm
from openscws.bcast.mikey import ReplayGuard, aes_cm, derive_psk_keys
from openscws.gba.kdf import ks_int_naf, ks_naf

DOC = Path(__file__).parents[2] / "docs" / "bcast.md"
H = bytes.fromhex
KS = H("b40ba9a3c58b2a05bbf0d987b21bf8cbf769bcd751044604127672711c6d3441")
RAND = H("23553cbe9637a89d218ae64dae47bf35")
IMPI = "001010123456789@ims.mnc001.mcc001.3gppnetwork.org"
BTID = "I1U8vpY3qJ0hiuZNrke/NQ==@bsf.mnc001.mcc001.pub.3gppnetwork.org"


def test_the_page_shows_what_the_code_computes() -> None:
    text = DOC.read_text()
    flat = "".join(text.split())
    naf = bsm_naf_id("bsm.example.org")
    ext, muk = ks_naf(KS, RAND, IMPI, naf), ks_int_naf(KS, RAND, IMPI, naf)
    mrk = mrk_from_naf_key(ext)
    ltkm = Ltkm(
        H("00f110"),
        H("00010002"),
        H("000102030405060708090a0b0c0d0e0f"),
        7,
        b"bsm.example.org",
        BTID.encode(),
        True,
    )
    wire = build_ltkm(ltkm, muk)
    keys = derive_psk_keys(muk, 0x00010002, b"")
    ack = build_verification(ltkm, muk)
    shown = [
        KS.hex(),
        RAND.hex(),
        naf.hex(),
        ext.hex(),
        muk.hex(),
        mrk.hex(),
        srk_password(mrk).decode(),
        BTID,
        keys.encr_key.hex(),
        keys.salt_key.hex(),
        keys.auth_key.hex(),
        wire.hex(),
        wire[-20:].hex(),
        ack[-20:].hex(),
    ]
    for value in shown:
        assert value in flat, value
    assert f"{len(wire)} bytes" in text
    assert f"{len(ack)}-byte" in text
    # The byte table, row by row, is the datagram in order.
    rows = [
        line.split("|")[1].strip().strip("`")
        for line in text.splitlines()
        if line.startswith("| `0")
    ]
    table = "".join(rows).replace(" ", "").replace("4931…6f7267", BTID.encode().hex())
    assert table == wire.hex()
    # The decrypted key data as the page spells it.
    plain = aes_cm(
        keys.encr_key, keys.salt_key, 0x00010002, (7).to_bytes(4), H(rows[5].replace(" ", "")[8:])
    )
    assert plain == H("00 01 0010") + ltkm.key + H("04 00010002")
    assert open_ltkm(wire, muk, ReplayGuard(), 0.0) == ltkm
