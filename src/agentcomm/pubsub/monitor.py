"""The pub/sub monitor: every ``monitor_interval``, refresh the metrics and keep held
events alive (``in_progress`` heartbeats, so a long handler's event is not redelivered).

Split from :mod:`.bus`. A failing refresh (the broker away) is one warning per outage
and one line when it works again; a traceback only for what is not an agentcomm error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, Protocol

from agentcomm.core.errors import AgentCommError, TransportClosed

__all__ = ["run_monitor"]


class _Held(Protocol):
    ack_wait: float

    async def touch_held(self, elapsed: float, ack_wait: float) -> None: ...


class _Bus(Protocol):
    """What the monitor needs of :class:`~agentcomm.pubsub.bus.PubSub`."""

    _closed: bool
    monitor_interval: float
    runtime: Any

    @property
    def _subs(self) -> Mapping[Any, _Held]: ...

    async def refresh(self) -> Any: ...


logger = logging.getLogger("agentcomm")


async def run_monitor(bus: _Bus) -> None:
    """Run until the bus closes (see the module docstring).

    Example::

        tg.create_task(run_monitor(bus))
    """
    failing = False
    while not bus._closed:
        await asyncio.sleep(bus.monitor_interval)
        try:
            await bus.refresh()
            for s in list(bus._subs.values()):
                await s.touch_held(bus.monitor_interval, s.ack_wait)
            if failing:
                logger.info("pub/sub monitor: working again")
            failing = False
        except TransportClosed:
            return
        except Exception as exc:
            bus.runtime.report_error("pubsub-monitor", exc)
            if not failing:
                logger.warning(
                    "pub/sub monitor: %s; retrying every %gs",
                    exc,
                    bus.monitor_interval,
                    exc_info=not isinstance(exc, AgentCommError),
                )
            failing = True
