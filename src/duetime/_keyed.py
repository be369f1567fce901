"""Timeouts and PendingReplies: timers and reply deadlines looked up by key."""

from __future__ import annotations

__all__ = ["PendingReplies", "Timeouts"]


class Timeouts:
    pass


class PendingReplies:
    pass
