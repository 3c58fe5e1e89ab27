"""The transport contract: the few async operations every engine implements.

A transport moves envelopes; it knows nothing of handlers, schemas or policies,
which live in the runtime and the pattern modules above it. Three groups:

* **direct**: ``bind`` an agent's inbox to its address, ``send`` a notification,
  ``request`` and wait for the correlated response (``Delivery.reply`` answers);
* **key/value** (the blackboard): see :class:`KVStore`;
* **streams** (pub/sub): see :class:`EventLog`;
* **channels** (long-running work: cancel and credit signals, private channels
  for chunks and progress): see :class:`~agentcomm.transports.channels.Channels`;
* **broadcast** (core pub/sub: fan-out, at most once, nothing stored): see
  :class:`~agentcomm.transports.broadcast.Broadcast`.

Engines: :mod:`agentcomm.transports.memory` (in-process, complete) and
:mod:`agentcomm.transports.nats` (NATS JetStream). The behaviour every engine must
show is written once, in :mod:`agentcomm.testing.contract`.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Protocol

from agentcomm.transports.broadcast import Broadcast
from agentcomm.transports.channels import Channels
from agentcomm.transports.kv import KVStore
from agentcomm.transports.log import EventLog

if TYPE_CHECKING:
    from agentcomm.core.deadlines import Expirable
    from agentcomm.core.envelope import Envelope

__all__ = ["Broadcast", "Delivery", "EventLog", "Inbox", "KVStore", "Transport"]


class Delivery:
    """One envelope handed to an inbox, with the means to answer it.

    Transports subclass it and override :meth:`reply`.

    Example::

        def on_delivery(d: Delivery) -> None:
            pending = d.reply(make_response(d.envelope))
            if pending is not None:
                await pending
    """

    __slots__ = ("envelope", "runner")

    #: True when the engine itself calls ``runner.expire()`` at the envelope's
    #: deadline (the in-process engine does, for requests). Otherwise the agent
    #: arms its own timer to stop a handler that outlives the caller's deadline.
    expires: bool = False

    def __init__(self, envelope: Envelope) -> None:
        self.envelope = envelope
        #: Set by the agent while a handler runs for this delivery; has ``expire()``.
        self.runner: Expirable | None = None

    def reply(self, response: Envelope) -> Awaitable[None] | None:
        """Send ``response`` back to the requester (nothing for notifications).

        Returns ``None`` when the reply is already on its way (in-process), or an
        awaitable that the caller must await (network engines). A reply whose
        requester has gone (timed out, cancelled) is dropped by the engine.

        Example::

            if (pending := delivery.reply(response_envelope)) is not None:
                await pending
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

    def control(self, envelope: Envelope) -> None:
        """Act on a control envelope (cancel, credit) at once, past the queue."""
        ...


class Transport(KVStore, EventLog, Channels, Broadcast, abc.ABC):
    """The contract of an engine. Subclass it and implement every abstract method.

    Example::

        class MyTransport(Transport):
            async def start(self) -> None: ...
            ...
        async with Runtime(transport=MyTransport()) as rt: ...
    """

    #: Short engine name shown in statistics and the CLI ("memory", "nats").
    name: str = "transport"
    #: Capability: other processes reach the same engine (a broker), so the runtime
    #: announces its agents there (presence). In-process engines leave it False.
    shared: bool = False

    # -- lifecycle ----------------------------------------------------------
    @abc.abstractmethod
    async def start(self) -> None:
        """Connect; called by each runtime that uses this transport when it starts.

        Several runtimes may share one transport object in one event loop: starts
        are counted, and only the first one connects.
        """

    @abc.abstractmethod
    async def close(self) -> None:
        """Called by each runtime when it stops; the last close releases everything.

        Until then the engine keeps working for the runtimes that still use it
        (each runtime unbinds its own agents and closes its own consumers, watches
        and channels before it closes the transport).
        """

    # -- direct messages ----------------------------------------------------
    @abc.abstractmethod
    async def bind(self, address: str, inbox: Inbox) -> None:
        """Deliver envelopes addressed to ``address`` into ``inbox`` from now on.

        An address bound to several inboxes (two runtimes, or two processes, running
        the same agent) is a *queue group*: each notification and request goes to one
        of them, a control signal to every one. Raises ConfigurationError when this
        inbox is already bound to the address.
        """

    def bind_nowait(self, address: str, inbox: Inbox) -> bool:
        """Bind at once when the engine can without waiting; return False otherwise.

        The default (network engines) returns False and the runtime awaits
        :meth:`bind` instead.
        """
        return False

    @abc.abstractmethod
    async def unbind(self, address: str, inbox: Inbox) -> None:
        """Stop delivering to ``inbox`` at ``address``; the group's other inboxes stay.

        Once no inbox is bound there, later sends get NoResponders. Unbinding an
        inbox that is not bound does nothing. Returns once the engine routes nothing
        more to that inbox, for every user of the engine (NATS: the server has the
        unsubscribe), so a runtime that stops leaves its work to the group's others.
        """

    @abc.abstractmethod
    async def flush(self, timeout: float = 5.0) -> None:
        """Return once the engine has taken in everything this transport sent so far.

        Bindings included: from then on every other user of the engine (another
        runtime, another process) reaches this transport's inboxes. An in-process
        engine has nothing in flight and returns at once; NATS waits for the server.

        Example::

            await transport.bind("billing", inbox)
            await transport.flush()  # now tell the others that billing is there
        """

    @abc.abstractmethod
    async def send(self, envelope: Envelope, *, block: bool = True) -> None:
        """Deliver a notification to ``envelope.recipient``.

        Raises NoResponders at once when nobody is bound to the recipient, MailboxFull
        when its mailbox is full and ``block`` is false; waits for room otherwise (the
        caller bounds the wait with its deadline).
        """

    @abc.abstractmethod
    def request(self, envelope: Envelope, timeout: float) -> Awaitable[Envelope]:
        """Deliver a request; the awaitable resolves to the correlated response.

        A plain method returning an awaitable (a coroutine, or a future on the hot
        in-process path), so callers write ``await transport.request(env, t)``.
        Raises NoResponders at once (from the call or the awaitable) when nobody is
        bound, RequestTimeout when no response arrives within ``timeout`` seconds.
        Many requests may be in flight at once, each answered by its own correlation.
        """
