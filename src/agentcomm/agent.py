"""Agents: named participants with schema-typed handlers, a bounded mailbox and workers.

Example::

    from agentcomm import Agent, Runtime

    calc = Agent("calc")

    @calc.handler
    async def add(a: int, b: int) -> int:
        "Add two integers."
        return a + b

    async with Runtime(agents=[calc]) as rt:
        client = rt.agent("client")
        assert await client.request("calc", "add", {"a": 1, "b": 2}) == 3
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, overload

import msgspec

from .context import Context
from .envelope import Envelope, ErrorInfo, encode_payload, new_id
from .errors import (
    ConfigurationError,
    MailboxFull,
    RemoteError,
    TransportClosed,
    UnknownHandler,
    ValidationError,
)
from .schema import HandlerSpec, codec_for, inspect_handler
from .transports.base import Delivery

if TYPE_CHECKING:
    from .blackboard import Blackboard
    from .runtime import Runtime

__all__ = ["Agent", "AgentStatistics", "Mailbox"]

logger = logging.getLogger("agentcomm")

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,127}$")
_json_decode = msgspec.json.decode


def check_name(kind: str, name: str) -> str:
    """Validate an agent or handler name: letters, digits, ``_`` and ``-``, 1-128 chars."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ConfigurationError(
            f"invalid {kind} name {name!r}: use 1-128 letters, digits, '_' or '-' "
            "(no dots, spaces or wildcards, so the name maps onto a NATS subject token)"
        )
    return name


class Mailbox:
    """An agent's bounded queue of deliveries (the :class:`~agentcomm.transports.base.Inbox`).

    Example::

        box = Mailbox("bob", capacity=100)
        assert box.capacity == 100
    """

    __slots__ = ("_owner", "_queue")

    def __init__(self, owner: str, capacity: int) -> None:
        if capacity < 1:
            raise ConfigurationError(f"mailbox_size must be at least 1, got {capacity}")
        self._owner = owner
        self._queue: asyncio.Queue[Delivery] = asyncio.Queue(capacity)

    @property
    def capacity(self) -> int:
        """Maximum number of queued deliveries."""
        return self._queue.maxsize

    def qsize(self) -> int:
        """Deliveries waiting now."""
        return self._queue.qsize()

    def put_nowait(self, delivery: Delivery) -> None:
        """Queue a delivery or raise :class:`MailboxFull`."""
        try:
            self._queue.put_nowait(delivery)
        except asyncio.QueueFull:
            raise MailboxFull(self._owner, self._queue.maxsize) from None

    async def put(self, delivery: Delivery) -> None:
        """Queue a delivery, waiting for room."""
        await self._queue.put(delivery)


class AgentStatistics(msgspec.Struct, frozen=True):
    """A frozen snapshot of one agent's counters (see :meth:`Agent.statistics`).

    Example::

        stats = agent.statistics(); print(stats.handled, stats.failed)
    """

    name: str
    handlers: tuple[str, ...]
    running: bool
    queued: int
    mailbox_size: int
    in_flight: int
    received: int
    handled: int
    failed: int
    rejected: int
    expired: int
    sent: int
    requested: int


def _error_response(env: Envelope, sender: str, code: str, exc_type: str, message: str) -> Envelope:
    return Envelope(
        id=new_id(),
        kind="response",
        sender=sender,
        recipient=env.sender,
        correlation_id=env.id,
        causation_id=env.id,
        traceparent=env.traceparent,
        error=ErrorInfo(code=code, type=exc_type, message=message),
    )


def _raise_remote(resp: Envelope) -> None:
    err = resp.error
    assert err is not None
    if err.code == "validation":
        raise ValidationError(f"{resp.sender} refused the payload: {err.message}")
    if err.code == "unknown_handler":
        raise UnknownHandler(err.message)
    if err.code == "permission":
        from .errors import PermissionDenied

        raise PermissionDenied(err.message)
    raise RemoteError(resp.sender, err.type, err.message)


class Agent:
    """A named agent. Declare handlers with :meth:`handler`; talk with :meth:`request`.

    ``concurrency`` handlers of this agent run at once; ``mailbox_size`` bounds the
    messages waiting for them (senders wait or get :class:`MailboxFull`).

    Example::

        bob = Agent("bob", concurrency=4, mailbox_size=256)

        @bob.handler
        async def greet(name: str) -> str:
            "Say hello."
            return f"hello {name}"
    """

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
        self._runtime: Runtime | None = None
        self._mailbox: Mailbox | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._active = 0
        self._received = self._handled = self._failed = self._rejected = 0
        self._expired = self._sent = self._requested = 0
        self._on_change: list[Callable[[Agent], None]] = []
        self._mcp_names: dict[str, bool | str] = {}

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
    def runtime(self) -> Runtime:
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

    @property
    def board(self) -> Blackboard:
        """The runtime's blackboard, writing (and authorized) as this agent.

        Example::

            await researcher.board.write("research.q1", {"findings": []})
        """
        from .blackboard import Blackboard

        return Blackboard(self.runtime, author=self.name)

    async def _start(self, runtime: Runtime, tg: asyncio.TaskGroup) -> None:
        self._runtime = runtime
        self._mailbox = Mailbox(self.name, self.mailbox_size)
        await runtime.transport.bind(self.name, self._mailbox)
        self._workers = [
            tg.create_task(self._work(self._mailbox), name=f"agentcomm:{self.name}:{i}")
            for i in range(self.concurrency)
        ]

    async def _stop(self, deadline: float) -> None:
        """Unbind, let queued work finish until ``deadline`` (loop time), then cancel."""
        box = self._mailbox
        if box is None:
            return
        rt = self.runtime
        await rt.transport.unbind(self.name)
        left = deadline - asyncio.get_running_loop().time()
        if left > 0:
            try:
                async with asyncio.timeout(left):
                    await box._queue.join()
            except TimeoutError:
                logger.warning(
                    "agent %s: %d messages not handled before the shutdown deadline",
                    self.name,
                    box.qsize() + self._active,
                )
        for task in self._workers:
            task.cancel()
        # Answer what is still queued, so no requester waits for its full timeout.
        while not box._queue.empty():
            d = box._queue.get_nowait()
            if d.envelope.kind == "request":
                await d.reply(
                    _error_response(
                        d.envelope,
                        self.name,
                        "error",
                        "TransportClosed",
                        f"agent {self.name} shut down before handling it",
                    )
                )
        self._workers = []
        self._mailbox = None

    async def _work(self, box: Mailbox) -> None:
        queue = box._queue
        while True:
            delivery = await queue.get()
            try:
                await self._dispatch(delivery)
            finally:
                queue.task_done()

    async def _dispatch(self, delivery: Delivery) -> None:
        env = delivery.envelope
        self._received += 1
        is_request = env.kind == "request"
        spec = self.handlers.get(env.handler or "")
        if spec is None:
            self._rejected += 1
            msg = (
                f"agent {self.name!r} has no handler {env.handler!r}; "
                f"it has {sorted(self.handlers)}"
            )
            if is_request:
                await delivery.reply(
                    _error_response(env, self.name, "unknown_handler", "UnknownHandler", msg)
                )
            else:
                logger.error("notification dropped: %s", msg)
                self.runtime._report_failure(env, msg)
            return
        if env.deadline is not None and env.expired():
            self._expired += 1
            if is_request:
                await delivery.reply(
                    _error_response(
                        env,
                        self.name,
                        "timeout",
                        "RequestTimeout",
                        "deadline passed before the handler ran",
                    )
                )
            else:
                self.runtime._report_failure(env, "deadline passed before the handler ran")
            return
        try:
            kwargs = spec.decode_args(env.payload)
        except ValidationError as exc:
            self._rejected += 1
            if is_request:
                await delivery.reply(
                    _error_response(env, self.name, "validation", "ValidationError", str(exc))
                )
            else:
                self.runtime._report_failure(env, str(exc))
            return
        if spec.context_arg is not None:
            kwargs[spec.context_arg] = Context(self, env)
        self._active += 1
        try:
            if spec.is_async:
                if env.deadline is not None:
                    loop_deadline = asyncio.get_running_loop().time() + (env.deadline - time.time())
                    async with asyncio.timeout_at(loop_deadline):
                        result = await spec.fn(**kwargs)
                else:
                    result = await spec.fn(**kwargs)
            else:
                result = spec.fn(**kwargs)
            if is_request:
                raw = spec.encode_result(result)
        except TimeoutError as exc:
            self._failed += 1
            if is_request:
                msg = str(exc) or "handler did not finish before the caller's deadline"
                await delivery.reply(
                    _error_response(env, self.name, "timeout", "TimeoutError", msg)
                )
            else:
                self.runtime._report_failure(env, "handler timed out")
            return
        except Exception as exc:
            self._failed += 1
            code = "validation" if isinstance(exc, ValidationError) else "error"
            if is_request:
                if code == "validation":
                    msg = f"handler {spec.name!r} returned a value that breaks its schema: {exc}"
                    code = "error"
                else:
                    msg = str(exc)
                await delivery.reply(_error_response(env, self.name, code, type(exc).__name__, msg))
            else:
                logger.exception("agent %s: handler %s failed", self.name, spec.name)
                self.runtime._report_failure(env, f"{type(exc).__name__}: {exc}")
            return
        finally:
            self._active -= 1
        self._handled += 1
        if is_request:
            resp = Envelope(
                id=new_id(),
                kind="response",
                sender=self.name,
                recipient=env.sender,
                correlation_id=env.id,
                causation_id=env.id,
                traceparent=env.traceparent,
                payload=raw,
                schema=spec.output.name if spec.output else None,
            )
            self.runtime._record(resp)
            await delivery.reply(resp)

    # -- talking -------------------------------------------------------------
    def _envelope(
        self,
        kind: Any,
        to: str,
        handler: str,
        payload: Any,
        timeout: float | None,
        headers: dict[str, str] | None,
        cause: Envelope | None,
    ) -> Envelope:
        now = time.time()
        return Envelope(
            id=new_id(),
            kind=kind,
            sender=self.name,
            recipient=to,
            handler=handler,
            payload=encode_payload(payload),
            created=now,
            deadline=None if timeout is None else now + timeout,
            causation_id=None if cause is None else cause.id,
            traceparent=None if cause is None else cause.traceparent,
            headers=headers or {},
        )

    async def send(
        self,
        to: str,
        handler: str,
        payload: Any = None,
        *,
        block: bool = True,
        timeout: float | None = None,
        headers: dict[str, str] | None = None,
        cause: Envelope | None = None,
    ) -> None:
        """Fire-and-forget notification to ``to``'s ``handler``.

        Raises :class:`NoResponders` at once if ``to`` is absent. With a full mailbox,
        waits for room (bounded by ``timeout``) or, with ``block=False``, raises
        :class:`MailboxFull`.

        Example::

            await alice.send("bob", "note", {"text": "build finished"})
        """
        rt = self.runtime
        rt._authorize(self.name, "send", f"{to}.{handler}")
        env = self._envelope("notification", to, handler, payload, timeout, headers, cause)
        rt._record(env)
        self._sent += 1
        if timeout is None:
            await rt.transport.send(env, block=block)
            return
        try:
            async with asyncio.timeout(timeout):
                await rt.transport.send(env, block=block)
        except TimeoutError:
            raise MailboxFull(to, -1) from None

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
        cause: Envelope | None = None,
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
        cause: Envelope | None = None,
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
        cause: Envelope | None = None,
    ) -> Any:
        """Call ``to``'s ``handler`` and return its answer (decoded as ``returns`` if given).

        Raises :class:`NoResponders` at once when ``to`` is absent,
        :class:`RequestTimeout` after ``timeout`` seconds (default: the runtime's),
        :class:`ValidationError` when the payload breaks the handler's schema, and
        :class:`RemoteError` when the handler raised.

        Example::

            total = await alice.request("calc", "add", {"a": 1, "b": 2}, returns=int)
        """
        rt = self.runtime
        rt._authorize(self.name, "send", f"{to}.{handler}")
        if timeout is None:
            timeout = rt.default_timeout
        env = self._envelope("request", to, handler, payload, timeout, headers, cause)
        rt._record(env)
        self._requested += 1
        resp = await rt.transport.request(env, timeout)
        if resp.error is not None:
            _raise_remote(resp)
        if returns is None:
            return _json_decode(resp.payload)
        return codec_for(returns).decode(resp.payload)

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
            queued=box.qsize() if box else 0,
            mailbox_size=self.mailbox_size,
            in_flight=self._active,
            received=self._received,
            handled=self._handled,
            failed=self._failed,
            rejected=self._rejected,
            expired=self._expired,
            sent=self._sent,
            requested=self._requested,
        )
