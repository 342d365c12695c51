"""The virtual UICC's APDU dispatcher (ETSI TS 102 221 §10-11).

`transmit` is the one entry point: command APDU bytes and the time in, response APDU bytes out.
Errors become status words here and nowhere else; nothing raises out of `transmit`: an
unexpected failure in the card (an application's bug) is answered `6F 00` and logged."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from openscws.apdu.command import CommandApdu, Ins
from openscws.apdu.status import SW
from openscws.cat.envelopes import decode_envelope
from openscws.cat.profile import TerminalProfile
from openscws.errors import ApduError, DecodeError
from openscws.uicc.aram import ARAM_AID, AraM, AraSession
from openscws.uicc.csim import CSIM_AID, CsimApp
from openscws.uicc.files import EF_DIR, EF_ICCID, MF, ElementaryFile, encode_iccid
from openscws.uicc.toolkit import Toolkit
from openscws.uicc.usim import USIM_AID, UsimApp

log = logging.getLogger(__name__)

DEFAULT_ATR = bytes.fromhex("3B9F96801F878031E073FE211B674A4C753034054BA9")
"""A real UICC's ATR (sysmocom SJA2, as listed by pySim): T=0, class A/B/C, TCK valid."""

CLA_ISO = 0x00
CLA_GSM_CAT = 0x80
MAX_CHANNEL = 19
"""Logical channels 1-19 besides the basic one (ISO/IEC 7816-4 §5.4.1, TS 102 221 §10.1.1)."""


def channel_of(cla: int) -> int:
    """The logical channel a CLA byte names: b1-b2 for 0-3, b1-b4 + 4 in the further
    interindustry form (CLA 4X/CX, channels 4-19)."""
    return 4 + (cla & 0x0F) if cla & 0x40 else cla & 0x03


_FETCH = int(Ins.FETCH)
_TERMINAL_RESPONSE = int(Ins.TERMINAL_RESPONSE)
_ENVELOPE = int(Ins.ENVELOPE)
_OK = b"\x90\x00"
_NOT_SATISFIED = SW.CONDITIONS_NOT_SATISFIED.to_bytes(2, "big")
_TECHNICAL_PROBLEM = SW.TECHNICAL_PROBLEM.to_bytes(2, "big")
_PENDING = [bytes((0x91, n)) for n in range(256)]
_LOGICAL_CHANNEL_INS = frozenset({Ins.SELECT, Ins.MANAGE_CHANNEL, Ins.GET_DATA, Ins.STATUS})


def _ok(data: bytes = b"") -> bytes:
    return data + b"\x90\x00"


@dataclass(frozen=True, slots=True)
class CardIdentity:
    iccid: str
    atr: bytes = DEFAULT_ATR


class VirtualUicc:
    def __init__(
        self,
        identity: CardIdentity,
        toolkit: Toolkit | None = None,
        *,
        usim: UsimApp | None = None,
        aram: AraM | None = None,
        csim: CsimApp | None = None,
    ) -> None:
        self.identity = identity
        self.aram = aram
        """The access-rule application (GET DATA of the SCWS access rules), if any."""
        self.channels: dict[int, AraSession | None] = {0: None}
        """Open logical channels -> the ARA-M's state on it when it is the selected one."""
        self.toolkit = toolkit or Toolkit()
        self.usim = usim
        """The USIM application (AUTHENTICATE), when the card has a subscription."""
        self.in_usim = False
        """The USIM's ADF is the current application (SELECT by AID)."""
        self.csim = csim
        """The CSIM-like application of the (R-)UIM BCAST path (`openscws.uicc.csim`), if any."""
        self.in_csim = False
        self.files: dict[int, ElementaryFile] = {
            EF_ICCID: ElementaryFile(EF_ICCID, encode_iccid(identity.iccid)),
            EF_DIR: ElementaryFile(
                EF_DIR,
                # One record: the USIM application template (TS 102 221 §13.1), padded to 32 bytes.
                bytes.fromhex("61184F10A0000000871002FFFFFFFF890709000050045553494D").ljust(
                    32, b"\xff"
                ),
                record_length=32,
            ),
        }
        if csim is not None:  # a second record: the CSIM-like application's template
            template = bytes.fromhex("61184F10") + CSIM_AID + bytes.fromhex("50044353494D")
            dir_ef = self.files[EF_DIR]
            self.files[EF_DIR] = ElementaryFile(
                EF_DIR, dir_ef.data + template.ljust(32, b"\xff"), record_length=32
            )
        self.selected: int = MF
        self.powered = False
        self._faults: dict[tuple[str, str], int] = {}
        """Failures answered 6F 00, by kind and message: each is logged in full once."""
        self._handlers: dict[int, Callable[[CommandApdu, float], bytes]] = {
            Ins.SELECT: self._select,
            Ins.STATUS: self._status,
            Ins.READ_BINARY: self._read_binary,
            Ins.READ_RECORD: self._read_record,
            Ins.TERMINAL_PROFILE: self._terminal_profile,
            Ins.FETCH: self._fetch,
            Ins.TERMINAL_RESPONSE: self._terminal_response,
            Ins.ENVELOPE: self._envelope,
            Ins.AUTHENTICATE: self._authenticate,
            Ins.UPDATE_BINARY: self._update_binary,
            Ins.MANAGE_CHANNEL: self._manage_channel,
            Ins.GET_DATA: self._get_data,
        }

    @property
    def atr(self) -> bytes:
        return self.identity.atr

    def power_on(self) -> bytes:
        self.powered = True
        self.selected = MF
        self.in_usim = False
        self.in_csim = False
        self.channels = {0: None}
        return self.atr

    def power_off(self) -> None:
        self.powered = False

    def transmit(self, raw: bytes, now: float) -> bytes:
        """The response APDU to `raw`. Nothing raises out of here: a failure inside the card
        (a toolkit application's bug) is logged and answered `6F 00` (technical problem, no
        precise diagnosis: TS 102 221 §10.2.1.3), so the terminal carries on."""
        try:
            return self._transmit(raw, now)
        except Exception as e:  # noqa: BLE001 - the card's error boundary
            self._failed(raw, e)
            return _TECHNICAL_PROBLEM

    def _failed(self, raw: bytes, error: Exception) -> None:
        """Logs a failure answered 6F 00: with its traceback the first time, then (the same
        fault tends to repeat on every poll) in one line at debug level."""
        key = (type(error).__name__, str(error)[:200])
        if key in self._faults:
            self._faults[key] += 1
            log.debug("APDU %s answered 6F 00 again: %r", raw[:5].hex(), error)
            return
        if len(self._faults) >= 64:
            self._faults.clear()
        self._faults[key] = 1
        log.error(
            "APDU %s answered 6F 00: the card failed with %r", raw[:5].hex(), error, exc_info=error
        )

    def _transmit(self, raw: bytes, now: float) -> bytes:
        # FETCH and TERMINAL RESPONSE carry every byte of a transfer: read their fixed
        # headers here; everything else goes through the general decoder.
        # So do the event ENVELOPEs that start every request.
        n = len(raw)
        if n >= 5 and raw[0] == CLA_GSM_CAT and raw[2] == 0 and raw[3] == 0:
            ins = raw[1]
            if ins == _FETCH and n == 5:
                return self.toolkit.fetch_response(raw[4] or 256, now)
            lc = raw[4]
            if ins == _TERMINAL_RESPONSE and lc and n == 5 + lc:
                toolkit = self.toolkit
                data = raw[5:]
                try:
                    # The toolkit reads it (plain TRs of the transfer commands from their
                    # bytes, by the app that built the command; anything else decoded).
                    if not toolkit.terminal_response_bytes(data, now):
                        return _NOT_SATISFIED
                except ApduError as e:
                    return e.sw.to_bytes(2, "big")
                except DecodeError:
                    return SW.WRONG_DATA.to_bytes(2, "big")
                # 90 00, or 91 XX when a proactive command waits (as in _with_pending).
                waiting = toolkit.poll(now)
                return _PENDING[waiting] if waiting else _OK
            if ins == _ENVELOPE and lc and n == 5 + lc:
                try:
                    out = self.toolkit.envelope(decode_envelope(raw[5:]), now)
                except ApduError as e:
                    log.debug("APDU %s refused: %s", raw.hex(), e)
                    return e.sw.to_bytes(2, "big")
                except DecodeError as e:
                    log.debug("APDU %s data malformed: %s", raw.hex(), e)
                    return SW.WRONG_DATA.to_bytes(2, "big")
                if out:
                    return self._with_pending(out + _OK, now)
                waiting = self.toolkit.poll(now)
                return _PENDING[waiting] if waiting else _OK
        try:
            apdu = CommandApdu.decode(raw)
            if apdu.cla & 0xB0 not in (0x00, 0x80):
                raise ApduError(SW.CLA_NOT_SUPPORTED, f"CLA {apdu.cla:02X}")
            handler = self._handlers.get(apdu.ins)
            if handler is None:
                raise ApduError(SW.INS_NOT_SUPPORTED, f"INS {apdu.ins:02X}")
            if apdu.cla & 0x43:  # not the basic channel
                channel = channel_of(apdu.cla)
                if channel not in self.channels:
                    raise ApduError(SW.LOGICAL_CHANNEL_NOT_SUPPORTED, f"channel {channel} closed")
                if apdu.ins not in _LOGICAL_CHANNEL_INS:
                    raise ApduError(SW.INS_NOT_SUPPORTED, "logical channels carry the ARA-M only")
            response = handler(apdu, now)
        except ApduError as e:
            log.debug("APDU %s refused: %s", raw.hex(), e)
            return e.sw.to_bytes(2, "big")
        except DecodeError as e:
            log.debug("APDU %s data malformed: %s", raw.hex(), e)
            return SW.WRONG_DATA.to_bytes(2, "big")
        return self._with_pending(response, now)

    def _with_pending(self, response: bytes, now: float) -> bytes:
        # 91 XX replaces 90 00 whenever a proactive command waits (TS 102 221 §7.4.2.2).
        if response[-2:] == b"\x90\x00":
            pending = self.toolkit.poll(now)
            if pending:
                return response[:-2] + bytes((0x91, pending))
        return response

    # -- file commands (TS 102 221 §11.1) --------------------------------------------------------

    def _select(self, apdu: CommandApdu, now: float) -> bytes:
        no_fcp = apdu.p2 & 0x0C == 0x0C
        if apdu.p1 != 0x04 and channel_of(apdu.cla):
            raise ApduError(SW.INCORRECT_P1P2, "logical channels select by AID only")
        if apdu.p1 == 0x00 and len(apdu.data) == 2:
            fid = int.from_bytes(apdu.data, "big")
            if fid == MF:
                self.selected = MF
                self.in_usim = self.in_csim = False
                return _ok(b"" if no_fcp else bytes.fromhex("620483023F00"))
            ef = self._ef(fid)
            if ef is None:
                raise ApduError(SW.FILE_NOT_FOUND, f"no file {fid:04X}")
            self.selected = fid
            return _ok(b"" if no_fcp else ef.fcp())
        if apdu.p1 == 0x04:
            channel = channel_of(apdu.cla)
            if self.aram is not None and apdu.data == ARAM_AID:
                self.channels[channel] = AraSession()
                return _ok()
            if channel:
                raise ApduError(SW.FILE_NOT_FOUND, "no such application on this channel")
            self.channels[0] = None
            if self.csim is not None and 5 <= len(apdu.data) and CSIM_AID.startswith(apdu.data):
                self.in_csim, self.in_usim = True, False
                self.selected = MF
                body = bytes((0x82, 0x02, 0x78, 0x21, 0x84, len(CSIM_AID))) + CSIM_AID
                return _ok(b"" if no_fcp else bytes((0x62, len(body))) + body)
            # By DF name, a right-truncated AID allowed (TS 102 221 §8.5.2, §11.1.1).
            if self.usim is None or not 5 <= len(apdu.data) <= 16:
                raise ApduError(SW.FILE_NOT_FOUND, "no such application on this card")
            if not USIM_AID.startswith(apdu.data):
                raise ApduError(SW.FILE_NOT_FOUND, "no such application on this card")
            self.in_usim, self.in_csim = True, False
            self.selected = MF
            # FCP: file descriptor "ADF" (78 21), DF name (the full AID).
            body = bytes((0x82, 0x02, 0x78, 0x21, 0x84, len(USIM_AID))) + USIM_AID
            return _ok(b"" if no_fcp else bytes((0x62, len(body))) + body)
        raise ApduError(SW.INCORRECT_P1P2, f"SELECT P1 {apdu.p1:02X} not supported")

    def _manage_channel(self, apdu: CommandApdu, now: float) -> bytes:
        """MANAGE CHANNEL (ISO/IEC 7816-4 §11.1.2): P1 00 opens (P2 00: the card picks the
        lowest free channel and answers its number), P1 80 closes channel P2 (00: this one)."""
        if apdu.p1 == 0x00:
            if apdu.p2:
                if apdu.p2 > MAX_CHANNEL or apdu.p2 in self.channels:
                    raise ApduError(SW.INCORRECT_P1P2, f"channel {apdu.p2} not available")
                self.channels[apdu.p2] = None
                return _ok()
            free = next((n for n in range(1, MAX_CHANNEL + 1) if n not in self.channels), None)
            if free is None:
                raise ApduError(SW.FUNCTION_NOT_SUPPORTED, "no logical channel free")
            self.channels[free] = None
            return _ok(bytes((free,)))
        if apdu.p1 == 0x80:
            channel = apdu.p2 or channel_of(apdu.cla)
            if channel == 0 or channel not in self.channels:
                raise ApduError(SW.INCORRECT_P1P2, f"channel {channel} cannot be closed")
            del self.channels[channel]
            return _ok()
        raise ApduError(SW.INCORRECT_P1P2, f"MANAGE CHANNEL P1 {apdu.p1:02X}")

    def _get_data(self, apdu: CommandApdu, now: float) -> bytes:
        session = self.channels.get(channel_of(apdu.cla))
        if self.aram is None or session is None:
            raise ApduError(SW.CONDITIONS_NOT_SATISFIED, "GET DATA needs the ARA-M selected")
        return _ok(self.aram.get_data(session, (apdu.p1 << 8) | apdu.p2, apdu.le))

    def _ef(self, fid: int) -> ElementaryFile | None:
        if self.in_usim and self.usim is not None:
            found = self.usim.file(fid)
            if found is not None:
                return ElementaryFile(fid, found[0], record_length=found[1])
        if self.in_csim and self.csim is not None:
            found = self.csim.file(fid)
            if found is not None:
                return ElementaryFile(fid, found[0], record_length=found[1])
        return self.files.get(fid)

    def _update_binary(self, apdu: CommandApdu, now: float) -> bytes:
        ef = self._selected_ef()
        if ef.record_length:
            raise ApduError(SW.COMMAND_NOT_ALLOWED_NO_EF, "not a transparent file")
        if self.usim is None or not self.in_usim:
            raise ApduError(SW.SECURITY_STATUS_NOT_SATISFIED, f"EF {ef.fid:04X} is read-only")
        self.usim.update_binary(ef.fid, (apdu.p1 << 8) | apdu.p2, apdu.data)
        return _ok()

    def _authenticate(self, apdu: CommandApdu, now: float) -> bytes:
        if self.csim is not None and self.in_csim:
            return _ok(self.csim.authenticate(apdu.p1, apdu.p2, apdu.data))
        if self.usim is None or not self.in_usim:
            raise ApduError(SW.CONDITIONS_NOT_SATISFIED, "AUTHENTICATE needs the USIM selected")
        return _ok(self.usim.authenticate(apdu.p1, apdu.p2, apdu.data))

    def _selected_ef(self) -> ElementaryFile:
        ef = self._ef(self.selected)
        if ef is None:
            raise ApduError(SW.COMMAND_NOT_ALLOWED_NO_EF, "no EF selected")
        return ef

    def _read_binary(self, apdu: CommandApdu, now: float) -> bytes:
        ef = self._selected_ef()
        offset = (apdu.p1 << 8) | apdu.p2
        if offset > len(ef.data):
            raise ApduError(SW.INCORRECT_P1P2, "offset beyond the end of the file")
        n = apdu.le if apdu.le is not None else len(ef.data) - offset
        return _ok(ef.data[offset : offset + n])

    def _read_record(self, apdu: CommandApdu, now: float) -> bytes:
        ef = self._selected_ef()
        if not ef.record_length:
            raise ApduError(SW.COMMAND_NOT_ALLOWED_NO_EF, "not a record file")
        index = apdu.p1 - 1
        if apdu.p2 != 0x04 or not 0 <= index < len(ef.data) // ef.record_length:
            raise ApduError(SW.REFERENCED_DATA_NOT_FOUND, f"record {apdu.p1}")
        return _ok(ef.data[index * ef.record_length : (index + 1) * ef.record_length])

    def _status(self, apdu: CommandApdu, now: float) -> bytes:
        if apdu.p2 == 0x0C:
            return _ok()
        return _ok(bytes.fromhex("620483023F00"))

    # -- toolkit commands (TS 102 221 §10.1.2, TS 102 223 §6) ------------------------------------

    def _terminal_profile(self, apdu: CommandApdu, now: float) -> bytes:
        self.toolkit.terminal_profile(TerminalProfile.decode(apdu.data), now)
        return _ok()

    def _fetch(self, apdu: CommandApdu, now: float) -> bytes:
        return self.toolkit.fetch_response(256 if apdu.le is None else apdu.le or 256, now)

    def _terminal_response(self, apdu: CommandApdu, now: float) -> bytes:
        return self._terminal_response_data(apdu.data, now)

    def _terminal_response_data(self, data: bytes, now: float) -> bytes:
        if not self.toolkit.terminal_response_bytes(data, now):
            raise ApduError(SW.CONDITIONS_NOT_SATISFIED, "no fetched command matches this response")
        return _ok()

    def _envelope(self, apdu: CommandApdu, now: float) -> bytes:
        envelope = decode_envelope(apdu.data)
        out = self.toolkit.envelope(envelope, now)
        return _ok(out or b"")
