"""Bounds that stand in for the card's RAM, and the byte budget the connections share."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CardLimits", "RamBudget"]


@dataclass(frozen=True, slots=True)
class CardLimits:
    """Per-card bounds on what one HTTP connection may make the card hold."""

    max_request_target: int = 2048
    """Longest request-target in bytes; a longer one is answered 414 URI Too Long."""
    max_header_bytes: int = 8192
    """Longest request head (request line and header fields, also chunked trailers) in bytes;
    a larger one is answered 431 Request Header Fields Too Large and the connection closed."""
    max_body: int = 64 * 1024
    """Largest request body in bytes, checked against Content-Length before any of it is read,
    and against the running total of a chunked body; over it the answer is 413 Content Too
    Large and the connection is closed."""
    ram_budget: int = 256 * 1024
    """Bytes of request bodies all connections of one card may buffer at once (the size of the
    shared `RamBudget`); when it is exhausted the answer is 503 with Retry-After."""
    retry_after: int = 5
    """Seconds put in the Retry-After header of a 503 sent when the RAM budget is exhausted."""
    max_pipeline_bytes: int = 16 * 1024
    """Unprocessed pipelined input buffered while a streamed response is still being sent; once
    more arrives, the connection is closed after that response."""
    idle_timeout: float = 30.0
    """Seconds a persistent connection may sit idle between requests before it is closed."""
    request_timeout: float = 10.0
    """Seconds a started request may stall (no new bytes) before 408 Request Timeout is sent
    and the connection closed."""

    def __post_init__(self) -> None:
        for name in ("max_request_target", "max_header_bytes", "max_body", "ram_budget"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        for name in ("max_pipeline_bytes", "retry_after"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        for name in ("idle_timeout", "request_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")


class RamBudget:
    """Bytes of card RAM for buffered request bodies, shared by every connection of one card.

    A connection reserves bytes before it buffers them and releases them when the request is
    done (or the connection dropped). Not thread-safe: the card runs one event loop."""

    __slots__ = ("_total", "_used")

    def __init__(self, total: int) -> None:
        if total < 0:
            raise ValueError("budget must not be negative")
        self._total = total
        self._used = 0

    @classmethod
    def for_limits(cls, limits: CardLimits) -> RamBudget:
        """A budget of `limits.ram_budget` bytes."""
        return cls(limits.ram_budget)

    @property
    def total(self) -> int:
        return self._total

    @property
    def used(self) -> int:
        return self._used

    @property
    def available(self) -> int:
        return self._total - self._used

    def reserve(self, n: int) -> bool:
        """Take `n` bytes if that many are free; False (taking nothing) otherwise."""
        if n < 0:
            raise ValueError("cannot reserve a negative amount")
        if self._used + n > self._total:
            return False
        self._used += n
        return True

    def release(self, n: int) -> None:
        """Give back `n` bytes taken earlier with `reserve`."""
        if n < 0 or n > self._used:
            raise ValueError(f"release of {n} bytes but only {self._used} are reserved")
        self._used -= n

    def __repr__(self) -> str:
        return f"RamBudget(used={self._used}, total={self._total})"
