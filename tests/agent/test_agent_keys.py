"""The agent's key change (`PUT /.scws/keys`): staged in the session's card-image transaction
with the rest, applied by its commit or not at all; the replaced keys stay usable until a
trigger names the new identity, then are dropped."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from openscws.agent.commands import ScwsAdminExecutor
from openscws.agent.credentials import AGENT_FILE, AgentCredentials, AgentSecrets, KeyChange
from openscws.amdb.embedded import EmbeddedRequest, EmbeddedResponse
from openscws.errors import ConfigError
from openscws.scws.model import MemoryStore, Resource, SecretTransaction
from openscws.store import journal
from openscws.store.cardimage import CardImage

TX = ("X-SCWS-Transaction", "job-1")
OLD_PSK = bytes(range(16))
NEW_PSK = bytes(range(100, 132))
OLD = AgentCredentials(
    agent_id="agent",
    psk_identity="card-1",
    psk_key=OLD_PSK,
    kic_keys={1: b"K" * 16},
    kid_keys={1: b"D" * 16},
)
CHANGE = KeyChange("card-1#k2", NEW_PSK, 2, b"k" * 16, 2, b"d" * 16)


@pytest.fixture
def image(tmp_path: Path) -> CardImage:
    img = CardImage.create(tmp_path / "card", iccid="8988211000000000003", now=int(time.time()))
    AgentSecrets(img).set_credentials(OLD)
    return img


def run(ex: ScwsAdminExecutor, method: str, target: str, body: bytes = b"") -> EmbeddedResponse:
    return ex.execute(EmbeddedRequest(method, target, (TX,), body), 1_700_000_000.0)


def test_key_change_is_applied_by_the_commit_with_the_content(image: CardImage) -> None:
    ex = ScwsAdminExecutor(image, max_resource=1024)
    assert run(ex, "PUT", "/page.html", b"<p>x</p>").status == 400  # no Content-Type
    answer = ex.execute(
        EmbeddedRequest("PUT", "/page.html", (TX, ("Content-Type", "text/html")), b"<p>x</p>"),
        1_700_000_000.0,
    )
    assert answer.status == 201
    assert run(ex, "PUT", "/.scws/keys", CHANGE.to_json()).status == 204
    # Staged only: the agent still has its old keys, the content is not there yet.
    assert AgentSecrets(image).credentials() == OLD
    assert image.get("/page.html") is None
    assert json.loads(run(ex, "POST", "/.scws/commit").body) == {"committed": 2}
    creds = AgentSecrets(image).credentials()
    assert creds is not None
    assert (creds.psk_identity, creds.psk_key) == ("card-1#k2", NEW_PSK)
    assert creds.kic_keys == {1: b"K" * 16, 2: b"k" * 16}
    assert creds.kid_keys == {1: b"D" * 16, 2: b"d" * 16}
    assert creds.psk_for("card-1") == OLD_PSK  # a retry under the old identity still works
    assert creds.psk_for("card-1#k2") == NEW_PSK
    assert image.get("/page.html") is not None
    mode = (image.root / "secure" / AGENT_FILE).stat().st_mode & 0o777
    assert mode == 0o600


def test_key_change_without_commit_changes_nothing(image: CardImage) -> None:
    ex = ScwsAdminExecutor(image, max_resource=1024)
    assert run(ex, "PUT", "/.scws/keys", CHANGE.to_json()).status == 204
    ex.end(False)  # the session broke before its commit
    assert AgentSecrets(image).credentials() == OLD
    assert not list((image.root / "journal").glob("tx-*"))


def test_key_change_refusals(image: CardImage, tmp_path: Path) -> None:
    ex = ScwsAdminExecutor(image, max_resource=1024)
    for body in (b"{", b"{}", b'{"psk_identity": "x", "psk_key": "00"}'):
        answer = run(ex, "PUT", "/.scws/keys", body)
        assert answer.status == 400
        assert NEW_PSK.hex() not in answer.body.decode()
    same = KeyChange("card-1", NEW_PSK, 2, b"k" * 16, 2, b"d" * 16)
    assert run(ex, "PUT", "/.scws/keys", same.to_json()).status == 409  # needs a new identity
    assert run(ex, "GET", "/.scws/keys").status == 405
    ex.end(False)
    # A store that keeps no secrets (tests' MemoryStore) cannot take keys.
    memory = ScwsAdminExecutor(MemoryStore(), max_resource=1024)
    assert run(memory, "PUT", "/.scws/keys", CHANGE.to_json()).status == 501
    # A card without agent keys has nothing to change.
    bare = CardImage.create(tmp_path / "bare", iccid="8988211000000000002", now=0)
    assert run(ScwsAdminExecutor(bare, max_resource=1024), "PUT", "/.scws/keys",
               CHANGE.to_json()).status == 409  # fmt: skip


def test_a_second_change_drops_the_first_ones_old_keys() -> None:
    once = OLD.rekeyed(CHANGE)
    twice = once.rekeyed(KeyChange("card-1#k3", bytes(32), 3, b"3" * 16, 3, b"4" * 16))
    assert twice.previous_psks == {"card-1#k2": NEW_PSK}
    assert set(twice.kic_keys) == {2, 3}
    settled = twice.settled()
    assert settled.previous_psks == {}
    assert set(settled.kic_keys) == {3}
    assert set(settled.kid_keys) == {3}
    assert AgentCredentials.from_json(twice.to_json()) == twice
    assert "previous" not in json.loads(settled.to_json())


@pytest.mark.parametrize(
    "bad",
    [
        {"kic_version": 0},
        {"kid_version": 16},
        {"kic_key": b"short"},
        {"psk_key": b"tiny"},
        {"psk_identity": ""},
    ],
)
def test_key_change_checks_its_keys(bad: dict[str, object]) -> None:
    fields = {
        "psk_identity": "n",
        "psk_key": NEW_PSK,
        "kic_version": 2,
        "kic_key": b"k" * 16,
        "kid_version": 2,
        "kid_key": b"d" * 16,
    }
    with pytest.raises(ConfigError):
        KeyChange(**{**fields, **bad})  # type: ignore[arg-type]
    assert repr(CHANGE).count(NEW_PSK.hex()) == 0


def test_journal_secret_survives_a_crash_after_the_commit_point(
    image: CardImage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after COMMIT was written but before the secret moved: the next writer rolls
    the transaction forward, secret included."""
    new = OLD.rekeyed(CHANGE).to_json()
    tx = image.begin("job-9")
    assert isinstance(tx, SecretTransaction)
    tx.set_secret(AGENT_FILE, new)
    tx.put(Resource("/r.txt", b"r", "text/plain"))
    assert tx.get_secret(AGENT_FILE) == new
    assert AgentSecrets(image).credentials() == OLD

    def killed(*_: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(journal, "_apply", killed)
    with pytest.raises(KeyboardInterrupt):
        tx.commit()
    monkeypatch.undo()
    reopened = CardImage.open(image.root)  # recovery rolls forward
    try:
        creds = AgentSecrets(reopened).credentials()
        assert creds is not None
        assert creds.psk_identity == "card-1#k2"
        assert reopened.get("/r.txt") is not None
    finally:
        reopened.close()
