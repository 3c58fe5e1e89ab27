"""MCP tool calls per second: agentcomm's exposure vs a bare ``MCPServer``, same tool.

Both serve ``add(a: int, b: int) -> int``. The bare server is the SDK's ``MCPServer``
with the function as a tool; ours is an agent whose handler is exposed by
``rt.tools.expose`` (each call is a real agentcomm request through the runtime).
Measured over the SDK's in-memory transport and over streamable HTTP on 127.0.0.1,
in the same run; over HTTP both with the 2026-07-28 protocol (the SDK's default) and
with the handshake-era protocol (``mode="legacy"``). Run:
``python bench/mcp.py [--n N] [--http-n N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

# This file is named mcp.py: keep its folder off sys.path so `import mcp` finds the SDK.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]

import mcp  # noqa: E402
import uvicorn  # noqa: E402
from mcp.server.mcpserver import MCPServer  # noqa: E402

from agentcomm import Agent, Runtime  # noqa: E402


def bare_server() -> MCPServer:
    server = MCPServer("bare", log_level="WARNING")

    @server.tool()
    async def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    return server


def calc_agent() -> Agent:
    calc = Agent("calc")

    @calc.handler
    async def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    return calc


async def drive(client: mcp.Client, n: int, in_flight: int) -> float:
    """Calls per second of ``n`` add calls, ``in_flight`` at a time."""

    async def worker(count: int, base: int) -> None:
        for i in range(count):
            r = await client.call_tool("add", {"a": base + i, "b": 1})
            assert r.structured_content == {"result": base + i + 1}, r

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


async def best(run: Run, n: int, in_flight: int, repeat: int) -> float:
    return max([await run(n, in_flight) for _ in range(repeat)])


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=4000, help="calls per in-memory measurement")
    parser.add_argument("--http-n", type=int, default=600, help="calls per HTTP measurement")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    args = parser.parse_args()
    print(f"{'scenario':<34}{'bare MCPServer/s':>18}{'agentcomm/s':>14}{'ratio':>8}")
    scenarios: list[tuple[str, Run, Run, int, int]] = [
        ("in-memory, sequential", bare_memory, ours_memory, args.n, 1),
        ("in-memory, 16 in flight", bare_memory, ours_memory, args.n, 16),
        ("streamable HTTP, sequential", bare_http, ours_http, args.http_n, 1),
        ("streamable HTTP, 8 in flight", bare_http, ours_http, args.http_n, 8),
        ("HTTP handshake era, sequential", bare_http_legacy, ours_http_legacy, args.n // 2, 1),
        ("HTTP handshake era, 8 in flight", bare_http_legacy, ours_http_legacy, args.n // 2, 8),
    ]
    for label, bare, ours, n, in_flight in scenarios:
        b = await best(bare, n, in_flight, args.repeat)
        o = await best(ours, n, in_flight, args.repeat)
        print(f"{label:<34}{b:>18,.0f}{o:>14,.0f}{o / b:>7.2f}x", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
