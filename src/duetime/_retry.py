"""Retry: a value object describing how a failed callback is attempted again."""

from __future__ import annotations

import math
import random
import sys
from dataclasses import dataclass

__all__ = ["Retry"]


@dataclass(frozen=True, slots=True)
class Retry:
    """How often, and after which pauses, a failing callback is attempted again.

    The pause before attempt ``n + 1`` (``n`` counting from 1) is
    ``min(backoff * factor ** (n - 1), max_backoff)``, then multiplied by a random
    factor in ``[1 - jitter, 1 + jitter]``.  Each next attempt is put back on the
    scheduler's heap: no task sleeps in between.  The cap is applied before the
    power is evaluated, so any number of attempts is safe (no ``OverflowError``).

    :param attempts: total number of attempts, including the first (>= 1)
    :param backoff: pause in seconds before the second attempt (>= 0)
    :param factor: growth of the pause per attempt (>= 1)
    :param max_backoff: upper bound of the pause, before jitter (>= backoff; the
        default, 30, must be raised along with a ``backoff`` above 30)
    :param jitter: relative random spread of each pause, in ``[0, 1)``
    :param on: exception classes that are retried; any other exception fails the
        handle at once
    :raises ValueError: if a number is out of range
    :raises TypeError: if ``on`` holds something that is not an exception class
    """

    attempts: int = 3
    backoff: float = 0.1
    factor: float = 2.0
    max_backoff: float = 30.0
    jitter: float = 0.1
    on: tuple[type[BaseException], ...] = (Exception,)

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise TypeError(f"attempts must be an int, got {self.attempts!r}")
        if self.attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {self.attempts}")
        for name in ("backoff", "factor", "max_backoff", "jitter"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"{name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"{name} must be finite, got {value}")
        if self.backoff < 0:
            raise ValueError(f"backoff must be >= 0, got {self.backoff}")
        if self.factor < 1:
            raise ValueError(f"factor must be >= 1, got {self.factor}")
        if self.max_backoff < self.backoff:
            # The default cap (30 s) is the usual surprise: Retry(backoff=60) alone
            # fails here, so say which value is the cap and how to lift it.
            raise ValueError(
                f"max_backoff must be >= backoff, got max_backoff={self.max_backoff!r} "
                f"(the default is 30.0) and backoff={self.backoff!r}: pass a "
                f"max_backoff of at least {self.backoff!r} as well"
            )
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter}")
        on = self.on
        if isinstance(on, type):
            on = (on,)
            object.__setattr__(self, "on", on)
        if not on or not all(isinstance(c, type) and issubclass(c, BaseException) for c in on):
            raise TypeError(f"on must be a tuple of exception classes, got {self.on!r}")

    def pause(self, attempt: int) -> float:
        """Return the pause in seconds after failed attempt number ``attempt`` (from 1)."""
        base = self._capped(attempt - 1)
        if self.jitter:
            base *= 1.0 + random.uniform(-self.jitter, self.jitter)
        # A cap near the largest float times (1 + jitter) would be infinite.
        return min(max(base, 0.0), sys.float_info.max)

    def _capped(self, k: int) -> float:
        """``min(backoff * factor ** k, max_backoff)``, without ever overflowing.

        The power is only evaluated below the attempt at which the cap is reached;
        comparing the int ``k`` with that float threshold is exact for any ``k``.
        """
        backoff, factor, cap = self.backoff, self.factor, self.max_backoff
        if k <= 0 or backoff == 0 or factor == 1:
            return min(backoff, cap)
        # backoff * factor ** k >= cap  <=>  k >= log(cap / backoff) / log(factor).
        # Logs of each side, since cap / backoff itself may overflow; the threshold
        # is then finite, so k below it converts to a float safely.
        if k >= (math.log(cap) - math.log(backoff)) / math.log(factor):
            return cap
        try:
            return min(backoff * factor**k, cap)
        except OverflowError:
            # factor ** k alone overflows though the product stays below the cap
            # (a tiny backoff): the same value through logarithms.
            return min(math.exp(math.log(backoff) + k * math.log(factor)), cap)

    def should_retry(self, attempt: int, exc: BaseException) -> bool:
        """Whether failed attempt number ``attempt`` (from 1) with ``exc`` is retried."""
        return attempt < self.attempts and isinstance(exc, self.on)
