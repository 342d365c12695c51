"""The card link's third join (docs/architecture.md, "card link"): a card in a PC/SC reader, through
pcsc-lite (the library every pcscd client uses). A real UICC in a USB reader, or openscws's
own card behind pcscd's vpcd driver (`openscws card --vpcd 127.0.0.1:35963`), is driven by the
same gateway with the same APDU bytes as in-process.

This is ctypes over libpcsclite.so.1, not pyscard: pyscard ships no Linux wheels (it builds
with swig and the pcsc-lite headers), while the library comes with pcscd itself (Debian's
libpcsclite1). The types are pcsc-lite's on Linux, where DWORD and LONG are C longs; Windows'
winscard and macOS's PCSC framework are not covered.

The terminal holds the card exclusively (SCARD_SHARE_EXCLUSIVE): another program's APDUs
between a FETCH and its TERMINAL RESPONSE would break the card's toolkit session. Every call
into the library runs on one thread of its own, in order, so the event loop never blocks on
the reader."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final

from openscws.aio.links import CardGone
from openscws.errors import OpenScwsError

__all__ = ["PcscCard", "PcscError", "PcscLink", "list_readers", "open_pcsc_link"]

log = logging.getLogger(__name__)

SCARD_S_SUCCESS: Final = 0
SCARD_SCOPE_SYSTEM: Final = 2
SCARD_SHARE_EXCLUSIVE: Final = 1
SCARD_PROTOCOL_T0: Final = 1
SCARD_PROTOCOL_T1: Final = 2
SCARD_LEAVE_CARD: Final = 0
SCARD_RESET_CARD: Final = 1
SCARD_UNPOWER_CARD: Final = 2
MAX_ATR_SIZE: Final = 33
MAX_READERNAME: Final = 128
RECEIVE_BUFFER: Final = 4 + 3 + 65536 + 3 + 2  # pcsc-lite's MAX_BUFFER_SIZE_EXTENDED

# pcsc-lite's error codes (PCSC/pcsclite.h) that change what the terminal does.
SCARD_E_TIMEOUT: Final = 0x8010000A
SCARD_E_SHARING_VIOLATION: Final = 0x8010000B
SCARD_E_NO_SMARTCARD: Final = 0x8010000C
SCARD_E_UNKNOWN_READER: Final = 0x80100009
SCARD_E_READER_UNAVAILABLE: Final = 0x80100017
SCARD_E_NO_SERVICE: Final = 0x8010001D
SCARD_E_NO_READERS_AVAILABLE: Final = 0x8010002E
SCARD_W_UNRESPONSIVE_CARD: Final = 0x80100066
SCARD_W_UNPOWERED_CARD: Final = 0x80100067
SCARD_W_REMOVED_CARD: Final = 0x80100069
NO_CARD_YET: Final = frozenset(
    {
        SCARD_E_NO_SMARTCARD,
        SCARD_W_REMOVED_CARD,
        SCARD_E_NO_READERS_AVAILABLE,
        SCARD_E_READER_UNAVAILABLE,
        SCARD_E_UNKNOWN_READER,
        SCARD_W_UNPOWERED_CARD,
        SCARD_W_UNRESPONSIVE_CARD,
    }
)
"""Errors that mean "no usable card in the reader now": worth waiting for one."""

_NAMES: Final = {
    SCARD_E_TIMEOUT: "SCARD_E_TIMEOUT",
    SCARD_E_SHARING_VIOLATION: "SCARD_E_SHARING_VIOLATION",
    SCARD_E_NO_SMARTCARD: "SCARD_E_NO_SMARTCARD",
    SCARD_E_UNKNOWN_READER: "SCARD_E_UNKNOWN_READER",
    SCARD_E_READER_UNAVAILABLE: "SCARD_E_READER_UNAVAILABLE",
    SCARD_E_NO_SERVICE: "SCARD_E_NO_SERVICE",
    SCARD_E_NO_READERS_AVAILABLE: "SCARD_E_NO_READERS_AVAILABLE",
    SCARD_W_UNRESPONSIVE_CARD: "SCARD_W_UNRESPONSIVE_CARD",
    SCARD_W_UNPOWERED_CARD: "SCARD_W_UNPOWERED_CARD",
    SCARD_W_REMOVED_CARD: "SCARD_W_REMOVED_CARD",
}
_HINTS: Final = {
    SCARD_E_NO_SERVICE: "is pcscd running? (Debian package pcscd)",
    SCARD_E_SHARING_VIOLATION: "another program holds the card; close it (e.g. pcsc_scan)",
}


class PcscError(OpenScwsError):
    """A PC/SC call failed; `code` is its SCARD_* value."""

    def __init__(self, call: str, code: int, text: str) -> None:
        self.call = call
        self.code = code
        name = _NAMES.get(code, f"0x{code:08X}")
        hint = _HINTS.get(code)
        super().__init__(f"{call}: {text} ({name})" + (f": {hint}" if hint else ""))


class _IoRequest(ctypes.Structure):
    """SCARD_IO_REQUEST: the protocol control information of SCardTransmit."""

    _fields_ = (("dwProtocol", ctypes.c_ulong), ("cbPciLength", ctypes.c_ulong))


_DWORD = ctypes.c_ulong
_LONG = ctypes.c_long
_PDWORD = ctypes.POINTER(_DWORD)
_PCONTEXT = ctypes.POINTER(_LONG)


class _Library:
    """libpcsclite's functions, typed."""

    def __init__(self) -> None:
        name = ctypes.util.find_library("pcsclite") or "libpcsclite.so.1"
        try:
            lib = ctypes.CDLL(name)
        except OSError as exc:
            raise PcscError("load libpcsclite", 0, f"{exc} (Debian package libpcsclite1)") from None
        self.lib = lib
        lib.SCardEstablishContext.argtypes = (
            _DWORD,
            ctypes.c_void_p,
            ctypes.c_void_p,
            _PCONTEXT,
        )
        lib.SCardReleaseContext.argtypes = (_LONG,)
        lib.SCardListReaders.argtypes = (_LONG, ctypes.c_char_p, ctypes.c_char_p, _PDWORD)
        lib.SCardConnect.argtypes = (
            _LONG,
            ctypes.c_char_p,
            _DWORD,
            _DWORD,
            _PCONTEXT,
            _PDWORD,
        )
        lib.SCardReconnect.argtypes = (_LONG, _DWORD, _DWORD, _DWORD, _PDWORD)
        lib.SCardDisconnect.argtypes = (_LONG, _DWORD)
        lib.SCardStatus.argtypes = (
            _LONG,
            ctypes.c_char_p,
            _PDWORD,
            _PDWORD,
            _PDWORD,
            ctypes.c_char_p,
            _PDWORD,
        )
        lib.SCardTransmit.argtypes = (
            _LONG,
            ctypes.POINTER(_IoRequest),
            ctypes.c_char_p,
            _DWORD,
            ctypes.c_void_p,
            ctypes.c_char_p,
            _PDWORD,
        )
        for fn in (
            "SCardEstablishContext",
            "SCardReleaseContext",
            "SCardListReaders",
            "SCardConnect",
            "SCardReconnect",
            "SCardDisconnect",
            "SCardStatus",
            "SCardTransmit",
        ):
            getattr(lib, fn).restype = _LONG
        lib.pcsc_stringify_error.argtypes = (_LONG,)
        lib.pcsc_stringify_error.restype = ctypes.c_char_p

    def check(self, call: str, rv: int) -> None:
        code = rv & 0xFFFFFFFF
        if code != SCARD_S_SUCCESS:
            text = self.lib.pcsc_stringify_error(rv) or b"?"
            raise PcscError(call, code, text.decode(errors="replace"))

    def establish(self) -> int:
        context = _LONG()
        self.check(
            "SCardEstablishContext",
            self.lib.SCardEstablishContext(SCARD_SCOPE_SYSTEM, None, None, ctypes.byref(context)),
        )
        return context.value

    def release(self, context: int) -> None:
        self.lib.SCardReleaseContext(context)

    def readers(self, context: int) -> list[str]:
        size = _DWORD()
        rv = self.lib.SCardListReaders(context, None, None, ctypes.byref(size))
        if rv & 0xFFFFFFFF == SCARD_E_NO_READERS_AVAILABLE:
            return []
        self.check("SCardListReaders", rv)
        buffer = ctypes.create_string_buffer(size.value)
        rv = self.lib.SCardListReaders(context, None, buffer, ctypes.byref(size))
        if rv & 0xFFFFFFFF == SCARD_E_NO_READERS_AVAILABLE:
            return []
        self.check("SCardListReaders", rv)
        # A multi-string: names separated by NUL, ended by two.
        return [n.decode(errors="replace") for n in buffer.raw[: size.value].split(b"\0") if n]


_library: _Library | None = None


def _lib() -> _Library:
    global _library
    if _library is None:
        _library = _Library()
    return _library


def list_readers() -> list[str]:
    """The reader names pcscd knows now (empty when none)."""
    lib = _lib()
    context = lib.establish()
    try:
        return lib.readers(context)
    finally:
        lib.release(context)


@dataclass
class PcscCard:
    """One card held exclusively through PC/SC. Blocking: call from one thread at a time."""

    reader: str
    _context: int
    _handle: int
    _protocol: int

    @classmethod
    def connect(cls, reader_hint: str = "") -> PcscCard:
        """The card in the first reader whose name contains `reader_hint` (any reader when
        empty) and has a card. Raises PcscError; `NO_CARD_YET` codes mean "try again later"."""
        lib = _lib()
        context = lib.establish()
        try:
            names = lib.readers(context)
            wanted = [n for n in names if reader_hint.lower() in n.lower()]
            if not wanted:
                listed = ", ".join(repr(n) for n in names) or "none"
                raise PcscError(
                    "SCardListReaders",
                    SCARD_E_UNKNOWN_READER if names else SCARD_E_NO_READERS_AVAILABLE,
                    f"no reader matches {reader_hint!r} (readers: {listed})"
                    if reader_hint
                    else "no reader",
                )
            failures: list[PcscError] = []
            for name in wanted:
                handle, protocol = _LONG(), _DWORD()
                rv = lib.lib.SCardConnect(
                    context,
                    name.encode(),
                    SCARD_SHARE_EXCLUSIVE,
                    SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1,
                    ctypes.byref(handle),
                    ctypes.byref(protocol),
                )
                try:
                    lib.check(f"SCardConnect({name!r})", rv)
                except PcscError as exc:
                    failures.append(exc)
                    continue
                return cls(name, context, handle.value, protocol.value)
            # The telling failure: a card held by another program beats an empty reader.
            raise min(failures, key=lambda e: e.code in NO_CARD_YET)
        except BaseException:
            lib.release(context)
            raise

    @property
    def protocol(self) -> str:
        return "T=1" if self._protocol == SCARD_PROTOCOL_T1 else "T=0"

    def reset(self) -> bytes:
        """Warm-resets the card (the terminal's power-on: a fresh toolkit session) and
        returns its ATR."""
        lib = _lib()
        protocol = _DWORD()
        lib.check(
            "SCardReconnect",
            lib.lib.SCardReconnect(
                self._handle,
                SCARD_SHARE_EXCLUSIVE,
                SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1,
                SCARD_RESET_CARD,
                ctypes.byref(protocol),
            ),
        )
        self._protocol = protocol.value
        return self.atr()

    def atr(self) -> bytes:
        lib = _lib()
        name = ctypes.create_string_buffer(MAX_READERNAME)
        name_len = _DWORD(MAX_READERNAME)
        state, protocol = _DWORD(), _DWORD()
        atr = ctypes.create_string_buffer(MAX_ATR_SIZE)
        atr_len = _DWORD(MAX_ATR_SIZE)
        lib.check(
            "SCardStatus",
            lib.lib.SCardStatus(
                self._handle,
                name,
                ctypes.byref(name_len),
                ctypes.byref(state),
                ctypes.byref(protocol),
                atr,
                ctypes.byref(atr_len),
            ),
        )
        return atr.raw[: atr_len.value]

    def transmit(self, apdu: bytes) -> bytes:
        lib = _lib()
        pci = _IoRequest(self._protocol, ctypes.sizeof(_IoRequest))
        out = ctypes.create_string_buffer(RECEIVE_BUFFER)
        out_len = _DWORD(RECEIVE_BUFFER)
        lib.check(
            "SCardTransmit",
            lib.lib.SCardTransmit(
                self._handle,
                ctypes.byref(pci),
                apdu,
                len(apdu),
                None,
                out,
                ctypes.byref(out_len),
            ),
        )
        return out.raw[: out_len.value]

    def close(self, disposition: int = SCARD_UNPOWER_CARD) -> None:
        lib = _lib()
        try:
            lib.lib.SCardDisconnect(self._handle, disposition)
        finally:
            lib.release(self._context)


def wait_for_card(
    reader_hint: str,
    *,
    timeout: float | None = None,
    interval: float = 0.25,
    said: Callable[[str], None] = log.info,
) -> PcscCard:
    """`PcscCard.connect`, retried while the reader is absent or empty (not for other
    errors: pcscd not running, the card held by another program)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    told = False
    while True:
        try:
            return PcscCard.connect(reader_hint)
        except PcscError as exc:
            if exc.code not in NO_CARD_YET:
                raise
            if deadline is not None and time.monotonic() >= deadline:
                raise
            if not told:
                said(f"waiting for a card in a PC/SC reader ({exc})")
                told = True
        time.sleep(interval)


class PcscLink:
    """`CardLink` over a `PcscCard`; a failed exchange is `CardGone` (the card pulled,
    pcscd stopped), on which the gateway shuts down."""

    immediate = False

    def __init__(self, card: PcscCard) -> None:
        self.card = card
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="pcsc")

    async def _call[T](self, fn: Callable[..., T], *args: object) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)
        except PcscError as exc:
            raise CardGone(f"PC/SC reader {self.card.reader!r}: {exc}") from exc

    async def power_on(self) -> bytes:
        return await self._call(self.card.reset)

    async def transmit(self, apdu: bytes) -> bytes:
        return await self._call(self.card.transmit, apdu)

    def transmit_now(self, apdu: bytes) -> bytes | None:
        return None

    async def close(self) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(self._thread, self.card.close)
        except PcscError as exc:
            log.debug("PC/SC disconnect: %s", exc)
        finally:
            self._thread.shutdown(wait=False)


async def open_pcsc_link(reader_hint: str = "", *, timeout: float | None = None) -> PcscLink:
    """Waits (on a thread) for a card in a matching reader, and holds it."""
    card = await asyncio.to_thread(wait_for_card, reader_hint, timeout=timeout)
    log.info("PC/SC: card in %r (%s)", card.reader, card.protocol)
    return PcscLink(card)
