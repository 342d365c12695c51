"""The few libssl calls Python's `ssl` does not expose: switching off a server context's
session cache, so that a card keeps no TLS 1.2 session state and resumes nothing; and, per
connection (`tune_connection`), releasing OpenSSL's record buffers when empty, bounding the
records it writes and, on a client, asking the server for small records (RFC 6066).

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
from dataclasses import dataclass
from typing import Final

__all__ = ["MIN_SEND_FRAGMENT", "Tuning", "disable_session_cache", "tune_connection"]

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


# -- per connection: buffers and record sizes (libssl calls `ssl` does not expose) ------------

_CTRL_MODE: Final = 33  # SSL_CTRL_MODE
_MODE_RELEASE_BUFFERS: Final = 0x10  # SSL_MODE_RELEASE_BUFFERS
_CTRL_SET_MAX_SEND_FRAGMENT: Final = 52  # SSL_CTRL_SET_MAX_SEND_FRAGMENT
_MFL_MODES: Final = {512: 1, 1024: 2, 2048: 3, 4096: 4}
"""RFC 6066 §4 MaxFragmentLength values (2^9 .. 2^12) -> OpenSSL's TLSEXT_max_fragment_length_*."""
MIN_SEND_FRAGMENT: Final = 512
"""OpenSSL refuses a max_send_fragment below 512."""


def _with_ssl_calls(lib: ctypes.CDLL | None) -> ctypes.CDLL | None:
    if lib is None:
        return None
    try:
        lib.SSL_ctrl.restype = ctypes.c_long
        lib.SSL_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
        lib.SSL_get_SSL_CTX.restype = ctypes.c_void_p
        lib.SSL_get_SSL_CTX.argtypes = [ctypes.c_void_p]
        lib.SSL_set_tlsext_max_fragment_length.restype = ctypes.c_int
        lib.SSL_set_tlsext_max_fragment_length.argtypes = [ctypes.c_void_p, ctypes.c_uint8]
    except AttributeError:
        return None
    return lib


_SSL_LIB: Final = _with_ssl_calls(_LIB)


def _ctx_address(ctx: ssl.SSLContext) -> int | None:
    if _LIB is None:
        return None
    address = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value
    if not address or _LIB.SSL_CTX_get_options(address) != ctx.options:
        return None
    return int(address)


def _ssl_address(obj: ssl.SSLObject) -> int | None:
    """The `SSL *` of `obj`: CPython's PySSLSocket is the object header, a weak reference to
    the socket (NULL for memory BIOs), then `SSL *ssl` (Modules/_ssl.c). Checked: its
    SSL_CTX must be the context's own."""
    if _SSL_LIB is None:
        return None
    ctx = _ctx_address(obj.context)
    inner = getattr(obj, "_sslobj", None)
    if ctx is None or inner is None:
        return None
    address = ctypes.c_void_p.from_address(
        id(inner) + object.__basicsize__ + ctypes.sizeof(ctypes.c_void_p)
    ).value
    if not address or _SSL_LIB.SSL_get_SSL_CTX(address) != ctx:
        return None
    return int(address)


@dataclass(frozen=True, slots=True)
class Tuning:
    """What `tune_connection` set on one connection."""

    release_buffers: bool = False
    """SSL_MODE_RELEASE_BUFFERS: OpenSSL frees its read and write buffers when they are empty
    instead of keeping about 16.7 KiB each for the connection's life."""
    max_send_fragment: int | None = None
    """Largest plaintext per record OpenSSL writes (its write buffer is sized by it)."""
    max_fragment_length: int | None = None
    """RFC 6066 max_fragment_length asked for in the ClientHello (clients only)."""


def tune_connection(obj: ssl.SSLObject, record_limit: int | None) -> Tuning:
    """Make one connection hold as little as OpenSSL allows: release its record buffers when
    empty; with `record_limit`, write records of at most that much plaintext (so its write
    buffer is that small), and, on a client, ask the server for records that small too (RFC
    6066 max_fragment_length, the largest of 512/1024/2048/4096 not above the limit). Read
    ahead stays off (OpenSSL's default), so OpenSSL reads one record at a time. Returns what
    took; anything unexpected leaves the connection as it was (and says so in the log)."""
    address = _ssl_address(obj)
    if address is None or _SSL_LIB is None:
        log.warning("unexpected SSLObject layout: OpenSSL keeps its default record buffers")
        return Tuning()
    lib = _SSL_LIB
    mode = lib.SSL_ctrl(address, _CTRL_MODE, _MODE_RELEASE_BUFFERS, None)
    released = bool(mode & _MODE_RELEASE_BUFFERS)
    send = None
    mfl = None
    if record_limit is not None and record_limit >= MIN_SEND_FRAGMENT:
        if lib.SSL_ctrl(address, _CTRL_SET_MAX_SEND_FRAGMENT, record_limit, None):
            send = record_limit
        if not obj.server_side:
            fit = max((size for size in _MFL_MODES if size <= record_limit), default=None)
            if fit is not None and lib.SSL_set_tlsext_max_fragment_length(address, _MFL_MODES[fit]):
                mfl = fit
    return Tuning(released, send, mfl)
