"""What an open dashboard costs a busy runtime: messages per second, CPU and memory.

In process, on the memory transport: one sender sends notifications to one agent
(one envelope each, recorded in the runtime's message log as every message is).

1. Throughput, unpaced: notifications per second with no dashboard, with a
   dashboard and no browser, with one browser reading the event stream as fast as
   it comes, and with one *stalled* browser (connected, never reading: its queue
   fills and drops the oldest). Rounds are interleaved; the medians are printed with
   the ratio to the run without a dashboard.
2. Paced at ``--rate`` messages per second (10,000 by default) for ``--seconds``:
   the process's CPU time without a dashboard, with one and a reading browser, and
   with one and a stalled browser, and
   the resident memory sampled every second with the dashboard's own figures
   (envelopes seen, sampled out, dropped for the browser), to show both stay flat.

The browsers are child processes (a raw HTTP client reading the stream, or one that
never reads), so their own cost is not counted in this process.
Run: ``python bench/dashboard.py [--n N] [--rounds R] [--rate R] [--seconds S]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import sys
import time
from contextlib import AsyncExitStack

_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]

from agentcomm import Agent, Runtime  # noqa: E402

READER = """
import socket, sys, time
host, port, path, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
s = socket.create_connection((host, port))
s.sendall(f"GET {path} HTTP/1.1\\r\\nHost: {host}\\r\\n\\r\\n".encode())
if mode == "stall":  # a tab that never reads: its socket fills, then its queue
    time.sleep(3600)
while s.recv(65536):
    pass
"""


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _agents() -> list[Agent]:
    sink = Agent("sink", mailbox_size=10_000)

    @sink.handler
    async def take(n: int) -> None:
        """Take one message."""

    return [sink]


async def _browser(dash: object, mode: str) -> asyncio.subprocess.Process:
    url = dash.url  # type: ignore[attr-defined]
    hostport, _, rest = url.removeprefix("http://").partition("/")
    host, _, port = hostport.rpartition(":")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", READER, host, port, "/events?" + rest.partition("?")[2], mode
    )
    live = dash.live  # type: ignore[attr-defined]
    for _ in range(200):  # until the dashboard counts it
        if live.hub.clients:
            break
        await asyncio.sleep(0.01)
    return proc


async def _send(rt: Runtime, n: int) -> float:
    sender = rt.get_agent("sender") or rt.agent("sender")
    t0 = time.perf_counter()
    for i in range(n):
        await sender.send("sink", "take", {"n": i})
    stats = rt.get_agent("sink")
    assert stats is not None
    while stats.statistics().handled < stats.statistics().received or (stats.statistics().queued):
        await asyncio.sleep(0)
    return n / (time.perf_counter() - t0)


async def throughput(mode: str, n: int) -> float:
    async with AsyncExitStack() as stack:
        rt = await stack.enter_async_context(Runtime(agents=_agents()))
        procs = []
        if mode != "none":
            dash = await stack.enter_async_context(rt.dashboard())
            if mode in ("reading", "stalled"):
                procs.append(await _browser(dash, "read" if mode == "reading" else "stall"))
        await _send(rt, n // 10)  # warm up
        rate = await _send(rt, n)
        for p in procs:
            p.kill()
            await p.wait()
        return rate


async def paced(mode: str, rate: int, seconds: float) -> dict[str, object]:
    async with AsyncExitStack() as stack:
        rt = await stack.enter_async_context(Runtime(agents=_agents()))
        dash = None
        proc = None
        if mode != "none":
            dash = await stack.enter_async_context(rt.dashboard())
            proc = await _browser(dash, "read" if mode == "reading" else "stall")
        sender = rt.agent("sender")
        samples = []
        sent = 0
        cpu0, t0 = time.process_time(), time.perf_counter()
        next_sample = t0 + 1.0
        batch = max(rate // 200, 1)  # sends per 5 ms slot
        while (now := time.perf_counter()) - t0 < seconds:
            due = int((now - t0) * rate)
            while sent < due:
                for _ in range(min(batch, due - sent)):
                    await sender.send("sink", "take", {"n": sent})
                    sent += 1
            if now >= next_sample:
                live = dash.live.counters() if dash is not None else {}  # type: ignore[attr-defined]
                samples.append((round(now - t0), round(_rss_mib(), 1), live))
                next_sample += 1.0
            await asyncio.sleep(0.005)
        cpu = time.process_time() - cpu0
        wall = time.perf_counter() - t0
        if proc is not None:
            proc.kill()
            await proc.wait()
        return {"sent_rate": sent / wall, "cpu_share": cpu / wall, "samples": samples}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=50_000, help="messages per throughput round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rate", type=int, default=10_000, help="paced messages per second")
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()

    modes = ["none", "dashboard", "reading", "stalled"]
    results: dict[str, list[float]] = {m: [] for m in modes}
    for _ in range(args.rounds):
        for m in modes:
            results[m].append(await throughput(m, args.n))
    base = statistics.median(results["none"])
    print(f"throughput, {args.n} notifications per round, median of {args.rounds} rounds:")
    labels = {
        "none": "no dashboard",
        "dashboard": "dashboard, no browser",
        "reading": "dashboard + a reading browser",
        "stalled": "dashboard + a stalled browser",
    }
    for m in modes:
        med = statistics.median(results[m])
        lo, hi = min(results[m]), max(results[m])
        print(
            f"  {labels[m]:<32} {med:>9,.0f} msg/s   {med / base:.2f}x"
            f"   (rounds {lo:,.0f} to {hi:,.0f})"
        )

    print(f"\npaced at {args.rate:,} msg/s for {args.seconds:g} s:")
    for mode in ("none", "reading", "stalled"):
        r = await paced(mode, args.rate, args.seconds)
        label = labels[mode]
        print(
            f"  {label:<32} sent {r['sent_rate']:>9,.0f} msg/s   "
            f"CPU {r['cpu_share']:.0%} of one core"
        )
        for t, rss, live in r["samples"]:  # type: ignore[attr-defined]
            extra = ""
            if live:
                extra = (
                    f"  seen {live['seen']:,}  sampled out {live['sampled_out']:,}  "
                    f"dropped for the browser {live['dropped_for_clients']:,}  "
                    f"queued {live['queued_bytes'] / 1024:,.0f} KiB  "
                    f"traces kept {live['traces']}"
                )
            print(f"    t={t:>2}s  RSS {rss:>6.1f} MiB{extra}")


if __name__ == "__main__":
    asyncio.run(main())
