"""The article's EventBus, ported (examples/pubsub_events.py), runs and does what it says."""

from __future__ import annotations

import io

from tests.examples import load_example, run_example


async def test_event_bus_example_fans_out_retries_dead_letters_redrives_and_replays() -> None:
    example = load_example("pubsub_events")
    example.STOCK.update({"book": 10, "lamp": 1})
    out = io.StringIO()
    result = await example.run(out)
    log = result["log"]
    # Fan-out: billing and notifier saw every created order; the group packed each paid once.
    assert sorted(x for who, x in log if who == "billing") == ["o-1", "o-2", "o-3"]
    assert sorted(x for who, x in log if who == "fulfilment") == ["o-1", "o-2", "o-3"]
    # Dead letters: the unknown SKU rejected at once, the out-of-stock one after 3 attempts.
    assert sorted(result["dead"]) == [("max_attempts", "o-2"), ("rejected", "o-3")]
    # Redrive after restocking handled o-2; only the rejected one is left.
    assert result["redriven"] is True
    assert ("inventory", "o-2") in log
    assert result["left"] == [("rejected", "o-3")]
    # Replay reached the notifier only, without publishing anything new.
    assert result["replayed"] == 6
    assert result["published"] == 7
    assert [x for who, x in log if who == "notifier"].count("orders.created:o-1") == 2
    # The topic nobody listens to is kept and counted, not dead-lettered.
    assert result["unrouted"] == 1
    assert "not a dead letter" in out.getvalue()


def test_example_runs_as_a_program() -> None:
    done = run_example("pubsub_events")
    assert done.returncode == 0, done.stderr
    assert "dead letters:" in done.stdout
    assert "replayed 6 events to notifier only" in done.stdout
