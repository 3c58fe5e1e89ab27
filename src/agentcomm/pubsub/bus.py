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

from agentcomm.core.envelope import Envelope
from agentcomm.core.errors import ConfigurationError, TransportClosed
from agentcomm.core.flow import RateLimit, Retention
from agentcomm.core.topics import check_topic, compile_pattern
from agentcomm.pubsub.core_events import CoreEvents
from agentcomm.pubsub.dead_letters import (
    DEAD_LETTER_STREAM,
    EVENT_STREAM,
    DeadLetter,
    DeadLetters,
)
from agentcomm.pubsub.declare import (
    Start,
    _SubSpec,
    declare_subscription,
    one_pattern,
    subscriptions_of,
)
from agentcomm.pubsub.metrics import (
    Alert,
    Metrics,
    PubSubStatistics,
    SubscriptionStatistics,
    TopicStatistics,
    _TopicCounters,
)
from agentcomm.pubsub.monitor import run_monitor
from agentcomm.pubsub.partitions import event_subject
from agentcomm.pubsub.publishing import PublishLimits, traced_append, untraced_envelope
from agentcomm.pubsub.replay import Replays
from agentcomm.pubsub.subscription import Subscription
from agentcomm.transports.streams import StreamInfo, pubsub_streams

if TYPE_CHECKING:
    from agentcomm.host.agent import Agent
    from agentcomm.host.runtime import Runtime

__all__ = [
    "DEAD_LETTER_STREAM",
    "EVENT_STREAM",
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


class PubSub:
    """A runtime's pub/sub (``rt.events``): publish, subscriptions, replay, dead letters.

    One instance per runtime, created on first use; configure it with
    :meth:`install` before that. Replays and the dead-letter queue are objects it
    owns (``pubsub.replay.Replays``, ``pubsub.dead_letters.DeadLetters``); their
    methods here hand the call to them. Subscriptions declared with ``@agent.on`` start with
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
        if monitor_interval <= 0:
            raise ConfigurationError("monitor_interval must be positive seconds")
        self.monitor_interval = monitor_interval
        self._limits = PublishLimits(publisher_limit, topic_limits)
        self._limited = self._limits.active
        self._subs: dict[tuple[str, str], Subscription] = {}
        self.dlq = DeadLetters(runtime, self._subs, self._topic, self._ensure)  # dead letters
        self._replays = Replays(runtime, self._subs, self._topic, self._ensure)
        self._groups: dict[str, str] = {}
        self.metrics = Metrics(runtime._rejects)
        self._topics = self.metrics.topics
        self._lock = asyncio.Lock()
        self._started = False
        self._closed = False
        # True until start() ran, and again when an agent running here declares a
        # subscription (Agent.on tells us, see declared()); detach_agent() stops one.
        self._dirty = True
        self._monitor: asyncio.Task[None] | None = None
        self._stream_info: StreamInfo | None = None
        self._dlq_info: StreamInfo | None = None
        self.core = CoreEvents(self)  # durable=False: pubsub.core_events

    @classmethod
    def of(cls, runtime: Runtime) -> PubSub:
        """The runtime's pub/sub, created with default options on first use.

        Example::

            await PubSub.of(rt).start()
        """
        ps: PubSub = runtime.extension("pubsub", cls)
        return ps

    @classmethod
    def install(cls, runtime: Runtime, **options: Any) -> PubSub:
        """Create the runtime's pub/sub with options; call before the runtime starts.

        (A runtime whose agents subscribe starts pub/sub when it starts.)

        Example::

            PubSub.install(rt, retention=Retention(max_events=1000, max_age=60.0))
        """
        if runtime.existing_extension("pubsub") is not None:
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
                events, dlq = pubsub_streams(self.retention)  # EVENT_/DEAD_LETTER_STREAM
                self._stream_info = await t.ensure_stream(events)
                self._dlq_info = await t.ensure_stream(dlq)
                self._started = True
                self._monitor = rt.task_group.create_task(
                    run_monitor(self), name="agentcomm:pubsub:monitor"
                )
            self._dirty = False  # a declaration during the awaits below sets it again
            agents = rt.agents
            for (aname, _), sub in list(self._subs.items()):
                if agents.get(aname) is not sub.agent:  # safety net; detach_agent() is the way
                    del self._subs[(aname, sub.durable)]
                    await sub.stop(asyncio.get_running_loop().time())
            for agent in list(agents.values()):
                for spec in subscriptions_of(agent):
                    for durable, partition in spec.durables(agent.name):
                        if (agent.name, durable) not in self._subs:
                            await self._start_subscription(agent, spec, durable, partition)
            self._reroute()

    def _reroute(self) -> None:
        for tc in self._topics.values():
            tc.routed = self._routed(tc.topic)

    def declared(self, agent: Agent) -> None:
        """Called by ``Agent.on`` when ``agent``, running here, declares a subscription.

        Starts it soon, in the runtime's task group (a failure is logged), and at the
        latest before this runtime's next pub/sub operation.

        Example::

            rt.events.declared(agent)
        """
        self._dirty = True
        rt = self.runtime
        if rt.running and not self._closed:
            rt.task_group.create_task(self._start_quietly(), name="agentcomm:pubsub:sync")

    async def _start_quietly(self) -> None:
        try:
            await self.start()
        except Exception as exc:
            logger.exception("pub/sub: starting a subscription declared at run time failed")
            self.runtime.report_error("subscription_start", exc)

    async def detach_agent(self, agent: Agent) -> None:
        """Stop ``agent``'s subscriptions (``Runtime.detach`` calls it before the agent stops).

        Running handlers get until the runtime's ``drain_timeout``; events not
        finished stay unacked and go to the consumer's next user.

        Example::

            await rt.events.detach_agent(agent)
        """
        await self.core.detach_agent(agent)
        subs = [k for k, s in self._subs.items() if s.agent is agent]
        if not subs:
            return
        deadline = asyncio.get_running_loop().time() + self.runtime.drain_timeout
        stopping = [self._subs.pop(k) for k in subs]
        self._reroute()
        await asyncio.gather(*(s.stop(deadline) for s in stopping))

    async def _start_subscription(
        self, agent: Agent, spec: _SubSpec, durable: str, partition: int | None = None
    ) -> None:
        rt = self.runtime
        if spec.core:  # durable=False: no consumer (pubsub.core_events)
            return await self.core.start_subscription(agent, spec)
        rt.authorize_subscription(agent.name, spec.pattern, spec.name, spec.group)
        one_pattern(self._groups, spec, agent.name)
        config = spec.consumer_config(durable, partition)
        consumer = await rt.transport.open_consumer(EVENT_STREAM, config)
        sub = Subscription(
            self,
            agent,
            spec.handler,
            pattern=spec.pattern,
            durable=durable,
            group=spec.group,
            retry=spec.retry,
            concurrency=spec.concurrency if partition is None else 1,
            max_in_flight=spec.max_in_flight if partition is None else 1,
            handler_timeout=spec.handler_timeout,
        )
        self._subs[(agent.name, durable)] = sub
        sub.start(rt.task_group, consumer, config)

    async def _ensure(self) -> None:
        if self._dirty:
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
        await asyncio.gather(self.core.aclose(), *(s.stop(deadline) for s in subs))

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
        durable: bool = True,
    ) -> int:
        """Store an event and return its sequence number (use ``agent.publish``).

        A ``msg_id`` already stored within the dedupe window stores nothing and
        returns the first one's sequence (counted in ``duplicates``, not
        ``published``). A rate-limit wait never passes the event's ``ttl``: when the
        next token comes later, :class:`~agentcomm.errors.RateLimited` is raised at once.
        ``durable=False``: a core event, stored nowhere; returns 0 (``pubsub.core_events``).

        Example::

            seq = await rt.events.publish("shop", "orders.created", {"id": 1})
        """
        if not durable:
            args = (key, msg_id, ttl, wait, headers, cause)
            return await self.core.publish(sender, topic, payload, *args)
        rt = self.runtime
        tc = await self.admit_publish(sender, topic, key, ttl, wait)
        if rt.tracing is not None:  # docs/tracing.md
            seq, env, duplicate = await traced_append(
                rt, rt.tracing, sender, topic, payload, key, msg_id, ttl, headers, cause
            )
            self._count_stored(tc, env, duplicate)
            return seq
        env = untraced_envelope(sender, topic, payload, key, msg_id, ttl, headers, cause)
        if rt.guard is not None:  # limits and signature (docs/security.md)
            env = rt.guard.seal(env)
        seq, duplicate = await rt.transport.append_checked(
            EVENT_STREAM, env, msg_id=msg_id, subject=event_subject(env)
        )
        self._count_stored(tc, env, duplicate)
        return seq

    async def admit_publish(
        self, sender: str, topic: str, key: str | None, ttl: float | None, wait: bool
    ) -> _TopicCounters:
        """Check a publish (topic, access, key, ttl), wait for its rate limit: its counters.

        Durable and core (``durable=False``) publishes both go through it.
        """
        if self._dirty:
            await self.start()  # first use, or subscriptions declared since
        tc = self._topics.get(topic)
        if tc is None:
            check_topic(topic)
            tc = self._topic(topic)
        rt = self.runtime
        if rt.access is not None:
            rt.authorize(sender, "publish", topic)
        if key is not None and not isinstance(key, str):
            raise ConfigurationError(f"key must be a string, got {type(key).__name__}")
        if ttl is not None and ttl <= 0:
            raise ConfigurationError(f"ttl must be positive seconds, got {ttl}")
        if self._limited:  # a wait never outlasts the event's ttl
            deadline = None if ttl is None else time.time() + ttl
            await self._limits.take(sender, topic, wait, deadline)
        return tc

    def _count_stored(self, tc: _TopicCounters, env: Envelope, duplicate: bool) -> None:
        if duplicate:  # stored once already, within the dedupe window
            self.metrics.duplicates += 1
            tc.duplicates += 1
            return
        self.metrics.published += 1
        tc.published += 1
        if not tc.routed:
            tc.unrouted += 1
        self.runtime.message_log.append(env)

    # -- replay and dead letters (pubsub.replay, pubsub.dead_letters) ------------------
    async def replay(
        self, agent: Agent | str, name: str | None = None, *, start: Start = "all"
    ) -> int:
        """Hand retained events to one subscription again (see ``Replays.replay``).

        Example::

            count = await rt.events.replay("auditor", start="all")
        """
        return await self._replays.replay(agent, name, start=start)

    async def dead_letters(
        self, *, subscription: str | None = None, start: int = 1, limit: int = 100
    ) -> list[DeadLetter]:
        """Dead letters, oldest first (see ``DeadLetters.dead_letters``).

        Example::

            for dl in await rt.events.dead_letters(subscription="billing__charge"):
                print(dl.sequence, dl.reason, dl.attempts, dl.last_error)
        """
        return await self.dlq.dead_letters(subscription=subscription, start=start, limit=limit)

    async def dead_letter(self, sequence: int) -> DeadLetter | None:
        """One dead letter by its sequence, or ``None`` (see ``DeadLetters.dead_letter``).

        Example::

            dl = await rt.events.dead_letter(3)
        """
        return await self.dlq.dead_letter(sequence)

    async def wait_dead_letter(
        self,
        *,
        topic: str | None = None,
        subscription: str | None = None,
        start: int = 1,
        timeout: float = 10.0,
    ) -> DeadLetter:
        """The first matching dead letter from ``start`` on, waiting for one without polling.

        See ``DeadLetters.wait_dead_letter`` (what wakes it, on which engine);
        raises :class:`TimeoutError` after ``timeout`` seconds.

        Example::

            dl = await rt.events.wait_dead_letter(subscription="billing__charge", timeout=5)
        """
        return await self.dlq.wait_dead_letter(
            topic=topic, subscription=subscription, start=start, timeout=timeout
        )

    async def redrive(self, sequence: int) -> bool:
        """Hand a dead letter back to its subscriber (see ``DeadLetters.redrive``).

        Example::

            ok = await rt.events.redrive(dl.sequence)
        """
        return await self.dlq.redrive(sequence)

    # -- metrics ----------------------------------------------------------------------------
    def statistics(self) -> PubSubStatistics:
        """A frozen snapshot of counters (stream figures and lag as of the last refresh).

        Example::

            print(rt.events.statistics().published)
        """
        subs, st, dlq = self._subs.values(), self._stream_info, self._dlq_info
        return self.core.add_to(self.metrics.snapshot(subs, st, dlq, self.dlq.deleted))

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
