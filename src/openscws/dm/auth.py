"""OMA DM 1.2 application-layer authentication (OMA-TS-DM_Security §5.1, DM Protocol §2.4.4):

    syncml:auth-basic   Cred/Data = B64(username ":" password)
    syncml:auth-md5     Cred/Data = B64(H(B64(H(username ":" password)) ":" nonce))
    syncml:auth-MAC     x-syncml-hmac: algorithm=MD5, username="<name>", mac=<mac>
                        mac = B64(H(B64(H(username ":" password)) ":" nonce ":" B64(H(body))))

H is MD5, B64 standard base64 with padding; the nonce is raw bytes (XML carries it base64-
encoded: decode it first), the body the exact bytes sent (XML or WBXML). Sans-IO."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Final

from openscws.errors import DecodeError

__all__ = [
    "AUTH_BASIC",
    "AUTH_MAC",
    "AUTH_MD5",
    "HmacHeader",
    "basic_credential",
    "keyed_digest",
    "md5_credential",
    "message_mac",
    "verify",
]

AUTH_BASIC: Final = "syncml:auth-basic"
AUTH_MD5: Final = "syncml:auth-md5"
AUTH_MAC: Final = "syncml:auth-MAC"
HMAC_HEADER: Final = "x-syncml-hmac"


def _h(data: bytes) -> bytes:
    return hashlib.md5(data, usedforsecurity=False).digest()


def _b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def _secret(username: str, password: str) -> bytes:
    """B64(H(username:password)): the part both digests start from."""
    return _b64(_h(f"{username}:{password}".encode()))


def basic_credential(username: str, password: str) -> str:
    return _b64(f"{username}:{password}".encode()).decode("ascii")


def md5_credential(username: str, password: str, nonce: bytes) -> str:
    return _b64(_h(_secret(username, password) + b":" + nonce)).decode("ascii")


def keyed_digest(username: str, password: str, nonce: bytes, body: bytes) -> bytes:
    """H(B64(H(username:password)) ":" nonce ":" B64(H(body))): the MAC of x-syncml-hmac
    (base64-encoded there) and the digest of Package #0 (raw there)."""
    return _h(_secret(username, password) + b":" + nonce + b":" + _b64(_h(body)))


def message_mac(username: str, password: str, nonce: bytes, body: bytes) -> str:
    return _b64(keyed_digest(username, password, nonce, body)).decode("ascii")


def verify(expected: str, got: str) -> bool:
    """Constant-time comparison of two credentials or MACs."""
    return hmac.compare_digest(expected.encode(), got.encode())


_PARAM = re.compile(r'\s*([A-Za-z]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*(?:,|$)')


@dataclass(frozen=True, slots=True)
class HmacHeader:
    """The x-syncml-hmac transport header (DM Security §5.1.4)."""

    username: str
    mac: str
    algorithm: str = "MD5"

    def value(self) -> str:
        name = self.username.replace("\\", "\\\\").replace('"', '\\"')
        return f'algorithm={self.algorithm}, username="{name}", mac={self.mac}'

    @classmethod
    def parse(cls, value: str) -> HmacHeader:
        params: dict[str, str] = {}
        pos = 0
        text = value.strip()
        while pos < len(text):
            m = _PARAM.match(text, pos)
            if m is None or m.end() == pos:
                raise DecodeError(f"malformed {HMAC_HEADER}: {value!r}")
            name, raw = m.group(1).lower(), m.group(2)
            if raw.startswith('"'):
                raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
            if name in params:
                raise DecodeError(f"{HMAC_HEADER}: {name} given twice")
            params[name] = raw
            pos = m.end()
        if "username" not in params or "mac" not in params:
            raise DecodeError(f"{HMAC_HEADER} needs username and mac: {value!r}")
        algorithm = params.get("algorithm", "MD5")
        if algorithm.upper() != "MD5":
            raise DecodeError(f"{HMAC_HEADER}: algorithm {algorithm!r} (MD5 only)")
        return cls(username=params["username"], mac=params["mac"], algorithm="MD5")

    def check(self, password: str, nonce: bytes, body: bytes) -> bool:
        return verify(message_mac(self.username, password, nonce, body), self.mac)
