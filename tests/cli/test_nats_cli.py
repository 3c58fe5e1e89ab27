"""``agentcomm run ... --nats`` and ``agentcomm demo --nats``: agents in separate processes."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from pathlib import Path

import pytest

from agentcomm import Runtime
from agentcomm.testing.extras import require_module
from agentcomm.testing.nats_server import NatsServer

require_module("nats")

from agentcomm.transports.nats import NatsTransport  # noqa: E402

pytestmark = [pytest.mark.nats, pytest.mark.slow]

AGENTS = """
import asyncio
from pathlib import Path
from agentcomm import Agent, Context

echo = Agent("echo")

@echo.handler
async def say(text: str) -> str:
    return text

@echo.handler
async def work(path: str) -> None:
    Path(path + ".started").touch()
    await asyncio.sleep(0.5)
    Path(path).write_text("finished")

@echo.on("orders.*", start="all")
async def on_order(path: str, ctx: Context) -> None:
    Path(path).write_text(ctx.envelope.topic or "")
"""


async def _ready(proc: asyncio.subprocess.Process) -> None:
    assert proc.stdout is not None
    async with asyncio.timeout(30):
        while True:
            line = await proc.stdout.readline()
            assert line, "the agent process exited before it was ready"
            if line.startswith(b"agentcomm: running"):
                return


def _exists(path: Path) -> bool:
    return path.exists()  # a stat of a local file: instant, fine in the event loop


async def _appears(path: Path, deadline: float) -> None:
    """Poll for a file another process writes, until ``deadline`` seconds."""
    end = asyncio.get_running_loop().time() + deadline
    while not _exists(path):
        if asyncio.get_running_loop().time() > end:
            pytest.fail(f"{path.name} did not appear within {deadline}s")
        await asyncio.sleep(0.02)


@pytest.mark.timeout(60)
async def test_run_serves_until_sigterm_and_finishes_in_flight_work(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    module = tmp_path / "myagents.py"
    module.write_text(textwrap.dedent(AGENTS))
    ns = "cli" + os.urandom(4).hex()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agentcomm", "run", f"{module}:echo",
        "--nats", nats_server.url, "--namespace", ns,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        await _ready(proc)
        marker = tmp_path / "work.done"
        async with Runtime(transport=NatsTransport(nats_server.url, namespace=ns)) as rt:
            me = rt.agent("me")
            assert await me.request("echo", "say", {"text": "hi"}, timeout=10) == "hi"
            order = tmp_path / "order.seen"
            await me.publish("orders.created", {"path": str(order)})  # pub/sub across processes
            await _appears(order, 20)  # written by the agent process's handler
            assert order.read_text() == "orders.created"
            await me.send("echo", "work", {"path": str(marker)})  # queued in the process
        proc.send_signal(signal.SIGTERM)  # while the work is (about to be) in flight
        async with asyncio.timeout(30):
            assert await proc.wait() == 0
        assert marker.read_text() == "finished"  # finished, not cut off
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.timeout(90)
async def test_demo_runs_agents_as_separate_processes(nats_server: NatsServer) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agentcomm", "demo", "--nats", nats_server.url,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with asyncio.timeout(80):
            out, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = out.decode()
    assert proc.returncode == 0, text
    assert text.count("exited with 0") == 4
    assert "NoResponders at once" in text
    assert "[notifier" in text  # printed by the notifier's own process
