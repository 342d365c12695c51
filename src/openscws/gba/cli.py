"""`openscws gba bootstrap`: the terminal bootstraps with a BSF (GBA_U through the card's GBA
context when the USIM has one, else GBA_ME), prints the B-TID, its key lifetime and which GBA
was used, and with --naf makes one HTTP Digest request on Ua to that NAF. Keys are never
printed. The card: the card image in this process (default), a card behind vpcd (--vpcd: wait
for `openscws card` to connect) or one in a PC/SC reader (--pcsc)."""

from __future__ import annotations

import argparse
import asyncio
import ssl
from pathlib import Path

from openscws.config import Settings

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gba = sub.add_parser(
        "gba",
        help="the terminal's GBA client (3GPP TS 33.220): bootstrap with a BSF, use a NAF",
        description=__doc__,
    )
    acts = gba.add_subparsers(dest="gba_action", required=True, metavar="ACTION")
    boot = acts.add_parser("bootstrap", help="bootstrap; print B-TID, lifetime, GBA type")
    boot.add_argument("--bsf", required=True, metavar="URL", help="the BSF's Ub URL")
    boot.add_argument("--naf", metavar="URL", help="then GET this NAF URL with HTTP Digest")
    boot.add_argument("--impi", help="IMPI (default: from EF_IMSI, TS 23.003 §13.3)")
    boot.add_argument(
        "--gba", choices=("auto", "u", "me"), default="auto", help="GBA_U, GBA_ME or auto"
    )
    boot.add_argument("--ca", type=Path, help="CA certificates (PEM) for HTTPS to BSF and NAF")
    boot.add_argument("-c", "--config", type=Path, help="TOML settings file")
    boot.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    boot.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    boot.add_argument("--data-dir", type=Path, help="card image directory (in-process card)")
    boot.add_argument("--vpcd", metavar="HOST:PORT", help="wait for the card on vpcd here")
    boot.add_argument(
        "--pcsc", metavar="READER", nargs="?", const="", help="the card in a PC/SC reader"
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_bootstrap(args, settings))


async def _bootstrap(args: argparse.Namespace, settings: Settings) -> int:
    from openscws.aio.links import CardLink, InProcessLink, accept_vpcd_card
    from openscws.gba.client import CardAka, GbaClient, GbaMode

    context = ssl.create_default_context(cafile=str(args.ca)) if args.ca else None
    g = settings.gateway
    link: CardLink
    if args.pcsc is not None:
        from openscws.aio.pcsc import open_pcsc_link

        link = await open_pcsc_link(g.pcsc_reader)
    elif args.vpcd:
        print(f"waiting for a card on vpcd {g.vpcd_host}:{g.vpcd_port}", flush=True)
        link = await accept_vpcd_card(g.vpcd_host, g.vpcd_port)
    else:
        from openscws.aio.stack import card_of, open_image

        image = open_image(settings, create=False, demo=False)
        link = InProcessLink(card_of(settings, image, agent=None))
    await link.power_on()
    try:
        modes: dict[str, GbaMode] = {"auto": "auto", "u": "GBA_U", "me": "GBA_ME"}
        client = GbaClient(
            CardAka(link),
            args.bsf,
            impi=args.impi,
            mode=modes[args.gba],
            ssl_context=context,
        )
        boot = await client.bootstrap()
        print(f"B-TID: {boot.btid}")
        print(f"lifetime: {boot.lifetime.strftime('%Y-%m-%dT%H:%M:%SZ')}")
        print(f"GBA: {boot.gba}")
        print(f"IMPI: {client.impi}")
        if args.naf:
            answer = await client.ua_request(args.naf)
            print(f"NAF: {answer.status} ({len(answer.body)} bytes)")
            if answer.status >= 400:
                return 1
    finally:
        await link.close()
    return 0
