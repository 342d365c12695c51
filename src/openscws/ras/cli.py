"""`openscws admin ...`: the RAS's state from the command line (cards, content, campaigns,
session logs). `register` adds the parsers; `run` carries out a parsed command. Heavy imports
(SQLAlchemy, Alembic) wait until a command runs, so other `openscws` commands start fast.

Where the state lives: --data-dir (default admin.data_dir, i.e. $XDG_DATA_HOME/openscws/ras)
holds master.key and, by default, ras.db; the database URL is --db, else $OPENSCWS_RAS_DB,
else admin.db from --config, else SQLite in the data dir."""

from __future__ import annotations

import argparse
import mimetypes
import os
import sys
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from openscws.config import Settings, load
from openscws.errors import ConfigError

if TYPE_CHECKING:
    from openscws.ras.service import RasService

__all__ = ["DB_ENV", "register", "run"]

DB_ENV: Final = "OPENSCWS_RAS_DB"

_DESCRIPTION = """\
The operator's SCWS remote administration server: the cards it manages, the versioned content
repository, and campaigns that push content to cards (one job per card, triggered by SMS,
run over PSK-TLS). Start with `openscws admin init`."""


def _hex(text: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not hex: {text!r}") from None


def _byte(text: str) -> int:
    try:
        value = int(text, 16)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a hex byte: {text!r}") from None
    if not 0 <= value <= 0xFF:
        raise argparse.ArgumentTypeError(f"not a byte: {text!r}")
    return value


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", type=Path, help="TOML settings file ([admin] section)")
    p.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    p.add_argument(
        "--data-dir",
        dest="admin_data_dir",
        metavar="DIR",
        type=Path,
        help="holds master.key and the default ras.db (default: admin.data_dir)",
    )
    p.add_argument(
        "--db",
        dest="admin_db",
        metavar="URL",
        help=f"database URL, e.g. postgresql+psycopg://ras@host/ras (default: ${DB_ENV}, "
        "admin.db, else SQLite in the data dir)",
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds `admin` and its commands to the `openscws` subcommands."""
    admin = sub.add_parser(
        "admin",
        help="the remote administration server's state: cards, content, campaigns, logs",
        description=_DESCRIPTION,
    )
    groups = admin.add_subparsers(dest="admin_command", required=True, metavar="WHAT")
    leaves: list[argparse.ArgumentParser] = []

    init = groups.add_parser(
        "init",
        help="create the data dir and master key, and create or migrate the database",
        description="Create the data directory (0700) and the master key that encrypts card "
        "keys at rest (master.key, 0600), then bring the database schema to the newest "
        "version. Safe to run again, e.g. after an upgrade.",
    )
    leaves.append(init)

    card = groups.add_parser("card", help="cards: add, ls, show, rm")
    cards = card.add_subparsers(dest="admin_action", required=True, metavar="ACTION")
    add = cards.add_parser(
        "add",
        help="register a card; generated keys are printed once",
        description="Register a card. The PSK and the OTA keys (KIc, KID) are random unless "
        "given, and are printed once: load them into the card's security domain. They are "
        "stored encrypted under the master key.",
    )
    add.add_argument("card_iccid", metavar="ICCID", help="the card's ICCID (19-20 digits)")
    add.add_argument("--msisdn", help="number the trigger SMS goes to, e.g. +15550100001")
    add.add_argument("--psk-identity", help="PSK-TLS identity (default: the ICCID)")
    add.add_argument(
        "--psk-key", type=_hex, metavar="HEX", help="PSK in hex, 16-64 bytes (default: random)"
    )
    add.add_argument("--agent-id", help="admin agent id, X-Admin-From (default: the ICCID)")
    add.add_argument(
        "--tar",
        type=_hex,
        metavar="HEX",
        default=bytes(3),
        help="admin agent TAR, 3 bytes hex (default 000000)",
    )
    add.add_argument(
        "--kic-ref",
        type=_byte,
        metavar="BYTE",
        default=0x12,
        help="KIc byte: key version and algorithm, hex (default 12: version 1, AES-CBC)",
    )
    add.add_argument(
        "--kid-ref",
        type=_byte,
        metavar="BYTE",
        default=0x12,
        help="KID byte: key version and algorithm, hex (default 12: version 1, AES-CMAC)",
    )
    add.add_argument("--kic", type=_hex, metavar="HEX", help="KIc key in hex (default: random)")
    add.add_argument("--kid", type=_hex, metavar="HEX", help="KID key in hex (default: random)")
    add.add_argument(
        "--counter",
        type=int,
        metavar="N",
        default=0,
        help="last OTA counter the card accepted (default 0)",
    )
    ls = cards.add_parser("ls", help="list cards (never their keys)")
    show = cards.add_parser("show", help="a card's settings and its recent jobs")
    show.add_argument("card_iccid", metavar="ICCID", help="the card's ICCID")
    rm = cards.add_parser("rm", help="remove a card, its jobs and its session logs")
    rm.add_argument("card_iccid", metavar="ICCID", help="the card's ICCID")
    leaves += [add, ls, show, rm]

    content = groups.add_parser("content", help="the versioned content repository")
    contents = content.add_subparsers(dest="admin_action", required=True, metavar="ACTION")
    put = contents.add_parser(
        "put",
        help="store a file as the next version of a path",
        description="Store FILE as the next version of PATH. Nothing changes when the "
        "latest version already has the same bytes and headers.",
    )
    put.add_argument("content_path", metavar="PATH", help="URL path on the cards, e.g. /a.html")
    put.add_argument("file", type=Path, help="local file")
    put.add_argument("--type", dest="content_type", help="Content-Type (default: from FILE)")
    put.add_argument("--encoding", help="Content-Encoding, e.g. gzip")
    put.add_argument("--language", help="Content-Language, e.g. en")
    put.add_argument("--realm", help="protect the resource with this realm on the card")
    c_ls = contents.add_parser("ls", help="the latest version of every path")
    history = contents.add_parser("history", help="every version of a path")
    history.add_argument("content_path", metavar="PATH", help="URL path")
    c_rm = contents.add_parser(
        "rm", help="delete a path (a tombstone version: campaigns delete it on cards)"
    )
    c_rm.add_argument("content_path", metavar="PATH", help="URL path")
    leaves += [put, c_ls, history, c_rm]

    campaign = groups.add_parser("campaign", help="campaigns: push content to cards")
    campaigns = campaign.add_subparsers(dest="admin_action", required=True, metavar="ACTION")
    create = campaigns.add_parser(
        "create",
        help="one job per card, pinned to the current content versions",
        description="Create a campaign: one job per card, whose operations are pinned to the "
        "versions current now (later puts do not change it). A running `admin serve` "
        "triggers the cards.",
    )
    create.add_argument("name", help="a name for people")
    create.add_argument(
        "--path",
        action="append",
        metavar="PATH",
        help="only this path (repeatable; default: every path)",
    )
    create.add_argument(
        "--card",
        action="append",
        metavar="ICCID",
        help="only this ICCID (repeatable; default: every card)",
    )
    create.add_argument(
        "--max-attempts",
        type=int,
        metavar="N",
        help="attempts per card before giving up (default 5)",
    )
    create.add_argument(
        "--trigger",
        choices=("sms", "sip-push"),
        help="wake the cards by SMS or by OMA SIP push (default: the server's admin.trigger)",
    )
    k_ls = campaigns.add_parser("ls", help="list campaigns with their progress")
    k_show = campaigns.add_parser("show", help="a campaign's progress, card by card")
    k_show.add_argument("campaign_id", metavar="ID", type=int, help="campaign id")
    for follow in (create, k_show):
        follow.add_argument(
            "--wait",
            action="store_true",
            help="follow the progress until no job is open (a line per change); exit status "
            "0 when every card is done, 1 when some failed, 3 when --timeout ran out",
        )
        follow.add_argument(
            "--timeout",
            type=float,
            metavar="SECONDS",
            help="with --wait: give up waiting after this long (the campaign goes on)",
        )
    cancel = campaigns.add_parser(
        "cancel", help="stop a campaign (running sessions finish, nothing is retried)"
    )
    cancel.add_argument("campaign_id", metavar="ID", type=int, help="campaign id")
    leaves += [create, k_ls, k_show, cancel]

    serve = groups.add_parser(
        "serve",
        help="run the admin server: the cards' PSK-TLS endpoint, triggers, REST API and console",
        description="Run the remote administration server as its own process: the HTTPS "
        "endpoint cards call over PSK-TLS (admin.host:admin.port), the trigger loop that "
        "claims due jobs and sends their SMS (admin.sms_sender), and the REST API with the "
        "web console (admin.api_host:admin.api_port). Several processes may share one "
        "PostgreSQL database; each card's job runs in exactly one of them.",
    )
    serve.add_argument("--port", type=int, help="PSK-TLS endpoint port (default admin.port)")
    serve.add_argument("--api-port", type=int, help="REST API and console port")
    serve.add_argument("--no-api", action="store_true", help="no REST API and console")
    serve.add_argument(
        "--sms-url", help="the local sender's target, a gateway's POST /sms (admin.sms_url)"
    )
    leaves.append(serve)

    enrol = groups.add_parser(
        "enrol",
        help="enrol a card image with this server: same PSK and OTA keys on both sides",
        description="Give the card image's admin agent a PSK and OTA keys and register the "
        "card with them (what a card issuer's personalisation does). `openscws up` does this "
        "by itself; use it when the card runs as its own process (`openscws card`).",
    )
    enrol.add_argument("card_dir", metavar="CARD_DIR", type=Path, help="the card image")
    enrol.add_argument("--msisdn", help="the card's number (default card.msisdn)")
    enrol.add_argument("--port", type=int, help="the server port the card calls by default")
    leaves.append(enrol)

    logs = groups.add_parser("logs", help="a card's admin sessions, newest first")
    logs.add_argument("card_iccid", metavar="ICCID", help="the card's ICCID")
    logs.add_argument(
        "--limit", type=int, metavar="N", default=20, help="how many sessions (default 20)"
    )
    leaves.append(logs)

    for leaf in leaves:
        _common(leaf)


def run(args: argparse.Namespace) -> int:
    """Carries out a parsed `openscws admin ...` command; returns the exit status."""
    from sqlalchemy.exc import DBAPIError

    from openscws.ras.db import RasError

    try:
        return _dispatch(args)
    except (RasError, ConfigError) as exc:
        print(f"openscws: {exc}", file=sys.stderr)
        return 2
    except DBAPIError as exc:
        # The driver's own message only: the statement and its parameters stay out.
        print(f"openscws: database error: {exc.orig}", file=sys.stderr)
        return 2


def _locate(args: argparse.Namespace) -> tuple[Path, str]:
    from openscws.ras.db import default_url

    admin = load(args.config).admin
    data_dir: Path = args.admin_data_dir or admin.data_dir
    url = args.admin_db or os.environ.get(DB_ENV) or admin.db or default_url(data_dir)
    return data_dir, url


def _dispatch(args: argparse.Namespace) -> int:
    from openscws.ras.db import RasDatabase
    from openscws.ras.service import RasService
    from openscws.ras.vault import Vault

    data_dir, url = _locate(args)
    if args.admin_command == "serve":
        return _serve(args, data_dir, url)
    if args.admin_command == "init":
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        vault = Vault.create(data_dir)
        db = RasDatabase(url)
        try:
            db.upgrade()
            print(f"master key: {vault.path}")
            print(f"database: {db.engine.url.render_as_string(hide_password=True)}")
            print(f"schema: {db.current_revision()}")
        finally:
            db.dispose()
        return 0
    vault = Vault.open(data_dir)
    db = RasDatabase(url)
    try:
        db.check_current()
        ras = RasService(db, vault)
        match args.admin_command:
            case "card":
                return _card(args, ras)
            case "content":
                return _content(args, ras)
            case "campaign":
                return _campaign(args, ras)
            case "logs":
                return _logs(args, ras)
            case "enrol":
                return _enrol(args, ras)
    finally:
        db.dispose()
    return 2


def _admin_settings(args: argparse.Namespace, data_dir: Path, url: str) -> Settings:
    settings = load(args.config)
    admin = replace(settings.admin, data_dir=data_dir, db=url)
    if getattr(args, "port", None) is not None:
        admin = replace(admin, port=args.port)
    if getattr(args, "api_port", None) is not None:
        admin = replace(admin, api_port=args.api_port)
    if getattr(args, "sms_url", None):
        admin = replace(admin, sms_url=args.sms_url)
    return replace(settings, admin=admin)


def _serve(args: argparse.Namespace, data_dir: Path, url: str) -> int:
    import asyncio
    import signal

    from openscws.aio.stack import start_admin

    settings = _admin_settings(args, data_dir, url)

    async def main() -> None:
        stack = await start_admin(settings, api=not args.no_api)
        a = settings.admin
        print(f"admin server: PSK-TLS https://{a.host}:{stack.server.port}{a.uri}", flush=True)
        if stack.api_url:
            print(f"admin console: {stack.api_url}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await stack.stop()

    asyncio.run(main())
    return 0


def _enrol(args: argparse.Namespace, ras: RasService) -> int:
    from openscws.ras.provision import AdminEndpoint, ensure_card_admin
    from openscws.store.cardimage import CardImage

    settings = load(args.config)
    a = settings.admin
    image = CardImage.open(args.card_dir)
    try:
        made = ensure_card_admin(
            ras,
            image,
            iccid=image.meta.iccid,
            msisdn=args.msisdn or settings.card.msisdn,
            endpoint=AdminEndpoint(a.host, args.port or a.port, "localhost", a.uri),
        )
    finally:
        image.close()
    what = "enrolled with new keys" if made else "already enrolled"
    print(f"card {image.meta.iccid}: {what}")
    return 0


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else f"{moment:%Y-%m-%d %H:%M:%S}Z"


def _key_length(ref: int) -> int:
    """The key size a KIc / KID algorithm nibble wants (TS 102 225 §5.1.2, §5.1.3.1)."""
    return {0x1: 8, 0x5: 16, 0x9: 24, 0xD: 8}.get(ref & 0x0F, 16)


def _card(args: argparse.Namespace, ras: RasService) -> int:
    match args.admin_action:
        case "add":
            iccid: str = args.card_iccid
            given: dict[str, bytes | None] = {
                "psk": args.psk_key,
                "kic": args.kic,
                "kid": args.kid,
            }
            keys = {
                "psk": args.psk_key or os.urandom(16),
                "kic": args.kic or os.urandom(_key_length(args.kic_ref)),
                "kid": args.kid or os.urandom(_key_length(args.kid_ref)),
            }
            info = ras.add_card(
                iccid,
                args.msisdn,
                psk_identity=args.psk_identity or iccid,
                psk_key=keys["psk"],
                agent_id=args.agent_id or iccid,
                ota_tar=args.tar,
                kic_key=keys["kic"],
                kid_key=keys["kid"],
                kic=args.kic_ref,
                kid=args.kid_ref,
                ota_counter=args.counter,
            )
            print(f"card {info.iccid} added")
            print(f"  PSK identity  {info.psk_identity}")
            print(f"  TAR           {info.ota_tar}   counter {info.ota_counter}")
            generated = [name for name in ("psk", "kic", "kid") if given[name] is None]
            labels = {
                "psk": "PSK key      ",
                "kic": f"KIc ({info.ota_kic:02X})     ",
                "kid": f"KID ({info.ota_kid:02X})     ",
            }
            for name in generated:
                print(f"  {labels[name]} {keys[name].hex().upper()}")
            if generated:
                print("These keys are shown only now: load them into the card.")
        case "ls":
            rows = ras.list_cards()
            print(f"{'ICCID':<21} {'MSISDN':<16} {'TAR':<6} {'CNTR':>6}  PSK identity")
            for c in rows:
                print(
                    f"{c.iccid:<21} {c.msisdn or '-':<16} {c.ota_tar:<6} {c.ota_counter:>6}  "
                    f"{c.psk_identity}"
                )
        case "show":
            found = ras.card(args.card_iccid)
            if found is None:
                print(f"openscws: no card {args.card_iccid}", file=sys.stderr)
                return 1
            print(f"ICCID         {found.iccid}")
            print(f"MSISDN        {found.msisdn or '-'}")
            print(f"agent id      {found.agent_id}")
            print(f"PSK identity  {found.psk_identity}")
            print(f"TAR           {found.ota_tar}")
            print(f"KIc / KID     {found.ota_kic:02X} / {found.ota_kid:02X}")
            print(f"OTA counter   {found.ota_counter} (last used)")
            print(f"added         {_when(found.created_at)}")
            jobs = ras.card_jobs(found.iccid, limit=10)
            if jobs:
                print("jobs (newest first):")
            for job in jobs:
                error = f"  {job.last_error}" if job.last_error else ""
                print(
                    f"  {job.id}  campaign {job.campaign_id or '-'}  {job.state:<10} "
                    f"attempts {job.attempts}/{job.max_attempts}{error}"
                )
        case "rm":
            if not ras.remove_card(args.card_iccid):
                print(f"openscws: no card {args.card_iccid}", file=sys.stderr)
                return 1
            print(f"removed card {args.card_iccid}")
    return 0


def _content(args: argparse.Namespace, ras: RasService) -> int:
    match args.admin_action:
        case "put":
            path: Path = args.file
            try:
                body = path.read_bytes()
            except OSError as exc:
                raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
            guessed, _ = mimetypes.guess_type(path.name)
            before = ras.content_history(args.content_path)
            info = ras.put_content(
                args.content_path,
                body,
                args.content_type or guessed or "application/octet-stream",
                encoding=args.encoding,
                language=args.language,
                realm=args.realm,
            )
            same = bool(before) and before[-1].version == info.version
            verb = "unchanged" if same else "put"
            print(f"{verb} {info.path} v{info.version} ({info.size} B, {info.content_type})")
        case "ls":
            for c in ras.list_content():
                extra = "".join(
                    f" {k}={v}"
                    for k, v in (
                        ("encoding", c.content_encoding),
                        ("language", c.content_language),
                        ("realm", c.realm),
                    )
                    if v
                )
                print(f"v{c.version:<4} {c.size:>9}  {c.content_type:<28} {c.path}{extra}")
        case "history":
            versions = ras.content_history(args.content_path)
            if not versions:
                print(f"openscws: {args.content_path} is not in the repository", file=sys.stderr)
                return 1
            for c in versions:
                what = "deleted" if c.deleted else f"{c.size} B {c.content_type}"
                print(f"v{c.version:<4} {_when(c.created_at)}  {c.sha256[:12]}  {what}")
        case "rm":
            gone = ras.delete_content(args.content_path)
            if gone is None:
                print(f"openscws: no current {args.content_path} to delete", file=sys.stderr)
                return 1
            print(f"deleted {gone.path} (tombstone v{gone.version})")
    return 0


def _ops(ops: Any) -> str:
    return ", ".join(
        f"{op.op} {op.path}" + (f" v{op.version}" if op.version is not None else "") for op in ops
    )


def _campaign(args: argparse.Namespace, ras: RasService) -> int:
    match args.admin_action:
        case "create":
            info = ras.create_campaign(
                args.name,
                paths=args.path,
                cards=args.card,
                max_attempts=args.max_attempts,
                trigger=args.trigger,
            )
            print(f"campaign {info.id} {info.name!r}: {info.jobs} card(s)")
            print(f"  {_ops(info.operations)}")
            if args.wait:
                return _follow(ras, info.id, args.timeout)
        case "ls":
            print(f"{'ID':>4}  {'STATE':<9} {'OPEN':>5} {'JOBS':>5}  {'CREATED':<20} NAME")
            for c in ras.list_campaigns():
                print(
                    f"{c.id:>4}  {c.state:<9} {c.open_jobs:>5} {c.jobs:>5}  "
                    f"{_when(c.created_at):<20} {c.name}"
                )
        case "show":
            if args.wait:
                return _follow(ras, args.campaign_id, args.timeout)
            info = ras.campaign(args.campaign_id)
            progress = info.progress
            print(f"campaign {info.id} {info.name!r}: {info.state}, {_when(info.created_at)}")
            print(f"  {_ops(info.operations)}")
            print("  " + "  ".join(f"{state} {n}" for state, n in progress.items()))
            for row in ras.campaign_cards(args.campaign_id):
                error = f"  {row.last_error}" if row.last_error else ""
                print(f"  {row.iccid:<21} {row.state:<10} {row.attempts}/{row.max_attempts}{error}")
        case "cancel":
            n = ras.cancel_campaign(args.campaign_id)
            print(f"campaign {args.campaign_id} cancelled ({n} job(s) stopped)")
    return 0


OPEN_STATES: Final = ("pending", "triggered", "in_session")


def _follow(
    ras: RasService, campaign_id: int, timeout: float | None, *, interval: float = 0.5
) -> int:
    """Prints the campaign's counts whenever they change, until no job is open; then the
    cards that failed, with their reasons. 0: all done; 1: some failed; 3: timed out."""
    started = time.monotonic()
    last = ""
    while True:
        progress = ras.campaign_progress(campaign_id)
        line = "  ".join(f"{state} {n}" for state, n in progress.items())
        elapsed = time.monotonic() - started
        if line != last:
            print(f"[{elapsed:6.1f}s] {line}", flush=True)
            last = line
        if not any(progress[state] for state in OPEN_STATES):
            break
        if timeout is not None and elapsed >= timeout:
            still = sum(progress[state] for state in OPEN_STATES)
            print(
                f"openscws: campaign {campaign_id}: {still} job(s) still open after "
                f"{timeout:g} s (it goes on; `campaign show {campaign_id} --wait` to follow)",
                file=sys.stderr,
            )
            return 3
        time.sleep(interval)
    failed = [row for row in ras.campaign_cards(campaign_id) if row.state == "failed"]
    for row in failed:
        print(f"  {row.iccid:<21} failed     {row.attempts}/{row.max_attempts}  {row.last_error}")
    done = progress["done"]
    print(f"campaign {campaign_id}: {done} done, {len(failed)} failed")
    return 1 if failed else 0


def _logs(args: argparse.Namespace, ras: RasService) -> int:
    if ras.card(args.card_iccid) is None:
        print(f"openscws: no card {args.card_iccid}", file=sys.stderr)
        return 1
    for entry in ras.session_logs(args.card_iccid, args.limit):
        print(
            f"{_when(entry.started_at)} .. {_when(entry.ended_at)}  {entry.outcome:<8} "
            f"job {entry.job_id or '-'}"
        )
        for line in entry.detail:
            print(f"    {line}")
    return 0
