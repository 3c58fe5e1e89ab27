"""MCP tool calls per second: agentcomm's exposure vs a bare ``MCPServer``, same tool.

Both serve ``add(a: int, b: int) -> int``. The bare server is the SDK's ``MCPServer``
with the function as a tool; ours is an agent whose handler is exposed by
``rt.tools.expose`` (each call is a real agentcomm request through the runtime).
Measured over the SDK's in-memory transport and over streamable HTTP on 127.0.0.1,
in the same run; over HTTP both with the 2026-07-28 protocol (the SDK's default) and
with the handshake-era protocol (``mode="legacy"``). Besides ``add``, two rows call a
tool that reports 3 progress steps to the client's progress callback, and two read a
templated resource. Each row runs ``--rounds`` rounds; a round measures both servers
(the order alternates between rounds) and the row reports the medians, their range
and the ratio of the medians. Run:
``python bench/mcp.py [--n N] [--http-n N] [--rounds R] [--only TEXT]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

# This file is named mcp.py: keep its folder off sys.path so `import mcp` finds the SDK.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]

import mcp  # noqa: E402
import uvicorn  # noqa: E402
from mcp.server.mcpserver import Context as MCPContext  # noqa: E402
from mcp.server.mcpserver import MCPServer  # noqa: E402

from agentcomm import Agent, Context, Runtime  # noqa: E402


def bare_server() -> MCPServer:
    server = MCPServer("bare", log_level="WARNING")

    @server.tool()
    async def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @server.tool()
    async def steps(n: int, ctx: MCPContext) -> int:  # type: ignore[type-arg]
        """Report n progress steps."""
        for i in range(n):
            await ctx.report_progress(i + 1, n)
        return n

    @server.resource("notes://{day}")
    def notes(day: str) -> str:
        """Notes of a day."""
        return f"notes of {day}"

    return server


def calc_agent() -> Agent:
    calc = Agent("calc")

    @calc.handler
    async def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @calc.handler
    async def steps(n: int, ctx: Context) -> int:
        """Report n progress steps."""
        for i in range(n):
            await ctx.progress(i + 1, n)
        return n

    @calc.resource("notes://{day}")
    def notes(day: str) -> str:
        """Notes of a day."""
        return f"notes of {day}"

    return calc


#: What one measured call is: "add" (a tool), "progress" (a tool reporting 3 steps to
#: the client's progress callback), "resource" (a templated resource read).
KIND = {"value": "add"}


async def _one(client: mcp.Client, i: int) -> None:
    kind = KIND["value"]
    if kind == "add":
        r = await client.call_tool("add", {"a": i, "b": 1})
        assert r.structured_content == {"result": i + 1}, r
    elif kind == "progress":
        seen: list[float] = []

        async def on_progress(done: float, total: float | None, message: str | None) -> None:
            seen.append(done)

        r = await client.call_tool("steps", {"n": 3}, progress_callback=on_progress)
        assert seen == [1, 2, 3], (seen, r)
    else:
        res = await client.read_resource(f"notes://d{i}")
        assert res.contents[0].text == f"notes of d{i}", res  # type: ignore[union-attr]


async def drive(client: mcp.Client, n: int, in_flight: int) -> float:
    """Calls per second of ``n`` calls, ``in_flight`` at a time."""

    async def worker(count: int, base: int) -> None:
        for i in range(count):
            await _one(client, base + i)

    await worker(20, 0)  # warm up (schemas, caches)
    per = n // in_flight
    start = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for w in range(in_flight):
            tg.create_task(worker(per, w * per))
    return per * in_flight / (time.perf_counter() - start)


@contextlib.asynccontextmanager
async def serve_app(app: Any) -> AsyncIterator[str]:
    """Serve a Starlette app on a free loopback port for the block; yields the /mcp URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2)
    )
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        try:
            yield f"http://127.0.0.1:{port}/mcp"
        finally:
            server.should_exit = True


async def bare_memory(n: int, in_flight: int) -> float:
    async with mcp.Client(bare_server()) as client:
        return await drive(client, n, in_flight)


async def ours_memory(n: int, in_flight: int) -> float:
    async with Runtime(agents=[calc_agent()]) as rt:
        exposure = await rt.tools.expose("calc")
        async with mcp.Client(exposure.server) as client:
            return await drive(client, n, in_flight)


async def bare_http(n: int, in_flight: int, mode: str = "auto") -> float:
    server = bare_server()
    async with (
        serve_app(server.streamable_http_app()) as url,
        mcp.Client(url, mode=mode) as client,
    ):
        return await drive(client, n, in_flight)


async def ours_http(n: int, in_flight: int, mode: str = "auto") -> float:
    async with Runtime(agents=[calc_agent()]) as rt:
        exposure = await rt.tools.expose("calc")
        async with exposure.serve_http() as url, mcp.Client(url, mode=mode) as client:
            return await drive(client, n, in_flight)


async def bare_http_legacy(n: int, in_flight: int) -> float:
    return await bare_http(n, in_flight, "legacy")


async def ours_http_legacy(n: int, in_flight: int) -> float:
    return await ours_http(n, in_flight, "legacy")


Run = Callable[[int, int], Awaitable[float]]


async def alternate(
    bare: Run, ours: Run, n: int, in_flight: int, rounds: int
) -> tuple[list[float], list[float]]:
    """``rounds`` rounds, each measuring the bare server then ours (the order alternates)."""
    b_runs: list[float] = []
    o_runs: list[float] = []
    for r in range(rounds):
        if r % 2 == 0:
            b_runs.append(await bare(n, in_flight))
            o_runs.append(await ours(n, in_flight))
        else:
            o_runs.append(await ours(n, in_flight))
            b_runs.append(await bare(n, in_flight))
    return b_runs, o_runs


def _spread(runs: list[float]) -> str:
    return f"{statistics.median(runs):,.0f} ({min(runs):,.0f}-{max(runs):,.0f})"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=4000, help="calls per in-memory measurement")
    parser.add_argument("--http-n", type=int, default=600, help="calls per HTTP measurement")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per row")
    parser.add_argument("--only", help="run only the rows whose label contains this text")
    args = parser.parse_args()
    print(
        f"{'scenario':<36}{'bare MCPServer/s (min-max)':>28}{'agentcomm/s (min-max)':>26}"
        f"{'ratio of medians':>18}{'ratio range':>14}"
    )
    scenarios: list[tuple[str, str, Run, Run, int, int]] = [
        ("in-memory, sequential", "add", bare_memory, ours_memory, args.n, 1),
        ("in-memory, 16 in flight", "add", bare_memory, ours_memory, args.n, 16),
        ("in-memory, progress, 16 in flight", "progress", bare_memory, ours_memory, args.n, 16),
        (
            "in-memory, resource read, 16 in flight",
            "resource",
            bare_memory,
            ours_memory,
            args.n,
            16,
        ),
        ("streamable HTTP, sequential", "add", bare_http, ours_http, args.http_n, 1),
        ("streamable HTTP, 8 in flight", "add", bare_http, ours_http, args.http_n, 8),
        (
            "HTTP handshake era, sequential",
            "add",
            bare_http_legacy,
            ours_http_legacy,
            args.n // 2,
            1,
        ),
        (
            "HTTP handshake era, 8 in flight",
            "add",
            bare_http_legacy,
            ours_http_legacy,
            args.n // 2,
            8,
        ),
        (
            "HTTP handshake era, progress, 8 in flight",
            "progress",
            bare_http_legacy,
            ours_http_legacy,
            args.n // 4,
            8,
        ),
        (
            "HTTP handshake era, resource, 8 in flight",
            "resource",
            bare_http_legacy,
            ours_http_legacy,
            args.n // 4,
            8,
        ),
    ]
    for label, kind, bare, ours, n, in_flight in scenarios:
        if args.only and args.only not in label:
            continue
        KIND["value"] = kind
        b_runs, o_runs = await alternate(bare, ours, n, in_flight, args.rounds)
        ratios = [o / b for o, b in zip(o_runs, b_runs, strict=True)]
        ratio = statistics.median(o_runs) / statistics.median(b_runs)
        print(
            f"{label:<36}{_spread(b_runs):>28}{_spread(o_runs):>26}{ratio:>17.2f}x"
            f"{min(ratios):>8.2f}-{max(ratios):.2f}",
            flush=True,
        )


if __name__ == "__main__":
    asyncio.run(main())
