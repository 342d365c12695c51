"""How the remote administration server's secured command packets reach a card: as SMS-PP
data download messages (3GPP TS 31.115 over TS 23.040), TP-PID 7F, TP-DCS F6 (8-bit data,
class 2), the packet behind the command packet identifier (UDH IEI 70).

The server seals the packet (`ras.trigger.build_trigger`); an `SmsSender` delivers it to the
card's MSISDN:

- `LocalTerminalSender` builds the SMS-DELIVER itself and POSTs it to the terminal's local
  entry point (`aio/smsc_local.py`): the embedded set-up, where the "network" is one gateway.
  The card's answer (PoR or not) comes straight back.
- `SmppSender` submits it to an SMSC over SMPP 3.4 (`smpplib`, blocking, run in a thread):
  esm_class 40 (UDHI), protocol_id 7F, data_coding F6. The SMSC's answer is only "accepted".

A packet that does not fit one SMS (140 octets of TP-UD less the 3-octet header) is split over
concatenated messages (TS 23.040 §9.2.3.24.1, 8-bit reference): the first carries the
concatenation element followed by the command packet identifier, the others the
concatenation element alone (TS 31.115 §6.2). The packet's RC/CC does not cover the header
(see `ota.packet`), so splitting never changes it."""

from __future__ import annotations

import asyncio
import secrets
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final, Protocol

import smpplib.client  # type: ignore[import-untyped]
import smpplib.consts  # type: ignore[import-untyped]
import smpplib.exceptions  # type: ignore[import-untyped]
import smpplib.smpp  # type: ignore[import-untyped]

from openscws.errors import OpenScwsError
from openscws.ota.sms import (
    COMMAND_HEADER,
    DCS_DATA_CLASS2,
    MAX_USER_DATA,
    PID_SIM_DATA_DOWNLOAD,
    Iei,
    InformationElement,
    ServiceCentreTimeStamp,
    SmsAddress,
    SmsDeliver,
    UserDataHeader,
)

__all__ = [
    "ESM_CLASS_UDHI",
    "SMS_MEDIA_TYPE",
    "DeliveryStatus",
    "LocalTerminalSender",
    "SendError",
    "SendResult",
    "SmppError",
    "SmppSender",
    "SmsSender",
    "command_parts",
    "smpp_status_name",
]

SMS_MEDIA_TYPE: Final = "application/vnd.3gpp.sms"
ESM_CLASS_UDHI: Final = 0x40
"""SMPP 3.4 §5.2.12: GSM feature "UDHI indicator" (the short_message starts with a UDH)."""
MAX_PARTS: Final = 255
"""TS 23.040 §9.2.3.24.1: the concatenation element counts parts in one octet."""


class DeliveryStatus(StrEnum):
    SUBMITTED = "submitted"
    """An SMSC accepted it; what the card makes of it is not known here."""
    DELIVERED = "delivered"
    """The card took it (90 00), no PoR."""
    POR = "por"
    """The card took it and answered: `SendResult.por` holds the PoR user data."""
    BUSY = "busy"
    """The card's toolkit stayed busy (93 00): send again later."""
    ERROR = "error"
    """The card refused it (`SendResult.por` holds its response data, if any)."""


@dataclass(frozen=True, slots=True)
class SendResult:
    status: DeliveryStatus
    parts: int
    """How many SMS carried the packet."""
    por: bytes = b""
    message_ids: tuple[str, ...] = ()
    """SMSC message ids, one per part (SMPP)."""
    pap_code: int | None = None
    """SIP push: the PAP result code of the push (1000: delivered)."""


class SendError(OpenScwsError):
    """The SMS could not be handed on (no connection, a refusal, a card that is gone)."""

    pap_code: int | None = None
    """SIP push: the PAP code the PPG gave for the push (refused or not delivered)."""


class SmppError(SendError):
    """The SMSC answered a PDU with an error `command_status` (SMPP 3.4 §5.1.3); `name` is
    its ESME_R... name."""

    def __init__(self, command: str, command_status: int) -> None:
        self.command = command
        self.command_status = command_status
        self.name = smpp_status_name(command_status)
        super().__init__(f"{command}: {self.name} (0x{command_status:08X})")


class SmsSender(Protocol):
    async def send(self, msisdn: str, packet: bytes) -> SendResult:
        """Delivers the secured command `packet` (CPL to the end) to the card of `msisdn`.
        Raises SendError when it could not be handed on."""
        ...


def smpp_status_name(status: int) -> str:
    return _STATUS_NAMES.get(status, f"ESME_0x{status:08X}")


_STATUS_NAMES: Final[dict[int, str]] = {
    int(value): name.removeprefix("SMPP_")
    for name, value in vars(smpplib.consts).items()
    if name.startswith("SMPP_ESME_")
}


def command_parts(packet: bytes, reference: int) -> list[tuple[UserDataHeader, bytes]]:
    """The (header, payload) of each SMS carrying `packet`: one with `02 70 00` when it fits,
    else concatenated parts numbered under the 8-bit `reference`."""
    if len(COMMAND_HEADER.encode()) + len(packet) <= MAX_USER_DATA:
        return [(COMMAND_HEADER, packet)]
    concat_head = len(UserDataHeader((_concat(0, 1, 1),)).encode())
    first_room = MAX_USER_DATA - concat_head - 2  # 70 00 as well
    room = MAX_USER_DATA - concat_head
    chunks = [packet[:first_room]]
    chunks += [packet[i : i + room] for i in range(first_room, len(packet), room)]
    if len(chunks) > MAX_PARTS:
        raise ValueError(f"a packet of {len(packet)} bytes needs more than {MAX_PARTS} SMS")
    total = len(chunks)
    parts: list[tuple[UserDataHeader, bytes]] = []
    for i, chunk in enumerate(chunks, 1):
        elements = [_concat(reference, total, i)]
        if i == 1:
            elements.append(InformationElement(Iei.COMMAND_PACKET))
        parts.append((UserDataHeader(tuple(elements)), chunk))
    return parts


def _concat(reference: int, total: int, sequence: int) -> InformationElement:
    return InformationElement(Iei.CONCATENATED_8BIT, bytes((reference & 0xFF, total, sequence)))


class _References:
    """8-bit concatenation references, a different one per long message (random start)."""

    def __init__(self) -> None:
        self._next = secrets.randbelow(256)

    def take(self) -> int:
        value = self._next
        self._next = (value + 1) & 0xFF
        return value


# -- the terminal's local entry point -------------------------------------------------------------


class LocalTerminalSender:
    """POSTs each SMS-DELIVER to the gateway's `POST /sms?msisdn=<MSISDN>`
    (`aio/smsc_local.py`), which routes it to the card of that MSISDN (`openscws up --cards
    N`) or hands it to its one card. The result is the card's answer to the last part; a part
    the card does not take ends the sending."""

    def __init__(
        self,
        url: str,
        *,
        originating: str = "12345",
        originating_ton_npi: int = 0x81,
        timeout: float = 30.0,
    ) -> None:
        self.url = url
        self.originating = SmsAddress.from_digits(originating, originating_ton_npi)
        self.timeout = timeout
        self._references = _References()

    def tpdus(self, packet: bytes, now: datetime | None = None) -> list[bytes]:
        """The SMS-DELIVER TPDUs that carry `packet`, stamped `now` (default: the clock)."""
        scts = ServiceCentreTimeStamp.from_datetime(
            (now or datetime.now(UTC)).replace(microsecond=0)
        )
        parts = command_parts(packet, self._references.take())
        return [
            SmsDeliver(
                originating=self.originating,
                scts=scts,
                header=header,
                user_data=payload,
                pid=PID_SIM_DATA_DOWNLOAD,
                dcs=DCS_DATA_CLASS2,
                more_messages=i < len(parts) - 1,
            ).encode()
            for i, (header, payload) in enumerate(parts)
        ]

    async def send(self, msisdn: str, packet: bytes) -> SendResult:
        tpdus = self.tpdus(packet)
        status, por = DeliveryStatus.ERROR, b""
        for tpdu in tpdus:
            status, por = await asyncio.to_thread(self._post, tpdu, msisdn)
            if status not in (DeliveryStatus.DELIVERED, DeliveryStatus.POR):
                break
        return SendResult(status, len(tpdus), por)

    def post_tpdu(self, tpdu: bytes, msisdn: str) -> tuple[DeliveryStatus, bytes]:
        """POSTs one ready SMS-DELIVER `tpdu` for `msisdn` (blocking): what the terminal
        made of it, and its answer. The DM server's Package #0 WAP push goes this way."""
        return self._post(tpdu, msisdn)

    def url_for(self, msisdn: str) -> str:
        """The URL an SMS for `msisdn` is POSTed to: `url` with `msisdn` in its query."""
        parts = urllib.parse.urlsplit(self.url)
        query = [q for q in urllib.parse.parse_qsl(parts.query) if q[0] != "msisdn"]
        if msisdn:
            query.append(("msisdn", msisdn))
        return parts._replace(query=urllib.parse.urlencode(query)).geturl()

    def _post(self, tpdu: bytes, msisdn: str = "") -> tuple[DeliveryStatus, bytes]:
        request = urllib.request.Request(
            self.url_for(msisdn), data=tpdu, method="POST", headers={"Content-Type": SMS_MEDIA_TYPE}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body: bytes = response.read()
                header = response.headers.get("X-SMS-Status", "")
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace").strip()
            e.close()
            raise SendError(f"{self.url} answered {e.code}: {detail}") from e
        except (urllib.error.URLError, OSError) as e:
            raise SendError(f"{self.url}: {e}") from e
        try:
            return DeliveryStatus(header), body
        except ValueError:
            raise SendError(f"{self.url} answered X-SMS-Status {header!r}") from None


# -- SMPP ---------------------------------------------------------------------------------------


class SmppSender:
    """Submits over SMPP 3.4 as a transmitter: one session (bind, submit_sm per part, unbind)
    per packet, since triggers are rare. Addresses default to international ISDN."""

    def __init__(
        self,
        host: str,
        port: int,
        system_id: str,
        password: str,
        source_addr: str,
        *,
        system_type: str = "",
        source_addr_ton: int = 0x01,
        source_addr_npi: int = 0x01,
        dest_addr_ton: int = 0x01,
        dest_addr_npi: int = 0x01,
        registered_delivery: int = 0x00,
        timeout: float = 10.0,
    ) -> None:
        self.host = host
        self.port = port
        self.system_id = system_id
        self.password = password
        self.source_addr = source_addr
        self.system_type = system_type
        self.source_addr_ton = source_addr_ton
        self.source_addr_npi = source_addr_npi
        self.dest_addr_ton = dest_addr_ton
        self.dest_addr_npi = dest_addr_npi
        self.registered_delivery = registered_delivery
        self.timeout = timeout
        self._references = _References()

    def short_messages(self, packet: bytes) -> list[bytes]:
        """The short_message of each submit_sm: TP-UD, header included."""
        return [h.encode() + p for h, p in command_parts(packet, self._references.take())]

    async def send(self, msisdn: str, packet: bytes) -> SendResult:
        messages = self.short_messages(packet)
        ids = await asyncio.to_thread(self._session, msisdn.lstrip("+"), messages)
        return SendResult(DeliveryStatus.SUBMITTED, len(messages), message_ids=ids)

    def _session(self, destination: str, messages: list[bytes]) -> tuple[str, ...]:
        client = smpplib.client.Client(
            self.host, self.port, timeout=self.timeout, allow_unknown_opt_params=True
        )
        try:
            client.connect()
            client.bind_transmitter(
                system_id=self.system_id, password=self.password, system_type=self.system_type
            )
            ids = tuple(self._submit(client, destination, m) for m in messages)
            client.unbind()
            return ids
        except smpplib.exceptions.PDUError as e:
            args = e.args
            if len(args) > 1 and isinstance(args[1], int):
                raise SmppError(str(args[0]).split(":")[0].split()[-1], args[1]) from e
            raise SendError(f"SMPP: {e}") from e
        except (smpplib.exceptions.ConnectionError, OSError) as e:
            raise SendError(f"SMPP {self.host}:{self.port}: {e or 'connection lost'}") from e
        finally:
            client.disconnect()

    def _submit(self, client: Any, destination: str, message: bytes) -> str:
        client.send_message(
            source_addr_ton=self.source_addr_ton,
            source_addr_npi=self.source_addr_npi,
            source_addr=self.source_addr,
            dest_addr_ton=self.dest_addr_ton,
            dest_addr_npi=self.dest_addr_npi,
            destination_addr=destination,
            esm_class=ESM_CLASS_UDHI,
            protocol_id=PID_SIM_DATA_DOWNLOAD,
            data_coding=DCS_DATA_CLASS2,
            registered_delivery=self.registered_delivery,
            short_message=message,
        )
        while True:
            pdu = client.read_pdu()
            command = str(pdu.command)
            if command == "enquire_link":
                reply = smpplib.smpp.make_pdu("enquire_link_resp", client=client)
                reply.sequence = pdu.sequence
                client.send_pdu(reply)
                continue
            if int(pdu.status) != 0:
                raise SmppError(command, int(pdu.status))
            if command == "submit_sm_resp":
                message_id = pdu.message_id or b""
                if isinstance(message_id, bytes):
                    return message_id.decode("ascii", errors="replace")
                return str(message_id)
