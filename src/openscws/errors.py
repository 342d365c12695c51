"""The error tree. Each layer's base carries the code of its own protocol, so a shell can
answer in that protocol's terms (status word, CAT result, HTTP status) without guessing."""

from __future__ import annotations


class OpenScwsError(Exception):
    """Root of every error openscws raises on purpose."""


class DecodeError(OpenScwsError):
    """Bytes that do not parse. Carries the offending bytes and the offset where parsing stopped."""

    def __init__(self, reason: str, data: bytes = b"", offset: int = 0) -> None:
        super().__init__(f"{reason} (offset {offset}, {len(data)} bytes)")
        self.reason = reason
        self.data = data
        self.offset = offset


class ApduError(OpenScwsError):
    """An APDU the card refuses; `sw` is the ISO 7816-4 / TS 102 221 status word to answer."""

    def __init__(self, sw: int, reason: str) -> None:
        super().__init__(f"SW {sw:04X}: {reason}")
        self.sw = sw
        self.reason = reason


class CatError(OpenScwsError):
    """A proactive command the terminal cannot perform: `result` is the TS 102 223 §8.12
    general result and `additional` its additional information bytes."""

    def __init__(self, result: int, additional: bytes = b"", reason: str = "") -> None:
        super().__init__(f"CAT result {result:02X} {additional.hex()}: {reason}".rstrip(": "))
        self.result = result
        self.additional = additional
        self.reason = reason


class BipError(CatError):
    """A Bearer Independent Protocol error: general result 3A with a mandatory cause byte."""

    def __init__(self, cause: int, reason: str = "") -> None:
        super().__init__(0x3A, bytes([cause]), reason)
        self.cause = cause


class HttpError(OpenScwsError):
    """An HTTP request the card's server answers with an error `status`."""

    def __init__(
        self, status: int, reason: str = "", headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        super().__init__(f"HTTP {status}: {reason}")
        self.status = status
        self.reason = reason
        self.headers = headers


class StoreError(OpenScwsError):
    """The card image cannot be read or written."""


class NotFoundError(OpenScwsError):
    """Something asked for by name does not exist (a resource, a card, a campaign). The
    command line answers it with exit status 1; bad input and usage errors are 2."""


class ConfigError(OpenScwsError):
    """A configuration file or option that cannot be used."""


class ListenError(OpenScwsError):
    """A server cannot listen on its address (in use, not allowed, not an address here)."""


class KeyUseDenied(OpenScwsError):
    """A card application asked to use the card's private key without the card's policy
    allowing it (SCWS §11.1.2: only the TLS layer and authorised card applications)."""


class OtaError(OpenScwsError):
    """A secured packet (ETSI TS 102 225, 3GPP TS 31.115) that is refused or cannot be checked:
    `status` is the response status code of TS 102 225 §5.2 (01 RC/CC/DS failed, 02 CNTR low,
    03 CNTR high, 04 CNTR blocked, 05 ciphering error, 06 undefined security error, 09 TAR
    unknown, 0A insufficient security level, ...) that the Proof of Receipt carries."""

    def __init__(self, status: int, reason: str = "") -> None:
        super().__init__(f"PoR status {status:02X}: {reason}".rstrip(": "))
        self.status = status
        self.reason = reason


class AdminProtocolError(HttpError):
    """A remote administration message that cannot be used: the outer GP Amd B "RAM over
    HTTP" exchange or the HTTP message one of its bodies embeds. `status` is the HTTP status to
    answer it with (400 malformed, 413 too large, 415 wrong media type, 431 head too large,
    505 not HTTP/1.x, ...)."""
