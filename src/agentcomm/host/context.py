"""The context a handler may ask for: who called, the deadline, and onward calls.

Declare a parameter annotated :class:`Context` and the runtime passes it in; it is
not part of the payload schema. Messages sent through the context carry the
causation id (the message being handled) and the trace context onward, so a whole
conversation can be rebuilt.
"""

from __future__ import annotations

import logging
import time
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any, Protocol

from agentcomm.core.callers import ClientUnsupported, Root
from agentcomm.core.progress import frame, progress_payload
from agentcomm.core.schema import HandlerContext

if TYPE_CHECKING:
    from agentcomm.core.envelope import Envelope
    from agentcomm.host.services import HostServices

__all__ = ["CALLER_HEADER", "CALLERS", "CallerChannel", "Callers", "Context", "TaskRun"]

#: The header naming the outside call (an MCP tool call) a request serves.
CALLER_HEADER = "agentcomm-caller"
#: The name of the runtime extension that knows the outside calls (``Callers``).
CALLERS = "callers"

_LEVELS = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
    logging.CRITICAL: "critical",
}


class TaskRun(Protocol):
    """What a durable task's run offers its handler's context (``agentcomm.tasks`` implements it).

    The tasks pattern sets ``ctx.task`` for a handler it runs; ``ctx.progress``
    then reaches the task's updates, and ``ctx.ask`` and ``ctx.attempt`` work.
    """

    task_id: str
    attempt: int

    async def progress(self, done: float, total: float | None, message: str | None) -> None: ...

    async def ask(self, question: Any, returns: Any, timeout: float | None) -> Any: ...


class CallerChannel(Protocol):
    """What a caller outside agentcomm offers the handler (an MCP client: ``agentcomm.tools``).

    Found through the request's ``agentcomm-caller`` header; ``ctx.progress``,
    ``ctx.log``, ``ctx.logger``, ``ctx.ask``, ``ctx.sample`` and ``ctx.roots`` reach the
    caller through it.
    """

    sender: str

    async def progress(self, done: float, total: float | None, message: str | None) -> None: ...

    async def log(self, level: str, data: Any, logger: str | None) -> None: ...

    def note(self, level: str, data: Any, logger: str | None) -> None: ...

    async def ask(
        self, question: Any, returns: Any, timeout: float | None, key: str | None
    ) -> Any: ...

    async def sample(self, messages: Any, options: dict[str, Any]) -> Any: ...

    async def roots(self, timeout: float | None, key: str | None) -> list[Root]: ...


class Callers(Protocol):
    """The runtime extension ``callers``: the channel of an outside call by its id."""

    def channel(self, call_id: str) -> CallerChannel | None: ...


class _CallerLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """``ctx.logger``: a standard logger whose records also reach the outside caller."""

    def __init__(self, logger: logging.Logger, channel: CallerChannel | None) -> None:
        super().__init__(logger, {})
        self._channel = channel

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if self._channel is not None:  # the client's logging/setLevel decides for it
            text = str(msg) % args if args else str(msg)
            name = _LEVELS.get(level) or ("error" if level > logging.WARNING else "info")
            self._channel.note(name, text, self.logger.name)
        super().log(level, msg, *args, **kwargs)

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        return msg, kwargs


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

    __slots__ = ("agent", "envelope", "task")

    def __init__(self, agent: _Agent, envelope: Envelope) -> None:
        self.agent = agent
        self.envelope = envelope
        #: The durable task this handler runs for (``@agent.task_handler``), else ``None``.
        self.task: TaskRun | None = None

    @property
    def attempt(self) -> int:
        """Which run of a durable task this is (1, then 2... after a lost worker); 1 otherwise.

        Example::

            if ctx.attempt > 1:
                await undo_partial_work()
        """
        return 1 if self.task is None else self.task.attempt

    @property
    def task_id(self) -> str | None:
        """The id of the durable task this handler runs for, ``None`` for other handlers.

        Example::

            log.info("task %s attempt %d", ctx.task_id, ctx.attempt)
        """
        return None if self.task is None else self.task.task_id

    async def ask(
        self,
        question: Any,
        *,
        returns: Any = None,
        timeout: float | None = None,
        key: str | None = None,
    ) -> Any:
        """Ask the task's caller a question and wait for the answer, typed as ``returns``.

        Only in a task handler (``@agent.task_handler``): the task is
        ``input-required`` until someone answers with ``await handle.answer(value)``.
        An answer that does not match ``returns`` is refused (a ValidationError for
        the answerer) and the handler keeps waiting; after ``timeout`` seconds it
        raises :class:`~agentcomm.errors.InputTimeout`. Over MCP it is
        ``elicitation/create`` (see docs/mcp.md); ``key`` names the question in the
        2026-07-28 protocol's input requests (default ``ask-1``, ``ask-2``...).

        Example::

            ok = await ctx.ask("Spend $40 on the API?", returns=bool, timeout=600)
        """
        if self.task is not None:
            return await self.task.ask(question, returns, timeout)
        caller = self._caller()
        if caller is not None:  # an MCP client: elicitation/create
            return await caller.ask(question, returns, timeout, key)
        from agentcomm.core.errors import ConfigurationError

        raise ConfigurationError(
            "ctx.ask works only in a durable task handler (declare it with "
            "@agent.task_handler and start it with start_task()) or in a handler "
            "called over MCP"
        )

    def _caller(self) -> CallerChannel | None:
        headers = self.envelope.headers
        if not headers:
            return None
        call = headers.get(CALLER_HEADER)
        if call is None:
            return None
        callers: Callers | None = self.agent.runtime.existing_extension(CALLERS)
        channel = None if callers is None else callers.channel(call)
        if channel is None or channel.sender != self.envelope.sender:
            return None
        return channel

    @property
    def logger(self) -> logging.LoggerAdapter:  # type: ignore[type-arg]
        """The agent's standard logger (``agentcomm.agent.<name>``); over MCP its records
        also go to the client as ``notifications/message``.

        Example::

            ctx.logger.info("looking up %s", identifier)
        """
        return _CallerLogger(
            logging.getLogger(f"agentcomm.agent.{self.agent.name}"), self._caller()
        )

    async def log(self, level: str, message: Any, *, logger: str | None = None) -> None:
        """Log ``message`` at ``level`` (``"debug"``, ``"info"``, ``"warning"``, ``"error"``...).

        It goes to the agent's standard logger and, when an MCP client called this
        handler, to that client (``notifications/message``, honouring the level it
        set with ``logging/setLevel``).

        Example::

            await ctx.log("info", "fetched 3 pages")
        """
        std = logging.getLogger(f"agentcomm.agent.{self.agent.name}")
        num = logging.getLevelName(level.upper())
        std.log(num if isinstance(num, int) else logging.INFO, "%s", message)
        caller = self._caller()
        if caller is not None:
            await caller.log(level, message, logger)

    async def sample(
        self,
        messages: Any,
        *,
        max_tokens: int = 1000,
        system: str | None = None,
        temperature: float | None = None,
        stop: list[str] | None = None,
        model: str | None = None,
        key: str | None = None,
    ) -> Any:
        """Ask the MCP client's LLM to answer ``messages`` (``sampling/createMessage``).

        ``messages`` is a ``str`` or a list of :class:`~agentcomm.Message`; returns the
        answer's text (or its content: an Image...). Raises
        :class:`~agentcomm.errors.ClientUnsupported` when the handler was not called
        over MCP or the client does not offer sampling.

        Example::

            haiku = await ctx.sample("Write a haiku about queues", max_tokens=60)
        """
        caller = self._caller()
        if caller is None:
            raise ClientUnsupported(
                "ctx.sample needs a handler called over MCP by a client that offers sampling"
            )
        options = {
            "max_tokens": max_tokens,
            "system": system,
            "temperature": temperature,
            "stop": stop,
            "model": model,
            "key": key,
        }
        return await caller.sample(messages, options)

    async def roots(self, *, timeout: float | None = None, key: str | None = None) -> list[Root]:
        """The MCP client's roots (``roots/list``): the directories or files it offers.

        Raises :class:`~agentcomm.errors.ClientUnsupported` when the handler was not
        called over MCP or the client does not declare roots. On the 2026-07-28
        protocol it is an input request named ``key`` (default ``roots-1``...); several
        questions awaited together (``asyncio.gather``) go out in one round.

        Example::

            paths = [root.uri for root in await ctx.roots()]
        """
        caller = self._caller()
        if caller is None:
            raise ClientUnsupported(
                "ctx.roots needs a handler called over MCP by a client that offers roots"
            )
        return await caller.roots(timeout, key)

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
        ``Stream.progress``; a caller that asked for none costs nothing. In a durable
        task it is a ``progress`` update (``handle.updates()``, ``status().progress``).

        Example::

            for i, page in enumerate(pages):
                await ctx.progress(i + 1, len(pages), f"read {page}")
        """
        env, rt = self.envelope, self.agent.runtime
        if rt.tracing is not None:
            attrs = {"agentcomm.progress.done": done, "agentcomm.progress.total": total}
            rt.tracing.event("progress", {**attrs, "agentcomm.progress.message": message})
        if self.task is not None:  # a durable task: its update log
            await self.task.progress(done, total, message)
            return
        if env.headers and (caller := self._caller()) is not None:  # over MCP
            await caller.progress(done, total, message)
            return
        if env.reply_to is None:
            return
        out = frame(
            "progress", env, self.agent.name, payload=progress_payload(done, total, message)
        )
        if rt.guard is not None:
            out = rt.guard.seal_reply(env, out)
        await rt.transport.post(env.reply_to, out)
