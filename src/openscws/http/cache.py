"""Cache policies of the card's resources: the Cache-Control field (RFC 9111 §5.2), checked
once when a policy is stored, and the policy a response carries.

A resource's policy is, in this order: its own (`Resource.cache_control`), the site default
(the card image's value `SITE_CACHE_CONTROL_KEY`), or the built-in default. The built-in
default is ``no-cache``: a cache may keep the page but must ask the card before each reuse,
which the card answers with a cheap 304 thanks to the ETag and Last-Modified it sends
(RFC 9111 §4.3). Protected resources get ``private, no-cache`` by default, so a shared cache
never stores them (RFC 9111 §3.5)."""

from __future__ import annotations

import re
from typing import Final

__all__ = [
    "BUILTIN_CACHE_CONTROL",
    "BUILTIN_PROTECTED_CACHE_CONTROL",
    "MAX_CACHE_CONTROL_BYTES",
    "SITE_CACHE_CONTROL_KEY",
    "effective_cache_control",
    "normalize_cache_control",
]

SITE_CACHE_CONTROL_KEY: Final = "scws.cache-control"
"""The card image value holding the site's default Cache-Control (ASCII)."""
BUILTIN_CACHE_CONTROL: Final = "no-cache"
BUILTIN_PROTECTED_CACHE_CONTROL: Final = "private, no-cache"
MAX_CACHE_CONTROL_BYTES: Final = 256

# RFC 9110 §5.6.2 token, §5.6.4 quoted-string; RFC 9111 §5.2:
# cache-directive = token [ "=" ( token / quoted-string ) ]
_TOKEN: Final = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED: Final = r'"(?:[\t \x21\x23-\x5b\x5d-\x7e]|\\[\t \x21-\x7e])*"'
_DIRECTIVE: Final = re.compile(rf"({_TOKEN})(?:=({_TOKEN}|{_QUOTED}))?")
_DELTA_SECONDS: Final = re.compile(r"[0-9]{1,10}")
_NUMERIC: Final = frozenset({"max-age", "s-maxage", "stale-while-revalidate", "stale-if-error"})


def normalize_cache_control(value: str) -> str:
    """`value` as one Cache-Control field value, directives joined by ", ", names in lower
    case; ValueError naming the fault when it is not one (empty, bad syntax, a delta-seconds
    directive without a number, a directive given twice)."""
    if len(value.encode("utf-8", "replace")) > MAX_CACHE_CONTROL_BYTES:
        raise ValueError(f"Cache-Control longer than {MAX_CACHE_CONTROL_BYTES} bytes")
    parts = [p.strip() for p in value.split(",")]
    if not any(parts):
        raise ValueError("Cache-Control is empty")
    out: list[str] = []
    seen: set[str] = set()
    for part in parts:
        if not part:
            continue
        match = _DIRECTIVE.fullmatch(part)
        if match is None:
            raise ValueError(f"Cache-Control directive {part!r} is not token[=value]")
        name, argument = match.group(1).lower(), match.group(2)
        if name in seen:
            raise ValueError(f"Cache-Control directive {name} given twice")
        seen.add(name)
        if name in _NUMERIC and (argument is None or not _DELTA_SECONDS.fullmatch(argument)):
            raise ValueError(f"Cache-Control {name} needs a number of seconds: {name}=3600")
        out.append(name if argument is None else f"{name}={argument}")
    if "no-store" in seen and seen & {"max-age", "s-maxage", "public", "immutable"}:
        raise ValueError("Cache-Control no-store contradicts a freshness or public directive")
    return ", ".join(out)


def effective_cache_control(own: str | None, site_default: str | None, *, protected: bool) -> str:
    """The Cache-Control a resource's responses carry: its own policy, else the site
    default, else the built-in default (``private, no-cache`` for a protected resource)."""
    if own:
        return own
    if site_default:
        return site_default
    return BUILTIN_PROTECTED_CACHE_CONTROL if protected else BUILTIN_CACHE_CONTROL
