"""The broadcast part of the transport contract: core (non-durable) pub/sub.

Pub/sub's durable events go through the event log (:class:`~.log.EventLog`): stored,
acknowledged, retried. Some traffic wants none of that: metrics, token streams to a
dashboard, heartbeats, where a lost event is cheaper than a stored one. For those
an engine offers plain fan-out, at most once, nothing stored:

* :meth:`Broadcast.broadcast` hands an event envelope to every listener whose
  pattern matches ``envelope.topic`` (``*`` one token, ``>`` the rest, as
  :mod:`agentcomm.core.topics`), and to one member of each group of listeners;
  nobody listening means the event is gone (not an error);
* :meth:`Broadcast.listen` calls ``sink(envelope)`` for each such event, in the
  engine's task: the sink must not block (pub/sub's core subscription puts it in a
  bounded queue of its own, dropping the oldest). Listeners of one ``group`` share
  the events, each going to one of them (a NATS queue group).

Engines: in memory, a dict of listeners the publisher's task calls in turn; on
NATS, core publish/subscribe on ``<ns>.e.<topic>`` (a queue subscription for a
group; nats-py's pending limit bounds what waits in the client, and what it drops
is counted in :attr:`Listener.dropped`).

Example::

    seen: list[Envelope] = []
    listener = await transport.listen("metrics.>", seen.append)
    await transport.broadcast(event_envelope)
    await listener.close()
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentcomm.core.envelope import Envelope

__all__ = ["Broadcast", "EventSink", "Listener"]

#: What a listener calls with each event, in the engine's task: it must not block.
EventSink = Callable[["Envelope"], None]


class Listener(abc.ABC):
    """An open listen; :meth:`close` ends it.

    Example::

        listener = await transport.listen("metrics.*", sink, group="dash")
        print(listener.dropped)
        await listener.close()
    """

    #: The pattern listened to, and the group (``None``: every event).
    pattern: str
    group: str | None

    @property
    def dropped(self) -> int:
        """Events the engine dropped before the sink saw them (a slow consumer).

        In memory always 0 (the sink is called at once); on NATS what nats-py's
        pending limit refused.
        """
        return 0

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop listening; returns once the engine routes nothing more here. Idempotent.

        Example::

            await listener.close()
        """


class Broadcast(abc.ABC):
    """Core pub/sub: fan-out with no storage (see the module docstring).

    Example::

        await transport.broadcast(Envelope(id=new_id(), kind="event", sender="a",
                                           topic="metrics.cpu", payload=b"0.5"))
    """

    @abc.abstractmethod
    async def broadcast(self, envelope: Envelope) -> None:
        """Hand ``envelope`` to the listeners matching ``envelope.topic`` (fire and forget).

        Raises LimitExceeded for a payload over the engine's limit, TransportClosed
        when the engine is closed; never waits for a listener.

        Example::

            await transport.broadcast(event)
        """

    @abc.abstractmethod
    async def listen(self, pattern: str, sink: EventSink, *, group: str | None = None) -> Listener:
        """Call ``sink`` with every event matching ``pattern`` from now on.

        With ``group``, the listeners of that group name share the matching events
        (each to one of them). Returns once every user of the engine reaches the
        listener (NATS: the server has the subscription), so an event broadcast
        after it returns, from anywhere, arrives.

        Example::

            listener = await transport.listen("orders.*", queue.append)
        """
