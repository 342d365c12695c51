"""The whole system on one machine, as `openscws up` runs it: the card (in this process) and
the terminal's BIP gateway, and the operator's admin server with its REST API and console.

Start order matters for the embedded defaults: the admin server binds first (its port goes
into the card's agent defaults and every trigger), the card is provisioned with the keys the
server holds for it, then the gateway powers the card and opens its local SMS entry point,
where the server's local sender delivers triggers."""

from __future__ import annotations

import datetime
import logging
import ssl
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from openscws.aio.gateway import Gateway, GatewayConfig
from openscws.aio.links import CardLink, InProcessLink
from openscws.config import AdminSettings, Settings
from openscws.errors import StoreError
from openscws.scws.card import admin_agent, build_card, usim_app
from openscws.store.cardimage import CardImage
from openscws.terminal.engine import TerminalEngine
from openscws.trace.tracer import ApduTracer

if TYPE_CHECKING:
    import uvicorn

    from openscws.agent.app import AdminAgentApp
    from openscws.ras.db import RasDatabase
    from openscws.ras.server import RasServer
    from openscws.ras.service import RasService
    from openscws.uicc.card import VirtualUicc
    from openscws.uicc.keystore import PskTable

log = logging.getLogger(__name__)


def open_image(settings: Settings, *, create: bool, demo: bool) -> CardImage:
    """Opens the card image, creating it (and the demo site) on first use when `create`."""
    root = settings.card.data_dir
    if (root / "card.json").exists():
        return CardImage.open(root)
    if not create:
        raise StoreError(f"no card image at {root}; create one with `openscws init`")
    image = CardImage.create(root, iccid=settings.card.iccid, now=int(time.time()))
    log.info("created card image at %s (ICCID %s)", root, settings.card.iccid)
    if demo:
        from openscws.demo import install_demo

        n = install_demo(image, int(time.time()))
        log.info("installed the demo site (%d resources)", n)
    return image


def card_of(
    settings: Settings,
    image: CardImage,
    *,
    agent: AdminAgentApp | None,
    tls: tuple[ssl.SSLContext | None, PskTable | None] | None = None,
) -> VirtualUicc:
    """The card of `image`: the SCWS on its ports (with `tls`, else `card_tls`), the admin
    agent when given, the USIM when the image has a subscription."""
    context, psk = tls if tls is not None else card_tls(settings, image)
    return build_card(
        image,
        settings.card,
        image.meta.iccid,
        tls=context,
        psk=psk,
        agent=agent,
        usim=usim_app(image),
    )


def card_tls(settings: Settings, image: CardImage) -> tuple[ssl.SSLContext | None, PskTable | None]:
    """The card's HTTPS context and its PSK table, provisioning the key pair, CA and
    certificate on first use (the embedded defaults). (None, None) when no port runs TLS."""
    card = settings.card
    if not set(card.ports) & set(card.tls_ports):
        return None, None
    from openscws.store.provision import ensure_card_tls
    from openscws.uicc.keystore import CardKeyStore

    keys = CardKeyStore(image)
    done = ensure_card_tls(
        keys,
        settings.ca.dir,
        iccid=image.meta.iccid,
        now=datetime.datetime.now(datetime.UTC),
        key_type="ec" if card.key_type == "ec" else "rsa",
    )
    if done.issued:
        log.info(
            "device certificate %s valid until %s",
            done.certificate.subject.rfc4514_string(),
            done.certificate.not_valid_after_utc.date(),
        )
    table = keys.psk_table()
    context = keys.server_context("compat" if card.tls_profile == "compat" else "modern", table)
    return context, table


def gateway_for(
    settings: Settings, link: CardLink, tracer: ApduTracer | None, *, sms: bool = True
) -> Gateway:
    """The terminal for `link`; `sms`: with the local SMS entry point (`gateway.sms_port`)."""
    g = settings.gateway
    engine = TerminalEngine(max_buffer_size=g.max_buffer_size, poll_interval=g.poll_interval)
    config = GatewayConfig(
        host=g.host,
        port_map=dict(g.port_map),
        busy_timeout=g.busy_timeout,
        head_timeout=g.head_timeout,
        max_connections=g.max_connections,
        connect_timeout=g.connect_timeout,
        sms_port=g.sms_port if sms else 0,
    )
    return Gateway(link, engine, config, observer=tracer)


@dataclass
class AdminStack:
    """The admin server's parts, started by `start_admin`."""

    db: RasDatabase
    service: RasService
    server: RasServer
    api: uvicorn.Server | None = None

    async def stop(self) -> None:
        if self.api is not None:
            from openscws.ras.api_server import stop_api

            await stop_api(self.api)
        await self.server.stop()
        self.db.dispose()

    @property
    def api_url(self) -> str | None:
        if self.api is None:
            return None
        sock = self.api.servers[0].sockets[0]
        host, port = sock.getsockname()[:2]
        return f"http://{host}:{port}/"


def admin_service(admin: AdminSettings) -> tuple[RasDatabase, RasService]:
    """The admin server's database (migrated to the current schema) and service."""
    from openscws.ras.db import RasDatabase, default_url
    from openscws.ras.service import RasPolicy, RasService
    from openscws.ras.vault import Vault

    directory = admin.data_dir
    directory.mkdir(parents=True, exist_ok=True)
    db = RasDatabase(admin.db or default_url(directory))
    db.upgrade()
    vault = (
        Vault.open(directory) if (directory / "master.key").exists() else Vault.create(directory)
    )
    policy = RasPolicy(
        trigger_ttl=datetime.timedelta(seconds=admin.trigger_ttl),
        session_ttl=datetime.timedelta(seconds=admin.session_ttl),
        retry_base=datetime.timedelta(seconds=admin.retry_base),
        retry_max=datetime.timedelta(seconds=admin.retry_max),
        max_attempts=admin.max_attempts,
    )
    return db, RasService(db, vault, policy)


async def start_admin(
    settings: Settings, *, sms_url: str | None = None, api: bool = True, triggers: bool = True
) -> AdminStack:
    """The admin server: its database, the cards' PSK-TLS endpoint with the trigger loop
    (unless not `triggers`), and (with `api`) the REST API and console."""
    from openscws.ras.senders import LocalTerminalSender, SmppSender, SmsSender
    from openscws.ras.server import EndpointConfig, RasServer

    admin = settings.admin
    db, service = admin_service(admin)
    sender: SmsSender
    if admin.sms_sender == "smpp":
        sender = SmppSender(
            admin.smpp_host,
            admin.smpp_port,
            system_id=admin.smpp_system_id,
            password=admin.smpp_password,
            source_addr=admin.smpp_source_addr,
        )
    else:
        sender = LocalTerminalSender(sms_url or admin.sms_url)
    server = RasServer(
        service,
        sender,
        EndpointConfig(
            host=admin.host,
            port=admin.port,
            uri=admin.uri,
            trigger_interval=admin.trigger_interval,
            db_workers=admin.db_workers,
        ),
    )
    await server.start(triggers=triggers)
    stack = AdminStack(db, service, server)
    if api:
        from openscws.ras.api import create_app
        from openscws.ras.api_server import serve_api

        try:
            stack.api = await serve_api(
                create_app(service, on_change=server.wake), admin.api_host, admin.api_port
            )
        except BaseException:
            await stack.stop()
            raise
    return stack


@dataclass
class Stack:
    """Card, gateway and (optionally) the admin server, all in this process."""

    settings: Settings
    image: CardImage
    gateway: Gateway
    admin: AdminStack | None = None
    tracer: ApduTracer | None = None
    extra: dict[str, object] = field(default_factory=dict)

    async def stop(self) -> None:
        try:
            await self.gateway.stop()
        finally:
            if self.admin is not None:
                await self.admin.stop()
            if self.tracer is not None:
                self.tracer.close()


async def start_stack(
    settings: Settings,
    *,
    demo: bool = True,
    admin: bool = True,
    api: bool = True,
    tracer: ApduTracer | None = None,
) -> Stack:
    """Everything `openscws up` runs. With `admin`, the gateway's local SMS entry point must
    be on (`gateway.sms_port`), and the card gets its agent."""
    image = open_image(settings, create=True, demo=demo)
    # The card's TLS first: on first use it provisions the key pair, CA and certificate.
    tls = card_tls(settings, image)
    admin_stack: AdminStack | None = None
    agent = None
    if admin:
        sms_port = settings.gateway.sms_port
        if not sms_port:
            raise StoreError("remote administration needs the gateway's SMS entry point on")
        admin_stack = await start_admin(
            settings, sms_url=f"http://127.0.0.1:{sms_port}/sms", api=api
        )
        try:
            from openscws.ras.provision import AdminEndpoint, ensure_card_admin

            a = settings.admin
            ensure_card_admin(
                admin_stack.service,
                image,
                iccid=image.meta.iccid,
                msisdn=settings.card.msisdn,
                endpoint=AdminEndpoint(a.host, admin_stack.server.port, "localhost", a.uri),
            )
            agent = admin_agent(image, image, settings.card)
        except BaseException:
            await admin_stack.stop()
            raise
    card = card_of(settings, image, agent=agent, tls=tls)
    gateway = gateway_for(settings, InProcessLink(card), tracer, sms=admin)
    stack = Stack(settings, image, gateway, admin_stack, tracer)
    try:
        await gateway.start()
        await gateway.wait_listening()
    except BaseException:
        await stack.stop()
        raise
    return stack


def under(settings: Settings, data: Path) -> Settings:
    """`settings` with every data directory under `data` (tests, benchmarks)."""
    return replace(
        settings,
        card=replace(settings.card, data_dir=data / "card"),
        ca=replace(settings.ca, dir=data / "ca"),
        admin=replace(settings.admin, data_dir=data / "ras"),
    )
