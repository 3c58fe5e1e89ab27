"""The transport contract: the few async operations every engine implements.

A transport moves envelopes; it knows nothing of handlers, schemas or policies,
which live in the runtime and the pattern modules above it. Three groups:

* **direct**: ``bind`` an agent's inbox to its address, ``send`` a notification,
  ``request`` and wait for the correlated response (``Delivery.reply`` answers);
* **key/value** (the blackboard): see :class:`KVStore`;
* **streams** (pub/sub): see :class:`EventLog`.

Engines: :mod:`agentcomm.transports.memory` (in-process, complete) and
:mod:`agentcomm.transports.nats` (NATS JetStream). The behaviour every engine must
show is written once, in :mod:`agentcomm.testing.contract`.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..envelope import Envelope

__all__ = ["Delivery", "EventLog", "Inbox", "KVStore", "Transport"]


class Delivery:
    """One envelope handed to an inbox, with the means to answer it.

    Transports subclass it and override :meth:`reply`; a notification's reply is a no-op.

    Example::

        async def on_delivery(d: Delivery) -> None:
            await d.reply(make_response(d.envelope))
    """

    __slots__ = ("envelope",)

    def __init__(self, envelope: Envelope) -> None:
        self.envelope = envelope

    async def reply(self, response: Envelope) -> None:
        """Send ``response`` back to the requester (no-op for notifications).

        Example::

            await delivery.reply(response_envelope)
        """
        return None


class Inbox(Protocol):
    """What a transport delivers into: an agent's bounded mailbox (runtime side).

    Example::

        inbox.put_nowait(delivery)   # raises MailboxFull when full
        await inbox.put(delivery)    # waits for room
    """

    @property
    def capacity(self) -> int:
        """Maximum number of queued deliveries."""
        ...

    def put_nowait(self, delivery: Delivery) -> None:
        """Queue a delivery or raise :class:`~agentcomm.errors.MailboxFull` at once."""
        ...

    async def put(self, delivery: Delivery) -> None:
        """Queue a delivery, waiting for room (the caller bounds the wait)."""
        ...


class KVStore(abc.ABC):  # noqa: B024 - filled in by the blackboard work
    """The key/value part of the contract, used by the blackboard.

    Maps onto NATS JetStream key/value buckets: revisions, compare-and-set on the
    last revision, create-only, delete markers, bounded history and prefix watches.
    """


class EventLog(abc.ABC):  # noqa: B024 - filled in by the pub/sub work
    """The stream part of the contract, used by pub/sub.

    Maps onto NATS JetStream streams and durable consumers: a retained log with
    sequence numbers, consumers with ack / nak-with-delay / term, start positions.
    """


class Transport(KVStore, EventLog, abc.ABC):
    """The contract of an engine. Subclass it and implement every abstract method.

    Example::

        class MyTransport(Transport):
            async def start(self) -> None: ...
            ...
        async with Runtime(transport=MyTransport()) as rt: ...
    """

    #: Short engine name shown in statistics and the CLI ("memory", "nats").
    name: str = "transport"

    # -- lifecycle ----------------------------------------------------------
    @abc.abstractmethod
    async def start(self) -> None:
        """Connect; called once by the runtime when it starts."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release every resource; called once by the runtime when it stops."""

    # -- direct messages ----------------------------------------------------
    @abc.abstractmethod
    async def bind(self, address: str, inbox: Inbox) -> None:
        """Deliver envelopes addressed to ``address`` into ``inbox`` from now on.

        Raises ConfigurationError if the address is already bound in this transport.
        """

    @abc.abstractmethod
    async def unbind(self, address: str) -> None:
        """Stop delivering to ``address``; later sends get NoResponders."""

    @abc.abstractmethod
    async def send(self, envelope: Envelope, *, block: bool = True) -> None:
        """Deliver a notification to ``envelope.recipient``.

        Raises NoResponders at once when nobody is bound to the recipient, MailboxFull
        when its mailbox is full and ``block`` is false; waits for room otherwise (the
        caller bounds the wait with its deadline).
        """

    @abc.abstractmethod
    async def request(self, envelope: Envelope, timeout: float) -> Envelope:
        """Deliver a request and return the response whose correlation id matches it.

        Raises NoResponders at once when nobody is bound, RequestTimeout when no
        response arrives within ``timeout`` seconds. Many requests may be in flight.
        """
