"""The dashboard of an in-process runtime, looked at in headless Chromium.

Each test starts a runtime on the in-memory engine with ``rt.dashboard()``, opens the
printed URL and checks what a person sees: the agents, a request in the tail and as
a trace tree, a dead letter redriven from the page, a blackboard key's live history,
topics and tasks; and that nothing is served without the token.
"""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request

import msgspec
import pytest
from playwright.async_api import expect

from agentcomm import Agent, Context, Runtime
from agentcomm.core.flow import RetryPolicy

from .conftest import Browser

pytestmark = pytest.mark.timeout(60)


class Order(msgspec.Struct, frozen=True):
    order_id: str


def _agents(broken: list[bool], handled: list[str]) -> list[Agent]:
    front, back, shipper = Agent("front"), Agent("back"), Agent("shipper")

    @front.handler
    async def handle(order_id: str, ctx: Context) -> str:
        """Ask the back office, then answer."""
        return await ctx.request("back", "work", {"order_id": order_id}, returns=str)

    @back.handler
    async def work(order_id: str) -> str:
        """Do the work."""
        await asyncio.sleep(0.01)
        return f"done {order_id}"

    @shipper.on("orders.*", retry=RetryPolicy(max_attempts=2, backoff=0.01, jitter=0.0))
    async def ship(order: Order) -> None:
        """Ship an order (fails while the shipper is broken)."""
        if broken[0]:
            raise ConnectionError("shipping service down")
        handled.append(order.order_id)

    return [front, back, shipper]


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


async def test_the_page_is_refused_without_its_token(browser: Browser) -> None:
    async with Runtime(agents=_agents([False], [])) as rt, rt.dashboard() as dash:
        base = dash.url.split("?")[0]
        for path in ("", "api/snapshot", "events", "static/app.js", "api/dead-letters"):
            status, body = await asyncio.to_thread(_get, base + path)
            assert status == 403, path
            assert b"token" in body
            status, _ = await asyncio.to_thread(_get, f"{base}{path}?token=wrong{dash.token}")
            assert status == 403, path
        status, _ = await asyncio.to_thread(_get, f"{base}api/snapshot?token={dash.token}")
        assert status == 200
        await browser.page.goto(base)
        await expect(browser.page.locator("body")).to_contain_text("needs the token")
        await browser.shot("refused")
        await browser.leave()
        browser.errors.clear()  # the 403 itself is logged as a failed load


async def test_agents_a_request_in_the_tail_and_its_trace(browser: Browser) -> None:
    async with Runtime(agents=_agents([False], [])) as rt, rt.dashboard() as dash:
        page = browser.page
        await page.goto(dash.url)
        rows = page.locator("#agents-table tbody tr")
        for name in ("front", "back", "shipper"):
            await expect(rows.filter(has_text=name).first).to_be_visible()
        await expect(page.locator("#status")).to_have_text("live")
        await browser.shot("agents")

        await page.click("#tabs button[data-view=tail]")
        client = rt.agent("client")
        answer = await client.request("front", "handle", {"order_id": "o-7"})
        assert answer == "done o-7"
        row = page.locator("#tail-table tbody tr", has_text="front.handle").first
        await expect(row).to_be_visible(timeout=2000)
        nested = page.locator("#tail-table tbody tr", has_text="back.work").first
        await expect(nested).to_be_visible(timeout=2000)
        await page.fill("#tail-filters input[name=agent]", "back")
        await expect(page.locator("#tail-table tbody tr", has_text="front.handle")).to_have_count(0)
        await page.fill("#tail-filters input[name=agent]", "")
        await browser.shot("tail")

        await row.click()  # the trace of that request
        waterfall = page.locator("#waterfall")
        await expect(waterfall.locator(".wf-row")).to_have_count(2, timeout=2000)
        first, second = waterfall.locator(".wf-row").nth(0), waterfall.locator(".wf-row").nth(1)
        await expect(first).to_contain_text("client -> front.handle")
        await expect(second).to_contain_text("front -> back.work")
        assert (await second.locator(".wf-label").inner_text()).startswith("\u00a0\u00a0")
        await expect(first.locator(".wf-time")).to_contain_text("ms")
        await browser.shot("traces")

        for i in range(5):
            await client.request("front", "handle", {"order_id": f"o-{i}"})
        await page.click("#tabs button[data-view=flow]")
        await expect(page.locator("#flow-svg g.agent[data-node=front]")).to_be_visible()
        edge = page.locator("#flow-svg path.edge[data-from=front][data-to=back]")
        await expect(edge).to_be_visible(timeout=3000)
        edge = page.locator("#flow-svg path.edge[data-from=client][data-to=front]")
        await expect(edge).to_be_visible()
        await browser.shot("flow")
        await browser.leave()


async def test_a_poisoned_event_is_dead_lettered_and_redriven_from_the_page(
    browser: Browser,
) -> None:
    broken, handled = [True], []
    async with (
        Runtime(agents=_agents(broken, handled)) as rt,
        rt.dashboard(allow_actions=True) as dash,
    ):
        page = browser.page
        await page.goto(dash.url)
        await page.click("#tabs button[data-view=dlq]")
        await rt.agent("shop").publish("orders.created", Order("o-13"))
        await rt.events.wait_dead_letter(topic="orders.created", timeout=5)
        row = page.locator("#dlq-table tbody tr", has_text="orders.created")
        await expect(row).to_be_visible(timeout=3000)
        await expect(row).to_contain_text("max_attempts")
        await expect(row).to_contain_text("shipping service down")
        await row.click()
        await expect(page.locator("#dlq-event")).to_contain_text("o-13")
        await browser.shot("dead-letters")
        broken[0] = False
        await page.click("#dlq-detail button[data-action=redrive]")
        await expect(page.locator("#dlq-result")).to_contain_text('"handled":true')
        await expect(page.locator("#dlq-table tbody tr")).to_have_count(0)
        assert handled == ["o-13"]
        assert await rt.events.dead_letters() == []
        await browser.leave()


async def test_actions_are_refused_on_a_read_only_dashboard(browser: Browser) -> None:
    broken = [True]
    async with Runtime(agents=_agents(broken, [])) as rt, rt.dashboard() as dash:
        await rt.agent("shop").publish("orders.created", Order("o-1"))
        dl = await rt.events.wait_dead_letter(topic="orders.created", timeout=5)
        page = browser.page
        await page.goto(dash.url)
        await page.click("#tabs button[data-view=dlq]")
        await page.locator("#dlq-table tbody tr").first.click()
        await expect(page.locator("#dlq-detail button[data-action=redrive]")).to_be_disabled()
        status = await page.evaluate(
            """async ([seq, token]) => (await fetch(
                `api/dead-letters/${seq}/redrive?token=${token}`, {method: "POST"})).status""",
            [dl.sequence, dash.token],
        )
        assert status == 403
        assert len(await rt.events.dead_letters()) == 1
        await browser.leave()
        browser.errors.clear()  # the refused POST is logged as a failed load


async def test_a_blackboard_write_appears_live_with_its_history(browser: Browser) -> None:
    async with (
        Runtime(agents=_agents([False], [])) as rt,
        rt.dashboard(allow_actions=True) as dash,
    ):
        page = browser.page
        await page.goto(dash.url)
        await page.click("#tabs button[data-view=board]")
        await expect(page.locator("#status")).to_have_text("live")
        planner = rt.agent("planner")
        await planner.board.write("plan.goal", {"text": "ship it", "owner": "ada"})
        changes = page.locator("#board-changes li", has_text="plan.goal")
        await expect(changes.first).to_be_visible(timeout=2000)
        await page.locator("#board-table tbody tr", has_text="plan.goal").click()
        await planner.board.write("plan.goal", {"text": "ship it today", "owner": "ada"})
        await expect(changes).to_have_count(2, timeout=2000)
        history = page.locator("#board-detail .revision")
        await expect(history).to_have_count(2, timeout=2000)
        newest = history.nth(0)
        await expect(newest).to_contain_text("rev 2")
        await expect(newest.locator(".add")).to_contain_text("ship it today")
        await expect(newest.locator(".del")).to_contain_text('"ship it"')
        await browser.shot("blackboard")
        await page.click("#board-detail button[data-action=delete]")
        deleted = page.locator("#board-changes li", has_text="plan.goal delete")
        await expect(deleted).to_be_visible(timeout=2000)
        assert await planner.board.read("plan.goal") is None
        await browser.leave()


async def test_topics_and_tasks(browser: Browser) -> None:
    reporter = Agent("reporter")
    gate = asyncio.Event()

    @reporter.task_handler()
    async def report(pages: int, ctx: Context) -> str:
        await ctx.progress(2, pages, "page 2")
        await gate.wait()
        return "ok"

    async with (
        Runtime(agents=[*_agents([False], []), reporter]) as rt,
        rt.dashboard() as dash,
    ):
        page = browser.page
        await page.goto(dash.url)
        shop = rt.agent("shop")
        for i in range(20):
            await shop.publish("orders.created", Order(f"o-{i}"))
        await page.click("#tabs button[data-view=topics]")
        topic = page.locator("#topics-table tbody tr[data-topic='orders.created']")
        await expect(topic).to_contain_text("20", timeout=3000)
        sub = page.locator("#subs-table tbody tr[data-subscription='shipper__ship']")
        await expect(sub).to_be_visible()
        await asyncio.sleep(2.2)  # a few samples for the small charts
        await browser.shot("topics")

        handle = await rt.agent("client").start_task("reporter", "report", {"pages": 4})
        await page.click("#tabs button[data-view=tasks]")
        task = page.locator(f"#tasks-table tbody tr[data-task='{handle.id}']")
        await expect(task).to_contain_text("working", timeout=4000)
        await expect(task).to_contain_text("50%")
        await expect(task).to_contain_text("page 2")
        await browser.shot("tasks")
        gate.set()
        assert await handle.result() == "ok"
        await expect(task).to_contain_text("completed", timeout=4000)
        await browser.leave()
