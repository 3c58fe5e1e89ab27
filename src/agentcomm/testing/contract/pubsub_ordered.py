"""Contract: ordered consumer groups (``@agent.on(..., group=g, ordered=True)``).

The members of an ordered group run in several runtimes (as in several processes);
the events of one key must never be handled by two members at once, must run in
sequence order, and a member that leaves or joins must lose nothing.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import pytest

from agentcomm.api import Agent, Context
from agentcomm.core.errors import ConfigurationError
from agentcomm.pubsub.partitions import PARTITIONS
from agentcomm.testing.contract.pubsub import DEADLINE, Seen
from agentcomm.testing.fixtures import MakeRuntime

__all__ = [
    "test_a_member_joining_takes_a_share_and_one_leaving_loses_nothing",
    "test_ordered_group_keeps_each_key_in_order_across_members",
    "test_ordered_needs_a_group",
]


class Ledger:
    """What the members did: per key, the numbers in the order handled, and clashes."""

    def __init__(self) -> None:
        self.seen = Seen()
        self.active: dict[str, str] = {}  # key -> member handling it now
        self.clashes: list[tuple[str, int, str, str]] = []
        self.by_member: dict[str, int] = {}

    def member(self, name: str, pause: Callable[[], float]) -> Agent:
        agent = Agent(name)

        @agent.on("acct.*", group="ledger", ordered=True)
        async def post(key: str, n: int, ctx: Context) -> None:
            other = self.active.get(key)
            if other is not None:
                self.clashes.append((key, n, other, name))
            self.active[key] = name
            try:
                await asyncio.sleep(pause())
            finally:
                if self.active.get(key) == name:
                    del self.active[key]
            self.by_member[name] = self.by_member.get(name, 0) + 1
            self.seen.add((key, n))

        return agent

    def order_of(self, key: str) -> list[int]:
        return [n for k, n in self.seen.items if k == key]


async def _publish(p: Agent, keys: list[str], start: int, count: int) -> None:
    for n in range(start, start + count):
        for key in keys:
            await p.publish("acct.posted", {"key": key, "n": n}, key=key)


async def test_ordered_group_keeps_each_key_in_order_across_members(
    make_runtime: MakeRuntime,
) -> None:
    ledger = Ledger()
    rng = random.Random(7)
    keys = [f"acct-{i}" for i in range(8)]
    async with (
        make_runtime(agents=[ledger.member("m0", lambda: rng.random() * 0.003)]) as a,
        make_runtime(agents=[ledger.member("m1", lambda: rng.random() * 0.003)]) as b,
        make_runtime(agents=[ledger.member("m2", lambda: rng.random() * 0.003)]),
    ):
        await _publish(a.agent("publisher"), keys, 0, 25)
        await ledger.seen.count(200, timeout=4 * DEADLINE)
        snap = await b.events.refresh()
    assert ledger.clashes == [], "two members held events of one key at once"
    for key in keys:
        assert ledger.order_of(key) == list(range(25)), f"{key}: out of order or repeated"
    assert len(ledger.by_member) >= 2, f"the work was not shared: {ledger.by_member}"
    mine = [s for s in snap.subscriptions if s.group == "ledger"]
    assert len(mine) == PARTITIONS, "one consumer per partition"


async def test_a_member_joining_takes_a_share_and_one_leaving_loses_nothing(
    make_runtime: MakeRuntime,
) -> None:
    ledger = Ledger()
    keys = [f"acct-{i}" for i in range(6)]
    async with make_runtime(agents=[ledger.member("m0", lambda: 0.002)]) as a:
        publisher = a.agent("publisher")
        await _publish(publisher, keys, 0, 10)
        await ledger.seen.count(60, timeout=2 * DEADLINE)
        async with make_runtime(agents=[ledger.member("m1", lambda: 0.004)]):
            await asyncio.sleep(0.3)  # its consumers are pulling
            await _publish(publisher, keys, 10, 20)
            await ledger.seen.count(100, timeout=2 * DEADLINE)
            joined = ledger.by_member.get("m1", 0)
        # m1 has left (some of its events may have been cut short): the rest of the
        # events still come, to m0, each key in order
        await _publish(publisher, keys, 30, 10)
        await ledger.seen.wait(lambda items: _complete(items, keys, 40), timeout=4 * DEADLINE)
    assert joined > 0, "the member that joined got none of the events published after"
    assert ledger.clashes == []
    for key in keys:
        order = ledger.order_of(key)
        assert sorted(set(order)) == list(range(40)), f"{key}: events lost"
        assert _in_order(order), f"{key} ran out of order: {order}"


def _complete(items: list[Any], keys: list[str], n: int) -> bool:
    got = {(k, i) for k, i in items}
    return all((k, i) in got for k in keys for i in range(n))


def _in_order(order: list[int]) -> bool:
    """In sequence order, allowing an event cut short by a leaving member to run again
    (at least once): a repeat may only be of the latest event before it."""
    top = -1
    for n in order:
        if n == top + 1:
            top = n
        elif n != top:
            return False
    return True


async def test_ordered_needs_a_group(make_runtime: MakeRuntime) -> None:
    del make_runtime  # a declaration error: no runtime involved
    lone = Agent("lone")
    with pytest.raises(ConfigurationError, match="group="):

        @lone.on("acct.*", ordered=True)
        async def post(key: str, n: int) -> None: ...
