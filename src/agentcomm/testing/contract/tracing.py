"""Contract: one trace follows a request across direct, pub/sub and blackboard hops.

A request fans out through five agents: direct request/response, a pub/sub event, a
blackboard write seen by a board subscription, another event, a direct notification.
It must produce ONE trace whose parent/child links match the causation chain
(``causation_id``) of the messages, on every transport. Needs ``opentelemetry-sdk``.

Every test takes ``make_runtime`` and uses only the public API; waits are on events
with deadlines, and the spans are read after the runtime stopped (every span ended).
"""

from __future__ import annotations

import asyncio
from typing import Any

from agentcomm.api import Agent, Context
from agentcomm.blackboard.board import Change
from agentcomm.testing.extras import require_module
from agentcomm.testing.fixtures import MakeRuntime

__all__ = ["test_one_trace_across_direct_pubsub_and_blackboard"]

DEADLINE = 10.0


def _five_agents(seen: dict[str, Any], done: asyncio.Event) -> list[Agent]:
    gateway, pricer, billing = Agent("gateway"), Agent("pricer"), Agent("billing")
    notifier, auditor = Agent("notifier"), Agent("auditor")

    def got(name: str, ctx: Context) -> None:
        seen[name] = ctx.envelope  # what each handler received, with its causation id
        if {"audit", "notice"} <= seen.keys():
            done.set()

    @gateway.handler
    async def start(order: str, ctx: Context) -> float:
        got("start", ctx)
        await ctx.publish("orders.created", {"order": order}, key=order)  # pub/sub hop
        return await ctx.request("pricer", "price", {"order": order}, returns=float)

    @pricer.handler
    async def price(order: str, ctx: Context) -> float:
        got("price", ctx)
        await ctx.board.write(f"prices.{order}", {"amount": 9.5})  # blackboard hop
        return 9.5

    @billing.on("orders.*")
    async def charge(order: str, ctx: Context) -> None:
        got("charge", ctx)
        await ctx.send("auditor", "audit", {"order": order})  # direct hop after pub/sub

    @auditor.handler
    async def audit(order: str, ctx: Context) -> None:
        got("audit", ctx)

    @auditor.on("notices.*")
    async def notice(key: str, ctx: Context) -> None:
        got("notice", ctx)

    return [gateway, pricer, billing, notifier, auditor]


async def test_one_trace_across_direct_pubsub_and_blackboard(make_runtime: MakeRuntime) -> None:
    require_module("opentelemetry.sdk")
    from agentcomm.observability.tracing import TraceRecorder

    recorder = TraceRecorder()
    seen: dict[str, Any] = {}
    done = asyncio.Event()
    agents = _five_agents(seen, done)
    notifier = agents[3]
    async with make_runtime(agents=agents, tracing=recorder.provider) as rt:

        async def on_price(change: Change[Any]) -> None:  # board -> pub/sub hop
            entry = change.entry
            assert entry is not None
            await notifier.publish("notices.price", {"key": change.key}, cause=entry.as_cause())

        sub = await notifier.board.subscribe("prices.", on_price)
        client = rt.agent("client")
        assert await client.request("gateway", "start", {"order": "o1"}) == 9.5
        await asyncio.wait_for(done.wait(), DEADLINE)
        entry = await rt.board.read("prices.o1")
        await sub.aclose()

    # Causation: every hop names the message that caused it, the board hop included.
    assert entry is not None
    assert entry.cause == seen["price"].id
    assert entry.traceparent is not None
    assert seen["start"].causation_id is None
    assert seen["price"].causation_id == seen["start"].id
    assert seen["charge"].causation_id == seen["start"].id
    assert seen["audit"].causation_id == seen["charge"].id
    assert seen["notice"].causation_id == seen["price"].id

    # One trace, one root, and the span tree follows the hops exactly.
    spans = recorder.spans()
    trace_ids = {s.context.trace_id for s in spans if s.context is not None}
    assert len(trace_ids) == 1, recorder.format_tree(spans[0].context.trace_id)
    by_id = {s.context.span_id: s for s in spans if s.context is not None}
    roots = [s.name for s in spans if s.parent is None or s.parent.span_id not in by_id]
    assert roots == ["request gateway"]
    parent_of = {
        s.name: by_id[s.parent.span_id].name
        for s in spans
        if s.parent is not None and s.parent.span_id in by_id
    }
    assert parent_of == {
        "process gateway": "request gateway",
        "publish orders.created": "process gateway",
        "process orders.created": "publish orders.created",
        "send auditor": "process orders.created",
        "process auditor": "send auditor",
        "request pricer": "process gateway",
        "process pricer": "request pricer",
        "write prices.o1": "process pricer",
        "process prices.": "write prices.o1",
        "publish notices.price": "process prices.",
        "process notices.price": "publish notices.price",
    }, recorder.format_tree(next(iter(trace_ids)))

    # The links match the causation chain: the span that handled a message descends
    # from the span that handled the message that caused it.
    def handling(env_id: str) -> Any:
        (span,) = [
            s
            for s in spans
            if s.name.startswith("process ")
            and (s.attributes or {}).get("messaging.message.id") == env_id
        ]
        return span

    def ancestors(span: Any) -> set[int]:
        out: set[int] = set()
        while span.parent is not None and span.parent.span_id in by_id:
            out.add(span.parent.span_id)
            span = by_id[span.parent.span_id]
        return out

    for name in ("price", "charge", "audit", "notice"):
        env = seen[name]
        cause = handling(env.causation_id)
        assert cause.context.span_id in ancestors(handling(env.id)), name

    # Messaging attributes on the pub/sub and blackboard spans.
    attrs: dict[str, dict[str, Any]] = {s.name: dict(s.attributes or {}) for s in spans}
    charge = attrs["process orders.created"]
    assert charge["messaging.destination.name"] == "orders.created"
    assert charge["messaging.destination.subscription.name"]
    assert charge["agentcomm.attempt"] == 1
    assert charge["agentcomm.key"] == "o1"
    published = attrs["publish orders.created"]["agentcomm.sequence"]
    assert isinstance(published, int)
    assert charge["agentcomm.sequence"] == published
    assert attrs["write prices.o1"]["agentcomm.revision"] == entry.revision
    assert attrs["process prices."]["agentcomm.revision"] == entry.revision
