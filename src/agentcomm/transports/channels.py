"""The channel part of the transport contract: control signals and private channels.

Long-running work (streams, progress, cancellation: ``docs/streams-and-tasks.md``)
needs two things besides request/reply, and every engine provides both:

* :meth:`Channels.signal` delivers a *control* envelope (``cancel``, ``credit``) to
  every bound instance of its recipient at once, past the mailbox: a cancel must not
  wait behind the work it cancels. The engine calls the inbox's ``control(env)``.
  Fire and forget: a signal to an absent agent is discarded (there is nothing left
  to cancel or to credit).
* :meth:`Channels.open_channel` opens a private address that another agent
  :meth:`~Channels.post`\\ s to: a stream's chunks, progress reports. Frames posted
  by one sender arrive in the order it posted them. A frame posted to a closed
  channel is discarded (its reader has gone) and counted where the engine can know.

Engines: in memory a channel is a callback in a dict; on NATS a subscription on a
subject under the connection's inbox prefix (``<inbox>.ch.<id>``), and signals go
to ``<namespace>.c.<agent>``, a subject every instance subscribes to without a
queue group.

Example::

    frames: list[Envelope] = []
    ch = await transport.open_channel(frames.append)
    await transport.post(ch.address, chunk_envelope)
    await ch.close()
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentcomm.core.envelope import Envelope

__all__ = ["Channel", "Channels", "Sink"]

#: What a channel calls with each frame, in the engine's task: it must not block.
Sink = Callable[["Envelope"], None]


class Channel(abc.ABC):
    """An open private address; frames posted to :attr:`address` reach its sink.

    Example::

        ch = await transport.open_channel(print)
        try:
            ...  # give ch.address to the peer (Envelope.reply_to)
        finally:
            await ch.close()
    """

    #: The address to post to (opaque; an engine-valid subject).
    address: str

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop receiving; later frames are discarded. Idempotent.

        Example::

            await ch.close()
        """


class Channels(abc.ABC):
    """Control signals and private channels (see the module docstring).

    Example::

        await transport.signal(cancel_envelope)  # recipient: the agent running it
    """

    @abc.abstractmethod
    async def signal(self, envelope: Envelope) -> None:
        """Hand a control envelope to every bound instance of ``envelope.recipient``.

        Delivered through the inbox's ``control(env)``, never queued behind other
        messages; discarded when the recipient is absent.

        Example::

            await transport.signal(Envelope(id=new_id(), kind="cancel", sender="a",
                                            recipient="b", correlation_id=request.id))
        """

    @abc.abstractmethod
    async def open_channel(self, sink: Sink) -> Channel:
        """Open a private channel whose frames are handed to ``sink``, in order.

        Example::

            ch = await transport.open_channel(queue.append)
        """

    @abc.abstractmethod
    async def post(self, address: str, envelope: Envelope) -> None:
        """Send ``envelope`` to the channel at ``address`` (fire and forget).

        Frames from one sender keep their order. Discarded when the channel is closed.

        Example::

            await transport.post(request.reply_to, chunk)
        """
