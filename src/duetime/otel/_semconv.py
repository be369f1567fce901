"""The names duetime's telemetry uses: OpenTelemetry's messaging semantic
conventions, and duetime's own under ``messaging.duetime.*`` and ``duetime.*``.

duetime follows the current messaging conventions from its first instrumented
version, so it has no older experimental set to keep emitting by default.
``OTEL_SEMCONV_STABILITY_OPT_IN`` is honoured all the same: with
``messaging/dup`` in it, spans also carry the pre-1.25 attribute
``messaging.operation`` (``publish``, ``create``, ``deliver``) that
dashboards built on older instrumentations (Celery's, taskiq's) query;
``messaging`` alone, or nothing, emits the current names only.
"""

from __future__ import annotations

import os

__all__ = [
    "ATTEMPT",
    "BATCH_COUNT",
    "DELIVERIES",
    "DESTINATION",
    "DURATION_BUCKETS",
    "ERROR_TYPE",
    "LATENESS",
    "LATENESS_BUCKETS",
    "MESSAGE_ID",
    "OCCURRENCE",
    "OLD_OPERATION",
    "OPERATION_NAME",
    "OPERATION_TYPE",
    "OUTCOME",
    "STATUS",
    "SYSTEM",
    "SYSTEM_NAME",
    "emit_old",
]

#: ``messaging.system``: duetime is the messaging system (its stores are the broker).
SYSTEM_NAME = "duetime"

SYSTEM = "messaging.system"
OPERATION_TYPE = "messaging.operation.type"
OPERATION_NAME = "messaging.operation.name"
DESTINATION = "messaging.destination.name"
MESSAGE_ID = "messaging.message.id"
BATCH_COUNT = "messaging.batch.message_count"
ERROR_TYPE = "error.type"
#: The pre-1.25 name of the operation (only with ``messaging/dup``).
OLD_OPERATION = "messaging.operation"

# duetime's own, in the messaging.{system} namespace the conventions reserve.
ATTEMPT = "messaging.duetime.attempt"
DELIVERIES = "messaging.duetime.deliveries"
LATENESS = "messaging.duetime.lateness"
OCCURRENCE = "messaging.duetime.occurrence"
OUTCOME = "messaging.duetime.outcome"
#: The status attribute of the entries-by-status gauge.
STATUS = "duetime.entry.status"

#: ``messaging.process.duration``'s buckets, as the conventions advise.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
#: Lateness (due to start): from a millisecond to ten minutes.
LATENESS_BUCKETS = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600,
)  # fmt: skip


def emit_old(value: str | None = None) -> bool:
    """Whether ``OTEL_SEMCONV_STABILITY_OPT_IN`` (or ``value``) asks for the old
    messaging attributes beside the current ones (``messaging/dup``)."""
    if value is None:
        value = os.environ.get("OTEL_SEMCONV_STABILITY_OPT_IN", "")
    return "messaging/dup" in {part.strip() for part in value.split(",")}
