"""An agent's bounded mailbox: a deque with waiting getters and putters.

It is the :class:`~agentcomm.transports.base.Inbox` the transports deliver into.
A specialised queue rather than :class:`asyncio.Queue`: the worker takes a queued
delivery without creating a coroutine, which matters on the request hot path.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from agentcomm.core.errors import ConfigurationError, MailboxFull, NoResponders
from agentcomm.transports.base import Delivery

if TYPE_CHECKING:
    from agentcomm.core.envelope import Envelope

__all__ = ["Mailbox"]


def _wake_one(waiters: deque[asyncio.Future[None]]) -> None:
    while waiters:
        w = waiters.popleft()
        if not w.done():
            w.set_result(None)
            return


class Mailbox:
    """A bounded FIFO of deliveries for one agent.

    ``put_nowait`` raises :class:`MailboxFull` when full; ``put`` waits for room.

    Example::

        box = Mailbox("bob", capacity=100)
        assert box.capacity == 100 and len(box) == 0
    """

    __slots__ = (
        "_backlog",
        "_closed",
        "_control",
        "_getters",
        "_items",
        "_owner",
        "_putters",
        "capacity",
    )

    def __init__(
        self,
        owner: str,
        capacity: int,
        control: Callable[[Envelope], None] | None = None,
        backlog: Callable[[], None] | None = None,
    ) -> None:
        if capacity < 1:
            raise ConfigurationError(f"mailbox_size must be at least 1, got {capacity}")
        self._owner = owner
        self.capacity = capacity
        self._items: deque[Delivery] = deque()
        self._getters: deque[asyncio.Future[None]] = deque()
        self._putters: deque[asyncio.Future[None]] = deque()
        self._closed: BaseException | None = None
        self._control = control
        #: Called when a delivery is queued and no worker waits for one (the agent
        #: may start another worker).
        self._backlog = backlog

    def no_backlog_calls(self) -> None:
        """Stop calling the backlog callback (its agent runs all the workers it may)."""
        self._backlog = None

    def control(self, envelope: Envelope) -> None:
        """Hand a control frame (cancel, credit) to the agent at once, past the queue."""
        if self._control is not None:
            self._control(envelope)

    def __len__(self) -> int:
        return len(self._items)

    def put_nowait(self, delivery: Delivery) -> None:
        """Queue a delivery or raise :class:`MailboxFull` at once."""
        items = self._items
        if len(items) >= self.capacity:
            if self._closed is not None:
                raise self._closed
            raise MailboxFull(self._owner, self.capacity)
        if self._closed is not None:
            raise self._closed
        items.append(delivery)
        getters = self._getters
        while getters:  # wake one idle worker (inlined: this is the hot path)
            w = getters.popleft()
            if not w.done():
                w.set_result(None)
                return
        if self._backlog is not None:
            self._backlog()

    def close(self) -> None:
        """Refuse new deliveries from now on; senders waiting for room get NoResponders.

        Deliveries already queued stay, for the agent's workers to drain.

        Example::

            box.close()
        """
        if self._closed is None:
            self._closed = NoResponders(self._owner)
        while self._putters:
            w = self._putters.popleft()
            if not w.done():
                w.set_exception(self._closed)

    async def put(self, delivery: Delivery) -> None:
        """Queue a delivery, waiting (in FIFO order with other putters) for room."""
        while len(self._items) >= self.capacity and self._closed is None:
            fut = asyncio.get_running_loop().create_future()
            self._putters.append(fut)
            try:
                await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():
                    _wake_one(self._putters)  # pass our turn on
                raise
        self.put_nowait(delivery)

    def wake_putter(self) -> None:
        """Let one waiting putter in (after a consumer took an item)."""
        _wake_one(self._putters)

    def get_nowait(self) -> Delivery | None:
        """The oldest delivery, or ``None`` when empty."""
        items = self._items
        if not items:
            return None
        d = items.popleft()
        if self._putters:
            _wake_one(self._putters)
        return d

    async def get(self) -> Delivery:
        """The oldest delivery, waiting for one."""
        while not self._items:
            fut = asyncio.get_running_loop().create_future()
            self._getters.append(fut)
            try:
                await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled() and self._items:
                    _wake_one(self._getters)  # pass the item on to another worker
                raise
        return self._items.popleft()  # the caller wakes a putter (see wake_putter)
