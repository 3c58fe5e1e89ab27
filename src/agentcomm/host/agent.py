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
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, overload

from agentcomm.core.deadlines import DeadlineWheel, wheel_for
from agentcomm.core.envelope import Envelope, new_id
from agentcomm.core.errors import (
    ConfigurationError,
    PermissionDenied,
    TransportClosed,
    TransportError,
    ValidationError,
)
from agentcomm.core.names import check_name
from agentcomm.core.responses import error_response
from agentcomm.core.schema import HandlerSpec, inspect_handler
from agentcomm.host.agent_stats import AgentStatistics
from agentcomm.host.context import Context
from agentcomm.host.mailbox import Mailbox
from agentcomm.transports.base import Delivery

if TYPE_CHECKING:
    from agentcomm.host.services import HostServices

__all__ = ["Agent", "AgentStatistics"]

logger = logging.getLogger("agentcomm")

F = TypeVar("F", bound=Callable[..., Any])


class _Running:
    """A handler run that the deadline wheel may cancel (the receiver gives up too)."""

    __slots__ = ("fired", "slot", "task")

    def __init__(self, task: asyncio.Task[None]) -> None:
        self.task = task
        self.fired = False
        self.slot = 0

    def expire(self) -> None:
        self.fired = True
        self.task.cancel()


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
        self._mailbox: Mailbox | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._handled = self._failed = self._rejected = 0
        self._expired = self._sent = self._requested = 0
        self._on_change: list[Callable[[Agent], None]] = []
        self._mcp_names: dict[str, bool | str] = {}
        #: Declarations of the patterns, by pattern name (e.g. pub/sub's subscriptions,
        #: declared with ``@agent.on``); the host keeps them, the pattern reads them.
        self.declarations: dict[str, list[Any]] = {}
        #: True for an agent that stands in for a remote engine (an MCP server): when
        #: its handler raises TransportError, callers get TransportError, not RemoteError.
        self.proxy = False
        self._wheel: DeadlineWheel
        self._busy = 0
        self._idle: asyncio.Future[None] | None = None

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
        self._mailbox = Mailbox(self.name, self.mailbox_size)
        self._wheel = wheel_for(asyncio.get_running_loop())
        return self._mailbox

    def _spawn_workers(self, tg: asyncio.TaskGroup) -> None:
        box = self._mailbox
        assert box is not None
        self._workers = [
            tg.create_task(self._work(box), name=f"agentcomm:{self.name}:{i}")
            for i in range(self.concurrency)
        ]

    async def _stop(self, deadline: float) -> None:
        """Unbind, let queued work finish until ``deadline`` (loop time), then cancel."""
        box = self._mailbox
        if box is None:
            return
        rt = self.runtime
        await rt.transport.unbind(self.name)
        box.close()  # senders still waiting for room learn at once that we are gone
        left = deadline - asyncio.get_running_loop().time()
        if (len(box) or self._busy) and left > 0:
            self._idle = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(left):
                    await self._idle
            except TimeoutError:
                logger.warning(
                    "agent %s: %d messages not handled before the shutdown deadline",
                    self.name,
                    len(box) + self._busy,
                )
            finally:
                self._idle = None
        for task in self._workers:
            task.cancel()
        # Answer what is still queued, so no requester waits for its full timeout.
        while (d := box.get_nowait()) is not None:
            await self._answer_error(
                d, "error", "TransportClosed", f"agent {self.name} shut down before handling it"
            )
        if self._workers:  # let cancelled handlers answer their callers before we detach
            _, stuck = await asyncio.wait(self._workers, timeout=max(1.0, left))
            if stuck:
                logger.error(
                    "agent %s: %d handlers ignored cancellation at shutdown", self.name, len(stuck)
                )
        self._workers = []
        self._mailbox = None

    async def _work(self, box: Mailbox) -> None:
        """One worker: takes deliveries from the mailbox and runs their handlers.

        The hot path (a valid request or notification) stays in this one frame;
        refusals and failures are answered by the helpers below.
        """
        task = asyncio.current_task()
        assert task is not None
        handlers = self.handlers
        record = self.runtime.message_log.append
        name = self.name
        items = box._items
        run = _Running(task)  # reused: one handler at a time per worker
        tracing = self.runtime.tracing
        guard = self.runtime.guard  # limits, signatures, policy (docs/security.md)
        span: AbstractContextManager[Any] | None = None
        while True:
            delivery = items.popleft() if items else await box.get()
            if box._putters:
                box.wake_putter()
            self._busy += 1
            try:
                env = delivery.envelope
                if guard is not None and (bad := guard.admit(name, env)) is not None:
                    self._rejected += 1
                    await self._answer_error(delivery, *bad)
                    continue
                spec = handlers.get(env.handler or "")
                deadline = env.deadline
                if spec is None or (deadline is not None and deadline <= time.time()):
                    await self._refuse(delivery, spec)
                    continue
                if tracing is not None:  # continues the caller's trace, in this task
                    span = tracing.span(
                        "process",
                        name,
                        kind="server" if env.kind == "request" else "consumer",
                        parent=env,
                        attributes=tracing.message_attributes(env),
                    )
                    span.__enter__()
                positional = spec.decode_positional
                try:
                    if positional is not None:
                        args = positional(env.payload)  # no kwargs dict: the hot path
                    else:
                        kwargs = spec.decode_args(env.payload)
                except ValidationError as exc:
                    self._rejected += 1
                    await self._answer_error(delivery, "validation", "ValidationError", str(exc))
                    continue
                if spec.context_arg is not None:
                    kwargs[spec.context_arg] = self.context_class(self, env)
                armed = False
                try:
                    if spec.is_async:
                        if deadline is not None:
                            # The receiver gives up at the caller's deadline too: the
                            # transport expires the delivery, or a coalesced timer does.
                            armed = True
                            run.fired = False
                            if delivery.expires:
                                delivery.runner = run
                            else:
                                run.slot = self._wheel.add(run, deadline)
                        if positional is not None:
                            result = await spec.fn(*args)
                        else:
                            result = await spec.fn(**kwargs)
                    elif positional is not None:
                        result = spec.fn(*args)
                    else:
                        result = spec.fn(**kwargs)
                    raw = spec.encode_result(result) if env.kind == "request" else None
                except asyncio.CancelledError:
                    if armed and run.fired and task.uncancel() == 0:
                        self._failed += 1
                        await self._answer_error(
                            delivery,
                            "timeout",
                            "TimeoutError",
                            "handler did not finish before the caller's deadline",
                        )
                        continue
                    # Shutdown (or the caller's task group) cancelled us mid-handler:
                    # answer the requester now rather than leave it to its timeout.
                    self._failed += 1
                    await self._answer_error(
                        delivery,
                        "error",
                        "TransportClosed",
                        f"agent {name} shut down while handling it",
                    )
                    raise
                except Exception as exc:
                    self._failed += 1
                    await self._handler_failed(delivery, spec, exc)
                    continue
                finally:
                    if armed:
                        if run.slot:
                            self._wheel.discard(run, run.slot)
                            run.slot = 0
                        delivery.runner = None
                self._handled += 1
                if raw is not None:
                    resp = Envelope(
                        id=new_id(),
                        kind="response",
                        sender=name,
                        recipient=env.sender,
                        correlation_id=env.id,
                        causation_id=env.id,
                        traceparent=env.traceparent,
                        payload=raw,
                        schema=spec.output_name,
                    )
                    if guard is not None:
                        resp = guard.seal_reply(env, resp)
                    record(resp)
                    pending = delivery.reply(resp)
                    if pending is not None:
                        await pending
            finally:
                if span is not None:
                    span.__exit__(None, None, None)
                    span = None
                self._busy -= 1
                if self._idle is not None and not self._busy and not items:
                    if not self._idle.done():
                        self._idle.set_result(None)

    async def _answer_error(self, delivery: Delivery, code: str, exc_type: str, msg: str) -> None:
        env = delivery.envelope
        tracing = self.runtime.tracing
        if tracing is not None:
            tracing.record_failure(code, exc_type, msg)
        if env.kind == "request":
            resp = error_response(env, self.name, code, exc_type, msg)
            if self.runtime.guard is not None:
                resp = self.runtime.guard.seal_reply(env, resp)
            self.runtime.record(resp)
            pending = delivery.reply(resp)
            if pending is not None:
                await pending
        else:
            self.runtime.report_failure(env, f"{exc_type}: {msg}")

    async def _refuse(self, delivery: Delivery, spec: HandlerSpec | None) -> None:
        env = delivery.envelope
        if spec is None:
            self._rejected += 1
            msg = (
                f"agent {self.name!r} has no handler {env.handler!r}; "
                f"it has {sorted(self.handlers)}"
            )
            await self._answer_error(delivery, "unknown_handler", "UnknownHandler", msg)
        else:
            self._expired += 1
            await self._answer_error(
                delivery, "timeout", "RequestTimeout", "deadline passed before the handler ran"
            )

    async def _handler_failed(self, delivery: Delivery, spec: HandlerSpec, exc: Exception) -> None:
        if isinstance(exc, ValidationError):
            msg = f"handler {spec.name!r} returned a value that breaks its schema: {exc}"
        else:
            msg = str(exc)
            if delivery.envelope.kind != "request":
                logger.error("agent %s: handler %s failed", self.name, spec.name, exc_info=exc)
        # A proxy agent whose engine failed (an MCP server gone) reports it as such;
        # any other handler's failure is a RemoteError for its caller.
        code = "error"
        if self.proxy:
            if isinstance(exc, TransportError):
                code = "transport"
            elif isinstance(exc, PermissionDenied):  # the remote side refused the caller
                code = "permission"
        await self._answer_error(delivery, code, type(exc).__name__, msg)

    # -- observation -----------------------------------------------------------
    def statistics(self) -> AgentStatistics:
        """A frozen snapshot of this agent's counters.

        Example::

            print(agent.statistics().handled)
        """
        box = self._mailbox
        return AgentStatistics(
            name=self.name,
            handlers=tuple(sorted(self.handlers)),
            running=box is not None,
            queued=len(box) if box else 0,
            mailbox_size=self.mailbox_size,
            in_flight=self._busy,
            received=self._handled + self._failed + self._rejected + self._expired + self._busy,
            handled=self._handled,
            failed=self._failed,
            rejected=self._rejected,
            expired=self._expired,
            sent=self._sent,
            requested=self._requested,
        )
