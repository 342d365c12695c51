"""The vsmartcard "vpcd" socket protocol, sans-IO (vsmartcard vpcd.c / VirtualSmartcard.py).

Both directions carry frames of `uint16 length (big-endian) + payload`. From the reader (vpcd,
or openscws's gateway in its place) a 1-byte payload is a control code, anything longer a command
APDU; the card answers the APDU with the response APDU, and control code 04 with its ATR."""

from __future__ import annotations

from enum import IntEnum

from openscws.errors import DecodeError


class Control(IntEnum):
    POWER_OFF = 0x00
    POWER_ON = 0x01
    RESET = 0x02
    GET_ATR = 0x04


def frame(payload: bytes) -> bytes:
    if not 0 < len(payload) <= 0xFFFF:
        raise ValueError(f"vpcd payload of {len(payload)} bytes")
    return len(payload).to_bytes(2, "big") + payload


class Deframer:
    """Collects bytes and yields whole payloads."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        out: list[bytes] = []
        while len(self._buf) >= 2:
            n = (self._buf[0] << 8) | self._buf[1]
            if n == 0:
                raise DecodeError("vpcd frame of length 0", bytes(self._buf[:2]), 0)
            if len(self._buf) < 2 + n:
                break
            out.append(bytes(self._buf[2 : 2 + n]))
            del self._buf[: 2 + n]
        return out
