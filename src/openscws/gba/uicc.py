"""What the terminal's GBA client sends the USIM and how it reads the answers, sans-IO
(3GPP TS 31.102 §7.1.2 AUTHENTICATE, §4.2.2 EF_IMSI, §4.2.79 EF_GBABP; TS 33.220 Annex G).

    SELECT the USIM      00 A4 04 04 07 A0000000871002          (partial AID: RID + 1002)
    3G context           00 88 00 81 22 10 RAND 10 AUTN 00       -> DB 08 RES 10 CK 10 IK 08 Kc
    GBA bootstrapping    00 88 00 84 23 DD 10 RAND 10 AUTN 00    -> DB 08 RES
    GBA NAF derivation   00 88 00 84 Lc DE L NAF_Id L IMPI 00    -> DB 20 Ks_ext_NAF
    either AKA context   DC 0E AUTS (SQN not fresh), SW 98 62 (MAC failure), 98 64 / 6A 81 /
                         6D 00 (the context is not supported: not a GBA_U-aware USIM)
    SELECT EF            00 A4 00 0C 02 FID
    READ BINARY          00 B0 00 00 Le
    UPDATE BINARY        00 D6 <offset> Lc LV(B-TID) LV(key lifetime)  (after LV(RAND))

The key lifetime is written as the xs:dateTime text the BSF sent (ASCII): this project's
reading of "coded as defined in TS 33.220" for EF_GBABP."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from openscws.errors import OpenScwsError

__all__ = [
    "EF_GBABP",
    "EF_IMSI",
    "SELECT_USIM",
    "AkaAuts",
    "AkaMacFailure",
    "AkaNotSupported",
    "AkaOk",
    "CardRefused",
    "authenticate_3g",
    "decode_imsi",
    "gba_bootstrap",
    "gba_naf",
    "impi_of_imsi",
    "parse_aka",
    "parse_naf",
    "read_binary",
    "select_ef",
    "status_of",
    "update_gbabp",
]

SELECT_USIM: Final = bytes.fromhex("00A4040407A0000000871002")
EF_IMSI: Final = 0x6F07
EF_GBABP: Final = 0x6FD6
SW_OK: Final = 0x9000
SW_MAC_FAILURE: Final = 0x9862
_NOT_SUPPORTED: Final = frozenset({0x9864, 0x6A81, 0x6D00, 0x6A86, 0x6B00})


class CardRefused(OpenScwsError):
    """The card answered a command with an error status word."""

    def __init__(self, what: str, sw: int) -> None:
        super().__init__(f"{what}: the card answered SW {sw:04X}")
        self.sw = sw


@dataclass(frozen=True, slots=True)
class AkaOk:
    res: bytes
    ck: bytes = field(default=b"", repr=False)
    """Empty in the GBA context: CK and IK stay in the card (Ks)."""
    ik: bytes = field(default=b"", repr=False)


@dataclass(frozen=True, slots=True)
class AkaAuts:
    auts: bytes


@dataclass(frozen=True, slots=True)
class AkaMacFailure:
    """The USIM did not authenticate the network (SW 98 62)."""


@dataclass(frozen=True, slots=True)
class AkaNotSupported:
    """The USIM has no such security context (not GBA_U-aware, for P2 84)."""

    sw: int


def status_of(response: bytes) -> tuple[bytes, int]:
    if len(response) < 2:
        raise CardRefused("a response", 0x6F00)
    return response[:-2], int.from_bytes(response[-2:], "big")


def select_ef(fid: int) -> bytes:
    return bytes.fromhex("00A4000C02") + fid.to_bytes(2, "big")


def read_binary(length: int, offset: int = 0) -> bytes:
    return bytes((0x00, 0xB0, offset >> 8, offset & 0xFF, length & 0xFF))


def _authenticate(p2: int, data: bytes) -> bytes:
    return bytes((0x00, 0x88, 0x00, p2, len(data))) + data + b"\x00"


def _rand_autn(rand: bytes, autn: bytes) -> bytes:
    if len(rand) != 16 or len(autn) != 16:
        raise ValueError("RAND and AUTN are 16 bytes each")
    return b"\x10" + rand + b"\x10" + autn


def authenticate_3g(rand: bytes, autn: bytes) -> bytes:
    return _authenticate(0x81, _rand_autn(rand, autn))


def gba_bootstrap(rand: bytes, autn: bytes) -> bytes:
    return _authenticate(0x84, b"\xdd" + _rand_autn(rand, autn))


def gba_naf(naf_id: bytes, impi: str) -> bytes:
    impi_b = impi.encode()
    if len(naf_id) > 255 or len(impi_b) > 255:
        raise ValueError("NAF_Id and IMPI are at most 255 bytes each")
    data = b"\xde" + bytes((len(naf_id),)) + naf_id + bytes((len(impi_b),)) + impi_b
    if len(data) > 255:
        raise ValueError("NAF derivation data over 255 bytes")
    return _authenticate(0x84, data)


def _lvs(data: bytes) -> list[bytes]:
    out = []
    while data:
        n = data[0]
        if len(data) < 1 + n:
            raise CardRefused("a truncated AUTHENTICATE answer", 0x6F00)
        out.append(data[1 : 1 + n])
        data = data[1 + n :]
    return out


def parse_aka(
    response: bytes, *, context: str
) -> AkaOk | AkaAuts | AkaMacFailure | AkaNotSupported:
    """The answer of AUTHENTICATE in the 3G or GBA bootstrapping context."""
    data, sw = status_of(response)
    if sw == SW_MAC_FAILURE:
        return AkaMacFailure()
    if sw in _NOT_SUPPORTED:
        return AkaNotSupported(sw)
    if sw != SW_OK or not data:
        raise CardRefused(f"AUTHENTICATE ({context})", sw)
    if data[0] == 0xDC:
        auts = _lvs(data[1:])
        if len(auts) != 1 or len(auts[0]) != 14:
            raise CardRefused("AUTHENTICATE: a malformed AUTS", sw)
        return AkaAuts(auts[0])
    if data[0] != 0xDB:
        raise CardRefused(f"AUTHENTICATE: unknown answer tag {data[0]:02X}", sw)
    fields = _lvs(data[1:])
    if context == "3G":
        if len(fields) < 3 or len(fields[1]) != 16 or len(fields[2]) != 16:
            raise CardRefused("AUTHENTICATE (3G): no RES, CK, IK", sw)
        return AkaOk(fields[0], fields[1], fields[2])
    if len(fields) != 1:
        raise CardRefused("AUTHENTICATE (GBA): not DB L RES", sw)
    return AkaOk(fields[0])


def parse_naf(response: bytes) -> bytes:
    """Ks_ext_NAF from a NAF derivation answer (DB 20 key)."""
    data, sw = status_of(response)
    if sw != SW_OK or len(data) != 34 or data[:2] != b"\xdb\x20":
        raise CardRefused("AUTHENTICATE (GBA NAF derivation)", sw)
    return data[2:]


def update_gbabp(rand_len: int, btid: str, lifetime: str) -> bytes:
    """UPDATE BINARY of EF_GBABP after its LV(RAND): LV(B-TID) LV(key lifetime)."""
    b, life = btid.encode(), lifetime.encode("ascii")
    if len(b) > 255 or len(life) > 255:
        raise ValueError("B-TID and lifetime are at most 255 bytes each")
    data = bytes((len(b),)) + b + bytes((len(life),)) + life
    offset = 1 + rand_len
    return bytes((0x00, 0xD6, offset >> 8, offset & 0xFF, len(data))) + data


def decode_imsi(ef: bytes) -> str:
    """EF_IMSI (TS 31.102 §4.2.2): length byte, then BCD digits after the parity nibble."""
    if not ef or ef[0] == 0xFF or ef[0] == 0 or len(ef) < 1 + ef[0]:
        raise CardRefused("EF_IMSI is empty", SW_OK)
    nibbles = []
    for byte in ef[1 : 1 + ef[0]]:
        nibbles += [byte & 0x0F, byte >> 4]
    digits = [n for n in nibbles[1:] if n != 0xF]
    if any(d > 9 for d in digits):
        raise CardRefused("EF_IMSI holds a non-digit", SW_OK)
    return "".join(map(str, digits))


def impi_of_imsi(imsi: str, mnc_digits: int = 2) -> str:
    """The IMPI derived from the IMSI (TS 23.003 §13.3): <IMSI>@ims.mnc<MNC>.mcc<MCC>.
    3gppnetwork.org, the MNC zero-padded to 3 digits."""
    mcc, mnc = imsi[:3], imsi[3 : 3 + mnc_digits]
    return f"{imsi}@ims.mnc{mnc.zfill(3)}.mcc{mcc}.3gppnetwork.org"
