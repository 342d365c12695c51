"""The OMA DM 1.2 session (OMA-TS-DM_Protocol V1.2 §8-§9, OMA-TS-DM_Security V1.2 §5),
sans-IO, for both sides: message bodies in, message bodies (and their transport headers)
out. States and their allowed transitions are declared once per role as tables; an event a
table does not allow is a `ProtocolError`.

Packages (DM Protocol §8.3): the client opens with Package #1 (Alert 1200 after a Package #0,
1201 on its own, its credentials and ./DevInfo), the server answers with Package #2 (status
of the header, management commands), the client with Package #3 (Status and Results), and
so on until the server sends a message without commands and with Final. A package may span
messages: a message without Final is answered with Alert 1222 ("next message") and the
statuses so far; the server splits its commands across messages to respect the client's
MaxMsgSize. Alert 1223 aborts the session.

Authentication (DM Security §5.1): the client presents syncml:auth-basic, syncml:auth-md5
(keyed by the nonce the server gave it last) or the x-syncml-hmac header over each message;
the server answers 212 (authenticated for the session), 200 (send credentials again: HMAC),
401 (wrong credentials) or 407 (missing), with a Chal carrying a fresh NextNonce whenever a
nonce was consumed or refused (nonce rollover): a replayed credential therefore fails. The
client goes back to Package #1 on a challenge, a bounded number of times.

Checks (the session state is left unchanged when they fail): the SessionID stays the one
opened, each side's MsgID grows by one, every Status and Results refers (MsgRef, CmdRef) to
a message and command the other side sent."""

from __future__ import annotations

import base64
import binascii
import copy
import dataclasses
import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from openscws.dm import auth
from openscws.dm import message as m
from openscws.dm.errors import ProtocolError
from openscws.dm.notification import SessionAlert, UiMode
from openscws.dm.tree import DEVINFO_LEAVES, Tree, find_auth
from openscws.errors import DecodeError

__all__ = [
    "ClientSession",
    "ClientState",
    "DeviceAccount",
    "Outgoing",
    "ServerSession",
    "ServerState",
]

MAX_AUTH_ATTEMPTS: Final = 3
HDR: Final = "SyncHdr"
# DMAcc AAuthType (DM StdObj §7.1.3) -> the SyncML credential type.
AUTH_TYPES: Final = {"BASIC": auth.AUTH_BASIC, "DIGEST": auth.AUTH_MD5, "HMAC": auth.AUTH_MAC}


@dataclass(frozen=True, slots=True)
class Outgoing:
    body: bytes
    content_type: str
    headers: tuple[tuple[str, str], ...] = ()
    message: m.SyncML | None = None


def _b64(nonce: bytes) -> str:
    return base64.b64encode(nonce).decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):  # ValueError: not even ASCII
        raise ProtocolError(400, "NextNonce is not base64") from None


def _chal(kind: str, nonce: bytes) -> m.Chal:
    return m.Chal(meta=m.Meta(type=kind, format="b64", next_nonce=_b64(nonce)))


def _refs(cmds: Iterable[m.Command]) -> dict[int, str]:
    """CmdID -> command name, nested commands included."""
    out: dict[int, str] = {}
    for c in cmds:
        out[c.cmd_id] = c.TAG
        if isinstance(c, (m.Atomic, m.Sequence)):
            out.update(_refs(c.commands))
    return out


class _Table[S: enum.Enum, E: enum.Enum]:
    def __init__(self, initial: S, moves: dict[tuple[S, E], S]) -> None:
        self.state = initial
        self.moves = moves

    def check(self, event: E) -> S:
        nxt = self.moves.get((self.state, event))
        if nxt is None:
            raise ProtocolError(400, f"{event.name} is not allowed in state {self.state.name}")
        return nxt


def _encode(msg: m.SyncML, wbxml_form: bool) -> tuple[bytes, str]:
    body = m.encode(msg, wbxml_form=wbxml_form)
    return body, m.CONTENT_TYPE_WBXML if wbxml_form else m.CONTENT_TYPE_XML


# -- the server ----------------------------------------------------------------------------


class ServerState(enum.Enum):
    IDLE = "idle"
    CHALLENGED = "challenged"
    MANAGING = "managing"
    ENDED = "ended"
    ABORTED = "aborted"


class ServerEvent(enum.Enum):
    AUTH_OK = "auth-ok"
    AUTH_REFUSED = "auth-refused"
    AUTH_FAILED = "auth-failed"  # refused once too often
    CONTINUE = "continue"  # more to do: commands or the next message of a package
    DONE = "done"
    ABORT = "abort"


S, SE = ServerState, ServerEvent
SERVER_TABLE: Final[dict[tuple[ServerState, ServerEvent], ServerState]] = {
    (S.IDLE, SE.AUTH_OK): S.MANAGING,
    (S.IDLE, SE.AUTH_REFUSED): S.CHALLENGED,
    (S.IDLE, SE.ABORT): S.ABORTED,
    (S.CHALLENGED, SE.AUTH_OK): S.MANAGING,
    (S.CHALLENGED, SE.AUTH_REFUSED): S.CHALLENGED,
    (S.CHALLENGED, SE.AUTH_FAILED): S.ENDED,
    (S.CHALLENGED, SE.ABORT): S.ABORTED,
    (S.MANAGING, SE.CONTINUE): S.MANAGING,
    (S.MANAGING, SE.DONE): S.ENDED,
    (S.MANAGING, SE.ABORT): S.ABORTED,
    (S.MANAGING, SE.AUTH_REFUSED): S.CHALLENGED,  # HMAC: every message is checked
    (S.MANAGING, SE.AUTH_FAILED): S.ENDED,
}


@dataclass(slots=True)
class DeviceAccount:
    """What the server keeps of one device: the client's credentials and the nonce the
    client must use next (syncml:auth-md5, HMAC); and the server's own credentials to the
    device (its SRVCRED: server id, password, the nonce the device gave it last), which
    also key Package #0."""

    username: str
    password: str
    auth_type: str = auth.AUTH_MD5
    nonce: bytes = b""
    server_id: str = ""
    server_password: str = ""
    server_auth_type: str | None = None  # AUTH_BASIC or AUTH_MD5 to authenticate to the device
    server_nonce: bytes = b""

    def package0(self, session_id: int, ui_mode: UiMode = UiMode.BACKGROUND) -> bytes:
        """The Package #0 that opens session `session_id` (DM Notification §6)."""
        alert = SessionAlert(server_id=self.server_id, session_id=session_id, ui_mode=ui_mode)
        return alert.encode(self.server_password, self.server_nonce)


@dataclass(frozen=True, slots=True)
class CommandResult:
    cmd_id: int
    cmd: str
    status: int
    items: tuple[m.Item, ...] = ()


class ServerSession:
    """One DM session on the server side. `new_nonce` gives a fresh random nonce (the shell
    passes `secrets.token_bytes(16)`), so the core stays deterministic under test."""

    def __init__(
        self,
        *,
        server_uri: str,
        account: DeviceAccount,
        new_nonce: Callable[[], bytes],
        session_id: str | None = None,
        commands: Iterable[m.Command] = (),
        wbxml_form: bool = False,
        max_msg_size: int = 65536,
        on_authenticated: Callable[[bytes, bytes], Iterable[m.Command]] | None = None,
    ) -> None:
        """`on_authenticated(nonce, server_nonce)` is asked once, when the device has
        authenticated, for more commands (queued after `commands`), with the nonces as they
        stand after that message: the shell claims the device's job there and saves the
        nonces with it. Should it raise, the message is not taken."""
        self.server_uri = server_uri
        self.on_authenticated = on_authenticated
        self.granted: list[int] = []
        """The CmdIDs that on_authenticated's commands got, in order."""
        self.own_max_msg_size = max_msg_size  # what we accept, announced in our header
        self.account = account
        self.new_nonce = new_nonce
        self.session_id = session_id
        self.wbxml_form = wbxml_form
        self.table: _Table[ServerState, ServerEvent] = _Table(S.IDLE, SERVER_TABLE)
        self.pending: list[m.Command] = []
        self.sent: dict[int, dict[int, str]] = {}  # our MsgID -> CmdID -> command
        self.sent_cmds: dict[int, tuple[m.Command, ...]] = {}
        self.server_accepted = account.server_auth_type is None
        self._continuations: set[int] = set()  # CmdIDs of the later chunks of large objects
        self.server_refusals = 0
        self.results: dict[int, CommandResult] = {}
        self.device: str | None = None
        self.devinfo: dict[str, str] = {}
        self.failures = 0
        self.client_msg_id = 0
        self.msg_id = 0
        self.cmd_id = 0
        self.max_msg_size: int | None = None  # the client's
        for c in commands:
            self.queue(c)

    @property
    def state(self) -> ServerState:
        return self.table.state

    def queue(self, command: m.Command) -> int:
        """A management command for the client; its CmdID (and nested ones) are set here.
        Returns its CmdID."""
        numbered = self._number(command)
        self.pending.append(numbered)
        return numbered.cmd_id

    def _number(self, c: m.Command) -> m.Command:
        self.cmd_id += 1
        cid = self.cmd_id
        if isinstance(c, (m.Atomic, m.Sequence)):
            return dataclasses.replace(
                c, cmd_id=cid, commands=tuple(self._number(x) for x in c.commands)
            )
        return dataclasses.replace(c, cmd_id=cid)

    # -- receiving --

    def receive(
        self,
        body: bytes,
        content_type: str,
        hmac: str | None = None,
        *,
        decoded: m.SyncML | None = None,
    ) -> Outgoing | None:
        """The reply to one client message, or None when the session has ended without one.
        `MessageError` or `ProtocolError` leave the session as it was. `decoded` is `body`
        already decoded by the caller (it is not decoded twice); the HMAC is still checked
        over `body`."""
        msg = decoded if decoded is not None else m.decode(body, content_type)
        hdr = msg.hdr
        if hdr.ver_dtd != m.VER_DTD:
            raise ProtocolError(505, f"VerDTD {hdr.ver_dtd!r} (1.2 only)")
        if hdr.ver_proto != m.VER_PROTO:
            raise ProtocolError(513, f"VerProto {hdr.ver_proto!r} (DM/1.2 only)")
        if self.session_id is not None and hdr.session_id != self.session_id:
            raise ProtocolError(400, f"SessionID {hdr.session_id!r} is not this session's")
        if hdr.msg_id != self.client_msg_id + 1:
            raise ProtocolError(400, f"MsgID {hdr.msg_id} out of sequence")
        if self.device is not None and hdr.source.loc_uri != self.device:
            raise ProtocolError(400, "the device changed within the session")
        if self.state in (S.ENDED, S.ABORTED):
            raise ProtocolError(400, f"the session has {self.state.value}")
        self._check_refs(msg)
        opening = (m.AlertCode.SERVER_INITIATED, m.AlertCode.CLIENT_INITIATED)
        if self.state in (S.IDLE, S.CHALLENGED) and not any(
            isinstance(c, m.Alert) and c.data in opening for c in msg.body.commands
        ):
            raise ProtocolError(400, "Package #1 without Alert 1200 or 1201")
        ours = next(
            (
                c
                for c in msg.body.commands
                if isinstance(c, m.Status) and c.cmd == HDR and c.cmd_ref == 0
            ),
            None,
        )
        their_nonce = (
            _unb64(ours.chal.meta.next_nonce)
            if ours is not None and ours.chal is not None and ours.chal.meta.next_nonce
            else None
        )
        # Authentication first: nothing of an unauthenticated message is acted upon.
        verdict, chal = self._authenticate(msg, body, hmac)
        statuses = [
            m.Status(
                cmd_id=0,
                msg_ref=hdr.msg_id,
                cmd_ref=0,
                cmd=HDR,
                target_refs=(hdr.target.loc_uri,),
                source_refs=(hdr.source.loc_uri,),
                chal=chal,
                data=verdict,
            )
        ]
        aborted = any(
            isinstance(c, m.Alert) and c.data == m.AlertCode.SESSION_ABORT
            for c in msg.body.commands
        )
        if aborted:
            event = SE.ABORT
        elif verdict in (401, 407):
            failed = self.failures + 1 >= MAX_AUTH_ATTEMPTS
            event = SE.AUTH_FAILED if failed else SE.AUTH_REFUSED
        elif self.state is S.MANAGING:
            event = SE.CONTINUE
        else:
            event = SE.AUTH_OK
        nxt = self.table.check(event)
        more: list[m.Command] = []
        if event is SE.AUTH_OK and self.on_authenticated is not None:
            server_nonce = their_nonce if their_nonce is not None else self.account.server_nonce
            more = list(self.on_authenticated(self.account.nonce, server_nonce))
        # Committed from here on.
        for c in more:
            self.granted.append(self.queue(c))
        if verdict in (401, 407):
            self.failures += 1
        if their_nonce is not None:
            self.account.server_nonce = their_nonce  # the device's nonce rolls over too
        self.session_id = hdr.session_id
        self.client_msg_id = hdr.msg_id
        self.device = hdr.source.loc_uri
        if hdr.meta is not None and hdr.meta.max_msg_size:
            self.max_msg_size = hdr.meta.max_msg_size
        for c in msg.body.commands:
            if isinstance(c, (m.Status, m.Results)):  # never answered with a Status
                if verdict not in (401, 407):
                    self._record(c)
                continue
            code = verdict if verdict in (401, 407) else self._take(c)
            statuses.append(
                m.Status(cmd_id=0, msg_ref=hdr.msg_id, cmd_ref=c.cmd_id, cmd=c.TAG, data=code)
            )
        if ours is not None and verdict not in (401, 407):
            self._their_verdict(ours)
        if event is SE.ABORT:
            self.table.state = nxt
            return None
        self.table.state = nxt
        if nxt is S.ENDED:
            return self._send(statuses, (), final=True)
        if verdict in (401, 407):
            return self._send(statuses, (), final=True)
        if not msg.body.final:  # the client's package goes on: ask for its next message
            return self._send(statuses, (m.Alert(cmd_id=0, data=m.AlertCode.NEXT_MESSAGE),), True)
        if not self.pending and self.state is S.MANAGING and self._all_answered():
            self.table.state = self.table.check(SE.DONE)
        return self._send_commands(statuses)

    def _take(self, c: m.Command) -> int:
        """Our status for a client command: Alert 1200/1201/1222 and Replace of ./DevInfo."""
        if isinstance(c, m.Alert):
            known = (
                m.AlertCode.SERVER_INITIATED,
                m.AlertCode.CLIENT_INITIATED,
                m.AlertCode.NEXT_MESSAGE,
            )
            return 200 if c.data in known else 406
        if isinstance(c, m.Replace):
            for item in c.items:
                uri = (item.source or item.target or m.Source(loc_uri="")).loc_uri
                if uri.startswith("./DevInfo/") and isinstance(item.data, str):
                    self.devinfo[uri.removeprefix("./DevInfo/")] = item.data
            return 200
        return 406

    def _their_verdict(self, status: m.Status) -> None:
        """The device's status for our header: 212 accepts our credentials; 401 or 407 means
        the device acted on none of that message's commands, so they go out again."""
        if status.data == 212:
            self.server_accepted = True
        elif status.data in (401, 407):
            self.server_refusals += 1
            again = self.sent_cmds.pop(status.msg_ref, ())
            for cid in self.sent.get(status.msg_ref, {}):
                self.results.pop(cid, None)
            self.sent[status.msg_ref] = {}
            self.pending[:0] = [self._number(c) for c in again]

    def _all_answered(self) -> bool:
        asked = {cid for cmds in self.sent.values() for cid in cmds}
        return asked <= set(self.results)

    def _check_refs(self, msg: m.SyncML) -> None:
        for c in msg.body.commands:
            if not isinstance(c, (m.Status, m.Results)):
                continue
            if c.msg_ref is None or c.msg_ref not in self.sent:
                raise ProtocolError(400, f"{c.TAG} refers to MsgRef {c.msg_ref}, not ours")
            names = self.sent[c.msg_ref]
            if c.cmd_ref == 0 and isinstance(c, m.Status) and c.cmd == HDR:
                continue
            if names.get(c.cmd_ref) is None:
                raise ProtocolError(400, f"{c.TAG} refers to CmdRef {c.cmd_ref}, not sent")
            if isinstance(c, m.Status) and c.cmd != names[c.cmd_ref]:
                raise ProtocolError(400, f"Status for {c.cmd} refers to a {names[c.cmd_ref]}")

    def _record(self, c: m.Status | m.Results) -> None:
        assert c.msg_ref is not None
        if isinstance(c, m.Status):
            if c.cmd_ref == 0:
                return
            old = self.results.get(c.cmd_ref)
            items = old.items if old else ()
            self.results[c.cmd_ref] = CommandResult(c.cmd_ref, c.cmd, c.data, items)
        else:
            old = self.results.get(c.cmd_ref)
            self.results[c.cmd_ref] = CommandResult(
                c.cmd_ref, self.sent[c.msg_ref][c.cmd_ref], old.status if old else 200, c.items
            )

    def _authenticate(
        self, msg: m.SyncML, body: bytes, hmac: str | None
    ) -> tuple[int, m.Chal | None]:
        acc = self.account
        kind = acc.auth_type
        if self.state is S.MANAGING and kind != auth.AUTH_MAC:
            return 200, None  # authenticated for the whole session (212 before)
        if kind == auth.AUTH_MAC:
            if hmac is None:
                return 407, self._rollover(kind)
            try:
                header: auth.HmacHeader | None = auth.HmacHeader.parse(hmac)
            except DecodeError:
                header = None  # a malformed header is a wrong credential: 401
            ok = (
                header is not None
                and header.username == acc.username
                and header.check(acc.password, acc.nonce, body)
            )
            return (200, self._rollover(kind)) if ok else (401, self._rollover(kind))
        cred = msg.hdr.cred
        if cred is None:
            return 407, self._rollover(kind)
        ctype = cred.meta.type if cred.meta and cred.meta.type else auth.AUTH_BASIC
        if ctype != kind:
            return 401, self._rollover(kind)
        if kind == auth.AUTH_BASIC:
            expected = auth.basic_credential(acc.username, acc.password)
            name_ok = True
        else:
            expected = auth.md5_credential(acc.username, acc.password, acc.nonce)
            name_ok = msg.hdr.source.loc_name == acc.username
        if name_ok and auth.verify(expected, cred.data):
            return 212, (self._rollover(kind) if kind == auth.AUTH_MD5 else None)
        return 401, self._rollover(kind)

    def _rollover(self, kind: str) -> m.Chal:
        """A fresh nonce for the client's next credential, announced in a Chal."""
        self.account.nonce = self.new_nonce()
        return _chal(kind, self.account.nonce)

    # -- sending --

    def _header(self) -> m.SyncHdr:
        self.msg_id += 1
        assert self.device is not None
        assert self.session_id is not None
        acc = self.account
        cred = None
        if not self.server_accepted and acc.server_auth_type in (auth.AUTH_BASIC, auth.AUTH_MD5):
            data = (
                auth.basic_credential(acc.server_id, acc.server_password)
                if acc.server_auth_type == auth.AUTH_BASIC
                else auth.md5_credential(acc.server_id, acc.server_password, acc.server_nonce)
            )
            cred = m.Cred(meta=m.Meta(type=acc.server_auth_type, format="b64"), data=data)
        return m.SyncHdr(
            session_id=self.session_id,
            msg_id=self.msg_id,
            target=m.Target(loc_uri=self.device),
            source=m.Source(loc_uri=self.server_uri, loc_name=acc.server_id or None),
            cred=cred,
            meta=m.Meta(max_msg_size=self.own_max_msg_size),
        )

    def _send(
        self, statuses: list[m.Status], commands: Iterable[m.Command], final: bool
    ) -> Outgoing:
        hdr = self._header()
        body: list[m.Command] = []
        for s in statuses:
            self.cmd_id += 1
            body.append(dataclasses.replace(s, cmd_id=self.cmd_id))
        for c in commands:
            body.append(c if c.cmd_id else self._number(c))
        self.sent[hdr.msg_id] = _refs(c for c in body if not isinstance(c, m.Status))
        self.sent_cmds[hdr.msg_id] = tuple(c for c in body if not isinstance(c, m.Status))
        msg = m.SyncML(hdr=hdr, body=m.SyncBody(commands=tuple(body), final=final))
        data, ctype = _encode(msg, self.wbxml_form)
        acc = self.account
        headers: tuple[tuple[str, str], ...] = ()
        if acc.server_auth_type == auth.AUTH_MAC:  # on every message (DM Security §5.1.4)
            mac = auth.message_mac(acc.server_id, acc.server_password, acc.server_nonce, data)
            headers = ((auth.HMAC_HEADER, auth.HmacHeader(acc.server_id, mac).value()),)
        return Outgoing(data, ctype, headers, msg)

    def _send_commands(self, statuses: list[m.Status]) -> Outgoing:
        """Statuses plus as many pending commands as the client's MaxMsgSize allows; the
        rest waits for the client's Alert 1222 (a package over several messages)."""
        take = len(self.pending)
        whole = self.pending[0] if self.pending else None
        size = _data_size(whole)
        chunked: list[m.Command] = []
        while True:
            saved = (self.msg_id, self.cmd_id)
            out = self._send(statuses, self.pending[:take], final=take == len(self.pending))
            if self.max_msg_size is None or len(out.body) <= self.max_msg_size:
                break
            self.msg_id, self.cmd_id = saved
            del self.sent[saved[0] + 1], self.sent_cmds[saved[0] + 1]
            if take > 1:
                take -= 1
            elif whole is not None and size > 1:
                # A large object (DM Protocol §10): the first chunk carries the whole Size,
                # each chunk but the last MoreData; the device answers 213 until the last.
                size = size * 3 // 4
                for old in chunked[1:]:
                    self._continuations.discard(old.cmd_id)
                self.pending[0 : len(chunked) or 1] = chunked = self._chunk(whole, size)
            else:
                out = self._send(statuses, self.pending[:1], final=len(self.pending) == 1)
                break
        del self.pending[:take]
        return out

    def _chunk(self, c: m.Command, size: int) -> list[m.Command]:
        assert isinstance(c, (m.Replace, m.Add))
        item = c.items[0]
        data = item.data
        assert data is not None
        meta = item.meta or m.Meta()
        if c.cmd_id not in self._continuations:
            total = len(data.encode() if isinstance(data, str) else data)
            meta = dataclasses.replace(meta, size=total)
        first = dataclasses.replace(
            c, items=(dataclasses.replace(item, data=data[:size], meta=meta, more_data=True),)
        )
        rest = self._number(
            dataclasses.replace(
                c,
                items=(
                    dataclasses.replace(
                        item,
                        data=data[size:],
                        meta=dataclasses.replace(meta, size=None) if item.meta else None,
                    ),
                ),
            )
        )
        self._continuations.add(rest.cmd_id)
        return [first, rest]


def _data_size(c: m.Command | None) -> int:
    """The length of the data of a one-item Replace or Add (what can be sent in chunks)."""
    if isinstance(c, (m.Replace, m.Add)) and len(c.items) == 1 and c.items[0].data:
        return len(c.items[0].data)
    return 0


@dataclass(slots=True)
class _Partial:
    """A large object being received (DM Protocol §10)."""

    cmd: str
    uri: str
    size: int
    meta: m.Meta | None
    chunks: list[str | bytes]


# -- the client ----------------------------------------------------------------------------


class ClientState(enum.Enum):
    IDLE = "idle"
    SETUP = "setup"  # Package #1 sent
    MANAGING = "managing"
    ENDED = "ended"
    ABORTED = "aborted"


class ClientEvent(enum.Enum):
    START = "start"
    CHALLENGED = "challenged"
    ACCEPTED = "accepted"
    COMMANDS = "commands"
    END = "end"
    ABORT = "abort"


C, CE = ClientState, ClientEvent
CLIENT_TABLE: Final[dict[tuple[ClientState, ClientEvent], ClientState]] = {
    (C.IDLE, CE.START): C.SETUP,
    (C.SETUP, CE.CHALLENGED): C.SETUP,
    (C.SETUP, CE.ACCEPTED): C.MANAGING,
    (C.SETUP, CE.END): C.ENDED,
    (C.SETUP, CE.ABORT): C.ABORTED,
    (C.MANAGING, CE.COMMANDS): C.MANAGING,
    (C.MANAGING, CE.CHALLENGED): C.MANAGING,  # HMAC: a fresh nonce on every message
    (C.MANAGING, CE.END): C.ENDED,
    (C.MANAGING, CE.ABORT): C.ABORTED,
}


class ClientSession:
    """One DM session on the device, acting on `tree` with the DM account ./DMAcc/<x>."""

    def __init__(
        self,
        tree: Tree,
        account: str,
        *,
        session_id: str,
        server_initiated: bool = False,
        wbxml_form: bool = False,
        max_msg_size: int = 16384,
        max_obj_size: int = 1 << 20,
        exec_handlers: dict[str, Callable[[str | bytes | None], int]] | None = None,
        new_nonce: Callable[[], bytes] | None = None,
    ) -> None:
        self.tree = tree
        self.x = account
        acc = f"./DMAcc/{account}"
        if tree.find(acc) is None:
            raise ValueError(f"no DM account {acc}")
        self.server_uri = str(tree.get(f"{acc}/AppAddr/1/Addr").data)
        self.dev_id = str(tree.get("./DevInfo/DevId").data)
        self.clcred = find_auth(tree, account, "CLCRED")
        self.srvcred = find_auth(tree, account, "SRVCRED")
        if self.srvcred is not None and new_nonce is None:
            raise ValueError("authenticating the server needs new_nonce for its challenges")
        self.new_nonce = new_nonce
        self.server_authenticated = self.srvcred is None
        self.server_refusals = 0
        self.session_id = session_id
        self.server_initiated = server_initiated
        self.wbxml_form = wbxml_form
        self.max_msg_size = max_msg_size
        self.max_obj_size = max_obj_size
        self.partial: _Partial | None = None
        self.server_max_msg_size: int | None = None
        self.outbox: list[m.Command] = []  # replies that did not fit the server's MaxMsgSize
        self.exec_handlers = exec_handlers or {}
        self.table: _Table[ClientState, ClientEvent] = _Table(C.IDLE, CLIENT_TABLE)
        self.msg_id = 0
        self.cmd_id = 0
        self.server_msg_id = 0
        self.sent: dict[int, dict[int, str]] = {}
        self.challenges = 0
        self.authenticated = False

    @classmethod
    def from_package0(
        cls, tree: Tree, account: str, package0: bytes, **options: Any
    ) -> ClientSession:
        """The session a Package #0 asks for, once its digest checks with the server's
        credentials (SRVCRED) of ./DMAcc/<account>; ProtocolError 401 if it does not, so a
        forged or replayed notification opens nothing. The SessionID is the notification's
        session id in upper-case hexadecimal (DM Notification §6.2)."""
        _, alert = SessionAlert.decode(package0)
        server_id = tree.find(f"./DMAcc/{account}/ServerID")
        srvcred = find_auth(tree, account, "SRVCRED")
        if server_id is None or server_id.value != alert.server_id or srvcred is None:
            raise ProtocolError(401, f"Package #0 from unknown server {alert.server_id!r}")
        secret, nonce = (tree.find(f"{srvcred}/{k}") for k in ("AAuthSecret", "AAuthData"))
        assert secret is not None
        assert nonce is not None
        nv = nonce.value if isinstance(nonce.value, bytes) else nonce.value.encode()
        if SessionAlert.check(package0, str(secret.value), (nv,)) is None:
            raise ProtocolError(401, "Package #0 digest does not check")
        return cls(
            tree,
            account,
            session_id=f"{alert.session_id:X}",
            server_initiated=True,
            **options,
        )

    @property
    def state(self) -> ClientState:
        return self.table.state

    def _leaf(self, name: str, entry: str | None = None) -> str | bytes:
        base = entry or self.clcred
        assert base is not None
        node = self.tree.find(f"{base}/{name}")
        return node.value if node is not None else ""

    def _judge_server(self, hdr: m.SyncHdr, body: bytes, hmac: str | None) -> int:
        """Our verdict on the server's credentials: 200 when none are asked for (or they were
        accepted already), 212, 401 or 407; with HMAC 200 or 401/407 on every message."""
        if self.server_authenticated or self.srvcred is None:
            return 200
        kind = AUTH_TYPES.get(str(self._leaf("AAuthType", self.srvcred)))
        name, secret = (str(self._leaf(k, self.srvcred)) for k in ("AAuthName", "AAuthSecret"))
        nonce = self._leaf("AAuthData", self.srvcred)
        nonce = nonce if isinstance(nonce, bytes) else nonce.encode()
        if kind == auth.AUTH_MAC:
            if hmac is None:
                return 407
            try:
                header = auth.HmacHeader.parse(hmac)
            except DecodeError:
                return 401
            ok = header.username == name and header.check(secret, nonce, body)
            return 200 if ok else 401
        if hdr.cred is None:
            return 407
        ctype = hdr.cred.meta.type if hdr.cred.meta and hdr.cred.meta.type else auth.AUTH_BASIC
        if ctype != kind:
            return 401
        if kind == auth.AUTH_BASIC:
            expected = auth.basic_credential(name, secret)
        elif kind == auth.AUTH_MD5 and hdr.source.loc_name == name:
            expected = auth.md5_credential(name, secret, nonce)
        else:
            return 401
        return 212 if auth.verify(expected, hdr.cred.data) else 401

    @property
    def auth_type(self) -> str | None:
        return AUTH_TYPES.get(str(self._leaf("AAuthType"))) if self.clcred else None

    def _nonce(self) -> bytes:
        v = self._leaf("AAuthData")
        return v if isinstance(v, bytes) else v.encode()

    def _store_nonce(self, chal: m.Chal, nonce: bytes | None) -> None:
        if self.clcred is None or nonce is None:
            return
        self.tree.find(f"{self.clcred}/AAuthData").value = nonce  # type: ignore[union-attr]
        wanted = next((k for k, v in AUTH_TYPES.items() if v == chal.meta.type), None)
        if wanted is not None:  # the server may ask for another scheme (DM Security §5.1)
            self.tree.find(f"{self.clcred}/AAuthType").value = wanted  # type: ignore[union-attr]

    def _header(self) -> m.SyncHdr:
        self.msg_id += 1
        cred = None
        kind = self.auth_type
        name = str(self._leaf("AAuthName")) if self.clcred else None
        if kind in (auth.AUTH_BASIC, auth.AUTH_MD5) and not self.authenticated:
            assert name is not None
            secret = str(self._leaf("AAuthSecret"))
            data = (
                auth.basic_credential(name, secret)
                if kind == auth.AUTH_BASIC
                else auth.md5_credential(name, secret, self._nonce())
            )
            cred = m.Cred(meta=m.Meta(type=kind, format="b64"), data=data)
        return m.SyncHdr(
            session_id=self.session_id,
            msg_id=self.msg_id,
            target=m.Target(loc_uri=self.server_uri),
            source=m.Source(loc_uri=self.dev_id, loc_name=name),
            cred=cred,
            meta=m.Meta(max_msg_size=self.max_msg_size, max_obj_size=self.max_obj_size),
        )

    def _send_replies(self, replies: list[m.Command]) -> Outgoing:
        """The header status, replies held back before, then these replies: as many as the
        server's MaxMsgSize allows; without Final if some must wait (the server then asks
        for the next message with Alert 1222)."""
        queue = [replies[0], *self.outbox, *replies[1:]]
        take = len(queue)
        while True:
            saved = (self.msg_id, self.cmd_id)
            out = self._send(queue[:take], final=take == len(queue))
            limit = self.server_max_msg_size
            if limit is None or len(out.body) <= limit or take <= 2:
                break
            self.msg_id, self.cmd_id = saved
            del self.sent[saved[0] + 1]
            take -= 1
        self.outbox = queue[take:]
        return out

    def _send(self, commands: list[m.Command], final: bool = True) -> Outgoing:
        hdr = self._header()
        body: list[m.Command] = []
        for c in commands:
            self.cmd_id += 1
            body.append(dataclasses.replace(c, cmd_id=self.cmd_id))
        self.sent[hdr.msg_id] = _refs(c for c in body if not isinstance(c, m.Status | m.Results))
        msg = m.SyncML(hdr=hdr, body=m.SyncBody(commands=tuple(body), final=final))
        data, ctype = _encode(msg, self.wbxml_form)
        headers: tuple[tuple[str, str], ...] = ()
        if self.auth_type == auth.AUTH_MAC:
            name, secret = str(self._leaf("AAuthName")), str(self._leaf("AAuthSecret"))
            mac = auth.message_mac(name, secret, self._nonce(), data)
            headers = ((auth.HMAC_HEADER, auth.HmacHeader(name, mac).value()),)
        return Outgoing(data, ctype, headers, msg)

    def _package1(self) -> list[m.Command]:
        code = (
            m.AlertCode.SERVER_INITIATED if self.server_initiated else m.AlertCode.CLIENT_INITIATED
        )
        items = tuple(
            m.Item(
                source=m.Source(loc_uri=f"./DevInfo/{k}"),
                data=str(self.tree.get(f"./DevInfo/{k}").data),
            )
            for k in DEVINFO_LEAVES
        )
        return [m.Alert(cmd_id=0, data=code), m.Replace(cmd_id=0, items=items)]

    def start(self) -> Outgoing:
        """Package #1."""
        self.table.state = self.table.check(CE.START)
        return self._send(self._package1())

    def abort(self) -> Outgoing:
        """Alert 1223: the client ends the session."""
        self.table.state = self.table.check(CE.ABORT)
        return self._send([m.Alert(cmd_id=0, data=m.AlertCode.SESSION_ABORT)])

    def receive(self, body: bytes, content_type: str, hmac: str | None = None) -> Outgoing | None:
        """The reply to one server message, or None when the session is over."""
        msg = m.decode(body, content_type)
        hdr = msg.hdr
        if hdr.session_id != self.session_id:
            raise ProtocolError(400, f"SessionID {hdr.session_id!r} is not this session's")
        if hdr.msg_id != self.server_msg_id + 1:
            raise ProtocolError(400, f"MsgID {hdr.msg_id} out of sequence")
        judged = self._judge_server(hdr, body, hmac)
        server_mac = (
            self.srvcred is not None
            and not self.server_authenticated
            and (self._leaf("AAuthType", self.srvcred) == "HMAC")
        )
        hdr_status: m.Status | None = None
        for c in msg.body.commands:
            if isinstance(c, (m.Status, m.Results)):
                if c.msg_ref not in self.sent:
                    raise ProtocolError(400, f"{c.TAG} refers to MsgRef {c.msg_ref}, not ours")
                if isinstance(c, m.Status) and c.cmd_ref == 0 and c.cmd == HDR:
                    if c.msg_ref == self.msg_id:
                        hdr_status = c
                    continue
                if self.sent[c.msg_ref].get(c.cmd_ref) is None:
                    raise ProtocolError(400, f"{c.TAG} refers to CmdRef {c.cmd_ref}, not sent")
        if hdr_status is None:
            raise ProtocolError(400, "no Status for our last SyncHdr")
        aborted = any(
            isinstance(c, m.Alert) and c.data == m.AlertCode.SESSION_ABORT
            for c in msg.body.commands
        )
        code = hdr_status.data
        commands = [c for c in msg.body.commands if not isinstance(c, m.Status | m.Results)]
        gives_up = judged in (401, 407) and self.server_refusals + 1 >= MAX_AUTH_ATTEMPTS
        if aborted or gives_up:
            event = CE.ABORT
        elif code in (401, 407):
            if self.challenges + 1 >= MAX_AUTH_ATTEMPTS or hdr_status.chal is None:
                event = CE.ABORT
            else:
                event = CE.CHALLENGED
        elif code not in (200, 212):
            event = CE.ABORT
        elif msg.body.final and not commands:
            event = CE.END
        else:
            event = CE.ACCEPTED if self.state is C.SETUP else CE.COMMANDS
        their = hdr_status.chal
        next_nonce = _unb64(their.meta.next_nonce) if their and their.meta.next_nonce else None
        nxt = self.table.check(event)
        # Committed from here on.
        self.server_msg_id = hdr.msg_id
        if hdr.meta is not None and hdr.meta.max_msg_size:
            self.server_max_msg_size = hdr.meta.max_msg_size
        if their is not None:
            self._store_nonce(their, next_nonce)  # the nonce rolls over on every Chal
        self.table.state = nxt
        if code == 212:
            self.authenticated = True
        if event is CE.CHALLENGED and self.state is C.SETUP:
            self.challenges += 1
            return self._send(self._package1())  # back to Package #1 with the new nonce
        chal = None
        # The server's nonce rolls over on every verdict, but only when a reply carries the
        # Chal: a session that ends here keeps the nonce the server has (Package #0 next time).
        silent = nxt in (C.ENDED, C.ABORTED) and not gives_up
        if (judged != 200 or server_mac) and not silent:
            assert self.srvcred is not None
            assert self.new_nonce is not None
            fresh = self.new_nonce()
            self.tree.find(f"{self.srvcred}/AAuthData").value = fresh  # type: ignore[union-attr]
            kind = AUTH_TYPES.get(str(self._leaf("AAuthType", self.srvcred)), auth.AUTH_MD5)
            chal = _chal(kind, fresh)
        if judged == 212:
            self.server_authenticated = True
        header_status = m.Status(
            cmd_id=0,
            msg_ref=hdr.msg_id,
            cmd_ref=0,
            cmd=HDR,
            target_refs=(hdr.target.loc_uri,),
            source_refs=(hdr.source.loc_uri,),
            chal=chal,
            data=judged,
        )
        if gives_up:  # the server failed to authenticate itself: end the session
            self.server_refusals += 1
            return self._send([header_status, m.Alert(cmd_id=0, data=m.AlertCode.SESSION_ABORT)])
        if nxt in (C.ENDED, C.ABORTED):
            return None
        replies: list[m.Command] = [header_status]
        if judged in (401, 407):  # nothing of an unauthenticated server is acted upon
            self.server_refusals += 1
            replies.extend(self._status(hdr.msg_id, c, judged) for c in commands)
            return self._send_replies(replies)
        for c in commands:
            replies.extend(self._execute(hdr.msg_id, c))
        if not msg.body.final:
            replies.append(m.Alert(cmd_id=0, data=m.AlertCode.NEXT_MESSAGE))
        return self._send_replies(replies)

    # -- commands against the tree --

    def _status(self, msg_id: int, c: m.Command, code: int) -> m.Status:
        return m.Status(cmd_id=0, msg_ref=msg_id, cmd_ref=c.cmd_id, cmd=c.TAG, data=code)

    def _assemble(self, cmd: str, uri: str, item: m.Item) -> tuple[int, m.Item | None]:
        """A chunk of a large object: (213, None) while more is to come; the whole item at
        the last chunk; 413 over our MaxObjSize, 424 when the sizes do not add up, 400 for
        a first chunk without its Size or another object interleaved (SyncML_RepPro §10)."""
        p = self.partial
        data = item.data if item.data is not None else ""
        if p is None:
            if not item.more_data:
                return 200, item
            size = item.meta.size if item.meta else None
            if size is None:
                return 400, None
            if size > self.max_obj_size:
                return 413, None
            self.partial = _Partial(cmd, uri, size, item.meta, [data])
            return 213, None
        if (p.cmd, p.uri) != (cmd, uri) or type(data) is not type(p.chunks[0]):
            self.partial = None
            return 400, None
        p.chunks.append(data)
        got = sum(len(x.encode() if isinstance(x, str) else x) for x in p.chunks)
        if item.more_data and got <= p.size:
            return 213, None
        self.partial = None
        if got != p.size:
            return 424, None
        whole: str | bytes = "".join(p.chunks) if isinstance(data, str) else b"".join(p.chunks)  # type: ignore[arg-type]
        meta = dataclasses.replace(p.meta, size=None) if p.meta else None
        return 200, dataclasses.replace(item, data=whole, meta=meta, more_data=False)

    def _execute(self, msg_id: int, c: m.Command) -> list[m.Command]:
        if isinstance(c, m.Alert):
            ok = c.data == m.AlertCode.NEXT_MESSAGE  # the server's package goes on
            return [self._status(msg_id, c, 200 if ok else 406)]
        if isinstance(c, m.Atomic):
            saved = copy.deepcopy(self.tree.root)
            inner = [r for x in c.commands for r in self._execute(msg_id, x)]
            failed = any(isinstance(r, m.Status) and r.data >= 300 for r in inner)
            if failed:  # roll back (SyncML RepPro §6.6.3): 507 for the Atomic, 216 inside
                self.tree.root = saved
                inner = [
                    dataclasses.replace(r, data=216 if r.data < 300 else r.data)
                    for r in inner
                    if isinstance(r, m.Status)
                ]
            return [self._status(msg_id, c, 507 if failed else 200), *inner]
        if isinstance(c, m.Sequence):
            inner = [r for x in c.commands for r in self._execute(msg_id, x)]
            return [self._status(msg_id, c, 200), *inner]
        if isinstance(c, m.Exec):
            uri = c.item.target.loc_uri if c.item.target else ""
            handler = self.exec_handlers.get(uri.removeprefix("./"))
            if self.tree.find(uri) is None:
                return [self._status(msg_id, c, 404)]
            return [self._status(msg_id, c, handler(c.item.data) if handler else 406)]
        if isinstance(c, (m.Get, m.Replace, m.Add, m.Delete, m.Copy)):
            out: list[m.Command] = []
            results: list[m.Item] = []
            worst = 200
            for item in c.items or (m.Item(),):
                uri = item.target.loc_uri if item.target else ""
                if isinstance(c, (m.Replace, m.Add)):
                    code, whole = self._assemble(c.TAG, uri, item)
                    if whole is None:
                        worst = code
                        continue
                    item = whole
                fmt = item.meta.format if item.meta and item.meta.format else "chr"
                if isinstance(c, m.Get):
                    o = self.tree.get(uri)
                    if o.status == 200 and o.node is not None:
                        meta = m.Meta(format=o.node.format, type=o.node.type)
                        data = o.data
                        if isinstance(data, bytes) and not self.wbxml_form:
                            # binary in the XML form goes base64 (DM TND: format b64)
                            data = base64.b64encode(data).decode("ascii")
                            meta = dataclasses.replace(meta, format="b64")
                        results.append(m.Item(source=m.Source(loc_uri=uri), meta=meta, data=data))
                elif isinstance(c, m.Replace):
                    o = self.tree.replace(uri, item.data if item.data is not None else "")
                elif isinstance(c, m.Add):
                    o = self.tree.add(uri, item.data, fmt)
                elif isinstance(c, m.Delete):
                    o = self.tree.delete(uri)
                else:
                    o = self.tree.copy(uri, item.source.loc_uri if item.source else "")
                if o.status != 200:
                    worst = o.status
            out.append(self._status(msg_id, c, worst))
            if results:
                out.append(
                    m.Results(cmd_id=0, msg_ref=msg_id, cmd_ref=c.cmd_id, items=tuple(results))
                )
            return out
        return [self._status(msg_id, c, 406)]
