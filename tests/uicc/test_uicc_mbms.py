"""The USIM's MBMS security context with GBA_U, APDU by APDU: after bootstrapping and the NAF
derivation for the BSM's NAF_Id, AUTHENTICATE P2 85 takes the BSM's LTKM, checks its MAC with
the Ks_int_NAF only the card holds, answers with the verification message, lists the SEK/PEK
in EF_MSK and the MUK's counter in EF_MUK, and keeps the key in its secure area; a replayed
counter (98 65), a bad MAC (98 62), another B-TID (6A 88) and junk (6A 80) are refused and
change nothing."""

from __future__ import annotations

from test_uicc_usim import CK_IK, IMPI, RAND, SELECT_USIM, Secrets, card_with, lv, send

from openscws.bcast.keys import bsm_naf_id
from openscws.bcast.ltkm import Ltkm, build_ltkm, check_verification
from openscws.gba.kdf import ks_int_naf
from openscws.uicc.usim import UsimApp, UsimSecrets

B_TID = b"I1U8vpY3qJ0hiuZNrke/NQ==@bsf.mnc001.mcc001.pub.3gppnetwork.org"
BSM = "bsm.example.org"
NAF = bsm_naf_id(BSM)
MUK = ks_int_naf(CK_IK, bytes.fromhex(RAND), IMPI, NAF)
SEK = bytes(range(16))
AUTN = "55f328b43577b9b94a9ffac354dfafb3"


def ltkm(counter: int, btid: bytes = B_TID) -> Ltkm:
    return Ltkm(
        bytes.fromhex("00f110"), bytes.fromhex("00010002"), SEK, counter, BSM.encode(), btid, True
    )


def update(card: object, datagram: bytes) -> str:
    data = "01" + datagram.hex()
    return send(card, f"00 88 00 85 {len(data) // 2:02x} {data} 00")  # type: ignore[arg-type]


def test_msk_update_in_the_card() -> None:
    secrets = Secrets()
    card = card_with(secrets)
    send(card, SELECT_USIM)
    assert send(card, f"00 88 00 84 23 DD 10 {RAND} 10 {AUTN} 00").endswith("9000")
    send(card, "00 A4 00 0C 02 6F D6")
    tail = lv(B_TID) + lv(b"2026-12-01T00:00:00Z")
    assert send(card, f"00 D6 00 11 {len(tail) // 2:02x} {tail}") == "9000"
    # Before the NAF derivation the card has no MUK for this BSM.
    assert update(card, build_ltkm(ltkm(1), MUK)) == "6a88"
    naf_cmd = "DE" + lv(NAF) + lv(IMPI.encode())
    assert send(card, f"00 88 00 84 {len(naf_cmd) // 2:02x} {naf_cmd} 00").endswith("9000")

    sent = ltkm(5)
    answer = bytes.fromhex(update(card, build_ltkm(sent, MUK)))
    assert answer[-2:] == b"\x90\x00"
    assert answer[0] == 0xDB
    ack = answer[2 : 2 + answer[1]]
    check_verification(ack, sent, MUK)  # the BSM accepts the card's acknowledgement
    assert SEK not in answer

    send(card, "00 A4 00 0C 02 6F D7")
    assert (
        send(card, "00 B2 01 04 00")
        == "00f110" + "01" + "00010002" + "00000005" + "ff" * 8 + "9000"
    )
    send(card, "00 A4 00 0C 02 6F D8")
    muk_record = send(card, "00 B2 01 04 00")
    ids = "80" + lv(B_TID) + "82" + lv(BSM.encode())
    assert muk_record.startswith(f"a0{len(ids) // 2:02x}{ids}8104" + "00000005")

    # Refusals leave the state as it was.
    assert update(card, build_ltkm(ltkm(5), MUK)) == "9865"  # replay
    assert update(card, build_ltkm(ltkm(4), MUK)) == "9865"  # older
    bad = bytearray(build_ltkm(ltkm(6), MUK))
    bad[-1] ^= 1
    assert update(card, bytes(bad)) == "9862"
    assert update(card, build_ltkm(ltkm(6), bytes(32))) == "9862"  # another MUK
    assert update(card, build_ltkm(ltkm(6, b"other@bsf"), MUK)) == "6a88"
    assert send(card, "00 88 00 85 03 01 02 03 00") == "6a80"
    assert send(card, "00 88 00 85 02 07 00 00") == "6a80"

    # The key stays in the secure area, across a restart; a newer counter is accepted.
    usim = UsimApp.from_secrets(UsimSecrets(secrets))
    assert usim is not None
    assert usim.mbms.msk(bytes.fromhex("00f110"), bytes.fromhex("00010002")) == SEK
    assert usim.mbms.muks == {(BSM.encode(), B_TID): 5}
    assert SEK.hex() not in repr(usim.mbms)
    assert update(card, build_ltkm(ltkm(6), MUK)).endswith("9000")
