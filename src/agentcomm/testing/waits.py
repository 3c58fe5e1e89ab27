"""Waiting in tests without sleeping: helpers over the runtime's awaitables (public).

Example::

    from agentcomm.testing.waits import wait_dead_letters

    dls = await wait_dead_letters(rt, 2, subscription="billing__charge")
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentcomm.api import Runtime
    from agentcomm.pubsub.dead_letters import DeadLetter

__all__ = ["wait_dead_letters"]


async def wait_dead_letters(
    rt: Runtime, n: int, *, subscription: str | None = None, timeout: float = 10.0
) -> list[DeadLetter]:
    """The dead letters (oldest first) once at least ``n`` are stored; no polling.

    Awaits :meth:`~agentcomm.pubsub.bus.PubSub.wait_dead_letter` once per dead letter
    (each with ``timeout``), so it returns as soon as the ``n``-th is stored and raises
    :class:`TimeoutError` when it is not.

    Example::

        (dl,) = await wait_dead_letters(rt, 1)
        assert dl.reason == "rejected"
    """
    start = 1
    for _ in range(n):
        dl = await rt.events.wait_dead_letter(
            subscription=subscription, start=start, timeout=timeout
        )
        start = dl.sequence + 1
    return await rt.events.dead_letters(subscription=subscription, limit=max(n, 100))
