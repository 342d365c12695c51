"""Secured command and response packets: published vectors, round trips, and every PoR status
the receiving side can give."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from openscws.errors import DecodeError, OtaError
from openscws.ota import _crypto
from openscws.ota.packet import (
    COUNTER_MAX,
    RESPONSE_UDH,
    CommandContent,
    CommandPacket,
    CommandRejected,
    MinimumSecurityLevel,
    OtaKeys,
    PorStatus,
    ResponseContent,
    ResponsePacket,
    TarSecurity,
    check_command,
    open_command,
    open_response,
    proof_of_receipt,
    rejection_receipt,
    seal_command,
    seal_response,
    unsecured_response,
)
from openscws.ota.spi import CipherAlgorithm, CounterMode, Integrity, KeyRef, PorRequest, Spi

h = bytes.fromhex


@dataclass(frozen=True)
class Vector:
    name: str
    spi: str
    kic: int
    kid: int
    keys: OtaKeys
    tar: str
    counter: int
    data: str
    packet: str
    cc_length: int = 8


# asterix SecurePacket.py TestSecurePacket (Petr Tobiska); test keys
ASTERIX_K2 = OtaKeys(h("2233445566778899AABBCCDDEEFF0011"), h("456789ABCDEF012356789ABCDEF01234"))
ASTERIX_K3 = OtaKeys(
    h("0956F342366C6C92F32D5392ECB1CBD5C051DB484843F0EB"),
    h("9CD41F792BC38C08A5DF849B4118C71AEA4D8192207297C8"),
)
# pySim tests/unittests/test_ota.py: KIC3/KID3 of card 8988211000000467285, SJA5 sample keys
PYSIM_K3 = OtaKeys(h("C21DD66ACAC13CB3BC8B331B24AFB57B"), h("12110C78E678C25408233076AA033615"))
PYSIM_SJA5 = OtaKeys(h("300102030405060708090a0b0c0d0e0f"), h("301102030405060708090a0b0c0d0e0f"))
PYSIM_AES = OtaKeys(h("200102030405060708090a0b0c0d0e0f"), h("201102030405060708090a0b0c0d0e0f"))
SELECT_MF = "A0A40000023F00"

COMMAND_VECTORS = [
    # asterix test_SPI0400: ciphering only, 3DES 2-key
    Vector(
        "asterix-0400",
        "0400",
        0x15,
        0x15,
        OtaKeys(h("AABBCCDDEEFF00112233445566778899")),
        "000000",
        0,
        "ABECEDAB",
        "00180D04001515000000B959E0D6BFABCF59F158041EEB0AB14A",
    ),
    # asterix test_SPI0E00: CC + ciphering, counter without check
    Vector(
        "asterix-0E00",
        "0E00",
        0x25,
        0x25,
        ASTERIX_K2,
        "C00000",
        1,
        SELECT_MF,
        "0020150E002525C0000028BDEA5BAFC32C4CE1A79B247ECEB40888775EE0A700742A",
    ),
    # asterix test_SPI1201: CC (3DES 2-key CBC-MAC) in clear
    Vector(
        "asterix-1201",
        "1201",
        0x25,
        0x25,
        ASTERIX_K2,
        "C00000",
        1,
        SELECT_MF,
        "001D1512012525C000000000000001004FBDB3740E950C28A0A40000023F00",
    ),
    # asterix test_SPI1601: CC + ciphering, counter higher
    Vector(
        "asterix-1601",
        "1601",
        0x25,
        0x25,
        ASTERIX_K2,
        "C00000",
        1,
        SELECT_MF,
        "00201516012525C0000090B844A4FAABEF7184998080D900A6F55A7AD667B45EA3A6",
    ),
    # asterix test_SPI1601_VTSD: 3DES 3-key
    Vector(
        "asterix-1601-3key",
        "1601",
        0x39,
        0x39,
        ASTERIX_K3,
        "C20010",
        6,
        SELECT_MF,
        "00201516013939C20010BC10EE50A5C581408562D8F2C80D2C9AA0AED19DA2CD7D50",
    ),
    # asterix test_SPI1201_VTSD: 3DES 3-key CC in clear
    Vector(
        "asterix-1201-3key",
        "1201",
        0x39,
        0x39,
        ASTERIX_K3,
        "C20010",
        7,
        SELECT_MF,
        "001D1512013939C200100000000007008523E37E6DBCCF7DA0A40000023F00",
    ),
    # asterix test_SPI1531, from a captured card session: CRC32 + 3DES ciphering
    Vector(
        "asterix-1535-card",
        "1535",
        0x15,
        0x15,
        OtaKeys(h("263B48DBCBC1C21C0AA13E4D4516C446")),
        "C00000",
        0x76,
        "80CA00E00000C0000000",
        "00201115351515C000004D5C2C7F43D3E774316C66CE8E1D5045755BACEF5DC83203",
    ),
    # pySim Test_SMS_3DES.test_cmd_3des_ciphered
    Vector(
        "pysim-3des-ciphered",
        "0419",
        0x35,
        0x35,
        PYSIM_K3,
        "B00000",
        0,
        "00a40000023f00",
        "00180d04193535b00000e3ec80a849b554421276af3883927c20",
    ),
    # pySim Test_SMS_3DES.test_cmd_3des_signed: pySim's non-ciphered path leaves CPL out of
    # its output but its CC covers CPL 001D, so the vector is that CPL plus pySim's bytes
    Vector(
        "pysim-3des-signed",
        "0219",
        0x35,
        0x35,
        PYSIM_K3,
        "B00000",
        0,
        "00a40000023f00",
        "001D" + "1502193535b00000000000000000072ea17bdb72060e00a40000023f00",
    ),
    # pySim Test_SMS_3DES.test_cmd_3des_none, with the same missing CPL 0015
    Vector(
        "pysim-3des-none",
        "0019",
        0x35,
        0x35,
        PYSIM_K3,
        "B00000",
        0,
        "00a40000023f00",
        "0015" + "0d00193535b0000000000000000000a40000023f00",
    ),
    # pySim SmsOtaTestCase 3DES-SJA5-CIPHERED-CC
    Vector(
        "pysim-sja5-ciphered-cc",
        "0619",
        0x35,
        0x35,
        PYSIM_SJA5,
        "B00011",
        0,
        "00a40004023f00",
        "00201506193535b00011ae733256918d050b87c94fbfe12e4dc402f262c41cf67f2f",
    ),
    # pySim SmsOtaTestCase 3DES-SJA5-UNCIPHERED-CC (command ciphered, PoR not)
    Vector(
        "pysim-sja5-por-unciphered-cc",
        "0609",
        0x35,
        0x35,
        PYSIM_SJA5,
        "B00011",
        0,
        "00a40004023f00",
        "00201506093535b00011c49ac91ab8159ba5b83a54fb6385e0a5e31694f8b215fafc",
    ),
    # pySim SmsOtaTestCase 3DES-SJA5-UNCIPHERED-NOCC
    Vector(
        "pysim-sja5-por-nocc",
        "0601",
        0x35,
        0x35,
        PYSIM_SJA5,
        "B00011",
        0,
        "00a40004023f00",
        "00201506013535b000113190be334900f52b025f3f7eddfe868e96ebf310023b7769",
    ),
    # pySim Test_SMS_AES128 / SmsOtaTestCase AES128-SJA5-CIPHERED-CC: AES-CBC + 8-byte CMAC
    Vector(
        "pysim-aes128",
        "0619",
        0x22,
        0x22,
        PYSIM_AES,
        "B00011",
        0,
        "00a40004023f00",
        "00281506192222b00011e87cceebb2d93083011ce294f93fc4d8de80da1abae8c37ca3e72ec4432e5058",
    ),
]


def _seal(v: Vector) -> CommandPacket:
    return seal_command(
        spi=Spi.decode(h(v.spi)),
        kic=KeyRef.from_byte(v.kic),
        kid=KeyRef.from_byte(v.kid),
        tar=h(v.tar),
        counter=v.counter,
        data=h(v.data),
        keys=v.keys,
        cc_length=v.cc_length,
    )


@pytest.mark.parametrize("v", COMMAND_VECTORS, ids=lambda v: v.name)
def test_command_vectors(v: Vector) -> None:
    packet = _seal(v)
    assert packet.encode() == h(v.packet)
    decoded = CommandPacket.decode(h(v.packet))
    assert decoded == packet
    assert decoded.encode() == h(v.packet)
    content = open_command(decoded, v.keys)
    assert content.data == h(v.data)
    assert content.counter == v.counter


@pytest.mark.parametrize("v", COMMAND_VECTORS, ids=lambda v: v.name)
def test_command_vectors_pass_the_card_checks(v: Vector) -> None:
    kic, kid = KeyRef.from_byte(v.kic), KeyRef.from_byte(v.kid)
    entry = TarSecurity(
        kic_keys={kic.key_version: v.keys.kic} if v.keys.kic else {},
        kid_keys={kid.key_version: v.keys.kid} if v.keys.kid else {},
        counter=v.counter - 1 if v.counter else 0,
    )
    accepted = check_command(h(v.packet), {h(v.tar): entry})
    assert accepted.data == h(v.data)
    mode = Spi.decode(h(v.spi)).counter
    expected = v.counter if mode in (CounterMode.HIGHER, CounterMode.ONE_HIGHER) else None
    assert accepted.new_counter == expected


def test_unciphered_content_decodes_directly() -> None:
    # asterix test_SPI1201: CNTR 1, PCNTR 0, CC 4FBDB3740E950C28, data
    packet = CommandPacket.decode(
        h("001D1512012525C000000000000001004FBDB3740E950C28A0A40000023F00")
    )
    content = CommandContent.decode(packet.sealed, packet.check_length)
    assert content == CommandContent(counter=1, check=h("4FBDB3740E950C28"), data=h(SELECT_MF))
    assert content.encode() == packet.sealed


@dataclass(frozen=True)
class PorVector:
    name: str
    spi: Spi
    key_ref: int
    keys: OtaKeys
    user_data: str
    counter: int
    data: str


_CC_CIPHERED = Spi(
    integrity=Integrity.CC,
    ciphering=True,
    por=PorRequest.ALWAYS,
    por_integrity=Integrity.CC,
    por_ciphering=True,
)
_CC_CLEAR = Spi(
    integrity=Integrity.CC, ciphering=True, por=PorRequest.ALWAYS, por_integrity=Integrity.CC
)
_NO_CC = Spi(integrity=Integrity.CC, ciphering=True, por=PorRequest.ALWAYS)

RESPONSE_VECTORS = [
    # pySim Test_SMS_3DES.test_resp_3des_ciphered
    PorVector(
        "pysim-3des-ciphered",
        _CC_CIPHERED,
        0x35,
        PYSIM_K3,
        "027100001c12b000119660ebdb81be189b5e4389e9e7ab2bc0954f963ad869ed7c",
        0,
        "01612f",
    ),
    # pySim Test_SMS_3DES.test_resp_3des_signed
    PorVector(
        "pysim-3des-signed",
        _CC_CLEAR,
        0x35,
        PYSIM_K3,
        "027100001612b000110000000000000055f47118381175fb01612f",
        0,
        "01612f",
    ),
    # pySim Test_SMS_3DES.test_resp_3des_none
    PorVector(
        "pysim-3des-none",
        _NO_CC,
        0x35,
        PYSIM_K3,
        "027100000e0ab000110000000000000001612f",
        0,
        "01612f",
    ),
    # pySim SmsOtaTestCase SJA5 responses (from a sysmocom SJA5 card)
    PorVector(
        "pysim-sja5-ciphered-cc",
        _CC_CIPHERED,
        0x35,
        PYSIM_SJA5,
        "027100001c12b000118bb989492c632529326a2f4681feb37c825bc9021c9f6d0b",
        0,
        "016132",
    ),
    PorVector(
        "pysim-sja5-unciphered-cc",
        _CC_CLEAR,
        0x35,
        PYSIM_SJA5,
        "027100001612b0001100000000000000b5bcd6353a421fae016132",
        0,
        "016132",
    ),
    PorVector(
        "pysim-aes128",
        _CC_CIPHERED,
        0x22,
        PYSIM_AES,
        "027100002412b00011ebc6b497e2cad7aedf36ace0e3a29b38853f0fe9ccde81913be5702b73abce1f",
        0,
        "016132",
    ),
    # asterix test_SPI1531, the card's PoR from the captured session (SEND SHORT MESSAGE
    # TPDU user data): CRC32 over the UDH too, 3DES ciphered
    PorVector(
        "asterix-1535-card",
        Spi.decode(h("1535")),
        0x15,
        OtaKeys(h("263B48DBCBC1C21C0AA13E4D4516C446")),
        "027100002C0EC00000888B39C361C66D5F3DC4EFCEF508CC228021DD34E577B147E54EFF18B3922C"
        "9176644E2E8AA9A695",
        0x76,
        "019000E012C00401018210C00402018210C00403018210",
    ),
]


@pytest.mark.parametrize("v", RESPONSE_VECTORS, ids=lambda v: v.name)
def test_response_vectors(v: PorVector) -> None:
    raw = h(v.user_data)
    assert raw[:3] == RESPONSE_UDH
    packet = ResponsePacket.decode(raw[3:])
    assert packet.encode() == raw[3:]
    ref = KeyRef.from_byte(v.key_ref)
    content = open_response(packet, spi=v.spi, kic=ref, kid=ref, keys=v.keys)
    assert content.status == PorStatus.POR_OK
    assert content.counter == v.counter
    assert content.data == h(v.data)
    again = seal_response(
        spi=v.spi,
        kic=ref,
        kid=ref,
        tar=packet.tar,
        counter=content.counter,
        status=content.status,
        data=content.data,
        keys=v.keys,
    )
    assert again.encode() == raw[3:]


def test_response_check_covers_the_udh() -> None:
    v = RESPONSE_VECTORS[1]
    ref = KeyRef.from_byte(v.key_ref)
    packet = ResponsePacket.decode(h(v.user_data)[3:])
    with pytest.raises(OtaError) as info:
        open_response(packet, spi=v.spi, kic=ref, kid=ref, keys=v.keys, udh=b"")
    assert info.value.status == PorStatus.RC_CC_DS_FAILED


def test_tampered_response_is_refused() -> None:
    # pySim test_resp_3des_signed_err: status byte changed after the CC was computed
    v = RESPONSE_VECTORS[1]
    ref = KeyRef.from_byte(v.key_ref)
    packet = ResponsePacket.decode(h("001612b000110000000000000055f47118381175fb02612f"))
    with pytest.raises(OtaError) as info:
        open_response(packet, spi=v.spi, kic=ref, kid=ref, keys=v.keys)
    assert info.value.status == PorStatus.RC_CC_DS_FAILED


# -- the card's checks: one test per PoR status ---------------------------------------------------

TAR = h("B00010")
KIC = KeyRef(1, CipherAlgorithm.TDES_2KEY)
KID = KeyRef(1, CipherAlgorithm.TDES_2KEY)
KEYS = OtaKeys(h("00112233445566778899AABBCCDDEEFF"), h("FFEEDDCCBBAA99887766554433221100"))
SECURE = Spi(
    integrity=Integrity.CC,
    ciphering=True,
    counter=CounterMode.HIGHER,
    por=PorRequest.ALWAYS,
    por_integrity=Integrity.CC,
    por_ciphering=True,
)


def _entry(**kwargs: object) -> TarSecurity:
    base: dict[str, object] = {
        "kic_keys": {1: KEYS.kic},
        "kid_keys": {1: KEYS.kid},
        "counter": 10,
        "minimum": MinimumSecurityLevel(
            integrity=Integrity.CC, ciphering=True, counter=CounterMode.HIGHER
        ),
    }
    base.update(kwargs)
    return TarSecurity(**base)  # type: ignore[arg-type]


def _packet(spi: Spi = SECURE, counter: int = 11, data: bytes = b"\x81\x00", **kw: object) -> bytes:
    args: dict[str, object] = {
        "spi": spi,
        "kic": KIC,
        "kid": KID,
        "tar": TAR,
        "counter": counter,
        "data": data,
        "keys": KEYS,
    }
    args.update(kw)
    return seal_command(**args).encode()  # type: ignore[arg-type]


def _rejected(raw: bytes, entry: TarSecurity | None = None) -> CommandRejected:
    table = {TAR: entry or _entry()}
    with pytest.raises(CommandRejected) as info:
        check_command(raw, table)
    return info.value


def test_accepted_returns_the_counter_to_store() -> None:
    entry = _entry()
    accepted = check_command(_packet(counter=15), {TAR: entry})
    assert accepted.data == b"\x81\x00"
    assert accepted.new_counter == 15
    assert entry.counter == 10  # nothing stored: the caller persists new_counter
    assert repr(KEYS.kic) not in repr(accepted)


def test_status_01_cc_failed() -> None:
    raw = bytearray(_packet(spi=Spi(integrity=Integrity.CC, counter=CounterMode.HIGHER)))
    raw[-1] ^= 0x01  # the data, in clear
    err = _rejected(bytes(raw), _entry(minimum=MinimumSecurityLevel(integrity=Integrity.CC)))
    assert err.status == PorStatus.RC_CC_DS_FAILED
    assert err.counter == 11
    # wrong KID key on a ciphered packet: deciphers fine, CC differs
    wrong = _entry(kid_keys={1: bytes(16)})
    assert _rejected(_packet(), wrong).status == PorStatus.RC_CC_DS_FAILED


def test_status_01_rc_failed() -> None:
    spi = Spi(integrity=Integrity.RC, por=PorRequest.ON_ERROR)
    rc_kid = KeyRef(0, 0x5)  # CRC32
    raw = bytearray(_packet(spi=spi, kid=rc_kid))
    entry = _entry(minimum=MinimumSecurityLevel(integrity=Integrity.RC))
    assert check_command(bytes(raw), {TAR: entry}).data == b"\x81\x00"
    raw[-2] ^= 0x40
    err = _rejected(bytes(raw), entry)
    assert err.status == PorStatus.RC_CC_DS_FAILED
    receipt = rejection_receipt(err)
    assert receipt is not None
    assert receipt.check_length == 0
    assert ResponseContent.decode(receipt.sealed, 0) == ResponseContent(counter=11, status=0x01)


def test_status_02_counter_low() -> None:
    assert _rejected(_packet(counter=10)).status == PorStatus.CNTR_LOW
    assert _rejected(_packet(counter=3)).status == PorStatus.CNTR_LOW


def test_status_03_counter_high() -> None:
    one = Spi(integrity=Integrity.CC, ciphering=True, counter=CounterMode.ONE_HIGHER)
    entry = _entry()
    assert check_command(_packet(spi=one, counter=11), {TAR: entry}).new_counter == 11
    assert _rejected(_packet(spi=one, counter=12)).status == PorStatus.CNTR_HIGH
    assert _rejected(_packet(spi=one, counter=10)).status == PorStatus.CNTR_LOW
    window = _entry(max_counter_step=5)
    assert check_command(_packet(counter=15), {TAR: window}).new_counter == 15
    assert _rejected(_packet(counter=16), window).status == PorStatus.CNTR_HIGH


def test_status_04_counter_blocked() -> None:
    entry = _entry(counter=COUNTER_MAX)
    assert _rejected(_packet(counter=COUNTER_MAX), entry).status == PorStatus.CNTR_BLOCKED
    # the last value is still accepted once, then the TAR is blocked
    last = check_command(_packet(counter=COUNTER_MAX), {TAR: _entry(counter=COUNTER_MAX - 1)})
    assert last.new_counter == COUNTER_MAX


def test_status_05_ciphering_error() -> None:
    raw = _packet()
    packet = CommandPacket.decode(raw)
    cut = CommandPacket(
        spi=packet.spi,
        kic=packet.kic,
        kid=packet.kid,
        tar=packet.tar,
        check_length=packet.check_length,
        sealed=packet.sealed[:-1],
    )
    assert _rejected(cut.encode()).status == PorStatus.CIPHERING_ERROR
    # PCNTR that is not below the block size, in a packet whose CC is right
    spi = Spi(ciphering=True, counter=CounterMode.HIGHER)
    plain = bytes.fromhex("000000000B") + bytes((9,)) + b"\x81\x00" + bytes(16)
    sealed = _crypto.encrypt(CipherAlgorithm.TDES_2KEY, KEYS.kic, plain)
    bad = CommandPacket(spi=spi, kic=KIC, kid=KID, tar=TAR, check_length=0, sealed=sealed)
    loose = _entry(minimum=MinimumSecurityLevel(ciphering=True))
    err = _rejected(bad.encode(), loose)
    assert err.status == PorStatus.CIPHERING_ERROR
    assert err.counter == 11


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (h("0005"), "too short"),
        (h("000A0D1201252500001000"), "CPL"),
        (h("000A0C120125250000100000"), "CHL below 13"),
    ],
)
def test_status_06_header_not_understood(raw: bytes, why: str) -> None:
    err = _rejected(raw)
    assert err.status == PorStatus.UNDEFINED_SECURITY_ERROR, why


def test_status_06_configuration() -> None:
    loose = _entry(minimum=MinimumSecurityLevel())
    # unknown key version
    assert _rejected(_packet(kic=KeyRef(2, 5)), loose).status == 0x06
    # DES-ECB KIc is not supported
    ecb = CommandPacket(
        spi=Spi(ciphering=True),
        kic=KeyRef(1, 0xD),
        kid=KID,
        tar=TAR,
        check_length=0,
        sealed=bytes(8),
    )
    assert _rejected(ecb.encode(), loose).status == 0x06
    # digital signature: the header cannot be honoured
    ds = bytearray(_packet(spi=Spi(integrity=Integrity.CC)))
    ds[3] = (ds[3] & ~0x03) | Integrity.DS
    assert _rejected(bytes(ds), loose).status == 0x06
    # CHL announcing 4 bytes of CC where 3DES gives 8
    packet = CommandPacket.decode(_packet(spi=Spi(integrity=Integrity.CC)))
    short = CommandPacket(
        spi=packet.spi,
        kic=packet.kic,
        kid=packet.kid,
        tar=packet.tar,
        check_length=4,
        sealed=packet.sealed,
    )
    assert _rejected(short.encode(), loose).status == 0x06
    # a KID key that does not fit its algorithm
    assert _rejected(_packet(), _entry(kid_keys={1: bytes(8)})).status == 0x06


def test_status_09_tar_unknown() -> None:
    with pytest.raises(CommandRejected) as info:
        check_command(_packet(), {h("B00011"): _entry()})
    err = info.value
    assert err.status == PorStatus.TAR_UNKNOWN
    assert err.tar == TAR
    receipt = rejection_receipt(err)
    assert receipt is not None
    assert receipt == unsecured_response(tar=TAR, counter=0, status=PorStatus.TAR_UNKNOWN)
    assert receipt.encode() == h("000B0A") + TAR + h("0000000000") + h("0009")


def test_status_0a_insufficient_security_level() -> None:
    # the TAR requires CC and ciphering; a packet with neither is refused before any key is used
    plain = Spi(counter=CounterMode.HIGHER, por=PorRequest.ON_ERROR)
    err = _rejected(_packet(spi=plain))
    assert err.status == PorStatus.INSUFFICIENT_SECURITY_LEVEL
    assert rejection_receipt(err) is not None
    # CC without ciphering, or no counter check, is not enough either
    assert _rejected(_packet(spi=Spi(integrity=Integrity.CC))).status == 0x0A
    no_counter = Spi(integrity=Integrity.CC, ciphering=True, counter=CounterMode.NO_CHECK)
    assert _rejected(_packet(spi=no_counter)).status == 0x0A


def test_error_without_por_request_gives_no_receipt() -> None:
    err = _rejected(_packet(spi=Spi(integrity=Integrity.CC)))
    assert rejection_receipt(err) is None
    assert rejection_receipt(CommandRejected(PorStatus.UNDEFINED_SECURITY_ERROR, "x")) is None


def test_proof_of_receipt_round_trip() -> None:
    accepted = check_command(_packet(counter=12), {TAR: _entry()})
    por = proof_of_receipt(accepted, data=h("019000"))
    assert por is not None
    content = open_response(por, spi=SECURE, kic=KIC, kid=KID, keys=KEYS)
    assert content == ResponseContent(
        counter=12,
        status=PorStatus.POR_OK,
        check=content.check,
        data=h("019000"),
        padding=content.padding,
    )
    assert len(content.check) == 8
    assert (7 + 8 + 3 + len(content.padding)) % 8 == 0


def test_proof_of_receipt_aes_keeps_the_cc_length() -> None:
    aes = KeyRef(2, CipherAlgorithm.AES_CBC)
    keys = OtaKeys(bytes(range(16)), bytes(range(16, 32)))
    entry = TarSecurity(kic_keys={2: keys.kic}, kid_keys={2: keys.kid})
    spi = Spi(
        integrity=Integrity.CC,
        ciphering=True,
        por=PorRequest.ALWAYS,
        por_integrity=Integrity.CC,
        por_ciphering=True,
    )
    raw = seal_command(
        spi=spi, kic=aes, kid=aes, tar=TAR, counter=0, data=b"x", keys=keys, cc_length=4
    ).encode()
    accepted = check_command(raw, {TAR: entry})
    assert accepted.packet.check_length == 4
    por = proof_of_receipt(accepted)
    assert por is not None
    assert por.check_length == 4
    assert open_response(por, spi=spi, kic=aes, kid=aes, keys=keys).status == 0


def test_por_on_error_only() -> None:
    spi = Spi(
        integrity=Integrity.CC, ciphering=True, counter=CounterMode.HIGHER, por=PorRequest.ON_ERROR
    )
    accepted = check_command(_packet(spi=spi), {TAR: _entry()})
    assert proof_of_receipt(accepted) is None
    assert proof_of_receipt(accepted, status=PorStatus.INSUFFICIENT_MEMORY) is not None


def test_unsecured_error_por_is_accepted_but_unsecured_ok_is_not() -> None:
    error = unsecured_response(tar=TAR, counter=11, status=PorStatus.CNTR_LOW)
    content = open_response(error, spi=SECURE, kic=KIC, kid=KID, keys=KEYS)
    assert content.status == PorStatus.CNTR_LOW
    forged = unsecured_response(tar=TAR, counter=11, status=PorStatus.POR_OK)
    with pytest.raises(OtaError) as info:
        open_response(forged, spi=SECURE, kic=KIC, kid=KID, keys=KEYS)
    assert info.value.status == PorStatus.RC_CC_DS_FAILED


def test_no_counter_modes_leave_the_counter() -> None:
    for mode in (CounterMode.NONE, CounterMode.NO_CHECK):
        spi = Spi(integrity=Integrity.CC, ciphering=True, counter=mode)
        entry = _entry(minimum=MinimumSecurityLevel(), counter=99)
        assert check_command(_packet(spi=spi, counter=0), {TAR: entry}).new_counter is None


def test_trailing_bytes_are_refused() -> None:
    raw = _packet()
    with pytest.raises(DecodeError):
        CommandPacket.decode(raw + b"\x00")
    with pytest.raises(DecodeError):
        ResponsePacket.decode(unsecured_response(tar=TAR, counter=1, status=0).encode() + b"\x00")


def test_sealing_refuses_what_it_cannot_do() -> None:
    with pytest.raises(ValueError, match="DS"):
        seal_command(
            spi=Spi(integrity=Integrity.DS), kic=KIC, kid=KID, tar=TAR, counter=0, data=b""
        )
    aes = KeyRef(1, 2)
    with pytest.raises(ValueError, match="AES CC length"):
        seal_command(
            spi=Spi(integrity=Integrity.CC),
            kic=aes,
            kid=aes,
            tar=TAR,
            counter=0,
            data=b"",
            keys=OtaKeys(bytes(16), bytes(16)),
            cc_length=6,
        )
    with pytest.raises(ValueError, match="does not fit"):
        seal_command(
            spi=Spi(ciphering=True), kic=KIC, kid=KID, tar=TAR, counter=0, data=b"", keys=OtaKeys()
        )
    with pytest.raises(ValueError, match="5 bytes"):
        seal_command(spi=Spi(), kic=KIC, kid=KID, tar=TAR, counter=COUNTER_MAX + 1, data=b"")
