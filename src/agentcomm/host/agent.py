"""The host's agent: a name, schema-typed handlers, declarations, a bounded mailbox, workers.

The workers take deliveries from the mailbox, run handlers and answer requests. The
verbs an application talks with (``request``, ``send``, ``on``, ``publish``,
``board``) are added by the public :class:`agentcomm.Agent` (``agentcomm.api``).

Example::

    calc = Agent("calc")

    @calc.handler
    async def add(a: int, b: int) -> int:
        "Add two integers."
        return a + b
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, overload

from agentcomm.core.errors import (
    ConfigurationError,
    TransportClosed,
)
from agentcomm.core.names import check_name
from agentcomm.core.schema import HandlerSpec, inspect_handler
from agentcomm.host.agent_stats import AgentStatistics
from agentcomm.host.context import Context
from agentcomm.host.mailbox import Mailbox
from agentcomm.host.serving import Serving

if TYPE_CHECKING:
    from agentcomm.host.services import HostServices

__all__ = ["Agent", "AgentStatistics"]

logger = logging.getLogger("agentcomm")

F = TypeVar("F", bound=Callable[..., Any])


class Agent:
    """A named agent. Declare handlers with :meth:`handler`; the host runs them.

    ``concurrency`` handlers of this agent run at once; ``mailbox_size`` bounds the
    messages waiting for them (senders wait or get :class:`MailboxFull`).

    Example::

        bob = Agent("bob", concurrency=4, mailbox_size=256)

        @bob.handler
        async def greet(name: str) -> str:
            "Say hello."
            return f"hello {name}"
    """

    #: The context class handlers get (the public Agent's adds onward calls).
    context_class: ClassVar[type[Context]] = Context

    def __init__(
        self, name: str, *, concurrency: int = 16, mailbox_size: int = 1024, description: str = ""
    ) -> None:
        self.name = check_name("agent", name)
        if concurrency < 1:
            raise ConfigurationError(f"concurrency must be at least 1, got {concurrency}")
        self.concurrency = concurrency
        self.mailbox_size = mailbox_size
        self.description = description
        self.handlers: dict[str, HandlerSpec] = {}
        self._runtime: HostServices | None = None
        self._sent = self._requested = 0
        self._on_change: list[Callable[[Agent], None]] = []
        self._mcp_names: dict[str, bool | str] = {}
        #: Declarations of the patterns, by pattern name (e.g. pub/sub's subscriptions,
        #: declared with ``@agent.on``); the host keeps them, the pattern reads them.
        self.declarations: dict[str, list[Any]] = {}
        #: True for an agent that stands in for a remote engine (an MCP server): when
        #: its handler raises TransportError, callers get TransportError, not RemoteError.
        self.proxy = False
        #: The serving half: mailbox, workers, handler runs and their counters.
        self._serving = Serving(self)

    def __repr__(self) -> str:
        return f"<Agent {self.name!r} handlers={sorted(self.handlers)}>"

    # -- declaration ---------------------------------------------------------
    @overload
    def handler(self, fn: F, /) -> F: ...

    @overload
    def handler(self, *, name: str | None = None, mcp: bool | str = True) -> Callable[[F], F]: ...

    def handler(  # type: ignore[misc]  # mypy rejects F only in the return
        self,
        fn: Any = None,
        /,
        *,
        name: str | None = None,
        mcp: bool | str = True,
    ) -> Any:
        """Register a request/notification handler; its annotations are its schema.

        ``name`` overrides the handler name (default: the function's name); ``mcp``
        set to False keeps it out of MCP exposure, a string renames the MCP tool.

        Example::

            @agent.handler(name="lookup")
            async def lookup_customer(identifier: str) -> dict[str, str]: ...
        """

        def register(f: F) -> F:
            hname = check_name("handler", name or f.__name__)
            if hname in self.handlers:
                raise ConfigurationError(f"agent {self.name!r} already has a handler {hname!r}")
            spec = inspect_handler(f, hname)
            self.handlers[hname] = spec
            self._mcp_names[hname] = mcp
            self._changed()
            return f

        if fn is not None:
            return register(fn)
        return register

    def declare(self, kind: str, item: Any) -> None:
        """Keep a pattern's declaration (``kind`` names the pattern) and tell the runtime.

        Patterns call it from their decorators (``@agent.on`` declares a
        ``"pubsub"`` subscription); a running runtime passes it to the pattern's
        :class:`~agentcomm.host.extension.Extension` at once.

        Example::

            agent.declare("pubsub", spec)
        """
        self.declarations.setdefault(kind, []).append(item)
        if self._runtime is not None:
            self._runtime.declared(self, kind)

    def mcp_name(self, handler: str) -> str | None:
        """The MCP tool name of a handler, or ``None`` when it opted out.

        Example::

            assert agent.mcp_name("lookup") == "lookup"
        """
        opt = self._mcp_names.get(handler, True)
        if opt is False:
            return None
        return opt if isinstance(opt, str) else handler

    def remove_handler(self, name: str) -> None:
        """Remove a handler at run time (MCP clients are told the tool list changed).

        Example::

            agent.remove_handler("old_tool")
        """
        if self.handlers.pop(name, None) is None:
            raise ConfigurationError(f"agent {self.name!r} has no handler {name!r}")
        self._mcp_names.pop(name, None)
        self._changed()

    def on_change(self, callback: Callable[[Agent], None]) -> None:
        """Call ``callback(agent)`` whenever the set of handlers changes.

        Example::

            agent.on_change(lambda a: print("handlers now", list(a.handlers)))
        """
        self._on_change.append(callback)

    def _changed(self) -> None:
        for cb in list(self._on_change):
            try:
                cb(self)
            except Exception:
                logger.exception("agent %s: on_change callback failed", self.name)

    # -- lifecycle (driven by the runtime) -------------------------------------
    @property
    def runtime(self) -> HostServices:
        """The runtime this agent is attached to; raises TransportClosed when detached."""
        rt = self._runtime
        if rt is None:
            raise TransportClosed(
                f"agent {self.name!r} is not attached to a running runtime; "
                "use it inside `async with Runtime(agents=[...])`"
            )
        return rt

    @property
    def running(self) -> bool:
        """True while the agent is bound and its workers run."""
        return self._mailbox is not None

    async def _start(self, runtime: HostServices, tg: asyncio.TaskGroup) -> None:
        box = self._prepare(runtime)
        await runtime.transport.bind(self.name, box)
        self._spawn_workers(tg)

    def _prepare(self, runtime: HostServices) -> Mailbox:
        self._runtime = runtime
        return self._serving.prepare()

    def _spawn_workers(self, tg: asyncio.TaskGroup) -> None:
        self._serving.spawn(tg, self.concurrency)

    async def _stop(self, deadline: float) -> None:
        """Unbind, let queued work finish until ``deadline`` (loop time), then cancel."""
        await self._serving.stop(deadline)

    @property
    def _mailbox(self) -> Mailbox | None:
        return self._serving.mailbox

    # -- observation -----------------------------------------------------------
    def statistics(self) -> AgentStatistics:
        """A frozen snapshot of this agent's counters.

        Example::

            print(agent.statistics().handled)
        """
        box, sv = self._mailbox, self._serving
        return AgentStatistics(
            name=self.name,
            handlers=tuple(sorted(self.handlers)),
            running=box is not None,
            queued=len(box) if box else 0,
            mailbox_size=self.mailbox_size,
            in_flight=sv.busy,
            received=sv.handled + sv.failed + sv.rejected + sv.expired + sv.cancelled + sv.busy,
            handled=sv.handled,
            failed=sv.failed,
            rejected=sv.rejected,
            expired=sv.expired,
            sent=self._sent,
            requested=self._requested,
            cancelled=sv.cancelled,
        )
