"""`openscws dm serve|init|device|job`: the OMA DM server and its state from the command line.
Heavy imports (SQLAlchemy, Alembic, cryptography) wait until a command runs.

Where the state lives: --data-dir (default dm.data_dir, $XDG_DATA_HOME/openscws/dm) holds
master.key (seals the devices' credentials), tls/ (the server's own certificate when --cert is
not given) and, by default, dm.db; the database URL is --db, else dm.db ($OPENSCWS_DM_DB),
else SQLite there. Errors go to the `openscws` command's one error boundary."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Final

from openscws.config import Settings, tcp_port
from openscws.errors import ConfigError

if TYPE_CHECKING:
    from openscws.dm.api import DmApi
    from openscws.dm.db import DmDatabase, DmStore
    from openscws.ras.vault import Vault

__all__ = ["ACTIONS", "register_server", "run", "serves"]

_DESCRIPTION = """\
The OMA DM 1.2 server (OMA-TS-DM_Protocol, OMA-TS-DM_Security): devices POST their SyncML
DM messages to https://HOST:PORT/dm over TLS 1.0-1.2 or PSK-TLS, authenticate at the
transport (HTTP Basic, Digest, a client certificate or PSK-TLS) and in the session (SyncML
credentials), and run the management jobs waiting for them. Start with `openscws dm init`."""

_JOB_HELP = """\
commands as JSON: [{"op": "Get", "uri": "./DevInfo/Mod"}, {"op": "Replace", "uri":
"./DMAcc/1/Name", "data": "x"}] (op: Get, Replace, Add, Delete, Exec), or @FILE"""


_SECRET = (
    "; env:NAME reads it from that environment variable, @FILE from the file's first line, "
    "- from stdin's (a command line is visible to other local users)"
)


def _secret(text: str | None, what: str) -> str | None:
    """A secret option's value: as given, or from env:NAME, @FILE or - (stdin)."""
    import os

    if text is None:
        return None
    if text.startswith("env:"):
        value = os.environ.get(text[4:])
        if value is None:
            raise ConfigError(f"{what}: ${text[4:]} is not set")
        return value
    if text.startswith("@"):
        lines = Path(text[1:]).read_text(encoding="utf-8").splitlines()
        return lines[0] if lines else ""
    if text == "-":
        return sys.stdin.readline().rstrip("\r\n")
    return text


def _where(p: argparse.ArgumentParser) -> None:
    from openscws.cli import common_options

    common_options(p)
    p.add_argument(
        "--data-dir",
        dest="dm_data_dir",
        type=Path,
        metavar="DIR",
        help="holds master.key, tls/ and the default dm.db (default: dm.data_dir)",
    )
    p.add_argument(
        "--db",
        dest="dm_db",
        metavar="URL",
        help="database URL, e.g. postgresql+psycopg://dm@host/dm (default: dm.db, "
        "$OPENSCWS_DM_DB, else SQLite in the data dir)",
    )


def _serve_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", dest="dm_host", default="127.0.0.1", help="address (127.0.0.1)")
    p.add_argument("--port", dest="dm_port", type=tcp_port, help="HTTPS port (default: dm.port)")
    p.add_argument("--cert", dest="dm_cert", type=Path, help="certificate chain (PEM)")
    p.add_argument("--key", dest="dm_key", type=Path, help="its private key (PEM)")
    p.add_argument(
        "--client-ca",
        dest="dm_client_ca",
        type=Path,
        help="CA of the devices' client certificates (PEM): enables certificate auth",
    )
    p.add_argument(
        "--min-tls",
        dest="dm_min_tls",
        choices=("1.0", "1.1", "1.2"),
        help="oldest TLS version (default: dm.min_tls, 1.0)",
    )
    p.add_argument(
        "--server-uri",
        dest="dm_server_uri",
        help="the server's URI in its SyncHdr Source (default: https://HOST:PORT/dm)",
    )
    p.add_argument(
        "--no-api",
        dest="dm_no_api",
        action="store_true",
        help="no REST API and no console (they take the admin server's API tokens and "
        "accounts, from admin.db)",
    )
    p.add_argument(
        "--console-host",
        dest="dm_console_hosts",
        action="append",
        default=[],
        metavar="NAME",
        help="a host name the console at /console answers to besides localhost, the loopback "
        "addresses and --host (repeatable; other Host headers get 421)",
    )
    p.add_argument(
        "--sms-url",
        dest="dm_sms_url",
        help="the terminal's local SMS entry point (http://HOST:PORT/sms, as openscws up "
        "prints it): a job created over the REST API or the console sends its device a "
        "Package #0 there",
    )


ACTIONS: Final = ("serve", "init", "device", "job")
"""The `openscws dm` actions of the server side (the client's are `dm.client_cli`'s)."""


def register_server(acts: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds `serve`, `init`, `device` and `job` to the actions of `openscws dm`."""
    serve = acts.add_parser(
        "serve", help="run the DM server (HTTPS, PSK-TLS, REST API)", description=_DESCRIPTION
    )
    _where(serve)
    _serve_options(serve)
    init = acts.add_parser("init", help="create the master key and the database schema")
    _where(init)
    device = acts.add_parser("device", help="managed devices and their credentials")
    d_acts = device.add_subparsers(dest="dm_device_action", required=True, metavar="ACTION")
    add = d_acts.add_parser("add", help="add a device (secrets never printed)")
    _where(add)
    add.add_argument("dev_id", help="the device's DevId, e.g. IMEI:490154203237518")
    add.add_argument(
        "--app-auth",
        choices=("basic", "md5", "hmac"),
        default="md5",
        help="SyncML credentials the device sends (default md5: syncml:auth-md5)",
    )
    add.add_argument("--app-user", required=True, help="its CLCRED AAuthName")
    add.add_argument("--app-password", required=True, help=f"its CLCRED AAuthSecret{_SECRET}")
    add.add_argument("--server-id", default="openscws-dm", help="our ServerID (SRVCRED name)")
    add.add_argument("--server-password", required=True, help=f"our SRVCRED AAuthSecret{_SECRET}")
    add.add_argument(
        "--server-auth",
        choices=("basic", "md5", "hmac"),
        help="how we authenticate to the device (default: not at all)",
    )
    add.add_argument(
        "--http-auth",
        choices=("none", "basic", "digest", "cert", "psk"),
        default="none",
        help="transport authentication (default none: TLS and the SyncML credentials)",
    )
    add.add_argument("--http-user", help="HTTP Basic or Digest user name")
    add.add_argument("--http-password", help=f"HTTP Basic or Digest password{_SECRET}")
    add.add_argument("--cert", dest="device_cert", type=Path, help="the device's certificate")
    add.add_argument("--psk-identity", help="PSK-TLS identity")
    add.add_argument("--psk-key", help=f"PSK-TLS key, hex (at least 16 bytes){_SECRET}")
    add.add_argument("--msisdn", help="where Package #0 goes by SMS when a job is created")
    ls = d_acts.add_parser("ls", help="list the devices (never their secrets)")
    _where(ls)
    rm = d_acts.add_parser("rm", help="remove a device and its jobs")
    _where(rm)
    rm.add_argument("dev_id", help="the device's DevId")
    job = acts.add_parser("job", help="management jobs: Get, Replace, Add, Delete, Exec")
    j_acts = job.add_subparsers(dest="dm_job_action", required=True, metavar="ACTION")
    create = j_acts.add_parser("create", help="queue a job for a device's next session")
    _where(create)
    create.add_argument("dev_id", help="the device's DevId")
    create.add_argument("commands", help=_JOB_HELP)
    j_ls = j_acts.add_parser("ls", help="list jobs")
    _where(j_ls)
    j_ls.add_argument("--device", help="only this device's")
    show = j_acts.add_parser("show", help="a job with its results, as JSON")
    _where(show)
    show.add_argument("job_id", type=int, help="the job's number (`dm job ls`)")


def serves(args: argparse.Namespace) -> bool:
    return getattr(args, "dm_action", None) == "serve"


def run(args: argparse.Namespace, settings: Settings) -> int:
    action = args.dm_action
    creating = action in ("serve", "init")
    vault, db = _open(args, settings, create=creating)
    try:
        from openscws.dm.db import DmStore

        store = DmStore(db, vault)
        match action:
            case "serve":
                return _serve(args, settings, store)
            case "init":
                print(f"master key: {vault.path}")
                print(f"database: {db.engine.url.render_as_string(hide_password=True)}")
                print(f"schema: {db.current_revision()}")
                return 0
            case "device":
                return _device(args, store)
            case "job":
                return _job(args, store)
    finally:
        db.dispose()
    return 2


def _data_dir(args: argparse.Namespace, settings: Settings) -> Path:
    d: Path = getattr(args, "dm_data_dir", None) or settings.dm.data_dir
    return d


def _open(
    args: argparse.Namespace, settings: Settings, *, create: bool
) -> tuple[Vault, DmDatabase]:
    from openscws.dm.db import DmDatabase, default_url
    from openscws.ras.vault import open_server_state

    data_dir = _data_dir(args, settings)
    url = getattr(args, "dm_db", None) or settings.dm.db or default_url(data_dir)
    return open_server_state(
        DmDatabase, data_dir, url, create=create, server="DM server", init="openscws dm init"
    )


def _device(args: argparse.Namespace, store: DmStore) -> int:
    from openscws.dm.db import APP_AUTH
    from openscws.dm.db_models import HttpAuth

    match args.dm_device_action:
        case "add":
            given = [
                n
                for n in ("app_password", "server_password", "http_password", "psk_key")
                if getattr(args, n) == "-"
            ]
            if len(given) > 1:
                raise ConfigError("only one secret can come from stdin (-)")
            for name in ("app_password", "server_password", "http_password", "psk_key"):
                flag = "--" + name.replace("_", "-")
                setattr(args, name, _secret(getattr(args, name), flag))
            pin = None
            if args.device_cert is not None:
                pin = _fingerprint(args.device_cert)
            psk = None
            if args.psk_key is not None:
                try:
                    psk = bytes.fromhex(args.psk_key)
                except ValueError:
                    raise ConfigError("--psk-key: hex digits") from None
            info = store.add_device(
                args.dev_id,
                app_auth=APP_AUTH[args.app_auth],
                app_username=args.app_user,
                app_password=args.app_password,
                server_id=args.server_id,
                server_password=args.server_password,
                server_auth=None if args.server_auth is None else APP_AUTH[args.server_auth],
                http_auth=HttpAuth(args.http_auth),
                http_username=args.http_user,
                http_password=args.http_password,
                cert_sha256=pin,
                psk_identity=args.psk_identity,
                psk_key=psk,
                msisdn=args.msisdn,
            )
            print(f"device {info.dev_id} added (transport: {info.http_auth})")
        case "ls":
            for d in store.devices():
                extra = d.http_username or d.psk_identity or (d.cert_sha256 or "")[:16]
                print(f"{d.dev_id}\t{d.app_auth}\t{d.http_auth}\t{extra or '-'}")
        case "rm":
            store.remove_device(args.dev_id)
            print(f"device {args.dev_id} removed")
    return 0


def _fingerprint(path: Path) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from openscws.dm.server_tls import certificate_fingerprint

    data = path.read_bytes()
    try:
        cert = (
            x509.load_pem_x509_certificate(data)
            if b"-----BEGIN" in data
            else x509.load_der_x509_certificate(data)
        )
    except ValueError:
        raise ConfigError(f"{path}: not an X.509 certificate") from None
    return certificate_fingerprint(cert.public_bytes(serialization.Encoding.DER))


def _job(args: argparse.Namespace, store: DmStore) -> int:
    from openscws.errors import NotFoundError

    match args.dm_job_action:
        case "create":
            text = args.commands
            if text.startswith("@"):
                text = Path(text[1:]).read_text(encoding="utf-8")
            try:
                commands = json.loads(text)
            except ValueError as exc:
                raise ConfigError(f"the commands are not JSON: {exc}") from None
            job = store.create_job(args.dev_id, commands)
            print(f"job {job.id} queued for {job.dev_id} ({len(job.commands)} commands)")
        case "ls":
            for j in store.jobs(args.device):
                print(f"{j.id}\t{j.dev_id}\t{j.state}\t{len(j.commands)} commands")
        case "show":
            found = store.job(args.job_id)
            if found is None:
                raise NotFoundError(f"no job {args.job_id}")
            json.dump(found.as_dict(), sys.stdout, indent=2)
            print()
    return 0


def _serve(args: argparse.Namespace, settings: Settings, store: DmStore) -> int:
    from openscws.dm.server import DmService, ensure_server_certificate, start_dm_server
    from openscws.dm.server_tls import dm_server_context
    from openscws.tls.psk import PskKeys

    host = args.dm_host
    port = args.dm_port if args.dm_port is not None else settings.dm.port
    cert, key = args.dm_cert, args.dm_key
    if (cert is None) != (key is None):
        raise ConfigError("give both --cert and --key")
    ca_note = None
    if cert is None or key is None:
        now = datetime.datetime.now(datetime.UTC)
        names = (
            (host, "localhost") if host not in ("localhost", "0.0.0.0", "::") else ("localhost",)
        )
        cert, key, ca = ensure_server_certificate(_data_dir(args, settings) / "tls", names, now=now)
        ca_note = ca
    tls = dm_server_context(
        cert,
        key,
        psk=PskKeys(store.psk_key, "openscws-dm"),
        client_ca=args.dm_client_ca,
        min_tls=args.dm_min_tls or settings.dm.min_tls,
    )
    api = None if args.dm_no_api else _api(settings, store)
    if api is not None and args.dm_sms_url:
        from openscws.dm.server_notify import Notifier
        from openscws.ras.senders import LocalTerminalSender

        if not args.dm_sms_url.startswith(("http://", "https://")):
            raise ConfigError("--sms-url: an http:// URL")
        api.notifier = Notifier(store, LocalTerminalSender(args.dm_sms_url))

    console = None
    if api is not None:
        from openscws.dm.console import DmConsole
        from openscws.ras.api_auth import default_hosts

        hosts = (*default_hosts(host), "localhost", *args.dm_console_hosts)
        console = DmConsole(api, api.accounts, hosts)

    async def main() -> None:
        from openscws.aio.signals import wait_for_stop_signal

        uri_port = port
        secret = _digest_secret(_data_dir(args, settings))
        service = DmService(
            store,
            server_uri=args.dm_server_uri or "",
            api=api,
            digest_secret=secret,
            console=console,
        )
        server = await start_dm_server(service, tls, host=host, port=port)
        uri_port = server.port
        shown = f"[{host}]" if ":" in host else host
        service.server_uri = args.dm_server_uri or f"https://{shown}:{uri_port}/dm"
        print(f"DM server ready: {service.server_uri}", flush=True)
        if ca_note is not None:
            print(f"its certificate's CA: {ca_note}", flush=True)
        suites = ", ".join(s.name for s in tls.psk_suites)
        print(f"PSK-TLS suites: {suites or 'none'}", flush=True)
        if console is not None:
            print(f"console: https://{shown}:{uri_port}/console", flush=True)
        if api is not None and api.notifier is not None:
            print(f"Package #0 by SMS: {api.notifier.sender.url}", flush=True)
        try:
            await wait_for_stop_signal()
        finally:
            await server.stop()

    asyncio.run(main())
    return 0


def _digest_secret(data_dir: Path) -> bytes:
    """The key of the HTTP Digest nonces, made once in the data dir (0600) and shared by
    every server process started on it."""
    import secrets

    from openscws.store.atomic import atomic_write

    path = data_dir / "digest.key"
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        key = b""
    if len(key) != 32:
        key = secrets.token_bytes(32)
        atomic_write(path, (key,), 0o600)
    return key


def _api(settings: Settings, store: DmStore) -> DmApi | None:
    """The REST API over the admin server's tokens, when the admin server has state."""
    from openscws.dm.api import DmApi
    from openscws.ras.accounts import Accounts
    from openscws.ras.db import RasDatabase, default_url

    admin = settings.admin
    if not admin.db and not (admin.data_dir / "ras.db").exists():
        print("REST API off: no admin server state (openscws admin init)", file=sys.stderr)
        return None
    db = RasDatabase(admin.db or default_url(admin.data_dir))
    db.check_current()
    return DmApi(store, Accounts(db))
