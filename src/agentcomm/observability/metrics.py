"""Metrics: a runtime's ``statistics()`` snapshots as OpenTelemetry metrics and Prometheus text.

Off by default and then free: nothing is counted twice and nothing runs in the
background. Export turns the snapshots the runtime already keeps into observable
instruments that read them when a reader collects::

    from opentelemetry.sdk.metrics import MeterProvider
    from agentcomm.observability.metrics import export, serve_prometheus

    async with Runtime(agents=[billing]) as rt:
        export(rt, provider)                             # OpenTelemetry (any reader/exporter)
        endpoint = await serve_prometheus(rt, port=9464)  # GET http://127.0.0.1:9464/metrics

Both need the ``otel`` extra (``opentelemetry``, ``prometheus_client``), imported
only when used. Every metric is listed in ``docs/operations.md`` (the catalogue
is :data:`agentcomm.observability.metric_specs.SPECS`): ``agentcomm.agent.*``
(attribute ``agent``), ``agentcomm.topic.*`` (``topic``),
``agentcomm.subscription.*`` (``subscription``, ``agent``, ``pattern``,
``group``), ``agentcomm.board.*`` (``bucket``), ``agentcomm.pubsub.*``,
``agentcomm.runtime.*`` and ``agentcomm.transport.*``. Prometheus names replace
dots with underscores and end counters with ``_total``
(:mod:`agentcomm.observability.prometheus`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agentcomm.core.errors import ConfigurationError
from agentcomm.observability.metric_specs import SPECS, MetricSpec, View, observe
from agentcomm.observability.prometheus import (
    PrometheusEndpoint,
    prometheus_text,
    serve_prometheus,
)

if TYPE_CHECKING:
    from agentcomm.host.runtime import Runtime

__all__ = ["MetricsExport", "PrometheusEndpoint", "export", "prometheus_text", "serve_prometheus"]


class MetricsExport:
    """The handle :func:`export` returns; :meth:`close` stops reporting.

    Example::

        handle = export(rt, provider); ...; handle.close()
    """

    def __init__(self, rt: Runtime, meter: Any) -> None:
        self.runtime = rt
        self.closed = False
        self.instruments: list[Any] = []
        for spec in SPECS:
            create = getattr(meter, f"create_observable_{spec.kind}")  # counter or gauge
            cb = [self._callback(spec)]
            inst = create(spec.name, callbacks=cb, unit=spec.unit, description=spec.description)
            self.instruments.append(inst)

    def _callback(self, spec: MetricSpec) -> Callable[[Any], list[Any]]:
        from opentelemetry.metrics import Observation

        def callback(_options: Any) -> list[Any]:
            if self.closed:
                return []
            return [Observation(v, attrs) for attrs, v in observe(spec, View(self.runtime))]

        return callback

    def close(self) -> None:
        """Report nothing from now on (OpenTelemetry cannot remove instruments).

        Example::

            handle.close()
        """
        self.closed = True


def export(rt: Runtime, meter_provider: Any = None) -> MetricsExport:
    """Export ``rt``'s statistics as observable OpenTelemetry instruments.

    ``meter_provider`` is any OpenTelemetry ``MeterProvider`` (the global one when
    ``None``); the instruments read the runtime's snapshots only when a reader
    collects, so an idle export costs nothing.

    Example::

        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        reader = InMemoryMetricReader()
        export(rt, MeterProvider(metric_readers=[reader]))
        data = reader.get_metrics_data()
    """
    try:
        from opentelemetry import metrics
    except ImportError as exc:
        raise ConfigurationError(
            "metrics export needs OpenTelemetry: pip install 'agentcomm[otel]'"
        ) from exc
    provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
    from agentcomm.core.version import __version__

    return MetricsExport(rt, provider.get_meter("agentcomm", __version__))
