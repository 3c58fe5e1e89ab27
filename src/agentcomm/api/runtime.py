"""The public Runtime: the host's runtime with every pattern and hook plugged in.

:class:`agentcomm.host.runtime.Runtime` owns the agents, their tasks and the
transport, and knows nothing of the patterns. This class picks a transport, builds
the security guard and the tracing hook from its keywords, installs direct messages
(``rt.requests``), and registers the lifecycle hooks of pub/sub and presence; it
offers the patterns as ``rt.board``, ``rt.events`` and ``rt.tools``.

Example::

    async with Runtime() as rt:            # in-memory transport by default
        alice = rt.agent("alice")
        ...
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from agentcomm.a2a.service import A2A
from agentcomm.api.agent import Agent
from agentcomm.blackboard.board import Blackboard
from agentcomm.core.errors import ConfigurationError
from agentcomm.direct.messaging import DirectMessages
from agentcomm.host.agent import Agent as _HostAgent
from agentcomm.host.extension import Extension
from agentcomm.host.runtime import Runtime as _HostRuntime
from agentcomm.host.services import AccessHook
from agentcomm.pubsub.bus import PubSub
from agentcomm.pubsub.declare import has_subscriptions
from agentcomm.tasks.model import TaskRetention
from agentcomm.tasks.service import Tasks, tasks_extension
from agentcomm.tools.catalogue import Tools
from agentcomm.transports.base import Transport

if TYPE_CHECKING:
    from agentcomm.core.limits import Limits
    from agentcomm.dashboard.server import Dashboard
    from agentcomm.security.signing import Security

__all__ = ["Runtime"]


class Runtime(_HostRuntime):
    """Owns agents, their tasks and a transport; use it as ``async with``.

    With no transport it runs in-process on :class:`~agentcomm.transports.memory.MemoryTransport`.
    On exit it stops accepting messages, lets queued work finish for up to
    ``drain_timeout`` seconds, then cancels what is left; a task that failed makes
    the ``async with`` raise.

    Security (off by default, and then free): ``access`` is the access hook, for
    example an :class:`~agentcomm.security.policy.Policy`; ``security`` a
    :class:`~agentcomm.security.signing.Security` (sign every envelope, verify it
    before a handler runs); ``limits`` a :class:`~agentcomm.core.limits.Limits`
    checked by sender and receiver. See ``docs/security.md``. ``task_retention``
    bounds the durable task store (``docs/streams-and-tasks.md``).

    Example::

        async with Runtime(agents=[calc], default_timeout=5.0) as rt:
            print(await rt.agent("me").request("calc", "add", {"a": 1, "b": 2}))
    """

    agent_class: ClassVar[type[_HostAgent]] = Agent

    def __init__(
        self,
        transport: Transport | str | None = None,
        *,
        agents: Iterable[_HostAgent] = (),
        default_timeout: float = 30.0,
        drain_timeout: float = 10.0,
        log_size: int = 1000,
        log_max_age: float | None = None,
        access: AccessHook | None = None,
        tracing: Any = None,
        security: Security | None = None,
        limits: Limits | None = None,
        task_retention: TaskRetention | None = None,
    ) -> None:
        engine = _make_transport(transport)
        super().__init__(
            engine,
            default_timeout=default_timeout,
            drain_timeout=drain_timeout,
            log_size=log_size,
            log_max_age=log_max_age,
            access=access,
        )
        self.security = security
        self.limits = limits
        #: What the durable task store keeps (:class:`~agentcomm.tasks.model.TaskRetention`).
        self.task_retention = task_retention or TaskRetention()
        # The receiver re-checks the policy on every engine (a peer may bypass the library).
        if security is not None or limits is not None or access is not None:
            from agentcomm.security.guard import Guard

            self.guard = Guard(self, security=security, limits=limits)
        if tracing is not None and tracing is not False:
            from agentcomm.observability.tracing import Tracing

            self.tracing = Tracing(tracing)
        self.requests = DirectMessages(self)
        self.register(
            Extension(
                "pubsub",
                on_agents=_start_pubsub,
                on_detach=_stop_subscriptions,
                on_declare=_subscription_declared,
            )
        )
        self.register(tasks_extension())
        if engine.shared:  # other processes can see it: announce who is here
            self.register(Extension("presence", on_start=_start_presence))
        for a in agents:
            self.add(a)

    def agent(self, name: str, **options: Any) -> Agent:
        """Create and register an agent; when the runtime runs, start it at once.

        The agent can send and request immediately. On the in-memory transport it is
        also reachable immediately; on a network transport it binds in the
        background (``await rt.attach(Agent(...))`` returns only once reachable).

        Example::

            client = rt.agent("client")
        """
        a = super().agent(name, **options)
        assert isinstance(a, Agent)
        return a

    @property
    def board(self) -> Blackboard:
        """The runtime's shared blackboard (writes authored by ``"runtime"``).

        Example::

            rev = await rt.board.write("plan.goal", {"text": "ship it"})
        """
        return Blackboard(self)

    @property
    def events(self) -> PubSub:
        """The runtime's pub/sub: publish, replay, dead letters, statistics.

        Example::

            for dl in await rt.events.dead_letters(): print(dl.reason)
        """
        return PubSub.of(self)

    @property
    def tasks(self) -> Tasks:
        """The durable task service: list tasks, re-attach to one.

        Example::

            for s in await rt.tasks.list(): print(s.id, s.state, s.progress)
        """
        return Tasks.of(self)

    @property
    def tools(self) -> Tools:
        """The tool catalogue and MCP bridge (:class:`~agentcomm.tools.catalogue.Tools`).

        Example::

            print([t.llm_name for t in rt.tools.catalogue()])
        """
        tools: Tools = self.extension("tools", Tools)
        if tools.board_for is None:  # the blackboard as an MCP client's identity
            tools.board_for = lambda author: Blackboard(self, author=author)
        return tools

    def dashboard(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        allow_actions: bool = False,
        operator: str = "operator",
        bucket: str = "blackboard",
    ) -> Dashboard:
        """A live web dashboard of this runtime: ``async with`` it, open ``dash.url``.

        Needs the ``dashboard`` extra (imported only here). It binds ``host``
        (loopback by default) on ``port`` (0: a free one); the URL carries a random
        ``token`` every request must present. Read-only unless ``allow_actions``
        (redrive or discard a dead letter, delete a blackboard key), which then run
        as ``operator`` under this runtime's access policy. See ``docs/dashboard.md``.

        Example::

            async with rt.dashboard() as dash:
                print("open", dash.url)
        """
        from agentcomm.dashboard.server import Dashboard
        from agentcomm.dashboard.sources import RuntimeSource

        source = RuntimeSource(self, bucket=bucket, operator=operator)
        return Dashboard(source, host=host, port=port, token=token, allow_actions=allow_actions)

    @property
    def a2a(self) -> A2A:
        """The A2A bridge: expose agents, connect to A2A agents (:class:`~agentcomm.a2a.A2A`).

        Example::

            exposure = await rt.a2a.expose("concierge")
        """
        return A2A.of(self)


async def _start_pubsub(rt: _HostRuntime, agents: Sequence[_HostAgent]) -> None:
    """Start pub/sub as soon as an agent subscribes, so events flow from the start."""
    if has_subscriptions(agents):
        await PubSub.of(rt).start()


def _subscription_declared(rt: _HostRuntime, agent: _HostAgent, kind: str) -> None:
    if kind == "pubsub":
        PubSub.of(rt).declared(agent)  # start it now, not at the next pub/sub call


async def _stop_subscriptions(rt: _HostRuntime, agent: _HostAgent) -> None:
    ps = rt.existing_extension("pubsub")
    if isinstance(ps, PubSub):
        await ps.detach_agent(agent)


async def _start_presence(rt: _HostRuntime) -> None:
    """Who is connected, for ``agentcomm agents`` (engines other processes share)."""
    from agentcomm.observability.presence import Presence

    rt.extension("presence", Presence).start()


def _make_transport(spec: Transport | str | None) -> Transport:
    if spec is None or spec == "memory":
        from agentcomm.transports.memory import MemoryTransport

        return MemoryTransport()
    if isinstance(spec, Transport):
        return spec
    if isinstance(spec, str) and spec.startswith(("nats://", "tls://")):
        try:
            from agentcomm.transports.nats import NatsTransport
        except ImportError as exc:
            raise ConfigurationError(
                "the NATS transport needs the extra: pip install 'agentcomm[nats]'"
            ) from exc
        return NatsTransport(spec)
    raise ConfigurationError(
        f"unknown transport {spec!r}: pass a Transport, 'memory' or a nats:// URL"
    )
