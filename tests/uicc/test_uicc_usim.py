"""The card's USIM application, APDU by APDU: SELECT by (partial) AID, EF_IMSI, AUTHENTICATE
in the 3G and GSM contexts (TS 31.102 §7.1.2) with MILENAGE test set 1, resynchronisation,
MAC failure, refusals in status words, and the SQN state kept in the secure area."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openscws.aka.milenage import Milenage
from openscws.aka.vector import SqnState, make_vector, resync_sqn
from openscws.errors import ConfigError
from openscws.gba.kdf import ks_naf
from openscws.uicc.card import CardIdentity, VirtualUicc
from openscws.uicc.usim import UsimApp, UsimKeys, UsimSecrets, encode_imsi

K = bytes.fromhex("465b5ce8b199b49faa5f0a2ee238a6bc")
OPC = bytes.fromhex("cd63cb71954a9f4e48a5994e37a02baf")
RAND = "23553cbe9637a89d218ae64dae47bf35"
AUTN = "55f328b43577b9b94a9ffac354dfafb3"  # test set 1: SQN ff9bb4d0b607, AMF b9b9
SQN = 0xFF9BB4D0B607
IMSI = "001010123456789"
SELECT_USIM = "00A4040407A0000000871002"
CK_IK = bytes.fromhex("b40ba9a3c58b2a05bbf0d987b21bf8cbf769bcd751044604127672711c6d3441")


class Secrets:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def get_secret(self, name: str) -> bytes | None:
        return self.files.get(name)

    def set_secret(self, name: str, data: bytes) -> None:
        self.files[name] = data

    def delete_secret(self, name: str) -> bool:
        return self.files.pop(name, None) is not None


def card_with(secrets: Secrets, *, last_sqn: int = SQN - 32) -> VirtualUicc:
    sqn = SqnState()
    sqn.accept(last_sqn)
    UsimSecrets(secrets).set_keys(UsimKeys(IMSI, K, OPC), sqn=sqn)
    app = UsimApp.from_secrets(UsimSecrets(secrets))
    card = VirtualUicc(CardIdentity("8988211000000000003"), usim=app)
    card.power_on()
    return card


def send(card: VirtualUicc, apdu: str) -> str:
    return card.transmit(bytes.fromhex(apdu.replace(" ", "")), 0.0).hex()


def auth_3g(rand: str, autn: str) -> str:
    return f"00 88 00 81 22 10 {rand} 10 {autn} 00"


def test_select_read_imsi_and_authenticate() -> None:
    secrets = Secrets()
    card = card_with(secrets)
    fcp = send(card, SELECT_USIM)  # a right-truncated AID
    assert fcp == "6216820278218410a0000000871002ffffffff8907090000" + "9000"
    assert send(card, "00A4000C026F07") == "9000"
    assert send(card, "00B0000009") == "080910101032547698" + "9000"
    answer = send(card, auth_3g(RAND, AUTN))
    assert answer == (
        "db"
        + "08a54211d5e3ba50bf"
        + "10b40ba9a3c58b2a05bbf0d987b21bf8cb"
        + "10f769bcd751044604127672711c6d3441"
        + "08eae4be823af9a08b"
        + "9000"
    )
    # The accepted SQN was stored before the answer left the card.
    assert UsimSecrets(secrets).sqn(5).sqn_ms == SQN
    # The same AUTN again: not fresh, so a resynchronisation token, which the network reads.
    again = send(card, auth_3g(RAND, AUTN))
    assert again.startswith("dc0e")
    assert again.endswith("9000")
    auts = bytes.fromhex(again[4:32])
    assert resync_sqn(Milenage(K, OPC), bytes.fromhex(RAND), auts) == SQN
    # A card restarted from the same secure area remembers it too.
    restarted = VirtualUicc(
        CardIdentity("8988211000000000003"), usim=UsimApp.from_secrets(UsimSecrets(secrets))
    )
    restarted.power_on()
    send(restarted, SELECT_USIM)
    assert send(restarted, auth_3g(RAND, AUTN)).startswith("dc0e")
    # The network's next vector is taken.
    fresh = make_vector(Milenage(K, OPC), bytes.fromhex(RAND), SQN + 32, bytes.fromhex("8000"))
    assert send(restarted, auth_3g(RAND, fresh.autn.hex())).startswith("db08" + fresh.xres.hex())


def test_gsm_context() -> None:
    card = card_with(Secrets())
    send(card, SELECT_USIM)
    # SRES = c2(RES), Kc = c3(CK, IK): what osmo-auc-gen prints for test set 1.
    assert send(card, f"00 88 00 80 11 10 {RAND} 00") == "0446f8416a08eae4be823af9a08b9000"


@pytest.mark.parametrize(
    ("apdu", "sw"),
    [
        (auth_3g(RAND, AUTN[:-2] + "00"), "9862"),  # MAC-A wrong: the network is not ours
        (f"00 88 00 81 11 10 {RAND} 00", "6700"),  # no AUTN
        (f"00 88 00 84 22 10 {RAND} 10 {AUTN} 00", "6a80"),  # GBA context without DD / DE
        (f"00 88 00 85 22 10 {RAND} 10 {AUTN} 00", "6a80"),  # MBMS context: not an MSK update
        (f"00 88 00 86 22 10 {RAND} 10 {AUTN} 00", "9864"),  # local key establishment: no
        (f"00 88 01 81 22 10 {RAND} 10 {AUTN} 00", "6a86"),  # P1 must be 00
        ("00A4040407A0000000871003", "6a82"),  # not our AID
    ],
)
def test_refusals(apdu: str, sw: str) -> None:
    secrets = Secrets()
    card = card_with(secrets)
    send(card, SELECT_USIM)
    assert send(card, apdu) == sw
    assert UsimSecrets(secrets).sqn(5).sqn_ms == SQN - 32  # nothing accepted


def test_authenticate_needs_the_usim() -> None:
    card = card_with(Secrets())
    assert send(card, auth_3g(RAND, AUTN)) == "6985"  # MF selected, not the ADF
    send(card, SELECT_USIM)
    send(card, "00A4000C023F00")  # back to the MF
    assert send(card, auth_3g(RAND, AUTN)) == "6985"
    bare = VirtualUicc(CardIdentity("8988211000000000003"))
    bare.power_on()
    assert send(bare, SELECT_USIM) == "6a82"  # no subscription, no USIM
    assert send(bare, auth_3g(RAND, AUTN)) == "6985"


def test_imsi_encoding() -> None:
    # Length 08; "1001" (odd count, IMSI) under digit 1; then digit pairs, low nibble first.
    assert encode_imsi("001010123456789").hex() == "080910101032547698"
    assert encode_imsi("26201123456789").hex() == "082126102143658" + "7f9"  # even: F filler
    with pytest.raises(ConfigError, match="IMSI"):
        encode_imsi("12a")
    keys = UsimKeys(IMSI, K, OPC)
    assert K.hex() not in repr(keys)
    assert OPC.hex() not in repr(keys)


IMPI = "001010123456789@ims.mnc001.mcc001.3gppnetwork.org"
NAF_ID = b"bsm.example.org" + bytes.fromhex("0100000001")  # BCAST's Ua id (TS 33.220 H.3)
B_TID = b"I1U8vpY3qJ0hiuZNrke/NQ==@bsf.mnc001.mcc001.pub.3gppnetwork.org"


def lv(data: bytes) -> str:
    return f"{len(data):02x}{data.hex()}"


def test_gba_u_bootstrap_and_naf_derivation() -> None:
    """GBA_U (TS 31.102 §7.1.2.4, TS 33.220 §5.3): the USIM keeps Ks and Ks_int_NAF, and
    gives the terminal RES and then Ks_ext_NAF, which equal the GBA_ME keys of test set 1."""
    secrets = Secrets()
    card = card_with(secrets)
    send(card, SELECT_USIM)
    # No Ks yet: no NAF key.
    naf_cmd = "DE" + lv(NAF_ID) + lv(IMPI.encode())
    assert send(card, f"00 88 00 84 {len(naf_cmd) // 2:02x} {naf_cmd} 00") == "6985"
    # Bootstrapping: RES only; CK and IK stay in the card as Ks.
    boot = f"00 88 00 84 23 DD 10 {RAND} 10 {AUTN} 00"
    assert send(card, boot) == "db08a54211d5e3ba50bf9000"
    send(card, "00 A4 00 0C 02 6F D6")
    assert send(card, "00 B0 00 00 13") == "10" + RAND + "0000" + "9000"  # B-TID, lifetime empty
    # The terminal writes the B-TID and key lifetime the BSF gave, after the RAND.
    tail = lv(B_TID) + lv(b"2026-12-01T00:00:00Z")
    assert send(card, f"00 D6 00 11 {len(tail) // 2:02x} {tail}") == "9000"
    assert send(card, "00 D6 00 00 01 00") == "6982"  # the RAND is the USIM's
    assert send(card, f"00 D6 00 11 02 {'ff' * 2}") == "6a80"  # would break the LV layout
    # NAF derivation: Ks_ext_NAF out (= Ks_NAF of GBA_ME), Ks_int_NAF kept.
    got = send(card, f"00 88 00 84 {len(naf_cmd) // 2:02x} {naf_cmd} 00")
    ks_ext = "6b6a961069b5031c2d7df5004eddc53f67a8c586dff5b6ce9cd4d91b3a632a1b"
    assert got == "db20" + ks_ext + "9000"
    assert ks_naf(CK_IK, bytes.fromhex(RAND), IMPI, NAF_ID).hex() == ks_ext
    send(card, "00 A4 00 0C 02 6F DA")
    record = send(card, "00 B2 01 04 00")
    assert record.startswith("80" + lv(NAF_ID) + "81" + lv(B_TID))
    # A card restarted from its secure area keeps Ks, the B-TID and the NAF key.
    usim = UsimApp.from_secrets(UsimSecrets(secrets))
    assert usim is not None
    assert usim.gba.btid == B_TID
    assert usim.ks_int_naf(NAF_ID) == bytes.fromhex(
        "7fed1cf436544d0ad28d4b47a61fae1183dd423779c6223e1d1048f23c4b9106"
    )
    assert CK_IK.hex() not in repr(usim.gba)
    # A new bootstrap replaces Ks: the old B-TID and NAF keys are gone with it.
    fresh = make_vector(Milenage(K, OPC), bytes.fromhex(RAND), SQN + 32, bytes.fromhex("8000"))
    assert send(card, SELECT_USIM).endswith("9000")
    assert send(card, f"00 88 00 84 23 DD 10 {RAND} 10 {fresh.autn.hex()} 00").startswith("db08")
    assert send(card, f"00 88 00 84 {len(naf_cmd) // 2:02x} {naf_cmd} 00") == "6985"


def test_only_ef_gbabp_is_writable() -> None:
    card = card_with(Secrets())
    send(card, SELECT_USIM)
    send(card, "00 A4 00 0C 02 6F 07")
    assert send(card, "00 D6 00 00 01 00") == "6982"
    send(card, "00 A4 00 0C 02 3F 00")
    send(card, "00 A4 00 0C 02 2F E2")
    assert send(card, "00 D6 00 00 01 00") == "6982"


@settings(max_examples=400, deadline=None)
@given(
    p1=st.integers(0, 255),
    p2=st.sampled_from([0x80, 0x81, 0x84, 0x85, 0x00, 0xFF]),
    data=st.one_of(
        st.binary(max_size=80),
        st.builds(
            lambda tag, body: bytes((tag,)) + body,
            st.sampled_from([0xDD, 0xDE]),
            st.binary(max_size=80),
        ),
        st.builds(
            lambda r, a: bytes((16,)) + r + bytes((16,)) + a,
            st.binary(min_size=16, max_size=16),
            st.binary(min_size=16, max_size=16),
        ),
    ),
)
def test_any_authenticate_gets_a_status_word(p1: int, p2: int, data: bytes) -> None:
    """Bad input is answered in status words, never an exception; a random AUTN never
    passes (its MAC-A is 64 bits)."""
    card = card_with(Secrets())
    send(card, SELECT_USIM)
    apdu = (
        bytes((0x00, 0x88, p1, p2, len(data))) + data + b"\x00"
        if data
        else bytes((0, 0x88, p1, p2, 0))
    )
    answer = card.transmit(apdu, 0.0)
    assert len(answer) >= 2
    sw = answer[-2:].hex()
    assert sw in {"9000", "6700", "6a80", "6a86", "6a88", "9862", "9864", "9865", "6985"}, sw
    if sw == "9000":  # only the GSM context, which checks nothing, can succeed
        assert p2 == 0x80
        assert answer[:1] == b"\x04"
