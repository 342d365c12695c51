"""`openscws admin ...`: the RAS's state from the command line (cards, content, campaigns,
session logs). `register` adds the parsers; `run` carries out a parsed command. Heavy imports
(SQLAlchemy, Alembic) wait until a command runs, so other `openscws` commands start fast.

Where the state lives: --data-dir (default admin.data_dir, i.e. $XDG_DATA_HOME/openscws/ras)
holds master.key and, by default, ras.db; the database URL is admin.db, read like every
setting (openscws.config.resolve): the file (--config), then the environment
($OPENSCWS_ADMIN_DB, or its other name $OPENSCWS_RAS_DB), then --db; else SQLite in the data
dir. Errors go to the `openscws` command's one error boundary (openscws.cli.main)."""

from __future__ import annotations

import argparse
import json
import mimetypes
import os
import sys
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from openscws.config import ENV_ALIASES, AdminSettings, Settings
from openscws.errors import ConfigError, NotFoundError
from openscws.ids import check_iccid, default_agent_id, default_psk_identity
from openscws.listing import print_listing
from openscws.scws.paths import MAX_ADMIN_RESOURCE

if TYPE_CHECKING:
    from openscws.ras.service import RasService
    from openscws.ras.vault import Vault

__all__ = ["DB_ENV", "register", "run"]

DB_ENV: Final = next(name for name, where in ENV_ALIASES.items() if where == ("admin", "db"))

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
    from openscws.cli import common_options

    common_options(p)
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
        help="database URL, e.g. postgresql+psycopg://ras@host/ras (default: admin.db, "
        f"${DB_ENV}, else SQLite in the data dir)",
    )


def api_options(p: argparse.ArgumentParser) -> None:
    """Where the REST API and console listen, and their TLS (`openscws up`, `admin serve`)."""
    p.add_argument("--api-host", metavar="ADDR", help="REST API and console address")
    p.add_argument("--api-port", type=int, metavar="PORT", help="REST API and console port")
    p.add_argument(
        "--api-tls",
        choices=("off", "ca", "files"),
        help="TLS for the REST API and console: off, ca (a certificate from the issuer CA) or "
        "files (--api-cert, --api-key) (default admin.api_tls)",
    )
    p.add_argument("--api-cert", type=Path, metavar="PEM", help="certificate chain (api-tls files)")
    p.add_argument("--api-key", type=Path, metavar="PEM", help="its private key (api-tls files)")
    p.add_argument(
        "--insecure-bind",
        action="store_true",
        help="serve the REST API without TLS on a non-loopback address anyway (not advised)",
    )


def api_overrides(admin: AdminSettings, args: argparse.Namespace) -> AdminSettings:
    """`admin` with the `api_options` given on the command line."""
    changes: dict[str, Any] = {}
    for option, name in (
        ("api_host", "api_host"),
        ("api_port", "api_port"),
        ("api_tls", "api_tls"),
        ("api_cert", "api_cert"),
        ("api_key", "api_key"),
    ):
        value = getattr(args, option, None)
        if value is not None:
            changes[name] = value
    if changes.get("api_cert") or changes.get("api_key"):
        changes.setdefault("api_tls", "files")
    if getattr(args, "insecure_bind", False):
        changes["api_insecure_bind"] = True
    if not changes:
        return admin
    updated = replace(admin, **changes)
    Settings(admin=updated)  # the same checks as a config file gets
    return updated


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
    add.add_argument(
        "card_iccid",
        metavar="ICCID",
        help="the card's ICCID (19-20 digits, the last the E.118 Luhn check digit)",
    )
    add.add_argument("--msisdn", help="number the trigger SMS goes to, e.g. +15550100001")
    add.add_argument("--psk-identity", help="PSK-TLS identity (default: scws-<ICCID>)")
    add.add_argument(
        "--psk-key", type=_hex, metavar="HEX", help="PSK in hex, 16-64 bytes (default: random)"
    )
    add.add_argument(
        "--agent-id", help="admin agent id, X-Admin-From (default: //se-id/iccid/<ICCID>)"
    )
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
    ls = cards.add_parser(
        "ls", help="list cards (never their keys)", description="List the registered cards."
    )
    show = cards.add_parser(
        "show",
        help="a card's settings and its recent jobs",
        description="Show a card's settings (never its keys) and its ten newest jobs.",
    )
    show.add_argument("card_iccid", metavar="ICCID", help="the card's ICCID")
    rm = cards.add_parser("rm", help="remove a card, its jobs and its session logs")
    rm.add_argument("card_iccid", metavar="ICCID", help="the card's ICCID")
    leaves += [add, ls, show, rm]

    content = groups.add_parser("content", help="the versioned content repository")
    contents = content.add_subparsers(dest="admin_action", required=True, metavar="ACTION")
    put = contents.add_parser(
        "put",
        help="store a file as the next version of a path",
        description="Store FILE as the next version of PATH (the same order as `openscws "
        "content put SOURCE PATH`). Nothing changes when the latest version already has the "
        "same bytes and headers. PATH follows the cards' rules (no '\\', no directory "
        f"ending in '/'), and FILE may be at most {MAX_ADMIN_RESOURCE} bytes, what one GP "
        "Amendment B command carries to a card. The old order PATH FILE still works, with a "
        "warning.",
    )
    put.add_argument("file", type=Path, help="local file")
    put.add_argument("content_path", metavar="PATH", help="URL path on the cards, e.g. /a.html")
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
    purge = contents.add_parser(
        "purge",
        help="erase every version of a path, even one the cards' rules refuse",
        description="Erase PATH and all its versions from the repository, with no tombstone: "
        "for an entry the cards cannot take (a path or size they refuse), which a tombstone "
        "would not fix. Cards that got an earlier version keep it (`content rm` first if they "
        "should delete it); jobs still pinned to a purged version fail.",
    )
    purge.add_argument("content_path", metavar="PATH", help="the repository path, as listed")
    leaves += [put, c_ls, history, c_rm, purge]

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
        "--acp",
        type=Path,
        metavar="FILE",
        help="also set the cards' SCWS access rules to this JSON policy document "
        '({"rules": [...]}, docs/acp.md); content then goes only for --path',
    )
    create.add_argument(
        "--trigger",
        choices=("sms", "sip-push"),
        help="wake the cards by SMS or by OMA SIP push (default: the server's admin.trigger)",
    )
    rekey = campaigns.add_parser(
        "rotate-keys",
        help="give cards new admin keys: PSK, PSK identity, OTA keys (KIc, KID)",
        description="Create a campaign that gives each card a new PSK under a new PSK "
        "identity and new OTA keys (the next key version, same algorithms). The card "
        "applies them in the job's transaction; the server moves to them when the job is "
        "done, and the card drops the old ones at the first trigger under the new ones. No "
        "key is ever printed.",
    )
    rekey.add_argument("name", help="a name for people")
    rekey.add_argument(
        "--card", action="append", metavar="ICCID", help="only this ICCID (repeatable)"
    )
    rekey.add_argument("--max-attempts", type=int, metavar="N", help="attempts per card")
    k_ls = campaigns.add_parser("ls", help="list campaigns with their progress")
    k_show = campaigns.add_parser("show", help="a campaign's progress, card by card")
    k_show.add_argument("campaign_id", metavar="ID", type=int, help="campaign id")
    for follow in (create, rekey, k_show):
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
    leaves += [create, rekey, k_ls, k_show, cancel]

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
    api_options(serve)
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

    vault = groups.add_parser("vault", help="the master key that seals card keys at rest")
    vaults = vault.add_subparsers(dest="admin_action", required=True, metavar="ACTION")
    rotate = vaults.add_parser(
        "rotate",
        help="re-seal every card key under a new master key, in one transaction",
        description="Make a new master key (master.key.next, 0600), re-seal every card's PSK "
        "and OTA keys under it in one database transaction, then rename it over master.key. "
        "Crash-safe: until the rename both keys open values, and running this again "
        "finishes a rotation that was cut short. Running servers pick up the new key by "
        "themselves. Backups of the database need the master key of their time.",
    )
    leaves.append(rotate)

    user = groups.add_parser(
        "user",
        help="operator accounts of the REST API and console: add, ls, rm, passwd",
        description="Operator accounts. Roles: viewer (read), operator (content and "
        "campaigns), admin (cards and their keys, accounts, the audit trail). Passwords are "
        "stored as argon2id hashes. This command works on the database directly, so it needs "
        "no login: whoever can run it can read the data directory anyway.",
    )
    users = user.add_subparsers(dest="admin_action", required=True, metavar="ACTION")
    u_add = users.add_parser("add", help="add an account (the password is asked, or generated)")
    u_add.add_argument("user_name", metavar="NAME", help="the login name")
    u_add.add_argument(
        "--role", choices=("viewer", "operator", "admin"), default="viewer", help="default viewer"
    )
    u_ls = users.add_parser("ls", help="list accounts")
    u_rm = users.add_parser("rm", help="remove an account with its tokens and sessions")
    u_rm.add_argument("user_name", metavar="NAME", help="the login name")
    u_pw = users.add_parser("passwd", help="set a new password (ends the account's sessions)")
    u_pw.add_argument("user_name", metavar="NAME", help="the login name")
    for leaf in (u_add, u_pw):
        leaf.add_argument(
            "--password-stdin",
            action="store_true",
            help="read the password from the first line of stdin (default: ask on a "
            "terminal, else generate one and print it once)",
        )
    leaves += [u_add, u_ls, u_rm, u_pw]

    token = groups.add_parser(
        "token",
        help="API tokens for scripts and CI: create, ls, revoke",
        description="API tokens (Authorization: Bearer oscws_...). A token is printed once "
        "when it is made and stored hashed; its role is at most its user's.",
    )
    tokens = token.add_subparsers(dest="admin_action", required=True, metavar="ACTION")
    t_new = tokens.add_parser("create", help="make a token for a user; printed once")
    t_new.add_argument("user_name", metavar="USER", help="whose token it is")
    t_new.add_argument("--name", dest="token_name", default="cli", help="what it is for")
    t_new.add_argument(
        "--role", choices=("viewer", "operator", "admin"), help="default: the user's role"
    )
    t_new.add_argument(
        "--days", type=int, default=90, metavar="N", help="valid for N days (default 90)"
    )
    t_ls = tokens.add_parser("ls", help="list tokens (never the tokens themselves)")
    t_ls.add_argument("--user", dest="user_name", metavar="USER", help="only this user's")
    t_rm = tokens.add_parser("revoke", help="revoke a token by its id")
    t_rm.add_argument("token_id", metavar="TOKEN_ID", help="as `token ls` shows it")
    leaves += [t_new, t_ls, t_rm]

    audit = groups.add_parser(
        "audit", help="the audit trail: every state change and refused attempt, newest first"
    )
    audit.add_argument(
        "--limit", type=int, metavar="N", default=50, help="how many entries (default 50)"
    )
    leaves.append(audit)

    logs = groups.add_parser("logs", help="a card's admin sessions, newest first")
    logs.add_argument("card_iccid", metavar="ICCID", help="the card's ICCID")
    logs.add_argument(
        "--limit", type=int, metavar="N", default=20, help="how many sessions (default 20)"
    )
    leaves.append(logs)

    for leaf in leaves:
        _common(leaf)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Carries out a parsed `openscws admin ...` command with `settings` (the file, the
    environment and the options, as every command reads them); returns the exit status.
    Errors (RasError, ConfigError, the database's) go up to the CLI's error boundary."""
    from openscws.ras.db import default_url

    data_dir = settings.admin.data_dir
    url = settings.admin.db or default_url(data_dir)
    return _dispatch(args, settings, data_dir, url)


def _dispatch(args: argparse.Namespace, settings: Settings, data_dir: Path, url: str) -> int:
    from openscws.ras.db import RasDatabase
    from openscws.ras.service import RasService
    from openscws.ras.vault import Vault

    if args.admin_command == "serve":
        return _serve(args, settings, data_dir, url)
    if args.admin_command == "init":
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        vault = Vault.create(data_dir)
        db = RasDatabase(url)
        try:
            db.upgrade()
            print(f"master key: {vault.path}")
            print(f"database: {db.engine.url.render_as_string(hide_password=True)}")
            print(f"schema: {db.current_revision()}")
            first_admin(RasService(db, vault))
        finally:
            db.dispose()
        return 0
    vault = Vault.open(data_dir)
    db = RasDatabase(url)
    try:
        db.check_current()
        ras = RasService(db, vault)
        try:
            match args.admin_command:
                case "card":
                    status = _card(args, ras)
                case "content":
                    status = _content(args, ras)
                case "campaign":
                    status = _campaign(args, ras)
                case "logs":
                    status = _logs(args, ras)
                case "enrol":
                    status = _enrol(args, ras, _admin_settings(args, settings, data_dir, url))
                case "user":
                    status = _user(args, ras)
                case "token":
                    status = _token(args, ras)
                case "audit":
                    status = _audit(args, ras)
                case "vault":
                    status = _vault(ras, vault)
                case _:
                    status = 2
        except Exception as exc:
            _audit_cli(args, ras, f"error: {type(exc).__name__}", str(exc))
            raise
        _audit_cli(args, ras, "ok" if status == 0 else f"exit {status}")
        return status
    finally:
        db.dispose()


_CHANGES: Final = {
    ("card", "add"): "card.create",
    ("card", "rm"): "card.delete",
    ("content", "put"): "content.put",
    ("content", "rm"): "content.delete",
    ("campaign", "create"): "campaign.create",
    ("campaign", "cancel"): "campaign.cancel",
    ("enrol", None): "card.enrol",
    ("user", "add"): "user.create",
    ("user", "rm"): "user.delete",
    ("user", "passwd"): "user.password",
    ("token", "create"): "token.create",
    ("token", "revoke"): "token.revoke",
    # Key changes (the key rotation commands, where this build has them).
    ("campaign", "rotate-keys"): "card.rotate-keys",
    ("vault", "rotate"): "vault.rotate",
}


def _audit_cli(args: argparse.Namespace, ras: RasService, result: str, why: str = "") -> None:
    """One audit entry for a state-changing command, as `local:<login>` from `local`."""
    import getpass

    action = _CHANGES.get((args.admin_command, getattr(args, "admin_action", None)))
    if action is None:
        return
    target = next(
        (
            str(getattr(args, name))
            for name in ("card_iccid", "content_path", "campaign_id", "token_id", "user_name")
            if getattr(args, name, None) is not None
        ),
        getattr(args, "name", None) or str(getattr(args, "card_dir", "")),
    )
    try:
        login = getpass.getuser()
    except (KeyError, OSError):
        login = str(os.getuid())
    detail = getattr(args, "audit_detail", "") or why
    ras.accounts.audit(f"local:{login}", action, target, result[:32], detail=detail)


def first_admin(ras: RasService, console: str | None = None) -> None:
    """On a database without accounts: makes `admin` and prints its password, once."""
    password = ras.accounts.ensure_first_admin()
    if password is None:
        return
    ras.accounts.audit("local:first-run", "user.create", "admin", "ok", detail="role admin")
    where = f" at {console}" if console else ""
    print(
        f"first run: log in to the console{where} as user admin with the one-time password "
        f"{password}\n  (shown only now; change it with `openscws admin user passwd admin`)",
        flush=True,
    )


def _new_password(args: argparse.Namespace) -> tuple[str, bool]:
    """The password from stdin, the terminal, or a new random one (True: print it)."""
    import getpass
    import secrets

    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n"), False
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise ConfigError("the two passwords differ")
        return first, False
    return secrets.token_urlsafe(18), True


def _user(args: argparse.Namespace, ras: RasService) -> int:
    from openscws.ras.models import Role

    accounts = ras.accounts
    match args.admin_action:
        case "add":
            password, show = _new_password(args)
            info = accounts.add_user(args.user_name, password, Role(args.role))
            args.audit_detail = f"role {info.role}"
            print(f"user {info.name} added ({info.role})")
            if show:
                print(f"  password {password}  (shown only now)")
        case "ls":
            print(f"{'NAME':<24} {'ROLE':<9} {'ADDED':<20} PASSWORD SET")
            for u in accounts.list_users():
                print(
                    f"{u.name:<24} {u.role:<9} {_when(u.created_at):<20} "
                    f"{_when(u.password_changed_at)}"
                )
        case "rm":
            if not accounts.remove_user(args.user_name):
                print(f"openscws: no user {args.user_name}", file=sys.stderr)
                return 1
            print(f"removed user {args.user_name} with their tokens and sessions")
        case "passwd":
            password, show = _new_password(args)
            accounts.set_password(args.user_name, password)
            print(f"password of {args.user_name} changed; their console sessions ended")
            if show:
                print(f"  password {password}  (shown only now)")
    return 0


def _token(args: argparse.Namespace, ras: RasService) -> int:
    from datetime import UTC, timedelta
    from datetime import datetime as dt

    from openscws.ras.models import Role

    accounts = ras.accounts
    match args.admin_action:
        case "create":
            role = Role(args.role) if args.role else None
            info, token = accounts.create_token(
                args.user_name, args.token_name, role, timedelta(days=args.days)
            )
            args.token_id = info.token_id
            args.audit_detail = f"user {info.user}, role {info.role}"
            print(
                f"token {info.token_id} of {info.user} ({info.role}) until {_when(info.expires_at)}"
            )
            print(token)
            print("This token is shown only now: Authorization: Bearer <token>.", file=sys.stderr)
        case "ls":
            now = dt.now(UTC)
            print(f"{'TOKEN ID':<13} {'USER':<16} {'ROLE':<9} {'STATE':<8} {'EXPIRES':<20} NAME")
            for t in accounts.list_tokens(args.user_name):
                print(
                    f"{t.token_id:<13} {t.user:<16} {t.role:<9} {t.state(now):<8} "
                    f"{_when(t.expires_at):<20} {t.name}"
                )
        case "revoke":
            if not accounts.revoke_token(args.token_id):
                print(f"openscws: no token {args.token_id}", file=sys.stderr)
                return 1
            print(f"token {args.token_id} revoked")
    return 0


def _audit(args: argparse.Namespace, ras: RasService) -> int:
    for e in reversed(ras.accounts.audit_log(args.limit)):
        detail = f"  {e.detail}" if e.detail else ""
        print(
            f"{_when(e.at)}  {e.actor:<24} {e.address:<15} {e.action:<16} {e.result:<22} "
            f"{e.target}{detail}"
        )
    return 0


def _admin_settings(
    args: argparse.Namespace, settings: Settings, data_dir: Path, url: str
) -> Settings:
    admin = replace(settings.admin, data_dir=data_dir, db=url)
    if getattr(args, "port", None) is not None:
        admin = replace(admin, port=args.port)
    admin = api_overrides(admin, args)
    if getattr(args, "sms_url", None):
        admin = replace(admin, sms_url=args.sms_url)
    return replace(settings, admin=admin)


def _serve(args: argparse.Namespace, settings: Settings, data_dir: Path, url: str) -> int:
    import asyncio

    from openscws.aio.stack import start_admin

    settings = _admin_settings(args, settings, data_dir, url)

    async def main() -> None:
        stack = await start_admin(settings, api=not args.no_api)
        a = settings.admin
        print(f"admin server: PSK-TLS https://{a.host}:{stack.server.port}{a.uri}", flush=True)
        if stack.api_url:
            print(f"admin console: {stack.api_url}", flush=True)
            await asyncio.to_thread(first_admin, stack.service, stack.api_url)
        if stack.api_ca is not None:
            print(f"admin console CA: {stack.api_ca} (curl --cacert {stack.api_ca})", flush=True)
        from openscws.aio.signals import wait_for_stop_signal

        try:
            await wait_for_stop_signal()
        finally:
            await stack.stop()

    asyncio.run(main())
    return 0


def _vault(ras: RasService, vault: Vault) -> int:
    resumed = vault.rotating
    vault.begin_rotation()
    cards = ras.reseal()
    vault.finish_rotation()
    left = ras.unsealed_elsewhere()
    if left:  # another process sealed under the old key meanwhile: never expected
        print(f"openscws: {left} value(s) are not under the new key", file=sys.stderr)
        return 1
    note = " (finished a rotation that had been cut short)" if resumed else ""
    print(f"master key rotated: {vault.path}; {cards} card(s) re-sealed{note}")
    return 0


def _enrol(args: argparse.Namespace, ras: RasService, settings: Settings) -> int:
    from openscws.ras.provision import AdminEndpoint, ensure_card_admin
    from openscws.store.cardimage import CardImage

    a = settings.admin
    image = CardImage.open(args.card_dir)
    iccid = image.meta.iccid
    msisdn = args.msisdn or _free_msisdn(ras, iccid, settings.card.msisdn)
    taken = [c.iccid for c in ras.list_cards() if c.msisdn == msisdn and c.iccid != iccid]
    if taken:
        image.close()
        raise ConfigError(
            f"MSISDN {msisdn} already belongs to card {taken[0]}: give this card its own (--msisdn)"
        )
    try:
        made = ensure_card_admin(
            ras,
            image,
            iccid=iccid,
            msisdn=msisdn,
            endpoint=AdminEndpoint(a.host, a.port, "localhost", a.uri),
        )
    finally:
        image.close()
    what = "enrolled with new keys" if made else "already enrolled"
    print(f"card {iccid}: {what} (MSISDN {msisdn})")
    return 0


def _free_msisdn(ras: RasService, iccid: str, configured: str) -> str:
    """The card's MSISDN when none is given: its own if enrolled, card.msisdn if no other
    card has it, else card.msisdn's digits with the ICCID's last digits before the check
    digit (distinct for each card of one issuer's range)."""
    known = ras.card(iccid)
    if known is not None and known.msisdn:
        return known.msisdn
    used = {c.msisdn for c in ras.list_cards() if c.iccid != iccid}
    if configured not in used:
        return configured
    plus = "+" if configured.startswith("+") else ""
    digits = configured.lstrip("+")
    for width in range(6, 13):
        serial = iccid[-1 - width : -1]
        candidate = plus + digits[: max(3, len(digits) - width)] + serial
        if candidate not in used:
            return candidate
    raise ConfigError(f"no free MSISDN derived from {configured}: give one (--msisdn)")


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else f"{moment:%Y-%m-%d %H:%M:%S}Z"


def _key_length(ref: int) -> int:
    """The key size a KIc / KID algorithm nibble wants (TS 102 225 §5.1.2, §5.1.3.1)."""
    return {0x1: 8, 0x5: 16, 0x9: 24, 0xD: 8}.get(ref & 0x0F, 16)


def _card(args: argparse.Namespace, ras: RasService) -> int:
    match args.admin_action:
        case "add":
            iccid = check_iccid(args.card_iccid)
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
                psk_identity=args.psk_identity or default_psk_identity(iccid),
                psk_key=keys["psk"],
                agent_id=args.agent_id or default_agent_id(iccid),
                ota_tar=args.tar,
                kic_key=keys["kic"],
                kid_key=keys["kid"],
                kic=args.kic_ref,
                kid=args.kid_ref,
                ota_counter=args.counter,
            )
            from openscws.ras.accounts import key_checksum

            args.audit_detail = (
                f"psk-identity {info.psk_identity}, PSK check {key_checksum(keys['psk'])}, "
                f"KIc {info.ota_kic:02X} check {key_checksum(keys['kic'])}, "
                f"KID {info.ota_kid:02X} check {key_checksum(keys['kid'])}"
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
            print_listing(
                (
                    f"{c.iccid:<21} {c.msisdn or '-':<16} {c.ota_tar:<6} {c.ota_counter:>6}  "
                    f"{c.psk_identity}"
                    for c in ras.list_cards()
                ),
                header=f"{'ICCID':<21} {'MSISDN':<16} {'TAR':<6} {'CNTR':>6}  PSK identity",
            )
        case "show":
            found = ras.card(args.card_iccid)
            if found is None:
                raise NotFoundError(f"no card {args.card_iccid}")
            print(f"ICCID         {found.iccid}")
            print(f"MSISDN        {found.msisdn or '-'}")
            print(f"agent id      {found.agent_id}")
            print(f"PSK identity  {found.psk_identity}")
            print(f"TAR           {found.ota_tar}")
            print(f"KIc / KID     {found.ota_kic:02X} / {found.ota_kid:02X}")
            print(f"OTA counter   {found.ota_counter} (last used)")
            print(f"added         {_when(found.created_at)}")
            print("jobs (newest first):")
            print_listing(
                (
                    f"{job.id}  campaign {job.campaign_id or '-'}  {job.state:<10} "
                    f"attempts {job.attempts}/{job.max_attempts}"
                    + (f"  {job.last_error}" if job.last_error else "")
                    for job in ras.card_jobs(found.iccid, limit=10)
                ),
                indent="  ",
            )
        case "rm":
            if not ras.remove_card(args.card_iccid):
                raise NotFoundError(f"no card {args.card_iccid}")
            print(f"removed card {args.card_iccid}")
    return 0


def _content(args: argparse.Namespace, ras: RasService) -> int:
    match args.admin_action:
        case "put":
            path, repo_path = _put_order(args.file, args.content_path)
            if path.is_dir():
                raise ConfigError(f"{path} is a directory: the repository takes one file a path")
            try:
                body = path.read_bytes()
            except OSError as exc:
                raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
            guessed, _ = mimetypes.guess_type(path.name)
            args.content_path = repo_path
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
            print_listing(
                f"v{c.version:<4} {c.size:>9}  {c.content_type:<28} {c.path}"
                + "".join(
                    f" {k}={v}"
                    for k, v in (
                        ("encoding", c.content_encoding),
                        ("language", c.content_language),
                        ("realm", c.realm),
                    )
                    if v
                )
                for c in ras.list_content()
            )
        case "history":
            versions = ras.content_history(args.content_path)
            if not versions:
                raise NotFoundError(f"{args.content_path} is not in the repository")
            for c in versions:
                what = "deleted" if c.deleted else f"{c.size} B {c.content_type}"
                print(f"v{c.version:<4} {_when(c.created_at)}  {c.sha256[:12]}  {what}")
        case "rm":
            gone = ras.delete_content(args.content_path)
            if gone is None:
                raise NotFoundError(f"no current {args.content_path} to delete")
            print(f"deleted {gone.path} (tombstone v{gone.version})")
        case "purge":
            n = ras.purge_content(args.content_path)
            if not n:
                raise NotFoundError(f"{args.content_path} is not in the repository")
            print(f"purged {args.content_path} ({n} version(s))")
    return 0


def _put_order(file: Path, path: str) -> tuple[Path, str]:
    """(FILE, PATH) of `admin content put FILE PATH`; the old order PATH FILE (a repository
    path first, then an existing file) still works, with a deprecation warning."""
    if str(file).startswith("/") and not file.exists() and Path(path).exists():
        print(
            "openscws: warning: `admin content put PATH FILE` is deprecated: write FILE PATH, "
            "as `openscws content put SOURCE PATH`",
            file=sys.stderr,
        )
        return Path(path), str(file)
    return file, path


def _ops(ops: Any) -> str:
    return ", ".join(
        "new admin keys"
        if op.op == "rotate-keys"
        else f"{op.op} {op.path}" + (f" v{op.version}" if op.version is not None else "")
        for op in ops
    )


def _campaign(args: argparse.Namespace, ras: RasService) -> int:
    match args.admin_action:
        case "create":
            acp = None
            if args.acp is not None:
                try:
                    acp = json.loads(args.acp.read_bytes())
                except (OSError, ValueError) as e:
                    raise ConfigError(f"cannot read the policy {args.acp}: {e}") from None
            info = ras.create_campaign(
                args.name,
                paths=args.path,
                cards=args.card,
                max_attempts=args.max_attempts,
                acp=acp,
                trigger=args.trigger,
            )
            print(f"campaign {info.id} {info.name!r}: {info.jobs} card(s)")
            print(f"  {_ops(info.operations)}")
            if args.wait:
                return _follow(ras, info.id, args.timeout)
        case "rotate-keys":
            info = ras.create_key_rotation(
                args.name, cards=args.card, max_attempts=args.max_attempts
            )
            print(f"campaign {info.id} {info.name!r}: new keys for {info.jobs} card(s)")
            if args.wait:
                return _follow(ras, info.id, args.timeout)
        case "ls":
            print_listing(
                (
                    f"{c.id:>4}  {c.state:<9} {c.open_jobs:>5} {c.jobs:>5}  "
                    f"{_when(c.created_at):<20} {c.name}"
                    for c in ras.list_campaigns()
                ),
                header=f"{'ID':>4}  {'STATE':<9} {'OPEN':>5} {'JOBS':>5}  {'CREATED':<20} NAME",
            )
        case "show":
            if args.wait:
                return _follow(ras, args.campaign_id, args.timeout)
            info = ras.campaign(args.campaign_id)
            progress = info.progress
            print(f"campaign {info.id} {info.name!r}: {info.state}, {_when(info.created_at)}")
            print(f"  {_ops(info.operations)}")
            print("  " + "  ".join(f"{state} {n}" for state, n in progress.items()))
            print_listing(
                (
                    f"{row.iccid:<21} {row.state:<10} {row.attempts}/{row.max_attempts}"
                    + (f"  {row.last_error}" if row.last_error else "")
                    for row in ras.campaign_cards(args.campaign_id)
                ),
                indent="  ",
            )
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
        raise NotFoundError(f"no card {args.card_iccid}")
    print_listing(
        f"{_when(entry.started_at)} .. {_when(entry.ended_at)}  {entry.outcome:<8} "
        f"job {entry.job_id or '-'}" + "".join(f"\n    {line}" for line in entry.detail)
        for entry in ras.session_logs(args.card_iccid, args.limit)
    )
    return 0
