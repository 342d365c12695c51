"""`openscws bsf ...`: run the BSF (`openscws bsf`, or `openscws bsf serve`), and keep its
subscribers (`subscriber add|ls|rm`, keys never printed) and the NAFs allowed on Zn
(`naf add|ls|rm`; `add` prints the NAF's token once). Heavy imports wait until a command runs.

Where the state lives: --data-dir (default $XDG_DATA_HOME/openscws/bsf) holds master.key and,
by default, bsf.db; the database URL is --db, else $OPENSCWS_BSF_DB, else SQLite there."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Final, NoReturn

from openscws.config import Settings, tcp_port
from openscws.errors import ConfigError

if TYPE_CHECKING:
    from openscws.bsf.db import BsfDatabase
    from openscws.bsf.hss import SqlHss
    from openscws.bsf.server import TlsFiles
    from openscws.bsf.service import BsfService
    from openscws.ras.vault import Vault

__all__ = ["register", "run"]

MAX_WORKERS: Final = 64
WORKER_STOP_S: Final = 10.0
"""How long a worker may take to stop (its open requests finish) before SIGKILL."""

_DESCRIPTION = """\
The Bootstrapping Server Function of 3GPP GBA (TS 33.220): terminals bootstrap on Ub with HTTP
Digest AKA (TS 24.109) and get a B-TID; NAFs fetch the NAF-specific keys of a B-TID on Zn
(HTTPS with a per-NAF token, optionally mutual TLS). Subscribers (IMPI, K, OPc, SQN, AMF,
GBA_U or GBA_ME) live in the BSF's database. With no action: serve."""


def _hex(size: int) -> Callable[[str], bytes]:
    def parse(text: str) -> bytes:
        try:
            value = bytes.fromhex(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not hex: {text!r}") from None
        if len(value) != size:
            raise argparse.ArgumentTypeError(f"{size} bytes expected ({2 * size} hex digits)")
        return value

    return parse


def _where(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", type=Path, help="TOML settings file ([bsf] data_dir, db)")
    p.add_argument(
        "--data-dir",
        dest="bsf_data_dir",
        type=Path,
        metavar="DIR",
        help="holds master.key and the default bsf.db (default: bsf.data_dir, "
        "$XDG_DATA_HOME/openscws/bsf)",
    )
    p.add_argument(
        "--db",
        dest="bsf_db",
        metavar="URL",
        help="database URL, e.g. postgresql+psycopg://bsf@host/bsf (default: bsf.db, "
        "$OPENSCWS_BSF_DB, else SQLite in the data dir)",
    )
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")


def _serve_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="Ub address (default 127.0.0.1)")
    p.add_argument("--port", type=tcp_port, default=8080, help="Ub port (default 8080; 0: free)")
    p.add_argument("--cert", type=Path, help="Ub over HTTPS: certificate chain (PEM)")
    p.add_argument("--key", type=Path, help="Ub over HTTPS: private key (PEM)")
    p.add_argument("--zn-host", default="127.0.0.1", help="Zn address (default 127.0.0.1)")
    p.add_argument("--zn-port", type=tcp_port, default=8443, help="Zn port (default 8443; 0: free)")
    p.add_argument("--zn-cert", type=Path, help="Zn over HTTPS: certificate chain (PEM)")
    p.add_argument("--zn-key", type=Path, help="Zn over HTTPS: private key (PEM)")
    p.add_argument(
        "--zn-client-ca", type=Path, help="Zn mutual TLS: NAF client certificates' CA (PEM)"
    )
    p.add_argument("--no-zn", action="store_true", help="Ub only")
    p.add_argument(
        "--name",
        default="bsf.openscws.test",
        help="the BSF's server name: the digest realm and the B-TID's domain",
    )
    p.add_argument(
        "--lifetime", type=int, default=3600, help="key lifetime of a bootstrapping, seconds"
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="Ub worker processes sharing the listening socket and the database (default 1; "
        "for PostgreSQL, one per core)",
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bsf = sub.add_parser(
        "bsf",
        help="the GBA Bootstrapping Server Function (Ub, Zn) and its subscribers",
        description=_DESCRIPTION,
    )
    _where(bsf)
    _serve_options(bsf)
    acts = bsf.add_subparsers(dest="bsf_action", required=False, metavar="ACTION")
    serve = acts.add_parser("serve", help="run the BSF (the default)")
    _where(serve)
    _serve_options(serve)
    init = acts.add_parser("init", help="create the master key and the database schema")
    _where(init)
    subscriber = acts.add_parser("subscriber", help="the HSS side: subscribers by IMPI")
    s_acts = subscriber.add_subparsers(dest="sub_action", required=True, metavar="ACTION")
    add = s_acts.add_parser("add", help="add a subscriber (keys never printed)")
    _where(add)
    add.add_argument("impi", help="the IM private identity, e.g. 001010123456789@ims.example")
    add.add_argument("--k", type=_hex(16), required=True, help="K, 32 hex digits")
    key = add.add_mutually_exclusive_group(required=True)
    key.add_argument("--op", type=_hex(16), help="OP, 32 hex digits (OPc is derived)")
    key.add_argument("--opc", type=_hex(16), help="OPc, 32 hex digits")
    add.add_argument("--amf", type=_hex(2), default=bytes.fromhex("8000"), help="AMF, 4 hex")
    add.add_argument("--sqn", type=int, default=0, help="the last SQN used (default 0)")
    add.add_argument(
        "--gba", choices=("u", "me"), default="u", help="GBA_U (Ks in the UICC) or GBA_ME"
    )
    add.add_argument("--replace", action="store_true", help="replace an existing subscriber")
    ls = s_acts.add_parser("ls", help="IMPI, GBA type, SQN, AMF (never the keys)")
    _where(ls)
    rm = s_acts.add_parser("rm", help="remove a subscriber")
    _where(rm)
    rm.add_argument("impi", help="the IMPI to remove")
    naf = acts.add_parser("naf", help="NAFs allowed to fetch keys on Zn")
    n_acts = naf.add_subparsers(dest="naf_action", required=True, metavar="ACTION")
    n_add = n_acts.add_parser("add", help="allow a NAF; prints its Zn token once")
    _where(n_add)
    n_add.add_argument("fqdn", help="the NAF's FQDN (the keys it may ask for are its own)")
    n_ls = n_acts.add_parser("ls", help="list the NAFs")
    _where(n_ls)
    n_rm = n_acts.add_parser("rm", help="remove a NAF (its token stops working)")
    _where(n_rm)
    n_rm.add_argument("fqdn", help="the NAF's FQDN")


def serves(args: argparse.Namespace) -> bool:
    return getattr(args, "bsf_action", None) in (None, "serve")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Errors (bad input, "not found", the database's) reach `openscws.cli.main`, the CLI's
    one error boundary: one line on stderr, status 1 for "not found", else 2."""
    return _dispatch(args, settings)


def _open(
    args: argparse.Namespace, settings: Settings, *, create: bool
) -> tuple[Vault, BsfDatabase]:
    from openscws.bsf.db import BsfDatabase, default_url
    from openscws.ras.vault import open_server_state

    data_dir: Path = args.bsf_data_dir or settings.bsf.data_dir
    url = args.bsf_db or settings.bsf.db or default_url(data_dir)
    return open_server_state(
        BsfDatabase, data_dir, url, create=create, server="BSF", init="openscws bsf init"
    )


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    from openscws.bsf.hss import SqlHss

    action = getattr(args, "bsf_action", None)
    adding = (
        getattr(args, "sub_action", None) == "add" or getattr(args, "naf_action", None) == "add"
    )
    vault, db = _open(args, settings, create=action in (None, "serve", "init") or adding)
    try:
        if action in (None, "serve"):
            return _serve(args, vault, db)
        if action == "init":
            print(f"master key: {vault.path}")
            print(f"database: {db.engine.url.render_as_string(hide_password=True)}")
            print(f"schema: {db.current_revision()}")
            return 0
        hss = SqlHss(db, vault)
        if action == "subscriber":
            return _subscriber(args, hss)
        return _naf(args, _service(args, vault, db, hss))
    finally:
        db.dispose()


def _service(args: argparse.Namespace, vault: Vault, db: BsfDatabase, hss: SqlHss) -> BsfService:
    from openscws.bsf.service import BsfService

    return BsfService(
        db,
        vault,
        hss,
        server_name=getattr(args, "name", "bsf.openscws.test"),
        lifetime_s=getattr(args, "lifetime", 3600),
    )


def _subscriber(args: argparse.Namespace, hss: SqlHss) -> int:
    from openscws.aka.milenage import opc_of
    from openscws.bsf.hss import SubscriberKeys
    from openscws.bsf.models import GbaType

    match args.sub_action:
        case "add":
            opc = args.opc if args.opc is not None else opc_of(args.k, args.op)
            gba = GbaType.GBA_U if args.gba == "u" else GbaType.GBA_ME
            keys = SubscriberKeys(args.impi, args.k, opc, args.amf, args.sqn, gba)
            hss.add(keys, replace=args.replace)
            print(f"subscriber {args.impi} ({gba}, SQN {args.sqn}) stored")
        case "ls":
            for info in hss.list():
                print(f"{info.impi}\t{info.gba_type}\tSQN {info.sqn}\tAMF {info.amf.hex()}")
        case "rm":
            hss.remove(args.impi)
            print(f"subscriber {args.impi} removed")
    return 0


def _naf(args: argparse.Namespace, service: BsfService) -> int:
    match args.naf_action:
        case "add":
            token = service.add_naf(args.fqdn)
            print(f"NAF {args.fqdn.lower()} allowed on Zn; its token (shown once):")
            print(token)
        case "ls":
            for fqdn in service.list_nafs():
                print(fqdn)
        case "rm":
            service.remove_naf(args.fqdn)
            print(f"NAF {args.fqdn} removed")
    return 0


def _tls(cert: Path | None, key: Path | None, ca: Path | None, what: str) -> TlsFiles | None:
    from openscws.bsf.server import TlsFiles

    if (cert is None) != (key is None):
        raise ConfigError(f"{what}: give both --{what}cert and --{what}key")
    if cert is None or key is None:
        if ca is not None:
            raise ConfigError("--zn-client-ca needs --zn-cert and --zn-key")
        return None
    return TlsFiles(cert, key, ca)


def _serve(args: argparse.Namespace, vault: Vault, db: BsfDatabase) -> int:
    """Serves Ub (and Zn) in this process and, with --workers N, Ub in N - 1 forked worker
    processes too, all accepting on one listening socket over the one database. That is safe:
    every piece of state a request needs is in the database (SQN taken by one conditional
    UPDATE, challenges answered once by another), none in a process. Zn and the purge of
    expired state stay in this process."""
    from openscws.bsf.hss import SqlHss
    from openscws.bsf.server import listen_ub, start_bsf

    if not 1 <= args.workers <= MAX_WORKERS:
        raise ConfigError(f"--workers is 1..{MAX_WORKERS}")
    service = _service(args, vault, db, SqlHss(db, vault))
    tls = _tls(args.cert, args.key, None, "")
    zn_tls = _tls(args.zn_cert, args.zn_key, args.zn_client_ca, "zn-")
    ub_socket = None
    workers: list[int] = []
    if args.workers > 1:
        ub_socket = listen_ub(args.host, args.port)
        db.engine.dispose()  # no pooled connection is shared across the fork
        for _ in range(args.workers - 1):
            pid = os.fork()
            if pid == 0:
                _worker(service, ub_socket, args, tls)
            workers.append(pid)

    async def main() -> None:
        try:
            server = await start_bsf(
                service,
                host=args.host,
                port=args.port,
                tls=tls,
                zn_host=args.zn_host,
                zn_port=None if args.no_zn else args.zn_port,
                zn_tls=zn_tls,
                ub_socket=ub_socket,
            )
        except BaseException:
            _stop_workers(workers)
            raise
        print(f"BSF Ub ready: {server.ub_url}", flush=True)
        if server.zn_url:
            print(f"BSF Zn ready: {server.zn_url}", flush=True)
        from openscws.aio.signals import wait_for_stop_signal

        try:
            await wait_for_stop_signal()
        finally:
            await server.stop()
            _stop_workers(workers)

    asyncio.run(main())
    return 0


def _worker(
    service: BsfService, sock: socket.socket, args: argparse.Namespace, tls: TlsFiles | None
) -> NoReturn:
    """A forked Ub worker: serves until SIGTERM or SIGINT, then leaves the process without
    running the parent's code (its exit status says whether it failed)."""
    from openscws.aio.signals import wait_for_stop_signal
    from openscws.bsf.server import start_bsf

    status = 0
    try:
        service.db.engine.dispose(close=False)  # the parent's connections are not ours

        async def main() -> None:
            server = await start_bsf(
                service, host=args.host, port=args.port, tls=tls, zn_port=None,
                ub_socket=sock, purge=False,
            )  # fmt: skip
            try:
                await wait_for_stop_signal()
            finally:
                await server.stop()

        asyncio.run(main())
    except BaseException:
        logging.getLogger(__name__).exception("BSF worker %d failed", os.getpid())
        status = 1
    finally:
        logging.shutdown()
        os._exit(status)


def _stop_workers(workers: list[int], timeout: float = WORKER_STOP_S) -> None:
    """SIGTERM to each worker, then SIGKILL to those still there after `timeout` seconds."""
    for pid in workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    left = set(workers)
    while left:
        for pid in list(left):
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(pid, os.WNOHANG)[0] == 0:
                    continue
            left.discard(pid)
        if not left:
            break
        if time.monotonic() > deadline:
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)
            break
        time.sleep(0.05)


def open_service(
    data_dir: Path, url: str | None = None, *, name: str = "bsf.openscws.test"
) -> BsfService:
    """The BSF's service over its state in `data_dir` (created and migrated when new); the
    caller disposes `service.db`."""
    from openscws.bsf.db import BsfDatabase, default_url
    from openscws.bsf.hss import SqlHss
    from openscws.bsf.service import BsfService
    from openscws.ras.vault import Vault

    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    vault = Vault.create(data_dir)
    db = BsfDatabase(url or default_url(data_dir))
    try:
        db.upgrade()
    except BaseException:
        db.dispose()
        raise
    return BsfService(db, vault, SqlHss(db, vault), server_name=name)


def provision_card(service: BsfService, keys: object, sqn_ms: int) -> str | None:
    """Adds the card's USIM subscription (`uicc.usim.UsimKeys`) as a GBA_U subscriber, unless
    its IMPI is there already; returns the IMPI when added."""
    from openscws.bsf.hss import SqlHss, SubscriberKeys
    from openscws.gba.uicc import impi_of_imsi
    from openscws.ras.db import Conflict
    from openscws.uicc.usim import UsimKeys

    assert isinstance(keys, UsimKeys)
    assert isinstance(service.hss, SqlHss)
    impi = impi_of_imsi(keys.imsi)
    try:
        service.hss.add(SubscriberKeys(impi, keys.k, keys.opc, sqn=sqn_ms))
    except Conflict:
        return None
    return impi
