"""``agentcomm demo --dashboard`` and the command's errors; the demo's page, view by view.

The views of the demo system are the screenshots of ``docs/dashboard.md``
(``AGENTCOMM_SCREENSHOTS=docs/img pytest tests/dashboard/test_demo_dashboard.py``).
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
import urllib.request

import pytest
from playwright.async_api import expect

from agentcomm.cli.dashboard_demo import demo_runtime, demo_traffic

from .conftest import Browser

pytestmark = pytest.mark.timeout(90)


async def test_demo_dashboard_prints_a_url_that_serves_the_demo() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agentcomm", "demo", "--dashboard", "--seconds", "20",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            line = (await proc.stdout.readline()).decode()
        url = line.split()[-1]
        assert url.startswith("http://127.0.0.1:")
        assert "?token=" in url
        base, _, token = url.partition("?token=")

        def snapshot() -> dict[str, object]:
            with urllib.request.urlopen(f"{base}api/snapshot?token={token}", timeout=5) as r:
                return json.loads(r.read())  # type: ignore[no-any-return]

        async with asyncio.timeout(20):
            while True:
                snap = await asyncio.to_thread(snapshot)
                agents = {a["agent"]: a for a in snap["agents"]}  # type: ignore[attr-defined,index]
                if agents.get("triage", {}).get("handled", 0) >= 2:
                    break
                await asyncio.sleep(0.3)
        assert {"customer-data", "billing", "printer", "planner", "reporter"} <= set(agents)
    finally:
        proc.terminate()
        await proc.wait()


async def test_the_dashboard_command_says_when_nats_is_unreachable() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agentcomm", "dashboard", "--nats", "nats://127.0.0.1:1",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 1
    assert b"cannot reach NATS at nats://127.0.0.1:1" in err
    assert out == b""


async def test_every_view_of_the_demo(browser: Browser) -> None:
    async with demo_runtime(io.StringIO()) as rt, rt.dashboard(allow_actions=True) as dash:
        async with asyncio.TaskGroup() as tg:
            traffic = tg.create_task(demo_traffic(rt, pause=0.1))
            page = browser.page
            await page.set_viewport_size({"width": 1200, "height": 560})
            await page.goto(dash.url)
            await expect(page.locator("#agents-table tbody tr", has_text="triage")).to_be_visible()
            await asyncio.sleep(3)  # rates and charts need a few snapshots
            await browser.shot("view-agents")
            await page.click("#tabs button[data-view=flow]")
            edge = page.locator("#flow-svg path.edge[data-from=triage][data-to=billing]")
            await expect(edge).to_be_visible()
            await browser.shot("view-flow", full_page=True)
            await page.click("#tabs button[data-view=tail]")
            row = page.locator("#tail-table tbody tr", has_text="triage.handle_ticket").first
            await expect(row).to_be_visible()
            await page.click("#tail-pause")
            await browser.shot("view-tail")
            await row.click()
            spans = page.locator("#waterfall .wf-row")
            await expect(spans.filter(has_text="triage -> billing.balance")).to_be_visible()
            await expect(spans.filter(has_text="triage -> notifier.notify")).to_be_visible()
            await browser.shot("view-traces")
            await page.click("#tabs button[data-view=topics]")
            topic = page.locator("#topics-table tbody tr[data-topic='invoices.created']")
            await expect(topic).to_be_visible()
            await browser.shot("view-topics")
            await page.click("#tabs button[data-view=dlq]")
            dl = page.locator("#dlq-table tbody tr", has_text="printer__print_invoice").first
            await expect(dl).to_be_visible(timeout=5000)
            await dl.click()
            await expect(page.locator("#dlq-event")).to_contain_text("poison")
            await browser.shot("view-dead-letters")
            await page.click("#tabs button[data-view=board]")
            await page.locator("#board-table tbody tr", has_text="plan.step").click()
            await expect(page.locator("#board-detail .revision").nth(1)).to_be_visible()
            await browser.shot("view-blackboard")
            await page.click("#tabs button[data-view=tasks]")
            await expect(page.locator("#tasks-table tbody tr").first).to_be_visible(timeout=5000)
            await browser.shot("view-tasks")
            await browser.leave()
            traffic.cancel()
