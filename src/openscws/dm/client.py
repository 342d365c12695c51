"""The terminal's DM client (OMA-TS-DM_Protocol V1.2, OMA-TS-DM_Security): the shell that runs
`openscws.dm.session.ClientSession` over HTTPS against the server of a DM account, on command
or when a Package #0 arrives (OMA-TS-DM_Notification §6), and saves the management tree when
the session ends.

Reporting the transport (our reading of the requirement that the client logs the TLS version
and suite it negotiated and reports them in the session): before Package #1 the client does
the TLS handshake, logs the protocol the server chose and the suite, and writes them to the
leaves ./DevInfo/Ext/TLS/Version and ./DevInfo/Ext/TLS/Suite (./DevInfo/Ext is the vendor
extension of OMA-TS-DM_StdObj §5.3). Package #1 carries them in its Replace of ./DevInfo next
to DevId, Man, Mod, DmV and Lang, so the server has them with the session's first message, and
the server can Get them again at any time. A reconnection within the session (the server
closed the connection) updates them and is logged too.

The client identifies the server's protocol from the handshake itself (the version in the
ServerHello, `ssl.SSLObject.version()`), refuses to run a session over SSL 2.0 or SSL 3.0
(neither is offered; see `openscws.dm.transport`) and reports what it found in every
`SessionReport`."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from openscws.dm import client_store
from openscws.dm import message as m
from openscws.dm.client_push import package0_of
from openscws.dm.errors import MessageError, ProtocolError
from openscws.dm.notification import SessionAlert
from openscws.dm.session import ClientSession, ClientState, Outgoing
from openscws.dm.transport import TlsInfo, Transport, TransportError, client_context
from openscws.dm.transport_auth import HttpCredentials, TransportAuthError
from openscws.dm.tree import Tree
from openscws.errors import ConfigError, DecodeError, OpenScwsError
from openscws.terminal.engine import SmsResult, SmsStatus

__all__ = ["DmClient", "DmClientError", "SessionReport"]

log = logging.getLogger(__name__)

TLS_VERSION_URI: Final = "./DevInfo/Ext/TLS/Version"
TLS_SUITE_URI: Final = "./DevInfo/Ext/TLS/Suite"
MAX_MESSAGES: Final = 200
"""Messages one session may exchange before the client gives up (a server looping)."""


class DmClientError(OpenScwsError):
    """A DM session that could not run or was refused (the reason in DM or HTTP terms)."""


@dataclass(slots=True)
class SessionReport:
    account: str
    server: str
    session_id: str
    tls_version: str = ""
    tls_suite: str = ""
    http_auth: str = ""
    state: str = ""
    messages: int = 0
    server_status: int | None = None
    commands: list[tuple[str, str, int]] = field(default_factory=list)
    """(command, target URI, our status) for each command the server sent."""

    def lines(self) -> list[str]:
        tls = f"{self.tls_version} {self.tls_suite}" if self.tls_version else "none (http)"
        out = [
            f"account {self.account}: server {self.server}, session {self.session_id}",
            f"TLS: {tls}" + (f", HTTP auth {self.http_auth}" if self.http_auth else ""),
            f"session {self.state} after {self.messages} messages",
        ]
        out += [f"  {cmd} {uri or '-'}: {status}" for cmd, uri, status in self.commands]
        return out


class _Session(ClientSession):
    """ClientSession whose Package #1 also carries ./DevInfo/Ext/TLS (see the module text)."""

    def _package1(self) -> list[m.Command]:
        cmds = super()._package1()
        extra = tuple(
            m.Item(source=m.Source(loc_uri=uri), data=str(node.value))
            for uri in (TLS_VERSION_URI, TLS_SUITE_URI)
            if (node := self.tree.find(uri)) is not None
        )
        if extra and isinstance(cmds[1], m.Replace):
            cmds[1] = m.Replace(cmd_id=0, items=cmds[1].items + extra)
        return cmds


def _targets(msg: m.SyncML) -> dict[int, tuple[str, str]]:
    out: dict[int, tuple[str, str]] = {}

    def walk(cmds: tuple[m.Command, ...]) -> None:
        for c in cmds:
            if isinstance(c, m.Status | m.Results):
                continue
            uri = ""
            items = getattr(c, "items", None)
            if items:
                first = items[0]
                uri = first.target.loc_uri if first.target else ""
            item = getattr(c, "item", None)
            if isinstance(item, m.Item) and item.target:
                uri = item.target.loc_uri
            out[c.cmd_id] = (c.TAG, uri)
            inner = getattr(c, "commands", None)
            if inner:
                walk(inner)

    walk(msg.body.commands)
    return out


class DmClient:
    """The DM client over a tree file. `run` is one session; the tree is saved after it."""

    def __init__(
        self,
        tree_path: Path,
        *,
        wbxml: bool = False,
        allow_http: bool = False,
        timeout: float = 30.0,
        new_nonce: Callable[[], bytes] = lambda: secrets.token_bytes(16),
    ) -> None:
        self.tree_path = tree_path
        self.wbxml = wbxml
        self.allow_http = allow_http
        self.timeout = timeout
        self.new_nonce = new_nonce
        self.last: SessionReport | None = None
        self._lock = asyncio.Lock()  # one session at a time: they share the tree file
        self._tasks: set[asyncio.Task[None]] = set()

    # -- Package #0 over SMS -----------------------------------------------------------------

    async def handle_sms(self, tpdu: bytes) -> SmsResult | None:
        """The terminal's SMS hook (`Gateway.terminal_sms`): a DM Package #0 WAP push starts
        a session in the background and is acknowledged; any other SMS gives None (it goes on
        to the card, so the SCWS SMS trigger is untouched)."""
        try:
            pkg0 = package0_of(tpdu)
        except DecodeError as exc:
            log.warning("DM WAP push refused: %s", exc)
            return SmsResult(SmsStatus.ERROR, 0x6F00)
        if pkg0 is None:
            return None
        try:
            account = self.account_for(pkg0)
        except (DmClientError, ConfigError) as exc:
            log.warning("DM Package #0 ignored: %s", exc)
            return SmsResult(SmsStatus.DELIVERED, 0x9000)
        task = asyncio.create_task(self._notified(account, pkg0), name="dm-session")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return SmsResult(SmsStatus.DELIVERED, 0x9000)

    async def _notified(self, account: str, pkg0: bytes) -> None:
        try:
            report = await self.run(account, pkg0)
        except (DmClientError, ConfigError) as exc:
            log.warning("DM session on Package #0 for account %s failed: %s", account, exc)
            return
        for line in report.lines():
            log.info("%s", line)

    async def wait_idle(self) -> None:
        """Returns when no session started by a Package #0 is running."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def tree(self) -> Tree:
        return client_store.load(self.tree_path)

    def account_for(self, package0: bytes) -> str:
        """The account a Package #0 is for (by its server identifier)."""
        try:
            _, alert = SessionAlert.decode(package0)
        except DecodeError as exc:
            raise DmClientError(f"not a DM Package #0: {exc}") from None
        x = client_store.account_of_server(self.tree(), alert.server_id)
        if x is None:
            raise DmClientError(f"Package #0 from {alert.server_id!r}: no such DM account")
        return x

    async def run(self, account: str, package0: bytes | None = None) -> SessionReport:
        """One session with ./DMAcc/<account>'s server: client-initiated (Alert 1201), or the
        one `package0` asks for (Alert 1200) once its digest checks."""
        async with self._lock:
            return await self._run(account, package0)

    async def _run(self, account: str, package0: bytes | None) -> SessionReport:
        self.last = None
        tree = self.tree()
        if tree.find(f"./DMAcc/{account}") is None:
            raise DmClientError(f"no DM account {account!r}")
        try:
            tls = client_store.account_tls(tree, account)
            http = client_store.transport_auth(tree, account)
            creds = (
                HttpCredentials(http[0], http[1], http[2], lambda: secrets.token_hex(8))
                if http
                else None
            )
            url = str(tree.get(f"./DMAcc/{account}/AppAddr/1/Addr").data)
            context = client_context(tls) if url.startswith("https:") else None
        except (ConfigError, TransportAuthError) as exc:
            raise DmClientError(f"account {account}: {exc}") from None
        transport = Transport(
            context, credentials=creds, allow_http=self.allow_http, timeout=self.timeout
        )
        try:
            try:
                info = await transport.connect(url)
            except TransportError as exc:
                raise DmClientError(str(exc)) from None
            self._note_tls(tree, info)
            try:
                if package0 is not None:
                    session: ClientSession = _Session.from_package0(
                        tree, account, package0, wbxml_form=self.wbxml, new_nonce=self.new_nonce
                    )
                else:
                    sid = f"{secrets.randbelow(0xFFFF) + 1:X}"
                    session = _Session(
                        tree,
                        account,
                        session_id=sid,
                        wbxml_form=self.wbxml,
                        new_nonce=self.new_nonce,
                    )
            except (ProtocolError, DecodeError) as exc:
                raise DmClientError(f"Package #0 refused: {exc}") from None
            report = SessionReport(
                account,
                url,
                session.session_id,
                info.version if info else "",
                info.suite if info else "",
                http[0] if http else "",
            )
            self.last = report
            try:
                await self._pump(session, transport, url, tree, report)
            finally:  # nonce rollovers and the server's changes are kept, even after a failure
                client_store.save(tree, self.tree_path)
        finally:
            await transport.close()
        log.info(
            "DM session %s with %s %s (TLS %s %s)",
            report.session_id,
            url,
            report.state,
            report.tls_version or "none",
            report.tls_suite,
        )
        return report

    def _note_tls(self, tree: Tree, info: TlsInfo | None) -> None:
        if info is None:
            return
        for uri, value in ((TLS_VERSION_URI, info.version), (TLS_SUITE_URI, info.suite)):
            node = tree.find(uri)
            if node is None:
                tree.put(uri, value)
            else:
                node.value = value

    async def _pump(
        self,
        session: ClientSession,
        transport: Transport,
        url: str,
        tree: Tree,
        report: SessionReport,
    ) -> None:
        out: Outgoing | None = session.start()
        target = url
        while out is not None:
            if report.messages >= MAX_MESSAGES:
                raise DmClientError(f"the server went on past {MAX_MESSAGES} messages")
            headers = (("Content-Type", out.content_type), *out.headers)
            try:
                reply = await transport.post(target, out.body, headers)
            except TransportError as exc:
                raise DmClientError(str(exc)) from None
            report.messages += 2
            if transport.tls is not None and transport.tls.version != report.tls_version:
                self._note_tls(tree, transport.tls)
                report.tls_version, report.tls_suite = transport.tls.version, transport.tls.suite
            if reply.status != 200:
                report.state = f"refused by HTTP {reply.status}"
                raise DmClientError(f"the DM server answered HTTP {reply.status}")
            if session.state in (ClientState.ENDED, ClientState.ABORTED):
                break  # our last message ended the session (Alert 1223): nothing to read
            ctype = (reply.header("content-type") or "").split(";", 1)[0].strip()
            try:
                msg = m.decode(reply.body, ctype)
                targets = _targets(msg)
                out = session.receive(reply.body, ctype, reply.header("x-syncml-hmac"))
            except (MessageError, ProtocolError) as exc:
                report.state = "failed"
                raise DmClientError(f"the server's message is refused: {exc}") from None
            if msg.hdr.resp_uri:  # the server may move the session (DM RepPro §6.1.6)
                target = msg.hdr.resp_uri
            for c in out.message.body.commands if out and out.message else ():
                if isinstance(c, m.Status) and c.cmd_ref in targets and c.cmd_ref:
                    cmd, uri = targets[c.cmd_ref]
                    if c.msg_ref == msg.hdr.msg_id:
                        report.commands.append((cmd, uri, c.data))
                elif isinstance(c, m.Status) and c.cmd_ref == 0:
                    report.server_status = c.data
        report.state = session.state.value
        if session.state is not ClientState.ENDED:
            raise DmClientError(f"the session was {session.state.value}")
