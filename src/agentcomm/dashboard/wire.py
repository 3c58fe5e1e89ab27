"""The dashboard of a whole namespace on NATS: presence, the wire, the shared stores.

:class:`NamespaceSource` is what ``agentcomm dashboard --nats URL`` reads. Agents
come from the presence records every runtime writes (``read_presence``, as
``agentcomm agents`` and ``stats`` read them); topics from each runtime's pub/sub
statistics in its presence record and subscriptions (lag, in flight) from the
agents' records; stream figures from the operator runtime's pub/sub. Messages come
from a plain subscription to ``<ns>.a.>``, ``<ns>.s.>`` and ``_INBOX.>``, as
``agentcomm tail`` subscribes: it never takes a message from an agent. The frames
wait, undecoded, in a bounded queue (the oldest dropped and counted); each poll
decodes at most what the dashboard will show.

Dead letters, the blackboard and tasks are read with the runtime given (an operator
runtime with no agents); a redrive re-publishes the event on its topic, as ``agentcomm
dlq redrive --nats`` does, since the subscriber runs in another process.

Example::

    source = NamespaceSource(operator_rt)
    await source.start()
    snap = await source.snapshot()
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Any

import msgspec

from agentcomm.core.envelope import decode_envelope, invalid_frame_bytes
from agentcomm.core.errors import ConfigurationError, DecodeError
from agentcomm.dashboard.sources import RuntimeSource, Seen, _builtins, agent_counts
from agentcomm.observability.presence import read_presence
from agentcomm.pubsub.bus import PubSub
from agentcomm.pubsub.declare import DEAD_LETTER_STREAM, EVENT_STREAM
from agentcomm.pubsub.partitions import event_subject

if TYPE_CHECKING:
    from agentcomm.host.runtime import Runtime

__all__ = ["NamespaceSource"]

#: Frames from the wire waiting to be looked at; past this the oldest are dropped.
WIRE_QUEUE = 4000
#: Frames one poll decodes at most (the newest): the rest are counted, not decoded.
DECODE_PER_POLL = 1000


class NamespaceSource(RuntimeSource):
    """Every runtime of a NATS namespace, seen from an operator runtime ``rt``.

    Example::

        source = NamespaceSource(rt); await source.start()
    """

    scope = "namespace"

    def __init__(self, rt: Runtime, *, bucket: str = "blackboard", operator: str = "operator"):
        super().__init__(rt, bucket=bucket, operator=operator)
        self._frames: deque[tuple[str, bytes, bool]] = deque(maxlen=WIRE_QUEUE)
        #: Frames dropped from the wire queue before being looked at.
        self.wire_dropped = 0
        self._subs: list[Any] = []
        self._stream_refreshed = 0.0
        self._streams: tuple[int, int] = (0, 0)

    @property
    def namespace(self) -> str:
        return str(getattr(self.rt.transport, "namespace", ""))

    async def start(self) -> None:
        """Subscribe to the namespace's subjects (as ``agentcomm tail`` does)."""
        nc = self.rt.transport.client  # type: ignore[attr-defined]
        ns = self.namespace
        frames = self._frames

        async def on_msg(msg: Any) -> None:
            if len(frames) == WIRE_QUEUE:
                self.wire_dropped += 1
            frames.append((msg.subject, msg.data, False))

        async def on_inbox(msg: Any) -> None:
            if len(frames) == WIRE_QUEUE:
                self.wire_dropped += 1
            frames.append((msg.subject, msg.data, True))

        for subject in (f"{ns}.a.>", f"{ns}.s.>"):
            self._subs.append(await nc.subscribe(subject, cb=on_msg))
        self._subs.append(await nc.subscribe("_INBOX.>", cb=on_inbox))
        await nc.flush()

    async def aclose(self) -> None:
        """Unsubscribe."""
        subs, self._subs = self._subs, []
        for s in subs:
            try:
                await s.unsubscribe()
            except Exception:  # the connection may be closing already
                pass

    def poll(self) -> tuple[list[Seen], int]:
        """The frames that passed since the last poll, decoded; whether some were dropped."""
        frames = list(self._frames)
        self._frames.clear()
        dropped = self.wire_dropped + max(len(frames) - DECODE_PER_POLL, 0)
        frames = frames[-DECODE_PER_POLL:]
        self.wire_dropped = 0
        ns = self.namespace
        out: list[Seen] = []
        for subject, data, inbox in frames:
            try:
                env = decode_envelope(data)
            except DecodeError:
                continue  # acknowledgements, JetStream API replies: not envelopes
            kind: str | None = None
            if inbox and env.kind != "response":
                continue  # an event fetched by a subscriber: shown when published
            if subject.startswith(f"{ns}.s.DLQ."):
                kind = "dead-letter"
            elif subject.startswith(f"{ns}.s.") and env.kind != "event":
                continue  # stream-side traffic that is not an event
            elif subject.startswith(f"{ns}.a.") and subject.endswith(".nb"):
                kind = "notification"
            out.append((env, kind, len(data)))
        if dropped:
            self.wraps += 1
        return out, dropped

    async def snapshot(self) -> dict[str, Any]:
        """Agents (one row per instance), topics, subscriptions, streams, failures."""
        try:
            agents, runtimes = await read_presence(self.rt.transport)
        except ConfigurationError:
            agents, runtimes = [], []  # no runtime announced itself here yet
        rows = []
        subs: dict[str, dict[str, Any]] = {}
        for rec in agents:
            a = rec.statistics
            rows.append(
                {
                    "agent": rec.agent,
                    "instance": rec.instance,
                    "where": f"{rec.host}:{rec.pid}",
                    "handlers": [t.handler for t in rec.tools],
                    "subscriptions": [s.pattern for s in rec.subscriptions],
                    **agent_counts(a),
                    "updated": rec.updated,
                }
            )
            for s in rec.subscriptions:
                subs.setdefault(f"{s.name}/{rec.instance}", _builtins(s))
        topics: dict[str, dict[str, Any]] = {}
        failures: dict[str, Any] = {}
        for r in runtimes:
            for tp in r.pubsub.topics if r.pubsub else ():
                row = topics.get(tp.topic)
                if row is None:
                    topics[tp.topic] = _builtins(tp)
                    continue
                for k in ("published", "delivered", "acked", "retried", "dead_lettered"):
                    row[k] += getattr(tp, k)
                row["publish_rate"] += tp.publish_rate
                row["deliver_rate"] += tp.deliver_rate
            for kind, f in r.errors.items():
                failures[f"{r.host}:{r.pid} {kind}"] = _builtins(f)
        events, dead = await self._stream_figures()
        return {
            "time": time.time(),
            "scope": self.scope,
            "transport": f"nats ({self.namespace})",
            "agents": rows,
            "topics": [topics[k] for k in sorted(topics)],
            "subscriptions": [subs[k] for k in sorted(subs)],
            "events_stored": events,
            "dead_letters": dead,
            "failures": failures,
            "messages_logged": 0,
        }

    async def _stream_figures(self) -> tuple[int, int]:
        t = self.rt.transport
        try:
            ev = await t.stream_info(EVENT_STREAM)
            dlq = await t.stream_info(DEAD_LETTER_STREAM)
        except ConfigurationError:
            return 0, 0  # no runtime used pub/sub in this namespace yet
        self._streams = (ev.messages, dlq.messages)
        return self._streams

    async def redrive(self, sequence: int) -> dict[str, Any]:
        """Re-publish a dead letter's event on its topic, then delete the dead letter.

        Every subscription of the topic sees the event again (as with ``agentcomm
        dlq redrive --nats``); the message id ``redrive-<seq>-<event id>`` makes two
        redrives within the duplicate window one. The operator must be allowed to
        ``publish`` the topic.
        """
        dl = await PubSub.of(self.rt).dead_letter(sequence)
        if dl is None:
            raise ConfigurationError(f"no dead letter #{sequence}")
        if invalid_frame_bytes(dl.event) is not None:
            raise ConfigurationError(f"dead letter #{sequence} holds no event to redrive")
        self.rt.authorize(self.operator, "publish", dl.topic)
        t = self.rt.transport
        event = msgspec.structs.replace(dl.event, deadline=None, sequence=None)
        seq = await t.append(
            EVENT_STREAM,
            event,
            msg_id=f"redrive-{sequence}-{event.id}",
            subject=event_subject(event),
        )
        await t.delete_message(DEAD_LETTER_STREAM, sequence)
        return {"redriven": sequence, "topic": dl.topic, "event_sequence": seq}
