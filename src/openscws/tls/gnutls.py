"""TLS_PSK_WITH_3DES_EDE_CBC_SHA through GnuTLS: a small ctypes binding of libgnutls.so.30.

SCWS §11.1.1.1 requires TLS_PSK_WITH_3DES_EDE_CBC_SHA (0x008B) next to
TLS_PSK_WITH_AES_128_CBC_SHA (0x008C). OpenSSL 3 builds without `enable-weak-ssl-ciphers`
(Debian's among them) have no 3DES TLS suite at all, so Python's `ssl` cannot offer it; GnuTLS
3.x still has it (priority keyword ``3DES-CBC``). openscws implements neither TLS nor 3DES
itself: this module only drives GnuTLS, the way `openscws.tls.endpoint` drives OpenSSL.

`GnutlsPskServerHandler` is the card's side of one PSK-TLS connection, with exactly the
`StreamHandler` contract and the behaviour of `openscws.tls.endpoint.TlsServerHandler`
(handshake deadline, record stall timer, `record_limit` on the records the card sends,
`peak_buffer`, `state`, `error` as a `TlsAlert`; no TLS failure is ever raised out, the inner
handler's exceptions propagate). It is sans-IO: GnuTLS reads and writes through transport
callbacks (gnutls_transport_set_push_function / set_pull_function / set_pull_timeout_function)
over two in-memory buffers; the pull callback answers "would block" (-1 with errno EAGAIN, set
with gnutls_transport_set_errno) when its buffer is empty, so gnutls_handshake and
gnutls_record_recv return GNUTLS_E_AGAIN and carry on when more bytes arrive.

Only plain PSK key exchange is enabled (RFC 4279 §2: no certificate, no (EC)DHE), TLS 1.0 to
1.2; `PSK_SPEC_PRIORITY` offers the two spec suites and nothing else. The PSK comes from a
`lookup(identity)` callback (the card's `PskTable.lookup`); an unknown identity gets a decoy
key (`openscws.tls.psk.server_key`), so its handshake fails exactly as a wrong key's does
(RFC 4279 §2), as with OpenSSL.
`GnutlsPskClientHandler` is the same machine on the client side, used to check the stack in
memory (`self_test`, `openscws doctor`) and by the tests.

If libgnutls.so.30 (Debian: libgnutls30) is missing or too old, `available()` says why and the
handlers raise `GnutlsUnavailable`; nothing else in openscws needs GnuTLS.

ctypes notes: every callback is a module-level CFUNCTYPE object (never garbage collected) that
finds its handler through the transport / session pointer (a small integer token in a weak
registry); no callback ever lets a Python exception reach C. Each handler owns one
gnutls_session_t and one credentials object, freed by `close()` (or by a `weakref.finalize`
if the handler is dropped without it)."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import itertools
import logging
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from openscws.errors import OpenScwsError
from openscws.tls.alert import TlsAlert
from openscws.tls.endpoint import MAX_RECORD, TlsRecordStream, TlsState
from openscws.tls.psk import PskKeys

if TYPE_CHECKING:
    from openscws.bip.card import StreamHandler

__all__ = [
    "PSK_3DES_PRIORITY",
    "PSK_AGENT_COMPAT_PRIORITY",
    "PSK_SPEC_PRIORITY",
    "SUITE_PSK_3DES_EDE_CBC_SHA",
    "SUITE_PSK_AES_128_CBC_SHA",
    "GnutlsPskClientHandler",
    "GnutlsPskServerHandler",
    "GnutlsUnavailable",
    "available",
    "priority_suites",
    "psk_priority",
    "self_test",
    "version",
]

logger = logging.getLogger(__name__)

SONAME: Final = "libgnutls.so.30"
MIN_VERSION: Final = "3.6.0"
"""Oldest GnuTLS this binding is written for (the soname 30 ABI, gnutls_transport_set_errno,
gnutls_alert_send_appropriate that skips non-alert errors)."""

SUITE_PSK_3DES_EDE_CBC_SHA: Final = 0x008B
SUITE_PSK_AES_128_CBC_SHA: Final = 0x008C

PSK_SPEC_PRIORITY: Final = (
    "NONE:+VERS-TLS1.2:+VERS-TLS1.1:+VERS-TLS1.0:+PSK:+AES-128-CBC:+3DES-CBC:+SHA1:+COMP-NULL:"
    "+SIGN-ALL:%SERVER_PRECEDENCE"
)
"""The card's GnuTLS priority: plain PSK key exchange only, TLS 1.0-1.2, and exactly the two
SCWS §11.1.1.1 suites (`gnutls-cli --list --priority` shows TLS_PSK_3DES_EDE_CBC_SHA1 0x00,0x8b
and TLS_PSK_AES_128_CBC_SHA1 0x00,0x8c). ``NONE`` resets everything, so no certificate, DHE,
ECDHE, RSA-PSK, TLS 1.3, AEAD or SHA-2 suite can come in. With %SERVER_PRECEDENCE the card
picks 3DES over AES-128 only when the client offers nothing else: a client that offers both
gets AES (OpenSSL serves such a client anyway, see `openscws.tls.dispatch`)."""

PSK_3DES_PRIORITY: Final = (
    "NONE:+VERS-TLS1.2:+VERS-TLS1.1:+VERS-TLS1.0:+PSK:+3DES-CBC:+SHA1:+COMP-NULL:+SIGN-ALL"
)
"""Only TLS_PSK_WITH_3DES_EDE_CBC_SHA: what a 3DES-only client (and `self_test`) offers.
(A GnuTLS client needs signature algorithms enabled to offer TLS 1.2 at all, even for PSK.)"""

PSK_AGENT_COMPAT_PRIORITY: Final = (
    "NONE:+VERS-TLS1.2:+VERS-TLS1.1:+VERS-TLS1.0:+PSK:+AES-128-GCM:+AES-256-GCM:"
    "+CHACHA20-POLY1305:+AES-128-CBC:+3DES-CBC:+AEAD:+SHA256:+SHA1:+COMP-NULL:+SIGN-ALL"
)
"""What the card's admin agent offers in the "compat" profile: plain PSK, TLS 1.0-1.2, the
AEAD suites first, then TLS_PSK_WITH_AES_128_CBC_SHA256, and both SCWS §11.1.1.1 suites
(TLS_PSK_WITH_AES_128_CBC_SHA, TLS_PSK_WITH_3DES_EDE_CBC_SHA), last, so a server that has
better picks better."""

SPEC_SUITE_PRIORITY: Final = {
    "TLS_PSK_WITH_AES_128_CBC_SHA": "+AES-128-CBC",
    "TLS_PSK_WITH_3DES_EDE_CBC_SHA": "+3DES-CBC",
}
"""The SCWS §11.1.1.1 suites by IANA name, and the GnuTLS cipher keyword of each."""


def psk_priority(suites: tuple[str, ...]) -> str:
    """A GnuTLS priority offering exactly `suites` (IANA names, keys of `SPEC_SUITE_PRIORITY`),
    plain PSK, TLS 1.0-1.2. Raises ValueError for any other name."""
    unknown = [s for s in suites if s not in SPEC_SUITE_PRIORITY]
    if unknown or not suites:
        raise ValueError(
            f"PSK suites must be some of {', '.join(SPEC_SUITE_PRIORITY)}, not {unknown or '()'}"
        )
    ciphers = ":".join(SPEC_SUITE_PRIORITY[s] for s in suites)
    return f"NONE:+VERS-TLS1.2:+VERS-TLS1.1:+VERS-TLS1.0:+PSK:{ciphers}:+SHA1:+COMP-NULL:+SIGN-ALL"


# GnuTLS constants (gnutls/gnutls.h).
_SERVER: Final = 1
_CLIENT: Final = 1 << 1
_NONBLOCK: Final = 1 << 3
_CRD_PSK: Final = 4
_SHUT_WR: Final = 1
_AL_WARNING: Final = 1
_A_NO_RENEGOTIATION: Final = 100
_PSK_KEY_RAW: Final = 0
_E_FATAL_ALERT_RECEIVED: Final = -12
_E_WARNING_ALERT_RECEIVED: Final = -16
_E_AGAIN: Final = -28
_E_REHANDSHAKE: Final = -37
_E_INTERRUPTED: Final = -52
_E_REQUESTED_DATA_NOT_AVAILABLE: Final = -56
_E_PREMATURE_TERMINATION: Final = -110
_PROTOCOLS: Final = {2: "TLSv1", 3: "TLSv1.1", 4: "TLSv1.2", 5: "TLSv1.3"}
"""gnutls_protocol_t -> the names `ssl.SSLObject.version()` uses."""

_MIN_RECORD_SIZE_LIMIT: Final = 512
"""Smallest record_size_limit GnuTLS accepts for TLS 1.2 and below (RFC 8449 §4 allows 64
for TLS 1.3)."""

_NON_DATA_LIMIT: Final = 64
"""Non-fatal, non-data results (warning alerts, renegotiation requests) tolerated in one go."""


class GnutlsUnavailable(OpenScwsError):
    """libgnutls.so.30 cannot be used here; the message says why."""


class _Datum(ctypes.Structure):
    _fields_ = (("data", ctypes.c_void_p), ("size", ctypes.c_uint))


_PUSH = ctypes.CFUNCTYPE(ctypes.c_ssize_t, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
_PULL = ctypes.CFUNCTYPE(ctypes.c_ssize_t, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
_PULL_TIMEOUT = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_uint)
_PSK_SERVER = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(_Datum)
)
_ALLOC = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_size_t)

_P = ctypes.c_void_p
_PP = ctypes.POINTER(ctypes.c_void_p)
_INT = ctypes.c_int
_STR = ctypes.c_char_p
_SIGNATURES: Final[dict[str, tuple[object, tuple[object, ...]]]] = {
    # name: (restype, argtypes)
    "gnutls_check_version": (_STR, (_STR,)),
    "gnutls_init": (_INT, (_PP, ctypes.c_uint)),
    "gnutls_deinit": (None, (_P,)),
    "gnutls_psk_allocate_server_credentials": (_INT, (_PP,)),
    "gnutls_psk_free_server_credentials": (None, (_P,)),
    "gnutls_psk_set_server_credentials_function": (None, (_P, _PSK_SERVER)),
    "gnutls_psk_set_server_credentials_hint": (_INT, (_P, _STR)),
    "gnutls_psk_allocate_client_credentials": (_INT, (_PP,)),
    "gnutls_psk_free_client_credentials": (None, (_P,)),
    "gnutls_psk_set_client_credentials": (_INT, (_P, _STR, ctypes.POINTER(_Datum), _INT)),
    "gnutls_credentials_set": (_INT, (_P, _INT, _P)),
    "gnutls_priority_set_direct": (_INT, (_P, _STR, ctypes.POINTER(_STR))),
    "gnutls_priority_init": (_INT, (_PP, _STR, ctypes.POINTER(_STR))),
    "gnutls_priority_deinit": (None, (_P,)),
    "gnutls_priority_get_cipher_suite_index": (
        _INT,
        (_P, ctypes.c_uint, ctypes.POINTER(ctypes.c_uint)),
    ),
    "gnutls_cipher_suite_info": (
        _STR,
        (
            ctypes.c_size_t,
            ctypes.c_char_p,
            ctypes.POINTER(_INT),
            ctypes.POINTER(_INT),
            ctypes.POINTER(_INT),
            ctypes.POINTER(_INT),
        ),
    ),
    "gnutls_transport_set_ptr": (None, (_P, _P)),
    "gnutls_transport_set_push_function": (None, (_P, _PUSH)),
    "gnutls_transport_set_pull_function": (None, (_P, _PULL)),
    "gnutls_transport_set_pull_timeout_function": (None, (_P, _PULL_TIMEOUT)),
    "gnutls_transport_set_errno": (None, (_P, _INT)),
    "gnutls_session_set_ptr": (None, (_P, _P)),
    "gnutls_session_get_ptr": (_P, (_P,)),
    "gnutls_handshake": (_INT, (_P,)),
    "gnutls_handshake_set_timeout": (None, (_P, ctypes.c_uint)),
    "gnutls_record_send": (ctypes.c_ssize_t, (_P, _STR, ctypes.c_size_t)),
    "gnutls_record_recv": (ctypes.c_ssize_t, (_P, _P, ctypes.c_size_t)),
    "gnutls_bye": (_INT, (_P, _INT)),
    "gnutls_strerror": (_STR, (_INT,)),
    "gnutls_strerror_name": (_STR, (_INT,)),
    "gnutls_error_is_fatal": (_INT, (_INT,)),
    "gnutls_error_to_alert": (_INT, (_INT, ctypes.POINTER(_INT))),
    "gnutls_alert_send": (_INT, (_P, _INT, _INT)),
    "gnutls_alert_send_appropriate": (_INT, (_P, _INT)),
    "gnutls_alert_get": (_INT, (_P,)),
    "gnutls_kx_get": (_INT, (_P,)),
    "gnutls_cipher_get": (_INT, (_P,)),
    "gnutls_mac_get": (_INT, (_P,)),
    "gnutls_cipher_suite_get_name": (_STR, (_INT, _INT, _INT)),
    "gnutls_cipher_get_key_size": (ctypes.c_size_t, (_INT,)),
    "gnutls_protocol_get_version": (_INT, (_P,)),
    "gnutls_record_set_max_recv_size": (_INT, (_P, ctypes.c_size_t)),
    "gnutls_record_get_max_size": (ctypes.c_size_t, (_P,)),
}


class _Lib:
    """libgnutls with argument and result types set, plus gnutls_malloc."""

    def __init__(self, cdll: ctypes.CDLL) -> None:
        self.cdll = cdll
        for name, (restype, argtypes) in _SIGNATURES.items():
            try:
                func = getattr(cdll, name)
            except AttributeError as exc:
                raise GnutlsUnavailable(f"{SONAME} has no {name}") from exc
            func.restype = restype
            func.argtypes = argtypes
        found = cdll.gnutls_check_version(MIN_VERSION.encode())
        if not found:
            have = cdll.gnutls_check_version(None)
            shown = have.decode() if isinstance(have, bytes) else "?"
            raise GnutlsUnavailable(f"GnuTLS {shown} is older than {MIN_VERSION}")
        self.version: str = cdll.gnutls_check_version(None).decode()
        # `gnutls_malloc` is a variable holding the allocator GnuTLS frees keys with.
        address = ctypes.c_void_p.in_dll(cdll, "gnutls_malloc").value
        if not address:
            raise GnutlsUnavailable("gnutls_malloc is not set")
        self.malloc = _ALLOC(address)
        self.ciphersuite_get: Callable[..., Any] | None = getattr(
            cdll, "gnutls_ciphersuite_get", None
        )
        if self.ciphersuite_get is not None:
            self.ciphersuite_get.restype = _STR
            self.ciphersuite_get.argtypes = (_P,)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        func: Callable[..., Any] = getattr(self.cdll, name)
        return func


_loaded: list[_Lib | GnutlsUnavailable] = []


def _lib() -> _Lib:
    """The loaded library; raises `GnutlsUnavailable` (tried once, then the same each time)."""
    if not _loaded:
        try:
            _loaded.append(_load())
        except GnutlsUnavailable as exc:
            _loaded.append(exc)
    found = _loaded[0]
    if isinstance(found, GnutlsUnavailable):
        raise found
    return found


def _load() -> _Lib:
    try:
        cdll = ctypes.CDLL(SONAME)
    except OSError:
        name = ctypes.util.find_library("gnutls")
        if name is None:
            raise GnutlsUnavailable(
                f"{SONAME} not found (Debian: apt-get install libgnutls30)"
            ) from None
        try:
            cdll = ctypes.CDLL(name)
        except OSError as exc:
            raise GnutlsUnavailable(f"cannot load {name}: {exc}") from exc
    lib = _Lib(cdll)
    missing = _missing_suite(lib)
    if missing:
        raise GnutlsUnavailable(missing)
    return lib


def _missing_suite(lib: _Lib) -> str | None:
    try:
        codes = _priority_suites(lib, PSK_SPEC_PRIORITY)
    except GnutlsUnavailable as exc:
        return str(exc)
    if SUITE_PSK_3DES_EDE_CBC_SHA not in {code for code, _ in codes}:
        return f"GnuTLS {lib.version} does not enable TLS_PSK_3DES_EDE_CBC_SHA1 here"
    return None


def available() -> str | None:
    """None when GnuTLS can serve TLS_PSK_WITH_3DES_EDE_CBC_SHA here, else the reason."""
    try:
        _lib()
    except GnutlsUnavailable as exc:
        return str(exc)
    return None


def version() -> str | None:
    """The GnuTLS version ("3.7.9"), or None when it cannot be used."""
    try:
        return _lib().version
    except GnutlsUnavailable:
        return None


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else ""


def _error_text(lib: _Lib, code: int) -> str:
    """ "GNUTLS_E_DECRYPTION_FAILED: Decryption has failed." """
    return f"{_text(lib.gnutls_strerror_name(code))}: {_text(lib.gnutls_strerror(code))}"


def _priority_suites(lib: _Lib, priority: str) -> list[tuple[int, str]]:
    cache = ctypes.c_void_p()
    err = ctypes.c_char_p()
    rc = int(lib.gnutls_priority_init(ctypes.byref(cache), priority.encode(), ctypes.byref(err)))
    if rc < 0:
        raise GnutlsUnavailable(f"GnuTLS refuses priority {priority!r}: {_error_text(lib, rc)}")
    out: list[tuple[int, str]] = []
    try:
        for idx in itertools.count():
            sidx = ctypes.c_uint()
            rc = int(lib.gnutls_priority_get_cipher_suite_index(cache, idx, ctypes.byref(sidx)))
            if rc == _E_REQUESTED_DATA_NOT_AVAILABLE:
                break
            if rc < 0:
                continue
            cs_id = ctypes.create_string_buffer(2)
            name = lib.gnutls_cipher_suite_info(sidx.value, cs_id, None, None, None, None)
            if name:
                out.append((int.from_bytes(cs_id.raw[:2]), _text(name)))
    finally:
        lib.gnutls_priority_deinit(cache)
    return out


def priority_suites(priority: str = PSK_SPEC_PRIORITY) -> list[tuple[int, str]]:
    """(IANA code, GnuTLS name) of each TLS suite `priority` enables, in its order (what
    `gnutls-cli --list --priority PRIORITY` prints). Raises `GnutlsUnavailable`."""
    return _priority_suites(_lib(), priority)


# -- callbacks ------------------------------------------------------------------------------

_token = itertools.count(1)
_ENDPOINTS: weakref.WeakValueDictionary[int, _GnutlsEndpoint] = weakref.WeakValueDictionary()


def _endpoint(ptr: int | None) -> _GnutlsEndpoint | None:
    return None if ptr is None else _ENDPOINTS.get(ptr)


def _push(ptr: int | None, data: int | None, size: int) -> int:
    try:
        ep = _endpoint(ptr)
        if ep is None or data is None:
            return -1
        ep._out += ctypes.string_at(data, size)
        return size
    except Exception:
        logger.exception("GnuTLS push callback failed")
        return -1


def _pull(ptr: int | None, data: int | None, size: int) -> int:
    try:
        ep = _endpoint(ptr)
        if ep is None or data is None:
            return -1
        if not ep._incoming:
            if ep._eof:
                return 0
            _lib().gnutls_transport_set_errno(ep._session, errno.EAGAIN)
            return -1
        n = min(size, len(ep._incoming))
        ctypes.memmove(data, bytes(ep._incoming[:n]), n)
        del ep._incoming[:n]
        return n
    except Exception:
        logger.exception("GnuTLS pull callback failed")
        return -1


def _pull_timeout(ptr: int | None, ms: int) -> int:
    """Data waiting: 1; else "would block" (GnuTLS then returns GNUTLS_E_AGAIN)."""
    try:
        ep = _endpoint(ptr)
        if ep is None:
            return -1
        if ep._incoming or ep._eof:
            return 1
        _lib().gnutls_transport_set_errno(ep._session, errno.EAGAIN)
        return -1
    except Exception:
        logger.exception("GnuTLS pull_timeout callback failed")
        return -1


def _psk_server(session: int | None, username: bytes | None, key: ctypes._Pointer[_Datum]) -> int:
    """gnutls_psk_server_credentials_function: 0 with `key` set (allocated with
    gnutls_malloc: GnuTLS frees it); an unknown identity gets its decoy key."""
    try:
        lib = _lib()
        ep = _endpoint(lib.gnutls_session_get_ptr(session))
        if not isinstance(ep, GnutlsPskServerHandler):
            return -1
        try:
            identity = None if username is None else username.decode("utf-8")
        except UnicodeDecodeError:
            identity = None
        secret = ep._psk.key(identity)
        buf = lib.malloc(len(secret))
        if not buf:
            return -1
        ctypes.memmove(buf, secret, len(secret))
        key.contents.data = buf
        key.contents.size = len(secret)
        return 0
    except Exception:
        logger.exception("GnuTLS PSK callback failed")
        return -1


# The C function pointers: module globals, so never garbage collected while GnuTLS holds them.
_PUSH_CB: Final = _PUSH(_push)
_PULL_CB: Final = _PULL(_pull)
_PULL_TIMEOUT_CB: Final = _PULL_TIMEOUT(_pull_timeout)
_PSK_SERVER_CB: Final = _PSK_SERVER(_psk_server)


def _release(lib: _Lib, token: int, session: int, cred: int, free_cred: str) -> None:
    _ENDPOINTS.pop(token, None)
    if session:
        lib.gnutls_deinit(session)
    if cred:
        getattr(lib, free_cred)(cred)


# -- the sans-IO endpoint -------------------------------------------------------------------


class _GnutlsEndpoint(TlsRecordStream):
    """The GnuTLS stack, shared by both sides."""

    _stack = "GnuTLS"

    def __init__(
        self,
        inner: StreamHandler,
        *,
        server_side: bool,
        priority: str,
        handshake_timeout: float,
        record_limit: int | None,
        now: float | None,
    ) -> None:
        super().__init__(
            inner, handshake_timeout=handshake_timeout, record_limit=record_limit, now=now
        )
        lib = _lib()
        self._lib = lib
        self._incoming = bytearray()  # ciphertext from the peer, not yet pulled by GnuTLS
        self._eof = False  # the transport reached EOF
        self._version: str | None = None
        self._cipher: tuple[str, str, int] | None = None
        self._iana_name: str | None = None
        self._buffer: ctypes.Array[ctypes.c_char] | None = None

        self._token = next(_token)
        session = ctypes.c_void_p()
        flags = (_SERVER if server_side else _CLIENT) | _NONBLOCK
        rc = int(lib.gnutls_init(ctypes.byref(session), flags))
        if rc < 0 or not session.value:
            raise GnutlsUnavailable(f"gnutls_init: {_error_text(lib, rc)}")
        self._session: int = session.value
        cred = ctypes.c_void_p()
        alloc = "allocate_server" if server_side else "allocate_client"
        free = f"gnutls_psk_free_{'server' if server_side else 'client'}_credentials"
        rc = int(getattr(lib, f"gnutls_psk_{alloc}_credentials")(ctypes.byref(cred)))
        self._finalizer = weakref.finalize(
            self, _release, lib, self._token, self._session, cred.value or 0, free
        )
        if rc < 0 or not cred.value:
            self._finalizer()
            raise GnutlsUnavailable(f"gnutls_psk_{alloc}_credentials: {_error_text(lib, rc)}")
        self._cred: int = cred.value
        _ENDPOINTS[self._token] = self
        s = self._session
        lib.gnutls_session_set_ptr(s, self._token)
        lib.gnutls_transport_set_ptr(s, self._token)
        lib.gnutls_transport_set_push_function(s, _PUSH_CB)
        lib.gnutls_transport_set_pull_function(s, _PULL_CB)
        lib.gnutls_transport_set_pull_timeout_function(s, _PULL_TIMEOUT_CB)
        lib.gnutls_handshake_set_timeout(s, 0)  # the deadline is ours (get_timer)
        self.asked_record_size: int | None = None
        """RFC 8449 record_size_limit this end announces (GnuTLS sends it when the peer's
        ClientHello has the extension, or in our own ClientHello), from `record_limit`."""
        if record_limit is not None and record_limit >= _MIN_RECORD_SIZE_LIMIT:
            if int(lib.gnutls_record_set_max_recv_size(s, record_limit)) == 0:
                self.asked_record_size = record_limit
        err = ctypes.c_char_p()
        rc = int(lib.gnutls_priority_set_direct(s, priority.encode(), ctypes.byref(err)))
        if rc < 0:
            self._finalizer()
            where = _text(err.value)
            raise GnutlsUnavailable(
                f"GnuTLS refuses priority {priority!r} at {where!r}: {_error_text(lib, rc)}"
            )

    def _set_credentials(self) -> None:
        rc = int(self._lib.gnutls_credentials_set(self._session, _CRD_PSK, self._cred))
        if rc < 0:
            self._finalizer()
            raise GnutlsUnavailable(f"gnutls_credentials_set: {_error_text(self._lib, rc)}")

    # -- the stack's part -------------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        if data:
            self._incoming += data  # GnuTLS pulls it (_pull)
        else:
            self._eof = True

    def _held(self) -> int:
        return len(self._incoming) + len(self._out)

    def _release(self) -> None:
        """Free the GnuTLS session and credentials."""
        self._incoming.clear()
        self._buffer = None
        self._finalizer()

    # -- extras -----------------------------------------------------------------------------

    @property
    def version(self) -> str | None:
        """Negotiated protocol ("TLSv1", "TLSv1.2"), once the handshake is done."""
        return self._version

    @property
    def cipher(self) -> tuple[str, str, int] | None:
        """Negotiated (GnuTLS suite name, protocol, key bits), once the handshake is done:
        ("TLS_PSK_3DES_EDE_CBC_SHA1", "TLSv1", 192) (3DES keys are 192 bits, 168 of them
        key material, 112 bits of strength)."""
        return self._cipher

    @property
    def iana_name(self) -> str | None:
        """The negotiated suite's IANA name ("TLS_PSK_WITH_3DES_EDE_CBC_SHA"), once the
        handshake is done (None with GnuTLS older than 3.7.4)."""
        return self._iana_name

    # -- internals --------------------------------------------------------------------------

    def _fail(self, code: int) -> None:
        lib = self._lib
        reason = _error_text(lib, code)
        before = len(self._out)
        if code == _E_FATAL_ALERT_RECEIVED:
            self.error = TlsAlert(reason, int(lib.gnutls_alert_get(self._session)), received=True)
        else:
            description: int | None = int(lib.gnutls_error_to_alert(code, None))
            lib.gnutls_alert_send_appropriate(self._session, code)
            self._measure()
            self.error = TlsAlert(reason, description if len(self._out) > before else None)
        self._state = TlsState.FAILED
        logger.debug("GnuTLS failed: %s", self.error)

    def _handshake(self) -> None:
        lib = self._lib
        rc = 0
        for _ in range(_NON_DATA_LIMIT):
            rc = int(lib.gnutls_handshake(self._session))
            if rc == 0:
                self._measure()
                self._state = TlsState.OPEN
                self._describe()
                logger.debug("GnuTLS handshake done: %s %s", self._version, self._cipher)
                return
            if rc in (_E_AGAIN, _E_INTERRUPTED):
                self._measure()
                return
            if lib.gnutls_error_is_fatal(rc):
                self._fail(rc)
                return
            # a warning alert or the like: carry on
        self._fail(rc)  # a peer that only sends warnings

    def _describe(self) -> None:
        lib = self._lib
        s = self._session
        proto = _PROTOCOLS.get(int(lib.gnutls_protocol_get_version(s)), "?")
        cipher = int(lib.gnutls_cipher_get(s))
        name = _text(
            lib.gnutls_cipher_suite_get_name(lib.gnutls_kx_get(s), cipher, lib.gnutls_mac_get(s))
        )
        if not name.startswith("TLS_"):  # as gnutls-cli and `gnutls-cli --list` print it
            name = "TLS_" + name
        bits = 8 * int(lib.gnutls_cipher_get_key_size(cipher))
        self._version = proto
        self._cipher = (name, proto, bits)
        if lib.ciphersuite_get is not None:  # GnuTLS >= 3.7.4
            self._iana_name = _text(lib.ciphersuite_get(s)) or None

    def _read(self, now: float) -> None:
        lib = self._lib
        if self._buffer is None:
            self._buffer = ctypes.create_string_buffer(MAX_RECORD)
        buf = self._buffer
        quirks = 0
        while self._state is TlsState.OPEN and not self._peer_done:
            n = int(lib.gnutls_record_recv(self._session, buf, MAX_RECORD))
            if n > 0:
                chunk = buf.raw[:n]
                self._measure(n)
                self._inner.receive_data(chunk, now)
                continue
            if n == 0:  # close_notify
                self._peer_done = True
                self._inner.receive_data(b"", now)
                return
            if n in (_E_AGAIN, _E_INTERRUPTED):
                return
            if n == _E_PREMATURE_TERMINATION:
                # Transport EOF without close_notify; the inner handler still learns of it.
                self._fail(n)
                self._inner.receive_data(b"", now)
                return
            if lib.gnutls_error_is_fatal(n):
                self._fail(n)
                return
            quirks += 1
            if quirks > _NON_DATA_LIMIT:
                self._fail(n)
                return
            if n == _E_REHANDSHAKE:  # the card does not renegotiate (as OP_NO_RENEGOTIATION)
                lib.gnutls_alert_send(self._session, _AL_WARNING, _A_NO_RENEGOTIATION)
                self._measure()

    def _encrypt(self, plain: bytes) -> None:
        """One gnutls_record_send per `record_limit` bytes: one record each."""
        step = self._record_limit or MAX_RECORD
        lib = self._lib
        for at in range(0, len(plain), step):
            piece = plain[at : at + step]
            while piece:
                n = int(lib.gnutls_record_send(self._session, piece, len(piece)))
                if n <= 0:  # the push callback never blocks: any error is fatal here
                    self._fail(n if n < 0 else _E_PREMATURE_TERMINATION)
                    return
                piece = piece[n:]
        self._measure(len(plain))

    def _shutdown(self) -> None:
        rc = int(self._lib.gnutls_bye(self._session, _SHUT_WR))
        if rc < 0:
            logger.debug("GnuTLS bye: %s", _error_text(self._lib, rc))
        self._measure()
        self._state = TlsState.SHUTDOWN


class GnutlsPskServerHandler(_GnutlsEndpoint):
    """The card's side of one PSK-TLS connection through GnuTLS, wrapping `inner`.

    `psk.lookup(identity)` gives the PSK for a client's identity, or None for an unknown one
    (the handshake then fails as with a wrong key, `PskKeys.key`); it must not raise and
    must never log the key. `psk.hint` is sent as the ServerKeyExchange identity hint.
    `priority` is a GnuTLS priority string (default `PSK_SPEC_PRIORITY`). Raises
    `GnutlsUnavailable` when GnuTLS cannot be used."""

    def __init__(
        self,
        psk: PskKeys,
        inner: StreamHandler,
        *,
        priority: str = PSK_SPEC_PRIORITY,
        handshake_timeout: float = 10.0,
        record_limit: int | None = 1024,
        now: float | None = None,
    ) -> None:
        self._psk = psk
        super().__init__(
            inner,
            server_side=True,
            priority=priority,
            handshake_timeout=handshake_timeout,
            record_limit=record_limit,
            now=now,
        )
        lib = self._lib
        lib.gnutls_psk_set_server_credentials_function(self._cred, _PSK_SERVER_CB)
        if psk.hint is not None:
            lib.gnutls_psk_set_server_credentials_hint(self._cred, psk.hint.encode())
        self._set_credentials()


class GnutlsPskClientHandler(_GnutlsEndpoint):
    """The client side, PSK `identity` and `key` (raw bytes); call `start()` and send what it
    returns (the ClientHello). The card's admin agent uses it in the "compat" profile (so it
    can offer TLS_PSK_WITH_3DES_EDE_CBC_SHA), and `self_test` to check the stack."""

    def __init__(
        self,
        identity: str,
        key: bytes,
        inner: StreamHandler,
        *,
        priority: str = PSK_3DES_PRIORITY,
        handshake_timeout: float = 10.0,
        record_limit: int | None = 1024,
        now: float | None = None,
    ) -> None:
        if not key:
            raise ValueError("a PSK must not be empty")
        super().__init__(
            inner,
            server_side=False,
            priority=priority,
            handshake_timeout=handshake_timeout,
            record_limit=record_limit,
            now=now,
        )
        key_buf = ctypes.create_string_buffer(key, len(key))
        datum = _Datum(ctypes.cast(key_buf, ctypes.c_void_p), len(key))
        rc = int(
            self._lib.gnutls_psk_set_client_credentials(
                self._cred, identity.encode(), ctypes.byref(datum), _PSK_KEY_RAW
            )
        )  # GnuTLS copies the identity and key
        if rc < 0:
            self._finalizer()
            raise GnutlsUnavailable(
                f"gnutls_psk_set_client_credentials: {_error_text(self._lib, rc)}"
            )
        self._set_credentials()
        self._started = False

    def start(self, now: float | None = None) -> bytes:
        """Begin the handshake; returns the ClientHello."""
        if now is not None and self._deadline is None:
            self._deadline = now + self._handshake_timeout
        if not self._started and self._state is TlsState.HANDSHAKE:
            self._started = True
            self._handshake()
        return self.data_to_send()


class _Sink:
    """A do-nothing inner handler for `self_test`."""

    received = b""
    should_close = False
    idle = True

    def receive_data(self, data: bytes, now: float) -> None:
        self.received += data

    def data_to_send(self, limit: int | None = None) -> bytes:
        return b""

    def get_timer(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> None:
        pass

    def shutdown(self) -> None:
        pass

    wants_input = True

    def close_after_response(self) -> None:
        pass

    def close(self) -> None:
        pass


def self_test(client_priority: str = PSK_3DES_PRIORITY) -> tuple[str, str]:
    """Run a PSK handshake in memory between a GnuTLS client offering `client_priority` and
    the card's server (`PSK_SPEC_PRIORITY`); returns the server's (suite name, protocol).
    Raises `GnutlsUnavailable`, or `TlsAlert` if the handshake fails."""
    key = bytes(range(16))
    keys = PskKeys(lambda i: key if i == "doctor" else None)
    server = GnutlsPskServerHandler(keys, _Sink(), now=0.0)
    client = GnutlsPskClientHandler("doctor", key, _Sink(), priority=client_priority, now=0.0)
    try:
        server.receive_data(client.start(), 0.0)
        for _ in range(10):
            moved = False
            for src, dst in ((server, client), (client, server)):
                data = src.data_to_send()
                if data:
                    moved = True
                    dst.receive_data(data, 0.0)
            if not moved:
                break
        for side in (server, client):
            if side.error is not None:
                raise side.error
        if server.cipher is None:
            raise TlsAlert("the in-memory GnuTLS handshake did not complete")
        return server.cipher[0], server.cipher[1]
    finally:
        server.close()
        client.close()
