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
from agentcomm.testing.nats_server import NatsServer

pytest.importorskip("nats")

from agentcomm.transports.nats import NatsTransport

pytestmark = [pytest.mark.nats, pytest.mark.slow]

AGENTS = """
import asyncio
from pathlib import Path
from agentcomm import Agent

echo = Agent("echo")

@echo.handler
async def say(text: str) -> str:
    return text

@echo.handler
async def work(path: str) -> None:
    Path(path + ".started").touch()
    await asyncio.sleep(0.5)
    Path(path).write_text("finished")
"""


async def _ready(proc: asyncio.subprocess.Process) -> None:
    assert proc.stdout is not None
    async with asyncio.timeout(30):
        while True:
            line = await proc.stdout.readline()
            assert line, "the agent process exited before it was ready"
            if line.startswith(b"agentcomm: running"):
                return


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
