"""Core pub/sub on core NATS (the ``Broadcast`` contract): publish/subscribe, no JetStream.

Subjects::

    <ns>.e.<topic>      a core event; a listener subscribes ``<ns>.e.<pattern>``
                        (NATS wildcards are the topic wildcards), a group with the
                        group's name as its queue group

Nothing is stored: an event reaches the subscriptions the server has when it
arrives, at most once. A listener's subscription holds at most ``PENDING_LIMIT``
undelivered events in the client; past it nats-py drops the newest and reports a
slow consumer, which is counted in the listener's ``dropped``. ``listen`` returns
after a round trip, so the server has the subscription before anyone is told.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import nats.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from agentcomm.core.envelope import encode_envelope
from agentcomm.core.errors import AgentCommError
from agentcomm.transports.broadcast import EventSink, Listener
from agentcomm.transports.nats.errors import nats_error

if TYPE_CHECKING:
    from nats.aio.client import Client

    from agentcomm.core.envelope import Envelope
    from agentcomm.transports.nats.admin import Violations

__all__ = ["PENDING_LIMIT", "NatsBroadcast"]

logger = logging.getLogger("agentcomm.nats")

#: Undelivered events one listener's subscription may hold in the client.
PENDING_LIMIT = 65_536
#: The subject token of core events, after the namespace.
TOKEN = "e"


class _NatsListener(Listener):
    __slots__ = ("_dropped", "_owner", "_sub", "group", "pattern")

    def __init__(self, owner: NatsBroadcast, pattern: str, group: str | None) -> None:
        self._owner = owner
        self.pattern = pattern
        self.group = group
        self._sub: Subscription | None = None
        self._dropped = 0

    @property
    def dropped(self) -> int:
        return self._dropped

    async def close(self) -> None:
        sub, self._sub = self._sub, None
        if sub is None:
            return
        self._owner._listeners.pop(sub._id, None)
        try:
            await sub.unsubscribe()
            nc = self._owner._nc
            if nc is not None and nc.is_connected:
                await nc.flush(timeout=1)
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            logger.debug("closing the listener of %s: %s", self.pattern, exc)


class NatsBroadcast:
    """Core events of :class:`~agentcomm.transports.nats.NatsTransport`.

    Example::

        listener = await transport.listen("metrics.>", seen.append, group="dash")
        await transport.broadcast(event)
    """

    namespace: str
    _nc: Client | None
    _violations: Violations
    #: Open listeners by their subscription id (slow-consumer reports find them).
    _listeners: dict[int, _NatsListener]

    if TYPE_CHECKING:  # provided by NatsTransport

        @property
        def client(self) -> Client: ...

        def _count_malformed(self, kind: str, where: str, error: object) -> None: ...

        def _decode_or_count(self, msg: Msg, kind: str) -> Envelope | None: ...

    def _init_broadcast(self) -> None:
        self._listeners = {}
        self._violations.slow = self._slow_consumer

    def _slow_consumer(self, sub: Any) -> None:
        listener = self._listeners.get(getattr(sub, "_id", -1))
        if listener is not None:
            listener._dropped += 1

    async def _close_broadcast(self) -> None:
        listeners, self._listeners = list(self._listeners.values()), {}
        for listener in listeners:
            sub, listener._sub = listener._sub, None
            if sub is not None:
                try:
                    await sub.unsubscribe()
                except (nats.errors.Error, OSError) as exc:
                    logger.debug("unsubscribe failed: %s", exc)

    async def broadcast(self, envelope: Envelope) -> None:
        nc = self.client
        subject = f"{self.namespace}.{TOKEN}.{envelope.topic}"
        try:
            await nc.publish(subject, encode_envelope(envelope))
        except (nats.errors.Error, OSError, AgentCommError) as exc:
            raise nats_error(exc, f"publishing to {envelope.topic!r}") from exc

    async def listen(self, pattern: str, sink: EventSink, *, group: str | None = None) -> Listener:
        nc = self.client
        listener = _NatsListener(self, pattern, group)
        decode = self._decode_or_count

        async def on_event(msg: Msg) -> None:
            env = decode(msg, "event")
            if env is not None:
                try:
                    sink(env)
                except Exception:
                    logger.exception("a listener of %r failed on event %s", pattern, env.id)

        subject = f"{self.namespace}.{TOKEN}.{pattern}"
        try:
            sub = await nc.subscribe(
                subject, queue=group or "", cb=on_event, pending_msgs_limit=PENDING_LIMIT
            )
        except (nats.errors.Error, OSError) as exc:
            raise nats_error(exc, f"subscribing to {pattern!r}") from exc
        listener._sub = sub
        self._listeners[sub._id] = listener
        try:  # the first flush writes the SUB, the second follows it (see _round_trip)
            await nc.flush(timeout=5)
            await nc.flush(timeout=5)
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            await listener.close()
            raise nats_error(exc, f"subscribing to {pattern!r}") from exc
        return listener
