"""The metric catalogue: every metric's name, kind, unit, description and reader.

Each reader turns the snapshots one collection takes (:class:`View`: the
runtime's ``statistics()``, pub/sub's, the boards', the transport's) into
``(attributes, value)`` points. :mod:`agentcomm.observability.metrics` exports
them to OpenTelemetry and :mod:`agentcomm.observability.prometheus` as
Prometheus text; ``docs/operations.md`` lists them.

Example::

    for spec in SPECS: print(spec.name, spec.kind)
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from agentcomm.observability.sources import board_statistics, pubsub_statistics, task_statistics

if TYPE_CHECKING:
    from agentcomm.blackboard.core import BoardStatistics
    from agentcomm.host.runtime import Runtime
    from agentcomm.host.runtime_stats import RuntimeStatistics
    from agentcomm.pubsub.metrics import PubSubStatistics
    from agentcomm.tasks.stats import TaskStatistics

__all__ = ["SPECS", "Attrs", "Kind", "MetricSpec", "View", "observe"]

logger = logging.getLogger("agentcomm.metrics")

Attrs = dict[str, str]
Kind = Literal["counter", "gauge"]


class View:
    """The snapshots one collection reads, each taken once (at first use).

    Example::

        view = View(rt); print(view.stats.failures)
    """

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    @functools.cached_property
    def stats(self) -> RuntimeStatistics:
        return self.rt.statistics()

    @functools.cached_property
    def pubsub(self) -> PubSubStatistics | None:
        return pubsub_statistics(self.rt)  # never creates pub/sub just to report on it

    @functools.cached_property
    def boards(self) -> list[BoardStatistics]:
        return board_statistics(self.rt)

    @functools.cached_property
    def tasks(self) -> TaskStatistics | None:
        return task_statistics(self.rt)

    @functools.cached_property
    def transport(self) -> Any:
        stats = getattr(self.rt.transport, "statistics", None)
        return None if stats is None else stats()


Reader = Callable[[View], Iterable[tuple[Attrs, float]]]


class MetricSpec(NamedTuple):
    """One metric: its OpenTelemetry name, kind, unit, description and reader.

    Example::

        MetricSpec("agentcomm.runtime.failures", "counter", "{message}", "...", read)
    """

    name: str
    kind: Kind
    unit: str
    description: str
    read: Reader


def _agent_field(field: str) -> Reader:
    def read(v: View) -> Iterator[tuple[Attrs, float]]:
        for a in v.stats.agents:
            yield {"agent": a.name}, getattr(a, field)

    return read


def _topic_field(field: str) -> Reader:
    def read(v: View) -> Iterator[tuple[Attrs, float]]:
        snap = v.pubsub
        for t in snap.topics if snap else ():
            yield {"topic": t.topic}, getattr(t, field)

    return read


def _sub_field(field: str) -> Reader:
    def read(v: View) -> Iterator[tuple[Attrs, float]]:
        snap = v.pubsub
        for s in snap.subscriptions if snap else ():
            attrs = {"subscription": s.name, "agent": s.agent, "pattern": s.pattern}
            if s.group is not None:
                attrs["group"] = s.group
            yield attrs, getattr(s, field)

    return read


def _pubsub_field(field: str) -> Reader:
    def read(v: View) -> Iterator[tuple[Attrs, float]]:
        if v.pubsub is not None:
            yield {}, getattr(v.pubsub, field)

    return read


def _board_field(field: str) -> Reader:
    def read(v: View) -> Iterator[tuple[Attrs, float]]:
        for stats in v.boards:
            yield {"bucket": stats.bucket}, getattr(stats, field)

    return read


def _task_field(field: str) -> Reader:
    def read(v: View) -> Iterator[tuple[Attrs, float]]:
        if v.tasks is not None:
            yield {}, float(getattr(v.tasks, field))

    return read


def _transport_field(field: str) -> Reader:
    def read(v: View) -> Iterator[tuple[Attrs, float]]:
        value = getattr(v.transport, field, None)
        if isinstance(value, bool | int | float):
            yield {"transport": v.rt.transport.name}, float(value)

    return read


def _runtime(field: str) -> Reader:
    def read(v: View) -> Iterator[tuple[Attrs, float]]:
        value = getattr(v.stats, field)
        if isinstance(value, dict):  # counts by kind
            yield from (({"kind": k}, n) for k, n in sorted(value.items()))
        else:
            yield {}, value

    return read


def _errors(v: View) -> Iterator[tuple[Attrs, float]]:
    for kind, rec in v.stats.errors.items():
        yield {"kind": kind}, rec.count


_MSG = "{message}"
_EVT = "{event}"
SPECS: tuple[MetricSpec, ...] = (
    MetricSpec("agentcomm.runtime.failures", "counter", _MSG,
          "Messages the runtime could not handle.", _runtime("failures")),
    MetricSpec("agentcomm.runtime.rejected_frames", "counter", "{frame}",
          "Frames from the wire or a store refused because they did not decode, by kind.",
          _runtime("rejected_frames")),
    MetricSpec("agentcomm.runtime.errors", "counter", "{failure}",
          "Failures by kind, background work included (bind, subscription_start, presence, ...).",
          _errors),
    MetricSpec("agentcomm.runtime.messages_logged", "gauge", _MSG,
          "Envelopes held in the bounded message log.",
          _runtime("messages_logged")),
    *(
        MetricSpec(f"agentcomm.agent.{f}", "counter", _MSG, d, _agent_field(f))
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
        MetricSpec(f"agentcomm.agent.{f}", "gauge", _MSG, d, _agent_field(f))
        for f, d in (
            ("queued", "Messages waiting in the agent's mailbox."),
            ("mailbox_size", "Capacity of the agent's mailbox."),
            ("in_flight", "Handler runs in progress."),
        )
    ),
    MetricSpec("agentcomm.pubsub.published", "counter", _EVT, "Events this runtime published.",
          _pubsub_field("published")),
    *(
        MetricSpec(f"agentcomm.pubsub.{f}", "gauge", u, d, _pubsub_field(f))
        for f, u, d in (
            ("events_stored", _EVT, "Events retained in the event log (last refresh)."),
            ("bytes_stored", "By", "Bytes retained in the event log (last refresh)."),
            ("dead_letters", _EVT, "Dead letters in the dead-letter queue (last refresh)."),
            ("dead_letters_dropped", _EVT, "Dead letters dropped by the queue's bound."),
        )
    ),
    *(
        MetricSpec(f"agentcomm.topic.{f}", "counter", _EVT, d, _topic_field(f))
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
        MetricSpec(f"agentcomm.topic.{f}", "gauge", "{event}/s", d, _topic_field(f))
        for f, d in (
            ("publish_rate", "Events published per second (last refresh interval)."),
            ("deliver_rate", "Events delivered per second (last refresh interval)."),
        )
    ),
    *(
        MetricSpec(f"agentcomm.subscription.{f}", "counter", _EVT, d, _sub_field(f))
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
        MetricSpec(f"agentcomm.subscription.{f}", "gauge", u, d, _sub_field(f))
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
        MetricSpec(f"agentcomm.board.{f}", "counter", "{operation}", d, _board_field(f))
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
        MetricSpec(f"agentcomm.board.{f}", "gauge", "{watch}", d, _board_field(f))
        for f, d in (
            ("watches", "Open watches."),
            ("subscriptions", "Open change subscriptions."),
        )
    ),
    *(
        MetricSpec(f"agentcomm.tasks.{f}", "counter", "{task}", d, _task_field(f))
        for f, d in (
            ("started", "Durable tasks started by this runtime's agents."),
            ("runs", "Task runs of this runtime's workers (re-runs included)."),
            ("completed", "Task runs that completed."),
            ("failed", "Task runs that failed."),
            ("canceled", "Task runs that were canceled."),
            ("rerun", "Runs after a lost worker (attempt 2 and later)."),
            ("lost", "Tasks failed because their worker was lost (policy or attempts)."),
            ("refused", "Task work the guard refused (unsigned, forged, over a limit)."),
        )
    ),
    MetricSpec("agentcomm.tasks.running", "gauge", "{task}", "Task runs in progress.",
          _task_field("running")),
    *(
        MetricSpec(f"agentcomm.transport.{f}", "counter", "{event}", d, _transport_field(f))
        for f, d in (
            ("reconnects", "Reconnections to the broker."),
            ("disconnects", "Disconnections from the broker."),
            ("malformed", "Inbound messages that were not valid envelopes (dropped)."),
            ("reply_failures", "Responses that could not be sent."),
        )
    ),
    MetricSpec("agentcomm.transport.connected", "gauge", "1", "1 while connected to the broker.",
          _transport_field("connected")),
)  # fmt: skip


def observe(spec: MetricSpec, view: View) -> list[tuple[Attrs, float]]:
    """The points of ``spec`` in ``view``; a reader that raises is logged and gives none.

    Example::

        points = observe(SPECS[0], View(rt))
    """
    try:
        return list(spec.read(view))
    except Exception:  # a metric must never break the reader that collects it
        logger.exception("reading metric %s failed", spec.name)
        return []
