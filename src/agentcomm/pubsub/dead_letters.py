"""Replay, dead letters and redrive of a runtime's pub/sub (methods of :class:`PubSub`).

Internal to :mod:`agentcomm.pubsub`: :class:`DeadLetterOps` is a base class of
:class:`~agentcomm.pubsub.PubSub`, so ``rt.events.replay()``, ``dead_letters()``,
``dead_letter()`` and ``redrive()`` are used as before; this module only keeps them
out of the module that publishes and starts subscriptions.
"""

from __future__ import annotations

import asyncio
import time
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
from agentcomm.core.errors import ConfigurationError, DecodeError
from agentcomm.core.topics import check_pattern
from agentcomm.pubsub.declare import (
    DEAD_LETTER_STREAM,
    EVENT_STREAM,
    REPLAY_SUFFIX,
    Start,
    _deliver,
)
from agentcomm.transports.streams import ConsumerConfig, DeliverPolicy, LogMessage

if TYPE_CHECKING:
    from agentcomm.host.agent import Agent
    from agentcomm.host.runtime import Runtime
    from agentcomm.pubsub.metrics import _TopicCounters
    from agentcomm.pubsub.subscription import Subscription
    from agentcomm.pubsub.subscription_handler import HandlerRuns

__all__ = ["DEAD_LETTER_STREAM", "EVENT_STREAM", "DeadLetter", "DeadLetterOps"]


#: A replay consumer not used for this long is deleted by the engine (JetStream's
#: ``inactive_threshold``), so one left behind by a crashed process does not linger.
REPLAY_INACTIVE = 600.0


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


class DeadLetterOps:
    """Replay, dead letters and redrive; a base class of :class:`~agentcomm.pubsub.PubSub`.

    Example::

        count = await rt.events.replay("auditor", start="all")
        for dl in await rt.events.dead_letters():
            await rt.events.redrive(dl.sequence)
    """

    runtime: Runtime
    _subs: dict[tuple[str, str], Subscription]
    _dlq_deleted: int

    if TYPE_CHECKING:  # PubSub's

        async def _ensure(self) -> None: ...

        def _topic(self, topic: str) -> _TopicCounters: ...

    # -- replay ---------------------------------------------------------------------------
    @property
    def _replaying(self) -> set[str]:
        """Replay consumers (fixed names, under a policy) running in this runtime."""
        running: set[str] = self.__dict__.setdefault("_replaying_names", set())
        return running

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
        stored when it starts, from ``start``, and returns how many were handled
        (events published meanwhile are left to the subscription itself). Each call
        uses a consumer of its own, named with a fresh id, so replays in several
        processes never share one, and it is deleted when the replay ends (by the
        engine after a while of disuse if the process dies first). Under a policy
        (``access=``) the consumer is ``<durable>__replay``, the one name the generated
        broker config grants: one replay of a subscription at a time.

        Example::

            count = await rt.events.replay("auditor", start=datetime.now(UTC) - timedelta(hours=1))
        """
        await self._ensure()
        sub = self._find(agent, name)
        rt = self.runtime
        rt.authorize_subscription(sub.agent.name, sub.pattern, sub.spec.name, sub.group)
        deliver, seq, at = _deliver(start)
        t = rt.transport
        target = (await t.stream_info(EVENT_STREAM)).last_seq
        if rt.access is None:
            durable = f"{sub.durable}__replay_{new_id()}"
        else:  # the one name the broker config grants for it (docs/security.md)
            durable = sub.durable + REPLAY_SUFFIX
            if durable in self._replaying:
                raise ConfigurationError(
                    f"a replay of {sub.durable!r} is already running in this runtime; under a "
                    "policy a subscription replays one at a time (wait for it to finish)"
                )
        self._replaying.add(durable)
        try:
            if rt.access is not None:  # a leftover of a replay that died keeps its position
                await t.delete_consumer(EVENT_STREAM, durable)
            return await self._replay(sub, durable, target, deliver, seq, at)
        finally:
            self._replaying.discard(durable)

    async def _replay(
        self,
        sub: Subscription,
        durable: str,
        target: int,
        deliver: DeliverPolicy,
        seq: int | None,
        at: float | None,
    ) -> int:
        t = self.runtime.transport
        consumer = await t.open_consumer(
            EVENT_STREAM,
            ConsumerConfig(
                name=durable,
                filter_subject=sub.pattern,
                deliver=deliver,
                opt_start_seq=seq,
                opt_start_time=at,
                max_ack_pending=sub.max_in_flight,
                ack_wait=sub.ack_wait,
                inactive_threshold=max(REPLAY_INACTIVE, 2 * sub.ack_wait),
            ),
        )
        handled = 0
        try:
            while True:
                msgs = await consumer.fetch(64, 0.05)
                past = not msgs
                for m in msgs:
                    if m.sequence > target:  # published after the replay began: not ours
                        await m.ack()
                        past = True
                        continue
                    c = sub.counters
                    tc = self._topic(m.envelope.topic or "")
                    c.delivered += 1
                    tc.delivered += 1
                    outcome = await sub.run_once(m, m.num_delivered, c, tc, local_retry=False)
                    if outcome != "nak":
                        handled += 1
                if past:
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
        self, sub: HandlerRuns, event: Envelope, reason: str, error: str | None, attempts: int
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
        payload = encode_payload(dl)
        try:  # what cannot be read back (a local sender's raw payload) is kept as bytes
            decode_guarded(_dead_letter_decoder.decode, payload, "dead letter")
        except DecodeError:
            raw = invalid_frame(encode_envelope(event), topic=event.topic, sequence=event.sequence)
            payload = encode_payload(msgspec.structs.replace(dl, event=raw))
        env = Envelope(
            id=new_id(),
            kind="event",
            sender=sub.agent.name,
            topic=f"dlq.{sub.durable}",
            payload=payload,
            causation_id=event.id,
            traceparent=event.traceparent,
        )
        await self.runtime.transport.append(DEAD_LETTER_STREAM, env)

    @staticmethod
    def _decode_dead_letter(env: Envelope) -> DeadLetter:
        what = f"dead letter #{env.sequence}"
        dl = decode_guarded(_dead_letter_decoder.decode, env.payload, what)
        return msgspec.structs.replace(dl, sequence=env.sequence or 0)

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
        out = []
        for e in envs:
            try:
                out.append(self._decode_dead_letter(e))
            except DecodeError as exc:
                self.runtime._rejects.add("dead_letter", f"{DEAD_LETTER_STREAM} #{e.sequence}", exc)
        return out

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
