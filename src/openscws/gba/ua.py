"""HTTP Digest on Ua (3GPP TS 24.109 §5.2, TS 33.220 §4.5.3), sans-IO: the NAF challenges with
realm "3GPP-bootstrapping@<NAF FQDN>"; the UE answers with username = B-TID and password =
base64(Ks_NAF) (GBA_ME) or base64(Ks_ext_NAF) (GBA_U), qop auth-int over the body.

A NAF that knows only GBA_U keys may say so with the realm prefix "3GPP-bootstrapping-uicc"
(TS 24.109 §5.2.2, as this project reads it); both prefixes are accepted, and the key the UE
uses towards the NAF is the same either way (Ks_ext_NAF equals the GBA_ME Ks_NAF)."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from typing import Final

from openscws.gba.digest import MD5, Challenge, Credentials, check_response, digest_response

__all__ = [
    "REALM_PREFIXES",
    "naf_host_of_realm",
    "ua_challenge",
    "ua_credentials",
    "ua_password",
    "ua_realm",
    "ua_verify",
]

REALM_PREFIXES: Final = ("3GPP-bootstrapping@", "3GPP-bootstrapping-uicc@")


def ua_realm(naf_fqdn: str) -> str:
    return f"{REALM_PREFIXES[0]}{naf_fqdn}"


def naf_host_of_realm(realm: str) -> str | None:
    """The NAF FQDN of a GBA realm; None when the realm does not ask for GBA."""
    for prefix in REALM_PREFIXES:
        if realm.startswith(prefix) and len(realm) > len(prefix):
            return realm[len(prefix) :]
    return None


def ua_password(naf_key: bytes) -> bytes:
    """The Digest password: the NAF key, base64-encoded (TS 33.220 §4.5.3, TS 24.109 §5.2.2)."""
    return base64.b64encode(naf_key)


def ua_challenge(naf_fqdn: str, random: Callable[[int], bytes] = os.urandom) -> Challenge:
    """The NAF's 401 challenge (MD5, qop auth-int, a fresh nonce)."""
    return Challenge(
        realm=ua_realm(naf_fqdn),
        nonce=base64.b64encode(random(24)).decode(),
        algorithm=MD5,
        qop=("auth-int",),
        opaque=random(8).hex(),
    )


def ua_credentials(
    challenge: Challenge,
    *,
    btid: str,
    naf_key: bytes,
    method: str,
    uri: str,
    body: bytes = b"",
    random: Callable[[int], bytes] = os.urandom,
) -> Credentials:
    """The UE's Authorization for `challenge`."""
    qop = "auth-int" if "auth-int" in challenge.qop else ("auth" if challenge.qop else None)
    nc, cnonce = ("00000001", random(8).hex()) if qop else (None, None)
    response = digest_response(
        username=btid,
        realm=challenge.realm,
        password=ua_password(naf_key),
        method=method,
        uri=uri,
        nonce=challenge.nonce,
        qop=qop,
        nc=nc,
        cnonce=cnonce,
        body=body,
    )
    return Credentials(
        username=btid,
        realm=challenge.realm,
        nonce=challenge.nonce,
        uri=uri,
        response=response,
        algorithm=challenge.algorithm,
        qop=qop,
        nc=nc,
        cnonce=cnonce,
        opaque=challenge.opaque,
    )


def ua_verify(credentials: Credentials, *, naf_key: bytes, method: str, body: bytes) -> bool:
    """The NAF's check of the UE's response with the key the BSF gave it on Zn."""
    return check_response(credentials, password=ua_password(naf_key), method=method, body=body)
