"""Request/response round trips per second: agentcomm in-memory vs a plain-asyncio baseline.

Both do the same logical work: a bounded queue for the serving agent, a future per
request, 16 worker tasks taking requests from the queue and awaiting the agent's
``async def add(a, b)`` handler, the caller awaiting its future. The baseline has no
ids, deadlines, schemas or copies; agentcomm does all of that on top.
Run: ``python bench/direct.py [--n N] [--repeat R]``.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from agentcomm import Agent, Runtime
from agentcomm.testing.bench import HEADER, ratio_row, rounds

WORKERS = 16


async def baseline(n: int, in_flight: int) -> float:
    """Plain asyncio: one queue for the server agent, one future per request."""
    queue: asyncio.Queue[tuple[dict[str, int], asyncio.Future[int]]] = asyncio.Queue(1024)

    async def add(a: int, b: int) -> int:
        return a + b

    async def worker() -> None:
        while True:
            payload, fut = await queue.get()
            result = await add(**payload)
            if not fut.done():
                fut.set_result(result)

    workers = [asyncio.create_task(worker()) for _ in range(WORKERS)]
    loop = asyncio.get_running_loop()

    async def call(i: int) -> int:
        fut: asyncio.Future[int] = loop.create_future()
        await queue.put(({"a": i, "b": 1}, fut))
        return await fut

    async def client(count: int) -> None:
        for i in range(count):
            assert await call(i) == i + 1

    start = time.perf_counter()
    await asyncio.gather(*(client(n // in_flight) for _ in range(in_flight)))
    elapsed = time.perf_counter() - start
    for w in workers:
        w.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    return (n // in_flight * in_flight) / elapsed


async def agentcomm_run(n: int, in_flight: int) -> float:
    calc = Agent("calc", concurrency=WORKERS)

    @calc.handler
    async def add(a: int, b: int) -> int:
        return a + b

    async with Runtime(agents=[calc]) as rt:
        me = rt.agent("me")

        async def client(count: int) -> None:
            for i in range(count):
                assert await me.request("calc", "add", {"a": i, "b": 1}) == i + 1

        start = time.perf_counter()
        await asyncio.gather(*(client(n // in_flight) for _ in range(in_flight)))
        elapsed = time.perf_counter() - start
    return (n // in_flight * in_flight) / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=50_000, help="round trips per measurement")
    parser.add_argument("--repeat", type=int, default=5, help="interleaved rounds (medians)")
    args = parser.parse_args()
    print(HEADER)
    for in_flight in (1, 64):
        base, ours = await rounds(
            lambda f=in_flight: baseline(args.n, f),
            lambda f=in_flight: agentcomm_run(args.n, f),
            args.repeat,
        )
        label = "sequential" if in_flight == 1 else f"{in_flight} in flight"
        print(ratio_row(label, base, ours))


if __name__ == "__main__":
    asyncio.run(main())
