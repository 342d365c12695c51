"""The `openscws` command. Only this module reads argv and configures logging."""

from __future__ import annotations

import argparse
import asyncio
import logging
import logging.config
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path

from openscws import __version__
from openscws.aio.gateway import Gateway, GatewayConfig, GatewayError
from openscws.aio.links import CardLink, InProcessLink, accept_vpcd_card
from openscws.aio.vicc import serve_card
from openscws.config import Settings, load, to_toml
from openscws.errors import ConfigError, StoreError
from openscws.store.cardimage import CardImage
from openscws.terminal.engine import TerminalEngine
from openscws.trace.tracer import ApduTracer

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
        help="run a card and its terminal's BIP gateway in one process (the main job)",
        description="Start a virtual UICC and a BIP gateway in one process, joined in-process by "
        "APDUs. On first run the card image is created with the demo site. Prints the URL.",
    )
    _common(up)
    _card_options(up)
    _gateway_options(up)
    up.add_argument(
        "--no-demo", action="store_true", help="do not install the demo site in a new image"
    )

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

    gw = sub.add_parser(
        "gateway",
        help="run the terminal's BIP gateway alone, waiting for a card over vpcd",
        description="Run the terminal: it listens for a virtual card on the vpcd port, drives it "
        "with TERMINAL PROFILE / FETCH / TERMINAL RESPONSE / ENVELOPE, and serves its ports.",
    )
    _common(gw)
    _gateway_options(gw)
    gw.add_argument(
        "--vpcd", metavar="HOST:PORT", help="where to wait for the card (default 127.0.0.1:35963)"
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
    trace = settings.trace
    if getattr(args, "trace", False):
        trace = replace(trace, enabled=True)
    if getattr(args, "pcap", None):
        trace = replace(trace, pcap=args.pcap)
    return Settings(card=card, gateway=gateway, trace=trace)


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


def _tracer(settings: Settings) -> ApduTracer | None:
    if not settings.trace.enabled and settings.trace.pcap is None:
        return None
    return ApduTracer(sys.stdout if settings.trace.enabled else None, settings.trace.pcap)


def _gateway(settings: Settings, link: CardLink, tracer: ApduTracer | None) -> Gateway:
    g = settings.gateway
    engine = TerminalEngine(max_buffer_size=g.max_buffer_size, poll_interval=g.poll_interval)
    config = GatewayConfig(host=g.host, port_map=dict(g.port_map), busy_timeout=g.busy_timeout)
    return Gateway(link, engine, config, observer=tracer)


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


def _announce(gateway: Gateway, settings: Settings) -> None:
    host = settings.gateway.host
    shown = f"[{host}]" if ":" in host else host
    for port in settings.card.ports:
        print(f"SCWS ready: http://{shown}:{gateway.local_port(port)}/", flush=True)


async def _up(settings: Settings, demo: bool) -> int:
    from openscws.scws.card import build_card

    image = open_image(settings, create=True, demo=demo)
    card = build_card(image, settings.card, image.meta.iccid)
    tracer = _tracer(settings)
    gateway = _gateway(settings, InProcessLink(card), tracer)
    await gateway.start()
    try:
        await gateway.wait_listening()
        _announce(gateway, settings)
        await _run_until_signal(asyncio.ensure_future(gateway.wait()))
    finally:
        await gateway.stop()
        if tracer is not None:
            tracer.close()
    return 0


async def _card(settings: Settings, demo: bool) -> int:
    from openscws.scws.card import build_card

    image = open_image(settings, create=True, demo=demo)
    card = build_card(image, settings.card, image.meta.iccid)
    g = settings.gateway
    print(f"card {image.meta.iccid} connecting to vpcd {g.vpcd_host}:{g.vpcd_port}", flush=True)
    await _run_until_signal(asyncio.create_task(serve_card(card, g.vpcd_host, g.vpcd_port)))
    return 0


async def _gateway_main(settings: Settings) -> int:
    g = settings.gateway
    print(f"waiting for a card on vpcd {g.vpcd_host}:{g.vpcd_port}", flush=True)
    link = await accept_vpcd_card(g.vpcd_host, g.vpcd_port)
    tracer = _tracer(settings)
    gateway = _gateway(settings, link, tracer)
    await gateway.start()
    try:
        await gateway.wait_listening()
        _announce(gateway, settings)
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(-1 if getattr(args, "quiet", False) else getattr(args, "verbose", 0))
    try:
        settings = _settings(args)
        match args.command:
            case "up":
                return asyncio.run(_up(settings, not args.no_demo))
            case "card":
                return asyncio.run(_card(settings, not args.no_demo))
            case "gateway":
                return asyncio.run(_gateway_main(settings))
            case "init":
                image = open_image(settings, create=True, demo=not args.no_demo)
                print(f"card image at {image.root} (ICCID {image.meta.iccid})")
                return 0
            case "content":
                return _content(args, settings)
            case "config":
                print(to_toml(settings))
                return 0
    except (ConfigError, StoreError, GatewayError) as e:
        print(f"openscws: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
