"""The PSK identity of a TLS 1.2 client, read from its ClientKeyExchange before the TLS stack
sees it (RFC 4279 §2: `opaque psk_identity<0..2^16-1>` is the whole message body of the plain
PSK key exchange), sans-IO.

Why: OpenSSL asks for the key in a synchronous callback. A server whose keys live in a
database learns the identity here first, fetches the key off its event loop, and only then
lets the handshake go on, so the callback finds it in memory.

Only handshake records before the first other record are read (the client's
ChangeCipherSpec ends them); a TLS 1.3 handshake, which carries no ClientKeyExchange, simply
ends with nothing found. The bytes are never changed: the caller feeds the TLS stack the same
data, now or once the key is fetched."""

from __future__ import annotations

from typing import Final

__all__ = ["PskIdentityPeek"]

_HANDSHAKE: Final = 22
_CLIENT_KEY_EXCHANGE: Final = 16
_LIMIT: Final = 64 * 1024
"""Plaintext handshake bytes read at most: a client's first two flights fit many times."""


class PskIdentityPeek:
    """Feed it the client's bytes as they come; `feed` returns the identity once (when the
    ClientKeyExchange is complete), else None. `done` is set once nothing more will come."""

    def __init__(self) -> None:
        self.done = False
        self._records = bytearray()
        self._messages = bytearray()
        self._seen = 0

    def feed(self, data: bytes) -> str | None:
        if self.done:
            return None
        self._seen += len(data)
        if self._seen > _LIMIT:
            self._stop()
            return None
        self._records += data
        records = self._records
        while len(records) >= 5:
            length = int.from_bytes(records[3:5], "big")
            if len(records) < 5 + length:
                break
            kind = records[0]
            fragment = bytes(records[5 : 5 + length])
            del records[: 5 + length]
            if kind != _HANDSHAKE:
                self._stop()
                return None
            self._messages += fragment
            found = self._message()
            if found is not None or self.done:
                return found
        return None

    def _message(self) -> str | None:
        messages = self._messages
        while len(messages) >= 4:
            length = int.from_bytes(messages[1:4], "big")
            if len(messages) < 4 + length:
                return None
            kind = messages[0]
            body = bytes(messages[4 : 4 + length])
            del messages[: 4 + length]
            if kind == _CLIENT_KEY_EXCHANGE:
                self._stop()
                return _identity(body)
        return None

    def _stop(self) -> None:
        self.done = True
        self._records.clear()
        self._messages.clear()


def _identity(body: bytes) -> str | None:
    if len(body) < 2:
        return None
    size = int.from_bytes(body[:2], "big")
    raw = body[2 : 2 + size]
    if len(raw) != size or b"\0" in raw:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
