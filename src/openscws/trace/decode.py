"""A one-line human reading of each APDU exchange, decoding the CAT content (for --trace)."""

from __future__ import annotations

from openscws.apdu.command import CommandApdu, Ins
from openscws.apdu.status import describe
from openscws.cat.commands import CommandType, decode_command
from openscws.cat.envelopes import EventDownload, SmsPpDownload, decode_envelope
from openscws.cat.objects import Event, GeneralResult
from openscws.cat.profile import TerminalProfile
from openscws.cat.responses import TerminalResponse
from openscws.errors import OpenScwsError


def _name(enum: type[CommandType] | type[Event] | type[GeneralResult], value: int) -> str:
    try:
        return enum(value).name
    except ValueError:
        return f"{value:02X}"


def _preview(data: bytes, limit: int = 24) -> str:
    text = data[:limit].decode("latin-1")
    text = "".join(c if 32 <= ord(c) < 127 else "." for c in text)
    return f"{len(data)} B {text!r}" + ("…" if len(data) > limit else "")


_GET_DATA = {0xFF40: "all access rules", 0xFF60: "next", 0xDF20: "refresh tag"}
"""The ARA-M's GET DATA objects (GPD_SPE_013 §4.1)."""


def describe_exchange(command: bytes, response: bytes) -> str:
    """E.g. `FETCH -> SEND_DATA ch1 qq=01 240 B 'HTTP/1.1 200 OK..' [9000 normal ending]`."""
    sw = (response[-2] << 8) | response[-1] if len(response) >= 2 else -1
    status = f"[{sw:04X} {describe(sw)}]" if sw >= 0 else "[no SW]"
    data = response[:-2]
    try:
        apdu = CommandApdu.decode(command)
    except OpenScwsError:
        return f"{command.hex()} {status}"
    try:
        match apdu.ins:
            case Ins.TERMINAL_PROFILE:
                profile = TerminalProfile.decode(apdu.data)
                body = (
                    f"TERMINAL PROFILE bip_server={profile.bip_server} channels={profile.channels}"
                )
            case Ins.FETCH:
                if not data:
                    body = "FETCH (nothing)"
                else:
                    cmd = decode_command(data)
                    body = f"FETCH -> {_name(CommandType, cmd.details.type)} #{cmd.details.number}"
                    body += f" qq={cmd.details.qualifier:02X} dev={cmd.devices.destination:02X}"
                    payload = getattr(cmd, "data", None)
                    if payload is not None:
                        body += " " + _preview(payload.data)
                    transport = getattr(cmd, "transport", None)
                    if transport is not None:
                        body += f" transport={transport.protocol:02X} port={transport.port}"
            case Ins.TERMINAL_RESPONSE:
                tr = TerminalResponse.decode(apdu.data)
                body = (
                    f"TERMINAL RESPONSE {_name(CommandType, tr.details.type)} #{tr.details.number}"
                    f" result={_name(GeneralResult, tr.result.general)}"
                    + (f" {tr.result.additional.hex()}" if tr.result.additional else "")
                )
                for cs in tr.channel_statuses:
                    body += f" ch{cs.channel}:{cs.bits}/{cs.further:02X}"
                if tr.data is not None:
                    body += " " + _preview(tr.data.data)
                if tr.data_length is not None:
                    body += f" len={tr.data_length.length}"
            case Ins.ENVELOPE:
                env = decode_envelope(apdu.data)
                if isinstance(env, EventDownload):
                    names = ",".join(_name(Event, e) for e in env.event.events)
                    body = f"ENVELOPE event {names}"
                    if env.channel_status is not None:
                        cs = env.channel_status
                        body += f" ch{cs.channel}:{cs.bits}/{cs.further:02X}"
                    if env.data_length is not None:
                        body += f" len={env.data_length.length}"
                elif isinstance(env, SmsPpDownload):
                    body = f"ENVELOPE SMS-PP download {len(env.tpdu.tpdu)} B"
                else:
                    body = f"ENVELOPE {env.template:02X}"
            case Ins.STATUS:
                body = "STATUS"
            case Ins.SELECT:
                body = f"SELECT {apdu.data.hex()}"
            case Ins.MANAGE_CHANNEL:
                if apdu.p1 == 0x80:
                    body = f"MANAGE CHANNEL close {apdu.p2}"
                else:
                    body = "MANAGE CHANNEL open" + (f" -> {data[0]}" if len(data) == 1 else "")
            case Ins.GET_DATA:
                what = _GET_DATA.get((apdu.p1 << 8) | apdu.p2, f"{apdu.p1:02X}{apdu.p2:02X}")
                body = f"GET DATA {what} {len(data)} B"
            case _:
                body = f"{command[:4].hex()} {len(apdu.data)} B"
    except OpenScwsError as e:
        body = f"{command.hex()} (undecodable: {e})"
    return f"{body} {status}"
