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
  dead letter is stored; a handler cut short by shutdown leaves its event unacked;
* the handler runs in its :class:`~.subscription_handler.HandlerRunner` (retry,
  dead letter); an async handler running longer than ``handler_timeout`` is
  cancelled by the subscription's watchdog (:mod:`.subscription_handler`) and the
  attempt fails;
* the pump, the workers and the watchdog run in a task group of their own, under a
  :class:`~.subscription_restart.Supervisor`: an unexpected failure in any of them
  restarts the subscription after a backoff, never ends the runtime; every event
  held (running, queued, waiting behind its key or for a local retry) goes back to
  the engine, which delivers it again.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING

from agentcomm.core.errors import TransportClosed, TransportError, ValidationError
from agentcomm.core.flow import RetryPolicy
from agentcomm.pubsub.declare import EVENT_STREAM
from agentcomm.pubsub.metrics import SubscriptionCounters, _TopicCounters
from agentcomm.pubsub.subscription_handler import (
    HandlerRunner,
    Slot,
    TimedOut,
    _Owner,
    expired,
    watch,
)
from agentcomm.pubsub.subscription_restart import Supervisor
from agentcomm.transports.streams import ConsumerConfig, LogConsumer, LogMessage

if TYPE_CHECKING:
    from agentcomm.core.schema import HandlerSpec
    from agentcomm.host.agent import Agent

__all__ = ["Subscription"]

logger = logging.getLogger("agentcomm")

FETCH_BATCH = 256
FETCH_TIMEOUT = 1.0


class Subscription:
    """A running subscription: a pump task, workers, a watchdog, per-key ordering.

    It owns a :class:`HandlerRunner` (``handler``: one run of the handler, retries,
    dead letters) and a :class:`Supervisor` (restarts after a failure).
    """

    def __init__(
        self,
        pubsub: _Owner,
        agent: Agent,
        spec: HandlerSpec,
        *,
        pattern: str,
        durable: str,
        group: str | None,
        retry: RetryPolicy,
        concurrency: int,
        max_in_flight: int,
        handler_timeout: float | None = None,
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
        self.handler_timeout = handler_timeout
        self.counters = SubscriptionCounters()
        self.consumer: LogConsumer | None = None
        self._config: ConsumerConfig | None = None  # to open the consumer again on a restart
        self.lag = 0
        self.ack_wait = 4.0  # the consumer's, set by PubSub; see touch_held
        self.in_flight = 0  # held: fetched and not settled
        self.running = 0  # handlers running now
        self._held: dict[int, LogMessage] = {}
        self._ages: dict[int, float] = {}  # seq -> seconds held since the last in_progress
        self._key_head: dict[str, int] = {}
        self._key_wait: dict[str, deque[LogMessage]] = {}
        self._ready: deque[LogMessage] = deque()
        self._idle: list[asyncio.Future[None]] = []
        self._tc_topic: str | None = None
        self._tc: _TopicCounters | None = None
        self._room: asyncio.Future[None] | None = None
        self._wake: asyncio.Future[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []  # this run's: pump, workers, watchdog
        self._main: asyncio.Task[None] | None = None  # the supervisor's
        self._failure: asyncio.Future[Exception | None] | None = None  # ends a run
        self._closing = False
        self._restarting = False  # a run is ending after a failure
        self.stopped: str | None = None  # why it stopped on its own (statistics)
        self.handler = HandlerRunner(
            pubsub,
            agent,
            spec,
            durable=durable,
            group=group,
            retry=retry,
            handler_timeout=handler_timeout,
            counters=self.counters,
            requeue=self._requeue,
        )
        self.supervisor = Supervisor(self)

    @property
    def restarts(self) -> int:
        """Restarts after an unexpected failure of its loop (statistics)."""
        return self.supervisor.restarts

    @property
    def last_error(self) -> str | None:
        """The failure that caused the last restart (statistics)."""
        return self.supervisor.last_error

    # -- what the supervisor sees (subscription_restart.Supervised) ------------------
    @property
    def owner_name(self) -> str:
        """The subscribing agent's name."""
        return self.agent.name

    @property
    def closing(self) -> bool:
        """True once stop() began."""
        return self._closing

    async def reopen_consumer(self) -> None:
        """Open the consumer again after a failed run (with the config it started with)."""
        assert self._config is not None
        self.consumer = await self.pubsub.runtime.transport.open_consumer(
            EVENT_STREAM, self._config
        )

    def transport_closed(self, exc: TransportClosed) -> None:
        """The engine closed while reopening: stop for good, and say why in statistics."""
        self.stopped = f"transport closed: {exc}"

    # -- lifecycle ----------------------------------------------------------------
    def start(self, tg: asyncio.TaskGroup, consumer: LogConsumer, config: ConsumerConfig) -> None:
        """Run the subscription in ``tg`` on ``consumer`` (opened with ``config``)."""
        self.consumer = consumer
        self._config = config
        self.ack_wait = config.ack_wait
        name = f"agentcomm:sub:{self.durable}:{self.agent.name}"
        self._main = tg.create_task(self.supervisor.run(), name=name)

    async def run_until_failure(self) -> Exception | None:
        """One run: the pump, the workers and the watchdog; returns the failure that ended it.

        ``None`` when stop() ended it. The run owns its tasks (it awaits every one
        before it returns). A failing task does not abort the others at once: the
        workers and the watchdog are cancelled (their events stay unacked), but the
        pump may finish the fetch it waits in (a fetch cut short could lose the batch
        the engine is sending it) and hands that batch back.
        """
        loop = asyncio.get_running_loop()
        failure: asyncio.Future[Exception | None] = loop.create_future()
        self._failure = failure
        name = f"agentcomm:sub:{self.durable}:{self.agent.name}"
        pump = loop.create_task(self._pump(), name=f"{name}:pump")
        tasks = self._tasks = [pump]
        slots = [Slot() for _ in range(self.concurrency)]
        for i, slot in enumerate(slots):
            slot.task = loop.create_task(self._worker(slot), name=f"{name}:{i}")
            tasks.append(slot.task)
        if self.handler_timeout is not None:
            watchdog = watch(slots, self.handler_timeout)
            tasks.append(loop.create_task(watchdog, name=f"{name}:watchdog"))
        for t in tasks:
            t.add_done_callback(self._ended)
        try:
            exc = await failure
            if exc is not None and not self._closing:
                self._restarting = True
                for t in tasks[1:]:
                    t.cancel()
                _resolve(self._room)  # the pump returns: at once, or after its fetch
                await asyncio.wait([pump], timeout=FETCH_TIMEOUT + 5.0)
        finally:
            for t in tasks:
                t.cancel()  # a no-op for those done
            await asyncio.wait(tasks)
        return exc

    def _ended(self, task: asyncio.Task[None]) -> None:
        """A task of the run ended: an exception from it ends the run (see Supervisor)."""
        if task.cancelled() or (exc := task.exception()) is None:
            return
        if not isinstance(exc, Exception):  # KeyboardInterrupt and the like: asyncio raises it
            return
        failure = self._failure
        if failure is not None and not failure.done():
            failure.set_result(exc)
        else:
            logger.error("subscription %s: failed again", self.durable, exc_info=exc)

    async def forget_held(self) -> None:
        """After a failed run: forget what it held and close the consumer handle.

        Closing hands every unsettled event back to the engine, which delivers it
        again (at once; on NATS, after a nak), to the next run or to another member.
        """
        self.handler.cancel_retries()
        self._held.clear()
        self._ages = {}
        self._key_head.clear()
        self._key_wait.clear()
        self._ready.clear()
        self._idle.clear()
        self._room = None
        self.in_flight = self.running = 0
        self._tasks = []
        self._failure = None
        self._restarting = False
        if self.consumer is not None:
            try:
                await self.consumer.close()
            except Exception:
                logger.exception("subscription %s: closing its consumer failed", self.durable)

    async def stop(self, deadline: float) -> None:
        """Stop fetching; let running handlers finish until ``deadline`` (loop time)."""
        self._closing = True
        self.handler.cancel_retries()
        if self._tasks:
            self._tasks[0].cancel()  # the pump: waiting for room or in fetch
        _resolve(self._room)
        _resolve(self._wake)
        self.supervisor.wake()  # waiting to restart
        loop = asyncio.get_running_loop()
        while self.running and loop.time() < deadline:
            self._wake = loop.create_future()
            h = loop.call_later(min(0.05, max(deadline - loop.time(), 0)), _resolve, self._wake)
            try:
                await self._wake
            finally:
                h.cancel()
        cut = self.running  # the workers' finally counts them down as they are cancelled
        for t in self._tasks:
            t.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)
        self._tasks = []
        if self._failure is not None and not self._failure.done():
            self._failure.set_result(None)  # the run ends: the supervisor returns
        main = self._main
        if main is not None and not main.done():  # ends with its run; or in a restart
            await asyncio.wait([main], timeout=max(deadline - loop.time(), 1.0))
            if not main.done():
                main.cancel()
                await asyncio.wait([main])
        if cut:
            logger.warning(
                "subscription %s: %d handlers cut short at shutdown; their events stay unacked",
                self.durable,
                cut,
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
                if self._restarting:
                    return
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
            if self._restarting:  # the run ends after a failure: hand this batch back now
                for m in msgs:
                    await m.nak()
                return
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

    async def _worker(self, slot: Slot) -> None:
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
        fast = spec.context_arg is None and self.pubsub.runtime.guard is None and tracing is None
        held = self._held
        runner = self.handler
        retrying = runner.retrying
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
            attempt = m.num_delivered + retrying.get(m.sequence, 0) if retrying else m.num_delivered
            self.running += 1
            try:
                if m.invalid is not None:  # stored bytes that are not an envelope
                    outcome = await runner.dead(m, "invalid", m.invalid, attempt)
                elif fast and env.deadline is None:
                    try:
                        kwargs = decode_args(env.payload)
                    except ValidationError as exc:
                        outcome = await runner.dead(m, "invalid", str(exc), attempt)
                    else:
                        try:
                            if is_async:
                                slot.run = c.delivered  # seen by the watchdog (handler_timeout)
                                try:
                                    await fn(**kwargs)
                                finally:
                                    slot.run = 0
                            else:
                                runner.call_sync(kwargs)
                        except Exception as exc:
                            why = runner.why(exc, slot)
                            outcome = await runner.failed(m, attempt, why, c, tc, key is not None)
                        except asyncio.CancelledError:
                            if not expired(slot):  # a shutdown's or a restart's
                                raise
                            outcome = await runner.failed(
                                m, attempt, TimedOut(), c, tc, key is not None
                            )
                        else:
                            await m.ack()
                            c.acked += 1
                            tc.acked += 1
                            outcome = "ack"
                elif tracing is None:
                    outcome = await runner.run_untraced(m, attempt, c, tc, key is not None, slot)
                else:
                    keyed = key is not None
                    outcome = await runner.run_once(m, attempt, c, tc, local_retry=keyed, slot=slot)
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

    def _requeue(self, m: LogMessage) -> None:
        """A keyed event's local retry is due: queue it again (unless stopping)."""
        if not self._closing:
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
        retry) for a quarter of ``ack_wait`` gets ``in_progress()``, and again every
        quarter of it, so the engine does not hand it to someone else meanwhile. The
        ages are kept here, at this pace, so the hot path pays nothing.
        """
        ages = self._ages
        fresh: dict[int, float] = {}
        period = ack_wait / 4
        for seq, m in list(self._held.items()):
            age = ages.get(seq, 0.0) + elapsed
            if age >= period:
                age = 0.0
                await m.in_progress()
            fresh[seq] = age
        self._ages = fresh


def _resolve(fut: asyncio.Future[None] | None) -> None:
    if fut is not None and not fut.done():
        fut.set_result(None)
