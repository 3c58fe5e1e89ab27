"""Presence scales with the number of agents (issue 17: it grew with their square)."""

from __future__ import annotations

from typing import Any

import pytest

from agentcomm import Agent, Runtime
from agentcomm.observability.presence import BUCKET, Presence
from agentcomm.tools import catalogue


def _agents(n: int) -> list[Agent]:
    out = []
    for i in range(n):
        a = Agent(f"a{i}")

        @a.handler
        async def ping(x: int) -> int:
            return x

        @a.handler
        async def echo(text: str) -> str:
            return text

        out.append(a)
    return out


@pytest.mark.parametrize("n", [10, 100])
async def test_one_publish_builds_each_agents_schemas_once(
    n: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0
    real = catalogue.tool_schemas

    def counting(spec: Any) -> Any:
        nonlocal calls
        calls += 1
        return real(spec)

    monkeypatch.setattr(catalogue, "tool_schemas", counting)
    rt = Runtime(agents=_agents(n))
    presence = Presence.install(rt, interval=3600.0)
    async with rt:
        await rt.transport.kv_open(BUCKET, history=1)  # presence runs on NATS by default
        await presence.publish()
        assert calls == 2 * n  # two handlers per agent, each once (n**2 before)
        await presence.publish()
        assert calls == 2 * n  # unchanged agents: cached
        keys = {e.key for e in await rt.transport.kv_entries(BUCKET, "agents.")}
        assert len(keys) == n


async def test_the_runtime_record_carries_the_busiest_topics_only() -> None:
    """One record is one NATS message (1 MiB): 10,000 topics overflowed it (issue 17)."""
    import msgspec

    from agentcomm.observability.presence import MAX_TOPICS, RuntimePresence

    rt = Runtime(agents=_agents(1))
    presence = Presence.install(rt, interval=3600.0)
    async with rt:
        await rt.transport.kv_open(BUCKET, history=1)
        pub = rt.agent("pub")
        for i in range(MAX_TOPICS + 50):
            await pub.publish(f"t.{i}", i)
        for _ in range(5):
            await pub.publish("t.hot", 0)
        await presence.publish()
        (entry,) = [e for e in await rt.transport.kv_entries(BUCKET, "runtimes.")]
        rec = msgspec.json.decode(entry.value, type=RuntimePresence)
    assert rec.pubsub is not None
    assert len(rec.pubsub.topics) == MAX_TOPICS
    assert rec.pubsub.topics[0].topic == "t.hot"
    assert rec.pubsub.published == MAX_TOPICS + 55  # the totals stay whole
