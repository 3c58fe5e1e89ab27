"""The extension point: how patterns plug into the runtime without the runtime importing them.

A pattern registers lifecycle hooks (:class:`Extension`) and keeps one instance
per runtime (``rt.extension(name, factory)``); :class:`Extensions` holds both
for the runtime, which calls the hooks in registration order and closes the
instances at shutdown.

Example::

    rt.register(Extension("presence", on_start=start_presence))
    board = rt.extension("blackboard", Blackboard)
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from agentcomm.core.errors import ConfigurationError

if TYPE_CHECKING:
    from agentcomm.host.agent import Agent

__all__ = ["Extension", "Extensions"]

logger = logging.getLogger("agentcomm")

#: The runtime the hooks receive (``agentcomm.host.runtime.Runtime``, which imports
#: this module: naming it here would be a cycle).
R = TypeVar("R", contravariant=True)


@dataclasses.dataclass(frozen=True, slots=True)
class Extension(Generic[R]):
    """A pattern's lifecycle hooks, called by the runtime in registration order.

    ``on_start(rt)`` once the runtime and its first agents run; ``on_agents(rt,
    agents)`` for the agents started with the runtime and for each one attached
    later; ``on_detach(rt, agent)`` before an agent stops; ``on_declare(rt, agent,
    kind)`` when a running agent declares something (:meth:`Agent.declare`).

    Example::

        rt.register(Extension("presence", on_start=start_presence))
    """

    name: str
    on_start: Callable[[R], Awaitable[None]] | None = None
    on_agents: Callable[[R, Sequence[Agent]], Awaitable[None]] | None = None
    on_detach: Callable[[R, Agent], Awaitable[None]] | None = None
    on_declare: Callable[[R, Agent, str], None] | None = None


class Extensions(Generic[R]):
    """A runtime's registered hooks and the pattern instances created so far.

    Example::

        ext = Extensions(); ext.register(Extension("pubsub", on_start=start))
    """

    def __init__(self) -> None:
        self.instances: dict[str, Any] = {}
        self.hooks: list[Extension[R]] = []

    def register(self, hook: Extension[R]) -> None:
        """Add ``hook``; a second hook with the same name is a ConfigurationError."""
        if any(h.name == hook.name for h in self.hooks):
            raise ConfigurationError(f"an extension named {hook.name!r} is already registered")
        self.hooks.append(hook)

    async def started(self, rt: R, agents: Sequence[Agent], *, first: bool) -> None:
        """Run ``on_agents`` for ``agents``, then (``first``: the runtime started) ``on_start``."""
        for hook in self.hooks:
            if hook.on_agents is not None:
                await hook.on_agents(rt, agents)
            if first and hook.on_start is not None:
                await hook.on_start(rt)

    async def detaching(self, rt: R, agent: Agent) -> None:
        """Run every ``on_detach`` hook for ``agent`` (before it stops)."""
        for hook in self.hooks:
            if hook.on_detach is not None:
                await hook.on_detach(rt, agent)

    def declared(self, rt: R, agent: Agent, kind: str) -> None:
        """Run every ``on_declare`` hook."""
        for hook in self.hooks:
            if hook.on_declare is not None:
                hook.on_declare(rt, agent, kind)

    async def close(self) -> None:
        """Close every instance (``aclose()`` when it has one), in creation order."""
        while self.instances:
            name = next(iter(self.instances))
            ext = self.instances.pop(name)
            close = getattr(ext, "aclose", None)
            if close is not None:
                try:
                    await close()
                except Exception:
                    logger.exception("runtime: closing %s failed", name)
