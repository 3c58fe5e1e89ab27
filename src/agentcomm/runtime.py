"""The runtime: owns every task, wires agents to a transport, shuts down gracefully.

Example::

    async with Runtime() as rt:            # in-memory transport by default
        alice = rt.agent("alice")
        ...
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any

import msgspec

from ._rejects import Rejects
from .agent import Agent, AgentStatistics
from .envelope import Envelope
from .errors import ConfigurationError, TransportClosed
from .transports.base import Transport

if TYPE_CHECKING:
    from ._guard import Guard
    from .blackboard import Blackboard
    from .limits import Limits
    from .pubsub import PubSub
    from .security import Security
    from .tools import Tools
    from .tracing import Tracing

__all__ = ["AccessHook", "MessageLog", "Runtime", "RuntimeStatistics"]

logger = logging.getLogger("agentcomm")

#: ``hook(agent, action, target)`` raises :class:`PermissionDenied` to refuse.
#: Actions: "send" (target "agent.handler"), "publish"/"subscribe" (target topic),
#: "read"/"write" (target blackboard key), "call" (target tool).
AccessHook = Callable[[str, str, str], None]


class _RuntimeTaskGroup(asyncio.TaskGroup):
    """A task group that remembers its tasks, so shutdown can cancel stragglers."""

    def __init__(self) -> None:
        super().__init__()
        self._owned: set[asyncio.Task[Any]] = set()

    def create_task(self, coro: Any, *, name: str | None = None, context: Any = None) -> Any:
        task = super().create_task(coro, name=name, context=context)
        self._owned.add(task)
        task.add_done_callback(self._owned.discard)
        return task

    def cancel_remaining(self) -> list[str]:
        """Cancel every task still running; returns their names."""
        names = []
        for task in list(self._owned):
            if not task.done():
                names.append(task.get_name())
                task.cancel()
        return names


class MessageLog:
    """A bounded record of recent envelopes, for debugging (by count and by age).

    Example::

        for env in rt.message_log.recent(20):
            print(env.sender, "->", env.recipient or env.topic, env.kind)
    """

    __slots__ = ("_entries", "append", "max_age")

    def __init__(self, size: int = 1000, max_age: float | None = None) -> None:
        if size < 0:
            raise ConfigurationError(f"log size must be >= 0, got {size}")
        self._entries: deque[Envelope] = deque(maxlen=size)
        self.max_age = max_age
        #: Record one envelope (the oldest falls off when full); the deque's own append.
        self.append: Callable[[Envelope], None] = self._entries.append

    def recent(self, limit: int | None = None) -> list[Envelope]:
        """Envelopes still within the bounds, oldest first (at most ``limit``).

        Example::

            last = rt.message_log.recent(1)
        """
        if self.max_age is not None:
            cutoff = time.time() - self.max_age
            while self._entries and self._entries[0].created < cutoff:
                self._entries.popleft()
        items = list(self._entries)
        return items if limit is None else items[-limit:] if limit else []

    def __len__(self) -> int:
        return len(self._entries)


class RuntimeStatistics(msgspec.Struct, frozen=True):
    """A frozen snapshot of the runtime and its agents.

    ``rejected_frames`` counts, by kind, frames from the wire or a store that did not
    decode and were refused (``request``, ``notification``, ``direct``, ``reply``,
    ``event``, ``stream``, ``dead_letter``, ``blackboard``, ``presence``: see
    ``docs/security.md``); never fatal.

    Example::

        snap = rt.statistics(); print(snap.transport, [a.name for a in snap.agents])
    """

    transport: str
    running: bool
    agents: tuple[AgentStatistics, ...]
    messages_logged: int  # envelopes held in the bounded message log now
    failures: int
    rejected_frames: dict[str, int] = msgspec.field(default_factory=dict)


class Runtime:
    """Owns agents, their tasks and a transport; use it as ``async with``.

    With no transport it runs in-process on :class:`~agentcomm.transports.memory.MemoryTransport`.
    On exit it stops accepting messages, lets queued work finish for up to
    ``drain_timeout`` seconds, then cancels what is left; a task that failed makes
    the ``async with`` raise.

    Security (off by default, and then free): ``access`` is the access hook, for
    example an :class:`~agentcomm.policy.Policy`; ``security`` a
    :class:`~agentcomm.security.Security` (sign every envelope, verify it before a
    handler runs); ``limits`` a :class:`~agentcomm.limits.Limits` checked by sender
    and receiver. See ``docs/security.md``.

    Example::

        async with Runtime(agents=[calc], default_timeout=5.0) as rt:
            print(await rt.agent("me").request("calc", "add", {"a": 1, "b": 2}))
    """

    def __init__(
        self,
        transport: Transport | str | None = None,
        *,
        agents: Iterable[Agent] = (),
        default_timeout: float = 30.0,
        drain_timeout: float = 10.0,
        log_size: int = 1000,
        log_max_age: float | None = None,
        access: AccessHook | None = None,
        tracing: Any = None,
        security: Security | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.transport = _make_transport(transport)
        self.default_timeout = default_timeout
        self.drain_timeout = drain_timeout
        self.message_log = MessageLog(log_size, log_max_age)
        rejects = getattr(self.transport, "rejects", None)  # the NATS transport counts too
        #: Refused frames by kind (the transport's own counter when it keeps one).
        self._rejects = rejects if isinstance(rejects, Rejects) else Rejects(logger)
        self.access = access
        self.security = security
        self.limits = limits
        #: Boundary checks (limits, signatures, receiver-side policy), or ``None``.
        self._guard: Guard | None = None
        if (
            security is not None
            or limits is not None
            or (access is not None and self.transport.name != "memory")
        ):
            from ._guard import Guard

            self._guard = Guard(self, security=security, limits=limits)
        #: OpenTelemetry tracing, or ``None`` (off, the default: no cost).
        self.tracing: Tracing | None = None
        if tracing is not None and tracing is not False:
            from .tracing import Tracing

            self.tracing = Tracing(tracing)
        self._agents: dict[str, Agent] = {}
        self._tg: asyncio.TaskGroup | None = None
        self._running = False
        self._failures = 0
        self._extensions: dict[str, Any] = {}
        for a in agents:
            self.add(a)

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
        a = Agent(name, **options)
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
        except Exception:
            logger.exception("runtime: agent %s could not be bound; it can only send", a.name)

    async def attach(self, agent: Agent) -> Agent:
        """Register and start an agent while the runtime runs.

        Example::

            helper = await rt.attach(Agent("helper"))
        """
        if not self._running or self._tg is None:
            raise TransportClosed("the runtime is not running; use `rt.add(agent)` before start")
        self._register(agent)
        await agent._start(self, self._tg)
        await self._start_events([agent])
        return agent

    async def detach(self, agent: Agent | str) -> None:
        """Stop an agent (draining its mailbox) and unregister it.

        Example::

            await rt.detach("helper")
        """
        a = self._agents.get(agent if isinstance(agent, str) else agent.name)
        if a is None:
            raise ConfigurationError(f"no agent named {agent!r} in this runtime")
        if "pubsub" in self._extensions:  # its event subscriptions stop first
            await self._extensions["pubsub"].detach_agent(a)
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

    @property
    def board(self) -> Blackboard:
        """The runtime's shared blackboard (writes authored by ``"runtime"``).

        Example::

            rev = await rt.board.write("plan.goal", {"text": "ship it"})
        """
        from .blackboard import Blackboard

        return Blackboard(self)

    @property
    def events(self) -> PubSub:
        """The runtime's pub/sub: publish, replay, dead letters, statistics.

        Example::

            for dl in await rt.events.dead_letters(): print(dl.reason)
        """
        from .pubsub import PubSub

        ps: PubSub = self.extension("pubsub", PubSub)
        return ps

    # -- lifecycle -------------------------------------------------------------
    async def __aenter__(self) -> Runtime:
        if self._running:
            raise ConfigurationError("this runtime is already running")
        await self.transport.start()
        tg = _RuntimeTaskGroup()
        await tg.__aenter__()
        self._tg = tg
        self._running = True
        try:
            for a in list(self._agents.values()):
                await a._start(self, tg)
            await self._start_events(self._agents.values())
            if self.transport.name == "nats":  # who is connected, for `agentcomm agents`
                from .presence import Presence

                self.extension("presence", Presence).start()
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
            await self._close_extensions()
            for a in list(self._agents.values()):
                await a._stop(deadline)
            await self._close_extensions()  # any a draining handler opened
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

    async def _start_events(self, agents: Iterable[Agent]) -> None:
        """Start pub/sub now when an agent subscribes, so events flow from the start."""
        from .pubsub_declare import has_subscriptions

        if has_subscriptions(agents):
            await self.events.start()

    async def _close_extensions(self) -> None:
        while self._extensions:
            name = next(iter(self._extensions))
            ext = self._extensions.pop(name)
            close = getattr(ext, "aclose", None)
            if close is not None:
                try:
                    await close()
                except Exception:
                    logger.exception("runtime: closing %s failed", name)

    # -- extensions (blackboard, pub/sub, tools) ---------------------------------
    def extension(self, name: str, factory: Callable[[Runtime], Any]) -> Any:
        """The runtime's single instance of a pattern module, created on first use.

        Example::

            board = rt.extension("blackboard", Blackboard)
        """
        ext = self._extensions.get(name)
        if ext is None:
            ext = self._extensions[name] = factory(self)
        return ext

    @property
    def tools(self) -> Tools:
        """The tool catalogue and MCP bridge (:class:`~agentcomm.tools.Tools`).

        Example::

            print([t.llm_name for t in rt.tools.catalogue()])
        """
        from .tools import Tools

        return self.extension("tools", Tools)  # type: ignore[no-any-return]

    # -- hooks used by agents ------------------------------------------------------
    def _authorize(self, agent: str, action: str, target: str) -> None:
        if self.access is not None:
            self.access(agent, action, target)

    def _record(self, env: Envelope) -> None:
        self.message_log.append(env)  # also bound directly by agents on their hot path

    def _report_failure(self, env: Envelope, reason: str) -> None:
        self._failures += 1
        logger.warning("message %s from %s not handled: %s", env.id, env.sender, reason)

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
        )


def _make_transport(spec: Transport | str | None) -> Transport:
    if spec is None or spec == "memory":
        from .transports.memory import MemoryTransport

        return MemoryTransport()
    if isinstance(spec, Transport):
        return spec
    if isinstance(spec, str) and spec.startswith(("nats://", "tls://")):
        try:
            from .transports.nats import NatsTransport  # type: ignore[import-not-found,unused-ignore]
        except ImportError as exc:
            raise ConfigurationError(
                "the NATS transport needs the extra: pip install 'agentcomm[nats]'"
            ) from exc
        return NatsTransport(spec)  # type: ignore[no-any-return,unused-ignore]
    raise ConfigurationError(
        f"unknown transport {spec!r}: pass a Transport, 'memory' or a nats:// URL"
    )
