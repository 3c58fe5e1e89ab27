"""Blackboard behaviour on the in-memory engine beyond the contract suite."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from agentcomm import Agent, Context, Runtime
from agentcomm.blackboard.board import Blackboard, Change, check_key, check_prefix
from agentcomm.core.errors import (
    ConfigurationError,
    RevisionConflict,
    TransportClosed,
    ValidationError,
)

DEADLINE = 10.0


async def test_slow_watcher_lags_resyncs_and_is_told() -> None:
    async with Runtime() as rt:
        board = rt.board
        await board.write("s.a", 0)
        await board.write("s.b", 0)
        async with board.watch("s.", max_pending=4) as watch:
            first = [await watch.__anext__() for _ in range(2)]
            assert [c.key for c in first] == ["s.a", "s.b"]
            for i in range(1, 50):
                await board.write("s.a", i)
            await board.delete("s.b")
            await board.write("s.c", "new")
            # Resync: one batch of what changed meanwhile, in revision order.
            batch = [await watch.__anext__() for _ in range(3)]
        assert watch.lagged == 1
        assert board.statistics().lagged == 1
        assert [(c.key, c.operation, c.value, c.initial) for c in batch] == [
            ("s.a", "put", 49, True),
            ("s.b", "delete", None, True),
            ("s.c", "put", "new", True),
        ]


async def test_lagging_subscription_does_not_stall_other_watchers() -> None:
    async with Runtime() as rt:
        board = rt.board
        release = asyncio.Event()
        caught_up = asyncio.Event()
        slow_seen: list[Any] = []

        async def slow(change: Change[Any]) -> None:
            await release.wait()
            slow_seen.append(change.value)
            if change.value == 99:
                caught_up.set()

        sub = await board.subscribe("x.", slow, max_pending=2)
        async with board.watch("x.", snapshot=False) as fast:
            async with asyncio.timeout(DEADLINE):
                for i in range(100):
                    await board.write("x.k", i)
                got = [c.value async for c in _limit(fast, 100)]
            assert got == list(range(100))
        release.set()
        async with asyncio.timeout(DEADLINE):
            await caught_up.wait()
        assert sub.lagged >= 1
        assert slow_seen[-1] == 99


async def _limit(watch: Any, n: int) -> Any:
    count = 0
    async for change in watch:
        yield change
        count += 1
        if count == n:
            return


async def test_eight_writers_thousand_updates_each_and_naive_loses_updates() -> None:
    writers, increments = 8, 1000
    async with Runtime() as rt:
        board = rt.board

        async def plus_one(n: int | None) -> int:
            await asyncio.sleep(0)  # the agent "thinks" between reading and writing
            return (n or 0) + 1

        async def careful() -> None:
            for _ in range(increments):
                await board.update("counter.cas", plus_one)

        async def naive() -> None:
            for _ in range(increments):
                entry = await board.read("counter.naive")
                new = await plus_one(None if entry is None else entry.value)
                await board.write("counter.naive", new)

        async with asyncio.timeout(50):
            await asyncio.gather(*(careful() for _ in range(writers)))
            await asyncio.gather(*(naive() for _ in range(writers)))
        cas = await board.read("counter.cas")
        lost = await board.read("counter.naive")
        assert cas is not None
        assert lost is not None
        assert cas.value == writers * increments
        assert lost.value < writers * increments  # read-then-write lost updates
        assert board.statistics().conflicts > 0


async def test_update_gives_up_after_max_attempts_with_a_clear_error() -> None:
    async with Runtime() as rt:
        board = rt.board
        await board.write("hot", 0)

        async def interfere(n: int | None) -> int:
            await board.write("hot", -1)  # someone always writes in between
            return (n or 0) + 1

        with pytest.raises(RevisionConflict, match="lost the race 3 times") as info:
            await board.update("hot", interfere, max_attempts=3)
        assert info.value.current is not None
        with pytest.raises(ConfigurationError):
            await board.update("hot", interfere, max_attempts=0)


async def test_update_sync_fn_typed_and_ttl() -> None:
    async with Runtime() as rt:
        entry = await rt.board.update("n", lambda n: (n or 0) + 2, type=int)
        assert entry.value == 2
        entry = await rt.board.update("n", lambda n: n * 10, type=int, ttl=60)
        assert entry.value == 20
        assert entry.expires is not None
        assert entry.created < entry.updated or entry.created == entry.updated


async def test_agent_and_context_views_author_writes() -> None:
    analyst = Agent("analyst")

    @analyst.handler
    async def analyse(topic: str, ctx: Context) -> int:
        return await ctx.board.write(f"analysis.{topic}", {"by": ctx.agent.name})

    async with Runtime(agents=[analyst]) as rt:
        rev = await rt.agent("boss").request("analyst", "analyse", {"topic": "t1"})
        entry = await rt.board.read("analysis.t1")
        assert entry is not None
        assert (entry.revision, entry.author) == (rev, "analyst")
        assert isinstance(analyst.board, Blackboard)
        assert analyst.board.author == "analyst"


async def test_board_needs_a_running_runtime() -> None:
    rt = Runtime()
    with pytest.raises(TransportClosed):
        await rt.board.read("a")
    async with rt:
        await rt.board.write("a", 1)
        watch = rt.board.watch("")
        await watch.__aenter__()
    with pytest.raises(StopAsyncIteration):
        await watch.__anext__()
    with pytest.raises(TransportClosed):
        await rt.board.write("a", 2)


async def test_foreign_bytes_in_the_bucket_are_a_validation_error() -> None:
    async with Runtime() as rt:
        board = rt.board
        await board.write("ok", 1)  # opens the bucket
        await rt.transport.kv_put(board.bucket, "raw", b"not a record")
        with pytest.raises(ValidationError, match="not a blackboard record"):
            await board.read("raw")


def test_key_and_prefix_rules() -> None:
    assert check_key("research.q1-a_b=c") == "research.q1-a_b=c"
    assert check_prefix("") == ""
    assert check_prefix("a.b.") == "a.b."
    with pytest.raises(ConfigurationError, match=r"'research\.q1'"):
        check_key("research/q1")
    with pytest.raises(ConfigurationError):
        check_prefix("a.b..")
    with pytest.raises(ConfigurationError, match="bucket"):
        Blackboard(Runtime(), bucket="bad.name")


async def test_lag_without_snapshot_skips_keys_older_than_the_watch() -> None:
    async with Runtime() as rt:
        board = rt.board
        await board.write("p.old", "before the watch")
        async with board.watch("p.", snapshot=False, max_pending=2) as watch:
            await board.write("p.a", 0)
            first = await watch.__anext__()
            for i in range(1, 10):
                await board.write("p.a", i)
            resync = await watch.__anext__()
            await board.write("p.done", True)
            after = await watch.__anext__()
        assert (first.key, first.value, first.initial) == ("p.a", 0, False)
        assert watch.lagged == 1
        assert (resync.key, resync.value, resync.initial) == ("p.a", 9, True)
        assert (after.key, after.initial) == ("p.done", False)


async def test_a_bad_value_raises_from_the_watch_which_stays_usable() -> None:
    async with Runtime() as rt:
        board = rt.board
        async with board.watch("v.", snapshot=False, type=int) as watch:
            await board.write("v.1", "not an int")
            await board.write("v.2", 2)
            with pytest.raises(ValidationError, match=r"v\.1"):
                await watch.__anext__()
            change = await watch.__anext__()
        assert (change.key, change.value) == ("v.2", 2)


async def test_shutdown_cancels_a_stuck_callback_after_the_drain_timeout() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def stuck(change: Change[Any]) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async with asyncio.timeout(DEADLINE):
        async with Runtime(drain_timeout=0.05) as rt:
            sub = await rt.board.subscribe("q.", stuck)
            await rt.board.write("q.1", 1)
            await started.wait()
    assert cancelled.is_set()
    assert not sub.active


async def test_memory_engine_forgets_the_oldest_deleted_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from agentcomm.transports.memory import kv as _memory_kv

    monkeypatch.setattr(_memory_kv, "MAX_ABSENT_KEYS", 3)
    async with Runtime() as rt:
        board = rt.board
        for i in range(5):
            await board.write(f"d.{i}", i)
            await board.delete(f"d.{i}")
        await board.write("d.4", "back")  # present again: no longer counted as absent
        await board.delete("d.5")
        assert await board.history("d.0") == []
        assert await board.history("d.1") == []
        assert [c.operation for c in await board.history("d.2")] == ["put", "delete"]
        assert [c.operation for c in await board.history("d.4")] == ["put", "delete", "put"]
        assert await board.keys("d.") == ["d.4"]


async def test_created_survives_overwrites_of_large_values() -> None:
    async with Runtime() as rt:
        board = rt.board
        await board.write("big", {"text": "x" * 2000})
        first = await board.read("big")
        await board.write("big", {"text": "y" * 2000})
        second = await board.read("big")
        assert first is not None
        assert second is not None
        assert second.created == first.created
        assert second.updated >= first.updated


async def test_last_writer_wins_when_someone_else_wrote_since_this_board_did() -> None:
    async with Runtime() as rt:
        board = rt.board
        r1 = await board.write("lww", "mine")
        # Another process deletes and recreates the key behind this board's back.
        await rt.transport.kv_delete(board.bucket, "lww")
        record = {"created": 123.0, "updated": 124.0, "author": "other", "value": "theirs"}
        await rt.transport.kv_put(board.bucket, "lww", msgspec.json.encode(record))
        r2 = await board.write("lww", "mine again")
        entry = await board.read("lww")
        assert entry is not None
        assert r2 > r1
        assert (entry.value, entry.author, entry.created) == ("mine again", "runtime", 123.0)
        await board.delete("lww")
        await board.write("lww", "after delete")
        fresh = await board.read("lww")
        assert fresh is not None
        assert fresh.created > 123.0


async def test_an_engine_failure_ends_the_subscription_and_is_reported() -> None:
    from agentcomm.core.errors import TransportError
    from agentcomm.transports.base import KVStore

    class Broken(KVStore.Watcher):
        async def __anext__(self) -> KVStore.Entry | None:
            raise TransportError("connection lost")

        async def aclose(self) -> None:
            return None

    async with Runtime() as rt:
        calls: list[Change[Any]] = []
        sub = await rt.board.subscribe("e.", calls.append)
        healthy = sub._watch._kvw
        assert healthy is not None
        sub._watch._kvw = Broken()  # the engine fails under the running subscription
        assert sub._task is not None
        async with asyncio.timeout(DEADLINE):
            await asyncio.wait([sub._task])
        await healthy.aclose()
        assert isinstance(sub.error, TransportError)
        assert sub.failures == 1
        assert rt.board.statistics().callback_failures == 1
        assert rt.board.statistics().subscriptions == 0
        assert calls == []
