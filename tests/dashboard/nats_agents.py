"""Agents for the NATS dashboard test, run in a process of their own.

``python nats_agents.py URL NAMESPACE``: ``pricing`` asks ``stock`` (a request that
touches two agents), ``packer`` handles ``parcels.*`` and fails a poisoned parcel on
its first two attempts (so it is dead-lettered, and handled once redriven),
``reporter`` runs a durable task that reports half its progress and waits. Presence
every second. Prints ``ready`` when serving and ``packed <parcel>`` per parcel.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from agentcomm import Agent, Context, Runtime
from agentcomm.core.flow import RetryPolicy
from agentcomm.observability.presence import Presence
from agentcomm.transports.nats import NatsTransport

pricing, stock, packer = Agent("pricing"), Agent("stock"), Agent("packer")
reporter = Agent("reporter")
attempts: dict[str, int] = {}


@pricing.handler
async def quote(item: str, ctx: Context) -> float:
    """The price of an item, from its stock."""
    count = await ctx.request("stock", "count", {"item": item}, returns=int)
    return 10.0 if count > 5 else 12.5


@stock.handler
async def count(item: str) -> int:
    """How many are in stock."""
    return len(item)


@packer.on("parcels.*", retry=RetryPolicy(max_attempts=2, backoff=0.05, jitter=0.0))
async def pack(parcel: str, poison: bool = False) -> None:
    """Pack a parcel; a poisoned one fails twice."""
    attempts[parcel] = attempts.get(parcel, 0) + 1
    if poison and attempts[parcel] <= 2:
        raise ValueError(f"parcel {parcel} is poisoned")
    print(f"packed {parcel}", flush=True)


@reporter.task_handler()
async def report(pages: int, ctx: Context) -> str:
    """A report that stops half way until the test lets it go on (it never does)."""
    await ctx.progress(pages // 2, pages, "half way")
    await asyncio.Event().wait()
    return "never"


async def main(url: str, namespace: str) -> None:
    agents = [pricing, stock, packer, reporter]
    rt = Runtime(NatsTransport(url, namespace=namespace), agents=agents)
    Presence.install(rt, interval=1.0)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with rt:
        await rt.transport.flush()  # type: ignore[attr-defined]
        print("ready", flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
