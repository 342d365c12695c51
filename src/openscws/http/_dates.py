"""HTTP dates (RFC 9110 §5.6.7): IMF-fixdate out, the three historical formats in."""

from __future__ import annotations

import calendar
import time
from email.utils import parsedate_tz

__all__ = ["DateCache", "format_http_date", "parse_http_date"]

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def format_http_date(seconds: float) -> str:
    """IMF-fixdate for unix `seconds`, e.g. "Sun, 06 Nov 1994 08:49:37 GMT"."""
    t = time.gmtime(int(seconds))
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )


def parse_http_date(text: str) -> int | None:
    """Unix seconds of an HTTP-date (IMF-fixdate, RFC 850 or asctime), or None if invalid."""
    try:
        parts = parsedate_tz(text)
    except (ValueError, IndexError, TypeError):
        return None
    if parts is None:
        return None
    try:
        return calendar.timegm((*parts[:6], 0, 0, 0)) - (parts[9] or 0)
    except (ValueError, OverflowError):
        return None


class DateCache:
    """Memo of the Date field value for the current second (one entry)."""

    __slots__ = ("_second", "_value")

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def get(self, now: float) -> bytes:
        second = int(now)
        if second != self._second:
            self._value = format_http_date(second).encode("ascii")
            self._second = second
        return self._value
