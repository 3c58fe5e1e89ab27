"""``agentcomm demo --nats URL --serve``: a system to try the operator commands on.

The demo's agents (the support desk, invoices with a printer that dead-letters the
poisoned ones, a planner writing the blackboard, a reporter with durable tasks) run on
NATS under one fixed namespace (``demo`` by default), with an MCP proxy agent
(``kb-mcp``: a knowledge-base agent served by ``agentcomm mcp serve`` in a child
process over stdio, when the ``mcp`` extra is installed), and traffic flows until
Ctrl-C. docs/operations.md walks through ``agents``, ``tools``, ``tail``, ``stats``,
``dlq`` and ``board`` against it.

Example::

    agentcomm demo --nats nats://127.0.0.1:4222 --serve          # until Ctrl-C
    agentcomm agents --nats nats://127.0.0.1:4222 --namespace demo
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import signal
import sys
from typing import TextIO

from agentcomm.api import Agent, Runtime
from agentcomm.cli.dashboard_demo import _agents, demo_traffic

__all__ = ["knowledge_agents", "serve_demo"]


def knowledge_agents() -> list[Agent]:
    """The agent the demo serves over MCP (``agentcomm mcp serve`` of this function).

    Example::

        agentcomm mcp serve agentcomm.cli.demo_serve:knowledge_agents
    """
    kb = Agent("kb", description="A tiny knowledge base of support answers.")

    @kb.handler
    async def answer(topic: str) -> str:
        """The support answer on a topic (refunds, shipping, anything else)."""
        known = {"refunds": "Refunds take 5 days.", "shipping": "We ship in 24 hours."}
        return known.get(topic, f"No article on {topic!r} yet.")

    return [kb]


async def serve_demo(
    url: str, out: TextIO, *, namespace: str = "demo", seconds: float | None = None
) -> int:
    """Run the demo system on NATS at ``url`` until Ctrl-C (or ``seconds``).

    Example::

        asyncio.run(serve_demo("nats://127.0.0.1:4222", sys.stdout, seconds=10))
    """
    from agentcomm.transports.nats.transport import NatsTransport

    transport = NatsTransport(url, namespace=namespace)
    agents = _agents(io.StringIO())  # their narration: the tail shows what happens
    async with Runtime(transport=transport, agents=agents, default_timeout=5.0) as rt:
        proxy = await _connect_kb(rt, out)
        await transport.flush()
        out.write(
            f"agentcomm demo: serving on NATS at {url}, namespace {namespace!r} "
            f"(agents: {', '.join(sorted(a.name for a in rt.agents.values()))}); "
            "Ctrl-C stops. Try, in another terminal:\n"
        )
        opts = f"--nats {url} --namespace {namespace}"
        for cmd in ("agents", "tools", "tail --count 10", "stats", "dlq list", "board list"):
            out.write(f"  agentcomm {cmd} {opts}\n")
        out.flush()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        traffic = asyncio.ensure_future(_traffic(rt, proxy))
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), seconds)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            traffic.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await traffic
        out.write("agentcomm demo: stopping\n")
    return 0


async def _connect_kb(rt: Runtime, out: TextIO) -> str | None:
    try:
        import mcp  # noqa: F401
    except ImportError:
        out.write("agentcomm demo: no MCP proxy (pip install 'agentcomm[mcp]' for one)\n")
        return None
    target = "agentcomm.cli.demo_serve:knowledge_agents"
    command = [sys.executable, "-m", "agentcomm", "mcp", "serve", target]
    await rt.tools.connect("kb-mcp", command=command, timeout=10.0)
    return "kb-mcp"


async def _traffic(rt: Runtime, proxy: str | None) -> None:
    """The demo's traffic, and now and then a question for the MCP proxy."""
    desk = rt.agent("support")  # (demo_traffic's caller is "help-desk")

    async def ask_kb() -> None:
        topics = ("refunds", "shipping", "warranty")
        n = 0
        while proxy is not None:
            n += 1
            with contextlib.suppress(Exception):  # shown in tail; the demo goes on
                await desk.request(proxy, "answer", {"topic": topics[n % 3]}, timeout=10)
            await asyncio.sleep(2.0)

    kb = asyncio.ensure_future(ask_kb())
    try:
        await demo_traffic(rt, pause=1.0)
    finally:
        kb.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await kb
