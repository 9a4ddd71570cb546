"""Every option's default and allowed range, written once as data.

An `Interval` (scikit-learn's `Interval` habit) gives the help text, the error message and
the edges a test tries, from the same numbers: `QUALITY.check(101, "quality")` raises a
ValueError "quality must be an integer in [1, 100] (got 101)" (the command line says
--quality), `QUALITY.check("90", "quality")` a TypeError, and `str(QUALITY)` is the text
`--help` shows.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Literal, TypeGuard

from .errors import BalanceValueError, UserError

Closed = Literal["both", "left", "right", "neither"]


@dataclass(frozen=True)
class Interval:
    """Numbers from low to high (None: unbounded), each end closed or open; integer=True
    also requires a whole number. NaN and infinities are never inside."""

    low: float | None = None
    high: float | None = None
    closed: Closed = "both"
    integer: bool = False

    def __contains__(self, value: object) -> bool:
        if not _is_number(value):
            return False
        x = int(value) if isinstance(value, numbers.Integral) else float(value)  # exact ints
        if not math.isfinite(x) or (self.integer and x != int(x)):
            return False
        open_low, open_high = (
            self.closed in ("right", "neither"),
            self.closed in ("left", "neither"),
        )
        if self.low is not None and (x < self.low or (x == self.low and open_low)):
            return False
        return not (self.high is not None and (x > self.high or (x == self.high and open_high)))

    def __str__(self) -> str:
        kind = "an integer" if self.integer else "a number"
        low_closed = self.closed in ("both", "left")
        high_closed = self.closed in ("both", "right")
        if self.low is not None and self.high is not None:
            left, right = "[" if low_closed else "(", "]" if high_closed else ")"
            return f"{kind} in {left}{_num(self.low)}, {_num(self.high)}{right}"
        if self.low is not None:
            return f"{kind} {'>=' if low_closed else '>'} {_num(self.low)}"
        if self.high is not None:
            return f"{kind} {'<=' if high_closed else '<'} {_num(self.high)}"
        return f"{kind} (finite)"

    def check(self, value: object, name: str, error: type[UserError] = BalanceValueError) -> Any:
        """`value` when it lies inside; else `error` (a ValueError) naming the parameter and
        the value, or a TypeError when it is not a number (a bool is not)."""
        if not _is_number(value):
            raise TypeError(f"{name} must be {self}, not {type(value).__name__}")
        if value not in self:
            shown = f"{value:g}" if isinstance(value, float) else repr(value)
            raise error(f"{name} must be {self} (got {shown})", parameters=(name.split()[0],))
        return value

    def edges(self) -> list[tuple[float, bool]]:
        """(value, inside?) just at and just beyond each finite end: what a test tries."""
        found: list[tuple[float, bool]] = []
        step = 1 if self.integer else None
        for end, closed, outward in (
            (self.low, self.closed in ("both", "left"), -1),
            (self.high, self.closed in ("both", "right"), +1),
        ):
            if end is None:
                continue
            beyond = end + outward * step if step else math.nextafter(end, outward * math.inf)
            inward = end - outward * step if step else math.nextafter(end, -outward * math.inf)
            found += [(end, closed), (beyond, False)]
            if not closed:
                found.append((inward, True))
        return found


def _is_number(value: object) -> TypeGuard[numbers.Real]:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _num(x: float) -> str:
    if x == int(x) and abs(x) >= 2**20 and (int(x) + 1) & int(x) == 0:
        return f"2**{int(x).bit_length()}-1"  # 2**63-1, as people write it
    return f"{int(x):,}" if x == int(x) and abs(x) >= 10_000 else f"{x:g}"


# -- the balancer's options ---------------------------------------------------------------
JPEG_QUALITY = 95  # generated copies and re-encoded originals
QUALITY = Interval(1, 100, integer=True)
MAX_IMAGE_MB = 256  # an image whose decoded pixels would take more is skipped unread
IMAGE_MB = Interval(1, 1 << 20, integer=True)


def image_bytes(mb: int | None = None) -> int:
    """The decoded-size limit in bytes for --max-image-mb (None: the default, read now)."""
    return (MAX_IMAGE_MB if mb is None else mb) << 20


SEED = Interval(0, 2**63 - 1, integer=True)
COUNT = Interval(1, 10**9, integer=True)  # --nmin, --per-class NAME=N
WORKERS = Interval(1, None, integer=True)
SPLIT_FRACTION = Interval(0, 1, "left")  # split --test, --val (their sum must stay below 1)
ROWS = Interval(1, 1000, integer=True)  # preview --n
SIDE = Interval(8, 4096, integer=True)  # an image side the trainer or preview resizes to
