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
from typing import TYPE_CHECKING, Final

from openscws.aio.gateway import Gateway, GatewayConfig
from openscws.aio.links import CardLink, InProcessLink, TimedLink
from openscws.apdu.iso7816 import parse_link
from openscws.cardapp import load_card_apps
from openscws.config import AdminSettings, Settings
from openscws.errors import ConfigError, StoreError
from openscws.ids import fleet_iccid, fleet_msisdn
from openscws.scws.card import admin_agent, build_card, csim_app, host_policy_for, usim_app
from openscws.store.cardimage import CardImage
from openscws.store.running import RunningLock
from openscws.terminal.engine import TerminalEngine
from openscws.trace.tracer import ApduTracer

if TYPE_CHECKING:
    import uvicorn

    from openscws.agent.app import AdminAgentApp
    from openscws.ras.db import RasDatabase
    from openscws.ras.owner import OwnerSlot
    from openscws.ras.server import RasServer
    from openscws.ras.service import RasService
    from openscws.uicc.card import VirtualUicc
    from openscws.uicc.keystore import PskTable

log = logging.getLogger(__name__)


def open_image(
    settings: Settings, *, create: bool, demo: bool, iccid: str | None = None
) -> CardImage:
    """Opens the card image, creating it (and the demo site) on first use when `create`.
    `iccid`: the ICCID asked for (settings.card.iccid when the image is made); an existing
    image with another one is an error, not silently kept."""
    root = settings.card.data_dir
    if (root / "card.json").exists():
        image = CardImage.open(root)
        if iccid is not None and image.meta.iccid != iccid:
            image.close()
            raise StoreError(
                f"the card image at {root} has ICCID {image.meta.iccid}, not {iccid} (an "
                "image keeps its ICCID: give another --data-dir for a new card)"
            )
        return image
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
    gateway_here: bool = False,
) -> VirtualUicc:
    """The card of `image`: the SCWS on its ports (with `tls`, else `card_tls`), the admin
    agent when given, the USIM when the image has a subscription. `gateway_here`: the
    gateway runs in this process with `settings`, so the card knows the local ports its
    Host headers may name."""
    context, psk = tls if tls is not None else card_tls(settings, image)
    local = dict(settings.gateway.port_map) if gateway_here else None
    return build_card(
        image,
        settings.card,
        image.meta.iccid,
        tls=context,
        psk=psk,
        agent=agent,
        usim=usim_app(image),
        csim=csim_app(image),
        started=time.time(),
        host_policy=host_policy_for(settings.card, local),
        apps=load_card_apps(settings.card.apps),
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
    timing = parse_link(g.link)
    if timing is not None:
        log.info("%s", timing.describe())
        link = TimedLink(link, timing)
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
    control = None
    if g.acp:
        from openscws.aio.acp import AccessControl

        def unix_target() -> tuple[str, int]:
            return g.host, gateway.local_port(3516)

        control = AccessControl(
            link,
            observer=tracer,
            refresh_interval=g.acp_refresh,
            unix_socket=Path(g.unix_socket) if g.unix_socket else None,
            unix_target=unix_target,
        )
        link = control.link
    gateway = Gateway(link, engine, config, observer=tracer)
    if control is not None:
        gateway.wrap_client = control.wrap_client
    return gateway


@dataclass
class AdminStack:
    """The admin server's parts, started by `start_admin`."""

    db: RasDatabase
    service: RasService
    server: RasServer
    api: uvicorn.Server | None = None
    api_ca: Path | None = None
    """The issuer CA that signed the API's certificate (admin.api_tls = "ca")."""
    owner: OwnerSlot | None = None
    """This process's name in job leases, held while it runs."""

    async def stop(self) -> None:
        try:
            if self.api is not None:
                from openscws.ras.api_server import stop_api

                await stop_api(self.api)
            await self.server.stop()
            from openscws.ras.push_sender import SipPushSender

            for sender in {self.server.sender, *self.server.senders.values()}:
                if isinstance(sender, SipPushSender):
                    await sender.close()
            self.db.dispose()
        finally:
            if self.owner is not None:
                self.owner.close()

    @property
    def api_url(self) -> str | None:
        from openscws.ras.api_server import ApiServer

        if self.api is None:
            return None
        if isinstance(self.api, ApiServer):
            return self.api.url
        sock = self.api.servers[0].sockets[0]
        host, port = sock.getsockname()[:2]
        return f"http://{host}:{port}/"


def admin_service(admin: AdminSettings) -> tuple[RasDatabase, RasService]:
    """The admin server's database (migrated to the current schema) and service."""
    from openscws.ras.db import RasDatabase, default_url
    from openscws.ras.service import RasPolicy, RasService
    from openscws.ras.vault import Vault

    directory = admin.data_dir
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    # The key first: one open to others stops the start before the database is touched.
    vault = (
        Vault.open(directory) if (directory / "master.key").exists() else Vault.create(directory)
    )
    db = RasDatabase(admin.db or default_url(directory))
    try:
        db.upgrade()
    except BaseException:
        db.dispose()
        raise
    if vault.rotating:
        log.warning(
            "a master key rotation was cut short (%s.next exists): both keys open card keys "
            "meanwhile; run `openscws admin vault rotate` to finish it",
            vault.path,
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
    from openscws.ras.owner import claim_owner
    from openscws.ras.senders import LocalTerminalSender, SmppSender, SmsSender
    from openscws.ras.server import EndpointConfig, RasServer

    admin = settings.admin
    tls = None
    if api:
        from openscws.ras.api_tls import api_tls

        tls = api_tls(settings)  # refuses plain HTTP off loopback before anything starts
    db, service = admin_service(admin)
    try:
        owner = claim_owner(admin.data_dir)
    except BaseException:
        db.dispose()
        raise
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
    from openscws.ras.push_sender import SipPushSender

    # Both kinds of trigger are at hand: a campaign may choose; admin.trigger is the default.
    senders: dict[str, SmsSender] = {
        "sms": sender,
        "sip-push": SipPushSender(
            admin.pap_url, username=admin.pap_username, password=admin.pap_password
        ),
    }
    sender = senders[admin.trigger]
    server = RasServer(
        service,
        sender,
        EndpointConfig(
            host=admin.host,
            port=admin.port,
            uri=admin.uri,
            tls_profile="compat" if admin.tls_profile == "compat" else "modern",
            psk_hint=admin.psk_hint or None,
            trigger_interval=admin.trigger_interval,
            db_workers=admin.db_workers,
            owner=owner.name,
            release_own_leases=True,
        ),
        senders=senders,
    )
    try:
        await server.start(triggers=triggers)
    except BaseException:
        owner.close()
        db.dispose()
        raise
    stack = AdminStack(db, service, server, api_ca=tls.ca_path if tls else None, owner=owner)
    if api:
        from openscws.ras.api import create_app
        from openscws.ras.api_server import serve_api

        try:
            from openscws.ras.api_auth import default_hosts

            hosts = (*default_hosts(admin.api_host), *admin.api_hosts)
            stack.api = await serve_api(
                create_app(service, on_change=server.wake, hosts=hosts),
                admin.api_host,
                admin.api_port,
                tls=tls.context if tls else None,
            )
        except BaseException:
            await stack.stop()
            raise
    return stack


@dataclass
class FleetCard:
    """Card 2, 3, ... of `openscws up --cards N`: its settings (`fleet_settings`), image,
    terminal and hold on the image."""

    settings: Settings
    image: CardImage
    gateway: Gateway | None = None
    running: RunningLock | None = None


MAX_CARDS: Final = 1000
"""Most cards `openscws up --cards` runs in one process."""


FLEET_PORT_BASE: Final = 20000
"""The first local port of cards 2..N (`openscws up --fleet-port`): below Linux's ephemeral
range (32768..60999) and away from the defaults of card 1, the SMS entry point and the admin
server."""


def fleet_settings(
    settings: Settings, index: int, first_iccid: str | None = None, port_base: int = FLEET_PORT_BASE
) -> Settings:
    """The settings of card `index` (0: card 1, `settings` itself) of `openscws up --cards N`.
    Card k = index + 1 has its image in `<card.data_dir>-k`, the ICCID of card 1 (`first_iccid`,
    default card.iccid) counted up by `index` with its own Luhn digit, the MSISDN counted up
    likewise (so the SIP URI sip:<MSISDN>@<sip.domain>), and its i-th card port (card.ports
    order, from 0) on local port `port_base + (k - 2) * len(card.ports) + i`: with the default
    ports 3516 and 4116 and base 20000, card 2 on 20000 and 20001, card 3 on 20002 and 20003.
    Port base 0: every card port of cards 2..N on any free port. Only card 1's terminal opens
    the local SMS entry point, which routes by MSISDN to every card."""
    if index == 0:
        return settings
    card, g = settings.card, settings.gateway
    width = len(card.ports)
    port_map = {
        port: port_base + (index - 1) * width + i if port_base else 0
        for i, port in enumerate(card.ports)
    }
    first = first_iccid or card.iccid
    return replace(
        settings,
        card=replace(
            card,
            data_dir=card.data_dir.with_name(f"{card.data_dir.name}-{index + 1}"),
            iccid=fleet_iccid(first, index),
            msisdn=fleet_msisdn(card.msisdn, index),
        ),
        gateway=replace(g, port_map=port_map, sms_port=0, unix_socket=""),
    )


@dataclass
class Stack:
    """Card, gateway and (optionally) the admin server, all in this process; with `fleet`,
    more cards, each with its own terminal (`openscws up --cards N`)."""

    settings: Settings
    image: CardImage
    gateway: Gateway
    admin: AdminStack | None = None
    tracer: ApduTracer | None = None
    extra: dict[str, object] = field(default_factory=dict)
    running: RunningLock | None = None
    """This process's hold on the card image (openscws.store.running)."""
    fleet: list[FleetCard] = field(default_factory=list)
    """Cards 2..N."""

    @property
    def gateways(self) -> list[Gateway]:
        """Every card's terminal, card 1's first."""
        return [self.gateway, *(c.gateway for c in self.fleet if c.gateway is not None)]

    async def stop(self) -> None:
        push = self.extra.pop("push", None)
        try:
            if push is not None:
                from openscws.aio.push_embedded import EmbeddedPush

                assert isinstance(push, EmbeddedPush)
                await push.stop()
            for card in reversed(self.fleet):
                try:
                    if card.gateway is not None:
                        await card.gateway.stop()
                finally:
                    if card.running is not None:
                        card.running.release()
            self.fleet.clear()
            await self.gateway.stop()
        finally:
            if self.admin is not None:
                await self.admin.stop()
            if self.tracer is not None:
                self.tracer.close()
            if self.running is not None:
                self.running.release()


async def start_stack(
    settings: Settings,
    *,
    demo: bool = True,
    admin: bool = True,
    api: bool = True,
    tracer: ApduTracer | None = None,
    iccid: str | None = None,
    cards: int = 1,
    fleet_port: int = FLEET_PORT_BASE,
    sms: bool = False,
) -> Stack:
    """Everything `openscws up` runs. With `admin`, the gateway's local SMS entry point must
    be on (`gateway.sms_port`), and the card gets its agent; `sms` turns the entry point on
    without the admin server (the terminal's DM client takes Package #0 there). The card
    image is held (`RunningLock`) until `Stack.stop`: a second process on it gets ImageInUse.
    `cards`: run that many cards (see `fleet_settings`, `fleet_port` its port base), all
    enrolled with the admin server."""
    if not 1 <= cards <= MAX_CARDS:
        raise ConfigError(f"--cards must be 1..{MAX_CARDS}, not {cards}")
    last = fleet_port + (cards - 1) * len(settings.card.ports) - 1
    if cards > 1 and fleet_port and not (1 <= fleet_port and last <= 65535):
        raise ConfigError(
            f"--fleet-port {fleet_port}: {cards - 1} more cards need ports {fleet_port}..{last}, "
            "within 1..65535 (0: any free ports)"
        )
    if admin and api:
        from openscws.ras.api_tls import check_api_bind

        check_api_bind(settings.admin, warn=False)  # before anything is made or started
    if admin and settings.admin.trigger == "sip-push" and not settings.admin.pap_password:
        import secrets

        pap = replace(settings.admin, pap_password=secrets.token_urlsafe(24))
        settings = replace(settings, admin=pap)
    image = open_image(settings, create=True, demo=demo, iccid=iccid)
    running = RunningLock.take(image.root)
    try:
        return await _start_stack(
            settings, image, running, admin, api, tracer, cards, demo, fleet_port, sms
        )
    except BaseException:
        running.release()
        raise


def _enrol(settings: Settings, admin_stack: AdminStack, image: CardImage) -> AdminAgentApp:
    """Enrols the card of `image` with the admin server; its admin agent."""
    from openscws.ras.provision import AdminEndpoint, ensure_card_admin

    a = settings.admin
    ensure_card_admin(
        admin_stack.service,
        image,
        iccid=image.meta.iccid,
        msisdn=settings.card.msisdn,
        endpoint=AdminEndpoint(a.host, admin_stack.server.port, "localhost", a.uri),
    )
    return admin_agent(image, image, settings.card)


async def _start_stack(
    settings: Settings,
    image: CardImage,
    running: RunningLock,
    admin: bool,
    api: bool,
    tracer: ApduTracer | None,
    cards: int = 1,
    demo: bool = True,
    fleet_port: int = FLEET_PORT_BASE,
    sms: bool = False,
) -> Stack:
    # The card's TLS first: on first use it provisions the key pair, CA and certificate.
    tls = card_tls(settings, image)
    admin_stack: AdminStack | None = None
    agent = None
    if admin:
        sms_port = settings.gateway.sms_port
        if not sms_port:
            raise StoreError("remote administration needs the gateway's SMS entry point on")
        try:
            admin_stack = await start_admin(
                settings, sms_url=f"http://127.0.0.1:{sms_port}/sms", api=api
            )
        except BaseException:
            image.close()
            raise
        try:
            agent = _enrol(settings, admin_stack, image)
        except BaseException:
            await admin_stack.stop()
            raise
    card = card_of(settings, image, agent=agent, tls=tls, gateway_here=True)
    gateway = gateway_for(settings, InProcessLink(card), tracer, sms=admin or sms)
    stack = Stack(settings, image, gateway, admin_stack, tracer, running=running)
    try:
        await gateway.start()
        await gateway.wait_listening()
        for index in range(1, cards):
            await _start_fleet_card(stack, index, demo, fleet_port)
        msisdns = [settings.card.msisdn, *(c.settings.card.msisdn for c in stack.fleet)]
        if cards > 1 and gateway.sms_endpoint is not None:
            gateway.sms_endpoint.set_routes(
                {m: g.deliver_sms for m, g in zip(msisdns, stack.gateways, strict=True)}
            )
        if admin and settings.admin.trigger == "sip-push":
            from openscws.aio.push_embedded import start_embedded_push

            stack.extra["push"] = await start_embedded_push(
                settings,
                [(m, g.deliver_sms) for m, g in zip(msisdns, stack.gateways, strict=True)],
            )
    except BaseException:
        await stack.stop()
        raise
    return stack


async def _start_fleet_card(stack: Stack, index: int, demo: bool, port_base: int) -> None:
    """Card `index + 1`: its image (made on first use), enrolment, card and terminal."""
    settings = fleet_settings(stack.settings, index, stack.image.meta.iccid, port_base)
    image = open_image(settings, create=True, demo=demo, iccid=settings.card.iccid)
    member = FleetCard(settings, image)
    try:
        member.running = RunningLock.take(image.root)
    except BaseException:
        image.close()
        raise
    stack.fleet.append(member)
    tls = card_tls(settings, image)
    agent = _enrol(settings, stack.admin, image) if stack.admin is not None else None
    card = card_of(settings, image, agent=agent, tls=tls, gateway_here=True)
    member.gateway = gateway_for(settings, InProcessLink(card), stack.tracer, sms=False)
    await member.gateway.start()
    await member.gateway.wait_listening()


def under(settings: Settings, data: Path) -> Settings:
    """`settings` with every data directory under `data` (tests, benchmarks)."""
    return replace(
        settings,
        card=replace(settings.card, data_dir=data / "card"),
        ca=replace(settings.ca, dir=data / "ca"),
        admin=replace(settings.admin, data_dir=data / "ras"),
    )
