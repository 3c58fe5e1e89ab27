"""Core pub/sub in memory (the ``Broadcast`` contract): listeners in a list, no storage.

``broadcast`` calls, in the publisher's task, the sink of every listener whose
pattern matches and of one member of each group (in turn, as a NATS queue group
spreads them). Which listeners match a topic is cached per topic (bounded) until a
listener comes or goes. Each sink gets its own copy of a headers dict; the payload
is immutable bytes. Listeners are shared by every runtime using the engine.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import msgspec

from agentcomm.core.errors import TransportClosed
from agentcomm.core.limits import too_large
from agentcomm.core.topics import compile_pattern
from agentcomm.transports.broadcast import EventSink, Listener

if TYPE_CHECKING:
    from agentcomm.core.envelope import Envelope

__all__ = ["MemoryBroadcast"]

logger = logging.getLogger("agentcomm")

#: Topics whose matching listeners are cached; past it the cache starts again.
MAX_CACHED_TOPICS = 4096


class _MemoryListener(Listener):
    __slots__ = ("_engine", "group", "match", "pattern", "sink")

    def __init__(
        self, engine: MemoryBroadcast, pattern: str, sink: EventSink, group: str | None
    ) -> None:
        self._engine = engine
        self.pattern = pattern
        self.group = group
        self.sink = sink
        self.match: Callable[[str], bool] = compile_pattern(pattern)

    async def close(self) -> None:
        self._engine._forget(self)


class _Route:
    """The listeners of one topic: every plain one, and the members of each group."""

    __slots__ = ("groups", "plain", "turns")

    def __init__(self, plain: list[_MemoryListener], groups: list[list[_MemoryListener]]) -> None:
        self.plain = plain
        self.groups = groups
        self.turns = [0] * len(groups)


class MemoryBroadcast:
    """Core pub/sub of :class:`~agentcomm.transports.memory.MemoryTransport`.

    Example::

        listener = await transport.listen("metrics.>", seen.append)
        await transport.broadcast(event)
    """

    max_payload: int
    _running: bool

    def _init_broadcast(self) -> None:
        self._listeners: list[_MemoryListener] = []
        self._routes: dict[str, _Route] = {}
        #: Events a sink raised on (logged; the others still got the event).
        self.sink_failures = 0

    def _forget(self, listener: _MemoryListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)
            self._routes.clear()

    def _close_broadcast(self) -> None:
        self._listeners.clear()
        self._routes.clear()

    async def listen(self, pattern: str, sink: EventSink, *, group: str | None = None) -> Listener:
        if not self._running:
            raise TransportClosed("the memory transport is not started")
        listener = _MemoryListener(self, pattern, sink, group)
        self._listeners.append(listener)
        self._routes.clear()
        return listener

    def _route(self, topic: str) -> _Route:
        plain: list[_MemoryListener] = []
        groups: dict[str, list[_MemoryListener]] = {}
        for listener in self._listeners:
            if listener.match(topic):
                if listener.group is None:
                    plain.append(listener)
                else:
                    groups.setdefault(listener.group, []).append(listener)
        route = _Route(plain, list(groups.values()))
        if len(self._routes) >= MAX_CACHED_TOPICS:
            self._routes.clear()
        self._routes[topic] = route
        return route

    async def broadcast(self, envelope: Envelope) -> None:
        if len(envelope.payload) > self.max_payload:
            raise too_large(f"event on {envelope.topic!r}", len(envelope.payload), self.max_payload)
        if not self._running:
            raise TransportClosed("the memory transport is not started")
        topic = envelope.topic or ""
        route = self._routes.get(topic)
        if route is None:
            route = self._route(topic)
        copy = bool(envelope.headers)
        for listener in route.plain:
            self._call(listener, envelope, copy)
        for i, members in enumerate(route.groups):
            turn = route.turns[i]
            route.turns[i] = turn + 1
            self._call(members[turn % len(members)], envelope, copy)

    def _call(self, listener: _MemoryListener, env: Envelope, copy: bool) -> None:
        if copy:
            env = msgspec.structs.replace(env, headers=dict(env.headers))
        try:
            listener.sink(env)
        except Exception:
            self.sink_failures += 1
            logger.exception("a listener of %r failed on event %s", listener.pattern, env.id)
