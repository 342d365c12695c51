"""Cache-Control values as the card stores them (RFC 9111 §5.2)."""

from __future__ import annotations

import pytest

from openscws.http.cache import effective_cache_control, normalize_cache_control


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("no-cache", "no-cache"),
        ("Max-Age=3600", "max-age=3600"),
        ("public,max-age=86400 , immutable", "public, max-age=86400, immutable"),
        ('private="Set-Cookie", no-cache', 'private="Set-Cookie", no-cache'),
        ("no-store", "no-store"),
        ("stale-while-revalidate=30, max-age=0", "stale-while-revalidate=30, max-age=0"),
    ],
)
def test_normal_form(given: str, stored: str) -> None:
    assert normalize_cache_control(given) == stored
    assert normalize_cache_control(stored) == stored


@pytest.mark.parametrize(
    ("given", "why"),
    [
        ("", "empty"),
        (" , ", "empty"),
        ("max-age", "number of seconds"),
        ("max-age=-1", "number of seconds"),
        ("max-age=1h", "number of seconds"),
        ("no cache", "token"),
        ("max-age=1, max-age=2", "twice"),
        ("no-store, max-age=60", "contradicts"),
        ('x="unterminated', "token"),
        ("a" * 300, "longer"),
        ("caf\u00e9", "token"),
    ],
)
def test_refused_with_the_reason(given: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        normalize_cache_control(given)


def test_effective_policy_order() -> None:
    assert effective_cache_control("max-age=5", "max-age=60", protected=False) == "max-age=5"
    assert effective_cache_control(None, "max-age=60", protected=True) == "max-age=60"
    assert effective_cache_control(None, None, protected=False) == "no-cache"
    assert effective_cache_control(None, None, protected=True) == "private, no-cache"
