"""Settings, as frozen dataclasses loaded from one TOML file (tomllib).

Every field has a default, so `openscws up` runs with no file at all. Every command reads its
settings the same way (`resolve`): the file, then the environment (`OPENSCWS_<SECTION>_<NAME>`,
e.g. OPENSCWS_ADMIN_DB; OPENSCWS_RAS_DB is another name for it), then the command-line options,
each later one winning. The whole result is checked once (`Settings.__post_init__`): every
field's range and every rule between fields, one error naming the setting and what it allows.
`openscws config` prints the effective settings as TOML, a comment per setting."""

from __future__ import annotations

import ast
import inspect
import itertools
import os
import re
import textwrap
import tomllib
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Final

from openscws.errors import ConfigError
from openscws.http.limits import CardLimits
from openscws.ids import DEFAULT_ICCID, iccid_problem
from openscws.scws.paths import MAX_ADMIN_RESOURCE

ENV_PREFIX: Final = "OPENSCWS_"
"""Environment variables OPENSCWS_<SECTION>_<NAME> set a setting (after the file, before the
options); the value is TOML (a number, true, [3516, 4116]) or, for text and paths, plain."""
ENV_ALIASES: Final = {"OPENSCWS_RAS_DB": ("admin", "db")}
"""Other names of some variables (OPENSCWS_RAS_DB: admin.db, the admin server's database)."""


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "openscws"


@dataclass(frozen=True, slots=True)
class CardSettings:
    data_dir: Path = field(default_factory=lambda: default_data_dir() / "card")
    """The card image: card.json, content/, values/, realms.json."""
    iccid: str = DEFAULT_ICCID
    """ICCID written when the image is first created (19 or 20 digits, the last one the
    ITU-T E.118 Luhn check digit)."""
    msisdn: str = "+15550100001"
    """The subscriber number the admin server sends trigger SMS to."""
    ports: tuple[int, ...] = (3516, 4116)
    """Ports the SCWS opens in "TCP, UICC in server mode" (3516 = HTTP, 4116 = HTTP over TLS,
    OMA SCWS §7.1.1)."""
    tls_ports: tuple[int, ...] = (4116,)
    """Which of `ports` run TLS in the card (HTTPS)."""
    tls_profile: str = "modern"
    """"modern": TLS 1.2 and 1.3; "compat": also TLS 1.0 and 1.1 (SCWS §11.1.2's TLS 1.0),
    at OpenSSL security level 0 for certificate handshakes."""
    tls_record_limit: int = 1024
    """Most plaintext bytes per TLS record the card sends (smaller records: smaller buffers at
    both ends; 16384 = no bound)."""
    tls_handshake_timeout: float = 10.0
    """Seconds a client may take to finish the TLS handshake (or a record) before the card
    drops it."""
    tls_engine: str = "openssl"
    """"openssl": OpenSSL serves every HTTPS client (GnuTLS the 3DES-only one in "compat").
    "card": PSK-TLS 1.2 clients of TLS_PSK_WITH_AES_128_CBC_SHA(256) are served by the card
    TLS engine (`openscws.tls.card_engine`), which holds a fraction of OpenSSL's memory per
    channel; needs PSK-TLS enabled with identities, else it changes nothing."""
    key_type: str = "rsa"
    """Key pair made by `openscws card init` / `up`: "rsa" (2048, WAP-211's) or "ec" (P-256)."""
    tcpip_host: str = "127.0.0.1"
    """Own TCP/IP mode (`openscws card --tcpip`, SCWS §8.2): address the card listens on."""
    tcpip_http_port: int = 80
    """Own TCP/IP mode: the HTTP port (SCWS §8.2: 80)."""
    tcpip_https_port: int = 443
    """Own TCP/IP mode: the HTTPS port (SCWS §8.2: 443)."""
    initial_channels: int = 2
    """Server channels opened per port at start (SCWS §8.1.1 asks terminals for at least 2)."""
    listening_channels: int = 1
    """Channels kept listening per port while others are busy; more are opened on demand."""
    max_channels: int = 7
    """Most BIP channels the card opens (the terminal profile may allow fewer)."""
    buffer_size: int = 8192
    """Channel buffer size asked for in OPEN CHANNEL (1..65535, ETSI TS 102 223 §8.55; the
    terminal may grant less, up to gateway.max_buffer_size). The terminal holds the
    buffer; a larger one means fewer socket writes per response (a 1 KB page in one)."""
    limits: CardLimits = field(default_factory=CardLimits)
    """The "card RAM" bounds of the HTTP engine."""
    admin_max_resource: int = MAX_ADMIN_RESOURCE
    """Largest resource body a remote administration command may store (larger: 413); at
    most what one GP Amendment B command can carry to the card (the admin server refuses a
    larger resource at once)."""
    capacity: int = 1024 * 1024
    """Bytes of storage the card has for web content (resource bodies); `openscws dev` warns
    when a site needs more. Set it to the target card's figure (cards hosting an SCWS range
    from a few hundred KiB to several MiB)."""
    apps: tuple[str, ...] = ()
    """Card applications to mount besides the installed ones (entry point group
    "openscws.card_apps"), each "module:attribute" (docs/card-apps.md)."""
    admin_tls_suites: tuple[str, ...] = ()
    """Suites the card's admin agent offers the admin server; empty: its `tls_profile`'s list
    ("compat" adds TLS 1.0/1.1 and both SCWS §11.1.1.1 suites). Else some of
    "TLS_PSK_WITH_AES_128_CBC_SHA", "TLS_PSK_WITH_3DES_EDE_CBC_SHA" (offered through GnuTLS)."""


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    host: str = "127.0.0.1"
    """Address the BIP gateway listens on for HTTP clients."""
    port_map: dict[int, int] = field(default_factory=dict)
    """Card port -> local port, e.g. {3516 = 8080}; unmapped ports listen as the card asks."""
    busy_timeout: float = 10.0
    """Seconds a client waits for a free channel before it is refused (HTTP 503)."""
    head_timeout: float = 10.0
    """Seconds a new client has to send its request head (HTTPS: its first TLS record)
    before it is dropped (HTTP 408); until then it holds no channel."""
    max_connections: int = 256
    """Connections each listener holds at once."""
    max_buffer_size: int = 65535
    """Largest channel buffer the terminal grants."""
    poll_interval: float = 1.0
    """Seconds between STATUS polls of an idle card."""
    vpcd_host: str = "127.0.0.1"
    """Where the gateway waits for a separate card process (`openscws card`)."""
    vpcd_port: int = 35963
    """vsmartcard's vpcd port (0x8C7B), so a card also plugs into pcscd's vpcd."""
    card_link: str = "vpcd"
    """How `openscws gateway` reaches its card: "vpcd" (wait for `openscws card` on
    vpcd_host:vpcd_port) or "pcsc" (a card in a PC/SC reader, through pcscd)."""
    pcsc_reader: str = ""
    """With card_link "pcsc": part of the reader's name; empty: the first reader with a card."""
    link: str = "direct"
    """How fast the card link is: "direct" (as fast as the link goes) or "iso7816[:params]",
    a card's contacts per ISO/IEC 7816-3, e.g. "iso7816:F=512,D=16" or "iso7816:ta1=0x96"
    (f clock, default 3.57 MHz; F/D or ta1; N extra guard time; turnaround per APDU):
    docs/link-timing.md. Not with card_link "pcsc": a real card has its own timing."""
    sms_port: int = 3517
    """Loopback port of the terminal's local SMS endpoint (POST /sms: an SMS-DELIVER TPDU in,
    the card's PoR out), where the admin server's "local" sender delivers triggers; 0: off."""
    connect_timeout: float = 10.0
    """Seconds the terminal tries to reach a server for a card's client-mode channel."""
    acp: bool = True
    """Enforce the card's access rules (the SCWS access control policy, docs/acp.md); a card
    without rules leaves access unrestricted."""
    acp_refresh: float = 1.0
    """Seconds after which a new connection makes the gateway check the rules' refresh tag
    (it also checks after every administration session)."""
    unix_socket: str = ""
    """Path of a Unix-domain entry point to card port 3516 (identity by SO_PEERCRED); empty:
    none."""


@dataclass(frozen=True, slots=True)
class TraceSettings:
    enabled: bool = False
    """Print every APDU, decoded."""
    pcap: Path | None = None
    """Also write the APDUs as GSMTAP SIM frames to this pcap file (tshark: gsm_sim)."""


@dataclass(frozen=True, slots=True)
class CaSettings:
    dir: Path = field(default_factory=lambda: default_data_dir() / "ca")
    """The card issuer's CA: ca.pem (trust it in browsers and curl), ca-key.pem, issued/."""
    days: int = 825
    """Validity of device certificates the CA signs."""


@dataclass(frozen=True, slots=True)
class AdminSettings:
    data_dir: Path = field(default_factory=lambda: default_data_dir() / "ras")
    """The admin server's data: ras.db (SQLite), master.key (encrypts card keys at rest)."""
    db: str = ""
    """SQLAlchemy URL of the state; empty: SQLite in data_dir. PostgreSQL for scale, e.g.
    "postgresql+psycopg://ras@127.0.0.1/ras"."""
    host: str = "127.0.0.1"
    """Address the admin server's PSK-TLS HTTPS endpoint (the cards' side) listens on."""
    port: int = 4443
    """Port of that endpoint; triggers name it, and cards connect there."""
    uri: str = "/scws/admin"
    """First POST URI the trigger gives the card (Amd B tag 8C)."""
    tls_profile: str = "modern"
    """"modern": PSK-TLS 1.2 only; "compat": also TLS 1.0/1.1 and the SCWS suite
    TLS_PSK_WITH_3DES_EDE_CBC_SHA (through GnuTLS), off by default: 3DES has 64-bit blocks."""
    psk_hint: str = ""
    """PSK identity hint the endpoint sends (RFC 4279 §2), as the card's port 4116 sends its
    own (`openscws card psk enable --hint`); empty: none."""
    api_host: str = "127.0.0.1"
    """Address of the REST API and web console (operators' side)."""
    api_port: int = 8116
    """Port of the REST API and web console."""
    api_tls: str = "off"
    """TLS for the REST API and console: "off" (plain HTTP, loopback addresses only), "ca"
    (a certificate from the issuer CA in [ca] dir, made on first start, kept in
    data_dir/api-tls/ and renewed when due) or "files" (api_cert and api_key)."""
    api_cert: Path | None = None
    """With api_tls "files": the certificate chain (PEM, the server's certificate first)."""
    api_key: Path | None = None
    """With api_tls "files": its private key (PEM, unencrypted; not readable by others)."""
    api_hosts: tuple[str, ...] = ()
    """Host names of the REST API and console besides localhost, 127.0.0.1, [::1] and
    api_host (e.g. ["ras.example.net"]): any other Host header gets 421 (a DNS-rebinding
    page gets nothing), and with api_tls "ca" the certificate names them too."""
    api_insecure_bind: bool = False
    """Serve the REST API and console without TLS on a non-loopback api_host anyway (a loud
    warning at start). Without it such a start is refused."""
    sms_sender: str = "local"
    """"local": hand the SMS to a terminal's local SMS endpoint; "smpp": submit it to an SMSC."""
    sms_url: str = "http://127.0.0.1:3517/sms"
    """The local sender's target: a gateway's SMS endpoint (`gateway.sms_port`)."""
    smpp_host: str = "127.0.0.1"
    """The "smpp" sender's SMSC (SMPP 3.4 over TCP)."""
    smpp_port: int = 2775
    """The SMSC's port (2775, SMPP's registered port)."""
    smpp_system_id: str = "openscws"
    """The system_id this server binds to the SMSC as (SMPP 3.4 §4.1, bind_transmitter)."""
    smpp_password: str = ""
    """Its password at the SMSC (never logged)."""
    smpp_source_addr: str = "12345"
    """The source address (short code) of the trigger SMS."""
    trigger_interval: float = 0.5
    """Seconds between looks for due jobs to trigger."""
    trigger_ttl: float = 60.0
    """Seconds a triggered card has to open its session before the job is retried."""
    session_ttl: float = 120.0
    """Seconds a session may last before its job is retried."""
    retry_base: float = 5.0
    """First retry delay; doubles per attempt up to retry_max."""
    retry_max: float = 300.0
    """Longest retry delay, in seconds."""
    max_attempts: int = 5
    """Attempts per job (trigger and session) before it is marked failed."""
    db_workers: int = 4
    """Threads the cards' endpoint makes its database calls on (each holds at most one
    pooled connection), so no session waits for another's commit."""
    trigger: str = "sms"
    """How campaigns wake cards by default: "sms" (the SMS sender above) or "sip-push" (a PAP
    push to the Push Proxy Gateway at pap_url, delivered over OMA SIP Push)."""
    pap_url: str = "http://127.0.0.1:2948/pap"
    """The PPG's PAP URL (`openscws ppg --pap`)."""
    pap_username: str = "ras"
    """This server's name as a push initiator at the PPG (its initiators file)."""
    pap_password: str = ""
    """Its password there (never logged); empty with trigger "sip-push" under `openscws up`:
    a random one for the embedded PPG."""


@dataclass(frozen=True, slots=True)
class BsfSettings:
    data_dir: Path = field(default_factory=lambda: default_data_dir() / "bsf")
    """The GBA BSF's data (`openscws bsf`, `up --gba`): bsf.db (SQLite) and master.key
    (seals subscriber keys and Ks at rest)."""
    db: str = ""
    """SQLAlchemy URL of the BSF's state; empty: SQLite in data_dir. PostgreSQL for scale,
    e.g. "postgresql+psycopg://bsf@127.0.0.1/bsf"."""


@dataclass(frozen=True, slots=True)
class BsmSettings:
    data_dir: Path = field(default_factory=lambda: default_data_dir() / "bsm")
    """The BCAST BSM's data (`openscws bsm`): bsm.db (SQLite) and master.key (seals the
    service keys and the (R-)UIM root keys at rest)."""
    db: str = ""
    """SQLAlchemy URL of the BSM's state; empty: SQLite in data_dir. PostgreSQL for scale,
    e.g. "postgresql+psycopg://bsm@127.0.0.1/bsm"."""
    enable: bool = False
    """`openscws up` also runs BCAST (as `up --bcast`): the BSF (as `up --gba`), the BSM, and
    the terminal's BSP-C with the card as a GBA_U subscriber."""
    port: int = 8090
    """With BCAST in `openscws up`: the BSM's provisioning port (0: any free port)."""
    fqdn: str = "bsm.openscws.test"
    """The BSM's FQDN: its digest realm, the IDi of its LTKMs, and its NAF_Id with the MBMS
    Ua protocol id (TS 33.220 Annex H.3)."""
    ltkm_port: int = 4359
    """With BCAST in `openscws up`: the terminal's LTKM port (UDP, IANA "omabcastltkm")."""
    ltkm_retry_after: float = 10.0
    """With BCAST in `openscws up`: seconds after a subscription before the terminal asks
    once, with an LTKM Request, for the item's LTKMs that have not come (lost datagrams)."""


@dataclass(frozen=True, slots=True)
class DmSettings:
    client_tree: Path = field(
        default_factory=lambda: default_data_dir() / "dm-client" / "tree.json"
    )
    """The terminal's DM client (`openscws dm client`, `up --dm`): its management tree
    (DevInfo, DevDetail, the DM accounts with their credentials; a 0600 file)."""
    client_account: str = "1"
    """The DM account (./DMAcc/<x>) `dm client run` uses when --account is not given."""
    client_wbxml: bool = False
    """Send DM messages as WBXML (application/vnd.syncml.dm+wbxml) instead of XML."""
    client_timeout: float = 30.0
    """Seconds the DM client waits for a connection or an answer of the DM server."""
    data_dir: Path = field(default_factory=lambda: default_data_dir() / "dm")
    """The DM server's data (`openscws dm serve`): dm.db (SQLite), master.key (seals the
    devices' credentials at rest) and tls/ (its certificate when none is given)."""
    db: str = ""
    """SQLAlchemy URL of the DM server's state; empty: SQLite in data_dir. PostgreSQL for
    scale, e.g. "postgresql+psycopg://dm@127.0.0.1/dm"."""
    port: int = 9443
    """The DM server's HTTPS port (POST /dm, and the REST API under /api/v1/dm/)."""
    min_tls: str = "1.0"
    """The oldest TLS version served: "1.0", "1.1" (the DM profile's mandatory one) or
    "1.2". Below 1.2 the context runs at OpenSSL security level 0 (see docs/dm.md)."""


@dataclass(frozen=True, slots=True)
class SipSettings:
    domain: str = "scws.test"
    """The SIP domain of the embedded push path: cards register as sip:<MSISDN>@domain, the
    PPG sends as sip:ppg@domain."""
    proxy: str = ""
    """`sip:host:port[;transport=tcp]` of a SIP registrar and proxy (e.g. Kamailio with
    deploy/kamailio/kamailio.cfg): the PPG sends every MESSAGE through it and the push clients
    register there. Empty: the PPG's own registrar, on loopback."""
    ppg_process: bool = True
    """Run the embedded PPG in a process of its own, a child of `openscws up` that it starts,
    restarts if it dies and stops with it: the PPG's PAP, SIP and database work then runs
    beside the cards and terminals instead of taking turns with them. false: in the `up`
    process itself."""


@dataclass(frozen=True, slots=True)
class Settings:
    card: CardSettings = field(default_factory=CardSettings)
    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    trace: TraceSettings = field(default_factory=TraceSettings)
    ca: CaSettings = field(default_factory=CaSettings)
    admin: AdminSettings = field(default_factory=AdminSettings)
    bsf: BsfSettings = field(default_factory=BsfSettings)
    bsm: BsmSettings = field(default_factory=BsmSettings)
    dm: DmSettings = field(default_factory=DmSettings)
    sip: SipSettings = field(default_factory=SipSettings)

    def __post_init__(self) -> None:
        problem = _problem(self)
        if problem is not None:
            raise ConfigError(problem)
        _check_api_tls(self.admin)
        from openscws.tls.gnutls import SPEC_SUITE_PRIORITY

        for suite in self.card.admin_tls_suites:
            if suite not in SPEC_SUITE_PRIORITY:
                raise ConfigError(
                    f"card.admin_tls_suites: {suite!r} is not one of "
                    + ", ".join(SPEC_SUITE_PRIORITY)
                )


API_TLS_MODES = ("off", "ca", "files")


def _check_api_tls(admin: AdminSettings) -> None:
    if admin.api_tls not in API_TLS_MODES:
        raise ConfigError(f"admin.api_tls must be off, ca or files: {admin.api_tls!r}")
    files = admin.api_cert is not None, admin.api_key is not None
    if admin.api_tls == "files" and not all(files):
        raise ConfigError('admin.api_tls = "files" needs admin.api_cert and admin.api_key')
    if admin.api_tls != "files" and any(files):
        raise ConfigError('admin.api_cert and admin.api_key are used with admin.api_tls = "files"')


PORT: Final = (1, 65535)
LOCAL_PORT: Final = (0, 65535)


def tcp_port(text: str) -> int:
    """An argparse type for a port option that no setting checks: 0..65535 (0: any free port
    where the command allows it). A bad number is a usage error, never a silently different
    port at bind time."""
    import argparse

    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not LOCAL_PORT[0] <= port <= LOCAL_PORT[1]:
        raise argparse.ArgumentTypeError(f"{port} is not a port (0..65535)")
    return port


"""A port this machine listens on: 0 takes any free one."""


def _problem(s: Settings) -> str | None:
    """The first setting that is out of range or breaks a rule between settings, as one line
    naming it and what it allows; None when all are usable."""
    c, g, a = s.card, s.gateway, s.admin
    ranges: list[tuple[str, object, tuple[float, float], str]] = [
        ("card.tls_record_limit", c.tls_record_limit, (1, 16384), ""),
        ("card.tcpip_http_port", c.tcpip_http_port, PORT, ""),
        ("card.tcpip_https_port", c.tcpip_https_port, PORT, ""),
        ("card.max_channels", c.max_channels, (1, 7), " (ETSI TS 102 223 channel ids 1-7)"),
        ("card.initial_channels", c.initial_channels, (1, c.max_channels), " (card.max_channels)"),
        ("card.listening_channels", c.listening_channels, (1, c.max_channels), ""),
        ("card.buffer_size", c.buffer_size, (1, 65535), " (ETSI TS 102 223 §8.55 buffer size)"),
        (
            "card.admin_max_resource",
            c.admin_max_resource,
            (1, MAX_ADMIN_RESOURCE),
            " (what one GP Amendment B command carries to the card)",
        ),
        ("card.capacity", c.capacity, (1, 2**40), " (bytes)"),
        ("gateway.max_buffer_size", g.max_buffer_size, (1, 65535), " (ETSI TS 102 223 §8.55)"),
        ("gateway.vpcd_port", g.vpcd_port, PORT, ""),
        ("gateway.max_connections", g.max_connections, (1, 65535), " (per listener)"),
        ("gateway.sms_port", g.sms_port, LOCAL_PORT, " (0: off)"),
        ("admin.port", a.port, LOCAL_PORT, " (0: any free port)"),
        ("admin.api_port", a.api_port, LOCAL_PORT, " (0: any free port)"),
        ("admin.smpp_port", a.smpp_port, PORT, ""),
        ("admin.max_attempts", a.max_attempts, (1, 1000), ""),
        ("admin.db_workers", a.db_workers, (1, 64), ""),
        ("ca.days", s.ca.days, (1, 36500), ""),
        ("bsm.port", s.bsm.port, LOCAL_PORT, " (0: any free port)"),
        ("bsm.ltkm_port", s.bsm.ltkm_port, LOCAL_PORT, " (0: any free port)"),
        ("dm.port", s.dm.port, LOCAL_PORT, " (0: any free port)"),
    ]
    for name, value, (low, high), why in ranges:
        if not isinstance(value, int) or not low <= value <= high:
            return f"{name} = {value!r}: must be {low}..{high}{why}"
    positive = [
        ("card.tls_handshake_timeout", c.tls_handshake_timeout),
        ("gateway.busy_timeout", g.busy_timeout),
        ("gateway.poll_interval", g.poll_interval),
        ("gateway.connect_timeout", g.connect_timeout),
        ("dm.client_timeout", s.dm.client_timeout),
        ("gateway.acp_refresh", g.acp_refresh),
        ("gateway.head_timeout", g.head_timeout),
        ("admin.trigger_interval", a.trigger_interval),
        ("admin.trigger_ttl", a.trigger_ttl),
        ("admin.session_ttl", a.session_ttl),
        ("admin.retry_base", a.retry_base),
        ("admin.retry_max", a.retry_max),
        ("bsm.ltkm_retry_after", s.bsm.ltkm_retry_after),
    ]
    for name, number in positive:
        if not number > 0:
            return f"{name} = {number!r}: must be a number of seconds above 0"
    if s.dm.min_tls not in ("1.0", "1.1", "1.2"):
        return f'dm.min_tls = {s.dm.min_tls!r}: must be "1.0", "1.1" or "1.2"'
    if a.retry_max < a.retry_base:
        return (
            f"admin.retry_max = {a.retry_max!r}: must be at least admin.retry_base "
            f"({a.retry_base!r})"
        )
    if not c.ports:
        return "card.ports = []: the card must open at least one port"
    for port in c.ports:
        if not isinstance(port, int) or not PORT[0] <= port <= PORT[1]:
            return f"card.ports: {port!r} must be 1..65535"
    if len(set(c.ports)) != len(c.ports):
        return f"card.ports = {list(c.ports)}: a port is named twice"
    stray = [p for p in c.tls_ports if p not in c.ports]
    if stray:
        return (
            f"card.tls_ports = {list(c.tls_ports)}: {stray[0]!r} is not in card.ports = "
            f"{list(c.ports)} (a TLS port must be one the card opens)"
        )
    for card_port, local in g.port_map.items():
        if not PORT[0] <= card_port <= PORT[1]:
            return f"gateway.port_map: card port {card_port} must be 1..65535"
        if not LOCAL_PORT[0] <= local <= LOCAL_PORT[1]:
            return (
                f"gateway.port_map: local port {local} (for card port {card_port}) must be "
                "0..65535 (0: any free port)"
            )
    choices = [
        ("card.tls_profile", c.tls_profile, ("modern", "compat")),
        ("card.tls_engine", c.tls_engine, ("openssl", "card")),
        ("admin.tls_profile", a.tls_profile, ("modern", "compat")),
        ("card.key_type", c.key_type, ("rsa", "ec")),
        ("gateway.card_link", g.card_link, ("vpcd", "pcsc")),
        ("admin.sms_sender", a.sms_sender, ("local", "smpp")),
        ("admin.trigger", a.trigger, ("sms", "sip-push")),
    ]
    for name, chosen, allowed in choices:
        if chosen not in allowed:
            return f"{name} = {chosen!r}: must be {' or '.join(allowed)}"
    if c.tls_engine == "card" and c.tls_profile != "compat":
        return (
            'card.tls_engine = "card" needs card.tls_profile = "compat" (its suites, '
            "TLS_PSK_WITH_AES_128_CBC_SHA and _SHA256, are CBC ones)"
        )
    iccid_why = iccid_problem(c.iccid)
    if iccid_why is not None:
        return f"card.iccid: {iccid_why}"
    if not re.fullmatch(r"\+?[0-9]{3,20}", c.msisdn):
        return f"card.msisdn = {c.msisdn!r}: must be 3 to 20 digits, optionally after '+'"
    from openscws.apdu.iso7816 import parse_link

    try:
        timed = parse_link(g.link) is not None
    except ConfigError as exc:
        return f"gateway.link = {g.link!r}: {exc}"
    if timed and g.card_link == "pcsc":
        return 'gateway.link: a card in a PC/SC reader has its own timing (card_link = "pcsc")'
    if s.sip.proxy:
        from openscws.push.sip import SipError, uri_target

        try:
            uri_target(s.sip.proxy)
        except SipError as e:
            return f"sip.proxy = {s.sip.proxy!r}: {e} (sip:HOST:PORT[;transport=tcp])"
    if not re.fullmatch(r"[A-Za-z0-9.-]{1,253}", s.sip.domain):
        return f"sip.domain = {s.sip.domain!r}: must be a host name"
    return None


def notes(settings: Settings) -> list[str]:
    """Settings that are allowed but probably not meant: each as a warning line."""
    out: list[str] = []
    unused = sorted(set(settings.gateway.port_map) - set(settings.card.ports))
    for port in unused:
        out.append(
            f"gateway.port_map maps card port {port}, which the card never opens "
            f"(card.ports = {list(settings.card.ports)})"
        )
    return out


def _convert(
    cls: Any, value: Any, where: str, *, base: Any = None, label: str | None = None
) -> Any:
    """Builds dataclass `cls` from a TOML table over `base` (default: the defaults),
    checking names and basic types; `label` names where the values came from."""
    if not isinstance(value, dict):
        raise ConfigError(f"[{where}] must be a table")
    known = {f.name: f for f in fields(cls)}
    defaults = cls() if base is None else base
    kwargs: dict[str, Any] = {}
    for key, raw in value.items():
        if key not in known:
            raise ConfigError(f"unknown setting {where}.{key} (known: {', '.join(sorted(known))})")
        current = getattr(defaults, key)
        name = f"{where}.{key}" if label is None else f"{label} ({where}.{key})"
        if is_dataclass(current):
            kwargs[key] = _convert(type(current), raw, name)
        elif isinstance(current, Path) or (current is None and key in _OPTIONAL_PATHS):
            kwargs[key] = Path(os.path.expanduser(str(raw)))
        elif isinstance(current, tuple):
            if not isinstance(raw, list):
                raise ConfigError(f"{name} must be a list")
            kwargs[key] = tuple(raw)
        elif isinstance(current, dict):
            if not isinstance(raw, dict):
                raise ConfigError(f"{name} must be a table")
            try:
                kwargs[key] = {int(k): int(v) for k, v in raw.items()}
            except ValueError as e:
                raise ConfigError(f"{name}: {e}") from None
        elif isinstance(current, bool):
            if not isinstance(raw, bool):
                raise ConfigError(f"{name} must be true or false")
            kwargs[key] = raw
        elif isinstance(current, float):
            if not isinstance(raw, int | float) or isinstance(raw, bool):
                raise ConfigError(f"{name} must be a number")
            kwargs[key] = float(raw)
        elif isinstance(current, int):
            if not isinstance(raw, int) or isinstance(raw, bool):
                raise ConfigError(f"{name} must be a whole number")
            kwargs[key] = raw
        elif isinstance(current, str):
            if not isinstance(raw, str):
                raise ConfigError(f"{name} must be a string")
            kwargs[key] = raw
        else:
            kwargs[key] = raw
    try:
        return replace(defaults, **kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"[{where}]: {e}") from None


_SECTIONS = tuple(f.name for f in fields(Settings))
"""Every section of a settings file, in `Settings` order."""
_OPTIONAL_PATHS = frozenset({"pcap", "api_cert", "api_key"})


def load(path: Path | None, environ: Mapping[str, str] | None = None) -> Settings:
    """The settings of file `path` (None: the defaults), then of `environ`'s OPENSCWS_*
    variables (see `ENV_PREFIX`). Checked whole (ConfigError on the first problem)."""
    defaults = Settings()
    parts: dict[str, Any] = {}
    if path is not None:
        for key, table in _read_file(path).items():
            try:
                parts[key] = _convert(type(getattr(defaults, key)), table, key)
            except ConfigError as e:
                raise ConfigError(f"{path}: {e}") from None
    for section, key, raw, name in _from_environment(environ or {}):
        base = parts.get(section, getattr(defaults, section))
        parts[section] = _convert(type(base), {key: raw}, section, base=base, label=name)
    return replace(defaults, **parts)


def _read_file(path: Path) -> dict[str, dict[str, Any]]:
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory, not a TOML file") from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid TOML: not UTF-8 text") from None
    for key, table in data.items():
        if key not in _SECTIONS:
            known = ", ".join(_SECTIONS)
            raise ConfigError(f"{path}: unknown section [{key}] (known: {known})")
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [{key}] must be a table")
    return data


def _from_environment(environ: Mapping[str, str]) -> list[tuple[str, str, Any, str]]:
    """(section, key, value, variable) for every OPENSCWS_<SECTION>_<NAME> set in `environ`
    that names a setting; other OPENSCWS_* variables (the tests' own) are not settings."""
    names = dict(ENV_ALIASES)
    defaults = Settings()
    for section in _SECTIONS:
        for f in fields(getattr(defaults, section)):
            kind = getattr(getattr(defaults, section), f.name)
            if not is_dataclass(kind) and not isinstance(kind, dict):
                names[f"{ENV_PREFIX}{section}_{f.name}".upper()] = (section, f.name)
    found = []
    for name, (section, key) in names.items():
        text = environ.get(name)
        if text is None:
            continue
        current = getattr(getattr(defaults, section), key)
        value: Any = text
        if not isinstance(current, str | Path) and current is not None:
            try:
                value = tomllib.loads(f"v = {text}")["v"]
            except tomllib.TOMLDecodeError:
                raise ConfigError(
                    f"{name}={text!r}: not a value for {section}.{key} (TOML: a number, "
                    "true/false, or a list like [3516, 4116])"
                ) from None
        found.append((section, key, value, name))
    return found


def resolve(
    path: Path | None,
    environ: Mapping[str, str],
    options: Callable[[Settings], Settings] = lambda s: s,
) -> Settings:
    """What every command runs with: the file, then the environment, then `options` (the
    command line's, as a function of the settings so far). Checked whole, once more, after
    the options (ConfigError naming the setting)."""
    return options(load(path, environ))


def to_toml(settings: Settings) -> str:
    """The effective settings, as a TOML file that `load` reads back."""
    lines: list[str] = []

    def emit(obj: Any, section: str) -> None:
        nested: list[tuple[str, Any]] = []
        lines.append(f"[{section}]")
        docs = field_docs(obj)
        for f in fields(obj):
            value = getattr(obj, f.name)
            if f.name in docs and not is_dataclass(value) and not isinstance(value, dict):
                lines.extend(_comment(docs[f.name]))
            if is_dataclass(value):
                nested.append((f"{section}.{f.name}", value))
            elif isinstance(value, dict):
                nested.append((f"{section}.{f.name}", value))
            elif value is None:
                lines.append(f"# {f.name} = (unset)")
            elif (hidden := _hidden(f.name, value)) is not None:
                lines.append(f"# {f.name} = {hidden}")
            else:
                lines.append(f"{f.name} = {_toml_value(value)}")
        lines.append("")
        for name, value in nested:
            if isinstance(value, dict):
                parent = name.rpartition(".")
                doc = field_docs(_section_of(settings, parent[0])).get(parent[2])
                if doc:
                    lines.extend(_comment(doc))
                lines.append(f"[{name}]")
                lines.extend(f'"{k}" = {v}' for k, v in value.items())
                lines.append("")
            else:
                emit(value, name)

    for section in fields(settings):
        emit(getattr(settings, section.name), section.name)
    return "\n".join(lines)


def _hidden(name: str, value: Any) -> str | None:
    """What `to_toml` shows instead of a secret (a password, or a database URL's password),
    as a comment: printed settings get pasted into bug reports. None: not a secret."""
    if not isinstance(value, str) or not value:
        return None
    if name.endswith("password"):
        return "(set; not shown)"
    if name == "db":
        parts = urllib.parse.urlsplit(value)
        if parts.password:
            # The host after the last "@" of the authority, as urlsplit reads it: a password
            # holding "@" stays hidden whole.
            host = parts.netloc.rpartition("@")[2]
            shown = parts._replace(netloc=f"{parts.username}:(not shown)@{host}")
            return f'"{urllib.parse.urlunsplit(shown)}"'
    return None


def _section_of(settings: Settings, dotted: str) -> Any:
    obj: Any = settings
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _comment(doc: str) -> list[str]:
    text = " ".join(line.strip() for line in doc.splitlines() if line.strip())
    return textwrap.wrap(text, width=96, initial_indent="# ", subsequent_indent="# ")


def field_docs(obj: Any) -> dict[str, str]:
    """The docstring under each field of `obj`'s dataclass (its source's string literal
    after the annotated assignment); empty when the source cannot be read."""
    cls = type(obj)
    if cls not in _DOCS:
        _DOCS[cls] = _field_docs(cls)
    return _DOCS[cls]


_DOCS: dict[type[Any], dict[str, str]] = {}


def _field_docs(cls: type[Any]) -> dict[str, str]:
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):
        return {}
    docs: dict[str, str] = {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    for node, after in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = after.value.value
    return docs


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'
