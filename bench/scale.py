"""Scale: many agents over several processes on one NATS server (or a 3-node cluster).

For 10, 100 and 1,000 agents spread over ``--procs`` processes (each a runtime with
its share of the agents, every agent with one handler, presence on), this measures:

* memory per agent: each process's resident memory after its agents started, less
  the same process with no agents, divided by its agents;
* request latency p50/p99 of ``--requests`` sequential requests from a caller in
  this process, each to a random agent;
* start-up: how long the processes took to bind their agents.

Then 10,000 topics: one process publishes one event to each of ``--topics`` topics
(``t.<i>``) while ``--subscribers`` agents each hold one subscription to ``t.*``:
publish rate and the time until every subscriber has every event.

Run: ``python bench/scale.py [--cluster] [--agents 10,100,1000] [--procs 4]``
(without ``--url`` it starts its own nats-server, or a 3-node cluster).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]

from agentcomm import Agent, Runtime  # noqa: E402
from agentcomm.testing.nats_cluster import NatsCluster  # noqa: E402
from agentcomm.testing.nats_server import server_url  # noqa: E402
from agentcomm.transports.nats import NatsTransport  # noqa: E402

# One host process: its agents, then its memory on stdout, then it waits for stdin.
HOST = r"""
import asyncio, json, sys
from agentcomm import Agent, Runtime
from agentcomm.transports.nats import NatsTransport

urls, ns, first, count = sys.argv[1].split(","), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024

async def main():
    agents = []
    for i in range(first, first + count):
        a = Agent(f"a{i}")

        @a.handler
        async def ping(n: int) -> int:
            return n

        agents.append(a)
    base = rss()
    async with Runtime(transport=NatsTransport(urls, namespace=ns), agents=agents) as rt:
        await rt.transport.flush()
        print(json.dumps({"base": base, "rss": rss()}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main())
"""


@contextlib.contextmanager
def _broker(url: str | None, cluster: bool) -> Iterator[list[str]]:
    if url:
        yield url.split(",")
    elif cluster:
        with tempfile.TemporaryDirectory(prefix="agentcomm-scale-") as tmp, NatsCluster(tmp) as c:
            yield c.urls
    else:
        with server_url(None) as u:
            yield [u]


def _quantile(xs: list[float], q: float) -> float:
    return statistics.quantiles(xs, n=100)[int(q * 100) - 1] if len(xs) > 1 else xs[0]


async def agents_round(urls: list[str], agents: int, procs: int, requests: int) -> None:
    ns = "scale" + os.urandom(3).hex()
    per = [agents // procs + (1 if i < agents % procs else 0) for i in range(procs)]
    started = time.perf_counter()
    children: list[subprocess.Popen[bytes]] = []
    first = 0
    for count in per:
        argv = [sys.executable, "-c", HOST, ",".join(urls), ns, str(first), str(count)]
        children.append(subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE))
        first += count
    try:
        reports = []
        for child in children:
            assert child.stdout is not None
            line = await asyncio.get_running_loop().run_in_executor(None, child.stdout.readline)
            reports.append(json.loads(line))
        startup = time.perf_counter() - started
        per_agent = [(r["rss"] - r["base"]) / n for r, n in zip(reports, per, strict=True) if n]
        async with Runtime(transport=NatsTransport(urls, namespace=ns)) as rt:
            me = rt.agent("caller")
            rnd = random.Random(7)
            for i in range(50):  # warm-up
                await me.request(f"a{rnd.randrange(agents)}", "ping", {"n": i}, timeout=10)
            lat = []
            for i in range(requests):
                t0 = time.perf_counter()
                await me.request(f"a{rnd.randrange(agents)}", "ping", {"n": i}, timeout=10)
                lat.append(time.perf_counter() - t0)
        p50, p99 = _quantile(lat, 0.5) * 1e3, _quantile(lat, 0.99) * 1e3
        print(
            f"{agents:>7} agents / {procs} procs   start {startup:6.2f} s   "
            f"memory/agent {statistics.median(per_agent) / 1024:7.1f} KiB   "
            f"request p50 {p50:6.2f} ms  p99 {p99:6.2f} ms"
        )
    finally:
        for child in children:
            with contextlib.suppress(OSError):
                assert child.stdin is not None
                child.stdin.close()
        for child in children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()


async def topics_round(urls: list[str], topics: int, subscribers: int) -> None:
    ns = "scalet" + os.urandom(3).hex()
    got = [0] * subscribers
    done = asyncio.Event()
    agents = []
    for k in range(subscribers):
        a = Agent(f"s{k}")

        def make(k: int = k) -> object:
            async def handle(i: int) -> None:
                got[k] += 1
                if all(g >= topics for g in got):
                    done.set()

            return handle

        a.on("t.*", name="all")(make())  # type: ignore[arg-type]
        agents.append(a)
    async with Runtime(transport=NatsTransport(urls, namespace=ns), agents=agents) as rt:
        pub = rt.agent("pub")
        t0 = time.perf_counter()
        for i in range(topics):
            await pub.publish(f"t.{i}", {"i": i})
        published = time.perf_counter() - t0
        await asyncio.wait_for(done.wait(), 600)
        delivered = time.perf_counter() - t0
    print(
        f"{topics:>7} topics, {subscribers} subscribers   publish {topics / published:8,.0f}/s   "
        f"all delivered after {delivered:6.2f} s ({subscribers * topics / delivered:8,.0f}/s)"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", help="existing NATS server URL(s), commas between")
    parser.add_argument("--cluster", action="store_true", help="start a 3-node cluster")
    parser.add_argument("--agents", default="10,100,1000", help="agent counts to measure")
    parser.add_argument("--procs", type=int, default=4, help="host processes")
    parser.add_argument("--requests", type=int, default=2000, help="requests per count")
    parser.add_argument("--topics", type=int, default=10_000)
    parser.add_argument("--subscribers", type=int, default=4)
    args = parser.parse_args()
    with _broker(args.url, args.cluster) as urls:
        print(f"NATS: {'3-node cluster' if args.cluster else 'one server'} {urls}")
        for n in (int(x) for x in args.agents.split(",")):
            await agents_round(urls, n, min(args.procs, n), args.requests)
        await topics_round(urls, args.topics, args.subscribers)


if __name__ == "__main__":
    asyncio.run(main())
