"""Engine contract: the key/value store, driven on the ``Transport`` itself.

Put / get / create / update with a revision (compare-and-set and its conflict),
delete markers, bounded history, prefix reads, watches (snapshot, the end-of-snapshot
marker, live changes by prefix, from another user of the engine, a slow reader),
and TTL expiry. Every engine has a key/value store: nothing here is skipped.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from agentcomm.core.errors import ConfigurationError, KeyExists, RevisionConflict
from agentcomm.testing.contract.engine_support import DEADLINE, started, until
from agentcomm.testing.fixtures import MakeTransport
from agentcomm.transports.kv import KVStore

__all__ = [
    "test_a_slow_watcher_lags_or_keeps_up",
    "test_aclose_ends_a_watch_and_wakes_its_reader",
    "test_compare_and_set_refuses_a_stale_revision",
    "test_create_only_refuses_a_present_key",
    "test_delete_writes_a_marker_and_keeps_the_history",
    "test_history_keeps_the_newest_entries",
    "test_keys_and_entries_by_prefix",
    "test_kv_open_is_idempotent_and_checked",
    "test_put_get_and_revisions",
    "test_ttl_expires_the_key_with_a_marker",
    "test_watch_sees_changes_from_another_user",
    "test_watch_snapshot_then_live_changes_by_prefix",
    "test_watch_without_snapshot_starts_with_the_marker",
]

B = "board"


async def _next(w: KVStore.Watcher, timeout: float = DEADLINE) -> KVStore.Entry | None:
    async with asyncio.timeout(timeout):
        return await anext(w)


async def _live(w: KVStore.Watcher, n: int) -> list[tuple[str, str, bytes]]:
    out: list[tuple[str, str, bytes]] = []
    for _ in range(n):
        e = await _next(w)
        assert e is not None, "the end-of-snapshot marker comes once"
        out.append((e.key, e.operation, e.value))
    return out


async def test_put_get_and_revisions(make_transport: MakeTransport) -> None:
    async with started(make_transport) as t:
        await t.kv_open(B, history=8)
        assert await t.kv_get(B, "a.b") is None
        before = time.time()
        r1 = await t.kv_put(B, "a.b", b"1")
        r2 = await t.kv_put(B, "a.c", b"2")
        r3 = await t.kv_put(B, "a.b", b"3")
        assert 0 < r1 < r2 < r3, "revisions increase over the whole bucket"
        e = await t.kv_get(B, "a.b")
        assert e is not None
        assert (e.key, e.value, e.revision, e.operation) == ("a.b", b"3", r3, "put")
        assert before - 1 <= e.timestamp <= time.time() + 1
        c = await t.kv_get(B, "a.c")
        assert c is not None
        assert (c.value, c.revision) == (b"2", r2)


async def test_compare_and_set_refuses_a_stale_revision(make_transport: MakeTransport) -> None:
    async with started(make_transport) as t:
        await t.kv_open(B, history=8)
        r1 = await t.kv_put(B, "n", b"1")
        r2 = await t.kv_put(B, "n", b"2", expected_revision=r1)
        assert r2 > r1
        with pytest.raises(RevisionConflict) as info:
            await t.kv_put(B, "n", b"lost", expected_revision=r1)
        current = info.value.current
        assert current is not None
        assert (current.value, current.revision) == (b"2", r2), "the winner is carried"
        got = await t.kv_get(B, "n")
        assert got is not None
        assert got.value == b"2"
        with pytest.raises(RevisionConflict) as absent:
            await t.kv_put(B, "never", b"x", expected_revision=1)
        assert absent.value.current is None
        assert await t.kv_get(B, "never") is None


async def test_create_only_refuses_a_present_key(make_transport: MakeTransport) -> None:
    async with started(make_transport) as t:
        await t.kv_open(B, history=8)
        r1 = await t.kv_put(B, "lock", b"me", create_only=True)
        with pytest.raises(KeyExists) as info:
            await t.kv_put(B, "lock", b"you", create_only=True)
        current = info.value.current
        assert current is not None
        assert (current.value, current.revision) == (b"me", r1)
        await t.kv_delete(B, "lock")
        r2 = await t.kv_put(B, "lock", b"you", create_only=True)  # absent again: allowed
        got = await t.kv_get(B, "lock")
        assert got is not None
        assert (got.value, got.revision) == (b"you", r2)


async def test_delete_writes_a_marker_and_keeps_the_history(make_transport: MakeTransport) -> None:
    async with started(make_transport) as t:
        await t.kv_open(B, history=8)
        r1 = await t.kv_put(B, "k", b"1")
        r2 = await t.kv_put(B, "k", b"2")
        with pytest.raises(RevisionConflict):
            await t.kv_delete(B, "k", expected_revision=r1)
        d1 = await t.kv_delete(B, "k", expected_revision=r2)
        assert d1 > r2
        assert await t.kv_get(B, "k") is None
        assert await t.kv_keys(B) == []
        d2 = await t.kv_delete(B, "k")  # a marker even when already absent
        assert d2 > d1
        history = await t.kv_history(B, "k")
        assert [(e.operation, e.value, e.revision) for e in history] == [
            ("put", b"1", r1),
            ("put", b"2", r2),
            ("delete", b"", d1),
            ("delete", b"", d2),
        ]
        assert await t.kv_history(B, "unknown") == []
        r3 = await t.kv_put(B, "k", b"3", expected_revision=d2)  # the marker's revision
        got = await t.kv_get(B, "k")
        assert got is not None
        assert (got.value, got.revision) == (b"3", r3)


async def test_history_keeps_the_newest_entries(make_transport: MakeTransport) -> None:
    async with started(make_transport) as t:
        await t.kv_open(B, history=3)
        revs = [await t.kv_put(B, "k", str(i).encode()) for i in range(5)]
        history = await t.kv_history(B, "k")
        assert [(e.value, e.revision) for e in history] == [
            (b"2", revs[2]),
            (b"3", revs[3]),
            (b"4", revs[4]),
        ]


async def test_kv_open_is_idempotent_and_checked(make_transport: MakeTransport) -> None:
    async with started(make_transport) as t1, started(make_transport) as t2:
        for bad in (0, 65):
            with pytest.raises(ConfigurationError):
                await t1.kv_open("other", history=bad)
        await t1.kv_open(B, history=4)
        rev = await t1.kv_put(B, "k", b"kept")
        await t2.kv_open(B, history=4)  # another user opens it again: the data stays
        got = await t2.kv_get(B, "k")
        assert got is not None
        assert (got.value, got.revision) == (b"kept", rev)


async def test_keys_and_entries_by_prefix(make_transport: MakeTransport) -> None:
    async with started(make_transport) as t:
        await t.kv_open(B, history=4)
        for key in ("a", "a.b", "a.b.c", "a.bc", "ab", "x.y"):
            await t.kv_put(B, key, key.encode())
        await t.kv_put(B, "a.gone", b"")
        await t.kv_delete(B, "a.gone")
        assert sorted(await t.kv_keys(B)) == ["a", "a.b", "a.b.c", "a.bc", "ab", "x.y"]
        assert sorted(await t.kv_keys(B, "a.")) == ["a.b", "a.b.c", "a.bc"]
        assert sorted(await t.kv_keys(B, "a.b.")) == ["a.b.c"]
        assert await t.kv_keys(B, "a.b") == ["a.b"], "a key selects itself alone"
        assert await t.kv_keys(B, "a") == ["a"]
        assert await t.kv_keys(B, "a.gone") == []
        entries = await t.kv_entries(B, "a.")
        assert sorted((e.key, e.value) for e in entries) == [
            ("a.b", b"a.b"),
            ("a.b.c", b"a.b.c"),
            ("a.bc", b"a.bc"),
        ]
        assert all(e.operation == "put" for e in await t.kv_entries(B))


async def test_watch_snapshot_then_live_changes_by_prefix(make_transport: MakeTransport) -> None:
    async with started(make_transport) as t:
        await t.kv_open(B, history=4)
        r1 = await t.kv_put(B, "a.1", b"1")
        await t.kv_put(B, "b.1", b"x")
        r2 = await t.kv_put(B, "a.2", b"2")
        await t.kv_put(B, "a.gone", b"g")
        rd = await t.kv_delete(B, "a.gone")
        r1b = await t.kv_put(B, "a.1", b"1b")
        w = await t.kv_watch(B, "a.", snapshot=True)
        try:
            snapshot = []
            while (e := await _next(w)) is not None:
                snapshot.append((e.key, e.operation, e.revision))
            assert snapshot == [("a.2", "put", r2), ("a.gone", "delete", rd), ("a.1", "put", r1b)]
            assert r1 < r1b
            await t.kv_put(B, "b.2", b"not selected")
            await t.kv_put(B, "a.3", b"3")
            await t.kv_delete(B, "a.2")
            await t.kv_put(B, "a.3", b"3b")
            assert await _live(w, 3) == [
                ("a.3", "put", b"3"),
                ("a.2", "delete", b""),
                ("a.3", "put", b"3b"),
            ]
        finally:
            await w.aclose()
        assert not w.lagged


async def test_watch_without_snapshot_starts_with_the_marker(make_transport: MakeTransport) -> None:
    async with started(make_transport) as t:
        await t.kv_open(B, history=4)
        await t.kv_put(B, "k", b"old")
        w = await t.kv_watch(B, "k", snapshot=False)
        try:
            assert await _next(w) is None, "the snapshot (empty) is complete at once"
            await t.kv_put(B, "k", b"new")
            await t.kv_put(B, "k.child", b"another key")
            await t.kv_put(B, "k", b"newer")
            assert await _live(w, 2) == [("k", "put", b"new"), ("k", "put", b"newer")]
        finally:
            await w.aclose()


async def test_watch_sees_changes_from_another_user(make_transport: MakeTransport) -> None:
    async with started(make_transport) as t1, started(make_transport) as t2:
        await t1.kv_open(B, history=4)
        await t2.kv_open(B, history=4)
        w = await t1.kv_watch(B, "", snapshot=False)
        try:
            assert await _next(w) is None
            rev = await t2.kv_put(B, "shared.k", b"from t2")
            e = await _next(w)
            assert e is not None
            assert (e.key, e.value, e.revision) == ("shared.k", b"from t2", rev)
        finally:
            await w.aclose()


async def test_a_slow_watcher_lags_or_keeps_up(make_transport: MakeTransport) -> None:
    async with started(make_transport) as t:
        await t.kv_open(B, history=4)
        w = await t.kv_watch(B, "", snapshot=False, max_pending=2)
        try:
            assert await _next(w) is None
            for i in range(10):  # nobody reads meanwhile; writers never wait for it
                await t.kv_put(B, f"k{i}", b"v")
            keys: list[str] = []
            try:
                while len(keys) < 10:
                    e = await _next(w)
                    assert e is not None
                    keys.append(e.key)
            except StopAsyncIteration:
                assert w.lagged, "a watch ends early only by lagging"
            if not w.lagged:  # an engine that replays from the server: every change
                assert keys == [f"k{i}" for i in range(10)]
        finally:
            await w.aclose()


async def test_aclose_ends_a_watch_and_wakes_its_reader(make_transport: MakeTransport) -> None:
    async with started(make_transport) as t:
        await t.kv_open(B, history=4)
        w = await t.kv_watch(B, "", snapshot=False)
        assert await _next(w) is None
        reader = asyncio.ensure_future(anext(w))
        await asyncio.sleep(0.05)  # the reader is blocked in __anext__
        await w.aclose()
        with pytest.raises(StopAsyncIteration):
            async with asyncio.timeout(DEADLINE):
                await reader
        await w.aclose()  # idempotent
        with pytest.raises(StopAsyncIteration):
            await _next(w)
        assert not w.lagged


async def test_ttl_expires_the_key_with_a_marker(make_transport: MakeTransport) -> None:
    async with started(make_transport) as t:
        await t.kv_open(B, history=4)
        ttl = max(t.min_ttl, 0.2)
        w = await t.kv_watch(B, "lease.", snapshot=False)
        try:
            assert await _next(w) is None
            t0 = time.monotonic()
            rev = await t.kv_put(B, "lease.a", b"held", ttl=ttl)
            await t.kv_put(B, "lease.b", b"forever")
            got = await t.kv_get(B, "lease.a")
            assert got is not None
            assert got.revision == rev
            first, second, marker = await _live(w, 3)
            assert (first, second[0]) == (("lease.a", "put", b"held"), "lease.b")
            assert marker == ("lease.a", "expire", b""), "watchers see the expiry"
            assert time.monotonic() - t0 >= ttl * 0.9

            async def gone() -> bool:
                return await t.kv_get(B, "lease.a") is None

            await until(gone, DEADLINE, "the key reads as absent after its ttl")
            assert await t.kv_keys(B, "lease.") == ["lease.b"]
            again = await t.kv_put(B, "lease.a", b"again", create_only=True)
            assert again > rev, "an expired key is absent: create_only succeeds"
        finally:
            await w.aclose()
