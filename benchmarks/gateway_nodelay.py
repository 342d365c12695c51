"""`openscws up` with TCP_NODELAY set on the gateway's client sockets: a runtime patch for a
what-if row in benchmarks/run.py (--nodelay-variant); src/ is not touched.

Why: Gateway._bind creates its listening socket as socket.socket(family, SOCK_STREAM), whose
proto is 0, and asyncio.base_events._set_nodelay only sets TCP_NODELAY when
proto == IPPROTO_TCP. With Nagle on, a response written in two pieces (more than one channel
buffer: > 1200 B with the default 1400-byte buffer) waits for the client's delayed ACK, ~40 ms.

    .venv/bin/python benchmarks/gateway_nodelay.py up --data-dir DIR --port-map 3516=PORT ...
"""

from __future__ import annotations

import socket
import sys

from openscws.aio import gateway as _gateway
from openscws.cli import main

_made = _gateway.ClientConnection.connection_made


def _connection_made(self, transport):  # type: ignore[no-untyped-def]
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    _made(self, transport)


_gateway.ClientConnection.connection_made = _connection_made  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
