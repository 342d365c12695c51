"""BSF test helpers: a vault and a migrated SQLite BSF database in a tmp dir, a service with a
clock the test moves."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from openscws.bsf.db import BsfDatabase, default_url
from openscws.bsf.hss import SqlHss
from openscws.bsf.service import BsfService
from openscws.ras.vault import Vault


@dataclass
class Clock:
    now: float = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Bsf:
    db: BsfDatabase
    vault: Vault
    hss: SqlHss
    service: BsfService
    clock: Clock


def make_bsf(directory: Path, clock: Clock | None = None, url: str | None = None) -> Bsf:
    directory.mkdir(parents=True, exist_ok=True)
    vault = Vault.create(directory)
    db = BsfDatabase(url or default_url(directory))
    db.upgrade()
    hss = SqlHss(db, vault)
    clock = clock or Clock()
    service = BsfService(db, vault, hss, server_name="bsf.example.net", clock=clock)
    return Bsf(db, vault, hss, service, clock)
