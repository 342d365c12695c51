"""`openscws bcast KIND ...`: the terminal's BSP-C on the command line. It sends one
provisioning message to a BSM with the Digest retry, prints the response's statuses, then
listens on UDP for the LTKMs, opens and acknowledges each, and prints the ids of the keys it
got (never the keys). With --expect, the keys the Service Guide names for the items (the
project's stand-in for it): those still missing after --retry-after seconds are asked for once
with an LTKM Request.

The keys come from files, never from the command line: with --ks-naf-file (GBA_ME: the
Ks_NAF for the BSM's NAF_Id, hex) the username is the B-TID, the password the MRK and the LTKM
key the MUK; with --rk-file and --rand ((R-)UIM: the RK, hex) the username is the NAI, the
password the Auth-Key and the LTKM key the TK. With GBA_U the LTKM belongs to the card, which
this command does not drive."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from openscws.bcast.sprov import KeyId, SprovError
from openscws.config import tcp_port
from openscws.errors import ConfigError

__all__ = ["register", "run"]

_KINDS = {
    "service": "SERVICE",
    "renewal": "RENEWAL",
    "unsubscribe": "UNSUBSCRIBE",
    "token-purchase": "TOKEN_PURCHASE",
    "ltkm": "LTKM",
}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "bcast",
        help="the terminal's BSP-C: one provisioning message to a BSM, then its LTKMs",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument("kind", choices=sorted(_KINDS), help="the message to send")
    p.add_argument("--bsm", required=True, help="the BSM's URL, e.g. http://127.0.0.1:8090")
    p.add_argument("--username", required=True, help="the B-TID (GBA) or the NAI ((R-)UIM)")
    keys = p.add_mutually_exclusive_group(required=True)
    keys.add_argument("--ks-naf-file", type=Path, help="GBA_ME: file with Ks_NAF in hex")
    keys.add_argument("--rk-file", type=Path, help="(R-)UIM: file with the RK in hex")
    p.add_argument("--rand", default="", help="(R-)UIM: the TK/Auth-Key random, hex")
    p.add_argument("--item", dest="items", action="append", default=[], help="globalIDRef")
    p.add_argument("--key", dest="keys", action="append", default=[], help="DOMAIN/ID")
    p.add_argument(
        "--expect",
        action="append",
        default=[],
        metavar="DOMAIN/ID",
        help="a SEK/PEK whose LTKM should follow (repeatable): one still missing after "
        "--retry-after seconds is asked for with an LTKM Request; exit 1 if it never comes",
    )
    p.add_argument(
        "--retry-after",
        type=float,
        default=2.0,
        help="seconds before missing --expect LTKMs are requested (2)",
    )
    p.add_argument("--tokens", type=int, help="token purchase: the number of tokens")
    p.add_argument("--request-id", default="1", help="the requestID (1)")
    p.add_argument("--listen", type=tcp_port, default=4359, help="UDP port for LTKMs (4359)")
    p.add_argument("--host", default="0.0.0.0", help="address to listen on for LTKMs")
    p.add_argument("--wait", type=float, default=5.0, help="seconds to wait for LTKMs (5)")
    p.add_argument("-c", "--config", type=Path, help="TOML settings file (unused)")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")


def _hex_file(path: Path, what: str) -> bytes:
    try:
        return bytes.fromhex(path.read_text().strip())
    except ValueError:
        raise ConfigError(f"{path}: {what} is not hex") from None


def run(args: argparse.Namespace) -> int:
    from openscws.bcast.bspc import BspcError
    from openscws.bcast.keys import BcastKeyError
    from openscws.gba.client import GbaError

    try:
        return asyncio.run(_main(args))
    except (ConfigError, BcastKeyError, BspcError, GbaError, SprovError, OSError) as exc:
        print(f"openscws: {exc}", file=sys.stderr)
        return 2


async def _main(args: argparse.Namespace) -> int:
    from openscws.bcast.bspc import BspcExchange, HttpRequest, LtkmReceiver
    from openscws.bcast.keys import mbms_keys_gba_me, rk_keys
    from openscws.bcast.sprov import MessageKind, Request, Response, StatusCode
    from openscws.gba.client import http_request

    if args.ks_naf_file is not None:
        gba = mbms_keys_gba_me(_hex_file(args.ks_naf_file, "Ks_NAF"))
        assert gba.muk is not None
        srk, smk = gba.mrk, gba.muk
    else:
        try:
            rand = bytes.fromhex(args.rand)
        except ValueError:
            raise ConfigError("--rand is not hex") from None
        ruim = rk_keys(_hex_file(args.rk_file, "RK"), rand, args.username)
        srk, smk = ruim.auth_key, ruim.tk
    kind = MessageKind[_KINDS[args.kind]]
    key_ids = _key_ids(args.keys, "--key")
    expected = _key_ids(args.expect, "--expect")
    if not 0 <= args.retry_after <= 3600:
        raise ConfigError("--retry-after is 0..3600 seconds")
    request = Request(kind, args.request_id, tuple(args.items), args.tokens, key_ids)
    request.to_xml()  # the shape checks happen on the BSM; sending needs a body
    receiver = LtkmReceiver(smk, timeout=args.retry_after)
    loop = asyncio.get_running_loop()
    got: asyncio.Queue[str] = asyncio.Queue()

    class Listener(asyncio.DatagramProtocol):
        transport: asyncio.DatagramTransport | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.DatagramTransport)
            self.transport = transport

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            from openscws.bcast.mikey import MikeyError

            try:
                ltkm, ack = receiver.datagram(data, loop.time())
            except MikeyError as exc:
                got.put_nowait(f"refused LTKM from {addr[0]}: {exc.reason}")
                return
            if ack is not None and self.transport is not None:
                self.transport.sendto(ack, addr)
            got.put_nowait(
                f"LTKM {ltkm.key_domain.hex()}/{ltkm.key_id.hex()} counter {ltkm.counter}"
            )

    transport, _ = await loop.create_datagram_endpoint(
        Listener, local_addr=(args.host, args.listen)
    )
    try:

        async def exchange(request: Request) -> Response:
            exchange = BspcExchange(request, args.username, srk)
            http: HttpRequest | Response = exchange.start()
            base = args.bsm.rstrip("/")
            while isinstance(http, HttpRequest):
                answer = await http_request(base + http.path, http.method, http.headers, http.body)
                http = exchange.receive(answer.status, tuple(answer.headers.items()), answer.body)
            print(f"{http.kind.value} {http.request_id}: {http.status.name}")
            for item in http.items:
                what = item.ref if item.key is None else _key_text(item.key)
                print(f"  {what}: {item.status.name}", flush=True)
            return http

        response = await exchange(request)
        receiver.expect(expected, loop.time())
        asked = False
        deadline = loop.time() + args.wait
        while (left := deadline - loop.time()) > 0:
            if not asked and (missing := receiver.missing(loop.time())):
                # TS 33.246 / OMA BCAST: a terminal asks again for the LTKMs it lacks.
                asked = True
                print("missing LTKMs, asking: " + " ".join(map(_key_text, missing)))
                again = Request(MessageKind.LTKM, f"{args.request_id}-ltkm", keys=missing)
                await exchange(again)
                continue
            step = left if asked or not expected else min(left, args.retry_after / 4 + 0.01)
            try:
                print(await asyncio.wait_for(got.get(), step), flush=True)
            except TimeoutError:
                continue
    finally:
        transport.close()
    lacking = [k for k in expected if k not in receiver.keys]
    if lacking:
        print("openscws: no LTKM came for " + " ".join(map(_key_text, lacking)), file=sys.stderr)
        return 1
    return 0 if response.status is StatusCode.SUCCESS else 1


def _key_text(key: KeyId) -> str:
    return f"{key.key_domain.hex()}/{key.key_id.hex()}"


def _key_ids(texts: list[str], option: str) -> tuple[KeyId, ...]:
    """DOMAIN/ID options (3 and 4 bytes in hex, as in EF_MSK) as key ids."""
    out = []
    for text in texts:
        domain, _, key_id = text.partition("/")
        try:
            out.append(KeyId(bytes.fromhex(domain), bytes.fromhex(key_id)))
        except (ValueError, SprovError):
            raise ConfigError(f"{option} {text!r}: DOMAIN/ID in hex (3 and 4 bytes)") from None
    return tuple(out)
