"""Puts a card together: the image's resources behind the SCWS site, the HTTP engine on each
server channel, the BIP server application in the toolkit, and the UICC around it all."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterable
from typing import TYPE_CHECKING

from openscws.agent.app import AdminAgentApp
from openscws.agent.commands import ScwsAdminExecutor
from openscws.agent.credentials import AgentSecrets
from openscws.bip.card import BipServerApp, HandlerFactory, ServerConfig, StreamHandler
from openscws.cardapp import LoadedApp
from openscws.config import CardSettings
from openscws.http.connection import HttpServerConnection
from openscws.http.limits import RamBudget
from openscws.scws.guard import HostPolicy
from openscws.scws.model import ResourceStore, TransactionalStore
from openscws.scws.sample_app import CardInfoApp
from openscws.scws.site import Site
from openscws.tls import gnutls
from openscws.tls.dispatch import TlsDispatcher, openssl_suite_codes
from openscws.tls.endpoint import TlsServerHandler
from openscws.uicc.aram import RULES_KEY, AraM
from openscws.uicc.card import CardIdentity, VirtualUicc
from openscws.uicc.csim import CsimApp, CsimSecrets
from openscws.uicc.usim import UsimApp, UsimSecrets

if TYPE_CHECKING:
    from openscws.uicc.keystore import PskTable, SecretStore

log = logging.getLogger(__name__)

INFO_APP_PATH = "/app/info"


def build_site(
    store: ResourceStore,
    iccid: str,
    *,
    secret: bytes | None = None,
    started: float | None = None,
    host_policy: HostPolicy | None = None,
    apps: Iterable[LoadedApp] = (),
) -> Site:
    """The card's site: the image's resources, the card information application on
    /app/info and the plug-in card applications `apps` that loaded (`openscws.cardapp`).
    `started` (unix seconds) is when the card started, for its uptime; `host_policy`
    (default: local names, ports not checked) guards it against requests meant
    for other servers and cross-origin writes (`scws.guard`)."""
    policy = host_policy if host_policy is not None else HostPolicy()
    site = Site(store, card={"ICCID": iccid}, secret=secret, started=started, host_policy=policy)
    site.register_app(INFO_APP_PATH, CardInfoApp())
    for loaded in apps:
        if loaded.app is not None and loaded.prefix is not None:
            site.register_app(loaded.prefix, loaded.app)
            log.info("card application %s on %s", loaded.name, loaded.prefix)
    return site


def _gnutls_psk(settings: CardSettings, psk: PskTable | None) -> PskTable | None:
    """The PSK table when the HTTPS ports also offer TLS_PSK_WITH_3DES_EDE_CBC_SHA through
    GnuTLS (SCWS §11.1.1.1): PSK-TLS enabled with identities, the "compat" profile, and a
    usable GnuTLS. Else None: OpenSSL alone, no dispatcher."""
    if psk is None or not psk.enabled or not psk.keys or settings.tls_profile != "compat":
        return None
    why = gnutls.available()
    if why is not None:
        log.info("TLS_PSK_WITH_3DES_EDE_CBC_SHA not offered: %s", why)
        return None
    log.info("HTTPS also offers TLS_PSK_WITH_3DES_EDE_CBC_SHA through GnuTLS %s", gnutls.version())
    return psk


def _card_engine_psk(settings: CardSettings, psk: PskTable | None) -> PskTable | None:
    """The PSK table when PSK-TLS 1.2 AES clients go to the card TLS engine
    (`card.tls_engine = "card"`, the "compat" profile, PSK-TLS enabled with identities)."""
    if settings.tls_engine != "card" or settings.tls_profile != "compat":
        return None
    if psk is None or not psk.enabled or not psk.keys:
        log.warning('card.tls_engine = "card" but PSK-TLS is off or has no identity: OpenSSL')
        return None
    log.info("PSK-TLS 1.2 AES clients are served by the card TLS engine")
    return psk


def handler_factories(
    site: Site,
    settings: CardSettings,
    tls: ssl.SSLContext | None,
    psk: PskTable | None = None,
) -> dict[int, HandlerFactory]:
    """One factory per port the card serves: the HTTP engine, wrapped in the card's TLS on
    `settings.tls_ports` (dropped, with a warning, when there is no TLS context). With
    `psk` (the card's PSK table, enabled) and the "compat" profile, HTTPS connections go
    through `TlsDispatcher`, so a client offering only TLS_PSK_WITH_3DES_EDE_CBC_SHA is
    served by GnuTLS and every other one by OpenSSL as before; with `card.tls_engine =
    "card"` too, TLS 1.2 clients of the PSK AES suites are served by the card TLS engine."""
    budget = RamBudget.for_limits(settings.limits)

    def http(channel: int, now: float) -> StreamHandler:
        return HttpServerConnection(site, settings.limits, budget, now=now)

    def https(channel: int, now: float) -> StreamHandler:
        assert tls is not None
        return TlsServerHandler(
            tls,
            HttpServerConnection(site, settings.limits, budget, scheme="https", now=now),
            handshake_timeout=settings.tls_handshake_timeout,
            record_limit=settings.tls_record_limit,
            now=now,
        )

    card_engine = tls is not None and _card_engine_psk(settings, psk) is not None
    table = _gnutls_psk(settings, psk) if tls is not None else None
    if table is None and card_engine:
        table = psk
    suites = frozenset() if tls is None or table is None else openssl_suite_codes(tls)

    def https_dispatch(channel: int, now: float) -> StreamHandler:
        assert tls is not None
        assert table is not None
        return TlsDispatcher(
            tls,
            HttpServerConnection(site, settings.limits, budget, scheme="https", now=now),
            table.psk_keys(),
            openssl_suites=suites,
            card_engine=card_engine,
            handshake_timeout=settings.tls_handshake_timeout,
            record_limit=settings.tls_record_limit,
            now=now,
        )

    factories: dict[int, HandlerFactory] = {}
    for port in settings.ports:
        if port not in settings.tls_ports:
            factories[port] = http
        elif tls is not None:
            factories[port] = https if table is None else https_dispatch
        else:
            log.warning("port %d needs TLS but the card has no certificate: not opened", port)
    return factories


def admin_agent(
    store: TransactionalStore, secrets: SecretStore, settings: CardSettings
) -> AdminAgentApp:
    """The card's admin agent: triggers checked with the keys in `secrets`, sessions applied
    to `store` one transaction each."""

    def executor() -> ScwsAdminExecutor:
        return ScwsAdminExecutor(store, max_resource=settings.admin_max_resource)

    return AdminAgentApp(
        AgentSecrets(secrets),
        executor,
        tls_profile="compat" if settings.tls_profile == "compat" else "modern",
        psk_suites=settings.admin_tls_suites,
        record_limit=settings.tls_record_limit,
        handshake_timeout=settings.tls_handshake_timeout,
    )


def usim_app(secrets: SecretStore) -> UsimApp | None:
    """The USIM application of the subscription in `secrets`, if one was provisioned
    (`openscws card usim set`)."""
    return UsimApp.from_secrets(UsimSecrets(secrets))


def csim_app(secrets: SecretStore) -> CsimApp | None:
    """The CSIM-like application of the (R-)UIM subscription in `secrets`, if one was
    provisioned (`openscws card csim set`)."""
    return CsimApp.from_secrets(CsimSecrets(secrets))


def build_card(
    store: ResourceStore,
    settings: CardSettings,
    iccid: str,
    *,
    secret: bytes | None = None,
    tls: ssl.SSLContext | None = None,
    psk: PskTable | None = None,
    agent: AdminAgentApp | None = None,
    usim: UsimApp | None = None,
    started: float | None = None,
    host_policy: HostPolicy | None = None,
    csim: CsimApp | None = None,
    apps: Iterable[LoadedApp] = (),
) -> VirtualUicc:
    """The card, serving `settings.ports`; HTTPS ports need `tls` (the card's
    `CardKeyStore.server_context()`); `psk` is the card's PSK table (`psk_table()`), for the
    3DES PSK suite through GnuTLS (see `handler_factories`). `agent` (see `admin_agent`)
    takes remote administration triggers and runs the sessions; `usim` (see `usim_app`)
    answers AUTHENTICATE, and `csim` (see `csim_app`) the (R-)UIM BCAST path. `started`
    (unix seconds) is when the card started, for the uptime its information page shows.
    `apps`: plug-in card applications (`load_card_apps`)."""
    site = build_site(
        store, iccid, secret=secret, started=started, host_policy=host_policy, apps=apps
    )
    factories = handler_factories(site, settings, tls, psk)
    server = BipServerApp(
        ServerConfig(
            ports=tuple(factories),
            initial_per_port=settings.initial_channels,
            listening_per_port=settings.listening_channels,
            max_channels=settings.max_channels,
            buffer_size=settings.buffer_size,
        ),
        factories,
    )
    card = VirtualUicc(
        CardIdentity(iccid),
        usim=usim,
        aram=AraM(lambda: store.get_value(RULES_KEY)),
        csim=csim,
    )
    card.toolkit.register(server)
    if agent is not None:
        card.toolkit.register(agent)
    return card


def host_policy_for(
    settings: CardSettings, local: dict[int, int] | None, *, names: frozenset[str] = frozenset()
) -> HostPolicy:
    """The Host policy when the terminal's local port for each card port is known (`local`:
    card port -> local port; a card port missing from it is served on itself, 0 = not known);
    None: not known here (a card process whose gateway runs elsewhere): ports unchecked."""
    if local is None or 0 in local.values():
        return HostPolicy(None, names)
    ports: dict[str, set[int]] = {"http": set(), "https": set()}
    for port in settings.ports:
        scheme = "https" if port in settings.tls_ports else "http"
        ports[scheme] |= {port, local.get(port, port)}
    return HostPolicy({k: frozenset(v) for k, v in ports.items()}, names)
