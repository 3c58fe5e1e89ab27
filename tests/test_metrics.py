"""Metrics export: OpenTelemetry instruments over statistics(), and the Prometheus endpoint."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk.metrics")

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from agentcomm import Agent, Reject, Runtime
from agentcomm.core.errors import ConfigurationError
from agentcomm.observability.metrics import SPECS, export, prometheus_text, serve_prometheus


def make_agents() -> list[Agent]:
    """Fresh agents per test: their counters are what the metrics report."""
    calc = Agent("calc")

    @calc.handler
    async def add(a: int, b: int) -> int:
        return a + b

    ledger = Agent("ledger")

    @ledger.on("orders.*")
    async def book(amount: float) -> None:
        if amount < 0:
            raise Reject("negative")

    return [calc, ledger]


def points(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict[str, Any], float]]]:
    data = reader.get_metrics_data()
    if data is None:
        return {}
    out: dict[str, list[tuple[dict[str, Any], float]]] = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                out[m.name] = [(dict(p.attributes or {}), p.value) for p in m.data.data_points]
    return out


async def _work(rt: Runtime) -> None:
    me = rt.agent("me")
    for i in range(3):
        assert await me.request("calc", "add", {"a": i, "b": 1}) == i + 1
    await me.publish("orders.new", {"amount": 5.0})
    await me.publish("orders.new", {"amount": -1.0})
    for _ in range(1000):  # bounded: 10 s
        if rt.events.statistics().subscription("ledger__book").dead_lettered:
            break
        await asyncio.sleep(0.01)
    else:
        pytest.fail("the negative amount was not dead-lettered within 10 s")
    await rt.events.refresh()
    await rt.board.write("plan.goal", "ship")


async def test_otel_export_reads_the_snapshots() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    async with Runtime(agents=make_agents()) as rt:
        handle = export(rt, provider)
        assert points(reader).get("agentcomm.topic.published", []) == []  # no pub/sub yet
        await _work(rt)
        got = points(reader)
        handled = dict((a["agent"], v) for a, v in got["agentcomm.agent.handled"])
        assert handled["calc"] == 3
        assert got["agentcomm.agent.queued"] == [
            ({"agent": n}, 0) for n in ("calc", "ledger", "me")
        ]
        (topic,) = got["agentcomm.topic.published"]
        assert topic == ({"topic": "orders.new"}, 2)
        (dead,) = got["agentcomm.subscription.dead_lettered"]
        assert dead[0]["subscription"] == "ledger__book"
        assert dead[1] == 1
        assert got["agentcomm.pubsub.dead_letters"] == [({}, 1)]
        assert got["agentcomm.board.writes"] == [({"bucket": "blackboard"}, 1)]
        assert got["agentcomm.runtime.failures"] == [({}, 0)]
        handle.close()
        assert all(not pts for pts in points(reader).values())
    provider.shutdown()


async def test_prometheus_text_and_endpoint() -> None:
    async with Runtime(agents=make_agents()) as rt:
        await _work(rt)
        text = prometheus_text(rt)
        assert "# TYPE agentcomm_agent_handled_total counter" in text
        assert 'agentcomm_agent_handled_total{agent="calc"} 3' in text
        assert "# TYPE agentcomm_subscription_lag gauge" in text
        assert 'agentcomm_topic_published_total{topic="orders.new"} 2' in text
        # every metric has HELP and TYPE exactly once
        assert text.count("# TYPE ") == len(SPECS) == len({s.name for s in SPECS})

        endpoint = await serve_prometheus(rt, port=0)
        assert endpoint.url.startswith("http://127.0.0.1:")
        status, headers, body = await _get(endpoint.port, "/metrics")
        assert status == 200
        assert "text/plain; version=0.0.4" in headers
        assert 'agentcomm_agent_handled_total{agent="calc"} 3' in body
        assert (await _get(endpoint.port, "/nope"))[0] == 404
        with pytest.raises(ConfigurationError, match="already serves"):
            await serve_prometheus(rt, port=0)
        port = endpoint.port
    with pytest.raises(ConnectionRefusedError):  # closed with the runtime
        await _get(port, "/metrics")


def test_label_values_are_escaped() -> None:
    from agentcomm.observability.metrics import _label

    assert _label('a"b\\c\nd') == 'a\\"b\\\\c\\nd'


async def _get(port: int, path: str) -> tuple[int, str, str]:
    async with asyncio.timeout(5):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await writer.drain()
        raw = await reader.read()
        writer.close()
        await writer.wait_closed()
    head, _, body = raw.decode().partition("\r\n\r\n")
    return int(head.split()[1]), head, body
