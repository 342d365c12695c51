"""Baseline: the standard library's `http.server` (ThreadingHTTPServer +
SimpleHTTPRequestHandler, HTTP/1.1 so connections persist) serving a directory.

    .venv/bin/python benchmarks/baseline_server.py --root DIR [--port 0]

Prints "BASELINE ready: http://127.0.0.1:PORT/"; per-request logging is off, as in the other
servers measured, and TCP_NODELAY is on (`disable_nagle_algorithm`); `--nagle` keeps the stock
behaviour.
"""

from __future__ import annotations

import argparse
import functools
import signal
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class Handler(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # The stock handler sends the head and the body in two writes with Nagle on, and the
    # client's delayed ACK then holds the body ~40 ms: 23 req/s per connection, a timer, not
    # a speed. TCP_NODELAY (what asyncio transports set) makes it a fair baseline.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:
        pass


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="http.server baseline")
    p.add_argument("--root", type=Path, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--nagle", action="store_true", help="leave Nagle on (the stock handler)")
    args = p.parse_args(argv)
    if args.nagle:
        Handler.disable_nagle_algorithm = False
    handler = functools.partial(Handler, directory=str(args.root))
    server = ThreadingHTTPServer((args.host, args.port), handler)
    server.daemon_threads = True

    def stop(signum: int, frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"BASELINE ready: http://{args.host}:{server.server_address[1]}/", flush=True)
    server.serve_forever()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
