"""Running a subscription's handler once: timeout, retry or dead letter.

Internal to :mod:`agentcomm.pubsub`: each
:class:`~agentcomm.pubsub.subscription.Subscription` owns one :class:`HandlerRunner`,
built with what it needs (the handler, the retry policy, the counters and a
``requeue`` callback for local retries), and its pump's workers call it. The runner
owns the local-retry state (attempts so far and their timers).

The handler timeout costs the hot path two attribute stores, no timer: each worker
has a :class:`Slot`; around the await of an async handler it holds a token of
that run (the subscription's delivery count, unique per run). One watchdog per
subscription (:func:`watch`) looks at the slots every tenth of ``handler_timeout``
(or at the next run's deadline, if sooner); a token it has seen for
``handler_timeout`` seconds is cancelled. So a run is cancelled once it has run the
timeout, and at most a tenth of it later. The watchdog marks the cancellation as its
own (``Slot.fired``) so that the worker tells it from a shutdown's, as
``asyncio.timeout`` does (``Task.uncancel``). Runs outside a worker (replay,
redrive) use ``asyncio.timeout`` instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from agentcomm.core.errors import Reject, Retry, ValidationError
from agentcomm.core.flow import RetryPolicy
from agentcomm.pubsub.metrics import SubscriptionCounters, _TopicCounters

if TYPE_CHECKING:
    from agentcomm.core.envelope import Envelope
    from agentcomm.core.schema import HandlerSpec
    from agentcomm.host.agent import Agent
    from agentcomm.host.runtime import Runtime
    from agentcomm.transports.streams import LogMessage

__all__ = ["HandlerRunner", "Slot", "TimedOut", "expired", "watch"]

logger = logging.getLogger("agentcomm")

#: The watchdog looks at the running handlers this many times per handler_timeout.
CHECKS_PER_TIMEOUT = 10


class _Owner(Protocol):
    """What a subscription needs of the runtime's pub/sub (``pubsub.bus.PubSub``)."""

    @property
    def runtime(self) -> Runtime: ...

    def _topic(self, topic: str) -> _TopicCounters: ...

    @property
    def dlq(self) -> _DeadLetterStore: ...


class _DeadLetterStore(Protocol):
    """Where a subscription stores a dead letter (``pubsub.dead_letters.DeadLetters``)."""

    async def store(
        self,
        agent: str,
        subscription: str,
        group: str | None,
        event: Envelope,
        reason: str,
        error: str | None,
        attempts: int,
    ) -> None: ...

    def settled(self) -> None: ...


class TimedOut(Exception):
    """A handler run outlived its subscription's handler_timeout (internal marker)."""


class Slot:
    """One worker's async handler run, as the watchdog sees it."""

    __slots__ = ("fired", "run", "seen", "since", "task")

    def __init__(self) -> None:
        self.run = 0  # token of the async handler run awaited now; 0 when none
        self.seen = 0  # the token the watchdog saw last
        self.since = 0.0  # when it first saw it (loop time)
        self.fired = 0  # the token it cancelled, until the worker took the cancellation
        self.task: asyncio.Task[None] | None = None


def expired(slot: Slot) -> bool:
    """Take the watchdog's cancellation of ``slot``'s run: True when it was the only one.

    False when the watchdog did not cancel it, or when another cancellation (a
    shutdown, a restart) is pending too: then the CancelledError must propagate.
    """
    if not slot.fired:
        return False
    slot.fired = 0
    task = slot.task
    return task is not None and task.uncancel() == 0


async def watch(slots: list[Slot], timeout: float) -> None:
    """Cancel every async handler run in ``slots`` that ran ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    period = max(timeout / CHECKS_PER_TIMEOUT, 0.001)
    while True:
        now = loop.time()
        wait = period
        for s in slots:
            run = s.run
            if s.fired and s.fired != run:  # the handler swallowed the cancel and returned
                s.fired = 0
                if s.task is not None:
                    s.task.uncancel()
            if not run or s.fired:
                continue
            if run != s.seen:
                s.seen, s.since = run, now
                continue
            left = s.since + timeout - now
            if left <= 0:
                s.fired = run
                if s.task is not None:
                    s.task.cancel()
            elif left < wait:
                wait = left
        await asyncio.sleep(wait)


class HandlerRunner:
    """Runs a subscription's handler once and settles its event (owned by ``Subscription``).

    ``requeue(m)`` hands a keyed event back to the subscription's queue when its
    local retry is due (see :meth:`run_once`).
    """

    def __init__(
        self,
        pubsub: _Owner,
        agent: Agent,
        spec: HandlerSpec,
        *,
        durable: str,
        group: str | None,
        retry: RetryPolicy,
        handler_timeout: float | None,
        counters: SubscriptionCounters,
        requeue: Callable[[LogMessage], None],
    ) -> None:
        self.pubsub = pubsub
        self.agent = agent
        self.spec = spec
        self.durable = durable
        self.group = group
        self.retry = retry
        self.handler_timeout = handler_timeout
        self.counters = counters
        self._requeue = requeue
        self.retrying: dict[int, int] = {}  # keyed seq -> local attempts so far
        self._timers: set[asyncio.TimerHandle] = set()

    def cancel_retries(self) -> None:
        """Forget every pending local retry (the subscription stops or restarts)."""
        for h in self._timers:
            h.cancel()
        self._timers.clear()
        self.retrying.clear()

    async def run_once(
        self,
        m: LogMessage,
        attempt: int,
        c: SubscriptionCounters,
        tc: _TopicCounters,
        *,
        local_retry: bool,
        slot: Slot | None = None,
    ) -> str:
        """Run the handler once; return how the event was settled.

        ``"ack"`` (handled), ``"dead"`` (dead letter stored, message terminated),
        ``"nak"`` (handed back to the engine for a later redelivery) or ``"retry"``
        (kept here, retried after its backoff: only with ``local_retry``). With
        tracing on, the attempt runs in a ``"process <topic>"`` span continuing the
        publisher's trace (docs/tracing.md). ``slot`` is the calling worker's (its
        watchdog enforces the handler timeout); without one, ``asyncio.timeout`` does.
        """
        tracing = self.pubsub.runtime.tracing
        if tracing is None:
            return await self.run_untraced(m, attempt, c, tc, local_retry, slot)
        env = m.envelope
        attrs = tracing.message_attributes(env)
        attrs["messaging.destination.subscription.name"] = self.durable
        attrs["messaging.consumer.group.name"] = self.group
        attrs["agentcomm.attempt"] = attempt
        attrs["agentcomm.sequence"] = m.sequence
        attrs["agentcomm.agent"] = self.agent.name
        topic = env.topic or ""
        with tracing.span("process", topic, kind="consumer", parent=env, attributes=attrs):
            return await self.run_untraced(m, attempt, c, tc, local_retry, slot)

    async def run_untraced(
        self,
        m: LogMessage,
        attempt: int,
        c: SubscriptionCounters,
        tc: _TopicCounters,
        local_retry: bool,
        slot: Slot | None = None,
    ) -> str:
        env = m.envelope
        if m.invalid is not None:  # stored bytes that are not an envelope
            return await self.dead(m, "invalid", m.invalid, attempt)
        guard = self.pubsub.runtime.guard  # limits, signature, policy: docs/security.md
        if guard is not None and (bad := guard.admit_event(self.agent.name, env)) is not None:
            return await self.dead(m, bad[0], bad[1], attempt)
        if env.deadline is not None and env.deadline <= time.time():
            c.expired += 1
            tc.expired += 1
            return await self.dead(m, "expired", "its ttl passed before it was handled", attempt)
        spec = self.spec
        try:
            kwargs = spec.decode_args(env.payload)
        except ValidationError as exc:
            return await self.dead(m, "invalid", str(exc), attempt)
        if spec.context_arg is not None:
            kwargs[spec.context_arg] = self.agent.context_class(self.agent, env)
        try:
            if spec.is_async:
                await self._call_async(kwargs, slot, c.delivered)
            else:
                self.call_sync(kwargs)
        except Exception as exc:
            return await self.failed(m, attempt, self.why(exc, slot), c, tc, local_retry)
        await m.ack()
        c.acked += 1
        tc.acked += 1
        return "ack"

    async def _call_async(self, kwargs: dict[str, Any], slot: Slot | None, token: int) -> None:
        """Await the handler; raise TimedOut when it outlived the handler timeout."""
        fn = self.spec.fn
        timeout = self.handler_timeout
        if slot is not None:  # a worker's: its watchdog keeps the time
            slot.run = token
            try:
                await fn(**kwargs)
            except asyncio.CancelledError:
                if expired(slot):
                    raise TimedOut from None
                raise
            finally:
                slot.run = 0
        elif timeout is None:
            await fn(**kwargs)
        else:
            cm = asyncio.timeout(timeout)
            try:
                async with cm:
                    await fn(**kwargs)
            except TimeoutError:
                if cm.expired():
                    raise TimedOut from None
                raise

    def call_sync(self, kwargs: dict[str, Any]) -> None:
        """Call a sync handler: it cannot be cancelled, so an overrun is only logged."""
        timeout = self.handler_timeout
        if timeout is None:
            self.spec.fn(**kwargs)
            return
        t0 = time.monotonic()
        try:
            self.spec.fn(**kwargs)
        finally:
            took = time.monotonic() - t0
            if took > timeout:
                logger.warning(
                    "subscription %s: sync handler %s ran %.1f s, longer than its "
                    "handler_timeout (%g s); a sync handler cannot be cancelled and blocks "
                    "the event loop while it runs: make it async",
                    self.durable,
                    self.spec.name,
                    took,
                    timeout,
                )

    @staticmethod
    def why(exc: Exception, slot: Slot | None) -> Exception:
        """``exc``, or TimedOut when the handler raised it while being cancelled for time."""
        if slot is not None and slot.fired and expired(slot):
            return TimedOut()
        return exc

    async def failed(
        self,
        m: LogMessage,
        attempt: int,
        exc: Exception,
        c: SubscriptionCounters,
        tc: _TopicCounters,
        local_retry: bool,
    ) -> str:
        """The handler raised (or timed out): retry (here or through nak), or dead-letter."""
        tracing = self.pubsub.runtime.tracing
        if isinstance(exc, TimedOut):
            reason = "timeout"
            error = (
                f"TimeoutError: the handler ran longer than handler_timeout="
                f"{self.handler_timeout:g} s and was cancelled"
            )
            c.timeouts += 1
            tc.timeouts += 1
            logger.warning(
                "subscription %s: attempt %d of event %s timed out: %s",
                self.durable,
                attempt,
                m.sequence,
                error,
            )
            delay = self.retry.delay(attempt)
            if tracing is not None:  # the attempt's span (run_once) is current
                tracing.record_failure("timeout", "TimeoutError", error)
                attrs = {"agentcomm.handler_timeout": self.handler_timeout}
                tracing.event("timeout", {**attrs, "agentcomm.attempt": attempt})
        else:
            reason = "max_attempts"
            if tracing is not None:  # the attempt's span (run_once) is current
                tracing.record_failure("error", type(exc).__name__, str(exc))
            if isinstance(exc, Reject):
                return await self.dead(m, "rejected", exc.reason, attempt)
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
            return await self.dead(m, reason, error, attempt)
        c.retried += 1
        tc.retried += 1
        if tracing is not None:
            tracing.event(
                "retry",
                {"agentcomm.retry.delay": delay, "agentcomm.attempt": attempt, "error": error},
            )
        if local_retry:
            self.retrying[m.sequence] = self.retrying.get(m.sequence, 0) + 1
            await m.in_progress()
            loop = asyncio.get_running_loop()
            handle: asyncio.TimerHandle | None = None

            def again() -> None:
                if handle is not None:
                    self._timers.discard(handle)
                self._requeue(m)

            handle = loop.call_later(delay, again)
            self._timers.add(handle)
            return "retry"
        await m.nak(delay)
        return "nak"  # no longer held here: the engine redelivers it

    async def dead(self, m: LogMessage, reason: str, error: str | None, attempts: int) -> str:
        """Store ``m``'s dead letter, then terminate it (``"dead"``); ``"nak"`` if that failed."""
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
            await self.pubsub.dlq.store(
                self.agent.name, self.durable, self.group, m.envelope, reason, error, attempts
            )
        except Exception:
            logger.exception(
                "subscription %s: storing the dead letter of event %s failed; will retry",
                self.durable,
                m.sequence,
            )
            await m.nak(self.retry.delay(attempts))
            return "nak"
        try:
            await m.term()
            self.counters.dead_lettered += 1
            self.pubsub._topic(m.envelope.topic or "").dead_lettered += 1
        finally:
            self.pubsub.dlq.settled()  # wakes wait_dead_letter(), also when term failed
        return "dead"
