"""Contract: core (``durable=False``) pub/sub through the public API, on every transport.

Fan-out and wildcards, a group getting each event once, nothing stored in the event
log, the policy on both sides, a schema-invalid payload counted (not retried), and
the drop counter of a subscriber slower than its publisher. The publisher runs in a
runtime of its own (another connection on NATS, as another process would be).
"""

from __future__ import annotations

import asyncio

import pytest

from agentcomm.api import Agent, Context, Runtime
from agentcomm.core.envelope import Envelope, encode_payload, new_id
from agentcomm.core.errors import PermissionDenied
from agentcomm.pubsub.core_stats import CoreSubscriptionStatistics
from agentcomm.security.policy import Policy
from agentcomm.security.signing import Identity, Security
from agentcomm.testing.contract.engine_support import until as _until
from agentcomm.testing.contract.pubsub import Seen
from agentcomm.testing.fixtures import MakeRuntime

__all__ = [
    "test_core_events_fan_out_by_pattern_and_store_nothing",
    "test_core_forged_event_is_refused_and_counted",
    "test_core_group_gets_each_event_once",
    "test_core_invalid_payload_is_counted_not_retried",
    "test_core_policy_refuses_publish_and_subscribe",
    "test_core_slow_subscriber_drops_the_oldest_and_counts",
]

DEADLINE = 10.0


def _core(rt: Runtime, name: str) -> CoreSubscriptionStatistics:
    return rt.events.statistics().core_subscription(name)


async def test_core_events_fan_out_by_pattern_and_store_nothing(
    make_runtime: MakeRuntime,
) -> None:
    seen = Seen()
    dash, board, audit = Agent("dash"), Agent("board"), Agent("audit")

    @dash.on("metrics.*", durable=False)
    async def cpu(value: float, ctx: Context) -> None:
        env = ctx.envelope
        seen.add(("dash", value, env.kind, env.topic, env.sender, env.sequence))

    @board.on("metrics.*", durable=False)
    async def tile(value: float) -> None:
        seen.add(("board", value))

    @audit.on("metrics.>", durable=False)
    async def everything(value: float) -> None:
        seen.add(("audit", value))

    async with make_runtime(agents=[dash, board, audit]) as rt, make_runtime() as pub:
        probe = pub.agent("probe")
        assert await probe.publish("metrics.cpu", {"value": 1.0}, durable=False) == 0
        await probe.publish("metrics.eu.cpu", {"value": 2.0}, durable=False)
        await probe.publish("other.cpu", {"value": 3.0}, durable=False)
        await probe.publish("metrics.mem", {"value": 4.0}, durable=False)
        await seen.wait(lambda items: len(items) >= 6)
        assert sorted(i for i in seen.items if i[0] == "dash") == [
            ("dash", 1.0, "event", "metrics.cpu", "probe", None),
            ("dash", 4.0, "event", "metrics.mem", "probe", None),
        ]
        assert [i for i in seen.items if i[0] == "board"] == [("board", 1.0), ("board", 4.0)]
        assert [i for i in seen.items if i[0] == "audit"] == [
            ("audit", 1.0),
            ("audit", 2.0),
            ("audit", 4.0),
        ]
        snap = await pub.events.refresh()
        assert snap.events_stored == 0, "nothing in the event log"
        assert snap.published == 0
        assert snap.core_published == 4
        assert snap.topic("metrics.cpu").core_published == 1
        assert _core(rt, "dash__cpu").handled == 2


async def test_core_group_gets_each_event_once(make_runtime: MakeRuntime) -> None:
    seen = Seen()
    members = [Agent("w1"), Agent("w2")]
    for m in members:

        def declare(agent: Agent) -> None:
            @agent.on("jobs.*", group="renderers", durable=False)
            async def render(n: int) -> None:
                seen.add((agent.name, n))

        declare(m)
    n = 30
    async with (
        make_runtime(agents=[members[0]]),
        make_runtime(agents=[members[1]]),
        make_runtime() as pub,
    ):
        probe = pub.agent("probe")
        for i in range(n):
            await probe.publish("jobs.frame", {"n": i}, durable=False)
        await seen.wait(lambda items: len(items) >= n)
        assert sorted(i for _, i in seen.items) == list(range(n)), "each event once"


async def test_core_invalid_payload_is_counted_not_retried(make_runtime: MakeRuntime) -> None:
    seen = Seen()
    dash = Agent("dash")

    @dash.on("metrics.cpu", durable=False)
    async def cpu(value: float) -> None:
        seen.add(value)

    async with make_runtime(agents=[dash]) as rt, make_runtime() as pub:
        probe = pub.agent("probe")
        await probe.publish("metrics.cpu", {"value": "not a number"}, durable=False)
        await probe.publish("metrics.cpu", {"value": 0.5}, durable=False)
        await seen.wait(lambda items: len(items) >= 1)
        s = _core(rt, "dash__cpu")
        assert (s.invalid, s.handled, s.failed, s.received) == (1, 1, 0, 2)
        assert seen.items == [0.5]
        assert (await rt.events.dead_letters()) == [], "no dead letter: nothing stored"


def _policy() -> Policy:
    return Policy.from_toml(
        """
        [agents.alice]
        publish = ["metrics.*"]
        [agents.bob]
        subscribe = ["metrics.cpu"]
        """,
        source="core-policy",
    )


async def test_core_policy_refuses_publish_and_subscribe(make_runtime: MakeRuntime) -> None:
    seen = Seen()
    bob = Agent("bob")

    @bob.on("metrics.cpu", durable=False)
    async def cpu(value: float) -> None:
        seen.add(value)

    async with make_runtime(agents=[bob], access=_policy()) as rt:
        alice = rt.agent("alice")
        await alice.publish("metrics.cpu", {"value": 1.0}, durable=False)
        with pytest.raises(PermissionDenied) as info:
            await alice.publish("orders.created", {"value": 1.0}, durable=False)
        assert (info.value.action, info.value.rule) == ("publish", "agents.alice.publish")
        await seen.wait(lambda items: len(items) >= 1)
    spy = Agent("bob")

    @spy.on("metrics.>", durable=False)
    async def wide(value: float) -> None:  # pragma: no cover - must never run
        raise AssertionError("subscribed despite the policy")

    with pytest.raises(PermissionDenied) as refused:
        async with make_runtime(agents=[spy], access=_policy()):
            pass
    assert (refused.value.action, refused.value.rule) == ("subscribe", "agents.bob.subscribe")


async def test_core_slow_subscriber_drops_the_oldest_and_counts(make_runtime: MakeRuntime) -> None:
    release = asyncio.Event()
    seen = Seen()
    dash = Agent("dash")

    @dash.on("ticks.*", durable=False, max_in_flight=4)
    async def tick(n: int) -> None:
        await release.wait()
        seen.add(n)

    total = 20
    async with make_runtime(agents=[dash]) as rt, make_runtime() as pub:
        probe = pub.agent("probe")
        for i in range(total):
            await probe.publish("ticks.t", {"n": i}, durable=False)
        await _until(lambda: _core(rt, "dash__tick").received == total)
        release.set()
        await _until(lambda: (s := _core(rt, "dash__tick")).handled + s.dropped == total)
        s = _core(rt, "dash__tick")
        # at most one running and 4 queued were kept; the oldest queued went first
        assert s.dropped >= total - 1 - 4
        assert (s.max_queued, s.queued) == (4, 0)
        assert seen.items[-4:] == list(range(total - 4, total)), "the newest are kept"
        assert len(seen.items) == s.handled


async def test_core_forged_event_is_refused_and_counted(make_runtime: MakeRuntime) -> None:
    security = Security(identities=[Identity.generate(n) for n in ("probe", "dash")])
    seen = Seen()
    dash = Agent("dash")

    @dash.on("metrics.*", durable=False)
    async def cpu(value: float) -> None:
        seen.add(value)

    async with make_runtime(agents=[dash], security=security) as rt:
        probe = rt.agent("probe")
        await probe.publish("metrics.cpu", {"value": 1.0}, durable=False)  # signed
        forged = Envelope(
            id=new_id(),
            kind="event",
            sender="probe",
            topic="metrics.cpu",
            payload=encode_payload({"value": 666.0}),
        )
        await rt.transport.broadcast(forged)  # past the guard's seal: unsigned
        await probe.publish("metrics.cpu", {"value": 2.0}, durable=False)
        await seen.wait(lambda items: len(items) >= 2)
        s = _core(rt, "dash__cpu")
        assert (s.refused, s.handled) == (1, 2)
        assert seen.items == [1.0, 2.0]
