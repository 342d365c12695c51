"""The HSS side of the BSF (Zh, TS 33.220 §4.4.1): authentication vectors and the GBA user
security setting (GBA_U or GBA_ME) per IMPI, behind one interface, `Hss`. `SqlHss` keeps the
subscribers in the BSF's database; a Diameter Zh client (TS 29.109) could replace it.

SQN (TS 33.102 Annex C): the store keeps SEQ_HE; each vector takes SEQ_HE + 1 with IND 0, in
one UPDATE ... RETURNING that is committed before the vector is made, so a BSF killed at any
point never hands out the same SQN twice. A resynchronisation sets SEQ_HE to the SEQ of
SQN_MS (so the next vector is just above what the USIM accepted last)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Protocol

from sqlalchemy import Connection, bindparam, delete, select, update

from openscws.aka.milenage import Milenage
from openscws.aka.vector import AuthVector, make_vector, resync_sqn
from openscws.bsf.db import BsfDatabase
from openscws.bsf.models import SUBSCRIBERS, GbaType, Subscriber
from openscws.ras.db import Conflict, NotFound
from openscws.ras.vault import Vault

__all__ = ["IND_BITS", "Hss", "SqlHss", "SubscriberInfo", "SubscriberKeys"]

IND_BITS: Final = 5

_NEXT_SEQ: Final = (
    update(SUBSCRIBERS)
    .where(SUBSCRIBERS.c.impi == bindparam("who"))
    .values(seq=SUBSCRIBERS.c.seq + 1)
    .returning(
        SUBSCRIBERS.c.seq, SUBSCRIBERS.c.k, SUBSCRIBERS.c.opc, SUBSCRIBERS.c.amf,
        SUBSCRIBERS.c.gba_type,
    )
)  # fmt: skip
"""Takes the IMPI's next SEQ_HE, with what makes the vector; built once (a bootstrap's path)."""


@dataclass(frozen=True, slots=True)
class SubscriberKeys:
    """A subscription as the operator provisions it. Never printed: the keys hide from repr."""

    impi: str
    k: bytes = field(repr=False)
    opc: bytes = field(repr=False)
    amf: bytes = bytes.fromhex("8000")
    sqn: int = 0
    """The last SQN used (the next vector is above it)."""
    gba_type: GbaType = GbaType.GBA_U

    def __post_init__(self) -> None:
        if not self.impi or len(self.impi) > 255:
            raise ValueError("an IMPI is 1..255 characters")
        if len(self.k) != 16 or len(self.opc) != 16:
            raise ValueError("K and OPc are 16 bytes each")
        if len(self.amf) != 2:
            raise ValueError("AMF is 2 bytes")
        if not 0 <= self.sqn < 1 << 48:
            raise ValueError("SQN is 48 bits")


@dataclass(frozen=True, slots=True)
class SubscriberInfo:
    """What may be shown of a subscriber."""

    impi: str
    gba_type: GbaType
    sqn: int
    amf: bytes


class Hss(Protocol):
    def vector(self, impi: str) -> tuple[AuthVector, GbaType] | None:
        """A fresh vector and the GBA type for `impi`, its SQN committed; None: unknown."""
        ...

    def resync(self, impi: str, rand: bytes, auts: bytes) -> bool:
        """Takes SQN_MS from AUTS (made for `rand`); False when MAC-S does not check."""
        ...


class SqlHss:
    """`Hss` over the BSF database; K and OPc sealed with the vault."""

    def __init__(
        self, db: BsfDatabase, vault: Vault, random: Callable[[int], bytes] = os.urandom
    ) -> None:
        self.db = db
        self.vault = vault
        self.random = random

    # -- Hss --------------------------------------------------------------------------------

    def vector(self, impi: str) -> tuple[AuthVector, GbaType] | None:
        with self.db.transaction() as connection:
            return self.vector_in(connection, impi)

    def vector_in(self, connection: Connection, impi: str) -> tuple[AuthVector, GbaType] | None:
        """`vector` inside the caller's transaction: the BSF, when this store is in its own
        database, commits the SQN and the challenge made from it together."""
        row = connection.execute(_NEXT_SEQ, {"who": impi}).one_or_none()
        if row is None:
            return None
        seq, k, opc, amf, gba_type = row
        milenage = Milenage(self._open(impi, "k", k), self._open(impi, "opc", opc))
        sqn = seq << IND_BITS
        return make_vector(milenage, self.random(16), sqn, amf), GbaType(gba_type)

    def resync(self, impi: str, rand: bytes, auts: bytes) -> bool:
        with self.db.read() as s:
            row = s.execute(
                select(Subscriber.k, Subscriber.opc).where(Subscriber.impi == impi)
            ).one_or_none()
        if row is None:
            return False
        milenage = Milenage(self._open(impi, "k", row[0]), self._open(impi, "opc", row[1]))
        sqn_ms = resync_sqn(milenage, rand, auts)
        if sqn_ms is None:
            return False
        with self.db.write() as s:
            s.execute(
                update(Subscriber).where(Subscriber.impi == impi).values(seq=sqn_ms >> IND_BITS)
            )
        return True

    # -- provisioning -----------------------------------------------------------------------

    def add(self, keys: SubscriberKeys, *, replace: bool = False) -> None:
        with self.db.write() as s:
            existing = s.get(Subscriber, keys.impi)
            if existing is not None and not replace:
                raise Conflict(f"subscriber {keys.impi} exists (use --replace)")
            if existing is not None:
                s.delete(existing)
                s.flush()
            s.add(
                Subscriber(
                    impi=keys.impi,
                    k=self.vault.seal(keys.k, f"bsf/subscriber/{keys.impi}/k"),
                    opc=self.vault.seal(keys.opc, f"bsf/subscriber/{keys.impi}/opc"),
                    amf=keys.amf,
                    seq=keys.sqn >> IND_BITS,
                    gba_type=str(keys.gba_type),
                    created_ms=int(time.time() * 1000),
                )
            )

    def list(self) -> list[SubscriberInfo]:
        with self.db.read() as s:
            rows = s.execute(
                select(Subscriber.impi, Subscriber.gba_type, Subscriber.seq, Subscriber.amf)
                .order_by(Subscriber.impi)
            ).all()  # fmt: skip
        return [SubscriberInfo(i, GbaType(g), seq << IND_BITS, amf) for i, g, seq, amf in rows]

    def remove(self, impi: str) -> None:
        with self.db.write() as s:
            if _rowcount(s.execute(delete(Subscriber).where(Subscriber.impi == impi))) == 0:
                raise NotFound(f"no subscriber {impi}")

    def _open(self, impi: str, column: str, blob: bytes) -> bytes:
        return self.vault.unseal(blob, f"bsf/subscriber/{impi}/{column}")


def _rowcount(result: object) -> int:
    count: int = getattr(result, "rowcount", 0)
    return count
