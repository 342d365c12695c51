"""How long an APDU takes on a real card's contacts: the ISO/IEC 7816-3 timing of T=0.

The in-process card answers in microseconds; a UICC in a handset talks over one I/O line at a
rate set by its clock and its Fi/Di parameters. This model turns each exchanged APDU into the
time it would take there, so `--link iso7816` (`openscws.aio.links.TimedLink`) can make page
loads take as long as on a card. All figures come from ISO/IEC 7816-3:2006:

- **etu** (elementary time unit, §7.1): ``etu = F / (D * f)`` seconds, with F the clock rate
  conversion integer, D the baud rate adjustment integer and f the clock frequency. Before
  any speed negotiation F = 372 and D = 1 (Fd, Dd); a handset typically clocks the card at
  3.57 MHz, so one etu is 104.2 µs.
- **a character** (§7.2): a start bit, 8 data bits and a parity bit (10 etu) plus the guard
  time, 2 etu plus the extra guard time N (TC1, §8.3): ``12 + N`` etu between the leading
  edges of two characters sent in the same direction.
- **turning the line round** (§10.2, T=0): the leading edges of two consecutive characters
  sent in opposite directions are at least 16 etu apart: ``max(16, 12 + N)`` etu.
- **Fi and Di** (§8.3, Tables 7 and 8, coded in TA1): Fi in 372, 558, 744, 1116, 1488, 1860,
  512, 768, 1024, 1536, 2048, each with its highest clock f(max); Di in 1, 2, 4, 8, 16, 32,
  64, 12, 20. UICCs commonly offer TA1 = 94, 95, 96 or 97: Fi = 512 with Di = 8, 16, 32, 64.
- **T=0 transport of an APDU** (§12.2, procedure bytes §10.3.3): the terminal sends the
  5-byte header (CLA INS P1 P2 P3). Case 1: the card answers SW1 SW2. Case 2: the card
  sends the procedure byte INS, then the Le data bytes, then SW1 SW2. Case 3: the card sends
  INS, the terminal the Lc data bytes, the card SW1 SW2. Case 4: as case 3, but the card
  answers ``61 xx``; the terminal sends GET RESPONSE (another 5-byte header), the card INS,
  the xx bytes and the final SW1 SW2.

`turnaround` is the card's own processing time per APDU (applet and OS work between the last
command character and the first answer character): not an ISO figure but a property of the
card, an assumption to set from measurements (0 by default).

Nothing here sleeps: `ApduTime` is arithmetic; the shell waits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from openscws.errors import ConfigError

__all__ = [
    "DEFAULT_CLOCK",
    "DI_VALUES",
    "FI_FMAX",
    "ApduTime",
    "LinkTiming",
    "parse_link",
]

DEFAULT_CLOCK: Final = 3.57e6
"""Hz: the clock a handset typically gives a UICC."""
FI_FMAX: Final = {
    # Fi: f(max) in Hz (ISO/IEC 7816-3 §8.3 Table 7; 372 is listed at 4 and at 5 MHz)
    372: 5e6,
    558: 6e6,
    744: 8e6,
    1116: 12e6,
    1488: 16e6,
    1860: 20e6,
    512: 5e6,
    768: 7.5e6,
    1024: 10e6,
    1536: 15e6,
    2048: 20e6,
}
TA1_FI: Final = {
    0x0: 372,
    0x1: 372,
    0x2: 558,
    0x3: 744,
    0x4: 1116,
    0x5: 1488,
    0x6: 1860,
    0x9: 512,
    0xA: 768,
    0xB: 1024,
    0xC: 1536,
    0xD: 2048,
}
"""TA1's high nibble -> Fi (Table 7)."""
TA1_DI: Final = {0x1: 1, 0x2: 2, 0x3: 4, 0x4: 8, 0x5: 16, 0x6: 32, 0x7: 64, 0x8: 12, 0x9: 20}
"""TA1's low nibble -> Di (Table 8)."""
DI_VALUES: Final = frozenset(TA1_DI.values())

CHARACTER_ETU: Final = 12
"""Character frame (10 etu) plus the minimum guard time (2 etu), §7.2."""
REVERSAL_ETU: Final = 16
"""Least interval between characters in opposite directions, §10.2."""
HEADER: Final = 5
"""CLA INS P1 P2 P3."""
SW: Final = 2


@dataclass(frozen=True, slots=True)
class ApduTime:
    """One APDU on the line: characters each way, procedure bytes among the card's, line
    turnarounds, and the seconds it all takes."""

    to_card: int
    from_card: int
    procedure_bytes: int
    reversals: int
    seconds: float


@dataclass(frozen=True, slots=True)
class LinkTiming:
    """A T=0 card link: clock `clock` (Hz), `fi`/`di`, extra guard time `n` (etu) and the
    card's processing time per APDU `turnaround` (seconds)."""

    clock: float = DEFAULT_CLOCK
    fi: int = 372
    di: int = 1
    n: int = 0
    turnaround: float = 0.0

    def __post_init__(self) -> None:
        if self.fi not in FI_FMAX:
            raise ConfigError(
                f"Fi = {self.fi} is not an ISO/IEC 7816-3 value ({', '.join(map(str, FI_FMAX))})"
            )
        if self.di not in DI_VALUES:
            raise ConfigError(
                f"Di = {self.di} is not an ISO/IEC 7816-3 value "
                f"({', '.join(map(str, sorted(DI_VALUES)))})"
            )
        fmax = FI_FMAX[self.fi]
        if not 1e6 <= self.clock <= fmax:
            raise ConfigError(
                f"f = {self.clock / 1e6:g} MHz: with Fi = {self.fi} the clock is 1 to "
                f"{fmax / 1e6:g} MHz (ISO/IEC 7816-3 Table 7)"
            )
        if not 0 <= self.n <= 254:
            raise ConfigError(f"N = {self.n}: the extra guard time is 0 to 254 etu")
        if not 0 <= self.turnaround <= 10:
            raise ConfigError(f"turnaround = {self.turnaround} s: 0 to 10 s")

    @property
    def etu(self) -> float:
        """Seconds per elementary time unit: F / (D * f)."""
        return self.fi / (self.di * self.clock)

    @property
    def character(self) -> float:
        """Seconds between characters in one direction: (12 + N) etu."""
        return (CHARACTER_ETU + self.n) * self.etu

    @property
    def reversal_extra(self) -> float:
        """Seconds a change of direction adds to a character: max(16, 12 + N) - (12 + N) etu."""
        same = CHARACTER_ETU + self.n
        return (max(REVERSAL_ETU, same) - same) * self.etu

    @property
    def bytes_per_second(self) -> float:
        """The raw rate of a stream of characters in one direction."""
        return 1 / self.character

    def exchange(self, command: bytes, response: bytes) -> ApduTime:
        """The time of one command/response pair carried by T=0 (the module's rules).
        `command` as the terminal gives it (short APDU: 4 bytes for case 1, 5 for case 2,
        5 + Lc [+ Le] for cases 3 and 4); `response` is data then SW1 SW2."""
        lc = command[4] if len(command) > 5 else 0
        data_out = len(response) - SW if len(response) >= SW else 0
        to_card = HEADER + lc
        from_card = SW
        procedure = 0
        reversals = 1  # header -> card
        if lc:
            procedure += 1  # INS: "send the data"
            from_card += 1
            reversals += 2  # INS, then the data, then the SW
        if data_out:
            if lc:
                # Case 4: 61 xx, then GET RESPONSE.
                to_card += HEADER
                from_card += SW
                reversals += 2
            procedure += 1  # INS: "here is the data"
            from_card += 1 + data_out
        seconds = (
            (to_card + from_card) * self.character
            + reversals * self.reversal_extra
            + self.turnaround
        )
        return ApduTime(to_card, from_card, procedure, reversals, seconds)

    def describe(self) -> str:
        """One line: the parameters and what they give."""
        return (
            f"ISO/IEC 7816-3 T=0 link: f = {self.clock / 1e6:g} MHz, Fi/Di = {self.fi}/"
            f"{self.di}, etu = {self.etu * 1e6:.2f} us, {self.bytes_per_second:,.0f} bytes/s"
            f"{f', N = {self.n}' if self.n else ''}"
            f"{f', turnaround {self.turnaround * 1e3:g} ms per APDU' if self.turnaround else ''}"
        )


def _number(key: str, text: str, units: dict[str, float]) -> float:
    for suffix, scale in sorted(units.items(), key=lambda u: -len(u[0])):
        if suffix and text.lower().endswith(suffix.lower()):
            text, factor = text[: -len(suffix)], scale
            break
    else:
        factor = units.get("", 1.0)
    try:
        return float(text) * factor
    except ValueError:
        raise ConfigError(f"--link iso7816: {key}={text!r} is not a number") from None


def _integer(key: str, text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise ConfigError(f"--link iso7816: {key}={text!r} is not a whole number") from None


def parse_link(spec: str) -> LinkTiming | None:
    """The link a `--link` / `gateway.link` value names: "direct" (None: no delay) or
    ``iso7816[:key=value,...]`` with keys ``f`` (clock; "3.57MHz", "5e6"), ``F`` and ``D``
    (Fi, Di), ``ta1`` (both from a TA1 byte, "0x96"), ``N`` (extra guard time, etu) and
    ``turnaround`` (per APDU; "2ms", "0.002")."""
    kind, _, params = spec.strip().partition(":")
    if kind in ("direct", ""):
        if params:
            raise ConfigError(f"link {spec!r}: 'direct' takes no parameters")
        return None
    if kind != "iso7816":
        raise ConfigError(f"link {spec!r}: 'direct' or 'iso7816[:f=...,F=...,D=...]'")
    values: dict[str, float | int] = {}
    for item in filter(None, (p.strip() for p in params.split(","))):
        key, eq, text = item.partition("=")
        if not eq:
            raise ConfigError(f"--link iso7816: {item!r} is not key=value")
        match key:
            case "f" | "clock":
                values["clock"] = _number(key, text, {"": 1.0, "hz": 1.0, "khz": 1e3, "mhz": 1e6})
            case "F" | "fi":
                values["fi"] = _integer(key, text)
            case "D" | "di":
                values["di"] = _integer(key, text)
            case "N" | "n":
                values["n"] = _integer(key, text)
            case "ta1":
                ta1 = _integer(key, text)
                if not 0 <= ta1 <= 0xFF or ta1 >> 4 not in TA1_FI or ta1 & 0xF not in TA1_DI:
                    raise ConfigError(f"--link iso7816: ta1={text} codes no Fi/Di (Tables 7, 8)")
                values["fi"], values["di"] = TA1_FI[ta1 >> 4], TA1_DI[ta1 & 0xF]
            case "turnaround":
                values["turnaround"] = _number(key, text, {"": 1.0, "s": 1.0, "ms": 1e-3})
            case _:
                raise ConfigError(
                    f"--link iso7816: unknown key {key!r} (f, F, D, ta1, N, turnaround)"
                )
    return LinkTiming(
        clock=float(values.get("clock", DEFAULT_CLOCK)),
        fi=int(values.get("fi", 372)),
        di=int(values.get("di", 1)),
        n=int(values.get("n", 0)),
        turnaround=float(values.get("turnaround", 0.0)),
    )
