"""Tracing with OpenTelemetry: one trace follows a request through every agent.

Off by default (zero cost). Turn it on per runtime::

    from agentcomm.observability.tracing import TraceRecorder
    recorder = TraceRecorder()                      # keeps recent spans in memory
    async with Runtime(agents=[...], tracing=recorder.provider) as rt: ...
    print(recorder.format_tree(recorder.trace_ids()[-1]))

or pass any OpenTelemetry ``TracerProvider`` (one exporting over OTLP to Jaeger,
Tempo, ...), or ``tracing=True`` for the global provider. The W3C ``traceparent``
travels in every envelope, on every transport, so one trace spans processes.

Span names and attributes follow OpenTelemetry's messaging conventions (the full
table, for every pattern, is in ``docs/tracing.md``):
``"send <agent>"`` (kind PRODUCER, a notification), ``"request <agent>"`` (CLIENT),
``"process <agent>"`` (SERVER/CONSUMER, a handler run), ``"publish <topic>"`` and
``"process <topic>"`` (pub/sub, one per attempt, with ``retry``/``dead_letter``
events), ``"write <key>"`` and ``"process <prefix>"`` (blackboard writes and
subscription callbacks), ``"call <tool>"`` (MCP, context in ``_meta``), with attributes
``messaging.system = "agentcomm"``, ``messaging.operation.type``,
``messaging.destination.name``, ``messaging.message.id``,
``messaging.message.conversation_id`` (the correlation id),
``messaging.message.body.size`` and ``agentcomm.*`` extras (sender, handler,
causation id).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import Span

    from agentcomm.core.envelope import Envelope

__all__ = ["TraceRecorder", "Tracing"]

SYSTEM = "agentcomm"


class Tracing:
    """A runtime's tracer: starts spans and carries W3C trace context in envelopes.

    Built by the runtime from its ``tracing=`` argument; you rarely make one.

    Example::

        tracing = Tracing(provider)
        with tracing.span("request", "calc", kind="client") as traceparent: ...
    """

    def __init__(self, provider: Any = None) -> None:
        try:
            from opentelemetry import context as otel_context
            from opentelemetry import trace
            from opentelemetry.trace.propagation.tracecontext import (
                TraceContextTextMapPropagator,
            )
        except ImportError as exc:  # pragma: no cover - depends on the install
            from agentcomm.core.errors import ConfigurationError

            raise ConfigurationError(
                "tracing needs OpenTelemetry: pip install 'agentcomm[otel]'"
            ) from exc
        from agentcomm.core.version import __version__

        if provider is None or provider is True:
            provider = trace.get_tracer_provider()
        self._trace = trace
        self._context = otel_context
        self._propagator = TraceContextTextMapPropagator()
        self.tracer = provider.get_tracer("agentcomm", __version__)
        self._kinds = {
            "client": trace.SpanKind.CLIENT,
            "server": trace.SpanKind.SERVER,
            "producer": trace.SpanKind.PRODUCER,
            "consumer": trace.SpanKind.CONSUMER,
            "internal": trace.SpanKind.INTERNAL,
        }

    def current_traceparent(self) -> tuple[str | None, str | None]:
        """The ``traceparent``/``tracestate`` of the current span (``None`` without one).

        Example::

            tp, ts = tracing.current_traceparent()
        """
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier)
        return carrier.get("traceparent"), carrier.get("tracestate")

    @contextmanager
    def span(
        self,
        operation: str,
        destination: str,
        *,
        kind: str,
        parent: Envelope | str | None = None,
        attributes: dict[str, Any] | None = None,
    ) -> Iterator[Span]:
        """Start a span named ``"<operation> <destination>"`` and make it current.

        With ``parent`` an envelope, the span continues the trace it carries (or, if
        it carries none, is a child of the current span). With ``parent`` a W3C
        ``traceparent`` string (a blackboard entry's, an MCP request's), it continues
        that trace, and ``""`` starts a new one. Otherwise it is a child of the
        current span.

        Example::

            with tracing.span("process", "calc", kind="server", parent=env) as span: ...
        """
        ctx = None
        if isinstance(parent, str):  # continue it, or start a new trace ("" or invalid)
            ctx = self._propagator.extract(
                {"traceparent": parent} if parent else {}, context=self._context.Context()
            )
        elif parent is not None:
            if parent.traceparent:
                carrier = {"traceparent": parent.traceparent}
                if parent.tracestate:
                    carrier["tracestate"] = parent.tracestate
            else:
                carrier = {}
            if carrier:
                ctx = self._propagator.extract(carrier)
        attrs: dict[str, Any] = {
            "messaging.system": SYSTEM,
            "messaging.operation.type": operation,
            "messaging.destination.name": destination,
        }
        if attributes:
            attrs.update({k: v for k, v in attributes.items() if v is not None})
        with self.tracer.start_as_current_span(
            f"{operation} {destination}",
            context=ctx,
            kind=self._kinds[kind],
            attributes=attrs,
            record_exception=True,
            set_status_on_exception=True,
        ) as span:
            yield span

    def describe_current(self, env: Envelope) -> None:
        """Set the messaging attributes of ``env`` on the current span.

        Example::

            tracing.describe_current(env)
        """
        attrs = {k: v for k, v in self.message_attributes(env).items() if v is not None}
        self._trace.get_current_span().set_attributes(attrs)

    def message_attributes(self, env: Envelope) -> dict[str, Any]:
        """OpenTelemetry messaging attributes describing an envelope.

        Example::

            span.set_attributes(tracing.message_attributes(env))
        """
        return {
            "messaging.message.id": env.id,
            "messaging.message.conversation_id": env.correlation_id,
            "messaging.message.body.size": len(env.payload),
            "agentcomm.sender": env.sender,
            "agentcomm.handler": env.handler,
            "agentcomm.causation_id": env.causation_id,
            "agentcomm.kind": env.kind,
            "agentcomm.sequence": env.sequence,
            "agentcomm.key": env.key,
        }

    def event(self, name: str, attributes: dict[str, Any]) -> None:
        """Add an event (a timestamped note: a retry, a dead letter) to the current span.

        Example::

            tracing.event("retry", {"agentcomm.retry.delay": 0.5})
        """
        self._trace.get_current_span().add_event(
            name, {k: v for k, v in attributes.items() if v is not None}
        )

    def record_failure(self, code: str, exc_type: str, message: str) -> None:
        """Mark the current span as failed (a handler error, a refusal, a timeout).

        Example::

            tracing.record_failure("error", "KeyError", "no customer c-9")
        """
        from opentelemetry.trace import Status, StatusCode

        span = self._trace.get_current_span()
        span.set_attribute("error.type", exc_type)
        span.set_attribute("agentcomm.error.code", code)
        span.set_status(Status(StatusCode.ERROR, f"{exc_type}: {message}"))


class TraceRecorder:
    """Keeps the most recent spans in bounded memory; no collector needed.

    ``provider`` is an OpenTelemetry SDK ``TracerProvider`` feeding this recorder
    (and, when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set and the OTLP exporter is
    installed, an OTLP exporter too). Pass it as ``Runtime(tracing=recorder.provider)``.

    Example::

        recorder = TraceRecorder(max_spans=10_000)
        async with Runtime(agents=[...], tracing=recorder.provider) as rt: ...
        for trace_id in recorder.trace_ids():
            print(recorder.format_tree(trace_id))
    """

    def __init__(self, max_spans: int = 10_000, *, otlp: bool | None = None) -> None:
        try:
            from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
        except ImportError as exc:
            from agentcomm.core.errors import ConfigurationError

            raise ConfigurationError(
                "recording traces needs OpenTelemetry: pip install 'agentcomm[otel]'"
            ) from exc

        spans: deque[ReadableSpan] = deque(maxlen=max_spans)
        self._spans = spans

        class _Keep(SpanProcessor):
            def on_end(self, span: ReadableSpan) -> None:
                spans.append(span)

        self.provider = TracerProvider()
        self.provider.add_span_processor(_Keep())
        if otlp or (otlp is None and os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")):
            self._add_otlp()

    def _add_otlp(self) -> None:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found,unused-ignore]
                OTLPSpanExporter,
            )
        except ImportError as exc:
            from agentcomm.core.errors import ConfigurationError

            raise ConfigurationError(
                "OTLP export needs: pip install opentelemetry-exporter-otlp-proto-http"
            ) from exc
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))

    def spans(self, trace_id: int | None = None) -> list[ReadableSpan]:
        """Recorded spans, oldest first (only those of ``trace_id`` if given).

        Example::

            names = [s.name for s in recorder.spans()]
        """
        return [
            s
            for s in self._spans
            if trace_id is None or (s.context is not None and s.context.trace_id == trace_id)
        ]

    def trace_ids(self) -> list[int]:
        """Ids of the recorded traces, in the order their first span ended.

        Example::

            last = recorder.trace_ids()[-1]
        """
        seen: dict[int, None] = {}
        for s in self._spans:
            if s.context is not None:
                seen.setdefault(s.context.trace_id, None)
        return list(seen)

    def format_tree(self, trace_id: int) -> str:
        """The spans of one trace as an indented tree with durations.

        Example::

            print(recorder.format_tree(trace_id))
        """
        spans = self.spans(trace_id)
        by_id = {s.context.span_id: s for s in spans if s.context is not None}
        children: dict[int | None, list[ReadableSpan]] = {}
        for s in spans:
            parent = s.parent.span_id if s.parent is not None else None
            if parent not in by_id:
                parent = None
            children.setdefault(parent, []).append(s)
        lines: list[str] = []

        def walk(parent: int | None, depth: int) -> None:
            for s in sorted(children.get(parent, []), key=lambda x: x.start_time or 0):
                ms = ((s.end_time or 0) - (s.start_time or 0)) / 1e6
                status = "" if s.status.is_ok else f"  !! {s.status.description}"
                lines.append(f"{'  ' * depth}{s.name}  {ms:.2f} ms{status}")
                if s.context is not None:
                    walk(s.context.span_id, depth + 1)

        walk(None, 0)
        return "\n".join(lines)

    def clear(self) -> None:
        """Forget every recorded span.

        Example::

            recorder.clear()
        """
        self._spans.clear()
