"""The delivery engine of one event subscription: fetch, order by key, retry, dead-letter.

Internal to :mod:`agentcomm.pubsub`. One :class:`Subscription` per subscribing agent
(or per group member) pulls from its durable consumer and runs the handler:

* at most ``max_in_flight`` events are held (fetched, not yet settled); the
  consumer's ``max_ack_pending`` is the same bound on the engine side;
* ``concurrency`` handlers run at once; events with the same ``key`` run strictly in
  sequence order, also across retries (a keyed event that fails is retried by this
  member after its backoff while only the later events of its key wait); events
  without a key are retried through ``nak(delay)``;
* an event is acked only after its handler returned; it is terminated only after its
  dead letter is stored; a handler cut short by shutdown leaves its event unacked.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING

from .context import Context
from .errors import Reject, Retry, TransportClosed, TransportError, ValidationError
from .flow import RetryPolicy
from .transports.streams import LogConsumer, LogMessage

if TYPE_CHECKING:
    from .agent import Agent
    from .pubsub import PubSub
    from .pubsub_metrics import _TopicCounters
    from .schema import HandlerSpec

__all__ = ["Subscription", "SubscriptionCounters"]

logger = logging.getLogger("agentcomm")

FETCH_BATCH = 256
FETCH_TIMEOUT = 1.0


class SubscriptionCounters:
    """Mutable counters of one subscription (snapshotted by ``statistics()``)."""

    __slots__ = ("acked", "dead_lettered", "delivered", "expired", "retried")

    def __init__(self) -> None:
        self.delivered = self.acked = self.retried = self.dead_lettered = self.expired = 0


class Subscription:
    """A running subscription: a pump task, optional workers, per-key ordering."""

    def __init__(
        self,
        pubsub: PubSub,
        agent: Agent,
        spec: HandlerSpec,
        *,
        pattern: str,
        durable: str,
        group: str | None,
        retry: RetryPolicy,
        concurrency: int,
        max_in_flight: int,
    ) -> None:
        self.pubsub = pubsub
        self.agent = agent
        self.spec = spec
        self.pattern = pattern
        self.durable = durable
        self.group = group
        self.retry = retry
        self.concurrency = concurrency
        self.max_in_flight = max_in_flight
        self.counters = SubscriptionCounters()
        self.consumer: LogConsumer | None = None
        self.lag = 0
        self.ack_wait = 60.0  # the consumer's, set by PubSub; see touch_held
        self.in_flight = 0  # held: fetched and not settled
        self.running = 0  # handlers running now
        self._held: dict[int, LogMessage] = {}
        self._ages: dict[int, float] = {}  # seq -> seconds held since the last in_progress
        self._key_head: dict[str, int] = {}
        self._key_wait: dict[str, deque[LogMessage]] = {}
        self._retrying: dict[int, int] = {}  # keyed seq -> local attempts so far
        self._timers: set[asyncio.TimerHandle] = set()
        self._ready: deque[LogMessage] = deque()
        self._idle: list[asyncio.Future[None]] = []
        self._tc_topic: str | None = None
        self._tc: _TopicCounters | None = None
        self._room: asyncio.Future[None] | None = None
        self._wake: asyncio.Future[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self.stopped: str | None = None  # why it stopped on its own (statistics)

    # -- lifecycle ----------------------------------------------------------------
    def start(self, tg: asyncio.TaskGroup, consumer: LogConsumer) -> None:
        self.consumer = consumer
        name = f"agentcomm:sub:{self.durable}:{self.agent.name}"
        self._tasks.append(tg.create_task(self._pump(), name=name))
        for i in range(self.concurrency):
            self._tasks.append(tg.create_task(self._worker(), name=f"{name}:{i}"))

    async def stop(self, deadline: float) -> None:
        """Stop fetching; let running handlers finish until ``deadline`` (loop time)."""
        self._closing = True
        for h in self._timers:
            h.cancel()
        self._timers.clear()
        if self._tasks:
            self._tasks[0].cancel()  # the pump: waiting for room or in fetch
        _resolve(self._room)
        _resolve(self._wake)
        loop = asyncio.get_running_loop()
        while self.running and loop.time() < deadline:
            self._wake = loop.create_future()
            h = loop.call_later(min(0.05, max(deadline - loop.time(), 0)), _resolve, self._wake)
            try:
                await self._wake
            finally:
                h.cancel()
        for t in self._tasks:
            t.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)
        self._tasks = []
        if self.running:
            logger.warning(
                "subscription %s: %d handlers cut short at shutdown; their events stay unacked",
                self.durable,
                self.running,
            )
        if self.consumer is not None:
            try:
                await self.consumer.close()
            except Exception:
                logger.exception("subscription %s: closing its consumer failed", self.durable)

    # -- fetching and routing -------------------------------------------------------
    async def _pump(self) -> None:
        consumer = self.consumer
        assert consumer is not None
        loop = asyncio.get_running_loop()
        backoff = 0.05
        while not self._closing:
            room = self.max_in_flight - self.in_flight
            if room <= 0:
                self._room = loop.create_future()
                await self._room
                continue
            try:
                msgs = await consumer.fetch(min(room, FETCH_BATCH), FETCH_TIMEOUT)
            except TransportClosed as exc:
                if not self._closing:  # not our shutdown: say so, never die silently
                    self.stopped = f"transport closed: {exc}"
                    logger.error(
                        "subscription %s of agent %s stopped: its transport closed (%s); "
                        "no more events are delivered to it",
                        self.durable,
                        self.agent.name,
                        exc,
                    )
                return
            except TransportError as exc:  # an engine's transient failure: retry, bounded
                logger.warning("subscription %s: fetch failed (%s); retrying", self.durable, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.05
            held = self._held
            ready = self._ready
            taken = 0
            for m in msgs:
                seq = m.sequence
                if seq in held:  # redelivered while we still hold it
                    continue
                held[seq] = m
                taken += 1
                if m.envelope.key is None:
                    ready.append(m)
                else:
                    self._route(m)
            self.in_flight += taken
            idle = self._idle
            while idle and ready:
                _resolve(idle.pop())

    async def _worker(self) -> None:
        ready = self._ready
        idle = self._idle
        loop = asyncio.get_running_loop()
        c = self.counters
        spec = self.spec
        fn, decode_args, is_async = spec.fn, spec.decode_args, spec.is_async
        # With a security guard (limits, signatures, policy: docs/security.md) every event
        # takes run_once, which checks it before the handler; keep this in the fast test.
        # Tracing (docs/tracing.md) also takes run_once, which opens the "process" span.
        tracing = self.pubsub.runtime.tracing
        fast = spec.context_arg is None and self.pubsub.runtime._guard is None and tracing is None
        held = self._held
        # The hot path, inlined: one coroutine per event (the handler's) besides the ack.
        while not self._closing:
            if not ready:
                fut: asyncio.Future[None] = loop.create_future()
                idle.append(fut)
                await fut
                continue
            m = ready.popleft()
            env = m.envelope
            key = env.key
            topic = env.topic
            tc = self._tc
            if tc is None or topic != self._tc_topic:
                tc = self._tc = self.pubsub._topic(topic or "")
                self._tc_topic = topic
            c.delivered += 1
            tc.delivered += 1
            retrying = self._retrying
            attempt = m.num_delivered + retrying.get(m.sequence, 0) if retrying else m.num_delivered
            self.running += 1
            try:
                if m.invalid is not None:  # stored bytes that are not an envelope
                    outcome = await self._dead(m, "invalid", m.invalid, attempt)
                elif fast and env.deadline is None:
                    try:
                        kwargs = decode_args(env.payload)
                    except ValidationError as exc:
                        outcome = await self._dead(m, "invalid", str(exc), attempt)
                    else:
                        try:
                            if is_async:
                                await fn(**kwargs)
                            else:
                                fn(**kwargs)
                        except Exception as exc:
                            outcome = await self._failed(m, attempt, exc, c, tc, key is not None)
                        else:
                            await m.ack()
                            c.acked += 1
                            tc.acked += 1
                            outcome = "ack"
                elif tracing is None:
                    outcome = await self._run_once(m, attempt, c, tc, key is not None)
                else:
                    outcome = await self.run_once(m, attempt, c, tc, local_retry=key is not None)
            finally:
                self.running -= 1
                if self._closing and self._wake is not None:
                    _resolve(self._wake)
            if outcome != "retry":
                if retrying:
                    retrying.pop(m.sequence, None)
                held.pop(m.sequence, None)
                self.in_flight -= 1
                room = self._room
                if room is not None:
                    self._room = None
                    _resolve(room)
                if key is not None:
                    self._release_key(key)
        # What is still queued stays unacked: delivered again when the consumer is next used.

    def _route(self, m: LogMessage) -> None:
        key = m.envelope.key
        if key is not None:
            head = self._key_head.get(key)
            if head is None:
                self._key_head[key] = m.sequence
            elif head != m.sequence:
                q = self._key_wait.get(key)
                if q is None:
                    q = self._key_wait[key] = deque()
                q.append(m)
                return
        self._push(m)

    def _push(self, m: LogMessage) -> None:
        self._ready.append(m)
        if self._idle:
            _resolve(self._idle.pop())

    def _release_key(self, key: str) -> None:
        q = self._key_wait.get(key)
        if q:
            nxt = q.popleft()
            if not q:
                del self._key_wait[key]
            self._key_head[key] = nxt.sequence
            self._push(nxt)
        else:
            self._key_head.pop(key, None)

    async def touch_held(self, elapsed: float, ack_wait: float) -> None:
        """Called every ``elapsed`` seconds: keep long-held events from being redelivered.

        An event held here (running, waiting behind its key, or waiting for a local
        retry) for a third of ``ack_wait`` gets ``in_progress()``, and again every
        third of it, so the engine does not hand it to someone else meanwhile. The
        ages are kept here, at this pace, so the hot path pays nothing.
        """
        ages = self._ages
        fresh: dict[int, float] = {}
        period = ack_wait / 3
        for seq, m in list(self._held.items()):
            age = ages.get(seq, 0.0) + elapsed
            if age >= period:
                age = 0.0
                await m.in_progress()
            fresh[seq] = age
        self._ages = fresh

    # -- handling ---------------------------------------------------------------------
    async def run_once(
        self,
        m: LogMessage,
        attempt: int,
        c: SubscriptionCounters,
        tc: _TopicCounters,
        *,
        local_retry: bool,
    ) -> str:
        """Run the handler once; return how the event was settled.

        ``"ack"`` (handled), ``"dead"`` (dead letter stored, message terminated),
        ``"nak"`` (handed back to the engine for a later redelivery) or ``"retry"``
        (kept here, retried after its backoff: only with ``local_retry``). With
        tracing on, the attempt runs in a ``"process <topic>"`` span continuing the
        publisher's trace (docs/tracing.md).
        """
        tracing = self.pubsub.runtime.tracing
        if tracing is None:
            return await self._run_once(m, attempt, c, tc, local_retry)
        env = m.envelope
        attrs = tracing.message_attributes(env)
        attrs["messaging.destination.subscription.name"] = self.durable
        attrs["messaging.consumer.group.name"] = self.group
        attrs["agentcomm.attempt"] = attempt
        attrs["agentcomm.sequence"] = m.sequence
        attrs["agentcomm.agent"] = self.agent.name
        topic = env.topic or ""
        with tracing.span("process", topic, kind="consumer", parent=env, attributes=attrs):
            return await self._run_once(m, attempt, c, tc, local_retry)

    async def _run_once(
        self,
        m: LogMessage,
        attempt: int,
        c: SubscriptionCounters,
        tc: _TopicCounters,
        local_retry: bool,
    ) -> str:
        env = m.envelope
        if m.invalid is not None:  # stored bytes that are not an envelope
            return await self._dead(m, "invalid", m.invalid, attempt)
        guard = self.pubsub.runtime._guard  # limits, signature, policy: docs/security.md
        if guard is not None and (bad := guard.admit_event(self.agent.name, env)) is not None:
            return await self._dead(m, bad[0], bad[1], attempt)
        if env.deadline is not None and env.deadline <= time.time():
            c.expired += 1
            tc.expired += 1
            return await self._dead(m, "expired", "its ttl passed before it was handled", attempt)
        spec = self.spec
        try:
            kwargs = spec.decode_args(env.payload)
        except ValidationError as exc:
            return await self._dead(m, "invalid", str(exc), attempt)
        if spec.context_arg is not None:
            kwargs[spec.context_arg] = Context(self.agent, env)
        try:
            if spec.is_async:
                await spec.fn(**kwargs)
            else:
                spec.fn(**kwargs)
        except Exception as exc:
            return await self._failed(m, attempt, exc, c, tc, local_retry)
        await m.ack()
        c.acked += 1
        tc.acked += 1
        return "ack"

    async def _failed(
        self,
        m: LogMessage,
        attempt: int,
        exc: Exception,
        c: SubscriptionCounters,
        tc: _TopicCounters,
        local_retry: bool,
    ) -> str:
        """The handler raised: retry (here or through nak), or dead-letter the event."""
        tracing = self.pubsub.runtime.tracing
        if tracing is not None:  # the attempt's span (run_once) is current
            tracing.record_failure("error", type(exc).__name__, str(exc))
        if isinstance(exc, Reject):
            return await self._dead(m, "rejected", exc.reason, attempt)
        if isinstance(exc, Retry):
            error = f"Retry: {exc.reason}"
            delay = exc.delay if exc.delay is not None else self.retry.delay(attempt)
        else:
            error = f"{type(exc).__name__}: {exc}"
            logger.info(
                "subscription %s: attempt %d of event %s failed: %s",
                self.durable,
                attempt,
                m.sequence,
                error,
            )
            delay = self.retry.delay(attempt)
        if attempt >= self.retry.max_attempts:
            return await self._dead(m, "max_attempts", error, attempt)
        c.retried += 1
        tc.retried += 1
        if tracing is not None:
            tracing.event(
                "retry",
                {"agentcomm.retry.delay": delay, "agentcomm.attempt": attempt, "error": error},
            )
        if local_retry:
            self._retrying[m.sequence] = self._retrying.get(m.sequence, 0) + 1
            await m.in_progress()
            loop = asyncio.get_running_loop()
            handle: asyncio.TimerHandle | None = None

            def again() -> None:
                if handle is not None:
                    self._timers.discard(handle)
                if not self._closing:
                    self._push(m)

            handle = loop.call_later(delay, again)
            self._timers.add(handle)
            return "retry"
        await m.nak(delay)
        return "nak"  # no longer held here: the engine redelivers it

    async def _dead(self, m: LogMessage, reason: str, error: str | None, attempts: int) -> str:
        tracing = self.pubsub.runtime.tracing
        if tracing is not None:  # the attempt's span (run_once) is current
            tracing.event(
                "dead_letter",
                {
                    "agentcomm.dead_letter.reason": reason,
                    "agentcomm.attempt": attempts,
                    "error": error,
                },
            )
        try:
            await self.pubsub._store_dead_letter(self, m.envelope, reason, error, attempts)
        except Exception:
            logger.exception(
                "subscription %s: storing the dead letter of event %s failed; will retry",
                self.durable,
                m.sequence,
            )
            await m.nak(self.retry.delay(attempts))
            return "nak"
        await m.term()
        self.counters.dead_lettered += 1
        self.pubsub._topic(m.envelope.topic or "").dead_lettered += 1
        return "dead"


def _resolve(fut: asyncio.Future[None] | None) -> None:
    if fut is not None and not fut.done():
        fut.set_result(None)
