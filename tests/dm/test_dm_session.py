"""The DM session cores against each other: packages 1 to 4, authentication with nonce
rollover, MsgRef/CmdRef checks, multi-message packages, aborts and fuzzing."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openscws.dm import auth
from openscws.dm import message as m
from openscws.dm.errors import MessageError, ProtocolError
from openscws.dm.session import (
    ClientSession,
    ClientState,
    DeviceAccount,
    Outgoing,
    ServerSession,
    ServerState,
)
from openscws.dm.tree import AppAuth, Tree, dm_account, standard_tree

SERVER = "https://dm.example/"
XML = m.CONTENT_TYPE_XML


def device(kind: str = "DIGEST", nonce: bytes = b"stale", secret: str = "s3cret") -> Tree:
    tree = standard_tree(dev_id="IMEI:1", man="openscws", mod="virtual")
    dm_account(
        tree,
        "1",
        server_id="srv",
        addr=SERVER,
        auth=(AppAuth("CLCRED", kind, "dev", secret, nonce),),
    )
    return tree


def nonces() -> object:
    counter = itertools.count()
    return lambda: f"nonce-{next(counter)}".encode()


def server(
    kind: str = auth.AUTH_MD5, commands: tuple[m.Command, ...] = (), **kw: object
) -> ServerSession:
    account = DeviceAccount("dev", "s3cret", kind, b"N0")
    return ServerSession(
        server_uri=SERVER,
        account=account,
        new_nonce=nonces(),  # type: ignore[arg-type]
        commands=commands,
        **kw,  # type: ignore[arg-type]
    )


def hmac_of(out: Outgoing) -> str | None:
    return dict(out.headers).get(auth.HMAC_HEADER)


def run(client: ClientSession, srv: ServerSession) -> list[m.SyncML]:
    """Pumps the session to its end; the messages exchanged, in order."""
    seen: list[m.SyncML] = []
    out: Outgoing | None = client.start()
    while out is not None:
        assert out.message is not None
        seen.append(out.message)
        reply = srv.receive(out.body, out.content_type, hmac_of(out))
        if reply is None:
            break
        assert reply.message is not None
        seen.append(reply.message)
        out = client.receive(reply.body, reply.content_type, hmac_of(reply))
        assert len(seen) < 100
    return seen


def get(uri: str) -> m.Get:
    return m.Get(cmd_id=0, items=(m.Item(target=m.Target(loc_uri=uri)),))


def hdr_status(msg: m.SyncML) -> m.Status:
    s = msg.body.commands[0]
    assert isinstance(s, m.Status)
    assert s.cmd == "SyncHdr"
    return s


JOB = (
    get("./DevInfo/DevId"),
    m.Replace(
        cmd_id=0, items=(m.Item(target=m.Target(loc_uri="./DMAcc/1/Name"), data="Operator"),)
    ),
    m.Add(cmd_id=0, items=(m.Item(target=m.Target(loc_uri="./DMAcc/1/AppAuth/1/X"), data="y"),)),
    get("./DMAcc/1/AppAuth/1/AAuthSecret"),
    m.Exec(cmd_id=0, item=m.Item(target=m.Target(loc_uri="./DevDetail/SwV"), data="go")),
    m.Atomic(
        cmd_id=0,
        commands=(
            m.Add(cmd_id=0, items=(m.Item(target=m.Target(loc_uri="./DMAcc/1/Z"), data="1"),)),
            m.Add(cmd_id=0, items=(m.Item(target=m.Target(loc_uri="./DMAcc/1/AppID"), data=""),)),
        ),
    ),
)


@pytest.mark.parametrize("wbxml_form", [False, True])
def test_md5_session_with_challenge_and_rollover(wbxml_form: bool) -> None:
    tree = device()
    ran: list[str | bytes | None] = []
    client = ClientSession(
        tree,
        "1",
        session_id="0",
        wbxml_form=wbxml_form,
        exec_handlers={"DevDetail/SwV": lambda data: ran.append(data) or 200},
    )
    srv = server(commands=JOB, wbxml_form=wbxml_form)
    seen = run(client, srv)
    # Package #1 with a stale nonce -> 401 + Chal; Package #1 again -> 212 + commands.
    assert hdr_status(seen[1]).data == 401
    assert seen[2].hdr.msg_id == 2
    assert seen[2].hdr.session_id == "0"
    assert hdr_status(seen[3]).data == 212
    assert client.state is ClientState.ENDED
    assert srv.state is ServerState.ENDED
    assert srv.devinfo["DevId"] == "IMEI:1"
    results = sorted(srv.results.values(), key=lambda r: r.cmd_id)
    assert (results[0].cmd, results[0].status) == ("Get", 200)
    assert results[0].items[0].data == "IMEI:1"
    assert (results[1].cmd, results[1].status) == ("Replace", 200)
    assert tree.get("./DMAcc/1/Name").data == "Operator"
    assert ran == ["go"]
    statuses = sorted((r.cmd, r.status) for r in srv.results.values())
    assert ("Atomic", 507) in statuses  # one Add failed (418): the whole Atomic rolled back
    assert ("Add", 216) in statuses
    assert ("Add", 418) in statuses
    assert tree.find("./DMAcc/1/Z") is None
    assert ("Get", 405) in statuses  # the secret is not readable
    # The nonce rolled over at the 212: the client stores the server's new NextNonce.
    assert tree.find("./DMAcc/1/AppAuth/1/AAuthData").value == srv.account.nonce  # type: ignore[union-attr]
    assert srv.account.nonce == b"nonce-1"


def test_replayed_package1_is_refused() -> None:
    client = ClientSession(device(nonce=b"N0"), "1", session_id="7")
    srv = server()
    pkg1 = client.start()
    first = srv.receive(pkg1.body, pkg1.content_type)
    assert first is not None
    assert first.message is not None
    assert hdr_status(first.message).data == 212  # the right nonce: accepted at once
    again = server()
    again.account.nonce = srv.account.nonce  # what the server now expects
    replay = again.receive(pkg1.body, pkg1.content_type)
    assert replay is not None
    assert replay.message is not None
    assert hdr_status(replay.message).data == 401
    assert again.state is ServerState.CHALLENGED


def test_basic_and_missing_credentials() -> None:
    client = ClientSession(device(kind="BASIC"), "1", session_id="1")
    srv = server(kind=auth.AUTH_BASIC, commands=(get("./DevInfo/Man"),))
    seen = run(client, srv)
    assert hdr_status(seen[1]).data == 212
    assert next(iter(srv.results.values())).items[0].data == "openscws"
    # No credentials at all: 407 with a challenge, and statuses only.
    tree = device()
    tree.find("./DMAcc/1/AppAuth").children.clear()  # type: ignore[union-attr]
    client = ClientSession(tree, "1", session_id="1")
    srv = server()
    out = client.start()
    reply = srv.receive(out.body, out.content_type)
    assert reply is not None
    assert reply.message is not None
    assert hdr_status(reply.message).data == 407
    assert hdr_status(reply.message).chal is not None
    assert all(isinstance(c, m.Status) and c.data == 407 for c in reply.message.body.commands)
    assert [c.cmd for c in reply.message.body.commands] == ["SyncHdr", "Alert", "Replace"]


def test_wrong_password_gives_up() -> None:
    client = ClientSession(device(secret="wrong"), "1", session_id="1")
    srv = server(commands=(get("./DevInfo/Man"),))
    seen = run(client, srv)
    assert [hdr_status(x).data for x in seen[1::2]] == [401, 401, 401]
    assert client.state is ClientState.ABORTED
    assert srv.state is ServerState.ENDED
    assert srv.results == {}


def test_hmac_session() -> None:
    client = ClientSession(device(kind="HMAC", nonce=b"N0"), "1", session_id="2")
    srv = server(kind=auth.AUTH_MAC, commands=(get("./DevInfo/Mod"), get("./DevInfo/Lang")))
    seen = run(client, srv)
    assert [hdr_status(x).data for x in seen[1::2]] == [200, 200]  # 200 each time, not 212
    assert all(x.hdr.cred is None for x in seen[0::2])
    assert sorted(str(r.items[0].data) for r in srv.results.values()) == ["en", "virtual"]
    # A message with a forged MAC is refused.
    client = ClientSession(device(kind="HMAC", nonce=b"N0"), "1", session_id="2")
    srv = server(kind=auth.AUTH_MAC)
    out = client.start()
    forged = str(hmac_of(out)).replace("mac=", "mac=AA")
    reply = srv.receive(out.body, out.content_type, forged)
    assert reply is not None
    assert reply.message is not None
    assert hdr_status(reply.message).data == 401
    # A malformed header is a wrong credential too; a missing one asks for it (407).
    for header, code in (("mac=", 401), (None, 407)):
        srv = server(kind=auth.AUTH_MAC)
        reply = srv.receive(out.body, out.content_type, header)
        assert reply is not None
        assert reply.message is not None
        assert hdr_status(reply.message).data == code
        assert hdr_status(reply.message).chal is not None


def test_multi_message_package() -> None:
    client = ClientSession(device(nonce=b"N0"), "1", session_id="3", max_msg_size=1200)
    commands = tuple(get(f"./DevDetail/{k}") for k in ("DevTyp", "OEM", "FwV", "SwV", "HwV"))
    srv = server(commands=commands * 3)
    seen = run(client, srv)
    server_msgs = seen[1::2]
    assert len(server_msgs) > 2
    assert all(len(m.encode(x)) <= 1200 for x in server_msgs)
    assert not server_msgs[0].body.final
    nexts = [
        c
        for x in seen[0::2]
        for c in x.body.commands
        if isinstance(c, m.Alert) and c.data == m.AlertCode.NEXT_MESSAGE
    ]
    assert nexts  # the client asked for the next message of the package
    assert len(srv.results) == 15
    assert srv.state is ServerState.ENDED


def test_wrong_refs_leave_the_session_intact() -> None:
    client = ClientSession(device(nonce=b"N0"), "1", session_id="4")
    srv = server(commands=(get("./DevInfo/Man"),))
    out = client.start()
    pkg2 = srv.receive(out.body, out.content_type)
    assert pkg2 is not None
    pkg3 = client.receive(pkg2.body, pkg2.content_type)
    assert pkg3 is not None
    assert pkg3.message is not None
    before = (srv.state, srv.client_msg_id, srv.msg_id, dict(srv.results))
    for bad, why in (
        (pkg3.body.replace(b"<MsgRef>1</MsgRef>", b"<MsgRef>9</MsgRef>"), "MsgRef 9"),
        (pkg3.body.replace(b"<CmdRef>1</CmdRef>", b"<CmdRef>99</CmdRef>", 1), "CmdRef 99"),
        (pkg3.body.replace(b"<MsgID>2</MsgID>", b"<MsgID>1</MsgID>"), "out of sequence"),
        (pkg3.body.replace(b"<SessionID>4<", b"<SessionID>5<"), "SessionID"),
        (pkg3.body.replace(b"<VerDTD>1.2<", b"<VerDTD>1.1<"), "VerDTD"),
    ):
        assert bad != pkg3.body, why
        with pytest.raises(ProtocolError, match=why):
            srv.receive(bad, pkg3.content_type)
        assert (srv.state, srv.client_msg_id, srv.msg_id, dict(srv.results)) == before
    with pytest.raises(MessageError):
        srv.receive(b"<SyncML", pkg3.content_type)
    fresh = server()
    with pytest.raises(ProtocolError, match="without Alert 1200 or 1201"):
        fresh.receive(out.body.replace(b"<Data>1201</Data>", b"<Data>1226</Data>"), XML)
    assert fresh.state is ServerState.IDLE
    end = srv.receive(pkg3.body, pkg3.content_type)  # the real one still works
    assert end is not None
    assert srv.state is ServerState.ENDED
    assert client.receive(end.body, end.content_type) is None
    with pytest.raises(ProtocolError, match="ended"):
        srv.receive(pkg3.body.replace(b"<MsgID>2<", b"<MsgID>3<"), pkg3.content_type)


def test_client_abort_and_client_checks() -> None:
    client = ClientSession(device(nonce=b"N0"), "1", session_id="5")
    srv = server(commands=(get("./DevInfo/Man"),))
    out = client.start()
    pkg2 = srv.receive(out.body, out.content_type)
    assert pkg2 is not None
    with pytest.raises(ProtocolError, match="MsgRef"):
        client.receive(pkg2.body.replace(b"<MsgRef>1<", b"<MsgRef>3<", 1), pkg2.content_type)
    assert client.state is ClientState.SETUP
    bye = client.abort()
    assert srv.receive(bye.body, bye.content_type) is None
    assert srv.state is ServerState.ABORTED
    assert client.state is ClientState.ABORTED
    with pytest.raises(ProtocolError, match="not allowed"):
        client.start()


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 10_000), st.binary(min_size=1, max_size=3), st.booleans())
def test_fuzz_session_typed_errors_only(pos: int, junk: bytes, wbxml_form: bool) -> None:
    client = ClientSession(device(nonce=b"N0"), "1", session_id="6", wbxml_form=wbxml_form)
    srv = server(commands=(get("./DevInfo/Man"),), wbxml_form=wbxml_form)
    out = client.start()
    pkg2 = srv.receive(out.body, out.content_type)
    assert pkg2 is not None
    pkg3 = client.receive(pkg2.body, pkg2.content_type)
    assert pkg3 is not None
    pos %= len(pkg3.body)
    mutated = pkg3.body[:pos] + junk + pkg3.body[pos + len(junk) :]
    before = (srv.state, srv.client_msg_id, srv.msg_id)
    try:
        srv.receive(mutated, pkg3.content_type)
    except (MessageError, ProtocolError):
        assert (srv.state, srv.client_msg_id, srv.msg_id) == before


def device_with_server_auth(
    server_secret: str = "srv-pass", nonce: bytes = b"S0", kind: str = "DIGEST"
) -> Tree:
    tree = standard_tree(dev_id="IMEI:1", man="openscws", mod="virtual")
    dm_account(
        tree,
        "1",
        server_id="srv",
        addr=SERVER,
        auth=(
            AppAuth("CLCRED", "DIGEST", "dev", "s3cret", b"N0"),
            AppAuth("SRVCRED", kind, "srv", server_secret, nonce),
        ),
    )
    return tree


def server_authenticating(
    password: str = "srv-pass",
    nonce: bytes = b"S0",
    commands: tuple[m.Command, ...] = (),
    kind: str = auth.AUTH_MD5,
) -> ServerSession:
    account = DeviceAccount(
        "dev",
        "s3cret",
        auth.AUTH_MD5,
        b"N0",
        server_id="srv",
        server_password=password,
        server_auth_type=kind,
        server_nonce=nonce,
    )
    return ServerSession(
        server_uri=SERVER,
        account=account,
        new_nonce=nonces(),  # type: ignore[arg-type]
        commands=commands,
        session_id="1A2B",
    )


RENAME = m.Replace(
    cmd_id=0, items=(m.Item(target=m.Target(loc_uri="./DMAcc/1/Name"), data="Renamed"),)
)


def test_package0_opens_a_mutually_authenticated_session() -> None:
    tree = device_with_server_auth()
    srv = server_authenticating(commands=(RENAME,))
    pkg0 = srv.account.package0(0x1A2B)
    client = ClientSession.from_package0(
        tree,
        "1",
        pkg0,
        new_nonce=lambda: b"client-nonce",
    )
    assert client.session_id == "1A2B"  # upper-case hex, no leading zeros
    seen = run(client, srv)
    alert = seen[0].body.commands[0]
    assert isinstance(alert, m.Alert)
    assert alert.data == m.AlertCode.SERVER_INITIATED
    assert seen[1].hdr.cred is not None  # the server authenticates itself in Package #2
    assert hdr_status(seen[2]).data == 212  # ... and the device accepts it
    assert hdr_status(seen[2]).chal is not None
    assert all(x.hdr.cred is None for x in seen[3::2])
    assert srv.account.server_nonce == b"client-nonce"  # rolled over for the next session
    assert tree.get("./DMAcc/1/Name").data == "Renamed"
    assert srv.state is ServerState.ENDED


def test_package0_refusals() -> None:
    tree = device_with_server_auth()
    forged = server_authenticating(password="guess").account.package0(1)
    with pytest.raises(ProtocolError, match="digest") as info:
        ClientSession.from_package0(tree, "1", forged, new_nonce=bytes)
    assert info.value.status == 401
    other = server_authenticating()
    other.account.server_id = "someone-else"
    with pytest.raises(ProtocolError, match="unknown server"):
        ClientSession.from_package0(tree, "1", other.account.package0(1), new_nonce=bytes)


def test_server_with_stale_nonce_retries_and_wrong_server_is_refused() -> None:
    # A stale server nonce: 401 + Chal, the server sends its commands again with the new one.
    tree = device_with_server_auth()
    srv = server_authenticating(nonce=b"old", commands=(RENAME,))
    client = ClientSession(tree, "1", session_id="1A2B", new_nonce=lambda: b"fresh")
    seen = run(client, srv)
    assert [hdr_status(x).data for x in seen[2::2]] == [401, 212]
    assert tree.get("./DMAcc/1/Name").data == "Renamed"
    assert [r.status for r in srv.results.values()] == [200]
    # A server that does not know the password: nothing is executed, the device gives up.
    tree = device_with_server_auth()
    srv = server_authenticating(password="guess", commands=(RENAME,))
    client = ClientSession(tree, "1", session_id="1A2B", new_nonce=lambda: b"fresh")
    seen = run(client, srv)
    assert [hdr_status(x).data for x in seen[2::2]] == [401, 401, 401]
    assert client.state is ClientState.ABORTED
    assert srv.state is ServerState.ABORTED
    assert tree.get("./DMAcc/1/Name").data == ""
    with pytest.raises(ValueError, match="new_nonce"):
        ClientSession(tree, "1", session_id="1")


@pytest.mark.parametrize("wbxml_form", [False, True])
def test_large_object_in_chunks(wbxml_form: bool) -> None:
    blob = "".join(f"{i:05d}<&>" for i in range(600))  # 4800 bytes, with XML escapes
    tree = device(nonce=b"N0")
    client = ClientSession(tree, "1", session_id="9", max_msg_size=1500, wbxml_form=wbxml_form)
    big = m.Replace(
        cmd_id=0,
        items=(
            m.Item(
                target=m.Target(loc_uri="./DMAcc/1/Name"),
                meta=m.Meta(format="chr", type="text/plain"),
                data=blob,
            ),
        ),
    )
    srv = server(commands=(big, get("./DevInfo/Man")), wbxml_form=wbxml_form)
    seen = run(client, srv)
    chunks = [c for x in seen[1::2] for c in x.body.commands if isinstance(c, m.Replace)]
    assert len(chunks) > 3
    assert all(len(m.encode(x, wbxml_form=wbxml_form)) <= 1500 for x in seen[1::2])
    assert chunks[0].items[0].meta is not None
    assert chunks[0].items[0].meta.size == len(blob)  # the whole size on the first chunk only
    assert all(c.items[0].meta is None or c.items[0].meta.size is None for c in chunks[1:])
    assert [c.items[0].more_data for c in chunks] == [True] * (len(chunks) - 1) + [False]
    assert tree.get("./DMAcc/1/Name").data == blob
    codes = [r.status for r in sorted(srv.results.values(), key=lambda r: r.cmd_id)]
    assert codes.count(213) == len(chunks) - 1
    assert codes.count(200) == 2
    assert srv.state is ServerState.ENDED


def test_large_object_refusals() -> None:
    client = ClientSession(device(), "1", session_id="1", max_obj_size=10)
    target = m.Target(loc_uri="./DMAcc/1/Name")

    def chunk(data: str, more: bool, size: int | None = None) -> m.Item:
        return m.Item(
            target=target, meta=m.Meta(size=size) if size else None, data=data, more_data=more
        )

    assert client._assemble("Replace", "./DMAcc/1/Name", chunk("abc", True))[0] == 400  # no Size
    assert client._assemble("Replace", "./DMAcc/1/Name", chunk("abc", True, 11))[0] == 413
    assert client._assemble("Replace", "./DMAcc/1/Name", chunk("abc", True, 5))[0] == 213
    assert client._assemble("Replace", "./DMAcc/1/Name", chunk("d", False))[0] == 424  # 4 != 5
    assert client._assemble("Replace", "./DMAcc/1/Name", chunk("abc", True, 5))[0] == 213
    assert client._assemble("Add", "./DMAcc/1/Name", chunk("de", False))[0] == 400  # interleaved
    assert client.partial is None


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 10_000), st.binary(min_size=1, max_size=3), st.booleans())
def test_fuzz_client_typed_errors_only(pos: int, junk: bytes, wbxml_form: bool) -> None:
    tree = device(nonce=b"N0")
    client = ClientSession(tree, "1", session_id="6", wbxml_form=wbxml_form)
    srv = server(commands=JOB, wbxml_form=wbxml_form)
    out = client.start()
    pkg2 = srv.receive(out.body, out.content_type)
    assert pkg2 is not None
    pos %= len(pkg2.body)
    mutated = pkg2.body[:pos] + junk + pkg2.body[pos + len(junk) :]
    before = (client.state, client.msg_id, client.server_msg_id)
    try:
        client.receive(mutated, pkg2.content_type)
    except (MessageError, ProtocolError):
        assert (client.state, client.msg_id, client.server_msg_id) == before
        assert tree.get("./DMAcc/1/Name").data == ""  # nothing of it was acted upon


def test_tables_are_closed() -> None:
    """Every state a table moves to is a state of that role, and the end states allow
    nothing: a message after the end is a protocol error, never a new session."""
    from openscws.dm.session import CLIENT_TABLE, SERVER_TABLE

    for table, ends in (
        (SERVER_TABLE, {ServerState.ENDED, ServerState.ABORTED}),
        (CLIENT_TABLE, {ClientState.ENDED, ClientState.ABORTED}),
    ):
        assert not [k for k in table if k[0] in ends]
        assert ends <= set(table.values())


def test_binary_node_read_in_the_xml_form() -> None:
    tree = device(nonce=b"N0")
    tree.add("./DMAcc/1/Blob", b"\xff\x00", fmt="bin")
    client = ClientSession(tree, "1", session_id="1")
    srv = server(commands=(get("./DMAcc/1/Blob"),))
    run(client, srv)
    (result,) = srv.results.values()
    assert result.items[0].data == "/wA="
    assert result.items[0].meta is not None
    assert result.items[0].meta.format == "b64"


def test_client_package_over_several_messages() -> None:
    tree = device(nonce=b"N0")
    for i in range(30):
        tree.add(f"./DMAcc/1/Note{i}", f"note {i} " * 8)
    client = ClientSession(tree, "1", session_id="8")
    srv = server(commands=tuple(get(f"./DMAcc/1/Note{i}") for i in range(30)), max_msg_size=1400)
    seen = run(client, srv)
    client_msgs = seen[2::2]  # after Package #1
    assert len(client_msgs) > 2
    assert all(len(m.encode(x)) <= 1400 for x in client_msgs)
    assert not client_msgs[0].body.final
    assert srv.state is ServerState.ENDED
    assert client.outbox == []
    got = {r.cmd_id: r for r in srv.results.values() if r.cmd == "Get"}
    assert len(got) == 30
    # The server asked for each further message with Alert 1222, and got its status.
    assert {r.status for r in srv.results.values() if r.cmd == "Alert"} == {200}
    assert all(r.status == 200 and r.items for r in got.values())


def test_server_hmac_on_every_message() -> None:
    tree = device_with_server_auth(kind="HMAC")
    commands = (RENAME, *(get(f"./DevDetail/{k}") for k in ("DevTyp", "OEM", "FwV")))
    srv = server_authenticating(kind=auth.AUTH_MAC, commands=commands)
    client = ClientSession(
        tree,
        "1",
        session_id="1A2B",
        new_nonce=nonces(),
        max_msg_size=1100,  # type: ignore[arg-type]
    )
    seen = run(client, srv)
    assert len(seen) > 4  # several server messages, each one MAC-checked
    assert all(x.hdr.cred is None for x in seen[1::2])
    assert [hdr_status(x).data for x in seen[2::2]] == [200] * len(seen[2::2])
    assert all(hdr_status(x).chal is not None for x in seen[2::2])  # a new nonce each time
    assert tree.get("./DMAcc/1/Name").data == "Renamed"
    # A server message with a wrong MAC is not acted upon.
    tree = device_with_server_auth(kind="HMAC")
    srv = server_authenticating(kind=auth.AUTH_MAC, password="guess", commands=(RENAME,))
    client = ClientSession(tree, "1", session_id="1A2B", new_nonce=nonces())  # type: ignore[arg-type]
    seen = run(client, srv)
    assert [hdr_status(x).data for x in seen[2::2]] == [401, 401, 401]
    assert tree.get("./DMAcc/1/Name").data == ""
    assert srv.state is ServerState.ABORTED
