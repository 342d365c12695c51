"""Garbage in gives the layer's typed error, never another exception (h11 fuzz/afl-server.py),
for every OTA decoder; what decodes re-encodes to the same bytes (or, where the codec
canonicalises, to something that decodes to the same object)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openscws.cat.envelopes import SmsPpDownload, decode_envelope
from openscws.cat.objects import (
    AddressType,
    BearerDescription,
    BufferSize,
    OtherAddress,
    TextString,
    TransportLevel,
)
from openscws.errors import DecodeError, OpenScwsError, OtaError
from openscws.ota.packet import (
    COUNTER_MAX,
    CommandContent,
    CommandPacket,
    CommandRejected,
    MinimumSecurityLevel,
    OtaKeys,
    ResponseContent,
    ResponsePacket,
    TarSecurity,
    check_command,
    open_response,
    proof_of_receipt,
    rejection_receipt,
    seal_command,
    seal_response,
)
from openscws.ota.sms import (
    ServiceCentreTimeStamp,
    SmsDeliver,
    UserDataHeader,
    command_packet_of,
    response_packet_of,
)
from openscws.ota.spi import CounterMode, Integrity, KeyRef, PorRequest, Spi
from openscws.ota.trigger import (
    ConnectionParameters,
    DnsResolutionParameters,
    HttpPostParameters,
    RetryPolicy,
    SecurityParameters,
    SessionParameters,
    TriggerParameters,
)

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TAR = bytes.fromhex("B00010")
KEY16 = bytes(range(16))
KEY24 = bytes(range(24))
STRICT_TAR = bytes.fromhex("000000")
TABLE = {
    TAR: TarSecurity(
        kic_keys={1: KEY16, 2: KEY16, 3: KEY24},
        kid_keys={1: KEY16, 2: KEY16, 3: KEY24},
        counter=100,
        max_counter_step=1000,
    ),
    # blocked counter, and CC + ciphering + counter required
    STRICT_TAR: TarSecurity(
        kic_keys={1: KEY16, 2: KEY16, 3: KEY24},
        kid_keys={1: KEY16, 2: KEY16, 3: KEY24},
        counter=COUNTER_MAX,
        minimum=MinimumSecurityLevel(
            integrity=Integrity.CC, ciphering=True, counter=CounterMode.HIGHER
        ),
    ),
}
# (KIc/KID byte, key) pairs the table holds: 3DES 2-key, AES-128, 3DES 3-key
KEY_REFS = [(0x15, KEY16), (0x22, KEY16), (0x39, KEY24)]

spis = st.builds(
    Spi,
    integrity=st.sampled_from([Integrity.NONE, Integrity.RC, Integrity.CC]),
    ciphering=st.booleans(),
    counter=st.sampled_from(list(CounterMode)),
    por=st.sampled_from(list(PorRequest)),
    por_integrity=st.sampled_from([Integrity.NONE, Integrity.CC]),
    por_ciphering=st.booleans(),
    por_via_submit=st.booleans(),
)


@st.composite
def valid_packets(draw: st.DrawFn) -> bytes:
    spi = draw(spis)
    ref, key = draw(st.sampled_from(KEY_REFS))
    kid = KeyRef.from_byte(ref)
    if spi.integrity is Integrity.RC:
        kid = KeyRef(kid.key_version, draw(st.sampled_from([0x1, 0x5])))
        if spi.por_integrity is Integrity.CC:
            spi = replace(spi, por_integrity=Integrity.NONE)
    return seal_command(
        spi=spi,
        kic=KeyRef.from_byte(ref),
        kid=kid,
        tar=draw(st.sampled_from([TAR, STRICT_TAR, bytes.fromhex("B00011")])),
        counter=draw(st.integers(0, 2000)),
        data=draw(st.binary(max_size=40)),
        keys=OtaKeys(key, key),
        cc_length=draw(st.sampled_from([4, 8])) if ref == 0x22 else 8,
    ).encode()


@st.composite
def mutated(draw: st.DrawFn, source: st.SearchStrategy[bytes]) -> bytes:
    raw = bytearray(draw(source))
    match draw(st.sampled_from(["flip", "cut", "grow", "none"])):
        case "flip" if raw:
            i = draw(st.integers(0, len(raw) - 1))
            raw[i] ^= draw(st.integers(1, 255))
        case "cut" if raw:
            del raw[draw(st.integers(0, len(raw) - 1)) :]
        case "grow":
            raw += draw(st.binary(min_size=1, max_size=8))
    return bytes(raw)


packets = st.one_of(st.binary(max_size=80), valid_packets(), mutated(valid_packets()))


@FUZZ
@given(st.binary(max_size=4))
def test_spi(raw: bytes) -> None:
    try:
        spi = Spi.decode(raw)
    except DecodeError:
        return
    assert spi.encode() == raw


@FUZZ
@given(packets)
def test_command_packet_decode(raw: bytes) -> None:
    try:
        packet = CommandPacket.decode(raw)
    except DecodeError:
        return
    assert packet.encode() == raw


@FUZZ
@given(st.binary(max_size=40), st.integers(0, 12))
def test_contents(raw: bytes, n: int) -> None:
    for kind in (CommandContent, ResponseContent):
        try:
            content = kind.decode(raw, n)
        except DecodeError:
            continue
        assert content.encode() == raw


@FUZZ
@given(packets)
def test_check_command(raw: bytes) -> None:
    try:
        accepted = check_command(raw, TABLE)
    except CommandRejected as err:
        _check_rejection(err)
        return
    assert accepted.packet.encode() == raw
    por = proof_of_receipt(accepted, data=b"\x01\x90\x00")
    if por is not None:
        packet = accepted.packet
        content = open_response(
            por, spi=packet.spi, kic=packet.kic, kid=packet.kid, keys=accepted.keys
        )
        assert content.counter == accepted.content.counter


def _check_rejection(err: CommandRejected) -> None:
    assert 0x01 <= err.status <= 0x0A
    receipt = rejection_receipt(err)
    if receipt is not None:
        assert ResponsePacket.decode(receipt.encode()) == receipt


@st.composite
def responses(draw: st.DrawFn) -> tuple[bytes, Spi, int, int]:
    spi = Spi(
        por=PorRequest.ALWAYS,
        por_integrity=draw(st.sampled_from([Integrity.NONE, Integrity.RC, Integrity.CC])),
        por_ciphering=draw(st.booleans()),
    )
    kic, key = draw(st.sampled_from(KEY_REFS))
    kid = (kic & 0xF0) | 0x5 if spi.por_integrity is Integrity.RC else kic
    packet = seal_response(
        spi=spi,
        kic=KeyRef.from_byte(kic),
        kid=KeyRef.from_byte(kid),
        tar=TAR,
        counter=draw(st.integers(0, 2000)),
        status=draw(st.integers(0, 12)),
        data=draw(st.binary(max_size=30)),
        keys=OtaKeys(key, key),
    )
    raw = bytearray(packet.encode())
    if draw(st.booleans()) and raw:
        raw[draw(st.integers(0, len(raw) - 1))] ^= draw(st.integers(1, 255))
    return bytes(raw), spi, kic, kid


@FUZZ
@given(
    st.one_of(
        responses(),
        st.tuples(st.binary(max_size=60), spis, st.just(0x15), st.sampled_from([0x15, 0x11])),
    )
)
def test_open_response(case: tuple[bytes, Spi, int, int]) -> None:
    raw, spi, kic, kid = case
    key = KEY24 if kic >> 4 == 3 else KEY16
    try:
        packet = ResponsePacket.decode(raw)
    except DecodeError:
        return
    assert packet.encode() == raw
    try:
        content = open_response(
            packet,
            spi=spi,
            kic=KeyRef.from_byte(kic),
            kid=KeyRef.from_byte(kid),
            keys=OtaKeys(key, key),
        )
    except OtaError:
        return
    assert 0 <= content.status <= 0xFF


trigger_tags = st.sampled_from(
    [0x81, 0x83, 0x84, 0x85, 0xA5, 0x86, 0x89, 0x8A, 0x8B, 0x8C, 0xB3, 0xD6, 0xFA, 0x9F, 0x35]
)


def _tlv(tag: int, value: bytes) -> bytes:
    value = value[:255]
    head = bytes((tag, len(value))) if len(value) < 0x80 else bytes((tag, 0x81, len(value)))
    return head + value


tlv_trees = st.recursive(
    st.binary(max_size=12),
    lambda children: st.lists(st.builds(_tlv, trigger_tags, children), min_size=1, max_size=4).map(
        b"".join
    ),
    max_leaves=12,
)
texts = st.one_of(st.none(), st.text(max_size=6))  # keeps every value under 256 bytes
connections = st.builds(
    ConnectionParameters,
    bearer=st.one_of(
        st.none(), st.builds(BearerDescription, st.integers(0, 255), st.binary(max_size=3))
    ),
    buffer_size=st.one_of(st.none(), st.builds(BufferSize, st.integers(0, 0xFFFF))),
    transport=st.one_of(
        st.none(), st.builds(TransportLevel, st.integers(0, 255), st.integers(0, 0xFFFF))
    ),
    destination=st.one_of(
        st.none(),
        st.builds(OtherAddress, st.just(AddressType.IPV4), st.binary(min_size=4, max_size=4)),
    ),
    login=st.one_of(st.none(), st.builds(TextString, st.just(4), st.binary(max_size=6))),
    cr=st.frozensets(st.sampled_from([0x35, 0x39, 0x3C, 0x3E, 0x0D])),
)
sessions = st.builds(
    SessionParameters,
    connection=st.one_of(st.none(), connections),
    security=st.one_of(
        st.none(),
        st.builds(
            SecurityParameters,
            psk_identity=st.binary(max_size=16),
            key_version=st.integers(0, 255),
            key_id=st.integers(0, 255),
            hash_type=st.one_of(st.none(), st.integers(0, 255)),
        ),
    ),
    extended_security=st.one_of(st.none(), st.binary(max_size=4)),
    retry=st.one_of(
        st.none(), st.builds(RetryPolicy.with_delay, st.integers(0, 0xFFFF), st.integers(0, 3600))
    ),
    http_post=st.one_of(
        st.none(), st.builds(HttpPostParameters, host=texts, agent_id=texts, uri=texts)
    ),
)
typed_triggers = st.builds(
    TriggerParameters,
    session=sessions,
    dns=st.one_of(
        st.none(),
        st.builds(
            DnsResolutionParameters,
            ras_fqdn=st.one_of(st.none(), st.binary(max_size=8)),
            connection=st.one_of(st.none(), connections),
        ),
    ),
).map(lambda t: t.encode())

triggers = st.one_of(
    st.binary(max_size=60),
    typed_triggers,
    mutated(typed_triggers),
    tlv_trees,
    tlv_trees.map(lambda v: _tlv(0x81, v)),
    st.just(bytes.fromhex("8148834684133501033902")),
)


@FUZZ
@given(triggers)
def test_trigger_decode(raw: bytes) -> None:
    try:
        trigger = TriggerParameters.decode(raw)
    except DecodeError:
        return
    assert TriggerParameters.decode(trigger.encode()) == trigger


@st.composite
def tpdus(draw: st.DrawFn) -> bytes:
    digits = draw(st.text(alphabet="0123456789", max_size=20))
    address = bytes((len(digits), 0x91)) + bytes.fromhex(
        "".join(a + b for b, a in zip(*[iter(digits + "F" * (len(digits) % 2))] * 2, strict=True))
    )
    ud = draw(st.binary(max_size=140))
    first = draw(st.integers(0, 255)) & 0xFC
    dcs = draw(st.sampled_from([0xF6, 0x16, 0x00, 0x04, 0xE0, 0xC0]))
    return (
        bytes((first,))
        + address
        + bytes((0x7F, dcs))
        + draw(st.binary(min_size=7, max_size=7))
        + bytes((len(ud),))
        + ud
    )


@FUZZ
@given(st.one_of(st.binary(max_size=60), tpdus(), mutated(tpdus())))
def test_sms_deliver(raw: bytes) -> None:
    try:
        sms = SmsDeliver.decode(raw)
    except DecodeError:
        return
    assert sms.encode() == raw
    try:
        packet = command_packet_of(sms)
    except DecodeError:
        return
    assert packet.encode() == sms.user_data


@FUZZ
@given(st.binary(max_size=40))
def test_user_data_header_and_por_user_data(raw: bytes) -> None:
    try:
        header, rest = UserDataHeader.pull(raw)
    except DecodeError:
        pass
    else:
        assert header.encode() + rest == raw
    try:
        udh, packet = response_packet_of(raw)
    except DecodeError:
        return
    assert udh + packet.encode() == raw


@FUZZ
@given(st.binary(min_size=7, max_size=7))
def test_time_stamps(raw: bytes) -> None:
    stamp = ServiceCentreTimeStamp(raw)
    try:
        when = stamp.to_datetime()
    except DecodeError:
        return
    assert ServiceCentreTimeStamp.from_datetime(when).to_datetime() == when


@FUZZ
@given(
    st.datetimes(
        min_value=datetime(2000, 1, 1),
        max_value=datetime(2099, 12, 31),
        timezones=st.builds(lambda q: timezone(timedelta(minutes=15 * q)), st.integers(-79, 79)),
    )
)
def test_time_stamp_round_trip(when: datetime) -> None:
    when = when.replace(microsecond=0)
    assert ServiceCentreTimeStamp.from_datetime(when).to_datetime() == when


@FUZZ
@given(
    st.one_of(
        st.binary(max_size=80),
        tpdus().map(
            lambda t: (
                bytes((0xD1, 4 + 2 + len(t), 0x82, 2, 0x83, 0x81, 0x8B, len(t))) + t
                if len(t) < 120
                else t
            )
        ),
    )
)
def test_envelope_to_packet_chain(raw: bytes) -> None:
    try:
        envelope = decode_envelope(raw)
        if not isinstance(envelope, SmsPpDownload):
            return
        command_packet_of(SmsDeliver.decode(envelope.tpdu.tpdu))
    except OpenScwsError:
        return
