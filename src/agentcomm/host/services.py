"""What the host needs from the layers above it, and what it offers them: Protocols it owns.

The host (runtime, agents, workers) never imports a pattern, the security package
or the observability package. It names what it needs from them here, and the
public :class:`~agentcomm.Runtime` (``agentcomm.api``) plugs the implementations in:

* :class:`TracingHook`: OpenTelemetry spans (``agentcomm.observability.tracing``);
* :class:`GuardHook`: limits, signatures, the receiver-side policy check
  (``agentcomm.security.guard``);
* :class:`HostServices`: what an agent (and a handler's context) uses of the
  runtime it runs in; :class:`agentcomm.host.runtime.Runtime` provides it.

The lifecycle hooks of patterns (:class:`~agentcomm.host.extension.Extension`) and
the direct-messaging service (:class:`~agentcomm.host.runtime.Requests`) live
beside the runtime.

Example::

    def trace_everything(rt: HostServices) -> bool:
        return rt.tracing is not None
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from agentcomm.core.envelope import Envelope
    from agentcomm.host.message_log import MessageLog
    from agentcomm.transports.base import Transport

__all__ = ["AccessHook", "GuardHook", "HostServices", "TracingHook"]

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

    #: True when senders have a rate limit (then ``hold`` may wait; else ``seal`` is it).
    rated: bool

    async def hold(self, env: Envelope, deadline: float | None = None) -> Envelope: ...

    def seal(self, env: Envelope) -> Envelope: ...

    def seal_reply(self, request: Envelope, resp: Envelope) -> Envelope: ...

    def admit(self, agent: str, env: Envelope) -> tuple[str, str, str] | None: ...

    def admit_event(self, agent: str, env: Envelope) -> tuple[str, str] | None: ...

    def admit_work(self, agent: str, env: Envelope) -> tuple[str, str, str] | None: ...

    def redrive(self, env: Envelope) -> Envelope: ...

    def release(self, env: Envelope) -> None: ...

    def check_response(self, request: Envelope, resp: Envelope) -> None: ...


class HostServices(Protocol):
    """What an agent and its contexts use of their runtime (``agent.runtime``).

    Example::

        agent.runtime.authorize(agent.name, "write", "plan.goal")
    """

    transport: Transport
    message_log: MessageLog
    guard: GuardHook | None
    tracing: TracingHook | None
    access: AccessHook | None
    default_timeout: float
    # The direct-messaging service (agentcomm.host.runtime.Requests), or None.
    requests: Any

    def authorize(self, agent: str, action: str, target: str) -> None: ...

    def record(self, env: Envelope) -> None: ...

    def report_failure(self, env: Envelope, reason: str) -> None: ...

    def report_error(self, kind: str, error: BaseException | str, *, subject: str = "") -> None: ...

    def declared(self, agent: Any, kind: str) -> None: ...

    def existing_extension(self, name: str) -> Any: ...
