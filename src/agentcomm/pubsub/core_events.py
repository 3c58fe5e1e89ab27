"""Core (non-durable) pub/sub: ``publish(durable=False)``, ``@agent.on(durable=False)``.

Internal to :mod:`agentcomm.pubsub`; :class:`CoreEvents` is owned by the runtime's
``PubSub`` (``rt.events.core``), which hands it the ``durable=False`` calls. An event
goes through the engine's :class:`~agentcomm.transports.broadcast.Broadcast` part
(memory: the listeners' sinks; NATS: core publish on ``<ns>.e.<topic>``): no log,
no sequence, no acknowledgement, at most once.

What stays the same as for durable events: the envelope (kind ``"event"``), topic
checks and wildcards, the access hook (``publish`` on the sender's side,
``subscribe`` when a subscription starts), the publish rate limits, the guard's seal
(limits, signature) and, on the receiving side, ``admit_event`` (signature, limits,
the policy re-checked across processes), the ttl, the handler's schema, its
``handler_timeout``, tracing spans (``publish``/``process``) and the per-topic
``core_published`` counter.

What differs: a subscription holds a bounded queue (``max_in_flight`` events); past
it the *oldest* waiting event is dropped and counted (``dropped``), so a slow handler
never grows memory nor slows the publisher. An event the handler fails on, whose
payload its schema refuses, that the guard refuses or whose ttl passed is counted
and logged (the first, then every ``LOG_EVERY``-th), never retried nor dead-lettered:
there is no stored copy to retry or to redrive.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol

from agentcomm.core.envelope import Envelope
from agentcomm.core.errors import ConfigurationError, ValidationError
from agentcomm.pubsub.core_stats import CoreCounters, CoreSubscriptionStatistics
from agentcomm.pubsub.declare import one_pattern
from agentcomm.pubsub.publishing import event_envelope, untraced_envelope
from agentcomm.pubsub.subscription_handler import Slot, expired, watch

if TYPE_CHECKING:
    from agentcomm.host.agent import Agent
    from agentcomm.host.runtime import Runtime
    from agentcomm.pubsub.declare import _SubSpec
    from agentcomm.pubsub.metrics import PubSubStatistics, _TopicCounters
    from agentcomm.transports.broadcast import Listener

__all__ = ["LOG_EVERY", "CoreEvents", "CoreSubscription"]

logger = logging.getLogger("agentcomm")

#: A failure of one kind is logged the first time, then every LOG_EVERY-th time.
LOG_EVERY = 1000


class _Bus(Protocol):
    """What core events need of the runtime's pub/sub (``pubsub.bus.PubSub``)."""

    @property
    def runtime(self) -> Runtime: ...

    async def admit_publish(
        self, sender: str, topic: str, key: str | None, ttl: float | None, wait: bool
    ) -> _TopicCounters: ...


class CoreEvents:
    """The core events of one runtime's pub/sub: publishing and the running subscriptions.

    Example::

        await rt.events.core.publish("probe", "metrics.cpu", {"load": 0.4})
    """

    def __init__(self, bus: _Bus) -> None:
        self.bus = bus
        self.runtime = bus.runtime
        self.published = 0
        self._subs: dict[tuple[str, str], CoreSubscription] = {}
        self._groups: dict[str, str] = {}

    async def publish(
        self,
        sender: str,
        topic: str,
        payload: Any = None,
        key: str | None = None,
        msg_id: str | None = None,
        ttl: float | None = None,
        wait: bool = True,
        headers: dict[str, str] | None = None,
        cause: Envelope | None = None,
    ) -> int:
        """Send a core event to the subscriptions listening now; return 0 (no sequence).

        Example::

            await rt.events.core.publish("probe", "metrics.cpu", {"load": 0.4})
        """
        if msg_id is not None:
            raise ConfigurationError(
                "msg_id dedupes in the event log; a durable=False event is not stored, so "
                "there is nothing to dedupe against: drop msg_id or publish durably"
            )
        rt = self.runtime
        tc = await self.bus.admit_publish(sender, topic, key, ttl, wait)
        tracing = rt.tracing
        if tracing is not None:
            attrs = {"agentcomm.sender": sender, "agentcomm.key": key, "agentcomm.durable": False}
            with tracing.span("publish", topic, kind="producer", attributes=attrs):
                tp, ts = tracing.current_traceparent()
                env = event_envelope(sender, topic, payload, key, None, ttl, headers, cause, tp, ts)
                await self._send(env)
                tracing.describe_current(env)
        else:
            await self._send(
                untraced_envelope(sender, topic, payload, key, None, ttl, headers, cause)
            )
        self.published += 1
        tc.core_published += 1
        return 0

    async def _send(self, env: Envelope) -> None:
        rt = self.runtime
        if rt.guard is not None:  # limits and signature (docs/security.md)
            env = rt.guard.seal(env)
        await rt.transport.broadcast(env)
        rt.message_log.append(env)

    # -- subscriptions --------------------------------------------------------------
    async def start_subscription(self, agent: Agent, spec: _SubSpec) -> None:
        """Start ``agent``'s core subscription ``spec`` unless it runs already."""
        key = (agent.name, spec.name)
        if key in self._subs:
            return
        rt = self.runtime
        rt.authorize(agent.name, "subscribe", spec.pattern)
        one_pattern(self._groups, spec, agent.name)
        sub = CoreSubscription(self.runtime, agent, spec)
        self._subs[key] = sub
        try:
            await sub.start()
        except BaseException:
            self._subs.pop(key, None)
            raise

    async def detach_agent(self, agent: Agent) -> None:
        """Stop ``agent``'s core subscriptions (queued events are dropped)."""
        keys = [k for k, s in self._subs.items() if s.agent is agent]
        await asyncio.gather(*(self._subs.pop(k).stop() for k in keys))

    async def aclose(self) -> None:
        """Stop every core subscription (the runtime's shutdown)."""
        subs = list(self._subs.values())
        self._subs.clear()
        await asyncio.gather(*(s.stop() for s in subs))

    def add_to(self, snap: PubSubStatistics) -> PubSubStatistics:
        """``snap`` with the core figures filled in."""
        if not self._subs and not self.published:
            return snap
        import msgspec

        rows = tuple(s.statistics() for s in self._subs.values())
        return msgspec.structs.replace(snap, core_published=self.published, core_subscriptions=rows)


class CoreSubscription:
    """One agent's running core subscription: a listener, a bounded queue, workers.

    Example::

        sub = CoreSubscription(rt, agent, spec); await sub.start(); ...; await sub.stop()
    """

    def __init__(self, runtime: Runtime, agent: Agent, spec: _SubSpec) -> None:
        self.runtime = runtime
        self.agent = agent
        self.spec = spec
        self.name = spec.durable(agent.name)
        self.capacity = spec.max_in_flight
        self.counters = CoreCounters()
        self.running = 0
        self._runs = 0  # a token per handler run, for the watchdog
        self._queue: deque[Envelope] = deque()
        self._idle: list[asyncio.Future[None]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._listener: Listener | None = None
        self._closing = False

    async def start(self) -> None:
        """Listen on the engine and start the workers (in the runtime's task group)."""
        rt, spec = self.runtime, self.spec
        self._listener = await rt.transport.listen(spec.pattern, self.put, group=spec.group)
        tg = rt.task_group
        where = f"agentcomm:core:{self.name}:{self.agent.name}"
        slots = [Slot() for _ in range(spec.concurrency)]
        for i, slot in enumerate(slots):
            slot.task = tg.create_task(self._worker(slot), name=f"{where}:{i}")
            self._tasks.append(slot.task)
        if spec.handler_timeout is not None and spec.handler.is_async:
            self._tasks.append(
                tg.create_task(watch(slots, spec.handler_timeout), name=f"{where}:watchdog")
            )

    def put(self, env: Envelope) -> None:
        """The engine's sink: queue ``env``, dropping the oldest when full. Never blocks."""
        q = self._queue
        c = self.counters
        c.received += 1
        if len(q) >= self.capacity:
            q.popleft()
            c.dropped += 1
            if c.dropped % LOG_EVERY == 1:
                logger.warning(
                    "core subscription %s of %s: its queue is full (%d), dropping the oldest "
                    "event (%d so far)",
                    self.name,
                    self.agent.name,
                    self.capacity,
                    c.dropped,
                )
        q.append(env)
        idle = self._idle
        if idle:
            fut = idle.pop()
            if not fut.done():
                fut.set_result(None)

    async def stop(self) -> None:
        """Stop listening and cancel the workers; queued events are dropped (at most once)."""
        self._closing = True
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                await listener.close()
            except Exception:
                logger.exception("core subscription %s: closing its listener failed", self.name)
        for t in self._tasks:
            t.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)
        self._tasks = []
        self._queue.clear()

    def statistics(self) -> CoreSubscriptionStatistics:
        """A frozen snapshot of this subscription's counters."""
        c = self.counters
        listener = self._listener
        return CoreSubscriptionStatistics(
            name=self.name,
            agent=self.agent.name,
            pattern=self.spec.pattern,
            group=self.spec.group,
            received=c.received,
            handled=c.handled,
            failed=c.failed,
            invalid=c.invalid,
            refused=c.refused,
            expired=c.expired,
            timeouts=c.timeouts,
            dropped=c.dropped,
            engine_dropped=0 if listener is None else listener.dropped,
            queued=len(self._queue),
            max_queued=self.capacity,
            running=self.running,
        )

    def _note(self, what: str, count: int, env: Envelope, why: object) -> None:
        if count % LOG_EVERY == 1:
            logger.warning(
                "core subscription %s of %s: event %s on %r %s (not retried; %d so far): %s",
                self.name,
                self.agent.name,
                env.id,
                env.topic,
                what,
                count,
                why,
            )

    async def _worker(self, slot: Slot) -> None:
        loop = asyncio.get_running_loop()
        q, idle = self._queue, self._idle
        while not self._closing:
            if not q:
                fut: asyncio.Future[None] = loop.create_future()
                idle.append(fut)
                await fut
                continue
            env = q.popleft()
            self.running += 1
            try:
                tracing = self.runtime.tracing
                if tracing is None:
                    await self._handle(env, slot)
                else:
                    attrs = tracing.message_attributes(env)
                    attrs["messaging.destination.subscription.name"] = self.name
                    attrs["messaging.consumer.group.name"] = self.spec.group
                    attrs["agentcomm.agent"] = self.agent.name
                    attrs["agentcomm.durable"] = False
                    topic = env.topic or ""
                    with tracing.span(
                        "process", topic, kind="consumer", parent=env, attributes=attrs
                    ):
                        await self._handle(env, slot)
            except Exception as exc:  # never end the worker (it lives in the runtime's group)
                self.counters.failed += 1
                self._note("failed", self.counters.failed, env, repr(exc))
            finally:
                self.running -= 1

    async def _handle(self, env: Envelope, slot: Slot) -> None:
        c, spec, agent = self.counters, self.spec.handler, self.agent
        guard = self.runtime.guard  # limits, signature, policy: docs/security.md
        if guard is not None and (bad := guard.admit_event(agent.name, env)) is not None:
            c.refused += 1
            self._note(f"refused ({bad[0]})", c.refused, env, bad[1])
            return
        if env.deadline is not None and env.deadline <= time.time():
            c.expired += 1
            self._note("expired", c.expired, env, "its ttl passed before it was handled")
            return
        try:
            kwargs = spec.decode_args(env.payload)
        except ValidationError as exc:
            c.invalid += 1
            self._note("is invalid", c.invalid, env, exc)
            return
        if spec.context_arg is not None:
            kwargs[spec.context_arg] = agent.context_class(agent, env)
        try:
            if spec.is_async:
                self._runs += 1
                slot.run = self._runs  # seen by the watchdog (handler_timeout)
                try:
                    await spec.fn(**kwargs)
                finally:
                    slot.run = 0
            else:
                spec.fn(**kwargs)
        except asyncio.CancelledError:
            if not expired(slot):  # a shutdown's
                raise
            c.timeouts += 1
            c.failed += 1
            self._note("timed out", c.failed, env, f"handler_timeout {self.spec.handler_timeout}")
            return
        except Exception as exc:
            c.failed += 1
            self._note("failed in its handler", c.failed, env, repr(exc))
            return
        c.handled += 1
