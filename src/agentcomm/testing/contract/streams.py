"""Contract: streams, progress and cancellation (docs/streams-and-tasks.md).

Every test takes ``make_runtime`` and uses only the public API, so it runs unchanged
on every transport.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from agentcomm.api import Agent, Context
from agentcomm.core.errors import (
    NoResponders,
    PermissionDenied,
    RemoteError,
    RequestTimeout,
    UnknownHandler,
    ValidationError,
)
from agentcomm.core.progress import Progress
from agentcomm.security.policy import Policy
from agentcomm.security.signing import Identity, Security
from agentcomm.testing.fixtures import MakeRuntime

__all__ = [
    "test_cancelled_request_stops_its_handler_and_its_answer_is_dropped",
    "test_cancelling_a_queued_request_means_it_never_runs",
    "test_chain_cancellation_reaches_the_end",
    "test_leaving_the_loop_cancels_the_producer",
    "test_progress_reaches_the_caller",
    "test_slow_consumer_bounds_the_producer",
    "test_stream_and_request_handlers_are_not_interchangeable",
    "test_stream_bad_chunks_are_typed_on_each_side",
    "test_stream_deadline_is_request_timeout",
    "test_stream_failure_is_remote_error_after_its_chunks",
    "test_stream_to_absent_agent_fails_fast",
    "test_streams_and_cancels_are_signed_and_policed",
    "test_ten_thousand_chunks_in_order",
]


def _cancel_bound(transport: str) -> float:
    """The issue's bound on cancellation latency, per engine (seconds)."""
    return 0.1 if transport == "memory" else 0.25


async def _until(cond: Any, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


class _Watch:
    """Records when a handler saw its cancellation."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled_at: float | None = None
        self.produced = 0


def _writer(watch: _Watch) -> Agent:
    writer = Agent("writer", concurrency=4)

    @writer.handler
    async def count(n: int, ctx: Context) -> AsyncIterator[int]:
        "Count from 0 to n - 1."
        try:
            for i in range(n):
                watch.produced = i + 1
                watch.started.set()
                yield i
        except asyncio.CancelledError:
            watch.cancelled_at = time.perf_counter()
            raise

    @writer.handler
    async def fail_after(n: int) -> AsyncIterator[str]:
        for i in range(n):
            yield f"part {i}"
        raise RuntimeError("the model went away")

    @writer.handler
    async def mixed() -> AsyncIterator[Any]:
        yield 1
        yield "two"
        yield 3

    @writer.handler
    async def strict() -> AsyncIterator[int]:
        for value in (1, "bad", 2):
            try:
                yield value  # type: ignore[misc]
            except ValidationError:
                watch.produced = -1  # the producer heard that its chunk was refused

    @writer.handler
    async def slow(seconds: float, ctx: Context) -> AsyncIterator[int]:
        try:
            watch.started.set()
            await ctx.progress(1, 2, "warming up")
            await asyncio.sleep(seconds)
            yield 1
        except asyncio.CancelledError:
            watch.cancelled_at = time.perf_counter()
            raise

    @writer.handler
    async def once(x: int) -> int:
        return x

    return writer


async def test_ten_thousand_chunks_in_order(make_runtime: MakeRuntime) -> None:
    async with make_runtime(agents=[_writer(_Watch())]) as rt:
        client = rt.agent("client")
        stream = await client.stream("writer", "count", {"n": 10_000}, returns=int, timeout=60)
        got = [x async for x in stream]
        assert got == list(range(10_000))


async def test_stream_failure_is_remote_error_after_its_chunks(make_runtime: MakeRuntime) -> None:
    async with make_runtime(agents=[_writer(_Watch())]) as rt:
        got: list[str] = []
        stream = await rt.agent("client").stream("writer", "fail_after", {"n": 3})

        async def read() -> None:
            async for part in stream:
                got.append(part)

        with pytest.raises(RemoteError, match="the model went away") as info:
            await read()
        assert got == ["part 0", "part 1", "part 2"]
        assert info.value.type == "RuntimeError"


async def test_stream_to_absent_agent_fails_fast(make_runtime: MakeRuntime) -> None:
    async with make_runtime() as rt:
        t0 = time.perf_counter()
        with pytest.raises(NoResponders):
            await rt.agent("client").stream("nobody", "count", {"n": 1})
        assert time.perf_counter() - t0 < 2.0


async def test_stream_bad_chunks_are_typed_on_each_side(make_runtime: MakeRuntime) -> None:
    watch = _Watch()
    async with make_runtime(agents=[_writer(watch)]) as rt:
        client = rt.agent("client")
        # The producer's bad chunk: the producer gets ValidationError, the caller never sees it.
        assert [x async for x in await client.stream("writer", "strict")] == [1, 2]
        assert watch.produced == -1
        # The caller's type refuses a chunk: that chunk raises, the stream goes on.
        stream = await client.stream("writer", "mixed", returns=int)
        it = aiter(stream)
        assert await anext(it) == 1
        with pytest.raises(ValidationError):
            await anext(it)
        seen = [x async for x in _rest(it)]
        assert seen == [3]


async def _rest(it: AsyncIterator[int]) -> AsyncIterator[int]:
    async for x in it:
        yield x


async def test_slow_consumer_bounds_the_producer(make_runtime: MakeRuntime) -> None:
    watch = _Watch()
    window = 8
    async with make_runtime(agents=[_writer(watch)]) as rt:
        stream = await rt.agent("client").stream(
            "writer", "count", {"n": 200}, window=window, returns=int, timeout=60
        )
        read = 0
        async for _ in stream:
            read += 1
            if read % 20 == 0:
                await asyncio.sleep(0.05)  # the producer fills the window, then waits
                # Produced but unread: at most the window, plus the one it holds.
                assert watch.produced - read <= window + 1, (watch.produced, read)
        assert read == 200


async def test_leaving_the_loop_cancels_the_producer(
    make_runtime: MakeRuntime, transport_name: str
) -> None:
    watch = _Watch()
    window = 16
    async with make_runtime(agents=[_writer(watch)]) as rt:
        stream = await rt.agent("client").stream(
            "writer", "count", {"n": 10**9}, window=window, returns=int, timeout=60
        )
        async for x in stream:
            if x == 100:
                break
        t0 = time.perf_counter()
        await _until(lambda: watch.cancelled_at is not None)
        assert watch.cancelled_at is not None
        assert watch.cancelled_at - t0 < _cancel_bound(transport_name)
        assert watch.produced <= 101 + window + 1  # at most one window past the break


async def test_stream_deadline_is_request_timeout(make_runtime: MakeRuntime) -> None:
    watch = _Watch()
    async with make_runtime(agents=[_writer(watch)]) as rt:
        with pytest.raises(RequestTimeout):
            async for _ in await rt.agent("client").stream(
                "writer", "slow", {"seconds": 30}, timeout=0.3
            ):
                pass
        await _until(lambda: watch.cancelled_at is not None)


async def test_stream_and_request_handlers_are_not_interchangeable(
    make_runtime: MakeRuntime,
) -> None:
    async with make_runtime(agents=[_writer(_Watch())]) as rt:
        client = rt.agent("client")
        with pytest.raises(UnknownHandler, match="stream"):
            await client.request("writer", "count", {"n": 1})
        with pytest.raises(UnknownHandler, match="request"):
            async for _ in await client.stream("writer", "once", {"x": 1}):
                pass


async def test_progress_reaches_the_caller(make_runtime: MakeRuntime) -> None:
    worker = Agent("worker")

    @worker.handler
    async def crunch(pages: int, ctx: Context) -> str:
        for i in range(pages):
            await ctx.progress(i + 1, pages, f"page {i + 1}")
        return "done"

    watch = _Watch()
    async with make_runtime(agents=[worker, _writer(watch)]) as rt:
        client = rt.agent("client")
        seen: list[Progress] = []
        assert await client.request("worker", "crunch", {"pages": 5}, on_progress=seen.append) == (
            "done"
        )
        await _until(lambda: len(seen) == 5)  # frames travel beside the answer
        assert [p.done for p in seen] == [1, 2, 3, 4, 5]
        assert seen[-1].fraction == 1.0
        assert seen[-1].message == "page 5"
        # A stream's progress: the callback and the latest report on the stream.
        on_stream: list[Progress] = []
        stream = await client.stream(
            "writer", "slow", {"seconds": 0.05}, on_progress=on_stream.append
        )
        assert [x async for x in stream] == [1]
        assert stream.progress == Progress(done=1, total=2, message="warming up")
        assert on_stream == [stream.progress]
        # Without a listener, progress costs nothing and fails nothing.
        assert await client.request("worker", "crunch", {"pages": 3}) == "done"


async def test_cancelled_request_stops_its_handler_and_its_answer_is_dropped(
    make_runtime: MakeRuntime, transport_name: str
) -> None:
    seen: dict[str, Any] = {"cancelled_at": None, "calls": 0}
    release = asyncio.Event()
    slowpoke = Agent("slowpoke", concurrency=4)

    @slowpoke.handler
    async def think(n: int) -> int:
        seen["calls"] += 1
        try:
            if n == 1:
                await asyncio.sleep(30)
            await release.wait()
        except asyncio.CancelledError:
            seen["cancelled_at"] = time.perf_counter()
            raise
        return n

    async with make_runtime(agents=[slowpoke]) as rt:
        client = rt.agent("client")
        task = asyncio.create_task(client.request("slowpoke", "think", {"n": 1}, timeout=30))
        await _until(lambda: seen["calls"] == 1)
        t0 = time.perf_counter()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await _until(lambda: seen["cancelled_at"] is not None)
        assert seen["cancelled_at"] - t0 < _cancel_bound(transport_name)
        # The next request gets its own answer, never the cancelled one's.
        release.set()
        assert await client.request("slowpoke", "think", {"n": 2}) == 2
        assert slowpoke.statistics().cancelled == 1


async def test_cancelling_a_queued_request_means_it_never_runs(make_runtime: MakeRuntime) -> None:
    ran: list[int] = []
    gate = asyncio.Event()
    single = Agent("single", concurrency=1)

    @single.handler
    async def job(n: int) -> int:
        ran.append(n)
        await gate.wait()
        return n

    async with make_runtime(agents=[single]) as rt:
        client = rt.agent("client")
        first = asyncio.create_task(client.request("single", "job", {"n": 1}))
        await _until(lambda: ran == [1])
        second = asyncio.create_task(client.request("single", "job", {"n": 2}))
        await asyncio.sleep(0.1)  # queued behind the first
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await second
        await asyncio.sleep(0.1)  # the cancel reaches the agent before the queue moves
        gate.set()
        assert await first == 1
        assert await client.request("single", "job", {"n": 3}) == 3
        assert ran == [1, 3]


async def test_chain_cancellation_reaches_the_end(
    make_runtime: MakeRuntime, transport_name: str
) -> None:
    seen: dict[str, float | None] = {"b": None, "c": None}
    started = asyncio.Event()
    a_to_b, b_to_c = Agent("b"), Agent("c")

    @a_to_b.handler
    async def relay(x: int, ctx: Context) -> int:
        try:
            return int(await ctx.request("c", "deep", {"x": x}, timeout=30))
        except asyncio.CancelledError:
            seen["b"] = time.perf_counter()
            raise

    @b_to_c.handler
    async def deep(x: int) -> int:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen["c"] = time.perf_counter()
            raise
        return x

    async with make_runtime(agents=[a_to_b, b_to_c]) as rt:
        task = asyncio.create_task(rt.agent("a").request("b", "relay", {"x": 1}, timeout=30))
        await asyncio.wait_for(started.wait(), 5)
        t0 = time.perf_counter()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await _until(lambda: seen["c"] is not None)
        assert seen["b"] is not None
        assert seen["c"] is not None
        # Two hops: each within the bound.
        assert seen["c"] - t0 < 2 * _cancel_bound(transport_name)


async def test_streams_and_cancels_are_signed_and_policed(
    make_runtime: MakeRuntime, transport_name: str
) -> None:
    """With signing and a policy: chunks, progress, credit and cancel all pass the guard."""
    watch = _Watch()
    ids = [Identity.generate(n) for n in ("client", "writer", "outsider")]
    policy = Policy.from_toml(
        """
        [agents.client]
        send = ["writer.count", "writer.slow"]
        [agents.writer]
        [agents.outsider]
        """,
        source="streams.toml",
    )
    async with make_runtime(
        agents=[_writer(watch)], security=Security(identities=ids), access=policy
    ) as rt:
        client = rt.agent("client")
        seen: list[Progress] = []
        stream = await client.stream(
            "writer", "slow", {"seconds": 0.01}, on_progress=seen.append, returns=int
        )
        assert [x async for x in stream] == [1]
        assert seen == [Progress(done=1, total=2, message="warming up")]
        # Credit flows (200 chunks through a window of 8), then a cancel is heard.
        counted = await client.stream("writer", "count", {"n": 200}, window=8, returns=int)
        assert [x async for x in counted] == list(range(200))
        long = await client.stream("writer", "count", {"n": 10**9}, window=8, returns=int)
        async for x in long:
            if x == 20:
                break
        await _until(lambda: watch.cancelled_at is not None)
        with pytest.raises(PermissionDenied):
            await rt.agent("outsider").stream("writer", "count", {"n": 1})
