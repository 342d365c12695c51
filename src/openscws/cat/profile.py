"""TERMINAL PROFILE (ETSI TS 102 223 §5.2): which toolkit features the terminal supports.

Each feature is declared once as (byte number from 1, bit mask); the profile is their union."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Feature(Enum):
    """(byte, mask) of each feature used here. Byte numbers count from 1 as in §5.2."""

    PROFILE_DOWNLOAD = (1, 0x01)
    SMS_PP_DATA_DOWNLOAD = (1, 0x02)
    SMS_PP_DATA_DOWNLOAD_SUPPORTED = (1, 0x10)
    COMMAND_RESULT = (2, 0x01)
    MORE_TIME = (3, 0x08)
    POLL_INTERVAL = (3, 0x20)
    POLLING_OFF = (3, 0x40)
    SET_UP_EVENT_LIST = (5, 0x01)
    EVENT_DATA_AVAILABLE = (6, 0x04)
    EVENT_CHANNEL_STATUS = (6, 0x08)
    OPEN_CHANNEL = (12, 0x01)
    CLOSE_CHANNEL = (12, 0x02)
    RECEIVE_DATA = (12, 0x04)
    SEND_DATA = (12, 0x08)
    GET_CHANNEL_STATUS = (12, 0x10)
    BEARER_CSD = (13, 0x01)
    BEARER_GPRS = (13, 0x02)
    TCP_CLIENT_REMOTE = (17, 0x01)
    UDP_CLIENT_REMOTE = (17, 0x02)
    TCP_SERVER = (17, 0x04)
    TCP_CLIENT_LOCAL = (17, 0x08)
    UDP_CLIENT_LOCAL = (17, 0x10)
    DIRECT_CHANNEL = (17, 0x20)


CHANNEL_COUNT_BYTE = 13
"""Byte 13 b8..b6: number of channels supported (0..7)."""


@dataclass(frozen=True, slots=True)
class TerminalProfile:
    features: frozenset[Feature]
    channels: int = 0
    """Number of BIP channels the terminal supports (0..7)."""
    raw: bytes = b""
    """The profile as received, when decoded; unknown bits stay readable here."""

    def has(self, feature: Feature) -> bool:
        return feature in self.features

    def encode(self, length: int = 17) -> bytes:
        out = bytearray(max(length, CHANNEL_COUNT_BYTE))
        for f in self.features:
            byte, mask = f.value
            out[byte - 1] |= mask
        out[CHANNEL_COUNT_BYTE - 1] |= (self.channels & 0x07) << 5
        return bytes(out)

    @classmethod
    def decode(cls, raw: bytes) -> TerminalProfile:
        found = frozenset(
            f for f in Feature if f.value[0] <= len(raw) and raw[f.value[0] - 1] & f.value[1]
        )
        channels = raw[CHANNEL_COUNT_BYTE - 1] >> 5 if len(raw) >= CHANNEL_COUNT_BYTE else 0
        return cls(found, channels, raw)

    @property
    def bip_server(self) -> bool:
        """Everything an SCWS needs: UICC server mode and the five BIP commands and both events."""
        needed = {
            Feature.OPEN_CHANNEL,
            Feature.CLOSE_CHANNEL,
            Feature.RECEIVE_DATA,
            Feature.SEND_DATA,
            Feature.TCP_SERVER,
            Feature.SET_UP_EVENT_LIST,
            Feature.EVENT_DATA_AVAILABLE,
            Feature.EVENT_CHANNEL_STATUS,
        }
        return needed <= self.features and self.channels > 0


GATEWAY_PROFILE = TerminalProfile(
    frozenset(
        {
            Feature.PROFILE_DOWNLOAD,
            Feature.SMS_PP_DATA_DOWNLOAD,
            Feature.SMS_PP_DATA_DOWNLOAD_SUPPORTED,
            Feature.COMMAND_RESULT,
            Feature.MORE_TIME,
            Feature.POLL_INTERVAL,
            Feature.POLLING_OFF,
            Feature.SET_UP_EVENT_LIST,
            Feature.EVENT_DATA_AVAILABLE,
            Feature.EVENT_CHANNEL_STATUS,
            Feature.OPEN_CHANNEL,
            Feature.CLOSE_CHANNEL,
            Feature.RECEIVE_DATA,
            Feature.SEND_DATA,
            Feature.GET_CHANNEL_STATUS,
            Feature.BEARER_GPRS,
            Feature.TCP_CLIENT_REMOTE,
            Feature.TCP_SERVER,
        }
    ),
    channels=7,
)
"""What openscws's terminal advertises: BIP with UICC server and client modes, 7 channels."""
