"""The runtime: owns every task, wires agents to a transport, shuts down gracefully.

Example::

    async with Runtime(MemoryTransport()) as rt:   # agentcomm.Runtime picks one for you
        alice = rt.agent("alice")
        ...
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, ClassVar, Protocol, Self, TypeVar

from agentcomm.core.envelope import Envelope
from agentcomm.core.errors import ConfigurationError, TransportClosed
from agentcomm.core.rejects import Rejects
from agentcomm.host.agent import Agent
from agentcomm.host.extension import Extension, Extensions
from agentcomm.host.failures import FailureLog
from agentcomm.host.message_log import MessageLog
from agentcomm.host.runtime_stats import RuntimeStatistics
from agentcomm.host.services import AccessHook, GuardHook, HostServices, TracingHook
from agentcomm.host.task_group import _RuntimeTaskGroup
from agentcomm.transports.base import Transport

__all__ = ["Requests", "Runtime", "requests_of", "runtime_of"]

logger = logging.getLogger("agentcomm")
_T = TypeVar("_T")


class Requests(Protocol):
    """Direct messages sent as an agent; implemented by ``agentcomm.direct``."""

    async def send(
        self,
        agent: Agent,
        to: str,
        handler: str,
        payload: Any = None,
        *,
        block: bool = True,
        timeout: float | None = None,
        ttl: float | None = None,
        headers: dict[str, str] | None = None,
        cause: Envelope | None = None,
    ) -> None: ...

    async def request(
        self,
        agent: Agent,
        to: str,
        handler: str,
        payload: Any = None,
        *,
        timeout: float | None = None,
        returns: Any = None,
        headers: dict[str, str] | None = None,
        cause: Envelope | None = None,
        on_progress: Any = None,
    ) -> Any: ...


def requests_of(runtime: HostServices) -> Requests:
    """The runtime's direct-messaging service; ConfigurationError when none is installed.

    Example::

        await requests_of(rt).request(agent, "calc", "add", {"a": 1, "b": 2})
    """
    requests: Requests | None = runtime.requests
    if requests is None:
        from agentcomm.core.errors import ConfigurationError

        raise ConfigurationError(
            "this runtime has no direct messaging; use agentcomm.Runtime, which installs it"
        )
    return requests


class Runtime:
    """The host's runtime: owns agents, their tasks and a transport; ``async with``.

    This is the layer patterns build on; applications use the public
    :class:`agentcomm.Runtime`, which adds the patterns (``rt.board``, ``rt.events``,
    ``rt.tools``) and the security and tracing hooks. It never imports a pattern:
    they reach it through :meth:`extension`, :meth:`register` and the services in
    :mod:`agentcomm.host.services`.

    On exit it stops accepting messages, lets queued work finish for up to
    ``drain_timeout`` seconds, then cancels what is left; a task that failed makes
    the ``async with`` raise.

    Example::

        async with Runtime(MemoryTransport(), agents=[calc]) as rt: ...
    """

    #: The class :meth:`agent` creates (the public Runtime makes public Agents).
    agent_class: ClassVar[type[Agent]] = Agent

    def __init__(
        self,
        transport: Transport,
        *,
        agents: Iterable[Agent] = (),
        default_timeout: float = 30.0,
        drain_timeout: float = 10.0,
        log_size: int = 1000,
        log_max_age: float | None = None,
        access: AccessHook | None = None,
        guard: GuardHook | None = None,
        tracing: TracingHook | None = None,
    ) -> None:
        self.transport = transport
        self.default_timeout = default_timeout
        self.drain_timeout = drain_timeout
        self.message_log = MessageLog(log_size, log_max_age)
        rejects = getattr(self.transport, "rejects", None)  # the NATS transport counts too
        #: Refused frames by kind (the transport's own counter when it keeps one).
        self._rejects = rejects if isinstance(rejects, Rejects) else Rejects(logger)
        self.access = access
        #: Boundary checks (limits, signatures, receiver-side policy), or ``None``.
        self.guard = guard
        #: OpenTelemetry tracing, or ``None`` (off, the default: no cost).
        self.tracing = tracing
        #: Direct messages as an agent (set by the public Runtime: ``agentcomm.direct``).
        self.requests: Requests | None = None
        self._agents: dict[str, Agent] = {}
        self._tg: asyncio.TaskGroup | None = None
        self._running = False
        self._failures = 0
        #: Failures by kind, including background work's (``statistics().errors``).
        self.failure_log = FailureLog()
        self._ext: Extensions[Runtime] = Extensions()
        for a in agents:
            self.add(a)

    def register(self, hook: Extension[Runtime]) -> None:
        """Register a pattern's lifecycle hooks (see :class:`Extension`).

        Example::

            rt.register(Extension("presence", on_start=start_presence))
        """
        self._ext.register(hook)

    # -- agents ----------------------------------------------------------------
    def add(self, *agents: Agent) -> None:
        """Register agents before the runtime starts (use :meth:`attach` after).

        Example::

            rt.add(billing, crm)
        """
        if self._running:
            raise ConfigurationError(
                "the runtime is running; use `await rt.attach(agent)` to add an agent now"
            )
        for a in agents:
            self._register(a)

    def _register(self, agent: Agent) -> None:
        if agent.name in self._agents:
            raise ConfigurationError(f"an agent named {agent.name!r} is already registered")
        if agent._runtime is not None and agent._runtime is not self:
            raise ConfigurationError(f"agent {agent.name!r} already belongs to another runtime")
        self._agents[agent.name] = agent
        agent._runtime = self

    def agent(self, name: str, **options: Any) -> Agent:
        """Create and register an agent; when the runtime runs, start it at once.

        The agent can send and request immediately. On the in-memory transport it is
        also reachable immediately; on a network transport it binds in the
        background (``await rt.attach(Agent(...))`` returns only once reachable).

        Example::

            client = rt.agent("client")
        """
        a = self.agent_class(name, **options)
        self._register(a)
        if self._running:
            tg = self._tg
            assert tg is not None
            box = a._prepare(self)
            if self.transport.bind_nowait(a.name, box):
                a._spawn_workers(tg)
            else:
                tg.create_task(self._bind_later(a), name=f"agentcomm:bind:{name}")
        return a

    async def _bind_later(self, a: Agent) -> None:
        try:
            assert a._mailbox is not None
            assert self._tg is not None
            await self.transport.bind(a.name, a._mailbox)
            a._spawn_workers(self._tg)
        except Exception as exc:
            logger.exception("runtime: agent %s could not be bound; it can only send", a.name)
            self.report_error("bind", exc, subject=a.name)

    async def attach(self, agent: Agent) -> Agent:
        """Register and start an agent while the runtime runs.

        Example::

            helper = await rt.attach(Agent("helper"))
        """
        if not self._running or self._tg is None:
            raise TransportClosed("the runtime is not running; use `rt.add(agent)` before start")
        self._register(agent)
        await agent._start(self, self._tg)
        await self._ext.started(self, [agent], first=False)
        return agent

    async def detach(self, agent: Agent | str) -> None:
        """Stop an agent (draining its mailbox) and unregister it.

        Example::

            await rt.detach("helper")
        """
        a = self._agents.get(agent if isinstance(agent, str) else agent.name)
        if a is None:
            raise ConfigurationError(f"no agent named {agent!r} in this runtime")
        await self._ext.detaching(self, a)  # e.g. its event subscriptions stop first
        await a._stop(asyncio.get_running_loop().time() + self.drain_timeout)
        del self._agents[a.name]
        a._runtime = None

    @property
    def agents(self) -> dict[str, Agent]:
        """Registered agents by name (a copy)."""
        return dict(self._agents)

    @property
    def running(self) -> bool:
        """True between start and shutdown."""
        return self._running

    @property
    def task_group(self) -> asyncio.TaskGroup:
        """The task group owning the runtime's tasks (for pattern modules)."""
        if self._tg is None:
            raise TransportClosed("the runtime is not running; use it inside `async with`")
        return self._tg

    # -- lifecycle -------------------------------------------------------------
    async def __aenter__(self) -> Self:
        if self._running:
            raise ConfigurationError("this runtime is already running")
        await self.transport.start()
        tg = _RuntimeTaskGroup()
        await tg.__aenter__()
        self._tg = tg
        self._running = True
        try:
            started = list(self._agents.values())
            for a in started:
                await a._start(self, tg)
            await self._ext.started(self, started, first=True)
        except BaseException as exc:
            await self._shutdown(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        return await self._shutdown(et, ev, tb)

    async def _shutdown(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        tg = self._tg
        try:
            deadline = asyncio.get_running_loop().time() + self.drain_timeout
            await self._ext.close()
            for a in list(self._agents.values()):
                await a._stop(deadline)
            await self._ext.close()  # any a draining handler opened
            if isinstance(tg, _RuntimeTaskGroup):
                # what the closing above set ending may finish until the drain deadline
                running = [t for t in tg._owned if not t.done()]
                wait = deadline - asyncio.get_running_loop().time()
                if running and wait > 0:
                    await asyncio.wait(running, timeout=wait)
                left = tg.cancel_remaining()
                if left:
                    logger.warning("runtime: cancelled tasks still running at exit: %s", left)
        finally:
            self._running = False
            self._tg = None
            try:
                if tg is not None:
                    # Hand the task group only a cancellation: an ordinary exception
                    # from the body then propagates as itself, not in an ExceptionGroup.
                    cancelled = et is not None and issubclass(et, asyncio.CancelledError)
                    await tg.__aexit__(*((et, ev, tb) if cancelled else (None, None, None)))
            finally:
                await self.transport.close()
                for a in self._agents.values():  # free to join another runtime now
                    if a._runtime is self:
                        a._runtime = None
        return None

    # -- extensions (blackboard, pub/sub, tools) ---------------------------------
    def extension(self, name: str, factory: Callable[[Runtime], Any]) -> Any:
        """The runtime's single instance of a pattern module, created on first use.

        Example::

            board = rt.extension("blackboard", Blackboard)
        """
        ext = self._ext.instances.get(name)
        if ext is None:
            ext = self._ext.instances[name] = factory(self)
        return ext

    def existing_extension(self, name: str) -> Any:
        """The extension ``name`` if it was created, else ``None`` (never creates it).

        Example::

            ps = rt.existing_extension("pubsub")
        """
        return self._ext.instances.get(name)

    def extension_of(self, name: str, kind: type[_T]) -> _T | None:
        """The extension ``name`` as a ``kind`` if it was created, else ``None``.

        Never creates it; one of another type is a ConfigurationError.

        Example::

            ps = rt.extension_of("pubsub", PubSub)   # PubSub | None
        """
        ext = self._ext.instances.get(name)
        if ext is None or isinstance(ext, kind):
            return ext
        raise ConfigurationError(
            f"the extension {name!r} is a {type(ext).__name__}, not a {kind.__name__}"
        )

    def remove_extension(self, name: str) -> Any:
        """Forget the extension ``name`` without closing it; returns it, or ``None``.

        For a pattern whose start failed after :meth:`extension` created it.

        Example::

            rt.remove_extension("prometheus")
        """
        return self._ext.instances.pop(name, None)

    def extensions(self) -> list[tuple[str, Any]]:
        """The extensions created so far, as ``(name, instance)`` pairs.

        Example::

            for name, ext in rt.extensions(): print(name)
        """
        return list(self._ext.instances.items())

    def get_agent(self, name: str) -> Agent | None:
        """The registered agent named ``name``, or ``None``.

        Example::

            calc = rt.get_agent("calc")
        """
        return self._agents.get(name)

    # -- services for agents and patterns ------------------------------------------
    def authorize(self, agent: str, action: str, target: str) -> None:
        """Ask the access hook; raises :class:`PermissionDenied` when it refuses.

        Example::

            rt.authorize("planner", "write", "plan.goal")
        """
        if self.access is not None:
            self.access(agent, action, target)

    def authorize_subscription(
        self, agent: str, pattern: str, name: str, group: str | None
    ) -> None:
        """The subscribe rule, then the consumer name (a hook with ``check_consumer``).

        Example::

            rt.authorize_subscription("billing", "orders.*", "charge", None)
        """
        if self.access is not None:
            self.access(agent, "subscribe", pattern)
            check = getattr(self.access, "check_consumer", None)
            if check is not None:
                check(agent, name, group=group)

    def record(self, env: Envelope) -> None:
        """Keep ``env`` in the bounded message log.

        Example::

            rt.record(env)
        """
        self.message_log.append(env)  # also bound directly by agents on their hot path

    def declared(self, agent: Agent, kind: str) -> None:
        """An agent declared something (``agent.declare``): tell the running extensions.

        Example::

            rt.declared(agent, "pubsub")
        """
        if self._running and self._agents.get(agent.name) is agent:
            self._ext.declared(self, agent, kind)

    def report_failure(self, env: Envelope, reason: str) -> None:
        """Count and log a message the runtime could not handle (kind ``message``).

        Example::

            rt.report_failure(env, "no handler")
        """
        self._failures += 1
        self.failure_log.add("message", reason, subject=env.id)
        logger.warning("message %s from %s not handled: %s", env.id, env.sender, reason)

    def report_error(self, kind: str, error: BaseException | str, *, subject: str = "") -> None:
        """Count a failure of background work under ``kind`` (``statistics().errors``).

        The kinds are listed in :class:`RuntimeStatistics`; the caller logs as it
        sees fit (a loop that retries logs once, but every failure is counted).

        Example::

            rt.report_error("subscription_start", exc, subject="billing__charge")
        """
        self.failure_log.add(kind, error, subject=subject)

    def statistics(self) -> RuntimeStatistics:
        """A frozen snapshot of the runtime and every agent.

        Example::

            for a in rt.statistics().agents: print(a.name, a.handled)
        """
        return RuntimeStatistics(
            transport=self.transport.name,
            running=self._running,
            agents=tuple(a.statistics() for a in self._agents.values()),
            messages_logged=len(self.message_log),
            failures=self._failures,
            rejected_frames=self._rejects.snapshot(),
            errors=self.failure_log.snapshot(),
        )


def runtime_of(agent: Agent) -> Runtime:
    """The runtime ``agent`` is attached to, as a :class:`Runtime` (for patterns).

    Raises :class:`TransportClosed` when the agent is not attached.

    Example::

        rt = runtime_of(agent)
    """
    rt = agent.runtime
    if not isinstance(rt, Runtime):  # pragma: no cover - agents attach only to a Runtime
        raise TypeError(f"agent {agent.name!r} is attached to {type(rt).__name__}, not a Runtime")
    return rt
