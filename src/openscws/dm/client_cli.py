"""`openscws dm client ...`: the terminal's DM client on its own. `init` writes the management
tree with one DM account, `show` prints it (never a secret), `run` opens a client-initiated
session (Alert 1201), `notify` the session a Package #0 asks for (Alert 1200), given as hex, as
a file holding it, or as the SMS-DELIVER TPDU of its WAP push. Each session prints the TLS
version and suite negotiated with the server, and the status of each server command."""

from __future__ import annotations

import argparse
import asyncio
import binascii
import sys
from pathlib import Path

from openscws.config import Settings
from openscws.errors import ConfigError, OpenScwsError

__all__ = ["register_client", "run_client"]


def register_client(acts: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`client` under `openscws dm`."""
    client = acts.add_parser(
        "client", help="the terminal's DM client: init, show, run, notify", description=__doc__
    )
    sub = client.add_subparsers(dest="dm_client_action", required=True, metavar="ACTION")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "-c", "--config", type=Path, default=argparse.SUPPRESS, help="TOML settings file"
        )
        p.add_argument(
            "-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more log output"
        )
        p.add_argument(
            "-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="less output"
        )
        p.add_argument("--tree", type=Path, help="the client's tree file (dm.client_tree)")

    init = sub.add_parser("init", help="write the tree with one DM account (replaces it)")
    common(init)
    init.add_argument("--dev-id", required=True, help="./DevInfo/DevId, e.g. IMEI:490154203237518")
    init.add_argument("--account", default="1", help="the account's node name ./DMAcc/<x>")
    init.add_argument("--server", required=True, metavar="URL", help="the DM server (https://)")
    init.add_argument("--server-id", required=True, help="the server's ServerID")
    init.add_argument("--user", required=True, help="our name to the server (CLCRED)")
    init.add_argument("--password", required=True, help="our secret to the server (CLCRED)")
    init.add_argument(
        "--auth", choices=("BASIC", "DIGEST", "HMAC"), default="DIGEST", help="CLCRED scheme"
    )
    init.add_argument("--server-password", default="", help="the server's secret (SRVCRED)")
    init.add_argument(
        "--server-auth",
        choices=("BASIC", "DIGEST", "HMAC"),
        default="DIGEST",
        help="SRVCRED scheme",
    )
    init.add_argument("--http", choices=("basic", "digest"), help="HTTP authentication")
    init.add_argument("--http-user", default="", help="HTTP user name")
    init.add_argument("--http-password", default="", help="HTTP password")
    init.add_argument("--cert", type=Path, help="TLS client certificate chain (PEM)")
    init.add_argument("--key", type=Path, help="its private key (PEM, unencrypted)")
    init.add_argument("--psk-identity", default="", help="PSK-TLS identity")
    init.add_argument("--psk-key", default="", help="PSK-TLS key, hexadecimal")
    init.add_argument("--ca", type=Path, help="CA certificates (PEM) for the server's")
    init.add_argument("--tls-min", default="1.1", help="lowest TLS version (1.0, 1.1, 1.2)")
    init.add_argument("--tls-max", default="1.2", help="highest TLS version")
    init.add_argument("--suites", default="", help="OpenSSL cipher string replacing the default")
    init.add_argument("--no-check-hostname", action="store_true", help="accept any server name")

    show = sub.add_parser("show", help="the accounts of the tree (never a secret)")
    common(show)

    run = sub.add_parser("run", help="a client-initiated session (Alert 1201)")
    common(run)
    run.add_argument("--account", help="./DMAcc/<x> (dm.client_account)")
    run.add_argument("--wbxml", action="store_true", help="send WBXML instead of XML")
    run.add_argument("--allow-http", action="store_true", help="admit an http:// server")

    notify = sub.add_parser("notify", help="the session a Package #0 asks for (Alert 1200)")
    common(notify)
    notify.add_argument("package0", help="Package #0 as hex, or a file holding it (or its SMS)")
    notify.add_argument("--wbxml", action="store_true", help="send WBXML instead of XML")
    notify.add_argument("--allow-http", action="store_true", help="admit an http:// server")


def _tree_path(args: argparse.Namespace, settings: Settings) -> Path:
    return args.tree if args.tree is not None else settings.dm.client_tree


def _read(path: Path | None) -> bytes:
    if path is None:
        return b""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None


def _init(args: argparse.Namespace, settings: Settings) -> int:
    from openscws.dm import client_store
    from openscws.dm.transport import TlsSettings, client_context

    try:
        psk = bytes.fromhex(args.psk_key)
    except ValueError:
        raise ConfigError("--psk-key must be hexadecimal") from None
    if bool(args.psk_identity) != bool(psk):
        raise ConfigError("--psk-identity and --psk-key go together")
    if (args.cert is None) != (args.key is None):
        raise ConfigError("--cert and --key go together")
    tls = TlsSettings(
        min_version=args.tls_min,
        max_version=args.tls_max,
        suites=args.suites,
        psk_identity=args.psk_identity,
        psk_key=psk,
        ca_file=args.ca.resolve() if args.ca else None,
        client_cert_pem=_read(args.cert),
        client_key_pem=_read(args.key),
        check_hostname=not args.no_check_hostname,
    )
    client_context(tls)  # refuse what cannot work now, not at the first session
    acc = client_store.AccountSettings(
        server_id=args.server_id,
        server_url=args.server,
        client_name=args.user,
        client_secret=args.password,
        client_auth=args.auth,
        server_secret=args.server_password,
        server_auth=args.server_auth,
        http_auth={"basic": "HTTP-BASIC", "digest": "HTTP-DIGEST"}.get(args.http or "", ""),
        http_name=args.http_user,
        http_secret=args.http_password,
        client_cert_pem=tls.client_cert_pem,
        client_key_pem=tls.client_key_pem,
        tls=tls,
    )
    path = _tree_path(args, settings)
    try:
        tree = client_store.load(path)
    except ConfigError:
        if path.exists():
            raise
        tree = client_store.new_tree(args.dev_id)
    client_store.add_account(tree, args.account, acc)
    client_store.save(tree, path)
    print(f"DM client tree at {path}: account {args.account} for {args.server_id} {args.server}")
    return 0


def _show(args: argparse.Namespace, settings: Settings) -> int:
    from openscws.dm import client_store

    tree = client_store.load(_tree_path(args, settings))

    def text(uri: str) -> str:
        node = tree.find(uri)
        value = node.value if node is not None else ""
        return value.decode(errors="replace") if isinstance(value, bytes) else value

    print(f"device {text('./DevInfo/DevId')}")
    for x in client_store.accounts(tree):
        base = f"./DMAcc/{x}"
        tls = client_store.account_tls(tree, x)
        http = client_store.transport_auth(tree, x)
        print(f"account {x}: {text(base + '/ServerID')} {text(base + '/AppAddr/1/Addr')}")
        print(f"  TLS {tls.min_version}..{tls.max_version}"
              + (f", PSK identity {tls.psk_identity}" if tls.psk_identity else "")
              + (", X.509 client certificate" if tls.client_cert_pem else "")
              + (f", HTTP {http[0]} as {http[1]}" if http else ""))  # fmt: skip
        if tree.find("./DevInfo/Ext/TLS/Version") is not None:
            last = f"{text('./DevInfo/Ext/TLS/Version')} {text('./DevInfo/Ext/TLS/Suite')}"
            print(f"  TLS of the last session: {last}")
    return 0


def _package0(text: str) -> bytes:
    from openscws.dm.client_push import package0_of

    path = Path(text)
    if path.is_file():
        raw = _read(path)
        stripped = raw.strip()
        try:
            raw = bytes.fromhex(stripped.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            pass
    else:
        try:
            raw = binascii.unhexlify("".join(text.split()))
        except (binascii.Error, ValueError):
            raise ConfigError("PACKAGE0: neither hexadecimal nor a file") from None
    try:
        via_sms = package0_of(raw)
    except OpenScwsError:
        via_sms = None
    return via_sms if via_sms is not None else raw


async def _session(args: argparse.Namespace, settings: Settings, package0: bytes | None) -> int:
    from openscws.dm.client import DmClient

    client = DmClient(
        _tree_path(args, settings),
        wbxml=args.wbxml or settings.dm.client_wbxml,
        allow_http=args.allow_http,
        timeout=settings.dm.client_timeout,
    )
    try:
        if package0 is None:
            report = await client.run(args.account or settings.dm.client_account)
        else:
            report = await client.run(client.account_for(package0), package0)
    except OpenScwsError:
        if client.last is not None:
            for line in client.last.lines()[:2]:
                print(line)
        raise
    for line in report.lines():
        print(line)
    return 0


def run_client(args: argparse.Namespace, settings: Settings) -> int:
    try:
        match args.dm_client_action:
            case "init":
                return _init(args, settings)
            case "show":
                return _show(args, settings)
            case "run":
                return asyncio.run(_session(args, settings, None))
            case "notify":
                return asyncio.run(_session(args, settings, _package0(args.package0)))
    except OpenScwsError as exc:
        print(f"openscws: {exc}", file=sys.stderr)
        return 2
    return 2
