"""One libssl call Python's `ssl` does not expose: switching off a server context's session
cache, so that a card keeps no TLS 1.2 session state and resumes nothing.

`ssl.OP_NO_TICKET` stops TLS 1.2 session tickets and `num_tickets = 0` TLS 1.3 ones, but
OpenSSL's server-side session-ID cache (on by default, up to 20,480 sessions) has no switch in
the `ssl` module. `SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF)` is a macro over
`SSL_CTX_ctrl(ctx, SSL_CTRL_SET_SESS_CACHE_MODE, 0, NULL)`; the `SSL_CTX *` is the first field
of CPython's `PySSLContext` (Modules/_ssl.c), right after the object header. The pointer is
cross-checked (`SSL_CTX_get_options` must equal `SSLContext.options`) before it is used, and
anything unexpected leaves the cache as it is and says so (returns False)."""

from __future__ import annotations

import ctypes
import logging
import ssl
import sys
from typing import Final

__all__ = ["disable_session_cache"]

log = logging.getLogger(__name__)

_SET_SESS_CACHE_MODE: Final = 44  # SSL_CTRL_SET_SESS_CACHE_MODE, openssl/ssl.h
_GET_SESS_CACHE_MODE: Final = 45  # SSL_CTRL_GET_SESS_CACHE_MODE
_SESS_CACHE_OFF: Final = 0


def _libssl() -> ctypes.CDLL | None:
    try:
        import _ssl

        lib = ctypes.CDLL(_ssl.__file__)  # dlsym also searches its libssl dependency
    except (ImportError, AttributeError, OSError):
        return None
    try:
        lib.SSL_CTX_get_options.restype = ctypes.c_uint64
        lib.SSL_CTX_get_options.argtypes = [ctypes.c_void_p]
        lib.SSL_CTX_ctrl.restype = ctypes.c_long
        lib.SSL_CTX_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
    except AttributeError:
        return None
    return lib


_LIB: Final = _libssl() if sys.implementation.name == "cpython" else None


def disable_session_cache(ctx: ssl.SSLContext) -> bool:
    """Turn off `ctx`'s session cache; True if it is off afterwards."""
    if _LIB is None:
        log.warning("cannot reach libssl: TLS 1.2 sessions may be resumed")
        return False
    address = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value
    if not address or _LIB.SSL_CTX_get_options(address) != ctx.options:
        log.warning("unexpected SSLContext layout: TLS 1.2 sessions may be resumed")
        return False
    _LIB.SSL_CTX_ctrl(address, _SET_SESS_CACHE_MODE, _SESS_CACHE_OFF, None)
    return bool(_LIB.SSL_CTX_ctrl(address, _GET_SESS_CACHE_MODE, 0, None) == _SESS_CACHE_OFF)
