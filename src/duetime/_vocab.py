"""The words the whole package shares: a handle's Status and the series policies.

This module sits at the bottom of the layering and imports nothing from the
package, so the core, the satellites, the pool and the durable stores all take
these names from one place.
"""

from __future__ import annotations

import enum
from typing import Literal

__all__ = ["MISFIRE", "Misfire", "OVERLAP", "Overlap", "Status"]


class Status(enum.StrEnum):
    """Where a handle is in its life.  ``print(status)`` shows the bare name."""

    PENDING = "PENDING"  #: scheduled, not started (or waiting for its next retry attempt)
    RUNNING = "RUNNING"  #: an attempt is running now
    COMPLETED = "COMPLETED"  #: returned a value
    FAILED = "FAILED"  #: raised an exception
    CANCELLED = "CANCELLED"  #: cancelled before or while running
    EXPIRED = "EXPIRED"  #: never started, because its deadline had passed


#: What a recurring series does with the points it missed while it was behind.
Misfire = Literal["coalesce", "skip", "catch_up"]
#: What a recurring series does when a point comes due while a run is still going.
Overlap = Literal["skip", "wait", "allow"]
#: The accepted values of :data:`Misfire`, in order, for checking input at run time.
MISFIRE: tuple[str, ...] = ("coalesce", "skip", "catch_up")
#: The accepted values of :data:`Overlap`, in order, for checking input at run time.
OVERLAP: tuple[str, ...] = ("skip", "wait", "allow")
