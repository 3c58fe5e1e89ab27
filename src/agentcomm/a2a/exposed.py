"""What the request handler and the card read of an exposure (a Protocol: no SDK, no cycle).

Example::

    def describe(x: Exposed) -> str: return f"{x.agent_name} at {x.url}"
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from agentcomm.a2a.auth import Auth
    from agentcomm.a2a.skills import Skill
    from agentcomm.host.agent import Agent
    from agentcomm.host.runtime import Runtime

__all__ = ["Exposed"]


class Exposed(Protocol):
    """One exposed agent, as :class:`~agentcomm.a2a.server.A2AExposure` is."""

    runtime: Runtime
    agent: Agent
    agent_name: str
    skills: dict[str, Skill]
    default_skill: str | None
    auth: list[Auth]
    timeout: float | None
    send_wait: float | None
    bindings: tuple[str, ...]
    description: str | None
    version: str

    @property
    def url(self) -> str: ...

    def caller(self, context: Any) -> Any: ...

    def check_payload(self, skill: Skill, payload: Any) -> None: ...

    def traced(self, context: Any, operation: str) -> AbstractContextManager[None]: ...
