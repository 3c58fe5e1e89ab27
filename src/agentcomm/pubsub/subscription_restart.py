"""Restarting a subscription whose loop failed unexpectedly (internal).

Part of :mod:`agentcomm.subscription`: :class:`Restarts` is a base class of
:class:`~agentcomm.subscription.Subscription`. Each task of a run (the pump, the
workers, the watchdog) is watched by ``Subscription._ended``: an exception that
escapes it (a bug, an engine raising what it should not) ends the run instead of
the runtime's task group. The supervisor then counts the restart (``restarts``,
``last_error``), logs it once with its traceback, forgets what the run held and
closes the consumer handle (the engine delivers those events again), waits
(0.1 s, doubling up to 30 s; back to 0.1 s after a run that lasted longer than
that) and opens the consumer again. Nothing it held is lost: an event the run
fetched is either settled, or unsettled on the engine and handed back by the
close (or by the pump, for a batch it fetched while the run was ending).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from agentcomm.core.errors import TransportClosed
from agentcomm.pubsub.declare import EVENT_STREAM

if TYPE_CHECKING:
    from agentcomm.host.agent import Agent
    from agentcomm.pubsub.subscription_handler import _Owner
    from agentcomm.transports.streams import ConsumerConfig, LogConsumer

__all__ = ["RESTART_BACKOFF", "Restarts"]

logger = logging.getLogger("agentcomm")

RESTART_BACKOFF = (0.1, 30.0)  # seconds: the first restart's wait, and the bound


class Restarts:
    """The supervisor of a subscription's runs; a base of ``Subscription``."""

    if TYPE_CHECKING:  # Subscription's
        pubsub: _Owner
        agent: Agent
        durable: str
        consumer: LogConsumer | None
        _config: ConsumerConfig | None
        _closing: bool
        _failure: asyncio.Future[Exception | None] | None
        _pause: asyncio.Future[None] | None
        restarts: int
        last_error: str | None
        stopped: str | None

        async def _run(self) -> Exception | None: ...

        async def _reset(self) -> None: ...

    async def _supervise(self) -> None:
        """Run the subscription; after an unexpected failure, restart it with backoff."""
        loop = asyncio.get_running_loop()
        first, bound = RESTART_BACKOFF
        backoff = first
        while not self._closing:
            began = loop.time()
            exc = await self._run()
            if exc is None:
                return  # stopped
            if self._closing:
                logger.error("subscription %s failed while stopping", self.durable, exc_info=exc)
                return
            if loop.time() - began > bound:  # it ran well for a while: start over
                backoff = first
            self.restarts += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            logger.error(
                "subscription %s of agent %s failed (%s); restart %d in %.1f s, its held "
                "events go back to the engine",
                self.durable,
                self.agent.name,
                self.last_error,
                self.restarts,
                backoff,
                exc_info=exc,
            )
            await self._reset()
            if not await self._reopen(backoff, bound):
                return
            backoff = min(backoff * 2, bound)

    async def _reopen(self, backoff: float, bound: float) -> bool:
        """Open the consumer again after ``backoff`` (and on); False when stopping."""
        loop = asyncio.get_running_loop()
        assert self._config is not None
        while not self._closing:
            self._pause = loop.create_future()
            h = loop.call_later(backoff, _resolve, self._pause)
            try:
                await self._pause
            finally:
                h.cancel()
                self._pause = None
            if self._closing:
                return False
            try:
                consumer = await self.pubsub.runtime.transport.open_consumer(
                    EVENT_STREAM, self._config
                )
            except TransportClosed as exc:
                self.stopped = f"transport closed: {exc}"
                logger.error("subscription %s stopped: its transport closed: %s", self.durable, exc)
                return False
            except Exception as exc:
                backoff = min(backoff * 2, bound)
                logger.warning(
                    "subscription %s: opening its consumer again failed (%s); retrying in %.1f s",
                    self.durable,
                    exc,
                    backoff,
                )
                continue
            self.consumer = consumer
            if self._closing:
                return False  # stop() closes it
            return True
        return False


def _resolve(fut: asyncio.Future[None] | None) -> None:
    if fut is not None and not fut.done():
        fut.set_result(None)
