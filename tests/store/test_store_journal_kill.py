"""Kill -9 a process committing transactions at random instants: afterwards every resource
of the set carries the same generation (all old or all new), readers never saw a mix, and
opening the image leaves no journal or temp file behind."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import openscws
from openscws.scws.model import Realm, Resource
from openscws.store import CardImage, CardMeta
from openscws.store.atomic import TMP_PREFIX

N = 8
SIZE = 16 * 1024
ROUNDS = 10
SRC = str(Path(openscws.__file__).resolve().parent.parent)

WRITER = """
import sys
from pathlib import Path
from openscws.scws.model import Realm, Resource
from openscws.store import CardImage

root, n, size = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
image = CardImage.open(root)  # recovers what the last kill left
gen = int(image.get("/r0").body.split(b":")[0])
print("ready", flush=True)
while True:
    gen += 1
    tx = image.begin(f"gen-{gen}")
    for i in range(n):
        tx.put(Resource(f"/r{i}", b"%d:" % gen + b"x" * size, "text/plain", gen))
    tx.delete(f"/d/{gen - 1}")
    tx.put(Resource(f"/d/{gen}", b"%d:" % gen))
    tx.set_value("gen", b"%d" % gen)
    tx.put_realm(Realm("gen", {"user": str(gen)}))
    tx.commit()
"""


def _generation(resource: Resource | None) -> int:
    assert resource is not None
    head, _, rest = resource.body.partition(b":")
    assert rest == b"x" * SIZE, "torn body"
    assert resource.last_modified == int(head)
    return int(head)


def _check(image: CardImage) -> int:
    """The one generation the whole set carries."""
    gens = {_generation(image.get(f"/r{i}")) for i in range(N)}
    assert len(gens) == 1, f"mixed generations {sorted(gens)}"
    (gen,) = gens
    assert image.paths() == sorted([f"/r{i}" for i in range(N)] + [f"/d/{gen}"])
    assert [_generation(r) for r in image.resources() if r.path.startswith("/r")] == [gen] * N
    assert image.get_value("gen") == b"%d" % gen
    realm = image.realm("gen")
    assert realm is not None
    assert realm.users == {"user": str(gen)}
    assert image.committed(f"gen-{gen}")
    assert not image.committed(f"gen-{gen + 1}")
    return gen


def _leftovers(root: Path) -> list[str]:
    found = [f"journal/{p.name}" for p in (root / "journal").iterdir()]
    for sub in ("", "content", "values"):
        found += [f"{sub}/{p.name}" for p in (root / sub).iterdir() if p.name[:5] == TMP_PREFIX]
    return found


def test_kill_during_transactions(tmp_path: Path) -> None:
    image = CardImage.create(tmp_path / "card", iccid="8949440000001234567", now=1)
    tx = image.begin("gen-0")
    for i in range(N):
        tx.put(Resource(f"/r{i}", b"0:" + b"x" * SIZE, "text/plain", 0))
    tx.put(Resource("/d/0", b"0:"))
    tx.set_value("gen", b"0")
    tx.put_realm(Realm("gen", {"user": "0"}))
    tx.commit()
    root = image.root
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    rng = random.Random(4321)
    reader = CardImage.open(root)  # a live reader next to the writer: never locks
    meta = CardMeta.from_json((root / "card.json").read_bytes())
    gen = 0
    mid_apply = 0
    for round_ in range(ROUNDS):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(root), str(N), str(SIZE)],
            stdout=subprocess.PIPE,
            env=env,
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline() == b"ready\n"
            # The last round waits for progress: the test would prove nothing without it.
            last = round_ == ROUNDS - 1
            deadline = time.monotonic() + (10.0 if last else rng.uniform(0.0, 0.2))
            seen = gen
            while time.monotonic() < deadline:
                # Each read is at least as new as the one before, across resources too:
                # a commit being applied is read through, never half.
                for i in range(N):
                    now = _generation(reader.get(f"/r{i}"))
                    assert now >= seen, f"/r{i} went back from {seen} to {now}"
                    seen = now
                if last and seen > gen + 2:
                    break
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            assert proc.stdout is not None
            proc.stdout.close()
        mid_apply += (root / "journal" / "COMMIT").exists()
        # Before recovery, a reader already sees one whole generation...
        before = _check(CardImage(root, meta, (0, 0, 0)))
        assert before >= seen
        # ... and opening the image recovers to that same one, leaving nothing behind.
        assert _check(CardImage.open(root)) == before
        assert _leftovers(root) == []
        assert _check(reader) == before
        assert before >= gen
        gen = before
    assert gen > 2, "the writer never committed"
    # Informative only: how many kills landed between commit point and end of apply.
    print(f"{ROUNDS} kills, {mid_apply} mid-apply, generation {gen}")
