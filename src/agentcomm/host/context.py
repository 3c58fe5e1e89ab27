"""The context a handler may ask for: who called, the deadline, and onward calls.

Declare a parameter annotated :class:`Context` and the runtime passes it in; it is
not part of the payload schema. Messages sent through the context carry the
causation id (the message being handled) and the trace context onward, so a whole
conversation can be rebuilt.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Protocol

from agentcomm.core.progress import frame, progress_payload
from agentcomm.core.schema import HandlerContext

if TYPE_CHECKING:
    from agentcomm.core.envelope import Envelope
    from agentcomm.host.services import HostServices

__all__ = ["Context"]


class _Agent(Protocol):
    """What a context needs of its agent (:class:`agentcomm.host.agent.Agent`)."""

    name: str

    @property
    def runtime(self) -> HostServices: ...


class Context(HandlerContext):
    """Per-message handle given to a handler that declares ``ctx: Context``.

    Example::

        @agent.handler
        async def plan(goal: str, ctx: Context) -> str:
            facts = await ctx.request("researcher", "search", {"query": goal})
            return f"{ctx.sender} asked; {len(facts)} facts"
    """

    __slots__ = ("agent", "envelope")

    def __init__(self, agent: _Agent, envelope: Envelope) -> None:
        self.agent = agent
        self.envelope = envelope

    @property
    def sender(self) -> str:
        """Name of the agent that sent the message being handled."""
        return self.envelope.sender

    @property
    def runtime(self) -> HostServices:
        """The runtime this agent runs in."""
        return self.agent.runtime

    def remaining(self) -> float | None:
        """Seconds left before the caller's deadline, or ``None`` without one.

        Example::

            if (ctx.remaining() or 1.0) < 0.1: return "partial answer"
        """
        dl = self.envelope.deadline
        if dl is None:
            return None
        return max(0.0, dl - time.time())

    async def progress(
        self, done: float, total: float | None = None, message: str | None = None
    ) -> None:
        """Tell the caller how far this handler got (and note it in the trace).

        The caller sees it through ``on_progress`` (``request``, ``stream``) or
        ``Stream.progress``; a caller that asked for none costs nothing.

        Example::

            for i, page in enumerate(pages):
                await ctx.progress(i + 1, len(pages), f"read {page}")
        """
        env, rt = self.envelope, self.agent.runtime
        if rt.tracing is not None:
            attrs = {"agentcomm.progress.done": done, "agentcomm.progress.total": total}
            rt.tracing.event("progress", {**attrs, "agentcomm.progress.message": message})
        if env.reply_to is None:
            return
        out = frame(
            "progress", env, self.agent.name, payload=progress_payload(done, total, message)
        )
        if rt.guard is not None:
            out = rt.guard.seal_reply(env, out)
        await rt.transport.post(env.reply_to, out)
