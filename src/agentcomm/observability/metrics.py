"""Metrics: a runtime's ``statistics()`` snapshots as OpenTelemetry metrics and Prometheus text.

Off by default and then free: nothing is counted twice and nothing runs in the
background. Export turns the snapshots the runtime already keeps into observable
instruments that read them when a reader collects::

    from opentelemetry.sdk.metrics import MeterProvider
    from agentcomm.observability.metrics import export, serve_prometheus

    async with Runtime(agents=[billing]) as rt:
        export(rt, provider)                             # OpenTelemetry (any reader/exporter)
        endpoint = await serve_prometheus(rt, port=9464)  # GET http://127.0.0.1:9464/metrics

Every metric is listed in ``docs/operations.md``: ``agentcomm.agent.*`` (attribute
``agent``), ``agentcomm.topic.*`` (``topic``), ``agentcomm.subscription.*``
(``subscription``, ``agent``, ``pattern``, ``group``), ``agentcomm.board.*``
(``bucket``), ``agentcomm.pubsub.*``, ``agentcomm.runtime.*`` and
``agentcomm.transport.*``. Prometheus names replace dots with underscores and end
counters with ``_total``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from agentcomm.core.errors import ConfigurationError

if TYPE_CHECKING:
    from agentcomm.blackboard.core import BoardStatistics
    from agentcomm.host.runtime import Runtime, RuntimeStatistics
    from agentcomm.pubsub.metrics import PubSubStatistics

__all__ = ["MetricsExport", "PrometheusEndpoint", "export", "prometheus_text", "serve_prometheus"]

logger = logging.getLogger("agentcomm.metrics")

Attrs = dict[str, str]
Kind = Literal["counter", "gauge"]


class _View:
    """The snapshots one collection reads, each taken once (at first use)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    @functools.cached_property
    def stats(self) -> RuntimeStatistics:
        return self.rt.statistics()

    @functools.cached_property
    def pubsub(self) -> PubSubStatistics | None:
        ps = self.rt._extensions.get("pubsub")  # never create pub/sub just to report on it
        return None if ps is None else ps.statistics()

    @functools.cached_property
    def boards(self) -> list[BoardStatistics]:
        from agentcomm.blackboard.board import Blackboard

        rt = self.rt
        return [
            Blackboard(rt, bucket=core.bucket).statistics()
            for name, core in list(rt._extensions.items())
            if name == "blackboard" or name.startswith("blackboard:")
        ]

    @functools.cached_property
    def transport(self) -> Any:
        stats = getattr(self.rt.transport, "statistics", None)
        return None if stats is None else stats()


Reader = Callable[[_View], Iterable[tuple[Attrs, float]]]


class _Spec(NamedTuple):
    name: str
    kind: Kind
    unit: str
    description: str
    read: Reader


def _agent_field(field: str) -> Reader:
    def read(v: _View) -> Iterator[tuple[Attrs, float]]:
        for a in v.stats.agents:
            yield {"agent": a.name}, getattr(a, field)

    return read


def _topic_field(field: str) -> Reader:
    def read(v: _View) -> Iterator[tuple[Attrs, float]]:
        snap = v.pubsub
        for t in snap.topics if snap else ():
            yield {"topic": t.topic}, getattr(t, field)

    return read


def _sub_field(field: str) -> Reader:
    def read(v: _View) -> Iterator[tuple[Attrs, float]]:
        snap = v.pubsub
        for s in snap.subscriptions if snap else ():
            attrs = {"subscription": s.name, "agent": s.agent, "pattern": s.pattern}
            if s.group is not None:
                attrs["group"] = s.group
            yield attrs, getattr(s, field)

    return read


def _pubsub_field(field: str) -> Reader:
    def read(v: _View) -> Iterator[tuple[Attrs, float]]:
        if v.pubsub is not None:
            yield {}, getattr(v.pubsub, field)

    return read


def _board_field(field: str) -> Reader:
    def read(v: _View) -> Iterator[tuple[Attrs, float]]:
        for stats in v.boards:
            yield {"bucket": stats.bucket}, getattr(stats, field)

    return read


def _transport_field(field: str) -> Reader:
    def read(v: _View) -> Iterator[tuple[Attrs, float]]:
        value = getattr(v.transport, field, None)
        if isinstance(value, bool | int | float):
            yield {"transport": v.rt.transport.name}, float(value)

    return read


def _runtime(field: str) -> Reader:
    def read(v: _View) -> Iterator[tuple[Attrs, float]]:
        value = getattr(v.stats, field)
        if isinstance(value, dict):  # counts by kind
            yield from (({"kind": k}, n) for k, n in sorted(value.items()))
        else:
            yield {}, value

    return read


_MSG = "{message}"
_EVT = "{event}"
SPECS: tuple[_Spec, ...] = (
    _Spec("agentcomm.runtime.failures", "counter", _MSG, "Messages the runtime could not handle.",
          _runtime("failures")),
    _Spec("agentcomm.runtime.rejected_frames", "counter", "{frame}",
          "Frames from the wire or a store refused because they did not decode, by kind.",
          _runtime("rejected_frames")),
    _Spec("agentcomm.runtime.messages_logged", "gauge", _MSG,
          "Envelopes held in the bounded message log.",
          _runtime("messages_logged")),
    *(
        _Spec(f"agentcomm.agent.{f}", "counter", _MSG, d, _agent_field(f))
        for f, d in (
            ("received", "Envelopes delivered to the agent."),
            ("handled", "Messages the agent's handlers finished without error."),
            ("failed", "Handler runs that raised."),
            ("rejected", "Messages refused before a handler ran (validation, access, limits)."),
            ("expired", "Messages whose deadline passed before or while they were handled."),
            ("sent", "Notifications the agent sent."),
            ("requested", "Requests the agent made."),
        )
    ),
    *(
        _Spec(f"agentcomm.agent.{f}", "gauge", _MSG, d, _agent_field(f))
        for f, d in (
            ("queued", "Messages waiting in the agent's mailbox."),
            ("mailbox_size", "Capacity of the agent's mailbox."),
            ("in_flight", "Handler runs in progress."),
        )
    ),
    _Spec("agentcomm.pubsub.published", "counter", _EVT, "Events this runtime published.",
          _pubsub_field("published")),
    *(
        _Spec(f"agentcomm.pubsub.{f}", "gauge", u, d, _pubsub_field(f))
        for f, u, d in (
            ("events_stored", _EVT, "Events retained in the event log (last refresh)."),
            ("bytes_stored", "By", "Bytes retained in the event log (last refresh)."),
            ("dead_letters", _EVT, "Dead letters in the dead-letter queue (last refresh)."),
            ("dead_letters_dropped", _EVT, "Dead letters dropped by the queue's bound."),
        )
    ),
    *(
        _Spec(f"agentcomm.topic.{f}", "counter", _EVT, d, _topic_field(f))
        for f, d in (
            ("published", "Events published on the topic by this runtime."),
            ("unrouted", "Events published while no known subscription matched."),
            ("duplicates", "Publishes dropped as duplicates of a recent message id."),
            ("delivered", "Deliveries of the topic's events to subscribers here."),
            ("acked", "Deliveries acknowledged (handled)."),
            ("retried", "Deliveries retried."),
            ("dead_lettered", "Events moved to the dead-letter queue."),
            ("expired", "Events dropped because their TTL passed."),
            ("timeouts", "Handler runs cancelled by their handler_timeout."),
        )
    ),
    *(
        _Spec(f"agentcomm.topic.{f}", "gauge", "{event}/s", d, _topic_field(f))
        for f, d in (
            ("publish_rate", "Events published per second (last refresh interval)."),
            ("deliver_rate", "Events delivered per second (last refresh interval)."),
        )
    ),
    *(
        _Spec(f"agentcomm.subscription.{f}", "counter", _EVT, d, _sub_field(f))
        for f, d in (
            ("delivered", "Events delivered to the subscription."),
            ("acked", "Events the subscription handled and acknowledged."),
            ("retried", "Deliveries retried."),
            ("dead_lettered", "Events moved to the dead-letter queue."),
            ("expired", "Events dropped because their TTL passed."),
            ("timeouts", "Handler runs cancelled by their handler_timeout."),
            ("restarts", "Restarts after an unexpected failure of the subscription's loop."),
        )
    ),
    *(
        _Spec(f"agentcomm.subscription.{f}", "gauge", u, d, _sub_field(f))
        for f, u, d in (
            ("lag", _EVT, "Matching events not yet delivered (last refresh)."),
            ("in_flight", _EVT, "Events fetched and not yet settled."),
            ("max_in_flight", _EVT, "The subscription's bound on in-flight events."),
            ("running", "{run}", "Handler runs in progress."),
            ("deliver_rate", "{event}/s", "Events delivered per second."),
            ("ack_rate", "{event}/s", "Events acknowledged per second."),
        )
    ),
    *(
        _Spec(f"agentcomm.board.{f}", "counter", "{operation}", d, _board_field(f))
        for f, d in (
            ("reads", "Blackboard reads."),
            ("writes", "Blackboard writes."),
            ("deletes", "Blackboard deletes."),
            ("conflicts", "Refused compare-and-set writes."),
            ("lagged", "Watcher resyncs after falling behind."),
            ("callbacks", "Watch callbacks run."),
            ("callback_failures", "Watch callbacks that raised or could not decode a change."),
            ("rejected", "Stored entries that did not decode (read refused, listings skip)."),
        )
    ),
    *(
        _Spec(f"agentcomm.board.{f}", "gauge", "{watch}", d, _board_field(f))
        for f, d in (
            ("watches", "Open watches."),
            ("subscriptions", "Open change subscriptions."),
        )
    ),
    *(
        _Spec(f"agentcomm.transport.{f}", "counter", "{event}", d, _transport_field(f))
        for f, d in (
            ("reconnects", "Reconnections to the broker."),
            ("disconnects", "Disconnections from the broker."),
            ("malformed", "Inbound messages that were not valid envelopes (dropped)."),
            ("reply_failures", "Responses that could not be sent."),
        )
    ),
    _Spec("agentcomm.transport.connected", "gauge", "1", "1 while connected to the broker.",
          _transport_field("connected")),
)  # fmt: skip


def _observe(spec: _Spec, view: _View) -> list[tuple[Attrs, float]]:
    try:
        return list(spec.read(view))
    except Exception:  # a metric must never break the reader that collects it
        logger.exception("reading metric %s failed", spec.name)
        return []


# -- OpenTelemetry -------------------------------------------------------------------------
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

    def _callback(self, spec: _Spec) -> Callable[[Any], list[Any]]:
        from opentelemetry.metrics import Observation

        def callback(_options: Any) -> list[Any]:
            if self.closed:
                return []
            return [Observation(v, attrs) for attrs, v in _observe(spec, _View(self.runtime))]

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


# -- Prometheus ----------------------------------------------------------------------------
def _prom_name(spec: _Spec) -> str:
    name = spec.name.replace(".", "_")
    return f"{name}_total" if spec.kind == "counter" else name


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def prometheus_text(rt: Runtime) -> str:
    """Every metric of ``rt`` in the Prometheus text exposition format (version 0.0.4).

    Example::

        print(prometheus_text(rt))   # agentcomm_agent_handled_total{agent="calc"} 3
    """
    lines: list[str] = []
    view = _View(rt)
    for spec in SPECS:
        name = _prom_name(spec)
        lines.append(f"# HELP {name} {spec.description}")
        lines.append(f"# TYPE {name} {spec.kind}")
        for attrs, value in _observe(spec, view):
            labels = ",".join(f'{k}="{_label(str(v))}"' for k, v in attrs.items())
            lines.append(
                f"{name}{{{labels}}} {_number(value)}" if labels else f"{name} {_number(value)}"
            )
    return "\n".join(lines) + "\n"


_MAX_REQUEST = 8192
_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _HttpProtocol(asyncio.Protocol):
    """One HTTP/1.x exchange per connection, answered in ``data_received``: no task needed."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if b"\r\n\r\n" not in self.buf and b"\n\n" not in self.buf:
            if len(self.buf) > _MAX_REQUEST:
                self._respond(431, "text/plain", b"request too large\n")
            return
        line = bytes(self.buf.split(b"\n", 1)[0]).decode("latin-1").strip()
        parts = line.split()
        if len(parts) < 2:
            self._respond(400, "text/plain", b"bad request\n")
        elif parts[0] not in ("GET", "HEAD"):
            self._respond(405, "text/plain", b"use GET /metrics\n")
        elif parts[1].split("?", 1)[0] != "/metrics":
            self._respond(404, "text/plain", b"the metrics are at /metrics\n")
        else:
            body = prometheus_text(self.rt).encode()
            self._respond(200, _CONTENT_TYPE, b"" if parts[0] == "HEAD" else body, len(body))

    def _respond(self, status: int, ctype: str, body: bytes, length: int | None = None) -> None:
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
        head = (
            f"HTTP/1.1 {status} {reason.get(status, 'Request Header Fields Too Large')}\r\n"
            f"Content-Type: {ctype}\r\nContent-Length: {len(body) if length is None else length}"
            "\r\nConnection: close\r\n\r\n"
        )
        assert self.transport is not None
        self.transport.write(head.encode() + body)
        self.transport.close()
        self.buf.clear()


class PrometheusEndpoint:
    """A tiny HTTP server answering ``GET /metrics`` for one runtime; see :func:`serve_prometheus`.

    Example::

        endpoint = await serve_prometheus(rt, port=0); print(endpoint.url)
    """

    def __init__(self, rt: Runtime) -> None:
        self.runtime = rt
        self.server: asyncio.Server | None = None
        self.host = ""
        self.port = 0

    @property
    def url(self) -> str:
        """``http://host:port/metrics``."""
        return f"http://{self.host}:{self.port}/metrics"

    async def start(self, host: str, port: int) -> None:
        """Listen on ``host:port`` (0 picks a free port)."""
        loop = asyncio.get_running_loop()
        try:
            self.server = await loop.create_server(lambda: _HttpProtocol(self.runtime), host, port)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot serve metrics on {host}:{port}: {exc}; pick another port"
            ) from exc
        self.host, self.port = self.server.sockets[0].getsockname()[:2]

    async def aclose(self) -> None:
        """Stop listening (the runtime does it at shutdown)."""
        server, self.server = self.server, None
        if server is not None:
            server.close()
            await server.wait_closed()


async def serve_prometheus(
    rt: Runtime, *, host: str = "127.0.0.1", port: int = 9464
) -> PrometheusEndpoint:
    """Serve ``rt``'s metrics at ``http://host:port/metrics`` until the runtime stops.

    One per runtime; it listens on loopback unless told otherwise (the metrics name
    agents and topics). ``port=0`` picks a free port (see ``endpoint.port``).

    Example::

        async with Runtime(agents=[calc]) as rt:
            endpoint = await serve_prometheus(rt, port=0)
            print(endpoint.url)
    """
    if not rt.running:
        raise ConfigurationError(
            "start the runtime first: call serve_prometheus inside `async with`"
        )
    if "prometheus" in rt._extensions:
        raise ConfigurationError("this runtime already serves Prometheus metrics")
    endpoint: PrometheusEndpoint = rt.extension("prometheus", PrometheusEndpoint)
    try:
        await endpoint.start(host, port)
    except BaseException:
        rt._extensions.pop("prometheus", None)
        raise
    return endpoint
