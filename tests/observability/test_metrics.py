"""Metrics export: OpenTelemetry instruments over statistics(), and the Prometheus endpoint."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agentcomm.testing.extras import require_module

require_module("opentelemetry.sdk.metrics")

from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402

from agentcomm import Agent, Reject, Runtime  # noqa: E402
from agentcomm.core.errors import ConfigurationError  # noqa: E402
from agentcomm.observability.metric_specs import SPECS  # noqa: E402
from agentcomm.observability.metrics import export, prometheus_text, serve_prometheus  # noqa: E402
from agentcomm.observability.prometheus import prometheus_name  # noqa: E402


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
    await rt.events.wait_dead_letter(subscription="ledger__book", timeout=10)
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


def parsed(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Prometheus text as prometheus_client's parser reads it: sample -> labels -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


async def test_prometheus_text_and_endpoint() -> None:
    async with Runtime(agents=make_agents()) as rt:
        await _work(rt)
        text = prometheus_text(rt)
        assert "# TYPE agentcomm_agent_handled_total counter" in text
        assert "# TYPE agentcomm_subscription_lag gauge" in text
        # every metric has HELP and TYPE exactly once
        assert text.count("# TYPE ") == len(SPECS) == len({s.name for s in SPECS})
        got = parsed(text)
        assert got["agentcomm_agent_handled_total"][(("agent", "calc"),)] == 3
        assert got["agentcomm_topic_published_total"][(("topic", "orders.new"),)] == 2
        (dead,) = got["agentcomm_subscription_dead_lettered_total"].items()
        assert dict(dead[0])["subscription"] == "ledger__book"
        assert "group" not in dict(dead[0])  # no empty label for an ungrouped subscription
        assert got["agentcomm_runtime_failures_total"] == {(): 0}
        assert set(got) <= {prometheus_name(s) for s in SPECS}

        endpoint = await serve_prometheus(rt, port=0)
        assert endpoint.url.startswith("http://127.0.0.1:")
        status, headers, body = await _get(endpoint.port, "/metrics")
        assert status == 200
        assert "Content-Type: text/plain" in headers
        assert parsed(body)["agentcomm_agent_handled_total"][(("agent", "calc"),)] == 3
        assert (await _get(endpoint.port, "/nope"))[0] == 404
        assert (await _get(endpoint.port, "/metrics", method="POST"))[0] == 405
        status, _, body = await _get(endpoint.port, "/metrics", method="HEAD")
        assert (status, body) == (200, "")
        with pytest.raises(ConfigurationError, match="already serves"):
            await serve_prometheus(rt, port=0)
        port = endpoint.port
    with pytest.raises(ConnectionRefusedError):  # closed with the runtime
        await _get(port, "/metrics")


async def test_label_values_are_escaped() -> None:
    nasty = 'a"b\\c\nd{e}'
    async with Runtime(agents=[Agent("n")]) as rt:
        rt.report_error(nasty, ValueError(nasty))
        got = parsed(prometheus_text(rt))
    assert got["agentcomm_runtime_errors_total"] == {(("kind", nasty),): 1}


async def _get(port: int, path: str, method: str = "GET") -> tuple[int, str, str]:
    async with asyncio.timeout(5):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await writer.drain()
        raw = await reader.read()
        writer.close()
        await writer.wait_closed()
    head, _, body = raw.decode().partition("\r\n\r\n")
    return int(head.split()[1]), head, body
