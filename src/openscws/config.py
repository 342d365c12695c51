"""Settings, as frozen dataclasses loaded from one TOML file (tomllib).

Every field has a default, so `openscws up` runs with no file at all. Command-line options
override the file. `openscws config` prints the effective settings as TOML."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

from openscws.errors import ConfigError
from openscws.http.limits import CardLimits


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "openscws"


@dataclass(frozen=True, slots=True)
class CardSettings:
    data_dir: Path = field(default_factory=lambda: default_data_dir() / "card")
    """The card image: card.json, content/, values/, realms.json."""
    iccid: str = "8988211000000000001"
    """ICCID written when the image is first created (19 or 20 digits)."""
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
    """Channel buffer size asked for in OPEN CHANNEL (at most 65535). The terminal holds the
    buffer; a larger one means fewer socket writes per response (a 1 KB page in one)."""
    limits: CardLimits = field(default_factory=CardLimits)
    """The "card RAM" bounds of the HTTP engine."""
    admin_max_resource: int = 1024 * 1024
    """Largest resource body a remote administration command may store (larger: 413)."""


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
    sms_port: int = 3517
    """Loopback port of the terminal's local SMS endpoint (POST /sms: an SMS-DELIVER TPDU in,
    the card's PoR out), where the admin server's "local" sender delivers triggers; 0: off."""
    connect_timeout: float = 10.0
    """Seconds the terminal tries to reach a server for a card's client-mode channel."""


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
    api_host: str = "127.0.0.1"
    """Address of the REST API and web console (operators' side)."""
    api_port: int = 8116
    """Port of the REST API and web console."""
    sms_sender: str = "local"
    """"local": hand the SMS to a terminal's local SMS endpoint; "smpp": submit it to an SMSC."""
    sms_url: str = "http://127.0.0.1:3517/sms"
    """The local sender's target: a gateway's SMS endpoint (`gateway.sms_port`)."""
    smpp_host: str = "127.0.0.1"
    smpp_port: int = 2775
    smpp_system_id: str = "openscws"
    smpp_password: str = ""
    smpp_source_addr: str = "12345"
    trigger_interval: float = 0.5
    """Seconds between looks for due jobs to trigger."""
    trigger_ttl: float = 60.0
    """Seconds a triggered card has to open its session before the job is retried."""
    session_ttl: float = 120.0
    """Seconds a session may last before its job is retried."""
    retry_base: float = 5.0
    """First retry delay; doubles per attempt up to retry_max."""
    retry_max: float = 300.0
    max_attempts: int = 5
    """Attempts per job (trigger and session) before it is marked failed."""
    db_workers: int = 4
    """Threads the cards' endpoint makes its database calls on (each holds at most one
    pooled connection), so no session waits for another's commit."""


@dataclass(frozen=True, slots=True)
class Settings:
    card: CardSettings = field(default_factory=CardSettings)
    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    trace: TraceSettings = field(default_factory=TraceSettings)
    ca: CaSettings = field(default_factory=CaSettings)
    admin: AdminSettings = field(default_factory=AdminSettings)

    def __post_init__(self) -> None:
        card = self.card
        if card.tls_profile not in ("modern", "compat"):
            raise ConfigError(f"card.tls_profile must be modern or compat: {card.tls_profile!r}")
        if card.key_type not in ("rsa", "ec"):
            raise ConfigError(f"card.key_type must be rsa or ec: {card.key_type!r}")
        if not 1 <= card.tls_record_limit <= 16384:
            raise ConfigError("card.tls_record_limit must be 1..16384")
        if not 1 <= self.admin.db_workers <= 64:
            raise ConfigError("admin.db_workers must be 1..64")
        if self.gateway.card_link not in ("vpcd", "pcsc"):
            raise ConfigError(f"gateway.card_link must be vpcd or pcsc: {self.gateway.card_link!r}")
        if self.admin.sms_sender not in ("local", "smpp"):
            raise ConfigError(f"admin.sms_sender must be local or smpp: {self.admin.sms_sender!r}")


def _convert(cls: Any, value: Any, where: str) -> Any:
    """Builds dataclass `cls` from a TOML table, checking names and basic types."""
    if not isinstance(value, dict):
        raise ConfigError(f"[{where}] must be a table")
    known = {f.name: f for f in fields(cls)}
    defaults = cls()
    kwargs: dict[str, Any] = {}
    for key, raw in value.items():
        if key not in known:
            raise ConfigError(f"unknown setting {where}.{key} (known: {', '.join(sorted(known))})")
        current = getattr(defaults, key)
        name = f"{where}.{key}"
        if is_dataclass(current):
            kwargs[key] = _convert(type(current), raw, name)
        elif isinstance(current, Path) or (current is None and key in {"pcap"}):
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


_SECTIONS = ("card", "gateway", "trace", "ca", "admin")


def load(path: Path | None) -> Settings:
    if path is None:
        return Settings()
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: {e}") from None
    settings = Settings()
    for key, table in data.items():
        if key not in _SECTIONS:
            known = ", ".join(_SECTIONS)
            raise ConfigError(f"{path}: unknown section [{key}] (known: {known})")
        settings = replace(settings, **{key: _convert(type(getattr(settings, key)), table, key)})
    return settings


def to_toml(settings: Settings) -> str:
    """The effective settings, as a TOML file that `load` reads back."""
    lines: list[str] = []

    def emit(obj: Any, section: str) -> None:
        nested: list[tuple[str, Any]] = []
        lines.append(f"[{section}]")
        for f in fields(obj):
            value = getattr(obj, f.name)
            if is_dataclass(value):
                nested.append((f"{section}.{f.name}", value))
            elif isinstance(value, dict):
                nested.append((f"{section}.{f.name}", value))
            elif value is None:
                lines.append(f"# {f.name} = (unset)")
            else:
                lines.append(f"{f.name} = {_toml_value(value)}")
        lines.append("")
        for name, value in nested:
            if isinstance(value, dict):
                lines.append(f"[{name}]")
                lines.extend(f'"{k}" = {v}' for k, v in value.items())
                lines.append("")
            else:
                emit(value, name)

    emit(settings.card, "card")
    emit(settings.gateway, "gateway")
    emit(settings.trace, "trace")
    emit(settings.ca, "ca")
    emit(settings.admin, "admin")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'
