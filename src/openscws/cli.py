"""The `openscws` command. Only this module reads argv and configures logging."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import logging
import logging.config
import os
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from cryptography import x509

from openscws import __version__
from openscws.aio import push_cli
from openscws.aio.gateway import GatewayError
from openscws.aio.heap import settle_heap
from openscws.aio.links import CardLink, accept_vpcd_card
from openscws.aio.stack import (
    Stack,
    card_of,
    card_tls,
    gateway_for,
    open_image,
    start_stack,
)
from openscws.aio.vicc import serve_card
from openscws.bcast import bspc_cli
from openscws.bcast import cli as bsm_cli
from openscws.bsf import cli as bsf_cli
from openscws.config import Settings, notes, resolve, tcp_port, to_toml
from openscws.dm import cli_server as dm_server_cli
from openscws.dm import client_cli as dm_client_cli
from openscws.dm import scr_cli as dm_scr_cli
from openscws.errors import ConfigError, NotFoundError, OpenScwsError, StoreError
from openscws.gba import cli as gba_cli
from openscws.ids import DEFAULT_ICCID
from openscws.listing import print_listing
from openscws.pki.keys import KeyType
from openscws.ras import cli as admin_cli
from openscws.store.cardimage import CardImage
from openscws.store.running import RunningLock
from openscws.trace.tracer import ApduTracer
from openscws.uicc.keystore import CardKeyStore

log = logging.getLogger("openscws")

EPILOG = """\
Settings: every command reads the file given with -c/--config FILE (TOML; `openscws config`
prints every setting, a comment each), then the environment (OPENSCWS_<SECTION>_<NAME>, e.g.
OPENSCWS_ADMIN_DB=postgresql+psycopg://ras@host/ras; OPENSCWS_RAS_DB is the same), then the
options given here; each later one wins. -c may come before or after the command.

Exit status: 0 done; 1 not found (no such resource, card, campaign, identity or application);
2 bad input or usage (one line on stderr; -v adds the traceback); 3 `--wait` timed out;
130 interrupted.
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
                for name in ("alembic", "uvicorn.access", "watchfiles")
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


def common_options(p: argparse.ArgumentParser, *, top: bool = False) -> None:
    """-c, -v, -q: on the top-level parser (defaults) and on every command (only when given,
    so `openscws -c FILE config` and `openscws config -c FILE` both work)."""
    config: object = None if top else argparse.SUPPRESS
    verbose: object = 0 if top else argparse.SUPPRESS
    quiet: object = False if top else argparse.SUPPRESS
    p.add_argument("-c", "--config", type=Path, default=config, help="TOML settings file")
    p.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=verbose,
        help="more log output and, on an error, the traceback (-vv: debug)",
    )
    p.add_argument(
        "-q", "--quiet", action="store_true", default=quiet, help="warnings and errors only"
    )


_common = common_options


def _card_options(p: argparse.ArgumentParser, *, iccid: bool = False) -> None:
    p.add_argument(
        "--data-dir", type=Path, help="card image directory (default: see `openscws config`)"
    )
    if iccid:
        p.add_argument(
            "--iccid",
            help="ICCID of a new card image (19-20 digits, the last the E.118 Luhn check "
            "digit); an existing image with another ICCID is an error",
        )


def _gateway_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="address the BIP gateway listens on (default 127.0.0.1)")
    p.add_argument(
        "--port-map",
        type=_port_map,
        action="append",
        metavar="CARD=LOCAL",
        help="serve card port CARD on local TCP port LOCAL, e.g. 3516=8080 (repeatable)",
    )
    p.add_argument(
        "--link",
        metavar="SPEC",
        help="card link timing: 'direct' (default) or 'iso7816[:f=3.57MHz,F=512,D=16,N=0,"
        "turnaround=1ms]' (or ta1=0x96): a card's contacts per ISO/IEC 7816-3 "
        "(docs/link-timing.md)",
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
    csr = acts.add_parser(
        "csr",
        help="print a CSR for the card's key (signed in the card)",
        description="Print a PKCS #10 certificate signing request for the card's key pair, "
        "signed inside the card (the private key never leaves its secure area). The subject "
        "carries the ICCID as serialNumber; --host adds subjectAltName entries. Sign it with "
        "`openscws ca sign` or any CA, then `openscws card install-cert`.",
    )
    csr.add_argument("-o", "--output", type=Path, help="write here instead of standard output")
    csr.add_argument("--host", action="append", help="subjectAltName entry (repeatable)")
    cert = acts.add_parser(
        "install-cert",
        help="install the device certificate chain",
        description="Install the device certificate chain the card's HTTPS port presents "
        "(SCWS §11.1.2): the certificate for the card's own key first, then its issuers.",
    )
    cert.add_argument("chain", type=Path, help="PEM: device certificate first, then issuers")
    acts.add_parser(
        "show",
        help="the card's key, certificate, PSK identities and policy",
        description="Show what the card's secure area holds, never a secret: the key pair's "
        "type, the device certificate (subject, issuer, validity, serial), whether PSK-TLS "
        "is on and how many identities it has, and which card applications may use the key.",
    )
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
    csim = acts.add_parser(
        "csim",
        help="the (R-)UIM BCAST subscription: NAI and pre-provisioned RK (docs/bcast.md)",
        description="The card's CSIM-like application keeps a registration key RK, derives "
        "TK and the Auth-Key from it (AUTHENTICATE), gives the terminal the Auth-Key and "
        "verifies the LTKMs with TK. Keys live in the card's secure area and are never "
        "printed.",
    )
    csim_sub = csim.add_subparsers(dest="csim_action", required=True, metavar="CSIM_ACTION")
    c_set = csim_sub.add_parser("set", help="store a subscription (replaces one and its keys)")
    c_set.add_argument("--nai", required=True, help="the subscriber's NAI")
    c_set.add_argument("--rk", required=True, help="RK, 32 or 64 hex digits")
    c_set.add_argument("--rand", required=True, help="the TK/Auth-Key random, hex")
    c_set.add_argument("--derivation", help="a named RK derivation (default: the project's)")
    csim_sub.add_parser("show", help="NAI, derivation and SEK/PEK ids (never the keys)")
    csim_sub.add_parser("rm", help="remove the subscription")
    acp = acts.add_parser(
        "acp",
        help="the access rules: which local applications reach the SCWS (docs/acp.md)",
        description="The card's access-rule application (GlobalPlatform SEAC ARA-M) hands these "
        "rules to the SCWS Gateway, which admits only the applications they allow. No rules: "
        "access unrestricted; rules: deny by default. Takes effect on the next connection.",
    )
    acp_sub = acp.add_subparsers(dest="acp_action", required=True, metavar="ACP_ACTION")
    a_add = acp_sub.add_parser("add", help="add a rule")
    a_add.add_argument(
        "identity",
        help="sha256:<hex>, sha1:<hex>, uid:<n>, any, or a program's path (its SHA-256)",
    )
    a_add.add_argument(
        "--port", type=int, action="append", help="card port (repeatable; default 3516 and 4116)"
    )
    a_add.add_argument(
        "--path", action="append", help="URL path prefix (repeatable; checked on plain HTTP)"
    )
    a_add.add_argument("--uid", type=int, help="the application must also run as this user id")
    a_add.add_argument("--deny", action="store_true", help="a deny rule (deny wins over allow)")
    a_ls = acp_sub.add_parser("ls", help="list the rules, numbered")
    a_ls.add_argument("--json", action="store_true", help="as a policy document")
    a_rm = acp_sub.add_parser("rm", help="remove rule N (as `ls` numbers them), or --all")
    a_rm.add_argument("number", type=int, nargs="?", help="the rule's number")
    a_rm.add_argument("--all", action="store_true", help="remove every rule (unrestricted)")
    a_set = acp_sub.add_parser("set", help="replace every rule with a JSON policy document")
    a_set.add_argument("document", type=Path, help='a file: {"rules": [...]} (docs/acp.md)')
    parsers = [init, csr, cert, psk, policy, usim, csim, acp, acts.choices["show"]]
    parsers += list(csim_sub.choices.values())
    parsers += list(acp_sub.choices.values())
    parsers += list(psk_sub.choices.values()) + list(policy_sub.choices.values())
    parsers += list(usim_sub.choices.values())
    for p in parsers:
        _common(p)
        _card_options(p, iccid=p is init)
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
    common_options(parser, top=True)
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
    _card_options(up, iccid=True)
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
    up.add_argument(
        "--cards",
        type=int,
        default=1,
        metavar="N",
        help="run N cards, each with its own terminal, all enrolled with the admin server "
        "(default 1). Card k (2..N) has its image in <card.data_dir>-k, card 1's ICCID and "
        "MSISDN counted up by k-1 (SIP URI sip:<MSISDN>@<sip.domain>) and its ports from "
        "--fleet-port on; the local SMS entry point routes by MSISDN. See docs/push.md",
    )
    up.add_argument(
        "--fleet-port",
        type=int,
        default=20000,
        metavar="BASE",
        help="with --cards: card k's i-th card port (card.ports order, from 0) listens on local "
        "port BASE + (k-2) * len(card.ports) + i, e.g. card 2 on 20000 (3516) and 20001 (4116); "
        "0: any free ports (default 20000; card 1 keeps its usual ports)",
    )
    up.add_argument("--bsf-port", type=tcp_port, default=8080, help="with --gba: Ub port (8080)")
    up.add_argument("--zn-port", type=tcp_port, default=8443, help="with --gba: Zn port (8443)")
    up.add_argument(
        "--bcast",
        action="store_true",
        help="also run BCAST (implies --gba): the BSM (state in $XDG_DATA_HOME/openscws/bsm) "
        "and the terminal's BSP-C, whose LTKMs the card takes: see docs/bcast.md "
        "(setting bsm.enable)",
    )
    up.add_argument(
        "--bsm-port", type=tcp_port, help="with --bcast: the BSM's port (bsm.port, 8090; 0: any)"
    )
    up.add_argument(
        "--ltkm-port",
        type=int,
        help="with --bcast: the terminal's LTKM port (bsm.ltkm_port, UDP 4359; 0: any)",
    )
    up.add_argument(
        "--bcast-item",
        dest="bcast_items",
        action="append",
        default=[],
        metavar="REF",
        help="with --bcast: subscribe the card to this purchase item at start (Service Request)",
    )
    up.add_argument(
        "--bcast-card",
        choices=("usim", "csim"),
        default="usim",
        help="with --bcast: key the requests with the USIM (GBA_U, username the B-TID; the "
        "default) or the CSIM-like application ((R-)UIM RK, username the NAI)",
    )
    up.add_argument(
        "--dm",
        action="store_true",
        help="also run the terminal's DM client (tree in dm.client_tree, made by `openscws dm "
        "client init`): a DM Package #0 WAP push on the SMS entry point starts a session",
    )
    admin_cli.api_options(up)

    card = sub.add_parser(
        "card",
        help="run the card alone, as a vpcd virtual card (for `openscws gateway` or pcscd)",
        description="Run the virtual UICC as a separate process. It connects to a vsmartcard vpcd "
        "reader: `openscws gateway`, or pcscd with the vpcd driver (port 35963).",
    )
    _common(card)
    _card_options(card, iccid=True)
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
    ca_sub.add_parser(
        "show",
        help="print the CA certificate's path, subject and validity",
        description="Print where the issuer CA's certificate is (trust it: curl --cacert "
        "PATH), its subject, its validity and how many device certificates it has issued.",
    )
    ca_sub.add_parser(
        "profile",
        help="print the device certificate profile, field by field",
        description="Print the X.509 profile the CA follows for device certificates and for "
        "itself, field by field, each with the clause it comes from (WAP-211-WAPCert, "
        "RFC 5280, SCWS §11.1.2).",
    )
    for action in ca_sub.choices.values():
        _common(action)
        action.add_argument("--ca-dir", type=Path, help="CA directory (default: ca.dir)")

    dev = sub.add_parser(
        "dev",
        help="serve a folder from a card, live: every saved change is on the card at once",
        description="Start a card and its BIP gateway (no admin server unless --admin) whose "
        "site mirrors "
        "DIR: each add, change and deletion under DIR goes into the card image in one atomic "
        "step and is printed in one line, so a reload shows it. The card image is the dev "
        "server's own (--data-dir; default $XDG_DATA_HOME/openscws/dev/card), never the one "
        "`openscws up` serves, since the mirror deletes what DIR does not have. It warns when "
        "the site would not fit a real card: paths the card refuses, paths remote "
        "administration cannot deliver (non-ASCII, spaces), resources over "
        "card.admin_max_resource, a total over card.capacity.",
        epilog="Exit status with --check: 0 the site fits, 1 the report names a problem, "
        "2 bad input (no such folder).",
    )
    _common(dev)
    dev.add_argument("directory", type=Path, metavar="DIR", help="the site's folder")
    _card_options(dev)
    _gateway_options(dev)
    dev.add_argument(
        "--reload",
        action="store_true",
        help="reload open pages after each change: the HTTP URL goes through a small front "
        "that adds a script tag to HTML pages (never to the card image) and sends change "
        "events on /.openscws-dev/events",
    )
    dev.add_argument(
        "--check",
        action="store_true",
        help="print the report on DIR (what would not fit a real card) and exit, serving nothing",
    )
    dev.add_argument(
        "--admin",
        action="store_true",
        help="also run the remote administration server and REST API beside the card, as "
        "`openscws up` does (the card is enrolled with it)",
    )

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

    init = sub.add_parser(
        "init",
        help="create a card image",
        description="Create a card image (with the demo site unless --no-demo). On an "
        "existing image it changes nothing; an --iccid other than the image's is an error.",
    )
    _common(init)
    _card_options(init, iccid=True)
    init.add_argument("--no-demo", action="store_true", help="leave the image empty")

    content = sub.add_parser(
        "content",
        help="provision the card image offline (put, get, ls, rm)",
        description="Manage the resources in a card image. Writes are atomic: an interrupted "
        "put leaves the old or the new resource, never a torn one.",
    )
    csub = content.add_subparsers(dest="action", required=True, metavar="ACTION")
    put = csub.add_parser(
        "put",
        help="store a local file or folder as a card resource",
        description="Store SOURCE on the card at PATH. A PATH ending in '/' names a directory: "
        "a file keeps its name inside it (`put page.html /` stores /page.html), a folder's "
        "files go under it (a folder's PATH must end in '/'). Without PATH: /<file name>, or / "
        "for a folder. --delete makes the directory mirror the folder (resources it no longer "
        "has are removed).",
    )
    put.add_argument("source", type=Path, help="local file or directory")
    put.add_argument(
        "path", nargs="?", help="URL path on the card (default /<file name>, or / for a folder)"
    )
    put.add_argument(
        "--delete",
        action="store_true",
        help="folder only: remove resources under PATH that the folder does not have",
    )
    put.add_argument(
        "--type", dest="content_type", help="Content-Type (default: from the file name)"
    )
    put.add_argument("--realm", help="protect the resource with this realm")
    put.add_argument(
        "--cache-control",
        metavar="POLICY",
        help='the resource\'s cache policy, sent as Cache-Control (RFC 9111), e.g. "max-age=86400";'
        " default: the site's (see content cache-policy)",
    )
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
    policy = csub.add_parser(
        "cache-policy",
        help="show or set the site's default cache policy",
        description="The Cache-Control the card sends for every resource that has no policy "
        "of its own (set one with content put --cache-control). The built-in default is "
        '"no-cache" ("private, no-cache" for protected resources): caches keep pages but '
        "revalidate them, which the card answers with 304 thanks to ETag and Last-Modified.",
    )
    policy.add_argument("value", nargs="?", help='a Cache-Control value, e.g. "max-age=300"')
    policy.add_argument("--builtin", action="store_true", help="go back to the built-in default")
    for action in (put, get, ls, rm, policy):
        _common(action)
        _card_options(action)

    acp = sub.add_parser(
        "acp",
        help="the SCWS access control policy, as the gateway sees applications",
        description="What the SCWS Gateway sees of a local application: its user id, "
        "executable and the executable's hashes, the identities access rules name.",
    )
    acp_sub = acp.add_subparsers(dest="acp_action", required=True, metavar="ACTION")
    whoami = acp_sub.add_parser(
        "whoami",
        help="the identity the gateway would see for the calling program (or --pid, PROGRAM)",
    )
    whoami.add_argument("program", nargs="?", help="a program's path: its identity when you run it")
    whoami.add_argument("--pid", type=int, help="a running process (default: the caller)")
    _common(whoami)

    cfg = sub.add_parser(
        "config",
        help="print the effective settings as TOML",
        description="Print the settings every command would use, after the file (-c), the "
        "environment (OPENSCWS_<SECTION>_<NAME>) and the defaults, as a TOML file `-c` reads "
        "back, with a comment saying what each setting does. Secrets are not shown: a "
        "password set, or a database URL's password, is printed as a comment saying so.",
    )
    _common(cfg)
    admin_cli.register(sub)
    bsf_cli.register(sub)
    bsm_cli.register(sub)
    bspc_cli.register(sub)
    gba_cli.register(sub)
    push_cli.register(sub)
    dm = sub.add_parser(
        "dm",
        help="OMA DM 1.2: the DM server, its devices and jobs, the terminal's DM client, and "
        "the DM security SCR report",
        description="OMA DM 1.2 with the session security of OMA-TS-DM_Security: see docs/dm.md.",
    )
    dm_acts = dm.add_subparsers(dest="dm_action", required=True, metavar="ACTION")
    dm_server_cli.register_server(dm_acts)
    dm_client_cli.register_client(dm_acts)
    dm_scr_cli.register_scr(dm_acts)
    _describe(parser)
    return parser


def _describe(parser: argparse.ArgumentParser) -> None:
    """Every command that has no description of its own gets its one-line help as one, so
    `openscws X --help` always says what X does."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                sub = action.choices[choice.dest]
                if not sub.description and choice.help:
                    sub.description = choice.help[0].upper() + choice.help[1:] + "."
                _describe(sub)


def _settings(args: argparse.Namespace) -> Settings:
    """The file, then the environment, then this command's options (config.resolve)."""
    return resolve(args.config, os.environ, lambda settings: _options(settings, args))


def _options(settings: Settings, args: argparse.Namespace) -> Settings:
    """`settings` with the command line's options applied (each names its setting)."""
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
    if getattr(args, "link", None):
        gateway = replace(gateway, link=args.link)
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
    admin = settings.admin
    if getattr(args, "admin_data_dir", None):
        admin = replace(admin, data_dir=args.admin_data_dir)
    if getattr(args, "admin_db", None):
        admin = replace(admin, db=args.admin_db)
    if args.command == "up":
        admin = admin_cli.api_overrides(admin, args)
    return replace(settings, card=card, gateway=gateway, trace=trace, ca=ca, admin=admin)


def _tracer(settings: Settings) -> ApduTracer | None:
    if not settings.trace.enabled and settings.trace.pcap is None:
        return None
    return ApduTracer(sys.stdout if settings.trace.enabled else None, settings.trace.pcap)


async def _run_until_signal(main: asyncio.Future[None], *, settle: bool = False) -> None:
    """Runs until `main` ends or SIGINT/SIGTERM comes; with `settle`, the start-up heap is
    frozen first (`settle_heap`), once the signal handlers are in place so a stop asked for
    meanwhile is not lost."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if settle:
        settle_heap()
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


async def _announce_admin(stack: Stack, settings: Settings) -> None:
    """The admin server's URLs (and, on first run, the one-time admin password)."""
    if stack.admin is None:
        return
    a = settings.admin
    print(
        f"admin server: PSK-TLS https://{a.host}:{stack.admin.server.port}{a.uri} "
        + (
            f"({1 + len(stack.fleet)} cards enrolled)"
            if stack.fleet
            else f"(card {stack.image.meta.iccid} enrolled)"
        ),
        flush=True,
    )
    if stack.admin.api_url:
        from openscws.ras.cli import first_admin

        print(f"admin console: {stack.admin.api_url}", flush=True)
        print(f"REST API: {stack.admin.api_url}api/v1 (OpenAPI: /api/v1/openapi.json)")
        if stack.admin.api_ca is not None:
            ca = stack.admin.api_ca
            print(f"admin console CA: {ca} (curl --cacert {ca})", flush=True)
        await asyncio.to_thread(first_admin, stack.admin.service, stack.admin.api_url)


async def _up(
    settings: Settings,
    demo: bool,
    admin: bool,
    iccid: str | None,
    gba: argparse.Namespace | None = None,
    dm: bool = False,
    cards: int = 1,
    fleet_port: int = 20000,
) -> int:
    dm_client = None
    if dm:
        from openscws.dm.client import DmClient

        dm_client = DmClient(
            settings.dm.client_tree,
            wbxml=settings.dm.client_wbxml,
            timeout=settings.dm.client_timeout,
        )
        dm_client.tree()  # a missing or damaged tree stops here, with one line
    tracer = _tracer(settings)
    try:
        stack = await start_stack(
            settings,
            demo=demo,
            admin=admin,
            tracer=tracer,
            iccid=iccid,
            cards=cards,
            fleet_port=fleet_port,
            sms=dm_client is not None,
        )
    except BaseException:
        if tracer is not None:
            tracer.close()
        raise
    bsf = None
    bcast = None
    try:
        if gba is not None:
            bsf = await _start_gba(stack.image, settings, gba)
        if gba is not None and (gba.bcast or settings.bsm.enable):
            bcast = await _start_bcast(stack, settings, gba, bsf)
        _announce(stack.gateway.local_port, settings.gateway.host, settings)
        if dm_client is not None:
            stack.gateway.terminal_sms = dm_client.handle_sms
            sms = stack.gateway.sms_endpoint
            where = f"SMS entry point {sms.url}" if sms is not None else "no SMS entry point"
            print(f"DM client: tree {settings.dm.client_tree}, Package #0 on {where}", flush=True)
        for k, member in enumerate(stack.fleet, start=2):
            assert member.gateway is not None
            print(
                f"card {k}: ICCID {member.image.meta.iccid} MSISDN {member.settings.card.msisdn}",
                flush=True,
            )
            _announce(member.gateway.local_port, settings.gateway.host, member.settings, card=False)
        await _announce_admin(stack, settings)
        await _run_until_signal(asyncio.ensure_future(stack.gateway.wait()), settle=True)
    finally:
        if bcast is not None:
            await bcast.stop()
        if dm_client is not None:
            await dm_client.stop()
        if bsf is not None:
            await bsf.stop()
            bsf.service.db.dispose()
        await stack.stop()
    return 0


async def _start_bcast(stack: Any, settings: Settings, args: argparse.Namespace, bsf: Any) -> Any:
    """`up --bcast`: the BSM in this process (its B-TIDs' keys from this BSF over Zn, with a
    token issued at each start) and the terminal's BSP-C on the gateway's card link."""
    from openscws.bcast.embedded import start_embedded_bcast

    b = settings.bsm
    port = b.port if args.bsm_port is None else args.bsm_port
    ltkm_port = b.ltkm_port if args.ltkm_port is None else args.ltkm_port
    bcast = await start_embedded_bcast(
        settings, stack.gateway.link, bsf, port=port, ltkm_port=ltkm_port, via=args.bcast_card
    )
    print(f"BSM ready: {bcast.bsm.url} (NAF {b.fqdn})", flush=True)
    print(f"BSP-C: LTKMs on UDP {settings.gateway.host}:{bcast.ltkm_port}", flush=True)
    for ref in args.bcast_items:
        await bcast.subscribe(ref)
    return bcast


async def _start_gba(image: CardImage, settings: Settings, args: argparse.Namespace) -> Any:
    """`up --gba`: the BSF in this process, the card's USIM (if any) its GBA_U subscriber."""
    from openscws.bsf.server import start_bsf
    from openscws.uicc.usim import UsimSecrets

    def prepare() -> Any:
        service = bsf_cli.open_service(settings.bsf.data_dir, settings.bsf.db or None)
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


async def _card(settings: Settings, demo: bool, iccid: str | None) -> int:
    from openscws.agent.credentials import AgentSecrets
    from openscws.scws.card import admin_agent

    image = open_image(settings, create=True, demo=demo, iccid=iccid)
    running = RunningLock.take(image.root)  # held until this process ends
    agent = None
    if AgentSecrets(image).credentials() is not None:
        agent = admin_agent(image, image, settings.card)
        log.info("admin agent on: remote administration triggers are taken")
    card = card_of(settings, image, agent=agent)
    g = settings.gateway
    print(f"card {image.meta.iccid} connecting to vpcd {g.vpcd_host}:{g.vpcd_port}", flush=True)
    try:
        await _run_until_signal(asyncio.create_task(serve_card(card, g.vpcd_host, g.vpcd_port)))
    finally:
        running.release()
    return 0


async def _card_tcpip(settings: Settings, demo: bool, iccid: str | None) -> int:
    """A card with its own TCP/IP (SCWS §8.2): HTTP and HTTPS on sockets, no BIP."""
    from openscws.aio.direct import DirectServer
    from openscws.scws.card import build_site, handler_factories, host_policy_for

    image = open_image(settings, create=True, demo=demo, iccid=iccid)
    running = RunningLock.take(image.root)  # held until this process ends
    c = settings.card
    local = {p: (c.tcpip_https_port if p in c.tls_ports else c.tcpip_http_port) for p in c.ports}
    policy = host_policy_for(c, local, names=frozenset({c.tcpip_host.lower()}))
    from openscws.cardapp import load_card_apps

    apps = load_card_apps(c.apps)
    site = build_site(image, image.meta.iccid, started=time.time(), host_policy=policy, apps=apps)
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
        running.release()
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


def _dev_problems(files: list[Any], settings: Settings, *, summary: bool = True) -> list[Any]:
    """What would not fit a real card (openscws.scws.sitecheck); `summary`: the folder's
    size against the card's capacity first."""
    from openscws.scws.sitecheck import format_size
    from openscws.store.devsite import check_folder

    c = settings.card
    if summary:
        total = sum(f.size for f in files)
        print(
            f"{len(files)} files, {format_size(total)} of the card's {format_size(c.capacity)} "
            "(card.capacity)",
            flush=True,
        )
    return check_folder(files, capacity=c.capacity, max_resource=c.admin_max_resource)


def _dev_check(directory: Path, settings: Settings) -> int:
    """`openscws dev DIR --check`: the report alone; 1 when it names a problem."""
    from openscws.store.devsite import scan

    problems = _dev_problems(scan(directory), settings)
    for problem in problems:
        print(problem)
    print("the site fits the card" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


def _dev_settings(settings: Settings, args_data_dir: bool) -> Settings:
    """The dev server's own card image unless --data-dir names one."""
    if args_data_dir:
        return settings
    from openscws.config import default_data_dir

    return replace(
        settings, card=replace(settings.card, data_dir=default_data_dir() / "dev" / "card")
    )


async def _dev(directory: Path, settings: Settings, *, reload: bool, admin: bool = False) -> int:
    from openscws.aio.devserver import ReloadFront, watch_folder
    from openscws.store.devsite import DevChange, DevMirror, scan

    scan(directory)  # a missing folder is an error before anything starts
    c, g = settings.card, settings.gateway
    http_ports = [p for p in c.ports if p not in c.tls_ports]
    front_port: int | None = None
    if reload:
        if not http_ports:
            raise ConfigError("--reload needs a plain HTTP card port (card.ports, card.tls_ports)")
        front_port = g.port_map.get(http_ports[0], http_ports[0])
        # The gateway's HTTP port moves to any free one: the front takes the known port.
        g = replace(g, port_map={**g.port_map, http_ports[0]: 0})
        settings = replace(settings, gateway=g)
    tracer = _tracer(settings)
    try:
        stack = await start_stack(settings, demo=False, admin=admin, tracer=tracer)
    except BaseException:
        if tracer is not None:
            tracer.close()
        raise
    front: ReloadFront | None = None
    stop = asyncio.Event()
    try:
        mirror = DevMirror(stack.image, directory)
        reported: set[str] = set()
        shown_once: list[bool] = []

        def report() -> None:
            # After the first, only what is new: a problem already shown is not repeated.
            first = not shown_once
            shown_once.append(True)
            problems = {str(p) for p in _dev_problems(mirror.files, settings, summary=first)}
            for line in sorted(problems - reported):
                print(line, flush=True)
            reported.clear()
            reported.update(problems)

        def synced(changes: list[DevChange]) -> None:
            for change in changes:
                print(change, flush=True)
            if changes:
                report()
                if front is not None:
                    front.changed()

        for change in mirror.sync():
            print(change, flush=True)
        report()
        if front_port is not None:
            host = g.host
            http = http_ports[0]
            front = ReloadFront(host, front_port, lambda: (host, stack.gateway.local_port(http)))
            await front.start()
        shown = f"[{g.host}]" if ":" in g.host else g.host
        for port in c.ports:
            scheme = "https" if port in c.tls_ports else "http"
            if front is not None and port == http_ports[0]:
                url = f"{scheme}://{shown}:{front.port}/"
                print(f"SCWS ready: {url}")
                print(f"live reload: pages from {url} reload after each change")
            else:
                print(f"SCWS ready: {scheme}://{shown}:{stack.gateway.local_port(port)}/")
        print(f"mirroring {directory.resolve()} into the card image {stack.image.root}", flush=True)
        watcher = asyncio.ensure_future(watch_folder(mirror, synced, stop))
        await _announce_admin(stack, settings)
        await _run_until_signal(asyncio.ensure_future(stack.gateway.wait()))
        stop.set()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(watcher, 5)
    finally:
        stop.set()
        if front is not None:
            await front.stop()
        await stack.stop()
    return 0


def _content(args: argparse.Namespace, settings: Settings) -> int:
    from openscws.store import content

    image = open_image(settings, create=False, demo=False)
    now = int(time.time())
    match args.action:
        case "put":
            done = content.put(
                image,
                args.source,
                args.path,
                content_type=args.content_type,
                realm=args.realm,
                cache_control=args.cache_control,
                delete=args.delete,
                now=now,
            )
            for r in done.stored:
                print(f"put {r.path} ({len(r.body)} B, {r.content_type})")
            for path in done.removed:
                print(f"removed {path}")
            for warning in done.warnings:
                print(f"openscws: warning: {warning}", file=sys.stderr)
        case "get":
            r = content.get_resource(image, args.path)
            _output(r.body, args.output)
        case "ls":
            print_listing(
                f"{row.size:>9}  {time.strftime('%Y-%m-%d %H:%M', time.gmtime(row.last_modified))}"
                f"  {row.content_type:<32} {row.path}"
                + (f" realm={row.realm}" if row.realm else "")
                + (f" cache-control={row.cache_control!r}" if row.cache_control else "")
                for row in content.list_resources(image, args.prefix)
            )
        case "rm":
            removed = content.remove(image, args.path, recursive=args.recursive)
            if not removed:
                print(f"openscws: no resource at {args.path}", file=sys.stderr)
                return 1
            for path in removed:
                print(f"removed {path}")
        case "cache-policy":
            if args.builtin and args.value:
                raise StoreError("give a policy or --builtin, not both")
            if args.builtin or args.value:
                content.set_site_cache_control(image, None if args.builtin else args.value)
            current = content.site_cache_control(image)
            print(f"site default: {current}" if current else _BUILTIN_POLICY_TEXT)
    return 0


_BUILTIN_POLICY_TEXT = (
    'site default: built-in ("no-cache"; "private, no-cache" for protected resources)'
)


def _card_action(args: argparse.Namespace, settings: Settings) -> int:
    from openscws.store.issuer import IssuerCa
    from openscws.store.provision import issue_device_certificate
    from openscws.uicc.keystore import CardKeyStore

    image = open_image(
        settings,
        create=args.action == "init",
        demo=not args.no_demo if args.action == "init" else False,
        iccid=_wanted_iccid(args, settings) if args.action == "init" else None,
    )
    keys = CardKeyStore(image)
    now = datetime.datetime.now(datetime.UTC)
    match args.action:
        case "init":
            key_type: KeyType = "ec" if settings.card.key_type == "ec" else "rsa"
            if keys.has_key and not args.force:
                print(
                    f"the card already has an {keys.key_type().upper()} key pair "
                    "(--force makes a new one)"
                )
            else:
                keys.generate(key_type, replace=args.force)
                print(f"made an {key_type.upper()} key pair in {image.root}/secure")
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

            _check_output(args.output)
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
        case "csim":
            return _csim(args, image)
        case "acp":
            return _card_acp(args, image)
        case "policy":
            match args.policy_action:
                case "allow":
                    keys.set_authorised_apps([*keys.authorised_apps(), args.app])
                case "deny":
                    apps = keys.authorised_apps()
                    if args.app not in apps:
                        raise NotFoundError(
                            f"{args.app!r} is not authorised (authorised: "
                            f"{', '.join(apps) or 'none'})"
                        )
                    keys.set_authorised_apps(a for a in apps if a != args.app)
            print_listing(keys.authorised_apps())
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


def _csim(args: argparse.Namespace, image: CardImage) -> int:
    from openscws.bcast.keys import DEFAULT_RK_DERIVATION
    from openscws.uicc.csim import CsimKeys, CsimSecrets

    secrets = CsimSecrets(image)
    match args.csim_action:
        case "set":
            try:
                rk, rand = bytes.fromhex(args.rk), bytes.fromhex(args.rand)
            except ValueError:
                raise ConfigError("--rk and --rand are hex") from None
            keys = CsimKeys(args.nai, rk, rand, args.derivation or DEFAULT_RK_DERIVATION)
            secrets.set_keys(keys)
            print(f"CSIM: NAI {keys.nai}, RK stored ({keys.derivation})")
        case "show":
            stored = secrets.keys()
            if stored is None:
                print("CSIM: no subscription (`openscws card csim set`)")
                return 0
            print(f"CSIM: NAI {stored.nai}, RK derivation {stored.derivation}")
            for domain, key_id in sorted(secrets.bcast().msks):
                print(f"  SEK/PEK {domain.hex()}/{key_id.hex()}")
        case "rm":
            if not secrets.remove():
                print("openscws: the card has no CSIM subscription", file=sys.stderr)
                return 1
            print("CSIM subscription removed")
    return 0


def _card_acp(args: argparse.Namespace, image: CardImage) -> int:
    import json

    from openscws.acp.document import (
        DocumentError,
        from_document,
        parse_identity,
        rule_to_json,
        to_document,
    )
    from openscws.acp.rules import ANY_PORTS, AccessRule, RuleSet
    from openscws.store.acprules import load_rules, save_rules

    try:
        match args.acp_action:
            case "add":
                rules = load_rules(image)
                app_hash, uid = _identity_arg(args.identity, parse_identity)
                if args.uid is not None:
                    uid = args.uid
                rule = AccessRule(
                    app_hash=app_hash,
                    uid=uid,
                    ports=frozenset(args.port) if args.port else ANY_PORTS,
                    paths=tuple(args.path or ()),
                    allow=not args.deny,
                )
                save_rules(image, RuleSet((*rules.rules, rule)))
                print(f"rule {len(rules.rules) + 1}: {rule.describe()}")
            case "ls":
                rules = load_rules(image)
                if args.json:
                    print(json.dumps(to_document(rules), indent=2))
                    return 0
                if not rules.rules:
                    print("no access rules: access to the SCWS is unrestricted")
                for n, rule in enumerate(rules.rules, 1):
                    print(f"{n:3}  {rule.describe() if rule.scws else '(a SEAC rule, not SCWS)'}")
            case "rm":
                if args.all:
                    save_rules(image, RuleSet())
                    print("every rule removed: access to the SCWS is unrestricted")
                    return 0
                rules = load_rules(image)
                if args.number is None or not 1 <= args.number <= len(rules.rules):
                    raise ConfigError(f"no rule {args.number} (`openscws card acp ls`)")
                kept = [r for n, r in enumerate(rules.rules, 1) if n != args.number]
                save_rules(image, RuleSet(tuple(kept)))
                print(f"removed: {json.dumps(rule_to_json(rules.rules[args.number - 1]))}")
            case "set":
                try:
                    doc = json.loads(_read(args.document))
                except ValueError as e:
                    raise ConfigError(f"{args.document}: not JSON: {e}") from None
                rules = from_document(doc)
                save_rules(image, rules)
                print(f"{len(rules.rules)} rule(s) stored")
    except (DocumentError, ValueError) as e:
        raise ConfigError(str(e)) from None
    return 0


def _whoami(args: argparse.Namespace) -> int:
    from openscws.aio.peer import PeerIdentity, hashes_of_file, identity_of_pid

    if args.program:
        found = shutil.which(args.program) or args.program
        exe = os.path.realpath(found)
        hashes = hashes_of_file(exe)
        if hashes is None:
            raise ConfigError(f"cannot read the program {args.program}")
        who = PeerIdentity(os.getuid(), None, exe, hashes[0], hashes[1], "program file")
    else:
        pid = args.pid if args.pid is not None else os.getppid()
        who = identity_of_pid(pid)
        if who.uid is None:
            raise ConfigError(f"no process {pid}")
    print(f"uid:     {who.uid}")
    if who.pid is not None:
        print(f"pid:     {who.pid}")
    print(f"program: {who.exe or '(not visible: a process of another user?)'}")
    if who.sha256 is not None and who.sha1 is not None:
        print(f"sha256:  {who.sha256.hex()}")
        print(f"sha1:    {who.sha1.hex()}")
        print(f"allow it: openscws card acp add sha256:{who.sha256.hex()}")
    print(f"or its user: openscws card acp add uid:{who.uid}")
    return 0


def _identity_arg(
    text: str, parse: Callable[[str], tuple[bytes, int | None]]
) -> tuple[bytes, int | None]:
    """An identity in the rules' notation, or a program's path: its SHA-256, as the gateway
    computes it for a process running that program."""
    if "/" in text:
        import hashlib

        found = shutil.which(text) or text
        try:
            data = Path(os.path.realpath(found)).read_bytes()
        except OSError as e:
            raise ConfigError(f"cannot read the program {text}: {e.strerror}") from None
        return hashlib.sha256(data).digest(), None
    return parse(text)


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
            print_listing(sorted(table.keys), indent="  ")
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
            csr = parse_csr(_read(args.csr))
            _check_output(args.output)
            ca = IssuerCa.open(ca_dir)
            issued, path = ca.sign(
                csr,
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
        return
    from openscws.store.atomic import atomic_write

    _check_output(path)
    atomic_write(path.resolve(), (data,))


def _check_output(path: Path | None) -> None:
    """-o PATH names a file that can be written: checked before the work that fills it."""
    if path is None:
        return
    if path.is_dir():
        raise ConfigError(f"-o {path}: is a directory; name a file to write")
    if not path.resolve().parent.is_dir():
        raise ConfigError(f"-o {path}: no directory {path.resolve().parent} to write it in")


def _wanted_iccid(args: argparse.Namespace, settings: Settings) -> str | None:
    """The ICCID the user asked for (--iccid, or card.iccid set away from the default), which
    an existing image must have; None: whatever the image has."""
    if getattr(args, "iccid", None):
        return settings.card.iccid
    return settings.card.iccid if settings.card.iccid != DEFAULT_ICCID else None


def _serves(args: argparse.Namespace) -> bool:
    """Whether the command runs until stopped (a server or a card process), or sets things
    up (`init`: what it made is worth a line each)."""
    match args.command:
        case "up" | "gateway" | "init" | "ppg":
            return True
        case "dev":
            return True
        case "card":
            return not getattr(args, "action", None)
        case "admin":
            return getattr(args, "admin_command", None) == "serve"
        case "bsf":
            return bsf_cli.serves(args)
        case "dm":
            return dm_server_cli.serves(args)
        case "bsm":
            return bsm_cli.serves(args)
    return False


def _leaf(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The parser of the (sub)command `args` names: its usage is the one to show."""
    while True:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            return parser
        chosen = getattr(args, subs[0].dest, None)
        if chosen is None:
            return parser
        parser = subs[0].choices[chosen]


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """argv parsed; an unknown option is reported with its own command's usage (`openscws up
    --bogus` shows `up`'s), not the top level's."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        _leaf(parser, args).error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def _one_line(exc: BaseException) -> str:
    """An error as the one line the command prints."""
    if isinstance(exc, OSError):
        what = exc.strerror or str(exc)
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{what}"
    if _is_database_error(exc):
        # The driver's own message only: the statement and its parameters stay out.
        orig = getattr(exc, "orig", None)
        text = str(orig if orig is not None else exc).split("\n(Background")[0]
        return "database error: " + " ".join(text.split())
    return " ".join(str(exc).split()) or type(exc).__name__


def _is_database_error(exc: BaseException) -> bool:
    if "sqlalchemy" not in sys.modules:
        return False
    from sqlalchemy.exc import SQLAlchemyError

    return isinstance(exc, SQLAlchemyError)


def main(argv: list[str] | None = None) -> int:
    """The `openscws` command; returns the exit status (see EPILOG). This is the CLI's one
    error boundary: every OSError, bad setting or input and database error becomes one line
    on stderr and status 2 (1 for "not found"), the traceback only with -v."""
    args = _parse(argv)
    if getattr(args, "quiet", False):
        verbosity = -1
    else:
        # Servers say what they do at INFO; one-shot commands print their result instead,
        # and log only warnings unless asked (-v).
        verbosity = getattr(args, "verbose", 0) - (0 if _serves(args) else 1)
    _configure_logging(verbosity)
    try:
        return _run(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if not isinstance(exc, OpenScwsError | OSError | ValueError) and not _is_database_error(
            exc
        ):
            raise
        print(f"openscws: {_one_line(exc)}", file=sys.stderr)
        if getattr(args, "verbose", 0) > 0:
            traceback.print_exc()
        return 1 if isinstance(exc, NotFoundError) else 2


def _run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    for note in notes(settings):
        log.warning("%s", note)
    match args.command:
        case "up":
            gba = args if args.gba or args.bcast or settings.bsm.enable else None
            iccid = _wanted_iccid(args, settings)
            return asyncio.run(
                _up(
                    settings,
                    not args.no_demo,
                    not args.no_admin,
                    iccid,
                    gba,
                    args.dm,
                    args.cards,
                    args.fleet_port,
                )
            )
        case "card" if args.action:
            return _card_action(args, settings)
        case "card" if args.tcpip:
            return asyncio.run(
                _card_tcpip(settings, not args.no_demo, _wanted_iccid(args, settings))
            )
        case "card":
            return asyncio.run(_card(settings, not args.no_demo, _wanted_iccid(args, settings)))
        case "ca":
            return _ca_action(args, settings)
        case "doctor":
            from openscws.doctor import run_doctor

            return run_doctor(settings)
        case "gateway":
            return asyncio.run(_gateway_main(settings))
        case "dev" if args.check:
            return _dev_check(args.directory, settings)
        case "dev":
            settings = _dev_settings(settings, bool(args.data_dir))
            return asyncio.run(_dev(args.directory, settings, reload=args.reload, admin=args.admin))
        case "init":
            image = open_image(
                settings,
                create=True,
                demo=not args.no_demo,
                iccid=_wanted_iccid(args, settings),
            )
            print(f"card image at {image.root} (ICCID {image.meta.iccid})")
            return 0
        case "content":
            return _content(args, settings)
        case "acp":
            return _whoami(args)
        case "admin":
            return admin_cli.run(args, settings)
        case "bsf":
            return bsf_cli.run(args, settings)
        case "dm" if args.dm_action in dm_server_cli.ACTIONS:
            return dm_server_cli.run(args, settings)
        case "bsm":
            return bsm_cli.run(args, settings)
        case "bcast":
            return bspc_cli.run(args)
        case "gba":
            return gba_cli.run(args, settings)
        case "dm" if args.dm_action == "client":
            return dm_client_cli.run_client(args, settings)
        case "dm" if args.dm_action == "scr":
            return dm_scr_cli.run_scr_cli(args)
        case "ppg":
            return push_cli.run(args)
        case "config":
            print(to_toml(settings))
            return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
