"""Kill -9 a writer at random instants: every resource is wholly one version afterwards."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import openscws
from openscws.scws.model import Resource
from openscws.store import CardImage
from openscws.store.cardimage import TMP_PREFIX

SIZE = 2 * 1024 * 1024
SRC = str(Path(openscws.__file__).resolve().parent.parent)

WRITER = """
import sys
from pathlib import Path
from openscws.scws.model import Resource
from openscws.store import CardImage

image = CardImage.open(Path(sys.argv[1]))
size = int(sys.argv[2])
print("ready", flush=True)
i = 0
while True:
    letter = b"AB"[i % 2 : i % 2 + 1]
    image.put(Resource("/big.bin", letter * size, "application/x-" + letter.decode(), i))
    image.set_value("counter", str(i).encode() * 1000)
    i += 1
"""


def _expected(resource: Resource) -> None:
    letter = resource.body[:1]
    assert letter in (b"A", b"B")
    assert len(resource.body) == SIZE
    assert resource.body.count(letter) == SIZE, "torn body"
    assert resource.content_type == "application/x-" + letter.decode()
    assert resource.last_modified % 2 == (0 if letter == b"A" else 1)
    assert resource.etag == Resource(resource.path, resource.body).etag


def test_kill_during_writes(image: CardImage) -> None:
    image.put(Resource("/big.bin", b"A" * SIZE, "application/x-A", 0))
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    rng = random.Random(1234)
    reader = CardImage.open(image.root)
    versions: set[int] = set()
    for _ in range(10):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(image.root), str(SIZE)],
            stdout=subprocess.PIPE,
            env=env,
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline() == b"ready\n"
            time.sleep(rng.uniform(0.0, 0.3))
            # Read concurrently with the writer too: readers take no lock.
            live = reader.get("/big.bin")
            assert live is not None
            _expected(live)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            assert proc.stdout is not None
            proc.stdout.close()
        for fresh in (CardImage(image.root, image.meta, (0, 0, 0)), reader):
            resource = fresh.get("/big.bin")
            assert resource is not None
            _expected(resource)
            assert fresh.paths() == ["/big.bin"]
            value = fresh.get_value("counter")
            assert value is None or value == value[: len(value) // 1000] * 1000
            versions.add(resource.last_modified)
    # The writer really got through some puts (the test would prove nothing otherwise).
    assert len(versions) > 1
    # Killed writers usually leave temp files; readers skipped them above, opening cleans them.
    (image.root / "content" / f"{TMP_PREFIX}planted").write_bytes(b"B" * 100)
    CardImage.open(image.root)
    leftovers = [p for d in ("", "content", "values") for p in (image.root / d).iterdir()]
    assert not [p for p in leftovers if p.name.startswith(TMP_PREFIX)]
    # And the image is still writable.
    image.put(Resource("/big.bin", b"C"))
    assert CardImage.open(image.root).get("/big.bin") == Resource("/big.bin", b"C")
