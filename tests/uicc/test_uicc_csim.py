"""The card's CSIM-like application for the (R-)UIM BCAST path, APDU by APDU: SELECT by AID
and its EF_DIR record, EF_NAI, AUTHENTICATE in the RK context (the Auth-Key out, TK kept) and
in the BCAST key context (an LTKM under TK: its SEK in the card, EF_MSK lists its id), and the
refusals as status words: wrong MAC 98 62, a replayed counter 98 65, an LTKM for another NAI
6A 88, malformed 6A 80, an unknown context 98 64; the key store persisted; the USIM untouched."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openscws.bcast.keys import rk_keys
from openscws.bcast.ltkm import Ltkm, build_ltkm
from openscws.cli import main
from openscws.errors import ConfigError
from openscws.uicc.card import CardIdentity, VirtualUicc
from openscws.uicc.csim import CSIM_AID, CsimApp, CsimKeys, CsimSecrets

NAI = "user@ruim.example.org"
RK = bytes.fromhex("00112233445566778899aabbccddeeff")
RAND = bytes.fromhex("0102030405")
BSM = b"bsm.example.org"
DOMAIN, KEY_ID = bytes.fromhex("00f110"), bytes.fromhex("00010002")
SEK = bytes(range(16))


class Secrets:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def get_secret(self, name: str) -> bytes | None:
        return self.files.get(name)

    def set_secret(self, name: str, data: bytes) -> None:
        self.files[name] = data

    def delete_secret(self, name: str) -> bool:
        return self.files.pop(name, None) is not None


def card_with(secrets: Secrets, nai: str = NAI) -> VirtualUicc:
    CsimSecrets(secrets).set_keys(CsimKeys(nai, RK, RAND))
    card = VirtualUicc(
        CardIdentity("8988211000000000004"), csim=CsimApp.from_secrets(CsimSecrets(secrets))
    )
    card.power_on()
    return card


def send(card: VirtualUicc, apdu: bytes) -> bytes:
    return card.transmit(apdu, 0.0)


def ltkm(counter: int, *, key: bytes | None = None, idr: str = NAI) -> bytes:
    tk = rk_keys(RK, RAND, NAI).tk if key is None else key
    return build_ltkm(Ltkm(DOMAIN, KEY_ID, SEK, counter, BSM, idr.encode(), True), tk)


def update(card: VirtualUicc, datagram: bytes) -> bytes:
    data = b"\x01" + datagram
    return send(card, bytes((0x00, 0x88, 0x00, 0x91, len(data))) + data + b"\x00")


def test_nai_auth_key_and_ltkm() -> None:
    secrets = Secrets()
    card = card_with(secrets)
    ef_dir = send(card, bytes.fromhex("00A4000C022F00"))
    assert ef_dir[-2:] == b"\x90\x00"
    second = send(card, bytes.fromhex("00B2020420"))
    assert second[:-2].startswith(bytes.fromhex("61184F10") + CSIM_AID)
    assert send(card, bytes.fromhex("00A4040007") + CSIM_AID[:7])[-2:] == b"\x90\x00"
    assert send(card, bytes.fromhex("00A4000C026FB0"))[-2:] == b"\x90\x00"
    assert send(card, bytes.fromhex("00B0000000"))[:-2] == NAI.encode()
    answer = send(card, bytes.fromhex("0088009000"))
    keys = rk_keys(RK, RAND, NAI)
    assert answer == b"\xdb\x20" + keys.auth_key + b"\x90\x00"
    assert keys.tk not in answer
    got = update(card, ltkm(1))
    assert got[-2:] == b"\x90\x00"
    assert got[0] == 0xDB
    assert got[1] > 0  # the verification message the LTKM asked for
    assert SEK not in got
    assert card.csim is not None
    assert card.csim.state.msk(DOMAIN, KEY_ID) == SEK
    assert CsimSecrets(secrets).bcast().msk(DOMAIN, KEY_ID) == SEK
    assert send(card, bytes.fromhex("00A4000C026FD7"))[-2:] == b"\x90\x00"
    record = send(card, bytes.fromhex("00B2010400"))
    assert record[:12] == DOMAIN + b"\x01" + KEY_ID + (1).to_bytes(4)
    shown = repr(CsimKeys(NAI, RK, RAND))
    assert RK.hex() not in shown
    assert repr(RK) not in shown


@pytest.mark.parametrize(
    ("datagram", "sw"),
    [
        (ltkm(5, key=b"\x01" * 32), "9862"),
        (ltkm(1), "9865"),
        (ltkm(6, idr="other@ruim.example.org"), "6a88"),
        (b"\x00\x01\x02", "6a80"),
    ],
)
def test_refused_ltkms(datagram: bytes, sw: str) -> None:
    card = card_with(Secrets())
    send(card, bytes.fromhex("00A4040007") + CSIM_AID[:7])
    assert update(card, ltkm(1))[-2:] == b"\x90\x00"
    assert card.csim is not None
    before = card.csim.state.to_json()
    assert update(card, datagram).hex() == sw
    assert card.csim.state.to_json() == before


def test_contexts_and_selection() -> None:
    card = card_with(Secrets())
    assert send(card, bytes.fromhex("0088009000")).hex() == "6985"  # CSIM not selected
    send(card, bytes.fromhex("00A4040007") + CSIM_AID[:7])
    assert send(card, bytes.fromhex("0088008100")).hex() == "9864"
    assert send(card, bytes.fromhex("008800900101")).hex() == "6700"
    assert send(card, bytes.fromhex("0088019000")).hex() == "6a86"
    assert send(card, bytes.fromhex("00A40400070A000000871002")).hex() == "6a82"  # no USIM


def test_bad_subscriptions_are_refused() -> None:
    for nai, rk in (("", RK), (NAI, b"\x00" * 5), ("a\nb", RK)):
        with pytest.raises(ConfigError):
            CsimKeys(nai, rk, RAND)
    with pytest.raises(ConfigError):
        CsimKeys(NAI, RK, RAND, derivation="no-such")
    secrets = Secrets()
    secrets.set_secret("csim.json", b"{not json")
    with pytest.raises(ConfigError):
        CsimSecrets(secrets).keys()
    assert CsimSecrets(Secrets()).keys() is None
    assert not CsimSecrets(Secrets()).remove()


@settings(max_examples=150, deadline=None)
@given(p2=st.integers(0, 255), data=st.binary(max_size=80))
def test_any_authenticate_gets_a_status_word(p2: int, data: bytes) -> None:
    card = card_with(Secrets())
    send(card, bytes.fromhex("00A4040007") + CSIM_AID[:7])
    apdu = (
        bytes((0x00, 0x88, 0x00, p2, len(data))) + data + b"\x00"
        if data
        else bytes((0x00, 0x88, 0x00, p2, 0x00))
    )
    answer = send(card, apdu)
    assert len(answer) >= 2
    assert answer[-2:].hex() != "6f00"


def test_card_csim_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = ["--data-dir", str(tmp_path / "card")]
    assert main(["init", *data, "-q"]) == 0
    assert main(["card", "csim", "show", *data]) == 0
    assert "no subscription" in capsys.readouterr().out
    rk = RK.hex()
    set_ = ["card", "csim", "set", "--nai", NAI, "--rk", rk, "--rand", RAND.hex()]
    assert main([*set_, *data]) == 0
    out = capsys.readouterr().out
    assert f"NAI {NAI}" in out
    assert rk not in out
    assert main(["card", "csim", "show", *data]) == 0
    out = capsys.readouterr().out
    assert "RK derivation project-hmac-sha256" in out
    assert rk not in out
    secret = tmp_path / "card" / "secure" / "csim.json"
    assert secret.stat().st_mode & 0o777 == 0o600
    bad = ["card", "csim", "set", "--nai", NAI, "--rk", "zz", "--rand", "01", *data]
    assert main(bad) == 2
    assert main([*set_, "--derivation", "no-such", *data]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2
    assert main(["card", "csim", "rm", *data]) == 0
    assert main(["card", "csim", "rm", *data]) == 1
