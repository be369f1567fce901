"""Prometheus text on ``/metrics``: what ``python -m duetime worker --metrics-port`` serves.

OpenTelemetry's Prometheus exporter (``opentelemetry-exporter-prometheus``,
which brings ``prometheus-client``): the metrics are defined once, through the
OpenTelemetry API, and the same instruments feed an OTLP exporter or this
endpoint alike.  prometheus-client's HTTP server runs in a thread of its own,
so it answers scrapes the same way on asyncio and trio, and while the event
loop is busy; its gauge of entries by status asks the worker's loop for a new
count (see ``_status``).  Both packages come with the ``prometheus`` extra
(with the OpenTelemetry SDK).
"""

from __future__ import annotations

from typing import Any

__all__ = ["MetricsServer", "serve_metrics"]


class MetricsServer:
    """A running ``/metrics`` endpoint.

    :ivar meter_provider: the SDK MeterProvider whose metrics it serves
    :ivar host: the address it listens on
    :ivar port: the port it listens on (the one picked, when asked for 0)
    """

    def __init__(self, meter_provider: Any, server: Any, thread: Any) -> None:
        self.meter_provider = meter_provider
        self._server = server
        self._thread = thread
        self.host: str = server.server_address[0]
        self.port: int = server.server_address[1]

    def close(self) -> None:
        """Stop serving, and shut the meter provider down."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5.0)
        self.meter_provider.shutdown()


def serve_metrics(port: int, host: str = "127.0.0.1") -> MetricsServer:
    """Serve Prometheus text on ``http://host:port/metrics`` from a thread, for a
    new SDK MeterProvider (pass its ``meter_provider`` to :func:`instrument`),
    which keeps no exemplars (the text format has no place for them).

    :param port: the TCP port (0: any free one, see :attr:`MetricsServer.port`)
    :param host: the address to bind (loopback unless told otherwise)
    :raises ImportError: the ``prometheus`` extra is not installed
    :raises OSError: the address cannot be bound (in use, not local)
    :raises TypeError: ``port`` is not an int
    :raises ValueError: ``port`` is out of range
    """
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"port must be an int, got {port!r}")
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be in 0..65535, got {port}")
    try:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
        from prometheus_client import CollectorRegistry, start_http_server
    except ImportError as exc:
        raise ImportError(
            "serving /metrics needs the prometheus extra: "
            f"pip install 'duetime[prometheus]' ({exc})"
        ) from exc
    registry = CollectorRegistry()
    reader = PrometheusMetricReader(registry=registry)
    # Prometheus text carries no exemplars: keeping them would be work thrown away.
    provider = MeterProvider(metric_readers=[reader], exemplar_filter=AlwaysOffExemplarFilter())
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except BaseException:
        provider.shutdown()
        raise
    return MetricsServer(provider, server, thread)
