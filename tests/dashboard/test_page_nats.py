"""``agentcomm dashboard --nats``: a namespace whose agents run in another process.

The test starts a ``nats-server``, the agents of ``nats_agents.py`` in one process,
the dashboard command in another, and talks to the agents from a runtime of its own;
the page must show what passes between those processes.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import expect

from agentcomm import Runtime
from agentcomm.observability.presence import Presence
from agentcomm.testing.nats_server import NatsServer

from .conftest import Browser

pytestmark = [pytest.mark.nats, pytest.mark.timeout(120)]

HERE = Path(__file__).parent
#: The page's URL, the namespace, the agents' pid, this test's runtime, the agents' process.
System = tuple[str, str, int, Runtime, asyncio.subprocess.Process]


async def _start(*argv: str, ready: bytes) -> tuple[asyncio.subprocess.Process, bytes]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *argv, stdout=asyncio.subprocess.PIPE, cwd=HERE
    )
    assert proc.stdout is not None
    async with asyncio.timeout(30):
        while True:
            line = await proc.stdout.readline()
            if not line:
                raise AssertionError(f"{argv} exited before saying {ready!r}")
            if ready in line:
                return proc, line


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
    async with asyncio.timeout(30):
        await proc.wait()


@pytest.fixture
async def system(nats_server: NatsServer) -> AsyncIterator[System]:
    ns = "dash" + os.urandom(4).hex()
    agents, _ = await _start("nats_agents.py", nats_server.url, ns, ready=b"ready")
    try:
        cmd = ["-m", "agentcomm", "dashboard", "--nats", nats_server.url, "--namespace", ns]
        dash, line = await _start(*cmd, "--allow-actions", ready=b"http://")
        try:
            url = line.decode().split()[-1]
            from agentcomm.transports.nats import NatsTransport

            rt = Runtime(NatsTransport(nats_server.url, namespace=ns))
            Presence.install(rt, enabled=False)
            async with rt:
                yield url, ns, agents.pid, rt, agents
        finally:
            await _stop(dash)
    finally:
        await _stop(agents)


async def test_a_namespace_on_nats_seen_from_the_dashboard_command(
    system: System, browser: Browser
) -> None:
    # (``system`` first: the page closes before the dashboard process stops)
    url, _, pid, rt, agents = system
    page = browser.page
    await page.goto(url)
    for name in ("pricing", "stock", "packer"):
        row = page.locator("#agents-table tbody tr", has_text=name)
        await expect(row).to_contain_text(f":{pid}", timeout=10_000)
    await browser.shot("nats-agents")

    # a request from this process, through two agents of the other one
    await page.click("#tabs button[data-view=tail]")
    await expect(page.locator("#status")).to_have_text("live")
    client = rt.agent("client")
    assert await client.request("pricing", "quote", {"item": "teapot"}) == 10.0
    row = page.locator("#tail-table tbody tr", has_text="pricing.quote").first
    await expect(row).to_be_visible(timeout=2000)
    await row.click()
    spans = page.locator("#waterfall .wf-row")
    await expect(spans.filter(has_text="pricing -> stock.count")).to_be_visible(timeout=2000)
    await expect(spans.first).to_contain_text("client -> pricing.quote")
    await browser.shot("nats-traces")

    # a poisoned event: dead-lettered in the other process, redriven from the page
    await page.click("#tabs button[data-view=dlq]")
    await client.publish("parcels.sent", {"parcel": "p-1", "poison": True})
    dl = page.locator("#dlq-table tbody tr", has_text="parcels.sent")
    await expect(dl).to_be_visible(timeout=10_000)
    await expect(dl).to_contain_text("parcel p-1 is poisoned")
    await dl.click()
    await page.click("#dlq-detail button[data-action=redrive]")
    await expect(page.locator("#dlq-result")).to_contain_text("redrive")
    assert agents.stdout is not None
    async with asyncio.timeout(10):
        while b"packed p-1" not in await agents.stdout.readline():
            pass
    await expect(page.locator("#dlq-table tbody tr")).to_have_count(0, timeout=5000)

    # a blackboard write, live, with its history
    await page.click("#tabs button[data-view=board]")
    await client.board.write("plan.goal", {"text": "ship"})
    await expect(page.locator("#board-changes li", has_text="plan.goal")).to_be_visible(
        timeout=3000
    )
    await page.locator("#board-table tbody tr", has_text="plan.goal").click()
    await expect(page.locator("#board-detail .revision")).to_have_count(1)
    await browser.shot("nats-blackboard")

    # topics from the runtimes' presence records, tasks from the shared task store
    await page.click("#tabs button[data-view=topics]")
    topic = page.locator("#topics-table tbody tr[data-topic='parcels.sent']")
    await expect(topic).to_be_visible(timeout=5000)
    sub = page.locator("#subs-table tbody tr", has_text="packer__pack")
    await expect(sub).to_be_visible()
    handle = await client.start_task("reporter", "report", {"pages": 8})
    await page.click("#tabs button[data-view=tasks]")
    task = page.locator(f"#tasks-table tbody tr[data-task='{handle.id}']")
    await expect(task).to_contain_text("50%", timeout=5000)
    await expect(task).to_contain_text("half way")
    await browser.shot("nats-tasks")
    await handle.cancel()
    await browser.leave()
