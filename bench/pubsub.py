"""Pub/sub fan-out: agentcomm in-memory vs a plain-asyncio baseline, plus memory under retention.

Throughput: 1 publisher, 4 subscribers on one topic, N small events; end-to-end
deliveries per second (first publish to last handled delivery). The baseline is
plain asyncio with one bounded queue per subscriber and a task draining each.
agentcomm does more per event (a durable bounded log with sequence numbers, acks,
typed decoding, metrics), so the ratio is what matters.

Memory: publishes M events with retention on (10,000 events) and no subscriber,
sampling traced memory; it must stay flat once the retention bound is reached.

Run: ``python bench/pubsub.py [--n 100000] [--memory-events 1000000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
import tracemalloc

from agentcomm import Agent, PubSub, Retention, Runtime
from agentcomm.testing.bench import HEADER, ratio_row, rounds

SUBSCRIBERS = 4


async def baseline(n: int) -> float:
    """Plain asyncio: one bounded queue per subscriber, one task draining each."""
    queues: list[asyncio.Queue[dict[str, int]]] = [asyncio.Queue(1024) for _ in range(SUBSCRIBERS)]
    done = asyncio.Event()
    remaining = [n * SUBSCRIBERS]
    total = [0]

    async def subscriber(q: asyncio.Queue[dict[str, int]]) -> None:
        while True:
            event = await q.get()
            total[0] += event["i"]
            remaining[0] -= 1
            if remaining[0] == 0:
                done.set()

    tasks = [asyncio.create_task(subscriber(q)) for q in queues]
    start = time.perf_counter()
    for i in range(n):
        event = {"i": i}
        for q in queues:
            await q.put(event)
    await done.wait()
    elapsed = time.perf_counter() - start
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return n * SUBSCRIBERS / elapsed


async def agentcomm_run(n: int) -> float:
    done = asyncio.Event()
    remaining = [n * SUBSCRIBERS]
    agents = []
    for k in range(SUBSCRIBERS):
        agent = Agent(f"sub{k}")

        @agent.on("bench.events")
        async def handle(i: int) -> None:
            remaining[0] -= 1
            if remaining[0] == 0:
                done.set()

        agents.append(agent)
    rt = Runtime(agents=agents)
    PubSub.install(rt, retention=Retention(max_events=max(n, 1)))  # before the runtime starts
    async with rt:
        pub = rt.agent("publisher")
        await rt.events.start()
        start = time.perf_counter()
        for i in range(n):
            await pub.publish("bench.events", {"i": i})
        await done.wait()
        elapsed = time.perf_counter() - start
    return n * SUBSCRIBERS / elapsed


async def memory_run(total: int, retention: int, samples: int = 10) -> list[tuple[int, float]]:
    """Traced memory (MiB) after each 1/samples of ``total`` published events."""
    out: list[tuple[int, float]] = []
    rt = Runtime(log_size=100)
    PubSub.install(rt, retention=Retention(max_events=retention))
    async with rt:
        pub = rt.agent("publisher")
        await rt.events.start()
        step = total // samples
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        for s in range(samples):
            for i in range(step):
                await pub.publish("bench.memory", {"i": i, "text": "some small event"})
            gc.collect()
            out.append(((s + 1) * step, (tracemalloc.get_traced_memory()[0] - base) / 2**20))
        tracemalloc.stop()
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000, help="events per throughput run")
    parser.add_argument("--repeat", type=int, default=5, help="interleaved rounds (medians)")
    parser.add_argument("--memory-events", type=int, default=1_000_000)
    parser.add_argument("--retention", type=int, default=10_000)
    args = parser.parse_args()
    print(f"fan-out, 1 publisher -> {SUBSCRIBERS} subscribers, {args.n:,} events")
    print(HEADER)
    base, ours = await rounds(lambda: baseline(args.n), lambda: agentcomm_run(args.n), args.repeat)
    print(ratio_row("deliveries", base, ours))
    if args.memory_events:
        print(
            f"\nmemory: {args.memory_events:,} events published, retention "
            f"{args.retention:,} events (traced MiB above the start)"
        )
        for count, mib in await memory_run(args.memory_events, args.retention):
            print(f"  after {count:>10,} events: {mib:8.2f} MiB")


if __name__ == "__main__":
    asyncio.run(main())
