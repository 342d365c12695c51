"""Puts a card together: the image's resources behind the SCWS site, the HTTP engine on each
server channel, the BIP server application in the toolkit, and the UICC around it all."""

from __future__ import annotations

from openscws.bip.card import BipServerApp, ServerConfig, StreamHandler
from openscws.config import CardSettings
from openscws.http.connection import HttpServerConnection
from openscws.http.limits import RamBudget
from openscws.scws.model import ResourceStore
from openscws.scws.sample_app import CardInfoApp
from openscws.scws.site import Site
from openscws.uicc.card import CardIdentity, VirtualUicc

INFO_APP_PATH = "/app/info"


def build_site(store: ResourceStore, iccid: str, *, secret: bytes | None = None) -> Site:
    site = Site(store, card={"ICCID": iccid}, secret=secret)
    site.register_app(INFO_APP_PATH, CardInfoApp())
    return site


def build_card(
    store: ResourceStore,
    settings: CardSettings,
    iccid: str,
    *,
    secret: bytes | None = None,
) -> VirtualUicc:
    site = build_site(store, iccid, secret=secret)
    budget = RamBudget.for_limits(settings.limits)

    def http(channel: int) -> StreamHandler:
        return HttpServerConnection(site, settings.limits, budget)

    server = BipServerApp(
        ServerConfig(
            ports=settings.ports,
            initial_per_port=settings.initial_channels,
            listening_per_port=settings.listening_channels,
            max_channels=settings.max_channels,
            buffer_size=settings.buffer_size,
        ),
        dict.fromkeys(settings.ports, http),
    )
    card = VirtualUicc(CardIdentity(iccid))
    card.toolkit.register(server)
    return card
