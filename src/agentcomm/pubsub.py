"""Pub/sub events: topics, consumer groups, a durable bounded log, replay, dead letters.

Agents publish events to topics and subscribe to topic patterns (NATS rules, see
:mod:`agentcomm.topics`). Every event is stored in a bounded log (by count, bytes and
age) before anyone handles it, so a subscriber that starts later can replay it, and
events published to a topic nobody subscribes to are kept and counted (there is no
"no subscribers" dead letter). Each subscribing agent gets every event (fan-out);
the members of a consumer group share them. Failing handlers are retried with
exponential backoff and jitter; after the last attempt, on
:class:`~agentcomm.errors.Reject`, or when the event's TTL passed, the event becomes a
dead letter that can be listed, inspected and redriven.

Example::

    from agentcomm import Agent, Runtime, RetryPolicy

    billing = Agent("billing")

    @billing.on("orders.*", retry=RetryPolicy(max_attempts=3))
    async def charge(order_id: str, amount: float) -> None:
        ...

    async with Runtime(agents=[billing]) as rt:
        shop = rt.agent("shop")
        seq = await shop.publish("orders.created", {"order_id": "o-1", "amount": 9.5})
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from .envelope import Envelope, encode_payload, new_id
from .errors import ConfigurationError, TransportClosed
from .flow import RateLimit, Retention, TokenBucket
from .pubsub_declare import (
    Start,
    _ack_wait,
    _declared,
    _deliver,
    _SubSpec,
    _version,
    declare_subscription,
)
from .pubsub_metrics import (
    MAX_TRACKED_TOPICS,
    Alert,
    Metrics,
    PubSubStatistics,
    SubscriptionStatistics,
    TopicStatistics,
    _TopicCounters,
)
from .subscription import Subscription
from .topics import check_pattern, check_topic, compile_pattern
from .transports.streams import ConsumerConfig, LogMessage, StreamConfig, StreamInfo

if TYPE_CHECKING:
    from .agent import Agent
    from .runtime import Runtime
    from .tracing import Tracing

__all__ = [
    "Alert",
    "DeadLetter",
    "PubSub",
    "PubSubStatistics",
    "Start",
    "SubscriptionStatistics",
    "TopicStatistics",
    "declare_subscription",
]

logger = logging.getLogger("agentcomm")

EVENT_STREAM = "EVENTS"
DEAD_LETTER_STREAM = "DLQ"


# -- values --------------------------------------------------------------------------------
class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """An event a subscriber could not handle, kept in the bounded dead-letter queue.

    ``reason`` is ``"max_attempts"`` (every retry failed), ``"rejected"`` (the
    handler raised Reject), ``"expired"`` (its TTL passed) or ``"invalid"`` (the
    payload does not match the handler's schema). ``sequence`` is its number in
    the dead-letter queue; ``event`` the original event (with its own sequence).

    Example::

        for dl in await rt.events.dead_letters():
            print(dl.sequence, dl.subscription, dl.reason, dl.last_error)
    """

    sequence: int = 0
    reason: str
    attempts: int
    last_error: str | None
    agent: str
    subscription: str
    group: str | None = None
    topic: str
    event: Envelope
    failed_at: float


_dead_letter_decoder = msgspec.json.Decoder(DeadLetter)


class _LocalMessage(LogMessage):
    """A dead letter handed back to its subscriber by redrive (no engine behind it)."""

    __slots__ = ("delay", "envelope", "num_delivered", "outcome", "sequence")

    def __init__(self, envelope: Envelope) -> None:
        self.envelope = envelope
        self.sequence = envelope.sequence or 0
        self.num_delivered = 1
        self.outcome = ""
        self.delay = 0.0

    async def ack(self) -> None:
        self.outcome = "ack"

    async def term(self) -> None:
        self.outcome = "term"

    async def nak(self, delay: float | None = None) -> None:
        self.outcome = "nak"
        self.delay = delay or 0.0

    async def in_progress(self) -> None:
        return None


# -- the extension ------------------------------------------------------------------------
class PubSub:
    """A runtime's pub/sub (``rt.events``): publish, subscriptions, replay, dead letters.

    One instance per runtime, created on first use; configure it with
    :meth:`install` before that. Subscriptions declared with ``@agent.on`` start with
    the first pub/sub operation of the runtime; a process that only subscribes calls
    ``await rt.events.start()``.

    Example::

        PubSub.install(rt, retention=Retention(max_events=10_000),
                       topic_limits={"orders.*": RateLimit(100.0, burst=10)})
        await rt.events.start()
    """

    def __init__(
        self,
        runtime: Runtime,
        *,
        retention: Retention | None = None,
        publisher_limit: RateLimit | None = None,
        topic_limits: dict[str, RateLimit] | None = None,
        monitor_interval: float = 1.0,
    ) -> None:
        self.runtime = runtime
        self.retention = retention or Retention()
        self.publisher_limit = publisher_limit
        self._topic_limits = [
            (compile_pattern(p), p, lim) for p, lim in (topic_limits or {}).items()
        ]
        if monitor_interval <= 0:
            raise ConfigurationError("monitor_interval must be positive seconds")
        self.monitor_interval = monitor_interval
        self._limited = publisher_limit is not None or bool(self._topic_limits)
        self._buckets: dict[str, TokenBucket] = {}
        self._subs: dict[tuple[str, str], Subscription] = {}
        self._groups: dict[str, str] = {}
        self.metrics = Metrics()
        self._topics = self.metrics.topics
        self._lock = asyncio.Lock()
        self._started = False
        self._closed = False
        self._seen_version = -1  # declarations and agents seen by the last start()
        self._seen_agents = -1
        self._monitor: asyncio.Task[None] | None = None
        self._stream_info: StreamInfo | None = None
        self._dlq_info: StreamInfo | None = None
        self._dlq_deleted = 0
        self._replays = 0

    @classmethod
    def install(cls, runtime: Runtime, **options: Any) -> PubSub:
        """Create the runtime's pub/sub with options; call before the runtime starts.

        (A runtime whose agents subscribe starts pub/sub when it starts.)

        Example::

            PubSub.install(rt, retention=Retention(max_events=1000, max_age=60.0))
        """
        if "pubsub" in runtime._extensions:
            raise ConfigurationError(
                "this runtime's pub/sub already exists; call PubSub.install(rt, ...) before "
                "`async with rt` (and before the first publish or rt.events use)"
            )
        ps: PubSub = runtime.extension("pubsub", lambda rt: cls(rt, **options))
        return ps

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        """Create the streams and start every declared subscription not yet running.

        Idempotent; also picks up agents attached and subscriptions declared since.

        Example::

            await rt.events.start()
        """
        rt = self.runtime
        async with self._lock:
            if self._closed or not rt.running:
                raise TransportClosed("the runtime is not running; use it inside `async with`")
            t = rt.transport
            if not self._started:
                ret = self.retention
                self._stream_info = await t.ensure_stream(
                    StreamConfig(
                        name=EVENT_STREAM,
                        max_msgs=ret.max_events,
                        max_bytes=ret.max_bytes,
                        max_age=ret.max_age,
                        duplicate_window=ret.dedupe_window,
                    )
                )
                self._dlq_info = await t.ensure_stream(
                    StreamConfig(name=DEAD_LETTER_STREAM, max_msgs=ret.max_dead_letters)
                )
                self._started = True
                self._monitor = rt.task_group.create_task(
                    self._run_monitor(), name="agentcomm:pubsub:monitor"
                )
            seen_version, seen_agents = _version[0], len(rt._agents)
            agents = rt._agents
            for (aname, _), sub in list(self._subs.items()):
                if agents.get(aname) is not sub.agent:
                    del self._subs[(aname, sub.durable)]
                    await sub.stop(asyncio.get_running_loop().time())
            for agent in list(agents.values()):
                for spec in _declared.get(agent, ()):
                    durable = spec.durable(agent.name)
                    if (agent.name, durable) not in self._subs:
                        await self._start_subscription(agent, spec, durable)
            for tc in self._topics.values():
                tc.routed = self._routed(tc.topic)
            self._seen_version, self._seen_agents = seen_version, seen_agents

    async def _start_subscription(self, agent: Agent, spec: _SubSpec, durable: str) -> None:
        rt = self.runtime
        rt._authorize(agent.name, "subscribe", spec.pattern)
        if spec.group is not None:
            known = self._groups.setdefault(spec.group, spec.pattern)
            if known != spec.pattern:
                raise ConfigurationError(
                    f"consumer group {spec.group!r} subscribes to {known!r}; member "
                    f"{agent.name!r} asks for {spec.pattern!r}: a group has one pattern"
                )
        deliver, seq, at = _deliver(spec.start)
        config = ConsumerConfig(
            name=durable,
            filter_subject=spec.pattern,
            deliver=deliver,
            opt_start_seq=seq,
            opt_start_time=at,
            max_ack_pending=spec.max_in_flight,
            ack_wait=_ack_wait(spec.retry),
        )
        consumer = await rt.transport.open_consumer(EVENT_STREAM, config)
        sub = Subscription(
            self,
            agent,
            spec.handler,
            pattern=spec.pattern,
            durable=durable,
            group=spec.group,
            retry=spec.retry,
            concurrency=spec.concurrency,
            max_in_flight=spec.max_in_flight,
        )
        sub.ack_wait = config.ack_wait
        self._subs[(agent.name, durable)] = sub
        sub.start(rt.task_group, consumer)

    async def _ensure(self) -> None:
        if (
            not self._started
            or self._seen_version != _version[0]
            or self._seen_agents != len(self.runtime._agents)
        ):
            await self.start()

    async def aclose(self) -> None:
        """Stop every subscription (called by the runtime at shutdown).

        Running handlers get until the runtime's ``drain_timeout`` to finish; events
        not finished stay unacked and are delivered again when the consumer is next used.
        """
        self._closed = True
        if self._monitor is not None:
            self._monitor.cancel()
        deadline = asyncio.get_running_loop().time() + self.runtime.drain_timeout
        subs = list(self._subs.values())
        self._subs.clear()
        await asyncio.gather(*(s.stop(deadline) for s in subs))

    # -- publishing ---------------------------------------------------------------------
    def _routed(self, topic: str) -> bool:
        return any(compile_pattern(s.pattern)(topic) for s in self._subs.values())

    def _topic(self, topic: str) -> _TopicCounters:
        return self.metrics.topic(topic, self._routed)

    async def publish(
        self,
        sender: str,
        topic: str,
        payload: Any = None,
        *,
        key: str | None = None,
        msg_id: str | None = None,
        ttl: float | None = None,
        wait: bool = True,
        headers: dict[str, str] | None = None,
        cause: Envelope | None = None,
    ) -> int:
        """Store an event and return its sequence number (use ``agent.publish``).

        Example::

            seq = await rt.events.publish("shop", "orders.created", {"id": 1})
        """
        rt = self.runtime
        if self._seen_version != _version[0] or self._seen_agents != len(rt._agents):
            await self.start()  # first use, or agents/subscriptions added since
        tc = self._topics.get(topic)
        if tc is None:
            check_topic(topic)
            tc = self._topic(topic)
        if rt.access is not None:
            rt._authorize(sender, "publish", topic)
        if key is not None and not isinstance(key, str):
            raise ConfigurationError(f"key must be a string, got {type(key).__name__}")
        if self._limited:
            await self._limit(sender, topic, wait)
        if ttl is not None and ttl <= 0:
            raise ConfigurationError(f"ttl must be positive seconds, got {ttl}")
        if rt.tracing is not None:  # docs/tracing.md
            return await self._traced_publish(
                rt.tracing, tc, sender, topic, payload, key, msg_id, ttl, headers, cause
            )
        if ttl is None and cause is None and headers is None:  # the common case, fewer fields
            env = Envelope(
                id=msg_id or new_id(),
                kind="event",
                sender=sender,
                topic=topic,
                payload=encode_payload(payload),
                key=key,
            )
        else:
            now = time.time()
            env = Envelope(
                id=msg_id or new_id(),
                kind="event",
                sender=sender,
                topic=topic,
                payload=encode_payload(payload),
                created=now,
                deadline=None if ttl is None else now + ttl,
                key=key,
                causation_id=None if cause is None else cause.id,
                traceparent=None if cause is None else cause.traceparent,
                headers=headers or {},
            )
        if rt._guard is not None:  # limits and signature (docs/security.md)
            env = rt._guard.seal(env)
        seq = await rt.transport.append(EVENT_STREAM, env, msg_id=msg_id)
        self.metrics.published += 1
        tc.published += 1
        if not tc.routed:
            tc.unrouted += 1
        rt.message_log.append(env)
        return seq

    async def _traced_publish(
        self,
        tracing: Tracing,
        tc: _TopicCounters,
        sender: str,
        topic: str,
        payload: Any,
        key: str | None,
        msg_id: str | None,
        ttl: float | None,
        headers: dict[str, str] | None,
        cause: Envelope | None,
    ) -> int:
        """:meth:`publish` with a ``"publish <topic>"`` span whose context the event carries."""
        rt = self.runtime
        attrs = {"agentcomm.sender": sender, "agentcomm.key": key}
        with tracing.span("publish", topic, kind="producer", attributes=attrs) as span:
            traceparent, tracestate = tracing.current_traceparent()
            now = time.time()
            env = Envelope(
                id=msg_id or new_id(),
                kind="event",
                sender=sender,
                topic=topic,
                payload=encode_payload(payload),
                created=now,
                deadline=None if ttl is None else now + ttl,
                key=key,
                causation_id=None if cause is None else cause.id,
                traceparent=traceparent,
                tracestate=tracestate,
                headers=headers or {},
            )
            if rt._guard is not None:
                env = rt._guard.seal(env)
            seq = await rt.transport.append(EVENT_STREAM, env, msg_id=msg_id)
            span.set_attributes(
                {k: v for k, v in tracing.message_attributes(env).items() if v is not None}
            )
            span.set_attribute("agentcomm.sequence", seq)
            self.metrics.published += 1
            tc.published += 1
            if not tc.routed:
                tc.unrouted += 1
            rt.message_log.append(env)
            return seq

    async def _limit(self, sender: str, topic: str, wait: bool) -> None:
        lim = self.publisher_limit
        if lim is not None:
            bucket = self._bucket(f"publisher {sender!r}", lim)
            await bucket.take(f"publisher {sender!r}", wait=wait)
        for match, pattern, tlim in self._topic_limits:
            if match(topic):
                what = f"topic {topic!r} (limit {pattern!r})"
                await self._bucket(what, tlim).take(what, wait=wait)

    def _bucket(self, what: str, limit: RateLimit) -> TokenBucket:
        b = self._buckets.get(what)
        if b is None:
            if len(self._buckets) >= MAX_TRACKED_TOPICS:
                self._buckets.pop(next(iter(self._buckets)))
            b = self._buckets[what] = TokenBucket(limit)
        return b

    # -- replay ---------------------------------------------------------------------------
    def _find(self, agent: Agent | str, name: str | None) -> Subscription:
        aname = agent if isinstance(agent, str) else agent.name
        subs = [s for (a, _), s in self._subs.items() if a == aname]
        if name is not None:
            subs = [s for s in subs if s.spec.name == name or s.durable == name]
        if len(subs) != 1:
            have = sorted(s.spec.name for (a, _), s in self._subs.items() if a == aname)
            raise ConfigurationError(
                f"agent {aname!r} has {len(subs)} running subscriptions matching {name!r} "
                f"(it has {have}); name exactly one"
            )
        return subs[0]

    async def replay(
        self, agent: Agent | str, name: str | None = None, *, start: Start = "all"
    ) -> int:
        """Hand retained events to one subscription again, without re-publishing them.

        Only this subscription runs its handler (with its retry policy and dead
        letters); the log and the other subscribers see nothing. Replays the events
        stored when it starts, from ``start``, and returns how many were handled.

        Example::

            count = await rt.events.replay("auditor", start=datetime.now(UTC) - timedelta(hours=1))
        """
        await self._ensure()
        sub = self._find(agent, name)
        self.runtime._authorize(sub.agent.name, "subscribe", sub.pattern)
        deliver, seq, at = _deliver(start)
        t = self.runtime.transport
        target = (await t.stream_info(EVENT_STREAM)).last_seq
        self._replays += 1
        durable = f"{sub.durable}__replay{self._replays}"
        consumer = await t.open_consumer(
            EVENT_STREAM,
            ConsumerConfig(
                name=durable,
                filter_subject=sub.pattern,
                deliver=deliver,
                opt_start_seq=seq,
                opt_start_time=at,
                max_ack_pending=sub.max_in_flight,
            ),
        )
        handled = 0
        try:
            while True:
                msgs = await consumer.fetch(64, 0.05)
                for m in msgs:
                    if m.sequence > target:
                        continue
                    c = sub.counters
                    tc = self._topic(m.envelope.topic or "")
                    c.delivered += 1
                    tc.delivered += 1
                    outcome = await sub.run_once(m, m.num_delivered, c, tc, local_retry=False)
                    if outcome != "nak":
                        handled += 1
                if not msgs:
                    info = await consumer.info()
                    if info.num_ack_pending == 0 and (
                        info.num_pending == 0 or info.delivered_seq >= target
                    ):
                        return handled
        finally:
            await consumer.close()
            await t.delete_consumer(EVENT_STREAM, durable)

    # -- dead letters -----------------------------------------------------------------------
    async def _store_dead_letter(
        self, sub: Subscription, event: Envelope, reason: str, error: str | None, attempts: int
    ) -> None:
        dl = DeadLetter(
            reason=reason,
            attempts=attempts,
            last_error=error,
            agent=sub.agent.name,
            subscription=sub.durable,
            group=sub.group,
            topic=event.topic or "",
            event=event,
            failed_at=time.time(),
        )
        env = Envelope(
            id=new_id(),
            kind="event",
            sender=sub.agent.name,
            topic=f"dlq.{sub.durable}",
            payload=encode_payload(dl),
            causation_id=event.id,
            traceparent=event.traceparent,
        )
        await self.runtime.transport.append(DEAD_LETTER_STREAM, env)

    @staticmethod
    def _decode_dead_letter(env: Envelope) -> DeadLetter:
        dl = _dead_letter_decoder.decode(env.payload)
        return msgspec.structs.replace(dl, sequence=env.sequence or 0)

    async def dead_letters(
        self, *, subscription: str | None = None, start: int = 1, limit: int = 100
    ) -> list[DeadLetter]:
        """Dead letters, oldest first (of one subscription's durable name, if given).

        Example::

            for dl in await rt.events.dead_letters(subscription="billing__charge"):
                print(dl.sequence, dl.reason, dl.attempts, dl.last_error)
        """
        await self._ensure()
        subject = "dlq.>" if subscription is None else f"dlq.{subscription}"
        check_pattern(subject)
        envs = await self.runtime.transport.read_messages(
            DEAD_LETTER_STREAM, start_seq=start, limit=limit, filter_subject=subject
        )
        return [self._decode_dead_letter(e) for e in envs]

    async def dead_letter(self, sequence: int) -> DeadLetter | None:
        """One dead letter by its sequence, or ``None`` if it is gone.

        Example::

            dl = await rt.events.dead_letter(3)
        """
        await self._ensure()
        env = await self.runtime.transport.get_message(DEAD_LETTER_STREAM, sequence)
        return None if env is None else self._decode_dead_letter(env)

    async def redrive(self, sequence: int) -> bool:
        """Hand a dead letter back to its subscriber, with a fresh retry budget.

        The event goes back without its TTL (redriving is a deliberate decision to
        handle it after all); a signed event is verified as stored first, since the
        TTL is a signed field (docs/security.md). The subscriber must run in this
        runtime. Returns True when the handler then succeeded; either way the dead
        letter leaves the queue (a new one replaces it if the event fails again).
        Raises ConfigurationError if it is gone.

        Example::

            ok = await rt.events.redrive(dl.sequence)
        """
        dl = await self.dead_letter(sequence)
        if dl is None:
            raise ConfigurationError(f"no dead letter with sequence {sequence}; list them first")
        subs = [s for s in self._subs.values() if s.durable == dl.subscription]
        if not subs:
            raise ConfigurationError(
                f"subscription {dl.subscription!r} does not run in this runtime; redrive "
                "from the runtime where its agent runs"
            )
        sub = subs[0]
        self.runtime._authorize(sub.agent.name, "subscribe", sub.pattern)
        guard = self.runtime._guard
        if guard is None:
            event = msgspec.structs.replace(dl.event, deadline=None)
        else:
            event = guard.redrive(dl.event)  # verified as stored, then without its TTL
        m = _LocalMessage(event)
        c = sub.counters
        tc = self._topic(dl.topic)
        try:
            while True:
                c.delivered += 1
                tc.delivered += 1
                await sub.run_once(m, m.num_delivered, c, tc, local_retry=False)
                if m.outcome != "nak":
                    break
                await asyncio.sleep(m.delay)
                m.num_delivered += 1
        finally:
            if guard is not None:
                guard.release(event)
        if await self.runtime.transport.delete_message(DEAD_LETTER_STREAM, sequence):
            self._dlq_deleted += 1
        return m.outcome == "ack"

    # -- metrics ----------------------------------------------------------------------------
    def statistics(self) -> PubSubStatistics:
        """A frozen snapshot of counters (stream figures and lag as of the last refresh).

        Example::

            print(rt.events.statistics().published)
        """
        return self.metrics.snapshot(
            self._subs.values(), self._stream_info, self._dlq_info, self._dlq_deleted
        )

    async def refresh(self) -> PubSubStatistics:
        """Refresh stream figures, lag and rates now, check alerts, return a snapshot.

        Example::

            snap = await rt.events.refresh(); print(snap.subscriptions[0].lag)
        """
        await self._ensure()
        t = self.runtime.transport
        for s in list(self._subs.values()):
            if s.consumer is not None:
                s.lag = (await s.consumer.info()).num_pending
        # the streams last, nearest the live counters the snapshot also reads
        self._stream_info = await t.stream_info(EVENT_STREAM)
        self._dlq_info = await t.stream_info(DEAD_LETTER_STREAM)
        self.metrics.update_rates(self._subs.values())
        snap = self.statistics()
        self.metrics.check(snap)
        return snap

    def alert(
        self,
        metric: str,
        *,
        above: float,
        callback: Callable[[Alert], Any],
        subject: str | None = None,
    ) -> None:
        """Call ``callback(Alert)`` when a metric of a topic or subscription rises above a limit.

        ``metric`` is a numeric field of :class:`SubscriptionStatistics` (``lag``,
        ``in_flight``, ``dead_lettered``, ``ack_rate``...) or of
        :class:`TopicStatistics` (``published``, ``publish_rate``...); ``subject``
        restricts it to one subscription name or topic. Checked at every refresh;
        fires once per crossing (again only after the value fell back).

        Example::

            rt.events.alert("lag", above=10_000, callback=lambda a: log.warning("%s", a))
        """
        self.metrics.alert(metric, above, callback, subject)

    async def _run_monitor(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.monitor_interval)
            try:
                await self.refresh()
                for s in list(self._subs.values()):
                    await s.touch_held(self.monitor_interval, s.ack_wait)
            except TransportClosed:
                return
            except Exception:
                logger.exception("pub/sub monitor failed; retrying at the next interval")
