"""The SCWS admin command executor, row by row of its table, against MemoryStore."""

from __future__ import annotations

import json

import pytest

from openscws.acp.document import to_document
from openscws.acp.rules import decode_rules
from openscws.agent.commands import ACP_KEY, ScwsAdminExecutor
from openscws.amdb.embedded import EmbeddedRequest, EmbeddedResponse
from openscws.errors import StoreError
from openscws.scws.model import MemoryStore, Realm, Resource

NOW = 1_700_000_000.5
TX = ("X-SCWS-Transaction", "tx-1")
HTML = ("Content-Type", "text/html")
APP = "ab" * 32
MAX = 256


@pytest.fixture
def store() -> MemoryStore:
    s = MemoryStore()
    s.put(Resource("/old.html", b"old", "text/html", 1000))
    s.put(Resource("/app/a.js", b"a", "text/javascript"))
    s.put(Resource("/app/sub/b.css", b"b", "text/css"))
    s.put(Resource("/apple.txt", b"x", "text/plain"))
    return s


@pytest.fixture
def ex(store: MemoryStore) -> ScwsAdminExecutor:
    return ScwsAdminExecutor(store, max_resource=MAX)


def run(
    ex: ScwsAdminExecutor,
    method: str,
    target: str,
    *headers: tuple[str, str],
    body: bytes = b"",
) -> EmbeddedResponse:
    answer = ex.execute(EmbeddedRequest(method, target, headers, body), NOW)
    answer.encode()  # always sendable
    return answer


def commit(ex: ScwsAdminExecutor, txid: str = "tx-1") -> EmbeddedResponse:
    return run(ex, "POST", "/.scws/commit", ("X-SCWS-Transaction", txid))


def body_json(answer: EmbeddedResponse) -> object:
    assert answer.header("content-type") == "application/json"
    return json.loads(answer.body)


# -- resources ----------------------------------------------------------------------------------


def test_put_new_then_replace(ex: ScwsAdminExecutor, store: MemoryStore) -> None:
    created = run(ex, "PUT", "/new.html", HTML, TX, body=b"<p>new</p>")
    assert created.status == 201
    assert created.header("etag") == Resource("/n", b"<p>new</p>").etag
    assert store.get("/new.html") is None  # staged only
    assert run(ex, "PUT", "/new.html", HTML, TX, body=b"v2").status == 204
    assert run(ex, "PUT", "/old.html", HTML, TX, body=b"v2").status == 204
    assert body_json(commit(ex)) == {"committed": 3}
    new = store.get("/new.html")
    assert new is not None
    assert (new.body, new.content_type, new.last_modified) == (b"v2", "text/html", 1_700_000_000)
    assert new.realm is None
    assert new.content_encoding is None


def test_put_keeps_content_headers_and_realm(ex: ScwsAdminExecutor, store: MemoryStore) -> None:
    extra = (("Content-Encoding", "gzip"), ("Content-Language", "fr"), ("X-SCWS-Realm", "staff"))
    run(ex, "PUT", "/p/doc.html", HTML, TX, *extra, body=b"gz")
    commit(ex)
    doc = store.get("/p/doc.html")
    assert doc is not None
    assert (doc.content_encoding, doc.content_language, doc.realm) == ("gzip", "fr", "staff")
    # An empty X-SCWS-Realm makes it public again.
    run(ex, "PUT", "/p/doc.html", HTML, ("X-SCWS-Transaction", "tx-2"), ("X-SCWS-Realm", ""))
    commit(ex, "tx-2")
    doc = store.get("/p/doc.html")
    assert doc is not None
    assert doc.realm is None


def test_put_keeps_the_cache_policy(ex: ScwsAdminExecutor, store: MemoryStore) -> None:
    policy = ("Cache-Control", "Max-Age=600")
    assert run(ex, "PUT", "/img.png", HTML, TX, policy, body=b"i").status == 201
    got = run(ex, "GET", "/img.png", TX)
    assert got.header("cache-control") == "max-age=600"
    bad = run(ex, "PUT", "/x.png", HTML, TX, ("Cache-Control", "max-age=soon"), body=b"i")
    assert bad.status == 400
    commit(ex)
    img = store.get("/img.png")
    assert img is not None
    assert img.cache_control == "max-age=600"
    assert store.get("/x.png") is None


def test_now_fn_dates_resources(store: MemoryStore) -> None:
    ex = ScwsAdminExecutor(store, max_resource=10, now_fn=lambda: 42.9)
    run(ex, "PUT", "/d", HTML, TX)
    commit(ex)
    d = store.get("/d")
    assert d is not None
    assert d.last_modified == 42


def test_get_and_head_read_the_staged_view(ex: ScwsAdminExecutor) -> None:
    got = run(ex, "GET", "/old.html")
    assert (got.status, got.body) == (200, b"old")
    assert got.header("content-type") == "text/html"
    assert got.header("etag") == Resource("/x", b"old").etag
    assert got.header("last-modified") == "Thu, 01 Jan 1970 00:16:40 GMT"
    run(
        ex,
        "PUT",
        "/old.html",
        ("Content-Type", "text/plain"),
        ("X-SCWS-Realm", "r"),
        TX,
        body=b"new",
    )
    got = run(ex, "GET", "/old.html")
    assert (got.body, got.header("content-type"), got.header("x-scws-realm")) == (
        b"new",
        "text/plain",
        "r",
    )
    head = run(ex, "HEAD", "/old.html")
    assert (head.status, head.body, head.header("etag")) == (200, b"", got.header("etag"))
    run(ex, "DELETE", "/old.html", TX)
    assert run(ex, "GET", "/old.html").status == 404
    assert run(ex, "HEAD", "/nothing").status == 404


def test_delete_resource(ex: ScwsAdminExecutor, store: MemoryStore) -> None:
    assert run(ex, "DELETE", "/old.html", TX).status == 204
    assert run(ex, "DELETE", "/old.html", TX).status == 404
    assert run(ex, "DELETE", "/never", TX).status == 404
    assert store.get("/old.html") is not None
    assert body_json(commit(ex)) == {"committed": 1}
    assert store.get("/old.html") is None


def test_delete_directory(ex: ScwsAdminExecutor, store: MemoryStore) -> None:
    answer = run(ex, "DELETE", "/app/", TX)
    assert (answer.status, answer.header("x-scws-deleted")) == (204, "2")
    assert run(ex, "DELETE", "/app/", TX).status == 404
    assert run(ex, "DELETE", "/nodir/", TX).status == 404
    commit(ex)
    assert store.paths() == ["/apple.txt", "/old.html"]  # "/apple.txt" is not under "/app/"


@pytest.mark.parametrize(
    "target",
    [
        "/a/../b",
        "/a/./b",
        "/a//b",
        "/%2e%2e/x",
        "/a%00b",
        "/a%5cb",
        "/a?x=1",
        "/%ff",
        "relative",
        "*",
        "/" + "a" * 1030,
    ],
)
def test_bad_paths_are_400(ex: ScwsAdminExecutor, target: str) -> None:
    assert run(ex, "PUT", target, HTML, TX).status == 400
    assert run(ex, "GET", target).status == 400


def test_percent_encoded_paths_are_decoded(ex: ScwsAdminExecutor, store: MemoryStore) -> None:
    assert run(ex, "PUT", "/caf%C3%A9%20menu.html", HTML, TX).status == 201
    commit(ex)
    assert store.get("/café menu.html") is not None


def test_put_refusals(ex: ScwsAdminExecutor, store: MemoryStore) -> None:
    assert run(ex, "PUT", "/a", TX).status == 400  # no Content-Type
    assert run(ex, "PUT", "/a", ("Content-Type", ""), TX).status == 400
    assert run(ex, "PUT", "/a", ("Content-Type", "html"), TX).status == 400
    assert run(ex, "PUT", "/a", HTML, ("X-SCWS-Realm", 'a"b'), TX).status == 400
    assert run(ex, "PUT", "/dir/", HTML, TX).status == 400
    assert run(ex, "PUT", "/a", HTML, TX, body=b"x" * (MAX + 1)).status == 413
    assert run(ex, "PUT", "/a", HTML, TX, body=b"x" * MAX).status == 201
    answer = run(ex, "PATCH", "/a", HTML, TX)
    assert (answer.status, answer.header("allow")) == (405, "GET, HEAD, PUT, DELETE")
    assert answer.header("content-type") == "text/plain; charset=utf-8"
    assert answer.body


def test_store_errors_are_400(store: MemoryStore) -> None:
    class Picky(MemoryStore):
        def begin(self, txid: str):  # type: ignore[no-untyped-def]
            tx = super().begin(txid)

            def put(resource: Resource) -> None:
                raise StoreError("no room for that path")

            tx.put = put  # type: ignore[method-assign]
            return tx

    ex = ScwsAdminExecutor(Picky(), max_resource=10)
    answer = run(ex, "PUT", "/a", HTML, TX)
    assert answer.status == 400
    assert b"no room" in answer.body


def test_scws_paths_are_never_resources(ex: ScwsAdminExecutor, store: MemoryStore) -> None:
    for target in ("/.scws", "/.scws/", "/.scws/index.html", "/.scws/realms/", "/.scws/acp/x"):
        assert run(ex, "PUT", target, HTML, TX).status == 404, target
    assert run(ex, "GET", "/.scws/unknown").status == 404
    commit(ex)
    assert not any(p.startswith("/.scws") for p in store.paths())


# -- transactions -------------------------------------------------------------------------------


def test_mutations_need_a_transaction_id(ex: ScwsAdminExecutor) -> None:
    for method, target, extra in [
        ("PUT", "/a", (HTML,)),
        ("DELETE", "/old.html", ()),
        ("DELETE", "/app/", ()),
        ("PUT", "/.scws/realms/r", ()),
        ("DELETE", "/.scws/realms/r", ()),
        ("PUT", "/.scws/values/k", ()),
        ("DELETE", "/.scws/values/k", ()),
        ("PUT", "/.scws/acp", ()),
        ("POST", "/.scws/commit", ()),
    ]:
        body = b"[]" if target == "/.scws/acp" else b"{}"
        assert run(ex, method, target, *extra, body=body).status == 428, (method, target)
    for bad in ("", "a b", "x" * 65, "tx/1"):
        assert run(ex, "PUT", "/a", HTML, ("X-SCWS-Transaction", bad)).status == 400


def test_one_transaction_at_a_time(ex: ScwsAdminExecutor) -> None:
    assert run(ex, "PUT", "/a", HTML, TX).status == 201
    assert ex.transaction == "tx-1"
    assert run(ex, "PUT", "/b", HTML, ("X-SCWS-Transaction", "tx-2")).status == 409
    assert commit(ex, "tx-2").status == 409
    # After the commit, a new one may start.
    answer = commit(ex)
    assert (answer.status, answer.header("x-scws-transaction")) == (200, "tx-1")
    assert ex.transaction is None
    assert run(ex, "PUT", "/b", HTML, ("X-SCWS-Transaction", "tx-2")).status == 201


def test_session_dropped_before_commit_leaves_the_store_unchanged(
    ex: ScwsAdminExecutor, store: MemoryStore
) -> None:
    before = {p: store.get(p) for p in store.paths()}
    run(ex, "PUT", "/new", HTML, TX, body=b"n")
    run(ex, "PUT", "/old.html", HTML, TX, body=b"changed")
    run(ex, "DELETE", "/app/", TX)
    run(ex, "PUT", "/.scws/realms/r", TX, body=b"{}")
    run(ex, "PUT", "/.scws/values/k", TX, body=b"v")
    ex.end(False)
    assert {p: store.get(p) for p in store.paths()} == before
    assert store.realm("r") is None
    assert store.get_value("k") is None
    assert not store.committed("tx-1")
    assert ex.transaction is None


def test_end_ok_without_commit_also_aborts(ex: ScwsAdminExecutor, store: MemoryStore) -> None:
    run(ex, "PUT", "/new", HTML, TX)
    ex.end(True)
    assert store.get("/new") is None
    ex.end(True)  # nothing open: harmless


def test_retry_after_commit_does_not_reapply(ex: ScwsAdminExecutor, store: MemoryStore) -> None:
    run(ex, "PUT", "/counter", HTML, TX, body=b"1")
    assert body_json(commit(ex)) == {"committed": 1}
    ex.end(True)
    # Meanwhile another session changes the resource.
    store.put(Resource("/counter", b"2", "text/html"))
    # The first session is retried (its answer was lost): same txid, same commands.
    retry = ScwsAdminExecutor(store, max_resource=MAX)
    assert run(retry, "PUT", "/counter", HTML, TX, body=b"1").status == 204
    answer = commit(retry)
    assert answer.status == 200
    assert answer.header("x-scws-transaction") == "tx-1"
    assert body_json(answer) == {"committed": 0, "already": True}
    counter = store.get("/counter")
    assert counter is not None
    assert counter.body == b"2"
    assert retry.transaction is None


def test_commit_with_nothing_staged_is_recorded(ex: ScwsAdminExecutor, store: MemoryStore) -> None:
    assert body_json(commit(ex, "empty")) == {"committed": 0}
    assert store.committed("empty")
    assert body_json(commit(ex, "empty")) == {"committed": 0, "already": True}


def test_commit_failure_is_500(store: MemoryStore) -> None:
    class Broken(MemoryStore):
        def begin(self, txid: str):  # type: ignore[no-untyped-def]
            tx = super().begin(txid)

            def commit() -> None:
                raise StoreError("disk full")

            tx.commit = commit  # type: ignore[method-assign]
            return tx

    ex = ScwsAdminExecutor(Broken(), max_resource=10)
    run(ex, "PUT", "/a", HTML, TX)
    assert commit(ex).status == 500
    assert ex.transaction is None


def test_transaction_audit(ex: ScwsAdminExecutor) -> None:
    assert run(ex, "GET", "/.scws/transactions/tx-1").status == 404
    run(ex, "PUT", "/a", HTML, TX)
    commit(ex)
    answer = run(ex, "GET", "/.scws/transactions/tx-1")
    assert body_json(answer) == {"txid": "tx-1", "committed": True}
    assert run(ex, "GET", "/.scws/transactions/bad%20id").status == 400
    assert run(ex, "DELETE", "/.scws/transactions/tx-1", TX).status == 405


# -- /.scws/ objects ----------------------------------------------------------------------------


def test_realms(ex: ScwsAdminExecutor, store: MemoryStore) -> None:
    spec = {"users": {"alice": "pw", "bob": "secret"}, "schemes": ["basic", "Digest"]}
    target = "/.scws/realms/Staff%20Area"
    assert run(ex, "PUT", target, TX, body=json.dumps(spec).encode()).status == 201
    assert run(ex, "PUT", target, TX, body=b'{"users": {"alice": "pw2"}}').status == 204
    commit(ex)
    assert store.realm("Staff Area") == Realm("Staff Area", {"alice": "pw2"}, ("Digest", "Basic"))
    tx2 = ("X-SCWS-Transaction", "tx-2")
    assert run(ex, "DELETE", target, tx2).status == 204
    assert run(ex, "DELETE", target, tx2).status == 404
    commit(ex, "tx-2")
    assert store.realm("Staff Area") is None


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"\xff",
        b"[]",
        b'{"users": [], "schemes": ["Basic"]}',
        b'{"users": {"a": 1}}',
        b'{"users": {"a:b": "pw"}}',
        b'{"users": {"": "pw"}}',
        b'{"users": {"a": "p\\nw"}}',
        b'{"schemes": []}',
        b'{"schemes": ["NTLM"]}',
        b'{"schemes": ["Basic", "basic"]}',
        b'{"schemes": [1]}',
        b'{"user": {}}',
    ],
)
def test_bad_realms_are_400(ex: ScwsAdminExecutor, body: bytes) -> None:
    assert run(ex, "PUT", "/.scws/realms/r", TX, body=body).status == 400


def test_realm_refusals(ex: ScwsAdminExecutor) -> None:
    assert run(ex, "PUT", "/.scws/realms/a%22b", TX, body=b"{}").status == 400
    assert run(ex, "PUT", "/.scws/realms/" + "r" * 65, TX, body=b"{}").status == 400
    assert run(ex, "PUT", "/.scws/realms/r", TX, body=b" " * (MAX + 1)).status == 413
    answer = run(ex, "GET", "/.scws/realms/r")
    assert (answer.status, answer.header("allow")) == (405, "PUT, DELETE")


def test_values(ex: ScwsAdminExecutor, store: MemoryStore) -> None:
    assert run(ex, "PUT", "/.scws/values/app.greeting", TX, body=b"\x00hello").status == 201
    assert run(ex, "PUT", "/.scws/values/app.greeting", TX, body=b"hi").status == 204
    assert run(ex, "PUT", "/.scws/values/a/b", TX, body=b"").status == 201
    commit(ex)
    assert store.get_value("app.greeting") == b"hi"
    assert store.get_value("a/b") == b""
    tx2 = ("X-SCWS-Transaction", "tx-2")
    assert run(ex, "DELETE", "/.scws/values/app.greeting", tx2).status == 204
    assert run(ex, "DELETE", "/.scws/values/nothing", tx2).status == 404
    commit(ex, "tx-2")
    assert store.get_value("app.greeting") is None


def test_value_refusals(ex: ScwsAdminExecutor) -> None:
    assert run(ex, "PUT", "/.scws/values/k", TX, body=b"x" * (MAX + 1)).status == 413
    assert run(ex, "PUT", "/.scws/values/" + "k" * 257, TX).status == 400
    assert run(ex, "PUT", "/.scws/values/k%00", TX).status == 400
    assert run(ex, "PUT", "/.scws/values/scws.acp", TX, body=b"[]").status == 403
    assert run(ex, "GET", "/.scws/values/k").status == 405


def test_acp(ex: ScwsAdminExecutor, store: MemoryStore) -> None:
    policy = [{"app": APP.upper(), "allow": ["/app/", "/index.html"]}, {"app": "*", "allow": []}]
    assert run(ex, "PUT", "/.scws/acp", TX, body=json.dumps(policy).encode()).status == 204
    assert store.get_value(ACP_KEY) is None
    commit(ex)
    stored = store.get_value(ACP_KEY)
    assert stored is not None
    # Stored as the ARA-M's rules (GP SEAC coding), the earlier form converted.
    assert to_document(decode_rules(stored)) == {
        "rules": [
            {"app": f"sha256:{APP}", "ports": [3516, 4116], "access": "allow",
             "paths": ["/app/", "/index.html"]},
            {"app": "any", "ports": [3516, 4116], "access": "allow"},
        ]
    }  # fmt: skip
    assert run(ex, "GET", "/.scws/acp").header("allow") == "PUT"
    doc = {"rules": [{"app": "uid:0", "ports": [4116], "access": "deny"}]}
    tx2 = ("X-SCWS-Transaction", "tx-2")
    assert run(ex, "PUT", "/.scws/acp", tx2, body=json.dumps(doc).encode()).status == 204
    commit(ex, "tx-2")
    stored = store.get_value(ACP_KEY)
    assert stored is not None
    assert to_document(decode_rules(stored)) == {
        "rules": [{"app": "uid:0", "ports": [4116], "access": "deny"}]
    }


@pytest.mark.parametrize(
    "policy",
    [
        {"app": "*", "allow": []},
        [{"app": "abc", "allow": []}],
        [{"app": "*"}],
        [{"app": "*", "allow": "/"}],
        [{"app": "*", "allow": ["relative/"]}],
        [{"app": "*", "allow": [1]}],
        [{"app": "*", "allow": [], "extra": 1}],
        ["*"],
    ],
)
def test_bad_acp_is_400(ex: ScwsAdminExecutor, policy: object) -> None:
    assert run(ex, "PUT", "/.scws/acp", TX, body=json.dumps(policy).encode()).status == 400


def test_resources_audit(ex: ScwsAdminExecutor) -> None:
    run(ex, "PUT", "/secret.html", HTML, ("X-SCWS-Realm", "staff"), TX, body=b"s")
    run(ex, "DELETE", "/app/", TX)
    listing = body_json(run(ex, "GET", "/.scws/resources"))
    assert listing == [
        {"path": "/apple.txt", "etag": Resource("/", b"x").etag, "length": 1,
         "content_type": "text/plain", "realm": None},
        {"path": "/old.html", "etag": Resource("/", b"old").etag, "length": 3,
         "content_type": "text/html", "realm": None},
        {"path": "/secret.html", "etag": Resource("/", b"s").etag, "length": 1,
         "content_type": "text/html", "realm": "staff"},
    ]  # fmt: skip
    assert run(ex, "POST", "/.scws/resources", TX).status == 405


def test_wrong_methods_on_admin_objects(ex: ScwsAdminExecutor) -> None:
    for method, target, allow in [
        ("GET", "/.scws/commit", "POST"),
        ("PUT", "/.scws/resources", "GET"),
        ("POST", "/.scws/realms/r", "PUT, DELETE"),
        ("DELETE", "/.scws/acp", "PUT"),
    ]:
        answer = run(ex, method, target, TX)
        assert (answer.status, answer.header("allow")) == (405, allow), target
