"""Durable tasks across processes on a real broker: a caller and a worker killed with SIGKILL.

The broker is the session's ``nats-server`` (each test has its own namespace); the
processes are small programs started here and killed by pid (always in ``finally``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from agentcomm import Agent, Context, Runtime, TaskLost, TaskUpdate
from agentcomm.testing.extras import require_module
from agentcomm.testing.nats_server import NatsServer

require_module("nats")

from agentcomm.transports.nats import NatsTransport  # noqa: E402

pytestmark = [pytest.mark.nats, pytest.mark.slow]

PROGRAM = r"""
import asyncio, sys
from agentcomm import Agent, Context, Runtime
from agentcomm.transports.nats import NatsTransport  # noqa: E402

role, url, ns, arg, out = sys.argv[1:6]

async def worker(policy):
    on_lost, _, attempts = policy.partition(":")
    w = Agent("cruncher")

    @w.task_handler(on_lost=on_lost, max_attempts=int(attempts or 3))
    async def crunch(steps: int, ctx: Context) -> str:
        with open(out, "a") as f:
            f.write(f"attempt {ctx.attempt}\n")
        for i in range(steps):
            await ctx.progress(i + 1, steps)
            await asyncio.sleep(0.05)
        return f"done on attempt {ctx.attempt}"

    async with Runtime(transport=NatsTransport(url, namespace=ns), agents=[w]):
        await asyncio.Event().wait()  # until killed

async def follower(task_id):
    # Writes each update's cursor once it handled it: a kill between receiving and
    # writing means the update is read again on resume, never lost.
    async with Runtime(transport=NatsTransport(url, namespace=ns)) as rt:
        handle = rt.agent("follower").task(task_id)
        with open(out, "a") as f:
            async for u in handle.updates():
                f.write(f"{u.cursor} {u.kind}\n")
                f.flush()

if role == "worker":
    asyncio.run(worker(arg))
else:
    asyncio.run(follower(arg))
"""


class Procs:
    """Processes started by a test; every one is killed by pid at the end."""

    def __init__(self, url: str, namespace: str) -> None:
        self.url, self.namespace = url, namespace
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, role: str, arg: str, out: Path) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-c", PROGRAM, role, self.url, self.namespace, arg, str(out)]
        proc = subprocess.Popen(argv)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture
def procs(nats_server: NatsServer) -> Iterator[Procs]:
    p = Procs(nats_server.url, "k" + os.urandom(4).hex())
    try:
        yield p
    finally:
        p.stop_all()


def _runtime(procs: Procs, agents: list[Agent] | None = None) -> Runtime:
    transport = NatsTransport(procs.url, namespace=procs.namespace)
    return Runtime(transport=transport, agents=agents or [])


def _lines(path: Path) -> list[str]:
    """The complete lines of ``path`` (a process killed mid-line leaves a partial one)."""
    return path.read_text().split("\n")[:-1] if path.exists() else []


async def _until(cond: object, timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():  # type: ignore[operator]
        if loop.time() > end:
            raise AssertionError(f"{what} did not happen within {timeout}s")
        await asyncio.sleep(0.02)


def _cruncher(on_lost: str = "retry", max_attempts: int = 3) -> Agent:
    """The same task handler as the worker program's, for the surviving worker."""
    w = Agent("cruncher")

    @w.task_handler(on_lost=on_lost, max_attempts=max_attempts)  # type: ignore[arg-type]
    async def crunch(steps: int, ctx: Context) -> str:
        for i in range(steps):
            await ctx.progress(i + 1, steps)
            await asyncio.sleep(0.05)
        return f"done on attempt {ctx.attempt}"

    return w


async def test_a_killed_caller_resumes_updates_from_its_cursor(
    procs: Procs, tmp_path: Path
) -> None:
    out = tmp_path / "followed.txt"
    async with _runtime(procs, [_cruncher()]) as rt:
        handle = await rt.agent("client").start_task("cruncher", "crunch", {"steps": 60})
        follower = procs.start("follower", handle.id, out)
        await _until(lambda: len(_lines(out)) >= 8, 20, "the follower reading 8 updates")
        os.kill(follower.pid, signal.SIGKILL)
        follower.wait(timeout=10)
        handled = [int(line.split()[0]) for line in _lines(out)]
        again = rt.agent("client2").task(handle.id)  # the caller that comes back
        resumed = [u.cursor async for u in again.updates(since=handled[-1])]
        everything = [u.cursor async for u in handle.updates()]
        assert await handle.result(timeout=20) == "done on attempt 1"
    assert handled + resumed == everything  # nothing lost, nothing repeated
    assert len(everything) == 1 + 1 + 60 + 1  # submitted, working, 60 progress, result


@pytest.mark.parametrize("on_lost", ["retry", "fail"])
async def test_a_killed_worker_is_noticed_within_5s(
    procs: Procs, tmp_path: Path, on_lost: str
) -> None:
    out = tmp_path / "attempts.txt"
    worker = procs.start("worker", on_lost, out)
    async with _runtime(procs) as rt:
        handle = await rt.agent("client").start_task("cruncher", "crunch", {"steps": 100})

        async def progressed() -> bool:
            s = await handle.status()
            return s.state == "working" and s.progress is not None and s.progress.done >= 5

        end = time.monotonic() + 30
        while not await progressed():
            assert time.monotonic() < end, "the worker process never ran the task"
            await asyncio.sleep(0.05)
        assert _lines(out) == ["attempt 1"]
        # A second instance of the agent, in this process, then the first one dies.
        survivor = await rt.attach(_cruncher(on_lost))
        assert survivor.name == "cruncher"
        os.kill(worker.pid, signal.SIGKILL)
        killed = time.monotonic()
        worker.wait(timeout=10)
        if on_lost == "retry":
            while (await handle.status()).attempt < 2:
                assert time.monotonic() - killed < 5.0, "the lost task was not re-run within 5 s"
                await asyncio.sleep(0.05)
            assert await handle.result(timeout=60) == "done on attempt 2"
        else:
            with pytest.raises(TaskLost, match="stopped renewing its lease"):
                await handle.result(timeout=5.0)
            assert time.monotonic() - killed < 5.0
            assert (await handle.status()).attempt == 1


async def test_a_task_lost_more_often_than_max_attempts_fails(procs: Procs, tmp_path: Path) -> None:
    """Two workers killed mid-task with max_attempts=2: the third worker fails it."""
    out = tmp_path / "attempts.txt"
    async with _runtime(procs) as rt:
        handle = await rt.agent("client").start_task("cruncher", "crunch", {"steps": 10_000})
        for attempt in (1, 2):
            worker = procs.start("worker", "retry:2", out)
            await _until(lambda n=attempt: len(_lines(out)) >= n, 30, f"attempt {attempt} starting")
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)
        assert _lines(out) == ["attempt 1", "attempt 2"]
        killed = time.monotonic()
        await rt.attach(_cruncher("retry", max_attempts=2))
        with pytest.raises(TaskLost, match=r"no attempts left \(2 of 2\)"):
            await handle.result(timeout=10.0)
        assert time.monotonic() - killed < 6.0
        assert _lines(out) == ["attempt 1", "attempt 2"]  # never a third run
        assert (await handle.status()).state == "failed"


async def test_a_task_survives_a_broker_restart(tmp_path: Path) -> None:
    """Records, work and updates are on the broker's disk; the task still ends well."""
    from agentcomm.testing.nats_server import require_nats_server

    require_nats_server()
    with NatsServer(tmp_path / "nats") as server:
        transport = NatsTransport(server.url, namespace="restart")
        async with Runtime(transport=transport, agents=[_cruncher()]) as rt:
            handle = await rt.agent("client").start_task("cruncher", "crunch", {"steps": 60})
            end = time.monotonic() + 20
            while (await handle.status()).state != "working":
                assert time.monotonic() < end, "the task never started"
                await asyncio.sleep(0.05)
            before = [u.cursor async for u in _first(handle.updates(), 3)]
            await asyncio.to_thread(server.restart)  # SIGKILL, then the same port and store
            result = await handle.result(timeout=40)
            assert result.startswith("done on attempt ")
            after = [u async for u in handle.updates()]
        cursors = [u.cursor for u in after]
        assert cursors[:3] == before  # what was written before the crash is still there
        assert cursors == sorted(set(cursors))
        assert after[-1].kind == "result"


async def _first(updates: AsyncIterator[TaskUpdate], n: int) -> AsyncIterator[TaskUpdate]:
    async for u in updates:
        yield u
        n -= 1
        if n == 0:
            return
