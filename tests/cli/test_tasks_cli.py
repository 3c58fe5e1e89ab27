"""``agentcomm tasks`` on a real broker: the list with progress, and one task followed."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import pytest

from agentcomm import Agent, Context, Progress, Runtime
from agentcomm.cli.tasks_cmd import bar
from agentcomm.testing.nats_server import NatsServer

pytest.importorskip("nats")

from agentcomm.transports.nats import NatsTransport

pytestmark = pytest.mark.nats


async def cli(*args: str, timeout: float = 30) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agentcomm", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    async with asyncio.timeout(timeout):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def test_bar() -> None:
    assert bar(Progress(done=1, total=4), 8) == "[##------]  25%"
    assert bar(Progress(done=3)) == "3 done"
    assert bar(None) == ""


async def test_tasks_lists_and_follows(nats_server: NatsServer) -> None:
    ns = "cli" + os.urandom(3).hex()
    opts = ("--nats", nats_server.url, "--namespace", ns)
    w = Agent("writer")

    @w.task_handler()
    async def draft(pages: int, ctx: Context) -> str:
        for i in range(pages):
            await ctx.progress(i + 1, pages, f"page {i + 1}")
        ok = await ctx.ask("Publish?", returns=bool, timeout=30)
        return f"published={ok}"

    code, _, err = await cli("tasks", *opts)
    assert code == 1
    assert "no durable tasks in namespace" in err
    async with Runtime(transport=NatsTransport(nats_server.url, namespace=ns), agents=[w]) as rt:
        handle = await rt.agent("editor").start_task("writer", "draft", {"pages": 2})
        end = asyncio.get_running_loop().time() + 20
        while (await handle.status()).state != "input-required":
            assert asyncio.get_running_loop().time() < end, "the task never asked"
            await asyncio.sleep(0.02)
        code, out, err = await cli("tasks", *opts)
        assert code == 0, err
        assert handle.id in out
        assert "writer.draft" in out
        assert "input-required" in out
        assert "[##########] 100%" in out
        code, out, _ = await cli("tasks", *opts, "--json", "--state", "input-required")
        rows: list[dict[str, Any]] = [json.loads(x) for x in out.splitlines()]
        assert [r["id"] for r in rows] == [handle.id]
        assert rows[0]["question"]["schema"] == {"type": "boolean"}
        follower = asyncio.create_task(cli("tasks", *opts, "--follow", handle.id))
        await asyncio.sleep(0.5)
        await handle.answer(True)
        code, out, err = await follower
        assert code == 0, err
        assert 'asks: "Publish?"' in out
        assert "page 2" in out
        assert '"published=True"' in out
        code, out, _ = await cli("tasks", *opts, "--follow", handle.id, "--since", "3", "--json")
        cursors = [json.loads(x)["cursor"] for x in out.splitlines()]
        assert cursors
        assert min(cursors) > 3
        code, _, err = await cli("tasks", *opts, "--follow", "0" * 32)
        assert code == 1
        assert "no task" in err
