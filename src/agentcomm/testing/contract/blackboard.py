"""Contract: the blackboard (revisions, compare-and-set, create-only, tombstones, history,
watches with snapshots, slow watchers, TTL, callbacks, access hook).

Every test takes ``make_runtime`` and uses only the public API, so it runs unchanged
on every transport. Waits are on events with deadlines, never fixed sleeps.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from agentcomm.api import Agent
from agentcomm.blackboard.board import Blackboard, Change, Watch
from agentcomm.core.errors import (
    ConfigurationError,
    KeyExists,
    PermissionDenied,
    RevisionConflict,
    ValidationError,
)
from agentcomm.testing.fixtures import MakeRuntime

__all__ = [
    "test_access_hook_sees_reads_and_writes",
    "test_bad_keys_and_prefixes_say_what_to_fix",
    "test_callback_failures_are_counted_and_the_subscription_goes_on",
    "test_cas_write_wins_once_and_conflict_carries_current",
    "test_create_only_and_recreate_after_delete",
    "test_delete_is_a_tombstone_watchers_see",
    "test_history_is_bounded_oldest_first",
    "test_prefix_selects_whole_tokens",
    "test_slow_watcher_never_stalls_writers_and_converges",
    "test_ttl_expiry_reads_absent_and_watchers_see_it",
    "test_update_counts_exactly_under_contention",
    "test_values_are_validated_and_isolated",
    "test_watch_ends_when_the_runtime_stops",
    "test_watch_snapshot_then_live_in_revision_order",
    "test_write_read_revisions_and_authors",
]

DEADLINE = 10.0


async def _take(watch: Watch[Any], n: int, timeout: float = DEADLINE) -> list[Change[Any]]:
    out: list[Change[Any]] = []
    async with asyncio.timeout(timeout):
        async for change in watch:
            out.append(change)
            if len(out) == n:
                break
    return out


async def test_write_read_revisions_and_authors(make_runtime: MakeRuntime) -> None:
    writer = Agent("writer")
    async with make_runtime(agents=[writer]) as rt:
        board = rt.board
        assert await board.read("doc.title") is None
        r1 = await writer.board.write("doc.title", "Draft")
        r2 = await board.write("doc.title", "Final")
        r3 = await board.write("doc.body", {"words": 3})
        assert 0 < r1 < r2 < r3
        entry = await board.read("doc.title")
        assert entry is not None
        assert (entry.key, entry.value, entry.revision, entry.author) == (
            "doc.title",
            "Final",
            r2,
            "runtime",
        )
        assert entry.created <= entry.updated
        first = (await board.history("doc.title"))[0]
        assert first.entry is not None
        assert first.entry.author == "writer"
        assert entry.created == first.entry.created  # created survives overwrites
        with pytest.raises(AttributeError):
            entry.value = "changed"  # type: ignore[misc]
        assert await board.keys("doc.") == ["doc.body", "doc.title"]
        everything = await board.read_prefix("")
        assert list(everything) == ["doc.body", "doc.title"]
        assert everything["doc.body"].value == {"words": 3}


async def test_cas_write_wins_once_and_conflict_carries_current(
    make_runtime: MakeRuntime,
) -> None:
    async with make_runtime() as rt:
        board = rt.board
        rev = await board.write("plan", {"step": 1})
        a = board.as_author("a")
        b = board.as_author("b")
        new = await a.write("plan", {"step": 2}, expected_revision=rev)
        assert new > rev
        with pytest.raises(RevisionConflict) as info:
            await b.write("plan", {"step": 99}, expected_revision=rev)
        current = info.value.current
        assert current is not None
        assert (current.value, current.revision, current.author) == ({"step": 2}, new, "a")
        assert info.value.expected == rev
        entry = await board.read("plan")
        assert entry is not None
        assert entry.value == {"step": 2}
        # CAS on an absent key conflicts with current None.
        with pytest.raises(RevisionConflict) as info2:
            await board.write("nothing.here", 1, expected_revision=new)
        assert info2.value.current is None
        with pytest.raises(ConfigurationError):
            await board.write("plan", 1, expected_revision=0)
        # Compare-and-set delete.
        with pytest.raises(RevisionConflict):
            await board.delete("plan", expected_revision=rev)
        await board.delete("plan", expected_revision=new)
        assert await board.read("plan") is None


async def test_create_only_and_recreate_after_delete(make_runtime: MakeRuntime) -> None:
    async with make_runtime() as rt:
        board = rt.board
        r1 = await board.create("lock.report", {"owner": "a"})
        with pytest.raises(KeyExists) as info:
            await board.as_author("b").create("lock.report", {"owner": "b"})
        assert isinstance(info.value, RevisionConflict)
        assert info.value.current is not None
        assert info.value.current.value == {"owner": "a"}
        assert info.value.current.revision == r1
        await board.delete("lock.report")
        r2 = await board.create("lock.report", {"owner": "b"})
        assert r2 > r1
        entry = await board.read("lock.report")
        assert entry is not None
        assert entry.value == {"owner": "b"}


async def test_delete_is_a_tombstone_watchers_see(make_runtime: MakeRuntime) -> None:
    async with make_runtime() as rt:
        board = rt.board
        r1 = await board.write("task.1", "todo")
        async with board.watch("task.", snapshot=False) as watch:
            rd = await board.delete("task.1")
            (change,) = await _take(watch, 1)
        assert (change.key, change.operation, change.revision, change.value) == (
            "task.1",
            "delete",
            rd,
            None,
        )
        assert rd > r1
        assert await board.read("task.1") is None
        assert await board.keys("task.") == []
        assert await board.read_prefix("task.") == {}
        ops = [(c.operation, c.revision) for c in await board.history("task.1")]
        assert ops == [("put", r1), ("delete", rd)]


async def test_history_is_bounded_oldest_first(make_runtime: MakeRuntime) -> None:
    async with make_runtime() as rt:
        board = Blackboard(rt, bucket="bounded", history=4)
        assert board.max_history == 4
        revs = [await board.write("counter", i) for i in range(10)]
        hist = await board.history("counter")
        assert [c.value for c in hist] == [6, 7, 8, 9]
        assert [c.revision for c in hist] == revs[-4:]
        assert all(c.operation == "put" for c in hist)
        await board.delete("counter")
        hist = await board.history("counter")
        assert len(hist) == 4
        assert [c.operation for c in hist] == ["put", "put", "put", "delete"]
        assert await board.history("never.written") == []
        with pytest.raises(ConfigurationError):
            Blackboard(rt, bucket="bounded", history=5)


async def test_watch_snapshot_then_live_in_revision_order(make_runtime: MakeRuntime) -> None:
    async with make_runtime() as rt:
        board = rt.board
        await board.write("a.1", 1)
        await board.write("b.1", 1)
        await board.write("a.2", 2)
        await board.write("a.1", 11)
        await board.write("a.3", 3)
        await board.delete("a.3")
        async with board.watch("a.") as watch:
            snap = await _take(watch, 2)
            assert [(c.key, c.value, c.initial) for c in snap] == [
                ("a.2", 2, True),
                ("a.1", 11, True),
            ]
            assert snap[0].revision < snap[1].revision
            revs = []
            for i in range(20):
                revs.append(await board.write(f"a.{i % 3}", i))
                await board.write(f"b.{i}", i)  # not selected
            live = await _take(watch, 20)
        assert [c.revision for c in live] == revs
        assert [c.value for c in live] == list(range(20))
        assert not any(c.initial for c in live)
        assert all(c.entry is not None and c.entry.revision == c.revision for c in live)


async def test_prefix_selects_whole_tokens(make_runtime: MakeRuntime) -> None:
    async with make_runtime() as rt:
        board = rt.board
        for key in ("research", "research.q1", "research.q1.notes", "researcher.x", "other"):
            await board.write(key, key)
        assert await board.keys("research.") == ["research.q1", "research.q1.notes"]
        assert await board.keys("research") == ["research"]
        assert list(await board.read_prefix("research.q1.")) == ["research.q1.notes"]
        assert len(await board.keys("")) == 5
        async with board.watch("research", snapshot=False) as exact:
            await board.write("research.q2", 0)
            await board.write("research", "again")
            (change,) = await _take(exact, 1)
        assert (change.key, change.value) == ("research", "again")


async def test_slow_watcher_never_stalls_writers_and_converges(make_runtime: MakeRuntime) -> None:
    async with make_runtime() as rt:
        board = rt.board
        for i in range(10):
            await board.write(f"s.k{i}", -1)
        async with board.watch("s.", snapshot=True, max_pending=8) as watch:
            # The watcher reads nothing while 300 changes happen: writers must not wait.
            async with asyncio.timeout(DEADLINE):
                for i in range(300):
                    await board.write(f"s.k{i % 10}", i)
                await board.delete("s.k3")
                await board.delete("s.k7")
                await board.write("s.done", True)
            state: dict[str, Any] = {}
            async with asyncio.timeout(DEADLINE):
                async for change in watch:
                    if change.operation == "put":
                        state[change.key] = change.value
                    else:
                        state.pop(change.key, None)
                    if change.key == "s.done":
                        break
        final = {k: e.value for k, e in (await board.read_prefix("s.")).items()}
        assert state == final
        assert "s.k3" not in state
        assert state["s.k9"] == 299


async def test_ttl_expiry_reads_absent_and_watchers_see_it(make_runtime: MakeRuntime) -> None:
    async with make_runtime() as rt:
        board = rt.board
        ttl = max(0.2, rt.transport.min_ttl)
        with pytest.raises(ConfigurationError):
            await board.write("t.bad", 1, ttl=-1)
        async with board.watch("t.", snapshot=False) as watch:
            await board.write("t.kept", "v", ttl=ttl)
            await board.write("t.kept", "v2")  # a write without ttl does not expire
            r = await board.write("t.gone", "v", ttl=ttl)
            entry = await board.read("t.gone")
            assert entry is not None
            assert entry.expires is not None
            assert entry.expires >= entry.updated
            changes = await _take(watch, 4, timeout=ttl + DEADLINE)
        expire = changes[-1]
        assert (expire.key, expire.operation, expire.value) == ("t.gone", "expire", None)
        assert expire.revision > r
        assert await board.read("t.gone") is None
        kept = await board.read("t.kept")
        assert kept is not None
        assert kept.value == "v2"
        assert await board.keys("t.") == ["t.kept"]
        await board.create("t.gone", "again")  # an expired key is absent


async def test_update_counts_exactly_under_contention(make_runtime: MakeRuntime) -> None:
    async with make_runtime() as rt:
        board = rt.board

        async def increment(n: int | None) -> int:
            await asyncio.sleep(0)  # a suspension between read and write invites races
            return (n or 0) + 1

        async def worker() -> None:
            for _ in range(25):
                await board.update("count", increment)

        async with asyncio.timeout(DEADLINE * 3):
            await asyncio.gather(*(worker() for _ in range(4)))
        entry = await board.read("count")
        assert entry is not None
        assert entry.value == 100
        assert board.statistics().conflicts > 0


async def test_values_are_validated_and_isolated(make_runtime: MakeRuntime) -> None:
    class Task(msgspec.Struct, frozen=True):
        title: str
        tags: list[str] = []

    async with make_runtime() as rt:
        board = rt.board
        await board.write("tasks.1", {"title": "write docs", "tags": ["a"]})
        entry = await board.read("tasks.1", type=Task)
        assert entry is not None
        assert entry.value == Task("write docs", ["a"])
        await board.write("tasks.2", {"title": 3})
        with pytest.raises(ValidationError):
            await board.read("tasks.2", type=Task)
        with pytest.raises(ValidationError):
            await board.write("tasks.3", object())
        board.declare("typed.", Task)
        with pytest.raises(ValidationError):
            await board.write("typed.1", {"title": 3})
        await board.write("typed.1", Task("ok"))
        typed = await board.read("typed.1")
        assert typed is not None
        assert typed.value == Task("ok")
        first = await board.read("tasks.1")
        assert first is not None
        first.value["tags"].append("mutated")
        again = await board.read("tasks.1")
        assert again is not None
        assert again.value["tags"] == ["a"]


async def test_bad_keys_and_prefixes_say_what_to_fix(make_runtime: MakeRuntime) -> None:
    async with make_runtime() as rt:
        board = rt.board
        for bad in ("", "a/b", ".a", "a.", "a..b", "a b", "a.*", "a.>", "a\n", "x" * 256):
            with pytest.raises(ConfigurationError, match="invalid blackboard key"):
                await board.write(bad, 1)
        with pytest.raises(ConfigurationError, match=r"'a\.b'"):
            await board.read("a/b")
        for bad in ("a/", "..", "a..", "*"):
            with pytest.raises(ConfigurationError, match="invalid blackboard prefix"):
                board.watch(bad)


async def test_callback_failures_are_counted_and_the_subscription_goes_on(
    make_runtime: MakeRuntime,
) -> None:
    async with make_runtime() as rt:
        board = rt.board
        seen: list[Any] = []
        done = asyncio.Event()

        async def on_change(change: Change[Any]) -> None:
            if change.value == "boom":
                raise RuntimeError("callback bug")
            seen.append(change.value)
            if change.value == "last":
                done.set()

        sub = await board.subscribe("jobs.", on_change)
        await board.write("jobs.1", "first")
        await board.write("jobs.2", "boom")
        await board.write("jobs.3", "last")
        async with asyncio.timeout(DEADLINE):
            await done.wait()
        assert seen == ["first", "last"]
        assert sub.failures == 1
        assert sub.delivered == 2
        stats = board.statistics()
        assert stats.callback_failures >= 1
        assert stats.subscriptions == 1
        await sub.aclose()
        assert not sub.active
        assert board.statistics().subscriptions == 0


async def test_access_hook_sees_reads_and_writes(make_runtime: MakeRuntime) -> None:
    calls: list[tuple[str, str, str]] = []

    def hook(agent: str, action: str, target: str) -> None:
        calls.append((agent, action, target))
        if action == "write" and target.startswith("secret.") and agent != "admin":
            raise PermissionDenied(f"{agent} may not write {target}")

    worker = Agent("worker")
    async with make_runtime(agents=[worker], access=hook) as rt:
        await worker.board.write("public.x", 1)
        await worker.board.read("public.x")
        with pytest.raises(PermissionDenied):
            await worker.board.write("secret.plan", 1)
        await rt.board.as_author("admin").write("secret.plan", 2)
        assert ("worker", "write", "public.x") in calls
        assert ("worker", "read", "public.x") in calls
        assert ("admin", "write", "secret.plan") in calls
        assert await rt.board.read("secret.plan") is not None


async def test_watch_ends_when_the_runtime_stops(make_runtime: MakeRuntime) -> None:
    received: list[str] = []
    got = asyncio.Event()
    ended = asyncio.Event()
    async with make_runtime() as rt:
        watch = rt.board.watch("w.", snapshot=False)

        async def consume() -> None:
            async for change in watch:
                received.append(change.key)
                got.set()
            ended.set()

        await watch.__aenter__()
        rt.task_group.create_task(consume())
        await rt.board.write("w.1", 1)
        async with asyncio.timeout(DEADLINE):
            await got.wait()
        assert not ended.is_set()
    # Leaving the runtime closed the watch, so the consuming task finished.
    assert ended.is_set()
    assert received == ["w.1"]
