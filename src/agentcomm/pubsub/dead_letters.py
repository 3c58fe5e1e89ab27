"""The dead-letter queue of a runtime's pub/sub: store, list, wait for, redrive.

Internal to :mod:`agentcomm.pubsub`: the runtime's :class:`~agentcomm.pubsub.PubSub`
owns one :class:`DeadLetters` and delegates ``rt.events.dead_letters()``,
``dead_letter()``, ``wait_dead_letter()`` and ``redrive()`` to it; its
subscriptions store their dead letters through it, which wakes the waiters.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

import msgspec

from agentcomm.core.envelope import (
    Envelope,
    decode_guarded,
    encode_envelope,
    encode_payload,
    invalid_frame,
    invalid_frame_bytes,
    new_id,
)
from agentcomm.core.errors import ConfigurationError, DecodeError, TransportClosed, TransportError
from agentcomm.core.topics import check_pattern, compile_pattern
from agentcomm.pubsub.declare import DEAD_LETTER_STREAM, EVENT_STREAM
from agentcomm.transports.streams import ConsumerConfig, LogConsumer, LogMessage

if TYPE_CHECKING:
    from agentcomm.host.runtime import Runtime
    from agentcomm.pubsub.metrics import _TopicCounters
    from agentcomm.pubsub.subscription import Subscription

__all__ = ["DEAD_LETTER_STREAM", "EVENT_STREAM", "DeadLetter", "DeadLetters"]

logger = logging.getLogger("agentcomm")

#: How many queue entries one read of :meth:`DeadLetters.wait_dead_letter` takes.
WAIT_PAGE = 100
#: A waiter's consumer on the queue (a shared engine) is deleted by the engine after
#: this long unused, should the process die while waiting.
WAIT_INACTIVE = 60.0


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """An event a subscriber could not handle, kept in the bounded dead-letter queue.

    ``reason`` is ``"max_attempts"`` (every retry failed), ``"timeout"`` (the last
    attempt outlived the subscription's ``handler_timeout``), ``"rejected"`` (the
    handler raised Reject), ``"expired"`` (its TTL passed) or ``"invalid"`` (the
    payload does not match the handler's schema, or the stored bytes are not an
    envelope at all: then ``event`` is a stand-in holding them, see
    :func:`~agentcomm.envelope.invalid_frame_bytes`). ``sequence`` is its number in
    the dead-letter queue; ``event`` the original event (with its own sequence), or
    that stand-in holding the event's encoded bytes when the event could not be read
    back inside a dead letter (a payload too deep, or not JSON, from a local sender).

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


class DeadLetters:
    """The dead-letter queue of one runtime's pub/sub (``rt.events`` delegates here).

    ``subscriptions`` is the pub/sub's live table of running subscriptions (redrive
    hands a dead letter back to one of them), ``topic(name)`` its counters of a
    topic and ``ensure()`` starts the pub/sub if it has not started yet.

    Example::

        for dl in await rt.events.dead_letters():
            await rt.events.redrive(dl.sequence)
    """

    def __init__(
        self,
        runtime: Runtime,
        subscriptions: Mapping[tuple[str, str], Subscription],
        topic: Callable[[str], _TopicCounters],
        ensure: Callable[[], Awaitable[None]],
    ) -> None:
        self.runtime = runtime
        self._subs = subscriptions
        self._topic = topic
        self._ensure = ensure
        self.deleted = 0  # dead letters redriven out of the queue (statistics)
        # Set, then replaced, whenever this runtime stores a dead letter: one event,
        # however many wait (wait_dead_letter).
        self._stored = asyncio.Event()

    async def store(
        self,
        agent: str,
        subscription: str,
        group: str | None,
        event: Envelope,
        reason: str,
        error: str | None,
        attempts: int,
    ) -> None:
        """Store the dead letter of ``event`` for ``subscription`` (then call :meth:`settled`)."""
        dl = DeadLetter(
            reason=reason,
            attempts=attempts,
            last_error=error,
            agent=agent,
            subscription=subscription,
            group=group,
            topic=event.topic or "",
            event=event,
            failed_at=time.time(),
        )
        payload = encode_payload(dl)
        try:  # what cannot be read back (a local sender's raw payload) is kept as bytes
            decode_guarded(_dead_letter_decoder.decode, payload, "dead letter")
        except DecodeError:
            raw = invalid_frame(encode_envelope(event), topic=event.topic, sequence=event.sequence)
            payload = encode_payload(msgspec.structs.replace(dl, event=raw))
        env = Envelope(
            id=new_id(),
            kind="event",
            sender=agent,
            topic=f"dlq.{subscription}",
            payload=payload,
            causation_id=event.id,
            traceparent=event.traceparent,
        )
        await self.runtime.transport.append(DEAD_LETTER_STREAM, env)

    def settled(self) -> None:
        """A stored dead letter's event is settled (terminated, counted): wake the waiters.

        Called after :meth:`store`, once the subscription's counters include it, so a
        waiter that wakes sees the statistics that go with the dead letter.
        """
        stored, self._stored = self._stored, asyncio.Event()
        stored.set()

    @staticmethod
    def _decode_dead_letter(env: Envelope) -> DeadLetter:
        what = f"dead letter #{env.sequence}"
        dl = decode_guarded(_dead_letter_decoder.decode, env.payload, what)
        return msgspec.structs.replace(dl, sequence=env.sequence or 0)

    def _decode_or_count(self, env: Envelope) -> DeadLetter | None:
        try:
            return self._decode_dead_letter(env)
        except DecodeError as exc:
            self.runtime._rejects.add("dead_letter", f"{DEAD_LETTER_STREAM} #{env.sequence}", exc)
            return None

    async def dead_letters(
        self, *, subscription: str | None = None, start: int = 1, limit: int = 100
    ) -> list[DeadLetter]:
        """Dead letters, oldest first (of one subscription's durable name, if given).

        Entries of the queue that are not dead letters (written there by something
        else) are skipped and counted in ``rt.statistics().rejected_frames``.

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
        return [dl for e in envs if (dl := self._decode_or_count(e)) is not None]

    async def dead_letter(self, sequence: int) -> DeadLetter | None:
        """One dead letter by its sequence, or ``None`` if it is gone.

        Raises :class:`~agentcomm.errors.DecodeError` when that entry is not a dead letter.

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
        if invalid_frame_bytes(dl.event) is not None:
            raise ConfigurationError(
                f"dead letter {sequence} holds stored bytes that are not an envelope (a "
                "hostile or broken publisher); there is no event to redrive, only to inspect"
            )
        subs = [s for s in self._subs.values() if s.durable == dl.subscription]
        if not subs:
            raise ConfigurationError(
                f"subscription {dl.subscription!r} does not run in this runtime; redrive "
                "from the runtime where its agent runs"
            )
        sub = subs[0]
        self.runtime.authorize_subscription(sub.agent.name, sub.pattern, sub.spec.name, sub.group)
        guard = self.runtime.guard
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
                await sub.handler.run_once(m, m.num_delivered, c, tc, local_retry=False)
                if m.outcome != "nak":
                    break
                await asyncio.sleep(m.delay)
                m.num_delivered += 1
        finally:
            if guard is not None:
                guard.release(event)
        if await self.runtime.transport.delete_message(DEAD_LETTER_STREAM, sequence):
            self.deleted += 1
        return m.outcome == "ack"

    # -- waiting for one ----------------------------------------------------------------
    async def wait_dead_letter(
        self,
        *,
        topic: str | None = None,
        subscription: str | None = None,
        start: int = 1,
        timeout: float = 10.0,
    ) -> DeadLetter:
        """The first dead letter from sequence ``start`` on; waits until there is one.

        ``topic`` (a topic or a pattern, NATS rules) and ``subscription`` (a durable
        name) narrow the match. The queue is read first, so a dead letter stored
        before the call is found too; then the call sleeps until a dead letter is
        stored (no polling) and reads again. Raises :class:`TimeoutError` after
        ``timeout`` seconds without a match. To wait for the next one, pass
        ``start=previous.sequence + 1``.

        What wakes it: every dead letter this runtime stores, on any engine. On a
        shared engine (NATS) without a policy it also holds a consumer on the queue,
        so a dead letter stored by another process wakes it as well. Under a policy
        (``access=``) the broker config grants no consumer on the queue: there it sees
        another process's dead letters only when one of this runtime's wakes it, or
        when it was stored before the call.

        Example::

            dl = await rt.events.wait_dead_letter(topic="orders.*", timeout=5.0)
            print(dl.reason, dl.last_error)
        """
        if timeout <= 0:
            raise ConfigurationError(f"timeout must be positive seconds, got {timeout}")
        if isinstance(start, bool) or not isinstance(start, int) or start < 1:
            raise ConfigurationError(f"start must be a sequence number >= 1, got {start!r}")
        subject = "dlq.>" if subscription is None else f"dlq.{subscription}"
        check_pattern(subject)
        if topic is not None:
            check_pattern(topic)
        match = None if topic is None else compile_pattern(topic)
        await self._ensure()
        rt = self.runtime
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        doorbell: LogConsumer | None = None
        watch_queue = rt.transport.shared and rt.access is None
        name = f"dlqwait_{new_id()}"
        try:
            while True:
                stored = self._stored  # a store during the read below sets this one
                while True:  # read what is there, a page at a time
                    envs = await rt.transport.read_messages(
                        DEAD_LETTER_STREAM, start_seq=start, limit=WAIT_PAGE, filter_subject=subject
                    )
                    for env in envs:
                        start = max(start, (env.sequence or 0) + 1)
                        dl = self._decode_or_count(env)
                        if dl is not None and (match is None or match(dl.topic)):
                            return dl
                    if len(envs) < WAIT_PAGE:
                        break
                left = end - loop.time()
                if left <= 0:
                    what = f"subscription {subscription!r}" if subscription else "any subscription"
                    raise TimeoutError(
                        f"no dead letter of {what} matching topic {topic or '>'!r} from sequence "
                        f"{start} within {timeout:g} s"
                    )
                if watch_queue and doorbell is None:
                    doorbell = await self._open_doorbell(name, subject, start)
                    watch_queue = doorbell is not None
                await _woken(stored, doorbell, left)
        finally:
            if doorbell is not None:
                await doorbell.close()
                await rt.transport.delete_consumer(DEAD_LETTER_STREAM, name)

    async def _open_doorbell(self, name: str, subject: str, start: int) -> LogConsumer | None:
        """A consumer on the queue from ``start``: its fetch returns when a dead letter
        is stored, by any process (a wake-up only: the waiter reads the queue itself).

        ``None``, with a warning, when the engine refuses it (a broker whose
        permissions grant no consumer on the queue): then only this runtime's dead
        letters wake the waiter.
        """
        try:
            return await self._open_consumer(name, subject, start)
        except TransportClosed:
            raise
        except TransportError as exc:
            logger.warning(
                "wait_dead_letter: no consumer on the dead-letter stream (%s); only this "
                "runtime's dead letters wake the wait",
                exc,
            )
            return None

    async def _open_consumer(self, name: str, subject: str, start: int) -> LogConsumer:
        return await self.runtime.transport.open_consumer(
            DEAD_LETTER_STREAM,
            ConsumerConfig(
                name=name,
                filter_subject=subject,
                deliver="by_start_sequence",
                opt_start_seq=start,
                max_ack_pending=WAIT_PAGE,
                inactive_threshold=WAIT_INACTIVE,
            ),
        )


async def _woken(stored: asyncio.Event, doorbell: LogConsumer | None, left: float) -> None:
    """Return when ``stored`` is set, ``doorbell`` fetches something, or after ``left`` s."""
    if doorbell is None:
        try:
            async with asyncio.timeout(left):
                await stored.wait()
        except TimeoutError:
            pass
        return
    local = asyncio.ensure_future(stored.wait())
    remote = asyncio.ensure_future(doorbell.fetch(WAIT_PAGE, left))
    try:
        await asyncio.wait([local, remote], timeout=left, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (local, remote):
            t.cancel()
        await asyncio.wait([local, remote])
    if remote.done() and not remote.cancelled():
        for m in remote.result():  # an engine's failure propagates
            await m.ack()
