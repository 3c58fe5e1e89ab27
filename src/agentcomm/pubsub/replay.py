"""Replay: retained events handed to one subscription again (``rt.events.replay()``).

Internal to :mod:`agentcomm.pubsub`: the runtime's :class:`~agentcomm.pubsub.PubSub`
owns one :class:`Replays` and delegates ``replay()`` to it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

from agentcomm.core.envelope import new_id
from agentcomm.core.errors import ConfigurationError
from agentcomm.pubsub.declare import EVENT_STREAM, REPLAY_SUFFIX, Start, _deliver
from agentcomm.pubsub.partitions import event_filter
from agentcomm.transports.streams import ConsumerConfig, DeliverPolicy

if TYPE_CHECKING:
    from agentcomm.host.agent import Agent
    from agentcomm.host.runtime import Runtime
    from agentcomm.pubsub.metrics import _TopicCounters
    from agentcomm.pubsub.subscription import Subscription

__all__ = ["REPLAY_INACTIVE", "Replays"]

#: A replay consumer not used for this long is deleted by the engine (JetStream's
#: ``inactive_threshold``), so one left behind by a crashed process does not linger.
REPLAY_INACTIVE = 600.0


class Replays:
    """The replays of one runtime's subscriptions (``rt.events.replay()`` runs here).

    ``subscriptions`` is the pub/sub's live table of running subscriptions,
    ``topic(name)`` its counters of a topic and ``ensure()`` starts the pub/sub if
    it has not started yet.

    Example::

        count = await Replays(rt, subs, topic, ensure).replay("auditor", start="all")
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
        self._running: set[str] = set()  # replay consumers (fixed names, under a policy)

    def find(self, agent: Agent | str, name: str | None) -> Subscription:
        """The one running subscription of ``agent`` called ``name`` (or its only one)."""
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
        sub = self.find(agent, name)
        rt = self.runtime
        rt.authorize_subscription(sub.agent.name, sub.pattern, sub.spec.name, sub.group)
        deliver, seq, at = _deliver(start)
        t = rt.transport
        target = (await t.stream_info(EVENT_STREAM)).last_seq
        if rt.access is None:
            durable = f"{sub.durable}__replay_{new_id()}"
        else:  # the one name the broker config grants for it (docs/security.md)
            durable = sub.durable + REPLAY_SUFFIX
            if durable in self._running:
                raise ConfigurationError(
                    f"a replay of {sub.durable!r} is already running in this runtime; under a "
                    "policy a subscription replays one at a time (wait for it to finish)"
                )
        self._running.add(durable)
        try:
            if rt.access is not None:  # a leftover of a replay that died keeps its position
                await t.delete_consumer(EVENT_STREAM, durable)
            return await self._replay(sub, durable, target, deliver, seq, at)
        finally:
            self._running.discard(durable)

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
                filter_subject=event_filter(sub.pattern),
                deliver=deliver,
                opt_start_seq=seq,
                opt_start_time=at,
                max_ack_pending=sub.max_in_flight,
                ack_wait=sub.ack_wait,
                inactive_threshold=max(REPLAY_INACTIVE, 2 * sub.ack_wait),
            ),
        )
        handled = 0
        run_once = sub.handler.run_once
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
                    outcome = await run_once(m, m.num_delivered, c, tc, local_retry=False)
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
