"""Transactions on the card image: staging, read-through, commit, abort, committed ids, and
recovery from a crash at every filesystem step of a commit (and of the recovery itself)."""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openscws.errors import StoreError
from openscws.http.cache import SITE_CACHE_CONTROL_KEY
from openscws.scws.apps import Request, Response
from openscws.scws.model import (
    MemoryStore,
    MemoryTransaction,
    Realm,
    Resource,
    StoreTransaction,
    TransactionalStore,
)
from openscws.scws.site import Site
from openscws.store import CardImage, CardMeta
from openscws.store import journal as journal_mod
from openscws.store.atomic import TMP_PREFIX
from openscws.store.cardimage import CONTENT_MAGIC
from openscws.store.journal import CardImageTransaction

ICCID = "8949440000001234567"
PATHS = ["/", "/a", "/a/b", "/a/c/d", "/b", "/b/x", "/index.html"]
REALM_NAMES = ["r1", "r2", "r3"]
KEYS = ["k1", "k2", "k3"]

Store = CardImage | MemoryStore
Snapshot = tuple[list[Resource | None], dict[str, Realm | None], dict[str, bytes | None]]


def _snapshot(store: Store) -> Snapshot:
    paths = store.paths()
    if isinstance(store, CardImage):
        assert [r.path for r in store.resources()] == paths
    return (
        [store.get(p) for p in paths],
        {n: store.realm(n) for n in REALM_NAMES},
        {k: store.get_value(k) for k in KEYS},
    )


def _leftovers(root: Path) -> list[str]:
    found = [f"journal/{p.name}" for p in (root / "journal").iterdir()]
    for sub in ("", "content", "values"):
        found += [f"{sub}/{p.name}" for p in (root / sub).iterdir() if p.name[:5] == TMP_PREFIX]
    return found


def _reader(root: Path) -> CardImage:
    """An image that recovers nothing (CardImage.open would): what a live reader sees."""
    return CardImage(root, CardMeta.from_json((root / "card.json").read_bytes()), (0, 0, 0))


# --- the scenario used by the crash tests -------------------------------------------------


def _old_state(store: Store) -> None:
    store.put(Resource("/keep", b"keep", "text/plain", 1))
    store.put(Resource("/change", b"old", "text/plain", 1))
    store.put(Resource("/gone", b"gone", "text/plain", 1))
    store.put_realm(Realm("r1", {"u": "old"}))
    store.put_realm(Realm("r2", {"u": "doomed"}))
    store.set_value("k1", b"old")
    store.set_value("k3", b"doomed")


def _changes(tx: StoreTransaction) -> None:
    tx.put(Resource("/change", b"new" * 1000, "text/html", 2, content_encoding="gzip"))
    tx.put(Resource("/a/b", b"new-b", "text/plain", 2, realm="r1"))
    tx.put(Resource("/a/c/d", b"new-d", content_language="de-CH"))
    tx.delete("/gone")
    tx.put_realm(Realm("r1", {"u": "new"}, ("Digest",)))
    tx.delete_realm("r2")
    tx.put_realm(Realm("r3", {"v": "w"}))
    tx.set_value("k1", b"new")
    tx.set_value("k2", b"added")
    tx.delete_value("k3")


def _expected() -> tuple[Snapshot, Snapshot]:
    memory = MemoryStore()
    _old_state(memory)
    old = _snapshot(memory)
    tx = memory.begin("t")
    _changes(tx)
    tx.commit()
    return old, _snapshot(memory)


OLD, NEW = _expected()


@pytest.fixture
def image(tmp_path: Path) -> Iterator[CardImage]:
    with CardImage.create(tmp_path / "card", iccid=ICCID, now=1_700_000_000) as image:
        _old_state(image)
        yield image


# --- basics -------------------------------------------------------------------------------


def test_is_a_transactional_store(image: CardImage) -> None:
    store: TransactionalStore = image
    tx: StoreTransaction = store.begin("x")
    assert isinstance(tx, CardImageTransaction)
    assert tx.txid == "x"
    tx.abort()


def test_staged_on_disk_and_invisible_until_commit(image: CardImage) -> None:
    other = CardImage.open(image.root)
    tx = image.begin("t-1")
    _changes(tx)
    (journal,) = (image.root / "journal").iterdir()
    assert journal.name.startswith("tx-")
    assert journal.name.endswith("-t-1")
    assert len(list((journal / "content").iterdir())) == 3
    assert len(list((journal / "values").iterdir())) == 2
    assert (
        (journal / "content" / os.listdir(journal / "content")[0])
        .read_bytes()
        .startswith(CONTENT_MAGIC)
    )
    for store in (image, other, _reader(image.root)):
        assert _snapshot(store) == OLD
    assert not image.committed("t-1")
    tx.commit()
    for store in (image, other, _reader(image.root)):
        assert _snapshot(store) == NEW
        assert store.committed("t-1")
    assert _leftovers(image.root) == []


def test_reads_through_the_transaction(image: CardImage) -> None:
    tx = image.begin("t")
    memory = MemoryStore()
    _old_state(memory)
    mtx = memory.begin("t")
    for t in (tx, mtx):
        _changes(t)
    for t in (tx, mtx):
        assert t.paths() == ["/a/b", "/a/c/d", "/change", "/keep"]
        assert t.get("/gone") is None
        assert t.get("/keep") == Resource("/keep", b"keep", "text/plain", 1)
        assert t.realm("r2") is None
        assert t.realm("r1") == Realm("r1", {"u": "new"}, ("Digest",))
        assert t.get_value("k2") == b"added"
        assert t.get_value("k3") is None
        assert t.delete_value("k3") is False
        assert t.delete_realm("r2") is False
        assert t.delete("/a/b") is True
        assert t.delete("/a/b") is False
        assert t.get("/a/b") is None
        t.put(Resource("/a/b", b"again"))
        assert t.delete_tree("/a/") == 2
        assert t.paths() == ["/change", "/keep"]
    tx.commit()
    mtx.commit()
    assert _snapshot(image) == _snapshot(memory)


def test_delete_tree_wants_a_directory_prefix(image: CardImage) -> None:
    tx = image.begin("t")
    for prefix in ("/a", "a/", ""):
        with pytest.raises(StoreError, match="prefix"):
            tx.delete_tree(prefix)
    tx.abort()


def test_validation_at_staging(image: CardImage) -> None:
    tx = image.begin("t")
    with pytest.raises(StoreError):
        tx.put(Resource("/bad/../x", b""))
    with pytest.raises(StoreError):
        tx.put(Resource("/x", b"", content_encoding="gzip\r\nX-Evil: 1"))
    with pytest.raises(StoreError):
        tx.put_realm(Realm("bad\nname"))
    with pytest.raises(StoreError):
        tx.set_value("", b"")
    with pytest.raises(StoreError):
        tx.get("relative")
    tx.commit()  # nothing staged: a no-op, but committed
    assert image.committed("t")
    assert _snapshot(image) == OLD


def test_abort(image: CardImage) -> None:
    tx = image.begin("t")
    _changes(tx)
    tx.abort()
    assert _snapshot(image) == OLD
    assert _leftovers(image.root) == []
    assert not image.committed("t")
    tx.abort()  # again: nothing to do
    for call in (
        lambda: tx.put(Resource("/x", b"")),
        lambda: tx.get("/keep"),
        lambda: tx.paths(),
        tx.commit,
    ):
        with pytest.raises(RuntimeError, match="finished"):
            call()


def test_finished_after_commit(image: CardImage) -> None:
    tx = image.begin("t")
    tx.commit()
    with pytest.raises(RuntimeError, match="finished"):
        tx.set_value("k1", b"")
    with pytest.raises(RuntimeError, match="finished"):
        tx.commit()
    tx.abort()  # a no-op, as on MemoryTransaction


@pytest.mark.parametrize("txid", ["", "a" * 65, "a/b", "a b", "é", "x\n", "tx\x00"])
def test_bad_txid(image: CardImage, txid: str) -> None:
    with pytest.raises(StoreError, match="transaction id"):
        image.begin(txid)
    with pytest.raises(StoreError, match="transaction id"):
        image.committed(txid)


@pytest.mark.parametrize("txid", [".", "..", "-", "a" * 64, "Sess-1.2_3"])
def test_odd_but_valid_txids(image: CardImage, txid: str) -> None:
    tx = image.begin(txid)
    tx.put(Resource("/odd", txid.encode()))
    tx.commit()
    assert image.committed(txid)
    assert image.get("/odd") == Resource("/odd", txid.encode())
    assert _leftovers(image.root) == []


def test_committed_ids_keep_the_most_recent(
    image: CardImage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal_mod, "COMMITTED_KEPT", 3)
    for i in range(5):
        image.begin(f"s{i}").commit()
    image.begin("s4").commit()  # again: stays where it was
    assert [image.committed(f"s{i}") for i in range(5)] == [False, False, True, True, True]
    doc = json.loads((image.root / "committed.json").read_text())
    assert doc == {"committed": ["s2", "s3", "s4"]}
    assert CardImage.open(image.root).committed("s3")
    image.begin("aborted").abort()
    assert not image.committed("aborted")


def test_begin_with_the_id_of_an_unfinished_one_drops_it(image: CardImage) -> None:
    first = image.begin("same")
    first.put(Resource("/first", b"1"))
    second = image.begin("same")
    with pytest.raises(RuntimeError, match="finished"):
        first.put(Resource("/x", b""))
    assert second.get("/first") is None
    assert len(list((image.root / "journal").iterdir())) == 1
    second.put(Resource("/second", b"2"))
    second.commit()
    assert image.get("/first") is None
    assert image.get("/second") == Resource("/second", b"2")


def test_same_id_open_in_another_instance(image: CardImage) -> None:
    other = CardImage.open(image.root)
    theirs = other.begin("shared")
    theirs.put(Resource("/theirs", b"t"))
    with pytest.raises(StoreError, match="open elsewhere"):
        image.begin("shared")
    mine = image.begin("mine")  # sweeps dead journals, not their live one
    mine.commit()
    assert theirs.get("/theirs") == Resource("/theirs", b"t")
    theirs.commit()
    assert image.get("/theirs") == Resource("/theirs", b"t")


def test_two_open_transactions(image: CardImage) -> None:
    a, b = image.begin("a"), image.begin("b")
    a.put(Resource("/x", b"a"))
    b.put(Resource("/x", b"b"))
    b.put(Resource("/y", b"b"))
    a.commit()
    assert b.get("/x") == Resource("/x", b"b")
    b.commit()  # last committer wins
    assert image.get("/x") == Resource("/x", b"b")
    assert image.committed("a")
    assert image.committed("b")


def test_dead_journals_are_swept(image: CardImage) -> None:
    tx = image.begin("dead")
    tx.put(Resource("/never", b""))
    tx._release()  # what the death of its process does: the journal's flock goes
    live = image.begin("live")
    assert [p.name.endswith("-live") for p in (image.root / "journal").iterdir()] == [True]
    live.abort()
    dropped = image.begin("dropped")
    dropped.put(Resource("/never", b""))
    del dropped
    gc.collect()  # its finaliser closes the lock: the next open or begin removes it
    CardImage.open(image.root)
    assert _leftovers(image.root) == []
    assert image.get("/never") is None


def test_image_without_journal_dir(image: CardImage) -> None:
    (image.root / "journal").rmdir()  # an image made before transactions
    old = CardImage.open(image.root)
    assert _snapshot(old) == OLD
    tx = old.begin("t")
    _changes(tx)
    tx.commit()
    assert _snapshot(CardImage.open(image.root)) == NEW


def test_corrupt_commit_marker(image: CardImage) -> None:
    (image.root / "journal" / "COMMIT").write_text('{"txid": "x", "journal": "../content"}')
    with pytest.raises(StoreError, match="COMMIT is corrupt"):
        CardImage.open(image.root)
    (image.root / "journal" / "COMMIT").write_text(
        '{"txid": "x", "journal": "tx-0123456789abcdef-x"}'
    )
    with pytest.raises(StoreError, match="corrupt: COMMIT names"):
        CardImage.open(image.root)


def test_commit_failing_before_the_commit_point(
    image: CardImage, monkeypatch: pytest.MonkeyPatch
) -> None:
    tx = image.begin("t")
    _changes(tx)
    real = journal_mod.atomic_write

    def failing(target: Path, chunks: tuple[bytes, ...], mode: int = 0o644) -> Any:
        if target.name == "COMMIT":
            raise OSError(28, "No space left on device")
        return real(target, chunks, mode)

    monkeypatch.setattr(journal_mod, "atomic_write", failing)
    with pytest.raises(StoreError, match="No space"):
        tx.commit()
    assert _snapshot(image) == OLD
    assert not image.committed("t")
    monkeypatch.undo()
    tx.commit()  # still open: a retry works
    assert _snapshot(image) == NEW


def test_commit_failing_after_the_commit_point(
    image: CardImage, monkeypatch: pytest.MonkeyPatch
) -> None:
    tx = image.begin("t")
    _changes(tx)

    def failing(*args: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(journal_mod, "_apply", failing)
    with pytest.raises(StoreError, match="Input/output"):
        tx.commit()
    # Committed all the same: readers read through the journal until a writer finishes it.
    assert image.committed("t")
    assert _snapshot(_reader(image.root)) == NEW
    with pytest.raises(RuntimeError, match="finished"):
        tx.commit()
    monkeypatch.undo()
    image.put(Resource("/change", b"later"))  # rolls forward first, then writes
    assert image.get("/change") == Resource("/change", b"later")
    assert image.get("/a/b") == NEW[0][0]
    assert _leftovers(image.root) == []


# --- crash at every step ------------------------------------------------------------------


class Crash(BaseException):
    """A simulated kill: not an Exception, so no handler of the code under test sees it."""


_MUTATORS = ("replace", "rename", "unlink", "rmdir", "mkdir", "open")


@contextlib.contextmanager
def _crash_at(k: int) -> Iterator[list[str]]:
    """Die instead of the k-th filesystem mutation (0-based), and stay dead: every later
    mutation fails too. Yields the log of mutations done."""
    done: list[str] = []
    dead = False
    with pytest.MonkeyPatch.context() as mp:
        for name in _MUTATORS:
            real: Callable[..., Any] = getattr(os, name)

            def op(*args: Any, _name: str = name, _real: Callable[..., Any] = real) -> Any:
                nonlocal dead
                if _name == "open" and not args[1] & os.O_CREAT:
                    return _real(*args)  # opens for reading, fsync and flock change nothing
                if dead or len(done) == k:
                    dead = True
                    raise Crash(f"{_name} {args[0]}")
                moved = f" -> {os.fspath(args[1])}" if _name in ("replace", "rename") else ""
                done.append(f"{_name} {os.fspath(args[0])}{moved}")
                return _real(*args)

            mp.setattr(os, name, op)
        yield done


def _commit_crashing_at(root: Path, k: int) -> tuple[bool, bool]:
    """Begin, stage, commit with a crash at step k. (whether it crashed, past commit point)"""
    image = CardImage.open(root)
    tx = image.begin("t")
    _changes(tx)
    crashed = False
    with _crash_at(k) as done:
        try:
            tx.commit()
        except Crash:
            crashed = True
    tx._release()  # the dead process's descriptors close
    image.close()
    return crashed, any(d.startswith("replace") and d.endswith("/COMMIT") for d in done)


def _fresh(base: Path, name: str) -> Path:
    with CardImage.create(base / name, iccid=ICCID, now=1) as image:
        _old_state(image)
    return base / name


def test_crash_at_every_step_of_commit(tmp_path: Path) -> None:
    outcomes = []
    for k in range(200):
        root = _fresh(tmp_path, f"c{k}")
        crashed, past_point = _commit_crashing_at(root, k)
        expected = NEW if past_point else OLD
        # Before any recovery a reader already sees the whole set, old or new...
        assert _snapshot(_reader(root)) == expected, k
        # ... and after it too, with nothing left over.
        recovered = CardImage.open(root)
        assert _snapshot(recovered) == expected, k
        assert recovered.committed("t") == past_point
        assert _leftovers(root) == [], k
        # Still writable.
        recovered.begin("next").commit()
        outcomes.append(past_point)
        if not crashed:
            break
    else:
        pytest.fail("commit never finished")
    # Sanity: both sides of the commit point were hit, and the crash-free run is all-new.
    assert outcomes[0] is False
    assert outcomes[-1] is True
    assert outcomes.count(True) > 5


@pytest.mark.parametrize("phase", ["stage", "abort"])
def test_crash_while_staging_or_aborting(tmp_path: Path, phase: str) -> None:
    """An uncommitted journal, whole or in pieces, is dropped: the image stays all-old."""
    for k in range(200):
        root = _fresh(tmp_path, f"c{k}")
        image = CardImage.open(root)
        tx: CardImageTransaction | None = None
        finished = True
        with _crash_at(k):
            try:
                tx = image.begin("t")
                _changes(tx)
                if phase == "abort":
                    tx.abort()
            except Crash:
                finished = False
        if tx is not None:
            tx._release()
        image.close()
        assert _snapshot(_reader(root)) == OLD
        recovered = CardImage.open(root)
        assert _snapshot(recovered) == OLD
        assert not recovered.committed("t")
        assert _leftovers(root) == [], k
        if finished:
            break
    assert k > 10


def _commit_steps(base: Path) -> list[str]:
    """The filesystem mutations of a crash-free commit of the scenario, in order."""
    image = CardImage.open(_fresh(base, "probe"))
    tx = image.begin("t")
    _changes(tx)
    with _crash_at(10_000) as log:
        tx.commit()
    return log


def test_crash_during_recovery_after_a_crash_during_apply(tmp_path: Path) -> None:
    """Apply is idempotent: roll-forward itself may be killed, repeatedly."""
    log = _commit_steps(tmp_path)
    point = next(i for i, d in enumerate(log) if d.endswith("/COMMIT"))
    steps = len(log)
    runs = 0
    for k in range(point + 1, steps, 3):
        for j in range(40):
            root = _fresh(tmp_path, f"r{k}-{j}")
            crashed, past_point = _commit_crashing_at(root, k)
            assert crashed
            assert past_point
            # Recovery (at open) killed at its j-th step, then run again.
            partial = _reader(root)
            with _crash_at(j):
                try:
                    partial._clean_if_idle()
                    finished = True
                except Crash:
                    finished = False
            partial.close()
            assert _snapshot(_reader(root)) == NEW, (k, j)
            recovered = CardImage.open(root)
            assert _snapshot(recovered) == NEW, (k, j)
            assert recovered.committed("t")
            assert _leftovers(root) == []
            runs += 1
            if finished:
                break
    assert runs > steps // 3


def test_half_applied_on_disk_reads_all_new(tmp_path: Path) -> None:
    # Crash right after the first staged file moved into content/.
    log = _commit_steps(tmp_path)
    first_move = next(
        i for i, d in enumerate(log) if d.startswith("replace") and "/content/" in d.split()[1]
    )
    assert "/journal/tx-" in log[first_move].split()[1]
    root = _fresh(tmp_path, "c")
    crashed, past_point = _commit_crashing_at(root, first_move + 1)
    assert crashed
    assert past_point
    # On disk: /change is new, /a/b not yet moved, /gone still there.
    raw = [p.read_bytes() for p in (root / "content").iterdir()]
    assert any(b"newnew" in r for r in raw)
    assert any(r.endswith(b"gone") for r in raw)
    reader = _reader(root)
    assert _snapshot(reader) == NEW
    assert reader.committed("t")
    assert sorted(reader.realm_names()) == ["r1", "r3"]
    # A writer in a process that was already running rolls forward before its own write.
    reader.put(Resource("/a/b", b"after"))
    assert CardImage.open(root).get("/a/b") == Resource("/a/b", b"after")
    assert CardImage.open(root).get("/change") == NEW[0][2]


# --- Content-Encoding / Content-Language ----------------------------------------------------


def test_content_headers_round_trip_through_image_and_site(image: CardImage) -> None:
    tx = image.begin("headers")
    tx.put(
        Resource(
            "/doc.txt",
            b"\x1f\x8b...",
            "text/plain",
            1,
            content_encoding="gzip",
            content_language="de-CH",
        )
    )
    tx.put(Resource("/plain.txt", b"plain", "text/plain"))
    tx.commit()
    site = Site(CardImage.open(image.root), secret=b"s" * 32)
    for method in ("GET", "HEAD"):
        response = site.prepare(Request(method, "/doc.txt", "/doc.txt", "", ()), 1e9)
        assert isinstance(response, Response)
        headers = dict(response.headers)
        assert headers["Content-Encoding"] == "gzip"
        assert headers["Content-Language"] == "de-CH"
        assert headers["Content-Type"] == "text/plain"
    plain = site.prepare(Request("GET", "/plain.txt", "/plain.txt", "", ()), 1e9)
    assert isinstance(plain, Response)
    assert {"Content-Encoding", "Content-Language"}.isdisjoint(dict(plain.headers))


def test_old_content_files_have_no_encoding(image: CardImage) -> None:
    """Files written before the fields existed carry neither key: both read as None."""
    image.put(Resource("/legacy", b"x", "text/plain"))
    file = image.root / "content" / hashlib.sha256(b"/legacy").hexdigest()
    assert b"content_encoding" not in file.read_bytes()
    assert b"content_language" not in file.read_bytes()
    resource = CardImage.open(image.root).get("/legacy")
    assert resource is not None
    assert resource.content_encoding is None
    assert resource.content_language is None


@pytest.mark.parametrize("field", ["content_encoding", "content_language"])
@pytest.mark.parametrize("value", ["", "a\r\nX-Evil: 1", "tab\there", "\x7f"])
def test_content_headers_validated(image: CardImage, field: str, value: str) -> None:
    with pytest.raises(StoreError):
        image.put(Resource("/x", b"", **{field: value}))


# --- cache policy ---------------------------------------------------------------------------


def test_cache_policy_round_trips_through_image_transaction_and_site(image: CardImage) -> None:
    tx = image.begin("cache")
    tx.put(Resource("/img/a.png", b"png", "image/png", 1, cache_control="max-age=86400"))
    tx.put(Resource("/page.html", b"page", "text/html", 1))
    tx.commit()
    image.set_value(SITE_CACHE_CONTROL_KEY, b"max-age=60")
    reopened = CardImage.open(image.root)
    assert reopened.get("/img/a.png").cache_control == "max-age=86400"  # type: ignore[union-attr]
    assert reopened.get("/page.html").cache_control is None  # type: ignore[union-attr]
    site = Site(reopened, secret=b"s" * 32)
    policies = {}
    for path in ("/img/a.png", "/page.html"):
        response = site.prepare(Request("GET", path, path, "", ()), 1e9)
        assert isinstance(response, Response)
        policies[path] = dict(response.headers)["Cache-Control"]
    assert policies == {"/img/a.png": "max-age=86400", "/page.html": "max-age=60"}
    file = image.root / "content" / hashlib.sha256(b"/page.html").hexdigest()
    assert b"cache_control" not in file.read_bytes()  # files without a policy keep the format


@pytest.mark.parametrize("value", ["", "no cache", "max-age=x", "Max-Age=5", "a\r\nX-Evil: 1"])
def test_cache_policy_validated(image: CardImage, value: str) -> None:
    with pytest.raises(StoreError, match=r"[Cc]ache"):
        image.put(Resource("/x", b"", cache_control=value))


# --- the same results as MemoryStore --------------------------------------------------------

resources = st.builds(
    Resource,
    path=st.sampled_from(PATHS),
    body=st.binary(max_size=24),
    content_type=st.sampled_from(["text/html", "image/png"]),
    last_modified=st.integers(0, 2**31),
    realm=st.none() | st.sampled_from(REALM_NAMES),
    content_encoding=st.none() | st.sampled_from(["gzip", "br"]),
    content_language=st.none() | st.sampled_from(["en", "de-CH"]),
    cache_control=st.none() | st.sampled_from(["no-cache", "max-age=60, public"]),
)
realms = st.builds(
    Realm,
    name=st.sampled_from(REALM_NAMES),
    users=st.dictionaries(st.sampled_from(["u1", "u2"]), st.text("ab€", max_size=4)),
    schemes=st.sampled_from([("Digest", "Basic"), ("Basic",)]),
)
store_ops = st.one_of(
    st.tuples(st.just("put"), resources),
    st.tuples(st.just("delete"), st.sampled_from(PATHS)),
    st.tuples(st.just("put_realm"), realms),
    st.tuples(st.just("delete_realm"), st.sampled_from(REALM_NAMES)),
    st.tuples(st.just("set_value"), st.sampled_from(KEYS), st.binary(max_size=8)),
    st.tuples(st.just("delete_value"), st.sampled_from(KEYS)),
)
tx_ops = st.one_of(
    store_ops,
    st.tuples(st.just("delete_tree"), st.sampled_from(["/", "/a/", "/a/c/", "/b/"])),
    st.tuples(st.just("direct"), store_ops),  # a write to the store while the tx is open
)
transactions = st.tuples(
    st.sampled_from(["t1", "t2", "t3"]),
    st.lists(tx_ops, max_size=10),
    st.sampled_from(["commit", "commit", "abort", "leave"]),
)


def _do(target: Any, op: tuple[Any, ...]) -> object:
    name, *args = op
    return getattr(target, name)(*args)


@settings(max_examples=60, deadline=None)
@given(st.lists(store_ops, max_size=6), st.lists(transactions, min_size=1, max_size=4))
def test_commits_match_memory_store(
    setup: list[tuple[Any, ...]], txs: list[tuple[str, list[tuple[Any, ...]], str]]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        image = CardImage.create(Path(tmp) / "card", iccid=ICCID, now=1)
        memory = MemoryStore()
        for op in setup:
            assert _do(image, op) == _do(memory, op)
        left: list[CardImageTransaction | MemoryTransaction] = []
        for txid, ops, end in txs:
            tx, mtx = image.begin(txid), memory.begin(txid)
            for op in ops:
                if op[0] == "direct":
                    assert _do(image, op[1]) == _do(memory, op[1])
                else:
                    assert _do(tx, op) == _do(mtx, op), op
                assert tx.paths() == mtx.paths()
            for path in PATHS:
                assert tx.get(path) == mtx.get(path)
            for name in REALM_NAMES:
                assert tx.realm(name) == mtx.realm(name)
            for key in KEYS:
                assert tx.get_value(key) == mtx.get_value(key)
            if end == "leave":
                left.append(tx)
            else:
                getattr(tx, end)()
                getattr(mtx, end)()
            assert _snapshot(image) == _snapshot(memory)
            for t in ("t1", "t2", "t3"):
                assert image.committed(t) == memory.committed(t)
        reopened = CardImage.open(image.root)
        assert _snapshot(reopened) == _snapshot(memory)
        image.close()
