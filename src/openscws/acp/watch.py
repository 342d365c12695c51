"""Spots the end of a remote administration session in the CAT traffic the terminal carries
(sans-IO), so the gateway reads the access rules again at once after one.

A session is a channel the card opens in client mode (OPEN CHANNEL, ETSI TS 102 223 §6.4.27,
whose UICC/terminal interface transport level, §8.59, is not "TCP, UICC in server mode"); the
terminal's TERMINAL RESPONSE names its channel (Channel status, §8.56); the session is over when
the card sends CLOSE CHANNEL (§6.4.28) for that channel (device identity 21-27, §8.7)."""

from __future__ import annotations

from typing import Final

from openscws.codec.tlv import pull_comprehension_tlvs, pull_length
from openscws.errors import DecodeError

__all__ = ["AdminWatch"]

_FETCH: Final = 0x12
_TERMINAL_RESPONSE: Final = 0x14
_OPEN_CHANNEL: Final = 0x40
_CLOSE_CHANNEL: Final = 0x41
_TAG_DEVICE_IDENTITIES: Final = 0x02
_TAG_CHANNEL_STATUS: Final = 0x38
_TAG_TRANSPORT_LEVEL: Final = 0x3C
_SERVER_MODE: Final = 0x03


class AdminWatch:
    def __init__(self) -> None:
        self._opening = False
        self.client_channels: set[int] = set()

    def exchange(self, apdu: bytes, response: bytes) -> bool:
        """Looks at one APDU exchange; True when it ended an administration session."""
        if len(apdu) < 5 or apdu[0] != 0x80:
            return False
        try:
            if apdu[1] == _FETCH and len(response) > 8 and response[0] == 0xD0:
                # The command details come first (§6.6): 81 03 number type qualifier. Only
                # OPEN and CLOSE CHANNEL matter; every transfer's FETCH stops here.
                i = 2 if response[1] < 0x80 else 3
                kind = response[i + 3] if response[i] & 0x7F == 0x01 else None
                if kind == _OPEN_CHANNEL or (kind == _CLOSE_CHANNEL and self.client_channels):
                    return self._command(response[:-2])
                return False
            if apdu[1] == _TERMINAL_RESPONSE and self._opening:
                self._opening = False
                for tlv in pull_comprehension_tlvs(apdu, 5):
                    if tlv.tag == _TAG_CHANNEL_STATUS and tlv.value:
                        self.client_channels.add(tlv.value[0] & 0x07)
        except DecodeError:
            return False
        return False

    def _command(self, data: bytes) -> bool:
        _, start = pull_length(data, 1)
        tlvs = pull_comprehension_tlvs(data, start)
        if not tlvs or len(tlvs[0].value) != 3:
            return False
        kind = tlvs[0].value[1]
        if kind == _OPEN_CHANNEL:
            server = any(
                t.tag == _TAG_TRANSPORT_LEVEL and t.value[:1] == bytes((_SERVER_MODE,))
                for t in tlvs
            )
            self._opening = not server
        elif kind == _CLOSE_CHANNEL:
            for t in tlvs:
                if t.tag == _TAG_DEVICE_IDENTITIES and len(t.value) == 2:
                    channel = t.value[1] - 0x20
                    if channel in self.client_channels:
                        self.client_channels.discard(channel)
                        return True
        return False
