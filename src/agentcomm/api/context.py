"""The public handler context: who called, the deadline, and onward calls.

Declare a parameter annotated :class:`Context` and the runtime passes it in; it is
not part of the payload schema. Messages sent through the context carry the
causation id (the message being handled) and the trace context onward, so a whole
conversation can be rebuilt.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar, cast, overload

from agentcomm.blackboard.board import Blackboard
from agentcomm.core.progress import DEFAULT_WINDOW
from agentcomm.host.agent import Agent as _HostAgent
from agentcomm.host.context import Context as _HostContext
from agentcomm.host.runtime import Runtime as _HostRuntime
from agentcomm.host.runtime import requests_of, runtime_of
from agentcomm.pubsub.bus import PubSub

if TYPE_CHECKING:
    from agentcomm.direct.messaging import DirectMessages
    from agentcomm.direct.streams import ProgressCallback, Stream

__all__ = ["Context"]

T = TypeVar("T")


class Context(_HostContext):
    """Per-message handle given to a handler that declares ``ctx: Context``.

    Example::

        @agent.handler
        async def plan(goal: str, ctx: Context) -> str:
            facts = await ctx.request("researcher", "search", {"query": goal})
            return f"{ctx.sender} asked; {len(facts)} facts"
    """

    __slots__ = ()
    agent: _HostAgent

    def _host(self) -> _HostRuntime:
        return runtime_of(self.agent)

    @property
    def board(self) -> Blackboard:
        """The blackboard, writing as the agent handling this message.

        Its writes record this message as their cause (``Entry.cause``).

        Example::

            await ctx.board.write("analysis.q1", {"summary": "done"})
        """
        board = Blackboard(self._host(), author=self.agent.name)
        board._cause = self.envelope.id
        return board

    @overload
    async def request(
        self,
        to: str,
        handler: str,
        payload: Any = None,
        *,
        timeout: float | None = None,
        returns: None = None,
        headers: dict[str, str] | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> Any: ...

    @overload
    async def request(
        self,
        to: str,
        handler: str,
        payload: Any = None,
        *,
        timeout: float | None = None,
        returns: type[T],
        headers: dict[str, str] | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> T: ...

    async def request(
        self,
        to: str,
        handler: str,
        payload: Any = None,
        *,
        timeout: float | None = None,
        returns: Any = None,
        headers: dict[str, str] | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> Any:
        """Like :meth:`Agent.request`, caused by this message and bounded by its deadline.

        When this handler is cancelled (its own caller cancelled), so is the call.

        Example::

            total = await ctx.request("billing", "total", {"customer": "c1"}, returns=float)
        """
        left = self.remaining()
        if left is not None and (timeout is None or timeout > left):
            timeout = left
        return await requests_of(self.agent.runtime).request(
            self.agent,
            to,
            handler,
            payload,
            timeout=timeout,
            returns=returns,
            headers=headers,
            cause=self.envelope,
            on_progress=on_progress,
        )

    async def stream(
        self,
        to: str,
        handler: str,
        payload: Any = None,
        *,
        timeout: float | None = None,
        returns: Any = None,
        window: int = DEFAULT_WINDOW,
        on_progress: ProgressCallback | None = None,
        headers: dict[str, str] | None = None,
    ) -> Stream[Any]:
        """Like :meth:`Agent.stream`, caused by this message and bounded by its deadline.

        Example::

            async for part in await ctx.stream("writer", "draft", {"topic": goal}):
                await ctx.progress(1, message=part)
        """
        left = self.remaining()
        if left is not None and (timeout is None or timeout > left):
            timeout = left
        direct = cast("DirectMessages", requests_of(self.agent.runtime))
        return await direct.stream(
            self.agent,
            to,
            handler,
            payload,
            timeout=timeout,
            returns=returns,
            window=window,
            on_progress=on_progress,
            headers=headers,
            cause=self.envelope,
        )

    async def send(
        self,
        to: str,
        handler: str,
        payload: Any = None,
        *,
        block: bool = True,
        timeout: float | None = None,
        ttl: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Like :meth:`Agent.send`, recording this message as the cause.

        Example::

            await ctx.send("auditor", "record", {"event": "refund"})
        """
        await requests_of(self.agent.runtime).send(
            self.agent,
            to,
            handler,
            payload,
            block=block,
            timeout=timeout,
            ttl=ttl,
            headers=headers,
            cause=self.envelope,
        )

    async def publish(
        self,
        topic: str,
        payload: Any = None,
        *,
        key: str | None = None,
        msg_id: str | None = None,
        ttl: float | None = None,
        wait: bool = True,
        headers: dict[str, str] | None = None,
    ) -> int:
        """Like :meth:`Agent.publish`, recording this message as the cause (and its trace).

        Example::

            await ctx.publish("orders.charged", {"id": order.id}, key=order.customer)
        """
        return await PubSub.of(self._host()).publish(
            self.agent.name,
            topic,
            payload,
            key=key,
            msg_id=msg_id,
            ttl=ttl,
            wait=wait,
            headers=headers,
            cause=self.envelope,
        )
