"""One RAS server process's job loop, for test_ras_postgres.py's two-process test.

    python ras_pg_worker.py URL OWNER VAULT_DIR OUT.json

Prints "ready", waits for a line on stdin (so both processes start together), then claims,
opens and finishes jobs until no job is open, and writes what it did to OUT.json: its claims,
its successful finishes, each job's [claimed, finishing] interval on the shared monotonic
clock, and any moment a claimed card showed other than exactly one active job."""

from __future__ import annotations

import json
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

from openscws.ras.db import RasDatabase
from openscws.ras.service import RasPolicy, RasService
from openscws.ras.vault import Vault

ACTIVE = text(
    "SELECT count(*) FROM jobs JOIN cards ON cards.id = jobs.card_id "
    "WHERE cards.iccid = :iccid AND jobs.state IN ('triggered', 'in_session')"
)


def main(url: str, owner: str, vault_dir: str, out: str) -> int:
    db = RasDatabase(url)
    ras = RasService(db, Vault.open(Path(vault_dir)), RasPolicy())
    rng = random.Random(owner)
    claims: list[dict[str, object]] = []
    finished: list[str] = []
    intervals: list[tuple[str, float, float]] = []
    violations: list[str] = []
    print("ready", flush=True)
    sys.stdin.readline()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        work = ras.claim_triggers(owner, rng.randint(1, 4), datetime.now(UTC))
        if not work:
            if sum(c.open_jobs for c in ras.list_campaigns()) == 0:
                break
            time.sleep(0.002)
            continue
        for w in work:
            claimed_at = time.monotonic()
            claims.append({"job": w.job_id, "iccid": w.iccid, "counter": w.counter})
            with db.read() as s:
                active = s.execute(ACTIVE, {"iccid": w.iccid}).scalar()
            if active != 1:
                violations.append(f"{w.iccid}: {active} active jobs after a claim")
            session = ras.open_session(w.psk_identity, owner, datetime.now(UTC))
            if session is None or session.job_id != w.job_id:
                violations.append(f"{w.iccid}: open_session gave {session}")
                continue
            if rng.random() < 0.3:
                time.sleep(rng.random() / 500)
            finishing = time.monotonic()
            now = datetime.now(UTC) + timedelta(microseconds=1)
            if ras.finish_job(session.job_id, owner, "done", None, now):
                finished.append(session.job_id)
            intervals.append((w.iccid, claimed_at, finishing))
    db.dispose()
    with open(out, "w") as f:
        json.dump(
            {
                "claims": claims,
                "finished": finished,
                "intervals": intervals,
                "violations": violations,
            },
            f,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:5]))
