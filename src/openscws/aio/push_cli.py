"""`openscws ppg`: run the Push Proxy Gateway (PAP over HTTP north, SIP south)."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import sys
from pathlib import Path

from openscws.aio.heap import settle_heap
from openscws.aio.http_small import MAX_CONNECTIONS
from openscws.aio.ppg import Ppg, PpgConfig
from openscws.config import default_data_dir
from openscws.push.ppg import Initiator
from openscws.ras.db import RasError

__all__ = ["read_secrets", "register", "run"]

_DESCRIPTION = (
    "Run a Push Proxy Gateway. Push initiators POST PAP documents (push-message as "
    "multipart/related, statusquery-message, cancel-message) to the PAP URL with HTTP Basic "
    "credentials (or a bearer token) from the initiators file; each push goes out as a SIP "
    "MESSAGE (RFC 3428) to the device's SIP URI: through --proxy when set, otherwise straight "
    "to the contacts registered with the PPG's own registrar on the SIP port. Delivery state "
    "is kept in the database (SQLite by default; several PPGs may share one PostgreSQL)."
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ppg = sub.add_parser(
        "ppg", help="run the Push Proxy Gateway (PAP -> SIP)", description=_DESCRIPTION
    )
    ppg.add_argument("-c", "--config", type=Path, help="TOML settings file")
    ppg.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    ppg.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    ppg.add_argument(
        "--pap",
        default="127.0.0.1:2948",
        metavar="HOST:PORT",
        help="where PAP is served (default 127.0.0.1:2948)",
    )
    ppg.add_argument("--pap-path", default="/pap", help="the PAP URL path (default /pap)")
    ppg.add_argument(
        "--sip",
        default="127.0.0.1:5062",
        metavar="HOST:PORT",
        help="the SIP port, UDP and TCP (default 127.0.0.1:5062)",
    )
    ppg.add_argument(
        "--identity",
        default="sip:ppg@scws.test",
        help="the PPG's SIP identity, the From of every push",
    )
    ppg.add_argument(
        "--proxy",
        metavar="SIP-URI",
        help="send every MESSAGE through this proxy, e.g. sip:127.0.0.1:5060",
    )
    ppg.add_argument("--plmn-domain", help="PLMN addresses become sip:<number>@DOMAIN")
    ppg.add_argument(
        "--database",
        metavar="URL",
        help="sqlite:///<file> (default <data dir>/ppg.db) or postgresql+psycopg://...",
    )
    ppg.add_argument("--data-dir", type=Path, help="default <XDG_DATA_HOME>/openscws/ppg")
    ppg.add_argument(
        "--initiators",
        type=Path,
        metavar="FILE",
        help="'NAME SECRET' lines (default <data dir>/initiators, made with a "
        "random secret when missing)",
    )
    ppg.add_argument(
        "--registrar-users",
        type=Path,
        metavar="FILE",
        help="'USER PASSWORD' lines: REGISTER then needs digest credentials",
    )
    ppg.add_argument("--realm", default="scws.test", help="the registrar's digest realm")
    ppg.add_argument(
        "--max-connections",
        type=_positive,
        default=MAX_CONNECTIONS,
        metavar="N",
        help="PAP connections open at once; one more gets 503 with Retry-After "
        f"(default {MAX_CONNECTIONS})",
    )


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def read_secrets(path: Path) -> dict[str, str]:
    """`NAME SECRET` lines (# comments). Raises ValueError naming the bad line."""
    pairs: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"{path}:{number}: want 'NAME SECRET'")
        pairs[parts[0]] = parts[1]
    return pairs


def _hostport(text: str, option: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"{option} wants HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def _initiators_file(data_dir: Path) -> Path:
    path = data_dir / "initiators"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"# push initiators: NAME SECRET\nras {secrets.token_urlsafe(24)}\n")
        os.replace(tmp, path)
    return path


def config_from(args: argparse.Namespace) -> PpgConfig:
    data_dir: Path = args.data_dir or default_data_dir() / "ppg"
    initiators_path = args.initiators or _initiators_file(data_dir)
    pap_host, pap_port = _hostport(args.pap, "--pap")
    sip_host, sip_port = _hostport(args.sip, "--sip")
    initiators = tuple(Initiator(n, s) for n, s in read_secrets(initiators_path).items())
    if not initiators:
        raise ValueError(f"{initiators_path}: no push initiator")
    users = read_secrets(args.registrar_users) if args.registrar_users else {}
    if args.database is None:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return PpgConfig(
        database_url=args.database or f"sqlite:///{data_dir / 'ppg.db'}",
        initiators=initiators,
        identity=args.identity,
        pap_host=pap_host,
        pap_port=pap_port,
        pap_path=args.pap_path,
        sip_host=sip_host,
        sip_port=sip_port,
        proxy=args.proxy,
        plmn_domain=args.plmn_domain,
        realm=args.realm,
        registrar_users=users,
        max_connections=args.max_connections,
    )


async def _serve(config: PpgConfig, initiators: Path | None) -> None:
    ppg = Ppg(config)
    try:
        await ppg.start()
    except OSError as e:
        ppg.store.close()
        raise ValueError(f"cannot listen: {e}") from None
    try:
        print(f"PPG ready: PAP {ppg.pap_url}", flush=True)
        print(f"PPG SIP: udp+tcp {config.sip_host}:{ppg.sip.port} as {config.identity}", flush=True)
        if initiators is not None:
            print(f"push initiator credentials: {initiators}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        settle_heap()  # after the handlers: a stop asked for meanwhile is not lost
        await stop.wait()
    finally:
        await ppg.close()


def run(args: argparse.Namespace) -> int:
    try:
        config = config_from(args)
        shown = None if args.initiators else (args.data_dir or default_data_dir() / "ppg")
        asyncio.run(_serve(config, None if shown is None else shown / "initiators"))
    except (ValueError, OSError, RasError) as e:
        print(f"openscws ppg: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
