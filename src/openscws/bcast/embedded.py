"""BCAST inside `openscws up` (`up --bcast`, setting bsm.enable): the BSM and the terminal's
BSP-C in the same process as the card, its gateway and the BSF.

The BSM keeps its state where `openscws bsm` does (bsm.data_dir, bsm.db), so its catalogue is
managed with `openscws bsm ...` (or its management API) while `up` runs. It learns the keys of
a B-TID from this process's BSF over Zn, as any NAF: at each start the BSF issues it a new Zn
token for its FQDN (bsm.fqdn). (R-)UIM subscribers by NAI come from its RK store. The terminal
side is `openscws.bcast.terminal.TerminalBcast` on the gateway's card link: the card is the
BSF's GBA_U subscriber (`up --gba`), so its LTKMs go into the USIM; or, with the CSIM-like
application (`up --bcast-card csim`), the NAI and the RK's Auth-Key key the requests and the
LTKMs go into that application."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Literal

from openscws.aio.links import CardLink
from openscws.bcast.bsm import BsmCore
from openscws.bcast.server import BsmServer, ZnKeys, first_keys, start_bsm
from openscws.bcast.sprov import KeyId, StatusCode
from openscws.bcast.store import SqlStore
from openscws.bcast.terminal import TerminalBcast
from openscws.config import Settings
from openscws.errors import OpenScwsError

__all__ = ["EmbeddedBcast", "open_store", "start_embedded_bcast"]

log = logging.getLogger(__name__)


def open_store(settings: Settings) -> SqlStore:
    """The BSM's store of `settings.bsm`, created and migrated when needed."""
    from openscws.bcast.db import BsmDatabase, default_url
    from openscws.ras.vault import Vault

    data_dir = settings.bsm.data_dir
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    vault = Vault.create(data_dir)
    db = BsmDatabase(settings.bsm.db or default_url(data_dir))
    try:
        db.upgrade()
    except BaseException:
        db.dispose()
        raise
    return SqlStore(db, vault)


@dataclass
class EmbeddedBcast:
    store: SqlStore
    bsm: BsmServer
    terminal: TerminalBcast
    ltkm_port: int
    retry_after: float = 10.0
    """Seconds before the LTKMs of a subscribed item that have not come are asked for."""
    _watches: set[asyncio.Task[None]] = field(default_factory=set)

    async def subscribe(self, ref: str) -> bool:
        """A Service Request for one purchase item; prints its outcome (the LTKMs follow and
        are logged as the card takes them; the ones missing after `retry_after` seconds are
        asked for once with an LTKM Request). False when it did not succeed."""
        try:
            response = await self.terminal.subscribe((ref,))
        except OpenScwsError as exc:
            print(f"BCAST: Service Request for {ref}: {exc}", flush=True)
            return False
        print(f"BCAST: Service Request for {ref}: {response.status.name}", flush=True)
        if response.status is not StatusCode.SUCCESS:
            return False
        # The catalogue in this process stands in for the Service Guide naming the keys.
        keys = await asyncio.to_thread(self.store.item_keys, ref)
        if keys:
            task = asyncio.create_task(self._watch(ref, keys))
            self._watches.add(task)
            task.add_done_callback(self._watches.discard)
        return True

    async def _watch(self, ref: str, keys: tuple[KeyId, ...]) -> None:
        try:
            lacking = await self.terminal.ensure_ltkms(keys, self.retry_after)
        except OpenScwsError as exc:
            print(f"BCAST: LTKM Request for {ref}: {exc}", flush=True)
            return
        if lacking:
            names = " ".join(f"{k.key_domain.hex()}/{k.key_id.hex()}" for k in lacking)
            print(f"BCAST: no LTKM came for {ref}: {names}", flush=True)

    async def stop(self) -> None:
        for task in list(self._watches):
            task.cancel()
        await asyncio.gather(*self._watches, return_exceptions=True)
        self.terminal.close()
        try:
            await self.bsm.stop()
        finally:
            await asyncio.to_thread(self.store.db.dispose)


async def start_embedded_bcast(
    settings: Settings,
    link: CardLink,
    bsf: Any,
    *,
    port: int,
    ltkm_port: int,
    via: Literal["usim", "csim"] = "usim",
) -> EmbeddedBcast:
    """Starts the BSM on gateway.host:port and the BSP-C's LTKM listener on ltkm_port (0: any);
    `bsf` is the running `BsfServer` of this process; `via`: the card application the
    terminal keys its requests with (`TerminalBcast.via`)."""
    from openscws.ras.db import NotFound

    fqdn = settings.bsm.fqdn
    host = settings.gateway.host
    if bsf.zn_url is None:
        raise OpenScwsError("BCAST in `up` needs the BSF's Zn")

    def prepare() -> tuple[SqlStore, str]:
        store = open_store(settings)
        try:
            try:
                bsf.service.remove_naf(fqdn)
            except NotFound:
                pass
            return store, bsf.service.add_naf(fqdn)
        except BaseException:
            store.db.dispose()
            raise

    store, token = await asyncio.to_thread(prepare)
    loop = asyncio.get_running_loop()
    terminal = TerminalBcast(link, bsf.ub_url, "", fqdn, host=host, ltkm_port=ltkm_port, via=via)
    try:
        bound = await terminal.listen()
        core = BsmCore(
            fqdn, store, first_keys(store.rk_user_keys, ZnKeys(bsf.zn_url, token, fqdn, loop))
        )
        bsm = await start_bsm(core, host=host, port=port, ltkm_port=bound)
    except BaseException:
        terminal.close()
        store.db.dispose()
        raise
    terminal.bsm_url = bsm.url
    log.info("BCAST: BSM %s on %s, terminal LTKMs on UDP %d", fqdn, bsm.url, bound)
    return EmbeddedBcast(store, bsm, terminal, bound, settings.bsm.ltkm_retry_after)
