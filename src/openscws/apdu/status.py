"""Status words (ETSI TS 102 221 §10.2, ISO 7816-4 §5.6)."""

from __future__ import annotations

from enum import IntEnum


class SW(IntEnum):
    OK = 0x9000
    """Normal ending of the command."""
    PROACTIVE_PENDING = 0x9100
    """91 XX: normal ending, XX bytes of proactive command pending (low byte is the length)."""
    TOOLKIT_BUSY = 0x9300
    """SIM Application Toolkit busy: the ENVELOPE cannot run now; retry later."""
    AUTHENTICATION_MAC_FAILURE = 0x9862
    """TS 31.102 §7.3: AUTHENTICATE refused, the network's MAC (in AUTN) is wrong."""
    SECURITY_CONTEXT_NOT_SUPPORTED = 0x9864
    """TS 31.102 §7.3: AUTHENTICATE in a security context this USIM does not support."""
    SECURITY_STATUS_NOT_SATISFIED = 0x6982
    WRONG_LENGTH = 0x6700
    WRONG_DATA = 0x6A80
    FILE_NOT_FOUND = 0x6A82
    INCORRECT_P1P2 = 0x6A86
    REFERENCED_DATA_NOT_FOUND = 0x6A88
    WRONG_P1P2 = 0x6B00
    CONDITIONS_NOT_SATISFIED = 0x6985
    COMMAND_NOT_ALLOWED_NO_EF = 0x6986
    INS_NOT_SUPPORTED = 0x6D00
    CLA_NOT_SUPPORTED = 0x6E00
    TECHNICAL_PROBLEM = 0x6F00
    LOGICAL_CHANNEL_NOT_SUPPORTED = 0x6881
    """ISO 7816-4 §5.6: a command on a logical channel that is not open."""
    FUNCTION_NOT_SUPPORTED = 0x6A81
    """ISO 7816-4 §5.6: e.g. MANAGE CHANNEL open when no channel is free."""
    RULES_CHANGED = 0x6A84
    """GPD_SPE_013 §4.1: the access rules changed while being read; read them again."""


def describe(sw: int) -> str:
    """A short human reading of a status word, for traces."""
    hi = sw >> 8
    if hi == 0x91:
        return f"OK, proactive command of {sw & 0xFF} bytes pending"
    if hi == 0x61:
        return f"{sw & 0xFF} response bytes available"
    if hi == 0x6C:
        return f"wrong Le, use {sw & 0xFF}"
    try:
        return SW(sw).name.replace("_", " ").lower()
    except ValueError:
        return "unknown status"
