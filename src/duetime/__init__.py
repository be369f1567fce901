"""duetime: anyio-native deferred callbacks."""

from __future__ import annotations

__all__: list[str] = []
