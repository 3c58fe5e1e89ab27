"""What the dashboard keeps of the messages it sees, and the bounded queue of each browser.

Every envelope the dashboard sees (polled from the runtime's message log, or taken
off the wire on NATS) becomes a small record (:func:`record_of`) with the trace it
belongs to. The :class:`TraceIndex` groups records by trace, bounded in traces and
in records per trace; :class:`Client` is one browser's queue of server-sent events,
bounded, dropping the oldest when the browser reads too slowly and counting what it
dropped; :class:`Hub` fans events out to every client without ever waiting for one.

Nothing here runs on the agents' path: the agents never see the dashboard.

Example::

    hub = Hub()
    client = hub.connect()
    hub.broadcast("stats", {"agents": []})
    print(client.take())
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentcomm.core.envelope import Envelope

__all__ = ["Client", "Hub", "TraceIndex", "record_of"]

#: Events one browser may have waiting; past this the oldest are dropped (and counted).
CLIENT_QUEUE = 500
#: Bytes of encoded events one browser may have waiting; past this, the same.
CLIENT_BYTES = 1 << 20
#: Characters of payload shown in the tail.
PREVIEW = 120


def _trace_id(traceparent: str | None) -> str | None:
    """The W3C trace id of a ``traceparent`` (``00-<trace>-<span>-<flags>``)."""
    if not traceparent:
        return None
    parts = traceparent.split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None


def record_of(env: Envelope, *, kind: str | None = None, size: int | None = None) -> dict[str, Any]:
    """The tail's view of one envelope (without its trace, which :class:`TraceIndex` adds).

    ``kind`` overrides the envelope's own (``dead-letter``, ``notification`` as the
    wire shows them); ``size`` is the frame's size on the wire when known.

    Example::

        rec = record_of(env); print(rec["sender"], rec["to"], rec["kind"])
    """
    payload = bytes(env.payload)
    preview = payload[: PREVIEW * 4].decode("utf-8", "replace")
    if len(preview) > PREVIEW:
        preview = preview[: PREVIEW - 3] + "..."
    err = env.error
    return {
        "id": env.id,
        "kind": kind or env.kind,
        "sender": env.sender,
        "to": env.recipient if env.recipient is not None else (env.topic or ""),
        "recipient": env.recipient,
        "topic": env.topic,
        "handler": env.handler,
        "time": env.created,
        "size": size if size is not None else len(payload),
        "correlation_id": env.correlation_id,
        "causation_id": env.causation_id,
        "otel_trace": _trace_id(env.traceparent),
        "error": None if err is None else f"{err.code}: {err.message}",
        "preview": preview,
        "trace": "",
    }


class TraceIndex:
    """Records grouped by trace, bounded: the newest ``max_traces``, ``max_spans`` each.

    A record's trace is its parent's (the request a response answers, or the
    envelope that caused it: ``causation_id``); without a known parent, the
    OpenTelemetry trace id it carries, else the parent's id, else its own id. So a
    request that touches five agents is one trace whether tracing is on or not. The
    parents are looked up among the newest ``max_ids`` envelopes seen.

    Example::

        index = TraceIndex(); index.add(rec); print(index.get(rec["trace"]))
    """

    def __init__(self, max_traces: int = 500, max_spans: int = 300, max_ids: int = 20_000):
        self.max_traces = max_traces
        self.max_spans = max_spans
        self._traces: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
        self._trace_of: OrderedDict[str, str] = OrderedDict()  # envelope id -> trace
        self._max_ids = max_ids

    def add(self, rec: dict[str, Any]) -> str:
        """Put ``rec`` in its trace (setting ``rec["trace"]``); returns the trace id."""
        parent = rec["correlation_id"] if rec["kind"] == "response" else rec["causation_id"]
        trace = (parent and self._trace_of.get(parent)) or rec["otel_trace"] or parent or rec["id"]
        rec["trace"] = trace
        ids = self._trace_of
        ids[rec["id"]] = trace
        if len(ids) > self._max_ids:
            ids.popitem(last=False)
        spans = self._traces.get(trace)
        if spans is None:
            spans = self._traces[trace] = []
            if len(self._traces) > self.max_traces:
                self._traces.popitem(last=False)
        else:
            self._traces.move_to_end(trace)
        if len(spans) < self.max_spans:
            spans.append(rec)
        return trace

    def get(self, trace: str) -> list[dict[str, Any]]:
        """The records of one trace, in the order seen (empty if unknown or evicted)."""
        return list(self._traces.get(trace, ()))

    def summaries(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest traces first: root, spans (responses fold into their requests), agents,
        duration, errors."""
        out: list[dict[str, Any]] = []
        for trace, spans in reversed(self._traces.items()):
            if len(out) >= limit:
                break
            root = spans[0]
            start = min(s["time"] for s in spans)
            end = max(s["time"] for s in spans)
            label = f"{root['sender']} -> {root['to']}" + (
                f".{root['handler']}" if root["handler"] else ""
            )
            out.append(
                {
                    "trace": trace,
                    "root": label,
                    "kind": root["kind"],
                    "spans": sum(1 for s in spans if s["kind"] != "response"),
                    "agents": sorted({s["sender"] for s in spans}),
                    "start": start,
                    "duration": end - start,
                    "errors": sum(1 for s in spans if s["error"]),
                }
            )
        return out

    def __len__(self) -> int:
        return len(self._traces)


class Client:
    """One browser's queue of events: bounded in events and in bytes, the oldest dropped
    (and counted) when full.

    Example::

        client = Client(); client.put(("msgs", b"{...}")); events = client.take()
    """

    def __init__(self, size: int = CLIENT_QUEUE, max_bytes: int = CLIENT_BYTES) -> None:
        self._queue: deque[tuple[str, Any]] = deque()
        self.size = size
        self.max_bytes = max_bytes
        #: Bytes of the encoded events waiting (``bytes`` data; other data count 0).
        self.bytes = 0
        self.dropped = 0
        self.ready = asyncio.Event()

    def put(self, event: tuple[str, Any]) -> None:
        """Queue an event; never waits (the oldest ones fall off when full)."""
        q = self._queue
        q.append(event)
        self.bytes += _size(event)
        while len(q) > self.size or (self.bytes > self.max_bytes and len(q) > 1):
            self.bytes -= _size(q.popleft())
            self.dropped += 1
        self.ready.set()

    def take(self) -> list[tuple[str, Any]]:
        """Every waiting event, oldest first; the queue is empty after."""
        out = list(self._queue)
        self._queue.clear()
        self.bytes = 0
        self.ready.clear()
        return out

    def __len__(self) -> int:
        return len(self._queue)


def _size(event: tuple[str, Any]) -> int:
    data = event[1]
    return len(data) if isinstance(data, bytes | bytearray) else 0


class Hub:
    """The connected browsers; :meth:`broadcast` puts an event in each, never blocking.

    Example::

        hub = Hub(); c = hub.connect(); hub.broadcast("board", change); hub.disconnect(c)
    """

    def __init__(self, queue_size: int = CLIENT_QUEUE) -> None:
        self.queue_size = queue_size
        self.clients: set[Client] = set()

    def connect(self) -> Client:
        """A new client's queue, receiving every broadcast from now on."""
        c = Client(self.queue_size)
        self.clients.add(c)
        return c

    def disconnect(self, client: Client) -> None:
        """Forget a client (its tab closed): its queue is garbage at once."""
        self.clients.discard(client)

    def broadcast(self, kind: str, data: Any) -> None:
        """Queue ``(kind, data)`` for every client (``data`` is shared, not copied)."""
        for c in self.clients:
            c.put((kind, data))

    @property
    def dropped(self) -> int:
        """Events dropped for slow clients, summed over the connected ones."""
        return sum(c.dropped for c in self.clients)

    @property
    def queued_bytes(self) -> int:
        """Bytes of events waiting for the clients, summed."""
        return sum(c.bytes for c in self.clients)
