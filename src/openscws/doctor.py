"""`openscws doctor`: what this machine can do for the SCWS, and why not where it cannot.

Reads the TLS stack (`openscws.tls.context.describe_stack`), looks for the third-party
peer programs the tests and docs use, and checks the card image's keys and the issuer CA."""

from __future__ import annotations

import datetime
import platform
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Final

from openscws.config import Settings
from openscws.errors import ConfigError, StoreError
from openscws.tls.context import PSK_SPEC_SUITES, describe_stack

__all__ = ["PEERS", "run_doctor"]

PEERS: Final = (
    # (program or file, Debian package, what it is for)
    ("curl", "curl", "HTTP/HTTPS client tests"),
    ("openssl", "openssl", "s_client / s_server interop and the handshake benchmark"),
    ("gnutls-cli", "gnutls-bin", "PSK-TLS interop (--pskusername/--pskkey)"),
    ("chromium", "chromium", "headless browser screenshots"),
    ("tshark", "tshark", "decodes --pcap GSMTAP SIM traces"),
    ("pcscd", "pcscd", "the card in a PC/SC stack"),
    ("/usr/lib/pcsc/drivers/serial/libifdvpcd.so", "vsmartcard-vpcd", "pcscd's vpcd reader"),
    ("scriptor", "pcsc-tools", "raw APDUs through pcscd"),
    ("testssl", "testssl.sh", "TLS audit of port 4116"),
    ("sslscan", "sslscan", "TLS audit of port 4116"),
    ("wrk", "wrk", "HTTP load in benchmarks (a Python client is the fallback)"),
    ("osmo-auc-gen", "libosmocore-utils", "an independent MILENAGE for the AKA tests"),
    ("wbxml2xml", "libwbxml2-utils", "an independent WBXML codec for the OMA DM tests"),
)


def _yes(flag: object) -> str:
    return "yes" if flag else "no"


def _found(name: str) -> str | None:
    if name.startswith("/"):
        return name if Path(name).exists() else None
    return shutil.which(name)


def run_doctor(settings: Settings, write: Callable[[str], None] = print) -> int:
    info = describe_stack()
    write(f"python {platform.python_version()} ({sys.executable})")
    write(f"openssl {info['openssl']}")
    write(f"gnutls {info['gnutls'] or 'not usable: ' + str(info['gnutls_3des_why'])}")
    write("TLS stack:")
    write(f"  TLS 1.0 / 1.1 compiled in: {_yes(info['tls1_0'])} / {_yes(info['tls1_1'])}")
    write(f"  TLS 1.3: {_yes(info['tls1_3'])}")
    write(f"  PSK-TLS callbacks (Python >= 3.13): {_yes(info['psk'])}")
    write(
        f"  TLS 1.0 PSK handshake at the default security level: "
        f"{_yes(info['tls1_0_psk_handshake'])}"
    )
    if info["tls1_0_cert_needs_seclevel0"]:
        write(
            "  TLS 1.0/1.1 with certificates needs OpenSSL security level 0 (MD5+SHA-1 "
            "handshake signatures): the 'compat' profile sets it"
        )
    write(
        "  record sizes: card.tls_record_limit bounds the plaintext handed to TLS and the "
        "records written; RFC 6066 max_fragment_length is honoured when a client asks and "
        "asked for by the admin agent; RFC 8449 record_size_limit: GnuTLS path and card "
        "TLS engine only (OpenSSL 3.0 lacks it)"
    )
    write(
        '  card TLS engine (card.tls_engine = "card", compat profile): TLS 1.2 '
        "TLS_PSK_WITH_AES_128_CBC_SHA and _SHA256 with a fraction of OpenSSL's memory per "
        "channel; off by default"
    )
    write("SCWS §11.1.1 PSK suites:")
    for suite in PSK_SPEC_SUITES:
        if info[suite]:
            write(f"  {suite}: available")
        else:
            write(f"  {suite}: NOT available in OpenSSL: {info[suite + '_why']}")
    if info["gnutls_3des"]:
        write(
            f"  TLS_PSK_WITH_3DES_EDE_CBC_SHA (0x008B): available through GnuTLS "
            f"{info['gnutls']} (TLS_PSK_3DES_EDE_CBC_SHA1, TLS 1.0-1.2): HTTPS with the "
            "'compat' profile and PSK-TLS enabled hands clients that offer it and no suite "
            "OpenSSL has to GnuTLS (docs/tls.md)"
        )
    elif not info["PSK-3DES-EDE-CBC-SHA"]:
        write(
            "  -> TLS_PSK_WITH_3DES_EDE_CBC_SHA cannot be offered by any TLS stack on this "
            f"machine (GnuTLS: {info['gnutls_3des_why']}); openscws does not implement TLS "
            "or 3DES by hand (docs/tls.md)"
        )
    write(
        "versions and suites that negotiate, per endpoint and profile (in-memory handshakes,"
        " one per suite and version; docs/tls.md has the same tables):"
    )
    from openscws.tls.suites import all_tables, render_text

    for table in all_tables():
        render_text(table, lambda line: write("  " + line))
    write("peer programs:")
    missing = []
    for name, package, purpose in PEERS:
        path = _found(name)
        shown = Path(name).name if name.startswith("/") else name
        if path:
            write(f"  {shown:<16} {path}")
        else:
            write(f"  {shown:<16} missing: apt-get install {package} ({purpose})")
            missing.append(package)
    if missing:
        write(f"  all missing ones: scripts/install-peers (or apt-get install {' '.join(missing)})")
    _readers(write)
    _card_apps(settings, write)
    _card(settings, write, gnutls_3des=bool(info["gnutls_3des"]))
    return 0


def _card_apps(settings: Settings, say: Callable[[str], None]) -> None:
    """The plug-in card applications the card would mount (docs/card-apps.md)."""
    from openscws.cardapp import ENTRY_POINT_GROUP, load_card_apps

    apps = load_card_apps(settings.card.apps)
    if not apps:
        say(f"card applications: none (entry point group {ENTRY_POINT_GROUP}, card.apps)")
        return
    say(f"card applications ({len(apps)}):")
    for app in apps:
        if app.error is None:
            say(f"  {app.name:<16} on {app.prefix} ({app.target}, {app.source})")
        else:
            say(f"  {app.name:<16} NOT loaded: {app.error} ({app.target}, {app.source})")


def _readers(say: Callable[[str], None]) -> None:
    """The PC/SC readers `openscws gateway --pcsc` could take a card from."""
    from openscws.aio.pcsc import PcscError, list_readers

    try:
        names = list_readers()
    except PcscError as exc:
        say(f"PC/SC readers: none usable: {exc}")
        return
    say(f"PC/SC readers ({len(names)}): `openscws gateway --pcsc NAME` takes the card in one")
    for name in names:
        say(f"  {name}")


def _card(settings: Settings, say: Callable[[str], None], *, gnutls_3des: bool) -> None:
    from openscws.store.cardimage import CardImage
    from openscws.store.issuer import IssuerCa
    from openscws.uicc.keystore import CardKeyStore

    root = settings.card.data_dir
    say(f"card image: {root}")
    if not (root / "card.json").exists():
        say("  none yet (`openscws up` or `openscws init` creates it)")
    else:
        try:
            image = CardImage.open(root)
            keys = CardKeyStore(image)
            if not keys.has_key:
                say("  key pair: none (`openscws card init`)")
            else:
                cert = keys.device_certificate()
                say(f"  key pair: {keys.key_type().upper()}")
                if keys.key_type() == "ec":
                    say(
                        "  an EC key has only ECDHE-ECDSA suites: TLS 1.0 clients that offer "
                        "only TLS_RSA_WITH_AES_128_CBC_SHA or DHE-RSA suites need a card made "
                        'with card.key_type = "rsa" (the tables above assume RSA)'
                    )
                if cert is None:
                    say("  device certificate: none")
                else:
                    left = cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
                    say(
                        f"  device certificate: {cert.subject.rfc4514_string()}, "
                        f"{left.days} days left"
                    )
            table = keys.psk_table()
            say(
                f"  PSK-TLS: {'enabled' if table.enabled else 'disabled'}, "
                f"{len(table.keys)} identities"
            )
            if table.enabled and table.keys:
                compat = settings.card.tls_profile == "compat"
                if compat and gnutls_3des:
                    say("  TLS_PSK_WITH_3DES_EDE_CBC_SHA: offered through GnuTLS")
                elif gnutls_3des:
                    say(
                        "  TLS_PSK_WITH_3DES_EDE_CBC_SHA: not offered (needs "
                        'card.tls_profile = "compat")'
                    )
        except (StoreError, ConfigError) as exc:
            say(f"  unusable: {exc}")
    ca_dir = settings.ca.dir
    if IssuerCa.exists(ca_dir):
        say(f"issuer CA: {ca_dir / 'ca.pem'}")
    else:
        say(f"issuer CA: none at {ca_dir} (`openscws ca init`, or `openscws up`)")
