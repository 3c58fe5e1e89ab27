"""Pub/sub metrics: per topic and per subscription counters, rates, snapshots, alerts.

:class:`Metrics` holds the live counters of one runtime's pub/sub; ``snapshot()``
turns them into frozen :class:`PubSubStatistics`, ``update_rates()`` computes rates
over the last refresh interval and ``check()`` fires the threshold alerts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from agentcomm.core.errors import ConfigurationError
from agentcomm.pubsub.core_stats import CoreSubscriptionStatistics

if TYPE_CHECKING:
    from agentcomm.core.rejects import Rejects
    from agentcomm.transports.streams import StreamInfo

__all__ = [
    "Alert",
    "Metrics",
    "PubSubStatistics",
    "SubscriptionCounters",
    "SubscriptionStatistics",
    "TopicStatistics",
]

logger = logging.getLogger("agentcomm")

MAX_TRACKED_TOPICS = 10_000
OTHER_TOPICS = "(other topics)"


class SubscriptionCounters:
    """Mutable counters of one subscription (snapshotted by ``statistics()``)."""

    __slots__ = ("acked", "dead_lettered", "delivered", "expired", "retried", "timeouts")

    def __init__(self) -> None:
        self.delivered = self.acked = self.retried = self.dead_lettered = self.expired = 0
        self.timeouts = 0


class _Named(Protocol):
    name: str


class _SubscriptionView(Protocol):
    """What the statistics read of a running subscription (``pubsub.subscription``)."""

    @property
    def agent(self) -> _Named: ...
    @property
    def counters(self) -> SubscriptionCounters: ...
    @property
    def durable(self) -> str: ...
    @property
    def group(self) -> str | None: ...
    @property
    def pattern(self) -> str: ...
    @property
    def in_flight(self) -> int: ...
    @property
    def lag(self) -> int: ...
    @property
    def max_in_flight(self) -> int: ...
    @property
    def running(self) -> int: ...
    @property
    def stopped(self) -> str | None: ...
    @property
    def restarts(self) -> int: ...
    @property
    def last_error(self) -> str | None: ...


class TopicStatistics(msgspec.Struct, frozen=True):
    """Counters of one topic (rates are per second over the last refresh interval).

    ``unrouted`` counts events published while no subscription known to this
    runtime matched the topic (they are kept in the log all the same).
    ``duplicates`` counts publishes with a ``msg_id`` already stored within the
    dedupe window: stored once, so not in ``published`` nor ``publish_rate``.
    ``timeouts`` counts handler runs cancelled by their ``handler_timeout``.
    ``core_published`` counts core (``durable=False``) events: sent, not stored,
    and in no other field.

    Example::

        t = rt.events.statistics().topic("orders.created"); print(t.published)
    """

    topic: str
    published: int
    unrouted: int
    delivered: int
    acked: int
    retried: int
    dead_lettered: int
    expired: int
    publish_rate: float
    deliver_rate: float
    duplicates: int = 0
    timeouts: int = 0
    core_published: int = 0


class SubscriptionStatistics(msgspec.Struct, frozen=True):
    """Counters of one subscription (one agent's, or one group member's).

    ``lag`` is the number of matching events not yet delivered to its consumer;
    ``in_flight`` the events held (fetched, not settled), at most ``max_in_flight``.
    ``stopped`` is ``None`` while it runs, else why it stopped delivering (its
    transport closed under it; the error is also logged). ``timeouts`` counts
    handler runs cancelled by ``handler_timeout``; ``restarts`` the times it was
    restarted after an unexpected failure of its loop, ``last_error`` the last such
    failure (logged with its traceback).

    Example::

        s = rt.events.statistics().subscription("billing__charge"); print(s.lag)
    """

    name: str
    agent: str
    pattern: str
    group: str | None
    delivered: int
    acked: int
    retried: int
    dead_lettered: int
    expired: int
    in_flight: int
    max_in_flight: int
    running: int
    lag: int
    deliver_rate: float
    ack_rate: float
    stopped: str | None = None
    timeouts: int = 0
    restarts: int = 0
    last_error: str | None = None


class PubSubStatistics(msgspec.Struct, frozen=True):
    """A frozen snapshot of a runtime's pub/sub: the log, dead letters, topics, subscriptions.

    Stream figures (``events_stored``...) and ``lag`` are as of the last refresh
    (every ``monitor_interval`` seconds, or ``await rt.events.refresh()``).

    Example::

        snap = await rt.events.refresh()
        print(snap.events_stored, [s.lag for s in snap.subscriptions])
    """

    published: int
    events_stored: int
    bytes_stored: int
    first_sequence: int
    last_sequence: int
    dead_letters: int
    dead_letters_dropped: int
    topics: tuple[TopicStatistics, ...]
    subscriptions: tuple[SubscriptionStatistics, ...]
    duplicates: int = 0
    #: Stream messages that were not envelopes: fetched by a subscription (each then
    #: dead-lettered, reason ``invalid``), skipped by a read, or not a dead letter.
    rejected_frames: int = 0
    #: Core (``durable=False``) events published here (not stored, so in no figure above).
    core_published: int = 0
    #: The core subscriptions running here (``pubsub.core_stats``).
    core_subscriptions: tuple[CoreSubscriptionStatistics, ...] = ()

    def topic(self, topic: str) -> TopicStatistics:
        """The statistics of one topic; raises KeyError when never seen."""
        for t in self.topics:
            if t.topic == topic:
                return t
        raise KeyError(topic)

    def subscription(self, name: str, agent: str | None = None) -> SubscriptionStatistics:
        """The statistics of one subscription (by durable name, optionally agent)."""
        for s in self.subscriptions:
            if s.name == name and (agent is None or s.agent == agent):
                return s
        raise KeyError(name)

    def core_subscription(self, name: str, agent: str | None = None) -> CoreSubscriptionStatistics:
        """The statistics of one core subscription (``<agent>__<name>`` or its group)."""
        for s in self.core_subscriptions:
            if s.name == name and (agent is None or s.agent == agent):
                return s
        raise KeyError(name)


class Alert(msgspec.Struct, frozen=True):
    """A threshold crossed, passed to the callback given to :meth:`PubSub.alert`.

    Example::

        rt.events.alert("lag", above=1000, callback=lambda a: print(a.subject, a.value))
    """

    metric: str
    subject: str
    value: float
    threshold: float


_SUB_METRICS = frozenset(SubscriptionStatistics.__struct_fields__) - {
    "name",
    "agent",
    "pattern",
    "group",
    "stopped",
    "last_error",
}
_TOPIC_METRICS = frozenset(TopicStatistics.__struct_fields__) - {"topic"}


@dataclass(slots=True)
class _Threshold:
    metric: str
    above: float
    callback: Callable[[Alert], Any]
    subject: str | None
    firing: set[str]


class _TopicCounters:
    __slots__ = (
        "acked",
        "core_published",
        "dead_lettered",
        "delivered",
        "duplicates",
        "expired",
        "published",
        "retried",
        "routed",
        "timeouts",
        "topic",
        "unrouted",
    )

    def __init__(self, topic: str, routed: bool) -> None:
        self.topic = topic
        self.routed = routed
        self.published = self.unrouted = self.delivered = self.acked = 0
        self.retried = self.dead_lettered = self.expired = self.duplicates = 0
        self.timeouts = self.core_published = 0


class Metrics:
    """The live counters of one runtime's pub/sub (``rt.events.metrics``).

    Example::

        m = Metrics(); m.topic("orders.new", lambda t: True).published += 1
    """

    def __init__(self, rejects: Rejects | None = None) -> None:
        self.rejects = rejects
        self.topics: dict[str, _TopicCounters] = {}
        self.other = _TopicCounters(OTHER_TOPICS, True)
        self.published = 0
        self.duplicates = 0
        self._rates: dict[int, tuple[float, ...]] = {}
        self._rate_values: dict[int, tuple[float, float]] = {}
        self._last_refresh = time.monotonic()
        self._thresholds: list[_Threshold] = []

    def topic(self, topic: str, routed: Callable[[str], bool]) -> _TopicCounters:
        """The counters of ``topic`` (at most MAX_TRACKED_TOPICS, then one shared row)."""
        tc = self.topics.get(topic)
        if tc is None:
            if len(self.topics) >= MAX_TRACKED_TOPICS:
                return self.other
            tc = self.topics[topic] = _TopicCounters(topic, routed(topic))
        return tc

    def snapshot(
        self,
        subscriptions: Iterable[_SubscriptionView],
        stream: StreamInfo | None,
        dlq: StreamInfo | None,
        dlq_deleted: int,
    ) -> PubSubStatistics:
        """A frozen snapshot of every counter."""
        st = stream
        rv = self._rate_values
        topics = tuple(
            TopicStatistics(
                topic=tc.topic,
                published=tc.published,
                unrouted=tc.unrouted,
                delivered=tc.delivered,
                acked=tc.acked,
                retried=tc.retried,
                dead_lettered=tc.dead_lettered,
                expired=tc.expired,
                publish_rate=rv.get(id(tc), (0.0, 0.0))[0],
                deliver_rate=rv.get(id(tc), (0.0, 0.0))[1],
                duplicates=tc.duplicates,
                timeouts=tc.timeouts,
                core_published=tc.core_published,
            )
            for tc in [*self.topics.values(), self.other]
            if tc.published or tc.delivered or tc.duplicates or tc.core_published
        )
        subs = tuple(
            SubscriptionStatistics(
                name=s.durable,
                agent=s.agent.name,
                pattern=s.pattern,
                group=s.group,
                delivered=s.counters.delivered,
                acked=s.counters.acked,
                retried=s.counters.retried,
                dead_lettered=s.counters.dead_lettered,
                expired=s.counters.expired,
                in_flight=s.in_flight,
                max_in_flight=s.max_in_flight,
                running=s.running,
                lag=s.lag,
                deliver_rate=rv.get(id(s.counters), (0.0, 0.0))[0],
                ack_rate=rv.get(id(s.counters), (0.0, 0.0))[1],
                stopped=s.stopped,
                timeouts=s.counters.timeouts,
                restarts=s.restarts,
                last_error=s.last_error,
            )
            for s in subscriptions
        )
        return PubSubStatistics(
            published=self.published,
            events_stored=st.messages if st else 0,
            bytes_stored=st.bytes if st else 0,
            first_sequence=st.first_seq if st else 0,
            last_sequence=st.last_seq if st else 0,
            dead_letters=dlq.messages if dlq else 0,
            dead_letters_dropped=(max(dlq.last_seq - dlq.messages - dlq_deleted, 0) if dlq else 0),
            topics=topics,
            subscriptions=subs,
            duplicates=self.duplicates,
            rejected_frames=(
                0 if self.rejects is None else self.rejects.total("event", "stream", "dead_letter")
            ),
        )

    def update_rates(self, subscriptions: Iterable[_SubscriptionView]) -> None:
        """Rates per second since the previous call."""
        now = time.monotonic()
        dt = max(now - self._last_refresh, 1e-6)
        self._last_refresh = now
        live: dict[int, tuple[float, ...]] = {}
        counters: list[tuple[int, float, float]] = [
            (id(tc), tc.published, tc.delivered) for tc in [*self.topics.values(), self.other]
        ]
        counters += [
            (id(s.counters), s.counters.delivered, s.counters.acked) for s in subscriptions
        ]
        for ident, a, b in counters:
            pa, pb = self._rates.get(ident, (0.0, 0.0))
            self._rate_values[ident] = ((a - pa) / dt, (b - pb) / dt)
            live[ident] = (a, b)
        self._rates = live
        self._rate_values = {k: v for k, v in self._rate_values.items() if k in live}

    def alert(
        self, metric: str, above: float, callback: Callable[[Alert], Any], subject: str | None
    ) -> None:
        """Register a threshold (see :meth:`PubSub.alert <agentcomm.pubsub.PubSub.alert>`)."""
        if metric not in _SUB_METRICS and metric not in _TOPIC_METRICS:
            raise ConfigurationError(
                f"unknown metric {metric!r}; use one of {sorted(_SUB_METRICS | _TOPIC_METRICS)}"
            )
        self._thresholds.append(_Threshold(metric, above, callback, subject, set()))

    def check(self, snap: PubSubStatistics) -> None:
        """Fire the alerts whose metric crossed its threshold in ``snap``."""
        for th in self._thresholds:
            rows: list[tuple[str, float]] = []
            if th.metric in _SUB_METRICS:
                rows += [(s.name, getattr(s, th.metric)) for s in snap.subscriptions]
            if th.metric in _TOPIC_METRICS:
                rows += [(t.topic, getattr(t, th.metric)) for t in snap.topics]
            for subject, value in rows:
                if th.subject is not None and subject != th.subject:
                    continue
                if value > th.above:
                    if subject not in th.firing:
                        th.firing.add(subject)
                        try:
                            th.callback(Alert(th.metric, subject, float(value), th.above))
                        except Exception:
                            logger.exception("pub/sub alert callback failed")
                else:
                    th.firing.discard(subject)
