"""Restarting a subscription whose loop failed unexpectedly (internal).

Part of :mod:`agentcomm.pubsub`: each
:class:`~agentcomm.pubsub.subscription.Subscription` owns one :class:`Supervisor`,
which reaches it only through the :class:`Supervised` protocol. Each task of a run
(the pump, the workers, the watchdog) is watched by the subscription: an exception
that escapes it (a bug, an engine raising what it should not) ends the run instead
of the runtime's task group. The supervisor then counts the restart (``restarts``,
``last_error``), logs it once with its traceback, has the subscription forget what
the run held and close the consumer handle (the engine delivers those events
again), waits (0.1 s, doubling up to 30 s; back to 0.1 s after a run that lasted
longer than that) and has it open the consumer again. Nothing it held is lost: an
event the run fetched is either settled, or unsettled on the engine and handed
back by the close (or by the pump, for a batch it fetched while the run was ending).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from agentcomm.core.errors import TransportClosed

__all__ = ["RESTART_BACKOFF", "Supervised", "Supervisor"]

logger = logging.getLogger("agentcomm")

RESTART_BACKOFF = (0.1, 30.0)  # seconds: the first restart's wait, and the bound


class Supervised(Protocol):
    """What the supervisor needs of the subscription it runs (``Subscription``)."""

    @property
    def durable(self) -> str: ...

    @property
    def owner_name(self) -> str:
        """The subscribing agent's name (for the log)."""
        ...

    @property
    def closing(self) -> bool: ...

    async def run_until_failure(self) -> Exception | None:
        """One run; the failure that ended it, or ``None`` when it was stopped."""
        ...

    async def forget_held(self) -> None:
        """After a failed run: drop what it held and close the consumer handle."""
        ...

    async def reopen_consumer(self) -> None:
        """Open the consumer again (raises what the engine raises)."""
        ...

    def transport_closed(self, exc: TransportClosed) -> None:
        """The engine closed: the subscription stops for good (and says why)."""
        ...


class Supervisor:
    """Runs a subscription; after an unexpected failure, restarts it with backoff."""

    def __init__(self, sub: Supervised) -> None:
        self._sub = sub
        self._pause: asyncio.Future[None] | None = None  # the backoff between runs
        self.restarts = 0
        self.last_error: str | None = None  # of the last restart (statistics)

    def wake(self) -> None:
        """End a backoff now (the subscription stops: the supervisor returns)."""
        _resolve(self._pause)

    async def run(self) -> None:
        """Run the subscription until it is stopped, restarting it after failures."""
        sub = self._sub
        loop = asyncio.get_running_loop()
        first, bound = RESTART_BACKOFF
        backoff = first
        while not sub.closing:
            began = loop.time()
            exc = await sub.run_until_failure()
            if exc is None:
                return  # stopped
            if sub.closing:
                logger.error("subscription %s failed while stopping", sub.durable, exc_info=exc)
                return
            if loop.time() - began > bound:  # it ran well for a while: start over
                backoff = first
            self.restarts += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            logger.error(
                "subscription %s of agent %s failed (%s); restart %d in %.1f s, its held "
                "events go back to the engine",
                sub.durable,
                sub.owner_name,
                self.last_error,
                self.restarts,
                backoff,
                exc_info=exc,
            )
            await sub.forget_held()
            if not await self._reopen(backoff, bound):
                return
            backoff = min(backoff * 2, bound)

    async def _reopen(self, backoff: float, bound: float) -> bool:
        """Open the consumer again after ``backoff`` (and on); False when stopping."""
        sub = self._sub
        loop = asyncio.get_running_loop()
        while not sub.closing:
            self._pause = loop.create_future()
            h = loop.call_later(backoff, _resolve, self._pause)
            try:
                await self._pause
            finally:
                h.cancel()
                self._pause = None
            if sub.closing:
                return False
            try:
                await sub.reopen_consumer()
            except TransportClosed as exc:
                sub.transport_closed(exc)
                logger.error("subscription %s stopped: its transport closed: %s", sub.durable, exc)
                return False
            except Exception as exc:
                backoff = min(backoff * 2, bound)
                logger.warning(
                    "subscription %s: opening its consumer again failed (%s); retrying in %.1f s",
                    sub.durable,
                    exc,
                    backoff,
                )
                continue
            return not sub.closing  # when stopping, stop() closes the consumer
        return False


def _resolve(fut: asyncio.Future[None] | None) -> None:
    if fut is not None and not fut.done():
        fut.set_result(None)
