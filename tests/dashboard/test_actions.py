"""The dashboard's actions run as the operator, under the runtime's access policy."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import msgspec

from agentcomm import Agent, Policy, Runtime
from agentcomm.core.flow import RetryPolicy

POLICY = """
[agents.shipper]
subscribe = ["orders.*"]
subscriptions = ["ship"]

[agents.shop]
publish = ["orders.*"]

[agents.operator]
read = [">"]
write = ["plan."]
"""


class Order(msgspec.Struct, frozen=True):
    order_id: str


def _post(url: str) -> tuple[int, dict[str, object]]:
    req = urllib.request.Request(url, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _shipper(broken: list[bool]) -> Agent:
    shipper = Agent("shipper")

    @shipper.on("orders.*", retry=RetryPolicy(max_attempts=1))
    async def ship(order: Order) -> None:
        if broken[0]:
            raise ConnectionError("down")

    return shipper


async def test_a_redrive_the_policy_refuses_is_403_with_the_reason() -> None:
    policy = Policy.from_toml(POLICY)
    broken = [True]
    async with (
        Runtime(agents=[_shipper(broken)], access=policy) as rt,
        rt.dashboard(allow_actions=True) as dash,
    ):
        await rt.agent("shop").publish("orders.created", Order("o-1"))
        dl = await rt.events.wait_dead_letter(topic="orders.created", timeout=5)
        base, token = dash.url.split("?")[0], dash.token
        url = f"{base}api/dead-letters/{dl.sequence}/redrive?token={token}"
        status, body = await asyncio.to_thread(_post, url)
        assert status == 403
        assert "'operator' may not publish 'orders.created'" in str(body["error"])
        assert len(await rt.events.dead_letters()) == 1

        # the operator may write plan.*: deleting such a key is allowed, others are not
        operator = rt.agent("operator")
        await operator.board.write("plan.goal", {"text": "x"})
        ok, _ = await asyncio.to_thread(
            _post, f"{base}api/board/delete?key=plan.goal&token={token}"
        )
        assert ok == 200
        assert await operator.board.read("plan.goal") is None
        refused, body = await asyncio.to_thread(
            _post, f"{base}api/board/delete?key=secret.x&token={token}"
        )
        assert refused == 403
        assert "may not write" in str(body["error"])


async def test_a_redrive_the_policy_allows_hands_the_event_back() -> None:
    policy = Policy.from_toml(
        POLICY.replace('read = [">"]', 'read = [">"]\npublish = ["orders.*"]')
    )
    broken = [True]
    async with (
        Runtime(agents=[_shipper(broken)], access=policy) as rt,
        rt.dashboard(allow_actions=True) as dash,
    ):
        await rt.agent("shop").publish("orders.created", Order("o-2"))
        dl = await rt.events.wait_dead_letter(topic="orders.created", timeout=5)
        broken[0] = False
        base, token = dash.url.split("?")[0], dash.token
        url = f"{base}api/dead-letters/{dl.sequence}/redrive?token={token}"
        status, body = await asyncio.to_thread(_post, url)
        assert (status, body["handled"]) == (200, True)
        assert await rt.events.dead_letters() == []
