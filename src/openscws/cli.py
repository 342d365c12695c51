"""The `openscws` command. Only this module reads argv and configures logging."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import logging
import logging.config
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from cryptography import x509

from openscws import __version__
from openscws.aio.gateway import GatewayError
from openscws.aio.links import CardLink, accept_vpcd_card
from openscws.aio.stack import card_of, card_tls, gateway_for, open_image, start_stack
from openscws.aio.vicc import serve_card
from openscws.bcast import bspc_cli
from openscws.bcast import cli as bsm_cli
from openscws.bsf import cli as bsf_cli
from openscws.config import Settings, load, to_toml
from openscws.errors import ConfigError, KeyUseDenied, ListenError, StoreError
from openscws.gba import cli as gba_cli
from openscws.pki.keys import KeyType
from openscws.ras import cli as admin_cli
from openscws.store.cardimage import CardImage
from openscws.trace.tracer import ApduTracer
from openscws.uicc.keystore import CardKeyStore

log = logging.getLogger("openscws")

EPILOG = """\
Settings come from --config FILE (TOML; `openscws config` prints every setting with its
default), then from the options given here, which win.
"""


def _configure_logging(verbosity: int) -> None:
    level = ["WARNING", "INFO", "DEBUG"][max(0, min(verbosity + 1, 2))]
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {
                "plain": {"format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s"}
            },
            "handlers": {
                "stderr": {
                    "class": "logging.StreamHandler",
                    "formatter": "plain",
                    "stream": "ext://sys.stderr",
                }
            },
            "root": {"level": level, "handlers": ["stderr"]},
            # Schema checks and per-request access lines are noise below -vv.
            "loggers": {
                name: {"level": "DEBUG" if verbosity >= 2 else "WARNING"}
                for name in ("alembic", "uvicorn.access")
            },
        }
    )


def _port_map(text: str) -> tuple[int, int]:
    card, sep, local = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected CARD_PORT=LOCAL_PORT, got {text!r}")
    try:
        return int(card), int(local)
    except ValueError:
        raise argparse.ArgumentTypeError(f"ports must be numbers: {text!r}") from None


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", type=Path, help="TOML settings file")
    p.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")


def _card_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir", type=Path, help="card image directory (default: see `openscws config`)"
    )
    p.add_argument("--iccid", help="ICCID for a new card image (19-20 digits)")


def _gateway_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="address the BIP gateway listens on (default 127.0.0.1)")
    p.add_argument(
        "--port-map",
        type=_port_map,
        action="append",
        metavar="CARD=LOCAL",
        help="serve card port CARD on local TCP port LOCAL, e.g. 3516=8080 (repeatable)",
    )
    p.add_argument("--trace", action="store_true", help="print every APDU exchanged, decoded")
    p.add_argument(
        "--pcap", type=Path, help="write the APDUs to this pcap file as GSMTAP SIM frames"
    )


def _card_actions(card: argparse.ArgumentParser) -> None:
    acts = card.add_subparsers(dest="action", required=False, metavar="ACTION")
    init = acts.add_parser(
        "init",
        help="make the card's key pair inside the card image (and the image if needed)",
        description="Make the card's key pair in its secure area. With --issue, also get a "
        "device certificate from the issuer CA (created if missing) and install it.",
    )
    init.add_argument("--key-type", choices=("rsa", "ec"), help="rsa (2048, default) or ec")
    init.add_argument("--force", action="store_true", help="replace an existing key pair")
    init.add_argument("--issue", action="store_true", help="also issue the device certificate")
    init.add_argument("--no-demo", action="store_true", help="leave a new image empty")
    csr = acts.add_parser("csr", help="print a CSR for the card's key (signed in the card)")
    csr.add_argument("-o", "--output", type=Path, help="write here instead of standard output")
    csr.add_argument("--host", action="append", help="subjectAltName entry (repeatable)")
    cert = acts.add_parser("install-cert", help="install the device certificate chain")
    cert.add_argument("chain", type=Path, help="PEM: device certificate first, then issuers")
    acts.add_parser("show", help="the card's key, certificate, PSK identities and policy")
    psk = acts.add_parser("psk", help="PSK-TLS identities on the card's HTTPS port")
    psk_sub = psk.add_subparsers(dest="psk_action", required=True, metavar="PSK_ACTION")
    add = psk_sub.add_parser("add", help="add or replace an identity")
    add.add_argument("identity", help="PSK identity (UTF-8, up to 128 bytes)")
    add.add_argument("--key", help="key in hex, 16-64 bytes (default: 16 random bytes)")
    rm = psk_sub.add_parser("rm", help="remove an identity")
    rm.add_argument("identity", help="the PSK identity to remove")
    psk_sub.add_parser("ls", help="list identities (never the keys)")
    enable = psk_sub.add_parser("enable", help="offer the PSK suites on the HTTPS port")
    enable.add_argument("--hint", help="PSK identity hint sent to clients")
    psk_sub.add_parser("disable", help="stop offering the PSK suites")
    policy = acts.add_parser("policy", help="card applications allowed to use the private key")
    policy_sub = policy.add_subparsers(dest="policy_action", required=True, metavar="ACT")
    allow = policy_sub.add_parser("allow", help="authorise a card application")
    allow.add_argument("app", help="card application name (as registered on the card)")
    deny = policy_sub.add_parser("deny", help="withdraw an application's authorisation")
    deny.add_argument("app", help="card application name")
    policy_sub.add_parser("ls", help="list authorised applications")
    usim = acts.add_parser(
        "usim",
        help="the USIM subscription: IMSI, MILENAGE K and OPc (AUTHENTICATE)",
        description="The card's USIM application answers AUTHENTICATE (3GPP TS 31.102 "
        "§7.1.2, 3G and GSM contexts) with MILENAGE. Keys live in the card's secure area "
        "and are never printed.",
    )
    usim_sub = usim.add_subparsers(dest="usim_action", required=True, metavar="USIM_ACTION")
    u_set = usim_sub.add_parser("set", help="store a subscription (replaces one; SQN restarts)")
    u_set.add_argument("--imsi", required=True, help="6 to 15 digits")
    u_set.add_argument("--k", required=True, help="subscriber key K, 32 hex digits")
    which = u_set.add_mutually_exclusive_group(required=True)
    which.add_argument("--opc", help="OPc, 32 hex digits")
    which.add_argument("--op", help="the operator's OP, 32 hex digits (OPc is derived)")
    u_set.add_argument(
        "--sqn", type=int, default=0, help="the highest SQN the USIM has accepted (default 0)"
    )
    usim_sub.add_parser("show", help="IMSI and SQN (never the keys)")
    usim_sub.add_parser("rm", help="remove the subscription")
    parsers = [init, csr, cert, psk, policy, usim, acts.choices["show"]]
    parsers += list(psk_sub.choices.values()) + list(policy_sub.choices.values())
    parsers += list(usim_sub.choices.values())
    for p in parsers:
        _common(p)
        _card_options(p)
        p.add_argument("--ca-dir", type=Path, help="CA directory (default: ca.dir)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openscws",
        description="Open Smart Card Web Server: a virtual UICC serving HTTP through a "
        "terminal's BIP gateway.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"openscws {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser(
        "up",
        help="run a card, its terminal's BIP gateway and the admin server in one process "
        "(the main job)",
        description="Start a virtual UICC and a BIP gateway in one process, joined in-process by "
        "APDUs, and the remote administration server (PSK-TLS endpoint for cards, REST API and "
        "web console) with the card enrolled. On first run the card image is created with the "
        "demo site, the card's key pair, certificate and admin keys. Prints the URLs.",
    )
    _common(up)
    _card_options(up)
    _gateway_options(up)
    up.add_argument(
        "--no-demo", action="store_true", help="do not install the demo site in a new image"
    )
    up.add_argument(
        "--no-admin",
        action="store_true",
        help="card and gateway only: no admin server, REST API or console, no SMS entry point",
    )
    up.add_argument(
        "--gba",
        action="store_true",
        help="also run a GBA BSF (Ub and Zn, state in $XDG_DATA_HOME/openscws/bsf) with the "
        "card's USIM as a GBA_U subscriber: see docs/gba.md",
    )
    up.add_argument("--bsf-port", type=int, default=8080, help="with --gba: Ub port (8080)")
    up.add_argument("--zn-port", type=int, default=8443, help="with --gba: Zn port (8443)")

    card = sub.add_parser(
        "card",
        help="run the card alone, as a vpcd virtual card (for `openscws gateway` or pcscd)",
        description="Run the virtual UICC as a separate process. It connects to a vsmartcard vpcd "
        "reader: `openscws gateway`, or pcscd with the vpcd driver (port 35963).",
    )
    _common(card)
    _card_options(card)
    card.add_argument(
        "--vpcd", metavar="HOST:PORT", help="reader to connect to (default 127.0.0.1:35963)"
    )
    card.add_argument(
        "--no-demo", action="store_true", help="do not install the demo site in a new image"
    )
    card.add_argument(
        "--tcpip",
        action="store_true",
        help="a card with its own TCP/IP (SCWS §8.2): listen directly, no BIP gateway, on "
        "card.tcpip_http_port / card.tcpip_https_port (80 / 443)",
    )
    card.add_argument("--http-port", type=int, help="--tcpip: HTTP port (default 80)")
    card.add_argument("--https-port", type=int, help="--tcpip: HTTPS port (default 443)")
    _card_actions(card)

    ca = sub.add_parser(
        "ca",
        help="the card issuer's CA: init, sign a card's CSR, show",
        description="The card issuer's certification authority, which signs device "
        "certificates (WAP-profiled X.509, SCWS §11.1.2). Trust its ca.pem in browsers and curl.",
    )
    ca_sub = ca.add_subparsers(dest="action", required=True, metavar="ACTION")
    ca_init = ca_sub.add_parser("init", help="create the CA (key pair and self-signed cert)")
    ca_init.add_argument("--name", default=None, help="the CA's commonName")
    ca_init.add_argument("--organization", default="openscws", help="organizationName")
    ca_init.add_argument(
        "--key-type", choices=("rsa", "ec"), default="rsa", help="rsa (2048, default) or ec (P-256)"
    )
    ca_init.add_argument("--days", type=int, default=3650, help="validity (default 3650)")
    ca_sign = ca_sub.add_parser("sign", help="sign a CSR into a device certificate chain")
    ca_sign.add_argument("csr", type=Path, help="PEM or DER CSR (from `openscws card csr`)")
    ca_sign.add_argument("-o", "--output", type=Path, help="write the chain here, not stdout")
    ca_sign.add_argument(
        "--host", action="append", help="subjectAltName entry (repeatable; default: the CSR's)"
    )
    ca_sign.add_argument("--days", type=int, help="validity (default ca.days, 825)")
    ca_sub.add_parser("show", help="print the CA certificate's path, subject and validity")
    ca_sub.add_parser("profile", help="print the device certificate profile, field by field")
    for action in ca_sub.choices.values():
        _common(action)
        action.add_argument("--ca-dir", type=Path, help="CA directory (default: ca.dir)")

    doctor = sub.add_parser(
        "doctor",
        help="what this machine's TLS stack and peer programs can do for the SCWS",
        description="Report the Python/OpenSSL TLS capabilities the SCWS needs (TLS 1.0-1.3, "
        "PSK, the spec's PSK suites, 3DES), the peer programs the tests use, and the card "
        "image's keys and certificate.",
    )
    _common(doctor)
    _card_options(doctor)

    gw = sub.add_parser(
        "gateway",
        help="run the terminal's BIP gateway alone, for a card over vpcd or in a PC/SC reader",
        description="Run the terminal: it waits for a virtual card on the vpcd port (or takes "
        "the card in a PC/SC reader with --pcsc), drives it with TERMINAL PROFILE / FETCH / "
        "TERMINAL RESPONSE / ENVELOPE, and serves its ports.",
    )
    _common(gw)
    _gateway_options(gw)
    link = gw.add_mutually_exclusive_group()
    link.add_argument(
        "--vpcd", metavar="HOST:PORT", help="where to wait for the card (default 127.0.0.1:35963)"
    )
    link.add_argument(
        "--pcsc",
        metavar="READER",
        nargs="?",
        const="",
        help="drive a card in a PC/SC reader through pcscd instead: a real UICC, or "
        "`openscws card` behind pcscd's vpcd driver; READER is part of the reader's name "
        "(default: the first reader with a card)",
    )

    init = sub.add_parser("init", help="create a card image", description="Create a card image.")
    _common(init)
    _card_options(init)
    init.add_argument("--no-demo", action="store_true", help="leave the image empty")

    content = sub.add_parser(
        "content",
        help="provision the card image offline (put, get, ls, rm)",
        description="Manage the resources in a card image. Writes are atomic: an interrupted "
        "put leaves the old or the new resource, never a torn one.",
    )
    csub = content.add_subparsers(dest="action", required=True, metavar="ACTION")
    put = csub.add_parser("put", help="store a local file or folder as a card resource")
    put.add_argument("source", type=Path, help="local file or directory")
    put.add_argument(
        "path", nargs="?", help="URL path on the card (default /<file name>, or / for a folder)"
    )
    put.add_argument(
        "--type", dest="content_type", help="Content-Type (default: from the file name)"
    )
    put.add_argument("--realm", help="protect the resource with this realm")
    get = csub.add_parser("get", help="print a resource, or write it to a file")
    get.add_argument("path", help="URL path on the card")
    get.add_argument("-o", "--output", type=Path, help="write here instead of standard output")
    ls = csub.add_parser("ls", help="list resources")
    ls.add_argument("prefix", nargs="?", default="/", help="only paths under this prefix")
    rm = csub.add_parser("rm", help="remove a resource")
    rm.add_argument("path", help="URL path on the card")
    rm.add_argument(
        "-r", "--recursive", action="store_true", help="remove everything under the path"
    )
    for action in (put, get, ls, rm):
        _common(action)
        _card_options(action)

    cfg = sub.add_parser("config", help="print the effective settings as TOML")
    _common(cfg)
    admin_cli.register(sub)
    bsf_cli.register(sub)
    bsm_cli.register(sub)
    bspc_cli.register(sub)
    gba_cli.register(sub)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    settings = load(args.config)
    card = settings.card
    if getattr(args, "data_dir", None):
        card = replace(card, data_dir=args.data_dir)
    if getattr(args, "iccid", None):
        card = replace(card, iccid=args.iccid)
    gateway = settings.gateway
    if getattr(args, "host", None):
        gateway = replace(gateway, host=args.host)
    if getattr(args, "port_map", None):
        gateway = replace(gateway, port_map={**gateway.port_map, **dict(args.port_map)})
    if getattr(args, "vpcd", None):
        host, _, port = args.vpcd.rpartition(":")
        if not port.isdigit():
            raise ConfigError(f"--vpcd wants HOST:PORT, got {args.vpcd!r}")
        gateway = replace(gateway, vpcd_host=host or "127.0.0.1", vpcd_port=int(port))
    if getattr(args, "pcsc", None) is not None:
        gateway = replace(gateway, card_link="pcsc", pcsc_reader=args.pcsc)
    elif getattr(args, "vpcd", None):
        gateway = replace(gateway, card_link="vpcd")
    if getattr(args, "key_type", None) and args.command == "card":
        card = replace(card, key_type=args.key_type)
    if getattr(args, "http_port", None) is not None:
        card = replace(card, tcpip_http_port=args.http_port)
    if getattr(args, "https_port", None) is not None:
        card = replace(card, tcpip_https_port=args.https_port)
    ca = settings.ca
    if getattr(args, "ca_dir", None):
        ca = replace(ca, dir=args.ca_dir)
    trace = settings.trace
    if getattr(args, "trace", False):
        trace = replace(trace, enabled=True)
    if getattr(args, "pcap", None):
        trace = replace(trace, pcap=args.pcap)
    return replace(settings, card=card, gateway=gateway, trace=trace, ca=ca)


def _tracer(settings: Settings) -> ApduTracer | None:
    if not settings.trace.enabled and settings.trace.pcap is None:
        return None
    return ApduTracer(sys.stdout if settings.trace.enabled else None, settings.trace.pcap)


async def _run_until_signal(main: asyncio.Future[None]) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    stopper: asyncio.Future[None] = asyncio.ensure_future(_wait_event(stop))
    await asyncio.wait({main, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if not main.done():
        main.cancel()


async def _wait_event(event: asyncio.Event) -> None:
    await event.wait()


def _announce(
    local_port: Callable[[int], int], host: str, settings: Settings, *, card: bool = True
) -> None:
    shown = f"[{host}]" if ":" in host else host
    for port in settings.card.ports:
        scheme = "https" if port in settings.card.tls_ports else "http"
        try:
            local = local_port(port)
        except KeyError:
            continue
        print(f"SCWS ready: {scheme}://{shown}:{local}/", flush=True)
    if card and set(settings.card.ports) & set(settings.card.tls_ports):
        ca = settings.ca.dir / "ca.pem"
        print(f"HTTPS issuer CA: {ca} (curl --cacert {ca})", flush=True)


async def _up(
    settings: Settings, demo: bool, admin: bool, gba: argparse.Namespace | None = None
) -> int:
    tracer = _tracer(settings)
    stack = await start_stack(settings, demo=demo, admin=admin, tracer=tracer)
    bsf = None
    try:
        if gba is not None:
            bsf = await _start_gba(stack.image, settings, gba)
        _announce(stack.gateway.local_port, settings.gateway.host, settings)
        if stack.admin is not None:
            a = settings.admin
            print(
                f"admin server: PSK-TLS https://{a.host}:{stack.admin.server.port}{a.uri} "
                f"(card {stack.image.meta.iccid} enrolled)",
                flush=True,
            )
            if stack.admin.api_url:
                print(f"admin console: {stack.admin.api_url}", flush=True)
                print(f"REST API: {stack.admin.api_url}api/v1 (OpenAPI: /api/v1/openapi.json)")
        await _run_until_signal(asyncio.ensure_future(stack.gateway.wait()))
    finally:
        if bsf is not None:
            await bsf.stop()
            bsf.service.db.dispose()
        await stack.stop()
    return 0


async def _start_gba(image: CardImage, settings: Settings, args: argparse.Namespace) -> Any:
    """`up --gba`: the BSF in this process, the card's USIM (if any) its GBA_U subscriber."""
    from openscws.bsf.server import start_bsf
    from openscws.config import default_data_dir
    from openscws.uicc.usim import UsimSecrets

    def prepare() -> Any:
        service = bsf_cli.open_service(default_data_dir() / "bsf")
        keys = UsimSecrets(image).keys()
        if keys is not None:
            usim = UsimSecrets(image).sqn(keys.ind_bits)
            impi = bsf_cli.provision_card(service, keys, usim.sqn_ms)
            if impi is not None:
                log.info("GBA: the card's USIM is BSF subscriber %s (GBA_U)", impi)
        return service

    service = await asyncio.to_thread(prepare)
    host = settings.gateway.host
    try:
        server = await start_bsf(
            service, host=host, port=args.bsf_port, zn_host=host, zn_port=args.zn_port
        )
    except BaseException:
        service.db.dispose()
        raise
    print(f"BSF Ub ready: {server.ub_url}", flush=True)
    print(f"BSF Zn ready: {server.zn_url}", flush=True)
    return server


async def _card(settings: Settings, demo: bool) -> int:
    from openscws.agent.credentials import AgentSecrets
    from openscws.scws.card import admin_agent

    image = open_image(settings, create=True, demo=demo)
    agent = None
    if AgentSecrets(image).credentials() is not None:
        agent = admin_agent(image, image, settings.card)
        log.info("admin agent on: remote administration triggers are taken")
    card = card_of(settings, image, agent=agent)
    g = settings.gateway
    print(f"card {image.meta.iccid} connecting to vpcd {g.vpcd_host}:{g.vpcd_port}", flush=True)
    await _run_until_signal(asyncio.create_task(serve_card(card, g.vpcd_host, g.vpcd_port)))
    return 0


async def _card_tcpip(settings: Settings, demo: bool) -> int:
    """A card with its own TCP/IP (SCWS §8.2): HTTP and HTTPS on sockets, no BIP."""
    from openscws.aio.direct import DirectServer
    from openscws.scws.card import build_site, handler_factories

    image = open_image(settings, create=True, demo=demo)
    c = settings.card
    site = build_site(image, image.meta.iccid)
    factories = handler_factories(site, c, *card_tls(settings, image))
    ports = {p: (c.tcpip_https_port if p in c.tls_ports else c.tcpip_http_port) for p in factories}
    server = DirectServer(c.tcpip_host, factories, ports)
    try:
        await server.start()
    except OSError as exc:
        hint = " (ports below 1024 need root or CAP_NET_BIND_SERVICE)" if exc.errno == 13 else ""
        raise GatewayError(f"{exc.strerror}{hint}") from exc
    try:
        _announce(server.local_port, c.tcpip_host, settings)
        await _run_until_signal(asyncio.ensure_future(_wait_event(asyncio.Event())))
    finally:
        await server.stop()
    return 0


async def _gateway_main(settings: Settings) -> int:
    g = settings.gateway
    link: CardLink
    if g.card_link == "pcsc":
        from openscws.aio.pcsc import PcscError, open_pcsc_link

        where = f"reader matching {g.pcsc_reader!r}" if g.pcsc_reader else "any reader"
        print(f"waiting for a card in a PC/SC reader ({where})", flush=True)
        try:
            pcsc = await open_pcsc_link(g.pcsc_reader)
        except PcscError as exc:
            raise GatewayError(f"PC/SC: {exc}") from None
        print(f"card in PC/SC reader {pcsc.card.reader!r} ({pcsc.card.protocol})", flush=True)
        link = pcsc
    else:
        print(f"waiting for a card on vpcd {g.vpcd_host}:{g.vpcd_port}", flush=True)
        link = await accept_vpcd_card(g.vpcd_host, g.vpcd_port)
    tracer = _tracer(settings)
    gateway = gateway_for(settings, link, tracer)
    await gateway.start()
    try:
        await gateway.wait_listening()
        _announce(gateway.local_port, settings.gateway.host, settings, card=False)
        await _run_until_signal(asyncio.ensure_future(gateway.wait()))
    finally:
        await gateway.stop()
        if tracer is not None:
            tracer.close()
    if gateway.card_lost:
        print("openscws: the card went away", file=sys.stderr)
        return 1
    return 0


def _content(args: argparse.Namespace, settings: Settings) -> int:
    from openscws.store import content

    image = open_image(settings, create=False, demo=False)
    now = int(time.time())
    match args.action:
        case "put":
            source: Path = args.source
            if source.is_dir():
                done = content.install_tree(
                    image, source, args.path or "/", realm=args.realm, now=now
                )
                for r in done:
                    print(f"put {r.path} ({len(r.body)} B, {r.content_type})")
            else:
                url = args.path or "/" + source.name
                r = content.put_file(
                    image, source, url, content_type=args.content_type, realm=args.realm, now=now
                )
                print(f"put {r.path} ({len(r.body)} B, {r.content_type})")
        case "get":
            r = content.get_resource(image, args.path)
            if args.output:
                args.output.write_bytes(r.body)
            else:
                sys.stdout.buffer.write(r.body)
        case "ls":
            for row in content.list_resources(image, args.prefix):
                stamp = time.strftime("%Y-%m-%d %H:%M", time.gmtime(row.last_modified))
                realm = f" realm={row.realm}" if row.realm else ""
                print(f"{row.size:>9}  {stamp}  {row.content_type:<32} {row.path}{realm}")
        case "rm":
            removed = content.remove(image, args.path, recursive=args.recursive)
            if not removed:
                print(f"openscws: no resource at {args.path}", file=sys.stderr)
                return 1
            for path in removed:
                print(f"removed {path}")
    return 0


def _card_action(args: argparse.Namespace, settings: Settings) -> int:
    from openscws.store.issuer import IssuerCa
    from openscws.store.provision import issue_device_certificate
    from openscws.uicc.keystore import CardKeyStore

    image = open_image(
        settings,
        create=args.action == "init",
        demo=not args.no_demo if args.action == "init" else False,
    )
    keys = CardKeyStore(image)
    now = datetime.datetime.now(datetime.UTC)
    match args.action:
        case "init":
            key_type: KeyType = "ec" if settings.card.key_type == "ec" else "rsa"
            if keys.has_key and not args.force:
                print(
                    f"the card already has a {keys.key_type().upper()} key pair "
                    "(--force makes a new one)"
                )
            else:
                keys.generate(key_type, replace=args.force)
                print(f"made a {key_type.upper()} key pair in {image.root}/secure")
            if args.issue:
                ca_dir = settings.ca.dir
                ca = (
                    IssuerCa.open(ca_dir)
                    if IssuerCa.exists(ca_dir)
                    else IssuerCa.create(ca_dir, now=now, key_type=key_type)
                )
                cert = issue_device_certificate(
                    keys, ca, iccid=image.meta.iccid, now=now, days=settings.ca.days
                )
                print(
                    f"installed device certificate {cert.subject.rfc4514_string()}, "
                    f"issued by {ca.cert_path}"
                )
            else:
                print(
                    "next: `openscws card csr -o card.csr`, `openscws ca sign card.csr -o "
                    "chain.pem`, `openscws card install-cert chain.pem` (or use --issue)"
                )
        case "csr":
            from openscws.pki.profile import DEFAULT_HOSTS

            hosts = tuple(args.host or DEFAULT_HOSTS)
            pem = keys.make_csr(
                common_name=hosts[0],
                serial_number=image.meta.iccid,
                organization="openscws SCWS",
                hosts=hosts,
            )
            _output(pem, args.output)
        case "install-cert":
            leaf = keys.install_chain(_read(args.chain))
            print(
                f"installed {leaf.subject.rfc4514_string()} "
                f"(valid until {leaf.not_valid_after_utc:%Y-%m-%d})"
            )
        case "show":
            _show_card(keys)
        case "psk":
            return _psk(args, keys)
        case "usim":
            return _usim(args, image)
        case "policy":
            match args.policy_action:
                case "allow":
                    keys.set_authorised_apps([*keys.authorised_apps(), args.app])
                case "deny":
                    keys.set_authorised_apps(a for a in keys.authorised_apps() if a != args.app)
            for app in keys.authorised_apps():
                print(app)
    return 0


def _usim(args: argparse.Namespace, image: CardImage) -> int:
    from openscws.aka.milenage import opc_of
    from openscws.aka.vector import SqnState
    from openscws.uicc.usim import UsimKeys, UsimSecrets

    secrets = UsimSecrets(image)
    match args.usim_action:
        case "set":
            k = _hex_key("--k", args.k)
            opc = _hex_key("--opc", args.opc) if args.opc else opc_of(k, _hex_key("--op", args.op))
            keys = UsimKeys(args.imsi, k, opc)
            if not 0 <= args.sqn < 1 << 48:
                raise ConfigError("--sqn is a 48-bit number")
            sqn = SqnState(keys.ind_bits)
            sqn.accept(args.sqn)
            secrets.set_keys(keys, sqn=sqn)
            print(f"USIM: IMSI {keys.imsi}, MILENAGE keys stored, SQN {args.sqn}")
        case "show":
            stored = secrets.keys()
            if stored is None:
                print("USIM: no subscription (`openscws card usim set`)")
                return 0
            print(f"USIM: IMSI {stored.imsi}, MILENAGE, IND {stored.ind_bits} bits")
            print(f"  highest SQN accepted: {secrets.sqn(stored.ind_bits).sqn_ms}")
        case "rm":
            if not secrets.remove():
                print("openscws: the card has no USIM subscription", file=sys.stderr)
                return 1
            print("USIM subscription removed")
    return 0


def _hex_key(option: str, text: str, size: int | None = 16) -> bytes:
    """A key given in hex on the command line; `size` bytes unless None."""
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise ConfigError(f"{option} must be hex digits") from None
    if size is not None and len(key) != size:
        raise ConfigError(f"{option} must be {size} bytes ({2 * size} hex digits)")
    return key


def _psk(args: argparse.Namespace, keys: CardKeyStore) -> int:
    match args.psk_action:
        case "add":
            key = _hex_key("--key", args.key, None) if args.key else os.urandom(16)
            keys.add_psk(args.identity, key)
            print(f"added PSK identity {args.identity!r}")
            if not args.key:
                print(f"key (shown once): {key.hex()}")
        case "rm":
            if not keys.remove_psk(args.identity):
                print(f"openscws: no PSK identity {args.identity!r}", file=sys.stderr)
                return 1
            print(f"removed PSK identity {args.identity!r}")
        case "ls":
            table = keys.psk_table()
            print(
                f"PSK-TLS {'enabled' if table.enabled else 'disabled'}"
                + (f", hint {table.hint!r}" if table.hint else "")
            )
            for identity in sorted(table.keys):
                print(f"  {identity}")
        case "enable":
            keys.set_psk_enabled(True, args.hint)
            print("PSK-TLS enabled on the card's HTTPS port (takes effect at the next start)")
        case "disable":
            keys.set_psk_enabled(False)
            print("PSK-TLS disabled")
    return 0


def _show_card(keys: CardKeyStore) -> None:
    if not keys.has_key:
        print("key pair: none (run `openscws card init`)")
        return
    print(f"key pair: {keys.key_type().upper()}")
    cert = keys.device_certificate()
    if cert is None:
        print("device certificate: none")
    else:
        print(f"device certificate: {cert.subject.rfc4514_string()}")
        print(f"  issuer: {cert.issuer.rfc4514_string()}")
        print(f"  valid: {_validity(cert)}")
        print(f"  serial: {cert.serial_number:x}")
    table = keys.psk_table()
    print(
        f"PSK-TLS: {'enabled' if table.enabled else 'disabled'}, "
        f"{len(table.keys)} identit{'y' if len(table.keys) == 1 else 'ies'}"
    )
    print(f"key users: TLS, {', '.join(keys.authorised_apps()) or 'no card application'}")


def _ca_action(args: argparse.Namespace, settings: Settings) -> int:
    from openscws.pki.authority import DEFAULT_CA_NAME, parse_csr
    from openscws.pki.profile import CA_PROFILE, SERVER_PROFILE
    from openscws.store.issuer import IssuerCa

    now = datetime.datetime.now(datetime.UTC)
    ca_dir = settings.ca.dir
    match args.action:
        case "init":
            ca = IssuerCa.create(
                ca_dir,
                now=now,
                common_name=args.name or DEFAULT_CA_NAME,
                organization=args.organization,
                key_type=args.key_type,
                days=args.days,
            )
            print(f"created CA {ca.certificate.subject.rfc4514_string()} at {ca_dir}")
            print(f"trust it: curl --cacert {ca.cert_path} ...")
        case "sign":
            ca = IssuerCa.open(ca_dir)
            issued, path = ca.sign(
                parse_csr(_read(args.csr)),
                now=now,
                days=args.days or settings.ca.days,
                hosts=tuple(args.host) if args.host else None,
            )
            _output(issued.pem + ca.cert_pem, args.output)
            print(f"issued serial {issued.serial:x}, recorded in {path}", file=sys.stderr)
        case "show":
            ca = IssuerCa.open(ca_dir)
            cert = ca.certificate
            print(f"{ca.cert_path}\n  subject: {cert.subject.rfc4514_string()}")
            print(f"  valid: {_validity(cert)}")
            print(f"  issued: {len(ca.issued())} certificate(s)")
        case "profile":
            for title, rules in (("device certificate", SERVER_PROFILE), ("CA", CA_PROFILE)):
                print(f"{title}:")
                for rule in rules:
                    print(f"  {rule.field}: {rule.value}\n      ({rule.source})")
    return 0


def _validity(cert: x509.Certificate) -> str:
    return f"{cert.not_valid_before_utc:%Y-%m-%d} .. {cert.not_valid_after_utc:%Y-%m-%d}"


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None


def _output(data: bytes, path: Path | None) -> None:
    if path is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        from openscws.store.atomic import atomic_write

        atomic_write(path.resolve(), (data,))


def _serves(args: argparse.Namespace) -> bool:
    """Whether the command runs until stopped (a server or a card process), or sets things
    up (`init`: what it made is worth a line each)."""
    match args.command:
        case "up" | "gateway" | "init":
            return True
        case "card":
            return not getattr(args, "action", None)
        case "admin":
            return getattr(args, "admin_command", None) == "serve"
        case "bsf":
            return bsf_cli.serves(args)
        case "bsm":
            return bsm_cli.serves(args)
    return False


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "quiet", False):
        verbosity = -1
    else:
        # Servers say what they do at INFO; one-shot commands print their result instead,
        # and log only warnings unless asked (-v).
        verbosity = getattr(args, "verbose", 0) - (0 if _serves(args) else 1)
    _configure_logging(verbosity)
    try:
        settings = _settings(args)
        match args.command:
            case "up":
                gba = args if args.gba else None
                return asyncio.run(_up(settings, not args.no_demo, not args.no_admin, gba))
            case "card" if args.action:
                return _card_action(args, settings)
            case "card" if args.tcpip:
                return asyncio.run(_card_tcpip(settings, not args.no_demo))
            case "card":
                return asyncio.run(_card(settings, not args.no_demo))
            case "ca":
                return _ca_action(args, settings)
            case "doctor":
                from openscws.doctor import run_doctor

                return run_doctor(settings)
            case "gateway":
                return asyncio.run(_gateway_main(settings))
            case "init":
                image = open_image(settings, create=True, demo=not args.no_demo)
                print(f"card image at {image.root} (ICCID {image.meta.iccid})")
                return 0
            case "content":
                return _content(args, settings)
            case "admin":
                return admin_cli.run(args)
            case "bsf":
                return bsf_cli.run(args)
            case "bsm":
                return bsm_cli.run(args)
            case "bcast":
                return bspc_cli.run(args)
            case "gba":
                return gba_cli.run(args, settings)
            case "config":
                print(to_toml(settings))
                return 0
    except (ConfigError, StoreError, GatewayError, KeyUseDenied, ListenError) as e:
        print(f"openscws: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
