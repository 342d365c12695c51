"""Package #0 over SMS, sans-IO: the WAP Push that carries a DM notification to the terminal
(OMA-TS-DM_Notification V1.2 §6.3.1), declared once for both directions.

    SMS-DELIVER (3GPP TS 23.040 §9.2.2.1), TP-PID 00, TP-DCS 8-bit data, TP-UDHI set
    UDH   IE 05 (application port addressing, 16 bit, §9.2.3.24.4): destination port 2948
          (WAP connectionless push, WAP-259-WDP), originator port 9200
    WSP   connectionless Push PDU (WAP-230-WSP §8.2.4.1):
          TID, PDU type 06 (Push), HeadersLen (uintvar),
          Content-Type 0xC4 (short integer 0x44: application/vnd.syncml.notification),
          X-Wap-Application-Id (header 0x2F -> 0xAF) = 0x87 (application id 0x07, syncml.dm)
    data  the Package #0 (openscws.dm.notification)

`package0_of` recognises such an SMS and gives the Package #0; any other SMS gives None, so it
goes on to the card as before (SMS-PP data download). A WAP push for port 2948 whose WSP part
does not parse raises `DecodeError`. One SMS only: a Package #0 longer than one SMS's user data
allows (a server identifier over about 90 bytes) would need concatenated SMS, not done here."""

from __future__ import annotations

from typing import Final

from openscws.errors import DecodeError
from openscws.ota.sms import (
    InformationElement,
    ServiceCentreTimeStamp,
    SmsAddress,
    SmsDeliver,
    UserDataHeader,
)

__all__ = ["package0_of", "package0_sms"]

IE_PORTS_16: Final = 0x05
WAP_PUSH_PORT: Final = 2948
WSP_PORT: Final = 9200
PDU_PUSH: Final = 0x06
CONTENT_TYPE_CODE: Final = 0x44  # application/vnd.syncml.notification (OMNA WSP registry)
CONTENT_TYPE_TEXT: Final = b"application/vnd.syncml.notification"
HEADER_APP_ID: Final = 0x2F  # X-Wap-Application-Id (WAP-230-WSP Table 39)
APP_ID_DM: Final = 0x07  # x-wap-application:syncml.dm (OMNA push application ids)
APP_ID_DM_TEXT: Final = b"x-wap-application:syncml.dm"
DCS_8BIT: Final = 0x04
PID_NORMAL: Final = 0x00


def _uintvar(value: int) -> bytes:
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def package0_sms(
    package0: bytes,
    *,
    originating: str = "12345",
    scts: ServiceCentreTimeStamp | None = None,
    tid: int = 0,
) -> bytes:
    """The SMS-DELIVER TPDU that pushes `package0` to the terminal's DM client."""
    headers = bytes((0x80 | CONTENT_TYPE_CODE, 0x80 | HEADER_APP_ID, 0x80 | APP_ID_DM))
    wsp = bytes((tid & 0xFF, PDU_PUSH)) + _uintvar(len(headers)) + headers + package0
    ports = WAP_PUSH_PORT.to_bytes(2, "big") + WSP_PORT.to_bytes(2, "big")
    sms = SmsDeliver(
        originating=SmsAddress.from_digits(originating),
        scts=scts or ServiceCentreTimeStamp(bytes(7)),
        user_data=wsp,
        header=UserDataHeader((InformationElement(IE_PORTS_16, ports),)),
        pid=PID_NORMAL,
        dcs=DCS_8BIT,
    )
    return sms.encode()


def _dest_port(header: UserDataHeader | None) -> int | None:
    for e in header.elements if header else ():
        if e.iei == IE_PORTS_16 and len(e.data) == 4:
            return int.from_bytes(e.data[:2], "big")
    return None


def _read_uintvar(data: bytes, i: int) -> tuple[int, int]:
    value = 0
    for n in range(5):
        if i + n >= len(data):
            break
        b = data[i + n]
        value = (value << 7) | (b & 0x7F)
        if not b & 0x80:
            return value, i + n + 1
    raise DecodeError("WSP: bad uintvar", data, i)


def package0_of(tpdu: bytes) -> bytes | None:
    """The Package #0 an SMS-DELIVER carries as a DM WAP Push, or None for any other SMS."""
    try:
        sms = SmsDeliver.decode(tpdu)
    except (DecodeError, ValueError):
        return None  # not ours to judge: the card's SMS path answers it
    if _dest_port(sms.header) != WAP_PUSH_PORT:
        return None
    data = sms.user_data
    if len(data) < 3 or data[1] != PDU_PUSH:
        raise DecodeError("WAP push: not a WSP Push PDU", data, 1)
    length, i = _read_uintvar(data, 2)
    end = i + length
    if end > len(data) or length == 0:
        raise DecodeError("WSP: headers run past the PDU", data, i)
    head = data[i:end]
    if head[0] == 0x80 | CONTENT_TYPE_CODE:
        rest = head[1:]
    elif head.startswith(CONTENT_TYPE_TEXT + b"\x00"):
        rest = head[len(CONTENT_TYPE_TEXT) + 1 :]
    else:
        return None  # another content type on the push port (e.g. a service indication)
    app_ids = (bytes((0x80 | HEADER_APP_ID, 0x80 | APP_ID_DM)),
               bytes((0x80 | HEADER_APP_ID,)) + APP_ID_DM_TEXT + b"\x00")  # fmt: skip
    if not any(a in rest for a in app_ids):
        return None  # a push for another application
    return data[end:]
