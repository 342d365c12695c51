"""Secured packets over SMS-PP (ETSI TS 102 225 §5, 3GPP TS 31.115): the command packet a
sending entity seals, the checks the receiving entity (the card) runs before it acts, and the
response packet that is the Proof of Receipt (PoR).

Layouts (SMS dialect, TS 31.115: the CPI / RPI travel in the user data header, there is no CHI
or RHI byte, lengths are fixed-size):

    command   CPL(2) CHL(1) SPI(2) KIc(1) KID(1) TAR(3) | CNTR(5) PCNTR(1) RC/CC/DS(n) data pad
    response  RPL(2) RHL(1) TAR(3) | CNTR(5) PCNTR(1) status(1) RC/CC/DS(n) data pad

CHL = 13 + n and RHL = 10 + n; CPL / RPL count every byte after themselves. The part after
`|` is enciphered when the SPI asks for it, with a zero initial value (TS 102 225 §5.1.2); PCNTR
counts the padding bytes added to reach a whole cipher block. RC/CC/DS covers the clear header,
CNTR, PCNTR, the secured data and its padding, never the RC/CC/DS field itself. For a command
the SMS header `02 70 00` is outside that coverage (pySim `OtaDialectSms.encode_cmd` and asterix
`createComPacket` agree, and the CRC32 of the card session captured in asterix's tests matches
only that way); for a response the three header bytes `02 71 00` are inside it (TS 31.115, as
quoted in onomondo softsim `uicc_remote_cmd.c`; pySim `decode_resp`, asterix `checkRespPacket`
and the same captured PoR agree).

Nothing here stores anything: `check_command` returns the counter the card must persist, and
the caller writes it atomically with whatever the command does."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Self

from openscws.errors import DecodeError, OtaError
from openscws.ota import _crypto
from openscws.ota.spi import (
    CcAlgorithm,
    CipherAlgorithm,
    CounterMode,
    Integrity,
    KeyRef,
    PorRequest,
    Spi,
)

COUNTER_MAX = (1 << 40) - 1
"""CNTR is 5 bytes (§5.1); a receiving entity whose counter reached this is blocked."""

COMMAND_UDH = bytes((0x02, 0x70, 0x00))
"""UDHL, IEI 70 (command packet identifier, CPI), IEDL 0 (TS 31.115)."""
RESPONSE_UDH = bytes((0x02, 0x71, 0x00))
"""UDHL, IEI 71 (response packet identifier, RPI), IEDL 0 (TS 31.115)."""

_CHL_FIXED = 13  # SPI(2) KIc KID TAR(3) CNTR(5) PCNTR
_RHL_FIXED = 10  # TAR(3) CNTR(5) PCNTR status
_COMMAND_CLEAR = 10  # CPL(2) CHL SPI(2) KIc KID TAR(3)
_RESPONSE_CLEAR = 6  # RPL(2) RHL TAR(3)
AES_CC_LENGTHS = frozenset((4, 8))
"""CC lengths accepted with AES CMAC. pySim notes "4 or 8" and uses 8; asterix uses 8 and
allows 4 [UNCONFIRMED against TS 102 225 §5.1.3.1]. The DES family always gives 8."""


class PorStatus(IntEnum):
    """Response status codes (TS 102 225 §5.2; 0B and 0C are assigned in TS 31.115)."""

    POR_OK = 0x00
    RC_CC_DS_FAILED = 0x01
    CNTR_LOW = 0x02
    CNTR_HIGH = 0x03
    CNTR_BLOCKED = 0x04
    CIPHERING_ERROR = 0x05
    UNDEFINED_SECURITY_ERROR = 0x06  # header not understood: the PoR goes out unsecured
    INSUFFICIENT_MEMORY = 0x07
    MORE_TIME = 0x08
    TAR_UNKNOWN = 0x09
    INSUFFICIENT_SECURITY_LEVEL = 0x0A
    RESPONSE_VIA_SMS_SUBMIT = 0x0B
    RESPONSE_VIA_USSD = 0x0C


@dataclass(frozen=True, slots=True)
class OtaKeys:
    """The key values one packet is sealed or opened with. Never logged: repr hides them."""

    kic: bytes = field(default=b"", repr=False)
    kid: bytes = field(default=b"", repr=False)


def _counter_bytes(counter: int) -> bytes:
    if not 0 <= counter <= COUNTER_MAX:
        raise ValueError(f"counter {counter} does not fit in 5 bytes")
    return counter.to_bytes(5, "big")


# -- wire forms ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandPacket:
    """A command packet as it travels. `sealed` is everything after the TAR (CNTR, PCNTR,
    RC/CC/DS, secured data, padding), enciphered when `spi.ciphering`; `check_length` is the
    RC/CC/DS length the CHL announces."""

    spi: Spi
    kic: KeyRef
    kid: KeyRef
    tar: bytes
    check_length: int
    sealed: bytes

    def __post_init__(self) -> None:
        if len(self.tar) != 3:
            raise ValueError("TAR is 3 bytes")
        if not 0 <= self.check_length <= 0xFF - _CHL_FIXED:
            raise ValueError(f"RC/CC/DS length {self.check_length} does not fit the CHL")
        if 1 + 7 + len(self.sealed) > 0xFFFF:
            raise ValueError("command packet longer than CPL allows")

    @property
    def chl(self) -> int:
        return _CHL_FIXED + self.check_length

    @property
    def header(self) -> bytes:
        """CPL to TAR: the clear part, covered by RC/CC/DS."""
        cpl = 1 + 7 + len(self.sealed)
        return (
            cpl.to_bytes(2, "big")
            + bytes((self.chl,))
            + self.spi.encode()
            + self.kic.encode()
            + self.kid.encode()
            + self.tar
        )

    def encode(self) -> bytes:
        return self.header + self.sealed

    @classmethod
    def decode(cls, data: bytes) -> Self:
        if len(data) < _COMMAND_CLEAR:
            raise DecodeError("command packet shorter than its clear header", data, len(data))
        cpl = int.from_bytes(data[0:2], "big")
        if cpl != len(data) - 2:
            raise DecodeError(f"CPL {cpl} but {len(data) - 2} bytes follow it", data, 0)
        chl = data[2]
        if chl < _CHL_FIXED:
            raise DecodeError(f"CHL {chl} below the fixed 13 header bytes", data, 2)
        spi = Spi.decode(data[3:5])
        sealed = data[_COMMAND_CLEAR:]
        check_length = chl - _CHL_FIXED
        if not spi.ciphering and len(sealed) < 6 + check_length:
            raise DecodeError(f"CHL {chl} runs past the end of the packet", data, 2)
        return cls(
            spi=spi,
            kic=KeyRef.from_byte(data[5]),
            kid=KeyRef.from_byte(data[6]),
            tar=data[7:10],
            check_length=check_length,
            sealed=sealed,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandContent:
    """The deciphered part of a command packet after the TAR."""

    counter: int
    check: bytes
    data: bytes
    padding: bytes = b""

    def encode(self) -> bytes:
        return (
            _counter_bytes(self.counter)
            + bytes((len(self.padding),))
            + self.check
            + self.data
            + self.padding
        )

    @classmethod
    def decode(cls, plain: bytes, check_length: int) -> Self:
        if len(plain) < 6 + check_length:
            raise DecodeError("secured part shorter than CNTR, PCNTR and RC/CC/DS", plain, 0)
        pcntr = plain[5]
        rest = plain[6 + check_length :]
        if pcntr > len(rest):
            raise DecodeError(f"PCNTR {pcntr} exceeds the {len(rest)} data bytes", plain, 5)
        cut = len(rest) - pcntr
        return cls(
            counter=int.from_bytes(plain[0:5], "big"),
            check=plain[6 : 6 + check_length],
            data=rest[:cut],
            padding=rest[cut:],
        )

    def covered(self) -> bytes:
        """CNTR, PCNTR, data and padding: what RC/CC/DS covers after the clear header."""
        return _counter_bytes(self.counter) + bytes((len(self.padding),)) + self.data + self.padding


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponsePacket:
    """A response packet (PoR) as it travels, without the SMS header. `sealed` is CNTR to the
    end, enciphered when the command's SPI asked for a ciphered PoR."""

    tar: bytes
    check_length: int
    sealed: bytes

    def __post_init__(self) -> None:
        if len(self.tar) != 3:
            raise ValueError("TAR is 3 bytes")
        if not 0 <= self.check_length <= 0xFF - _RHL_FIXED:
            raise ValueError(f"RC/CC/DS length {self.check_length} does not fit the RHL")
        if 4 + len(self.sealed) > 0xFFFF:
            raise ValueError("response packet longer than RPL allows")

    @property
    def rhl(self) -> int:
        return _RHL_FIXED + self.check_length

    @property
    def header(self) -> bytes:
        """RPL, RHL, TAR: the clear part."""
        rpl = 1 + 3 + len(self.sealed)
        return rpl.to_bytes(2, "big") + bytes((self.rhl,)) + self.tar

    def encode(self) -> bytes:
        return self.header + self.sealed

    @classmethod
    def decode(cls, data: bytes) -> Self:
        if len(data) < _RESPONSE_CLEAR:
            raise DecodeError("response packet shorter than its clear header", data, len(data))
        rpl = int.from_bytes(data[0:2], "big")
        if rpl != len(data) - 2:
            raise DecodeError(f"RPL {rpl} but {len(data) - 2} bytes follow it", data, 0)
        rhl = data[2]
        if rhl < _RHL_FIXED:
            raise DecodeError(f"RHL {rhl} below the fixed 10 header bytes", data, 2)
        return cls(tar=data[3:6], check_length=rhl - _RHL_FIXED, sealed=data[_RESPONSE_CLEAR:])


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseContent:
    """The deciphered part of a response packet after the TAR."""

    counter: int
    status: int
    check: bytes = b""
    data: bytes = b""
    padding: bytes = b""

    def encode(self) -> bytes:
        return self._head() + self.check + self.data + self.padding

    def _head(self) -> bytes:
        return _counter_bytes(self.counter) + bytes((len(self.padding), self.status))

    def covered(self) -> bytes:
        return self._head() + self.data + self.padding

    @classmethod
    def decode(cls, plain: bytes, check_length: int) -> Self:
        if len(plain) < 7 + check_length:
            raise DecodeError("response shorter than CNTR, PCNTR, status, RC/CC/DS", plain, 0)
        pcntr = plain[5]
        rest = plain[7 + check_length :]
        if pcntr > len(rest):
            raise DecodeError(f"PCNTR {pcntr} exceeds the {len(rest)} data bytes", plain, 5)
        cut = len(rest) - pcntr
        return cls(
            counter=int.from_bytes(plain[0:5], "big"),
            status=plain[6],
            check=plain[7 : 7 + check_length],
            data=rest[:cut],
            padding=rest[cut:],
        )


# -- algorithms as the SPI and KIc / KID select them -------------------------------------------


def _cipher_of(kic: KeyRef, key: bytes) -> CipherAlgorithm:
    """The KIc algorithm, if this implementation supports it and `key` fits it."""
    algorithm = kic.cipher
    if algorithm not in _crypto.SUPPORTED_CIPHERS:
        raise ValueError(f"KIc algorithm {kic.algorithm:X} not supported")
    assert algorithm is not None
    if not _crypto.key_fits(algorithm, key):
        raise ValueError(f"KIc key of {len(key)} bytes does not fit {algorithm.name}")
    return algorithm


def _check_length(integrity: Integrity, kid: KeyRef, cc_length: int) -> int:
    match integrity:
        case Integrity.NONE:
            return 0
        case Integrity.RC:
            rc = kid.rc
            if rc not in _crypto.SUPPORTED_RCS:
                raise ValueError(f"KID {kid.algorithm:X} is no supported redundancy check")
            assert rc is not None
            return _crypto.rc_length(rc)
        case Integrity.CC:
            cc = kid.cc
            if cc not in _crypto.SUPPORTED_CCS:
                raise ValueError(f"KID {kid.algorithm:X} is no supported cryptographic checksum")
            if cc is CcAlgorithm.AES_CMAC:
                if cc_length not in AES_CC_LENGTHS:
                    raise ValueError(f"AES CC length {cc_length} not in {sorted(AES_CC_LENGTHS)}")
                return cc_length
            return 8
        case Integrity.DS:
            raise ValueError("digital signatures (DS) are not supported")


def _compute_check(integrity: Integrity, kid: KeyRef, key: bytes, covered: bytes, n: int) -> bytes:
    if integrity is Integrity.RC:
        rc = kid.rc
        assert rc is not None
        return _crypto.redundancy_check(rc, covered)
    if integrity is Integrity.CC:
        cc = kid.cc
        assert cc is not None
        if not _crypto.key_fits(cc, key):
            raise ValueError(f"KID key of {len(key)} bytes does not fit {cc.name}")
        return _crypto.cryptographic_checksum(cc, key, covered, n)
    return b""


def _padding(ciphering: bool, kic: KeyRef, key: bytes, length: int) -> bytes:
    """Zero bytes that bring `length` to a whole cipher block (none without ciphering)."""
    if not ciphering:
        return b""
    return bytes(-length % _crypto.block_size(_cipher_of(kic, key)))


# -- sending side --------------------------------------------------------------------------------


def seal_command(
    *,
    spi: Spi,
    kic: KeyRef,
    kid: KeyRef,
    tar: bytes,
    counter: int,
    data: bytes,
    keys: OtaKeys = OtaKeys(),
    cc_length: int = 8,
) -> CommandPacket:
    """Builds a command packet: zero padding to a whole cipher block when ciphering, RC/CC
    over header, CNTR, PCNTR, data and padding, then CNTR to the end enciphered. `cc_length`
    matters only for AES CMAC. Raises ValueError for algorithms or keys it cannot use."""
    n = _check_length(spi.integrity, kid, cc_length)
    padding = _padding(spi.ciphering, kic, keys.kic, 6 + n + len(data))
    content = CommandContent(counter=counter, check=bytes(n), data=data, padding=padding)
    draft = CommandPacket(spi=spi, kic=kic, kid=kid, tar=tar, check_length=n, sealed=b"")
    header = _command_header(draft, 6 + n + len(data) + len(padding))
    check = _compute_check(spi.integrity, kid, keys.kid, header + content.covered(), n)
    plain = CommandContent(counter=counter, check=check, data=data, padding=padding).encode()
    if spi.ciphering:
        plain = _crypto.encrypt(_cipher_of(kic, keys.kic), keys.kic, plain)
    return CommandPacket(spi=spi, kic=kic, kid=kid, tar=tar, check_length=n, sealed=plain)


def _command_header(draft: CommandPacket, sealed_length: int) -> bytes:
    cpl = 1 + 7 + sealed_length
    return cpl.to_bytes(2, "big") + draft.header[2:]


# -- receiving side ------------------------------------------------------------------------------


class CommandRejected(OtaError):
    """A command packet the card refuses. `tar` and `spi` are set when the header could be
    read that far, `counter` when CNTR could be read: the PoR needs them."""

    def __init__(
        self,
        status: PorStatus,
        reason: str,
        *,
        tar: bytes | None = None,
        spi: Spi | None = None,
        counter: int | None = None,
    ) -> None:
        super().__init__(status, reason)
        self.tar = tar
        self.spi = spi
        self.counter = counter


@dataclass(frozen=True, slots=True, kw_only=True)
class MinimumSecurityLevel:
    """What a TAR demands of a command's SPI before it acts (TS 102 226 §8.2.1.3.2.4: the
    minimum security level; its one-byte coding is not modelled here [UNCONFIRMED]). onomondo
    softsim checks the same: integrity, ciphering, counter."""

    integrity: Integrity = Integrity.NONE
    ciphering: bool = False
    counter: CounterMode = CounterMode.NONE

    def allows(self, spi: Spi) -> bool:
        return (
            spi.integrity >= self.integrity
            and (spi.ciphering or not self.ciphering)
            and spi.counter >= self.counter
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TarSecurity:
    """One TAR's entry in the card's key table: its KIc and KID keys by key version (the high
    nibble of the KIc / KID byte), the last counter it accepted, and its minimum security
    level."""

    kic_keys: Mapping[int, bytes] = field(default_factory=dict, repr=False)
    kid_keys: Mapping[int, bytes] = field(default_factory=dict, repr=False)
    counter: int = 0
    """The counter in the receiving entity (TS 102 225 §5.1.1 "the value in the RE")."""
    minimum: MinimumSecurityLevel = MinimumSecurityLevel()
    max_counter_step: int | None = None
    """Policy: refuse a CNTR more than this far above the stored counter with 03 CNTR high
    (the spec leaves the window to the RE [UNCONFIRMED]). None: no upper bound."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AcceptedCommand:
    """A command packet that passed every check. Persist `new_counter` (when not None) for the
    TAR in the same transaction as the command's effects."""

    packet: CommandPacket
    content: CommandContent
    new_counter: int | None
    keys: OtaKeys = field(repr=False)

    @property
    def data(self) -> bytes:
        """The secured data, padding removed."""
        return self.content.data


def check_command(data: bytes, table: Mapping[bytes, TarSecurity]) -> AcceptedCommand:
    """Runs the receiving entity's checks on a command packet (CPL to the end) against the
    card's key table, TAR to entry. Returns the plaintext and the counter to store, or raises
    CommandRejected with the PoR status: 06 header not understood or not supported, 09 TAR
    unknown, 0A below the TAR's minimum security level, 05 cannot decipher, 01 RC/CC/DS
    mismatch, 04 counter blocked, 02 counter not above the stored one, 03 counter too far
    above it."""
    tar = data[7:10] if len(data) >= _COMMAND_CLEAR else None
    spi = _try_spi(data)
    try:
        packet = CommandPacket.decode(data)
    except DecodeError as exc:
        raise CommandRejected(
            PorStatus.UNDEFINED_SECURITY_ERROR, exc.reason, tar=tar, spi=spi
        ) from exc
    tar, spi = packet.tar, packet.spi
    entry = table.get(tar)
    if entry is None:
        raise CommandRejected(PorStatus.TAR_UNKNOWN, f"TAR {tar.hex()}", tar=tar, spi=spi)
    if not entry.minimum.allows(spi):
        raise CommandRejected(
            PorStatus.INSUFFICIENT_SECURITY_LEVEL,
            f"SPI {spi.encode().hex()} below the minimum security level of TAR {tar.hex()}",
            tar=tar,
            spi=spi,
        )
    keys = _resolve_keys(packet, entry)
    content = open_command(packet, keys)
    new_counter = _counter_update(spi.counter, content.counter, entry, packet)
    return AcceptedCommand(packet=packet, content=content, new_counter=new_counter, keys=keys)


def _try_spi(data: bytes) -> Spi | None:
    return Spi.decode(data[3:5]) if len(data) >= 5 else None


def _resolve_keys(packet: CommandPacket, entry: TarSecurity) -> OtaKeys:
    """The keys this packet and its PoR need, with every algorithm and length checked, so that
    opening the packet and sealing the PoR cannot fail for configuration reasons."""
    spi = packet.spi

    def refuse(reason: str) -> CommandRejected:
        return CommandRejected(PorStatus.UNDEFINED_SECURITY_ERROR, reason, tar=packet.tar, spi=spi)

    kic = b""
    if spi.ciphering or spi.por_ciphering:
        found = entry.kic_keys.get(packet.kic.key_version)
        if found is None:
            raise refuse(f"no KIc key version {packet.kic.key_version}")
        try:
            _cipher_of(packet.kic, found)
        except ValueError as exc:
            raise refuse(str(exc)) from exc
        kic = found
    kid = b""
    try:
        if _check_length(spi.integrity, packet.kid, packet.check_length) != packet.check_length:
            raise refuse(f"CHL announces {packet.check_length} RC/CC/DS bytes, SPI/KID differ")
        _check_length(spi.por_integrity, packet.kid, 8)
    except ValueError as exc:
        raise refuse(str(exc)) from exc
    if Integrity.CC in (spi.integrity, spi.por_integrity):
        found = entry.kid_keys.get(packet.kid.key_version)
        cc = packet.kid.cc
        assert cc is not None
        if found is None:
            raise refuse(f"no KID key version {packet.kid.key_version}")
        if not _crypto.key_fits(cc, found):
            raise refuse(f"KID key of {len(found)} bytes does not fit {cc.name}")
        kid = found
    return OtaKeys(kic=kic, kid=kid)


def open_command(packet: CommandPacket, keys: OtaKeys) -> CommandContent:
    """Deciphers a command packet and verifies its RC/CC (no counter check, no key table:
    `check_command` does those). Raises CommandRejected with 05, 01 or 06."""
    spi = packet.spi

    def reject(status: PorStatus, reason: str, counter: int | None = None) -> CommandRejected:
        return CommandRejected(status, reason, tar=packet.tar, spi=spi, counter=counter)

    plain = packet.sealed
    block = 1
    if spi.ciphering:
        try:
            algorithm = _cipher_of(packet.kic, keys.kic)
        except ValueError as exc:
            raise reject(PorStatus.UNDEFINED_SECURITY_ERROR, str(exc)) from exc
        block = _crypto.block_size(algorithm)
        if not plain or len(plain) % block:
            raise reject(
                PorStatus.CIPHERING_ERROR, f"{len(plain)} enciphered bytes, block is {block}"
            )
        plain = _crypto.decrypt(algorithm, keys.kic, plain)
    n = packet.check_length
    if len(plain) < 6 + n:
        raise reject(PorStatus.CIPHERING_ERROR, "deciphered part too short")
    counter = int.from_bytes(plain[0:5], "big")
    covered = packet.header + plain[0:6] + plain[6 + n :]
    try:
        if _check_length(spi.integrity, packet.kid, n) != n:
            raise ValueError(f"CHL announces {n} RC/CC/DS bytes, SPI and KID differ")
        expected = _compute_check(spi.integrity, packet.kid, keys.kid, covered, n)
    except ValueError as exc:
        raise reject(PorStatus.UNDEFINED_SECURITY_ERROR, str(exc), counter) from exc
    if not hmac.compare_digest(expected, plain[6 : 6 + n]):
        raise reject(PorStatus.RC_CC_DS_FAILED, f"{spi.integrity.name} mismatch", counter)
    pcntr = plain[5]
    if spi.ciphering and pcntr >= block:
        raise reject(PorStatus.CIPHERING_ERROR, f"PCNTR {pcntr} not below block {block}", counter)
    try:
        return CommandContent.decode(plain, n)
    except DecodeError as exc:
        status = PorStatus.CIPHERING_ERROR if spi.ciphering else PorStatus.UNDEFINED_SECURITY_ERROR
        raise reject(status, exc.reason, counter) from exc


def _counter_update(
    mode: CounterMode, received: int, entry: TarSecurity, packet: CommandPacket
) -> int | None:
    """TS 102 225 §5.1.1 counter management; returns the counter to store (None: unchanged)."""
    if mode in (CounterMode.NONE, CounterMode.NO_CHECK):
        return None

    def reject(status: PorStatus, reason: str) -> CommandRejected:
        return CommandRejected(status, reason, tar=packet.tar, spi=packet.spi, counter=received)

    stored = entry.counter
    if stored >= COUNTER_MAX:
        raise reject(PorStatus.CNTR_BLOCKED, "the stored counter reached its maximum")
    if received <= stored:
        raise reject(PorStatus.CNTR_LOW, f"CNTR {received} not above {stored}")
    if mode is CounterMode.ONE_HIGHER and received != stored + 1:
        raise reject(PorStatus.CNTR_HIGH, f"CNTR {received} is not {stored} + 1")
    step = entry.max_counter_step
    if mode is CounterMode.HIGHER and step is not None and received - stored > step:
        raise reject(PorStatus.CNTR_HIGH, f"CNTR {received} more than {step} above {stored}")
    return received


# -- Proof of Receipt ----------------------------------------------------------------------------


def seal_response(
    *,
    spi: Spi,
    kic: KeyRef,
    kid: KeyRef,
    tar: bytes,
    counter: int,
    status: int,
    data: bytes = b"",
    keys: OtaKeys = OtaKeys(),
    cc_length: int = 8,
    udh: bytes = RESPONSE_UDH,
) -> ResponsePacket:
    """Builds a response packet secured as the command's SPI byte 2 asks, with the command's
    KIc / KID. `udh` is the SMS user data header the RC/CC covers (empty for bearers without
    one). Raises ValueError for algorithms or keys it cannot use."""
    n = _check_length(spi.por_integrity, kid, cc_length)
    padding = _padding(spi.por_ciphering, kic, keys.kic, 7 + n + len(data))
    content = ResponseContent(counter=counter, status=status, data=data, padding=padding)
    draft = ResponsePacket(tar=tar, check_length=n, sealed=bytes(7 + n + len(data) + len(padding)))
    covered = udh + draft.header + content.covered()
    check = _compute_check(spi.por_integrity, kid, keys.kid, covered, n)
    plain = ResponseContent(
        counter=counter, status=status, check=check, data=data, padding=padding
    ).encode()
    if spi.por_ciphering:
        plain = _crypto.encrypt(_cipher_of(kic, keys.kic), keys.kic, plain)
    return ResponsePacket(tar=tar, check_length=n, sealed=plain)


def unsecured_response(
    *, tar: bytes, counter: int, status: int, data: bytes = b""
) -> ResponsePacket:
    """A PoR without ciphering or RC/CC/DS, as status 06 requires (TS 102 225 §5.2, as
    pycrate's status table words it)."""
    content = ResponseContent(counter=counter, status=status, data=data)
    return ResponsePacket(tar=tar, check_length=0, sealed=content.encode())


def proof_of_receipt(
    accepted: AcceptedCommand,
    data: bytes = b"",
    status: int = PorStatus.POR_OK,
    udh: bytes = RESPONSE_UDH,
) -> ResponsePacket | None:
    """The PoR for an accepted command, or None when its SPI asks for none (or only on error
    and `status` is 00). CNTR echoes the command's."""
    packet = accepted.packet
    if not _por_wanted(packet.spi, status):
        return None
    aes_cc = packet.spi.integrity is Integrity.CC and packet.kid.cc is CcAlgorithm.AES_CMAC
    cc_length = packet.check_length if aes_cc else 8
    return seal_response(
        spi=packet.spi,
        kic=packet.kic,
        kid=packet.kid,
        tar=packet.tar,
        counter=accepted.content.counter,
        status=status,
        data=data,
        keys=accepted.keys,
        cc_length=cc_length,
        udh=udh,
    )


def rejection_receipt(error: CommandRejected) -> ResponsePacket | None:
    """The PoR for a refused command: unsecured, CNTR echoed when it could be read, else
    zero. None when the TAR could not be read or the SPI asks for no PoR. Sending error PoRs
    unsecured for every status (not only 06) is our choice [UNCONFIRMED]."""
    if error.tar is None:
        return None
    if error.spi is not None and not _por_wanted(error.spi, error.status):
        return None
    return unsecured_response(tar=error.tar, counter=error.counter or 0, status=error.status)


def _por_wanted(spi: Spi, status: int) -> bool:
    match spi.por:
        case PorRequest.ALWAYS:
            return True
        case PorRequest.ON_ERROR:
            return status != PorStatus.POR_OK
        case PorRequest.NONE | PorRequest.RESERVED:
            return False


def open_response(
    packet: ResponsePacket,
    *,
    spi: Spi,
    kic: KeyRef,
    kid: KeyRef,
    keys: OtaKeys = OtaKeys(),
    udh: bytes = RESPONSE_UDH,
) -> ResponseContent:
    """The sending entity's side: deciphers and checks a PoR against the SPI, KIc and KID of
    the command it answers. An unsecured PoR (RHL 10) is accepted when the SPI asked for
    RC/CC/DS only if its status is an error, since error PoRs may go out unsecured; an
    unsecured 00 is refused. Raises OtaError (05, 01, 06) describing what failed."""
    if packet.check_length == 0 and spi.por_integrity is not Integrity.NONE:
        try:
            content = ResponseContent.decode(packet.sealed, 0)
        except DecodeError as exc:
            raise OtaError(PorStatus.UNDEFINED_SECURITY_ERROR, exc.reason) from exc
        if content.status == PorStatus.POR_OK:
            raise OtaError(PorStatus.RC_CC_DS_FAILED, "PoR OK without the requested RC/CC/DS")
        return content
    plain = packet.sealed
    block = 1
    try:
        if spi.por_ciphering:
            algorithm = _cipher_of(kic, keys.kic)
            block = _crypto.block_size(algorithm)
            if not plain or len(plain) % block:
                raise OtaError(PorStatus.CIPHERING_ERROR, f"{len(plain)} enciphered bytes")
            plain = _crypto.decrypt(algorithm, keys.kic, plain)
        n = _check_length(spi.por_integrity, kid, packet.check_length)
    except ValueError as exc:
        raise OtaError(PorStatus.UNDEFINED_SECURITY_ERROR, str(exc)) from exc
    if n != packet.check_length:
        raise OtaError(PorStatus.UNDEFINED_SECURITY_ERROR, "RHL does not match the SPI")
    if len(plain) < 7 + n:
        raise OtaError(PorStatus.CIPHERING_ERROR, "deciphered response too short")
    covered = udh + packet.header + plain[0:7] + plain[7 + n :]
    try:
        expected = _compute_check(spi.por_integrity, kid, keys.kid, covered, n)
    except ValueError as exc:
        raise OtaError(PorStatus.UNDEFINED_SECURITY_ERROR, str(exc)) from exc
    if not hmac.compare_digest(expected, plain[7 : 7 + n]):
        raise OtaError(PorStatus.RC_CC_DS_FAILED, f"PoR {spi.por_integrity.name} mismatch")
    if spi.por_ciphering and plain[5] >= block:
        raise OtaError(PorStatus.CIPHERING_ERROR, f"PCNTR {plain[5]} not below block {block}")
    try:
        return ResponseContent.decode(plain, n)
    except DecodeError as exc:
        raise OtaError(PorStatus.CIPHERING_ERROR, exc.reason) from exc
