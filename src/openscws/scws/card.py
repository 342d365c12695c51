"""Puts a card together: the image's resources behind the SCWS site, the HTTP engine on each
server channel, the BIP server application in the toolkit, and the UICC around it all."""

from __future__ import annotations

import logging
import ssl

from openscws.bip.card import BipServerApp, HandlerFactory, ServerConfig, StreamHandler
from openscws.config import CardSettings
from openscws.http.connection import HttpServerConnection
from openscws.http.limits import RamBudget
from openscws.scws.model import ResourceStore
from openscws.scws.sample_app import CardInfoApp
from openscws.scws.site import Site
from openscws.tls.endpoint import TlsServerHandler
from openscws.uicc.card import CardIdentity, VirtualUicc

log = logging.getLogger(__name__)

INFO_APP_PATH = "/app/info"


def build_site(store: ResourceStore, iccid: str, *, secret: bytes | None = None) -> Site:
    site = Site(store, card={"ICCID": iccid}, secret=secret)
    site.register_app(INFO_APP_PATH, CardInfoApp())
    return site


def handler_factories(
    site: Site, settings: CardSettings, tls: ssl.SSLContext | None
) -> dict[int, HandlerFactory]:
    """One factory per port the card serves: the HTTP engine, wrapped in the card's TLS on
    `settings.tls_ports` (dropped, with a warning, when there is no TLS context)."""
    budget = RamBudget.for_limits(settings.limits)

    def http(channel: int) -> StreamHandler:
        return HttpServerConnection(site, settings.limits, budget)

    def https(channel: int) -> StreamHandler:
        assert tls is not None
        return TlsServerHandler(
            tls,
            HttpServerConnection(site, settings.limits, budget),
            handshake_timeout=settings.tls_handshake_timeout,
            record_limit=settings.tls_record_limit,
        )

    factories: dict[int, HandlerFactory] = {}
    for port in settings.ports:
        if port not in settings.tls_ports:
            factories[port] = http
        elif tls is not None:
            factories[port] = https
        else:
            log.warning("port %d needs TLS but the card has no certificate: not opened", port)
    return factories


def build_card(
    store: ResourceStore,
    settings: CardSettings,
    iccid: str,
    *,
    secret: bytes | None = None,
    tls: ssl.SSLContext | None = None,
) -> VirtualUicc:
    """The card, serving `settings.ports`; HTTPS ports need `tls` (the card's
    `CardKeyStore.server_context()`)."""
    site = build_site(store, iccid, secret=secret)
    factories = handler_factories(site, settings, tls)
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
    card = VirtualUicc(CardIdentity(iccid))
    card.toolkit.register(server)
    return card
