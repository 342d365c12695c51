"""`openscws bsm ...`: run the BCAST Subscription Management (`openscws bsm`, or `bsm serve`)
and keep its catalogue: SEK/PEKs (`key add|ls`, values never printed) and purchase items
(`item add|ls|rm`). Subscriptions come from the terminals' own requests (implicit
registration). Heavy imports wait until a command runs.

Where the state lives: --data-dir (default $XDG_DATA_HOME/openscws/bsm) holds master.key and,
by default, bsm.db; the database URL is --db, else the bsm.db setting ($OPENSCWS_BSM_DB), else
SQLite there.
Subscriber keys: a NAI registered with `bsm ruim add` (its RK) gives TK and Auth-Key; any other
username is taken as a B-TID and asked of a BSF over Zn (--zn-url and --zn-token-file, the
token `openscws bsf naf add <BSM FQDN>` printed). Unknown usernames are refused with 401."""

from __future__ import annotations

import argparse
import asyncio
import secrets
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Final

from openscws.config import Settings, tcp_port
from openscws.errors import ConfigError

if TYPE_CHECKING:
    from openscws.bcast.sprov import KeyId
    from openscws.bcast.store import SqlStore
    from openscws.ras.db import RasDatabase

__all__ = ["register", "run", "serves"]


_DESCRIPTION = """\
The BSM of the OMA BCAST smartcard profile: terminals POST Service Request, Subscription
Renewal, Unsubscribe, Token Purchase and LTKM Request (HTTP Digest with the MRK, username the
B-TID); a successful request subscribes the terminal and its LTKMs (MIKEY, keyed with the MUK)
are pushed over UDP. See docs/bcast.md. With no action: serve."""


def _key_id(text: str) -> KeyId:
    from openscws.bcast.sprov import KeyId, SprovError

    domain, _, key_id = text.partition("/")
    try:
        return KeyId(bytes.fromhex(domain), bytes.fromhex(key_id))
    except (ValueError, SprovError):
        raise argparse.ArgumentTypeError(
            f"{text!r}: DOMAIN/ID, 6 and 8 hex digits (e.g. 00f110/00010002)"
        ) from None


def _hex_bytes(text: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not hex: {text!r}") from None


def _where(p: argparse.ArgumentParser, *, top: bool = False) -> None:
    # An action's copy of these options must not reset what was given before the action.
    default = None if top else argparse.SUPPRESS
    p.add_argument("-c", "--config", type=Path, default=default, help="TOML settings file (unused)")
    p.add_argument(
        "--data-dir",
        dest="bsm_data_dir",
        type=Path,
        metavar="DIR",
        default=default,
        help="holds master.key and the default bsm.db (default: $XDG_DATA_HOME/openscws/bsm)",
    )
    p.add_argument(
        "--db",
        dest="bsm_db",
        metavar="URL",
        default=default,
        help="database URL (default: bsm.db, $OPENSCWS_BSM_DB, or SQLite in the data dir)",
    )
    p.add_argument(
        "-v", "--verbose", action="count", default=0 if top else default, help="more log output"
    )
    p.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=False if top else default,
        help="warnings and errors only",
    )


_SERVE_DEFAULTS: Final = {
    "host": "127.0.0.1",
    "port": 8090,
    "fqdn": "bsm.openscws.test",
    "zn_url": None,
    "zn_token_file": None,
    "udp_port": 0,
    "ltkm_port": 4359,
    "api_host": "127.0.0.1",
    "api_port": None,
    "accounts_db": None,
}


def _serve_options(p: argparse.ArgumentParser, *, top: bool = False) -> None:
    def d(name: str) -> object:
        return _SERVE_DEFAULTS[name] if top else argparse.SUPPRESS

    p.add_argument("--host", default=d("host"), help="address to listen on (127.0.0.1)")
    p.add_argument("--port", type=tcp_port, default=d("port"), help="HTTP port (8090)")
    p.add_argument("--fqdn", default=d("fqdn"), help="the BSM's FQDN, part of its NAF_Id")
    p.add_argument("--zn-url", default=d("zn_url"), help="the BSF's Zn URL (.../zn/v1/keys)")
    p.add_argument(
        "--zn-token-file", type=Path, default=d("zn_token_file"), help="this BSM's Zn token"
    )
    p.add_argument(
        "--udp-port", type=tcp_port, default=d("udp_port"), help="UDP port LTKMs leave from (any)"
    )
    p.add_argument(
        "--ltkm-port",
        type=int,
        default=d("ltkm_port"),
        help="terminals' LTKM port (4359, omabcastltkm)",
    )
    p.add_argument(
        "--api-port",
        type=tcp_port,
        default=d("api_port"),
        help="serve the management REST API and console on this port (default: off)",
    )
    p.add_argument(
        "--api-host", default=d("api_host"), help="address of the management API (127.0.0.1)"
    )
    p.add_argument(
        "--accounts-db",
        metavar="URL",
        default=d("accounts_db"),
        help="the admin server's database, whose accounts and API tokens the management API "
        "takes (default: admin.db, or SQLite in the admin data dir)",
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bsm = sub.add_parser(
        "bsm", help="the BCAST BSM (service provisioning, LTKM push)", description=_DESCRIPTION
    )
    _where(bsm, top=True)
    _serve_options(bsm, top=True)
    acts = bsm.add_subparsers(dest="bsm_action", required=False, metavar="ACTION")
    serve = acts.add_parser("serve", help="run the BSM (the default)")
    _where(serve)
    _serve_options(serve)
    init = acts.add_parser("init", help="create the master key and the database schema")
    _where(init)
    key = acts.add_parser("key", help="SEK/PEKs by Key Domain ID and SEK/PEK ID")
    k_acts = key.add_subparsers(dest="key_action", required=True, metavar="ACTION")
    k_add = k_acts.add_parser("add", help="add a SEK/PEK with a random value (never printed)")
    _where(k_add)
    k_add.add_argument("key", type=_key_id, help="DOMAIN/ID, e.g. 00f110/00010002")
    k_add.add_argument("--size", type=int, choices=(16, 32), default=16, help="bytes (16)")
    k_ls = k_acts.add_parser("ls", help="list the SEK/PEK ids")
    _where(k_ls)
    service = acts.add_parser("service", help="services of the catalogue, by globalServiceID")
    s_acts = service.add_subparsers(dest="service_action", required=True, metavar="ACTION")
    s_add = s_acts.add_parser("add", help="add a service")
    _where(s_add)
    s_add.add_argument("service_id", metavar="ID", help="its globalServiceID")
    s_add.add_argument("--name", default="", help="a name for operators (default: the ID)")
    s_ls = s_acts.add_parser("ls", help="list the services")
    _where(s_ls)
    s_rm = s_acts.add_parser("rm", help="remove a service (and from the items bundling it)")
    _where(s_rm)
    s_rm.add_argument("service_id", metavar="ID", help="its globalServiceID")
    ruim = acts.add_parser("ruim", help="(R-)UIM / CSIM subscribers by NAI, with their RK")
    r_acts = ruim.add_subparsers(dest="ruim_action", required=True, metavar="ACTION")
    r_add = r_acts.add_parser("add", help="add a subscriber (the RK is never printed)")
    _where(r_add)
    r_add.add_argument("nai", help="the subscriber's NAI, its digest username")
    r_add.add_argument("--rk", type=_hex_bytes, required=True, help="RK, 32 or 64 hex digits")
    r_add.add_argument("--rand", type=_hex_bytes, required=True, help="the TK/Auth-Key random")
    r_add.add_argument("--derivation", help="a named RK derivation (default: the project's)")
    r_ls = r_acts.add_parser("ls", help="list the NAIs")
    _where(r_ls)
    item = acts.add_parser("item", help="purchase items and the keys they give")
    i_acts = item.add_subparsers(dest="item_action", required=True, metavar="ACTION")
    i_add = i_acts.add_parser("add", help="add a purchase item")
    _where(i_add)
    i_add.add_argument("ref", help="its globalIDRef")
    i_add.add_argument(
        "--key", dest="keys", type=_key_id, action="append", default=[], help="DOMAIN/ID"
    )
    i_add.add_argument(
        "--service", dest="services", action="append", default=[], help="a globalServiceID"
    )
    i_ls = i_acts.add_parser("ls", help="list purchase items and their keys")
    _where(i_ls)
    i_rm = i_acts.add_parser("rm", help="remove a purchase item and its subscriptions")
    _where(i_rm)
    i_rm.add_argument("ref", help="its globalIDRef")
    subs = acts.add_parser("sub", help="subscriptions and the subscribers' state")
    u_acts = subs.add_subparsers(dest="sub_action", required=True, metavar="ACTION")
    u_ls = u_acts.add_parser("ls", help="list subscriptions (username, item, since)")
    _where(u_ls)
    u_ls.add_argument("--user", help="only this B-TID or NAI")
    u_ls.add_argument("--item", help="only this purchase item")
    u_show = u_acts.add_parser("show", help="a subscriber's tokens, LTKMs and subscriptions")
    _where(u_show)
    u_show.add_argument("user", help="its B-TID or NAI")
    u_rm = u_acts.add_parser("rm", help="end a subscription")
    _where(u_rm)
    u_rm.add_argument("user", help="its B-TID or NAI")
    u_rm.add_argument("ref", help="the purchase item")


def serves(args: argparse.Namespace) -> bool:
    return getattr(args, "bsm_action", None) in (None, "serve")


def run(args: argparse.Namespace, settings: Settings) -> int:
    return _dispatch(args, settings)


def _open(args: argparse.Namespace, settings: Settings, *, create: bool) -> SqlStore:
    from openscws.bcast.db import BsmDatabase, default_url
    from openscws.bcast.store import SqlStore
    from openscws.ras.vault import open_server_state

    data_dir: Path = args.bsm_data_dir or settings.bsm.data_dir
    url = args.bsm_db or settings.bsm.db or default_url(data_dir)
    vault, db = open_server_state(
        BsmDatabase, data_dir, url, create=create, server="BSM", init="openscws bsm init"
    )
    return SqlStore(db, vault)


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    action = getattr(args, "bsm_action", None)
    store = _open(args, settings, create=action in (None, "serve", "init"))
    try:
        if action in (None, "serve"):
            return _serve(args, store, settings)
        if action == "init":
            print(f"master key: {store.vault.path}")
            print(f"database: {store.db.engine.url.render_as_string(hide_password=True)}")
            print(f"schema: {store.db.current_revision()}")
            return 0
        if action == "ruim":
            if args.ruim_action == "add":
                from openscws.bcast.keys import DEFAULT_RK_DERIVATION

                derivation = args.derivation or DEFAULT_RK_DERIVATION
                store.add_rk_subscriber(args.nai, args.rk, args.rand, derivation)
                print(f"subscriber {args.nai} added")
            else:
                for nai in store.rk_subscribers():
                    print(nai)
            return 0
        if action == "key":
            if args.key_action == "ls":
                for key in store.keys():
                    print(f"{key.key_domain.hex()}/{key.key_id.hex()}")
                return 0
            store.add_key(args.key, secrets.token_bytes(args.size))
            print(f"key {args.key.key_domain.hex()}/{args.key.key_id.hex()} added")
            return 0
        if action == "service":
            return _service(args, store)
        if action == "sub":
            return _sub(args, store)
        if args.item_action == "add":
            store.add_item(args.ref, args.keys, args.services)
            print(f"purchase item {args.ref} added")
        elif args.item_action == "ls":
            for item in store.item_infos():
                shown = " ".join(f"{k.key_domain.hex()}/{k.key_id.hex()}" for k in item.keys)
                services = " ".join(item.services) or "-"
                print(f"{item.ref}\t{shown or '-'}\t{services}\t{item.subscribers} subscribed")
        else:
            store.remove_item(args.ref)
            print(f"purchase item {args.ref} removed")
        return 0
    finally:
        store.db.dispose()


def _service(args: argparse.Namespace, store: SqlStore) -> int:
    if args.service_action == "add":
        store.add_service(args.service_id, args.name)
        print(f"service {args.service_id} added")
    elif args.service_action == "ls":
        for service in store.services():
            print(f"{service.service_id}\t{service.name}")
    else:
        store.remove_service(args.service_id)
        print(f"service {args.service_id} removed")
    return 0


def _sub(args: argparse.Namespace, store: SqlStore) -> int:
    from openscws.ras.db import NotFound

    if args.sub_action == "ls":
        for sub in store.subscription_list(username=args.user, ref=args.item):
            print(f"{sub.username}\t{sub.ref}\t{_when(sub.created_ms)}")
    elif args.sub_action == "show":
        info = store.subscriber(args.user)
        if info is None:
            raise NotFound(f"no subscriber {args.user!r}")
        print(f"subscriber: {info.username}")
        print(f"since: {_when(info.created_ms)}")
        print(f"tokens: {info.tokens}")
        print(f"LTKMs issued: {info.ltkms}")
        print(f"subscriptions: {' '.join(info.subscriptions) or '-'}")
    else:
        store.cancel_subscription(args.user, args.ref)
        print(f"subscription of {args.user} to {args.ref} ended")
    return 0


def _when(ms: int) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _accounts_db(args: argparse.Namespace, settings: Settings) -> RasDatabase:
    """The admin server's database (its accounts), at the current schema."""
    from openscws.ras.db import RasDatabase, default_url

    url = args.accounts_db or settings.admin.db or default_url(settings.admin.data_dir)
    db = RasDatabase(url)
    try:
        db.check_current()
    except BaseException:
        db.dispose()
        raise
    return db


def _serve(args: argparse.Namespace, store: SqlStore, settings: Settings) -> int:
    from openscws.bcast.api import create_bsm_api
    from openscws.bcast.bsm import BsmCore, UserKeys
    from openscws.bcast.server import ZnKeys, first_keys, start_bsm
    from openscws.ras.accounts import Accounts
    from openscws.ras.api_server import serve_api, stop_api

    if (args.zn_url is None) != (args.zn_token_file is None):
        raise ConfigError("give both --zn-url and --zn-token-file, or neither")
    token = args.zn_token_file.read_text().strip() if args.zn_token_file else None
    accounts_db = _accounts_db(args, settings) if args.api_port is not None else None

    async def main() -> None:
        loop = asyncio.get_running_loop()

        def no_keys(_user: str) -> UserKeys | None:
            return None

        zn = ZnKeys(args.zn_url, token, args.fqdn, loop) if token else no_keys
        core = BsmCore(args.fqdn, store, first_keys(store.rk_user_keys, zn))
        server = await start_bsm(
            core, host=args.host, port=args.port, udp_port=args.udp_port, ltkm_port=args.ltkm_port
        )
        api = None
        if accounts_db is not None:
            app = create_bsm_api(store, Accounts(accounts_db))
            try:
                api = await serve_api(app, args.api_host, args.api_port, access_log=False)
            except BaseException:
                await server.stop()
                raise
            print(f"BSM management API and console: {api.url}", flush=True)
        print(f"BSM ready: {server.url} (LTKMs from UDP {server.udp_port})", flush=True)
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            if api is not None:
                await stop_api(api)
            await server.stop()

    try:
        asyncio.run(main())
    finally:
        if accounts_db is not None:
            accounts_db.dispose()
    return 0
