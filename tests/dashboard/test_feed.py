"""The dashboard's bounded parts, without a browser: queues, traces, sampling, polling."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from agentcomm import Agent, Runtime
from agentcomm.core.envelope import Envelope, ErrorInfo
from agentcomm.dashboard.feed import Client, Hub, TraceIndex, record_of
from agentcomm.dashboard.live import PER_TICK, Live
from agentcomm.dashboard.sources import RuntimeSource
from agentcomm.dashboard.traces import waterfall


def _env(id: str, kind: str = "request", **kw: Any) -> Envelope:
    return Envelope(id=id, kind=kind, sender=kw.pop("sender", "a"), **kw)  # type: ignore[arg-type]


def test_a_client_queue_drops_the_oldest_and_counts() -> None:
    c = Client(size=3)
    for i in range(5):
        c.put(("msgs", i))
    assert c.dropped == 2
    assert [d for _, d in c.take()] == [2, 3, 4]
    assert len(c) == 0
    assert not c.ready.is_set()


def test_a_client_queue_is_bounded_in_bytes() -> None:
    c = Client(size=100, max_bytes=1000)
    for _ in range(30):
        c.put(("msgs", b"x" * 100))
    assert (len(c), c.bytes, c.dropped) == (10, 1000, 20)
    c.put(("msgs", b"y" * 5000))  # one event larger than the bound is still delivered
    assert (len(c), c.bytes) == (1, 5000)


def test_a_hub_broadcast_never_waits_for_a_client() -> None:
    hub = Hub(queue_size=10)
    slow, gone = hub.connect(), hub.connect()
    hub.disconnect(gone)
    for i in range(1000):
        hub.broadcast("msgs", i)
    assert len(slow) == 10
    assert hub.dropped == 990
    assert hub.clients == {slow}


def test_a_trace_follows_responses_and_causes() -> None:
    index = TraceIndex()
    root = record_of(_env("r1", sender="client", recipient="front", handler="go"))
    nested = record_of(_env("r2", sender="front", recipient="back", causation_id="r1"))
    answer = record_of(_env("p2", "response", sender="back", correlation_id="r2"))
    other = record_of(_env("r9", sender="x", recipient="y"))
    for rec in (root, nested, answer, other):
        index.add(rec)
    assert root["trace"] == nested["trace"] == answer["trace"] == "r1"
    assert other["trace"] == "r9"
    assert [r["id"] for r in index.get("r1")] == ["r1", "r2", "p2"]
    (newest, oldest) = index.summaries()
    assert (newest["trace"], oldest["trace"]) == ("r9", "r1")
    assert oldest["spans"] == 2  # the response folds into its request
    assert oldest["agents"] == ["back", "client", "front"]


def test_the_trace_index_is_bounded() -> None:
    index = TraceIndex(max_traces=5, max_spans=4)
    for t in range(50):
        index.add(record_of(_env(f"t{t}")))
        for s in range(10):
            index.add(record_of(_env(f"t{t}.{s}", causation_id=f"t{t}")))
    assert len(index) == 5
    assert index.get("t0") == []
    assert len(index.get("t49")) == 4


def test_a_waterfall_nests_times_errors_and_retries() -> None:
    t = 1000.0
    recs = [
        record_of(_env("r1", sender="client", recipient="front", handler="go", created=t)),
        record_of(_env("r2", sender="front", recipient="back", causation_id="r1", created=t + 1)),
        record_of(
            _env(
                "p2",
                "response",
                sender="back",
                correlation_id="r2",
                created=t + 2,
                error=ErrorInfo(type="ValueError", message="boom", code="handler_error"),
            )
        ),
        record_of(_env("r3", sender="front", recipient="back", causation_id="r1", created=t + 3)),
        record_of(_env("p1", "response", sender="front", correlation_id="r1", created=t + 4)),
    ]
    index = TraceIndex()
    for r in recs:
        index.add(r)
    tree = waterfall(index.get("r1"))
    assert tree["duration"] == 4.0
    labels = [(s["label"], s["depth"], s["attempt"]) for s in tree["spans"]]
    assert labels == [
        ("client -> front.go", 0, 1),
        ("front -> back", 1, 1),
        ("front -> back", 1, 2),
    ]
    first, failed, retry = tree["spans"]
    assert (first["offset"], first["duration"]) == (0.0, 4.0)
    assert failed["error"] == "handler_error: boom"
    assert retry["pending"] is True  # no answer seen: it lasts to the last envelope


class _Flood:
    """A source that hands over many envelopes per poll."""

    scope = "runtime"

    def __init__(self, n: int) -> None:
        self.n = n

    def poll(self) -> tuple[list[Any], int]:
        return [
            (_env(f"e{i}", "notification", recipient="b"), None, None) for i in range(self.n)
        ], 7


async def test_a_poll_keeps_at_most_per_tick_and_counts_the_rest() -> None:
    live = Live(_Flood(PER_TICK * 3))  # type: ignore[arg-type]
    client = live.hub.connect()
    await live.poll_messages()
    assert live.seen == PER_TICK
    assert live.sampled_out == PER_TICK * 2 + 7
    ((kind, data),) = client.take()
    batch = msgspec.json.decode(data)
    assert kind == "msgs"
    assert len(batch["records"]) == PER_TICK
    assert batch["records"][-1]["id"] == f"e{PER_TICK * 3 - 1}"  # the newest are kept


async def test_the_runtime_source_reads_the_log_and_estimates_what_it_missed() -> None:
    sink = Agent("sink")

    @sink.handler
    async def take(n: int) -> None:
        """Take it."""

    async with Runtime(agents=[sink], log_size=10) as rt:
        source = RuntimeSource(rt)
        sender = rt.agent("sender")
        await sender.send("sink", "take", {"n": 0})
        got, missed = source.poll()
        assert ([e.handler for e, _, _ in got], missed) == (["take"], 0)
        assert source.poll() == ([], 0)
        for i in range(50):
            await sender.send("sink", "take", {"n": i})
        await asyncio.sleep(0.05)
        got, missed = source.poll()
        assert len(got) == 10
        assert missed == 40
        snap = await source.snapshot()
        (row,) = [a for a in snap["agents"] if a["agent"] == "sink"]
        assert row["received"] == 51
