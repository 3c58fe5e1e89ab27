"""An exposure on NATS whose agent runs in another process; resubscription after a restart.

The agent (``examples/a2a_tck_agent.py``) runs in ``agentcomm run --nats`` (another
process); this test's runtime only *describes* it to ``rt.a2a.expose``, so every
call crosses NATS. The exposing runtime is then stopped and a new one started (a
restart of the A2A server): resubscribing with the cursor of the last event read
replays exactly what came after it, from the durable task store.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from agentcomm.testing.extras import require_module

require_module("a2a")
require_module("nats")

from agentcomm import Runtime  # noqa: E402
from agentcomm.testing.nats_server import NatsServer  # noqa: E402
from agentcomm.transports.nats import NatsTransport  # noqa: E402
from tests.a2a.tck import ROOT  # noqa: E402
from tests.examples import load_example  # noqa: E402

pytestmark = [pytest.mark.nats, pytest.mark.slow, pytest.mark.timeout(120)]


@pytest.fixture
def worker(nats_server: NatsServer) -> Iterator[tuple[str, str]]:
    namespace = "a2a" + os.urandom(4).hex()
    cmd = [sys.executable, "-m", "agentcomm", "run", "examples/a2a_tck_agent.py:agent"]
    cmd += ["--nats", nats_server.url, "--namespace", namespace]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "running" in line, line
        yield nats_server.url, namespace
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


async def _events(url: str, method: str, params: Any, headers: dict[str, str]) -> list[Any]:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    out = []
    async with (
        httpx.AsyncClient(timeout=30) as c,
        c.stream("POST", url, json=body, headers={"A2A-Version": "1.0", **headers}) as resp,
    ):
        async for line in resp.aiter_lines():
            if line.startswith("data:"):
                out.append(json.loads(line[5:])["result"])
    return out


def _cursor(ev: dict[str, Any]) -> int:
    return int(next(iter(ev.values()))["metadata"]["agentcomm.cursor"])


async def test_exposed_over_nats_and_resumed_after_a_restart(worker: tuple[str, str]) -> None:
    url, namespace = worker
    agent = load_example("a2a_tck_agent").agent  # describes the one running elsewhere
    msg = {"messageId": "n1", "role": "ROLE_USER", "parts": [{"text": "over nats"}]}
    async with Runtime(NatsTransport(url, namespace=namespace)) as rt:
        exposure = await rt.a2a.expose(agent, default="converse")
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "SendStreamingMessage",
            "params": {"message": msg},
        }
        first: list[Any] = []
        async with (
            httpx.AsyncClient(timeout=30) as c,
            c.stream("POST", exposure.url, json=body, headers={"A2A-Version": "1.0"}) as resp,
        ):
            async for line in resp.aiter_lines():
                if line.startswith("data:"):
                    first.append(json.loads(line[5:])["result"])
                    if len(first) == 3:  # the task and two updates: then the stream drops
                        break
    task_id = first[0]["task"]["id"]
    seen = _cursor(first[-1])
    await asyncio.sleep(0.5)  # the work goes on while no A2A server runs
    async with Runtime(NatsTransport(url, namespace=namespace)) as rt:
        exposure = await rt.a2a.expose(agent, default="converse")
        replay = await _events(
            exposure.url, "SubscribeToTask", {"id": task_id}, {"Last-Event-ID": str(seen)}
        )
        cursors = [_cursor(e) for e in replay]
        assert cursors
        assert all(c > seen for c in cursors)  # nothing from before the cursor
        assert cursors == sorted(cursors)  # in order, none twice
        assert len(set(cursors)) == len(cursors)
        last = replay[-1]["statusUpdate"]["status"]
        assert last["state"] == "TASK_STATE_INPUT_REQUIRED"
        async with httpx.AsyncClient(timeout=30) as c:
            bye = {
                "messageId": "n2",
                "role": "ROLE_USER",
                "parts": [{"text": "bye"}],
                "taskId": task_id,
            }
            r = await c.post(
                exposure.url,
                json={
                    "jsonrpc": "2.0",
                    "id": 2,
                    "method": "SendMessage",
                    "params": {"message": bye},
                },
                headers={"A2A-Version": "1.0"},
            )
        task = r.json()["result"]["task"]
        assert task["status"]["state"] == "TASK_STATE_COMPLETED"
        assert task["artifacts"][-1]["parts"][0]["text"] == "Heard 1 messages: over nats"
