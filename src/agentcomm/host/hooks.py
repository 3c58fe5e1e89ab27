"""What the host offers patterns, and the hooks it calls: typed Protocols it owns.

The host (runtime, agents, workers) never imports a pattern, the security package
or the observability package. It names what it needs from them here, and the
public :class:`~agentcomm.Runtime` (``agentcomm.api``) plugs the implementations in:

* :class:`TracingHook`: OpenTelemetry spans (``agentcomm.observability.tracing``);
* :class:`GuardHook`: limits, signatures, the receiver-side policy check
  (``agentcomm.security.guard``);
* :class:`Requests`: sending notifications and requests as an agent
  (``agentcomm.direct``), so any pattern can call an agent without importing
  another pattern;
* :class:`Extension`: the lifecycle hooks of a pattern module (start, agents
  attached, agent detached), registered with :meth:`Runtime.register`.

Example::

    rt.register(Extension("pubsub", on_agents=start_pubsub, on_detach=stop_subscriptions))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from agentcomm.core.envelope import Envelope
    from agentcomm.host.agent import Agent
    from agentcomm.host.runtime import Runtime

__all__ = ["AccessHook", "Extension", "GuardHook", "Requests", "TracingHook", "requests_of"]

#: ``hook(agent, action, target)`` raises :class:`PermissionDenied` to refuse.
#: Actions: "send" (target "agent.handler"), "publish"/"subscribe" (target topic),
#: "read"/"write" (target blackboard key), "call" (target tool).
AccessHook = Callable[[str, str, str], None]


class TracingHook(Protocol):
    """Spans around every hop; implemented by ``agentcomm.observability.tracing.Tracing``."""

    def current_traceparent(self) -> tuple[str | None, str | None]: ...

    def span(
        self,
        operation: str,
        destination: str,
        *,
        kind: str,
        parent: Envelope | str | None = None,
        attributes: dict[str, Any] | None = None,
    ) -> AbstractContextManager[Any]: ...

    def describe_current(self, env: Envelope) -> None: ...

    def message_attributes(self, env: Envelope) -> dict[str, Any]: ...

    def event(self, name: str, attributes: dict[str, Any]) -> None: ...

    def record_failure(self, code: str, exc_type: str, message: str) -> None: ...


class GuardHook(Protocol):
    """Boundary checks; implemented by ``agentcomm.security.guard.Guard``."""

    async def hold(self, env: Envelope, deadline: float | None = None) -> Envelope: ...

    def seal(self, env: Envelope) -> Envelope: ...

    def seal_reply(self, request: Envelope, resp: Envelope) -> Envelope: ...

    def admit(self, agent: str, env: Envelope) -> tuple[str, str, str] | None: ...

    def admit_event(self, agent: str, env: Envelope) -> tuple[str, str] | None: ...

    def redrive(self, env: Envelope) -> Envelope: ...

    def release(self, env: Envelope) -> None: ...

    def check_response(self, request: Envelope, resp: Envelope) -> None: ...


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
    ) -> Any: ...


@dataclasses.dataclass(frozen=True, slots=True)
class Extension:
    """A pattern's lifecycle hooks, called by the runtime in registration order.

    ``on_start(rt)`` once the runtime and its first agents run; ``on_agents(rt,
    agents)`` for the agents started with the runtime and for each one attached
    later; ``on_detach(rt, agent)`` before an agent stops.

    Example::

        rt.register(Extension("presence", on_start=start_presence))
    """

    name: str
    on_start: Callable[[Runtime], Awaitable[None]] | None = None
    on_agents: Callable[[Runtime, Sequence[Agent]], Awaitable[None]] | None = None
    on_detach: Callable[[Runtime, Agent], Awaitable[None]] | None = None


def requests_of(runtime: Runtime) -> Requests:
    """The runtime's direct-messaging service; ConfigurationError when none is installed.

    Example::

        await requests_of(rt).request(agent, "calc", "add", {"a": 1, "b": 2})
    """
    requests = runtime.requests
    if requests is None:
        from agentcomm.core.errors import ConfigurationError

        raise ConfigurationError(
            "this runtime has no direct messaging; use agentcomm.Runtime, which installs it"
        )
    return requests
