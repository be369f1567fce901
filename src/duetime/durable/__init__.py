"""Durable deferred callbacks: registered tasks in a store that survives restarts."""

from __future__ import annotations
