"""Runtime lifecycle, agent registration, the message log and statistics."""

from __future__ import annotations

import asyncio
import logging

import pytest

from agentcomm import (
    Agent,
    ConfigurationError,
    Context,
    MailboxFull,
    MessageLog,
    NoResponders,
    RemoteError,
    RequestTimeout,
    Runtime,
    TransportClosed,
)
from agentcomm.core.envelope import Envelope
from agentcomm.transports.memory import MemoryTransport


def test_default_transport_is_memory() -> None:
    assert isinstance(Runtime().transport, MemoryTransport)
    assert Runtime("memory").transport.name == "memory"


def test_bad_transport_spec_says_what_to_pass() -> None:
    with pytest.raises(ConfigurationError, match="nats:// URL"):
        Runtime("kafka://x")


@pytest.mark.parametrize("name", ["", "a b", "a.b", "a*", "x" * 129])
def test_bad_agent_names_are_refused(name: str) -> None:
    with pytest.raises(ConfigurationError, match="invalid agent name"):
        Agent(name)


def test_duplicate_agent_and_handler_names_are_refused() -> None:
    a = Agent("a")

    @a.handler
    async def h() -> None: ...

    with pytest.raises(ConfigurationError, match="already has a handler"):
        a.handler(name="h")(h)
    rt = Runtime(agents=[a])
    with pytest.raises(ConfigurationError, match="already registered"):
        rt.add(Agent("a"))


async def test_agent_outside_a_runtime_says_how_to_use_it() -> None:
    with pytest.raises(TransportClosed, match="async with Runtime"):
        await Agent("lonely").request("x", "y")


async def test_attach_and_detach_while_running() -> None:
    helper = Agent("helper")

    @helper.handler
    async def ping() -> str:
        return "pong"

    async with Runtime() as rt:
        me = rt.agent("me")
        with pytest.raises(NoResponders):
            await me.request("helper", "ping")
        await rt.attach(helper)
        assert await me.request("helper", "ping") == "pong"
        await rt.detach("helper")
        with pytest.raises(NoResponders):
            await me.request("helper", "ping")
        with pytest.raises(ConfigurationError, match="attach"):
            rt.add(Agent("late"))


async def test_body_exception_propagates_as_itself() -> None:
    with pytest.raises(KeyError):
        async with Runtime(agents=[Agent("a")]):
            raise KeyError("boom")


async def test_runtime_cannot_start_twice_and_is_reusable_after_stop() -> None:
    rt = Runtime(agents=[Agent("a")])
    async with rt:
        with pytest.raises(ConfigurationError):
            await rt.__aenter__()
    assert not rt.running
    async with rt:
        assert rt.running


async def test_shutdown_deadline_answers_queued_requests_instead_of_hanging(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stuck = Agent("stuck", concurrency=1)
    release = asyncio.Event()
    entered = asyncio.Event()

    @stuck.handler
    async def wait(ctx: Context) -> None:
        entered.set()
        await release.wait()

    errors: list[BaseException] = []
    caplog.set_level(logging.WARNING, logger="agentcomm")
    async with Runtime(agents=[stuck], drain_timeout=0.2) as rt:
        me = rt.agent("me")

        async def call() -> None:
            try:
                await me.request("stuck", "wait", timeout=30)
            except Exception as exc:
                errors.append(exc)

        first = asyncio.ensure_future(call())
        await entered.wait()
        second = asyncio.ensure_future(call())
        await asyncio.sleep(0)
    await asyncio.wait_for(asyncio.gather(first, second), 5)
    assert len(errors) == 2  # neither caller waited its 30 s
    # Both answered by the stopping agent: the running one cancelled, the queued one refused.
    assert all(isinstance(e, RemoteError) for e in errors), errors
    got = sorted((e.source, e.type, e.message) for e in errors if isinstance(e, RemoteError))
    assert got == [
        ("stuck", "TransportClosed", "agent stuck shut down before handling it"),
        ("stuck", "TransportClosed", "agent stuck shut down while handling it"),
    ]
    assert "not handled before the shutdown deadline" in caplog.text


async def test_receiver_gives_up_at_the_callers_deadline() -> None:
    slow = Agent("slow")
    cancelled = asyncio.Event()

    @slow.handler
    async def work() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async with Runtime(agents=[slow]) as rt:
        with pytest.raises(RequestTimeout):
            await rt.agent("me").request("slow", "work", timeout=0.1)
        await asyncio.wait_for(cancelled.wait(), 5)
        assert rt.agents["slow"].statistics().failed == 1
        # the worker survived the cancellation and keeps serving
        with pytest.raises(RequestTimeout):
            await rt.agent("me2").request("slow", "work", timeout=0.05)


async def test_failed_notification_is_reported_not_lost(caplog: pytest.LogCaptureFixture) -> None:
    fragile = Agent("fragile")
    ran = asyncio.Event()

    @fragile.handler
    async def note() -> None:
        ran.set()
        raise RuntimeError("disk full")

    caplog.set_level(logging.WARNING, logger="agentcomm")
    async with Runtime(agents=[fragile]) as rt:
        await rt.agent("me").send("fragile", "note")
        await asyncio.wait_for(ran.wait(), 5)
        await asyncio.sleep(0)
        assert rt.statistics().failures == 1
    assert "disk full" in caplog.text


async def test_message_log_is_bounded_and_readable() -> None:
    echo = Agent("echo")

    @echo.handler
    async def say(text: str) -> str:
        return text

    async with Runtime(agents=[echo], log_size=5) as rt:
        me = rt.agent("me")
        for i in range(20):
            await me.request("echo", "say", {"text": str(i)})
        recent = rt.message_log.recent()
        assert len(recent) == 5
        assert [e.kind for e in recent][-2:] == ["request", "response"]
        assert rt.message_log.recent(1)[0].correlation_id == recent[-2].id


def test_message_log_drops_entries_older_than_max_age() -> None:
    log = MessageLog(size=10, max_age=60)
    log.append(Envelope(id="old", kind="event", sender="a", created=0.0))
    log.append(Envelope(id="new", kind="event", sender="a"))
    assert [e.id for e in log.recent()] == ["new"]


async def test_statistics_are_frozen_snapshots() -> None:
    a = Agent("a")

    @a.handler
    async def h() -> None: ...

    async with Runtime(agents=[a]) as rt:
        await rt.agent("me").request("a", "h")
        snap = rt.statistics()
        stats = {s.name: s for s in snap.agents}
        assert stats["a"].handled == 1
        assert stats["me"].requested == 1
        with pytest.raises(AttributeError):
            snap.running = False  # type: ignore[misc]


async def test_an_agent_can_join_another_runtime_after_the_first_stops() -> None:
    a = Agent("a")

    @a.handler
    async def ping() -> str:
        return "pong"

    for _ in range(2):
        async with Runtime(agents=[a]) as rt:
            assert await rt.agent("me").request("a", "ping") == "pong"


async def test_detaching_an_agent_with_a_stuck_handler_leaves_the_runtime_running() -> None:
    slow = Agent("slow")
    entered = asyncio.Event()

    @slow.handler
    async def work() -> None:
        entered.set()
        await asyncio.sleep(30)

    async with Runtime(agents=[slow], drain_timeout=0.1) as rt:
        me = rt.agent("me")
        await me.send("slow", "work")
        await asyncio.wait_for(entered.wait(), 5)
        await rt.detach("slow")
        assert rt.running
        with pytest.raises(NoResponders):
            await me.request("slow", "work")


async def test_senders_waiting_for_room_learn_at_once_that_the_agent_stopped() -> None:
    slow = Agent("slow", concurrency=1, mailbox_size=1)
    entered = asyncio.Event()

    @slow.handler
    async def work(n: int) -> None:
        entered.set()
        await asyncio.sleep(30)

    async with Runtime(agents=[slow], drain_timeout=0.1) as rt:
        me = rt.agent("me")
        await me.send("slow", "work", {"n": 0})
        await asyncio.wait_for(entered.wait(), 5)
        await me.send("slow", "work", {"n": 1})  # fills the mailbox
        blocked = [asyncio.ensure_future(me.send("slow", "work", {"n": n})) for n in (2, 3)]
        await asyncio.sleep(0)
        await rt.detach("slow")
        results = await asyncio.wait_for(asyncio.gather(*blocked, return_exceptions=True), 5)
    assert all(isinstance(r, NoResponders) for r in results), results


async def test_tasks_left_in_the_task_group_are_cancelled_at_exit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="agentcomm")
    cancelled = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async with asyncio.timeout(10):
        async with Runtime(drain_timeout=0.1) as rt:
            rt.task_group.create_task(forever(), name="straggler")
            await asyncio.sleep(0)  # let it start
    assert cancelled.is_set()
    assert "straggler" in caplog.text


async def test_send_timeout_bounds_the_wait_and_ttl_bounds_the_work() -> None:
    inbox = Agent("inbox", concurrency=1, mailbox_size=1)
    finished: list[int] = []
    gate = asyncio.Event()

    @inbox.handler
    async def note(n: int) -> None:
        await gate.wait()
        await asyncio.sleep(0.2)
        finished.append(n)

    async with Runtime(agents=[inbox]) as rt:
        me = rt.agent("me")
        await me.send("inbox", "note", {"n": 1}, timeout=0.05)  # a timeout, not a ttl
        await asyncio.sleep(0)
        await me.send("inbox", "note", {"n": 2})  # fills the mailbox
        with pytest.raises(MailboxFull, match=r"still full after waiting 0\.05s"):
            await me.send("inbox", "note", {"n": 3}, timeout=0.05)
        gate.set()
    assert finished == [1, 2]  # the first handler outlived its send timeout


async def test_rt_agent_while_running_can_send_at_once_and_is_reachable() -> None:
    async with Runtime() as rt:
        a = rt.agent("a")

        @a.handler
        async def hi() -> str:
            return "hi"

        assert await rt.agent("b").request("a", "hi") == "hi"


async def test_workers_start_on_demand_up_to_concurrency() -> None:
    """An idle agent holds one worker task; a burst starts more, never past concurrency."""
    gate, full = asyncio.Event(), asyncio.Event()
    running = 0
    peak = 0
    a = Agent("burst", concurrency=4)

    @a.handler
    async def hold(i: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        if peak == 4:
            full.set()
        await gate.wait()
        running -= 1
        return i

    @a.handler
    async def outer(i: int, ctx: Context) -> int:
        return await ctx.request("burst", "inner", {"i": i}) + 1  # calls its own agent

    @a.handler
    async def inner(i: int) -> int:
        return i

    async with Runtime(agents=[a]) as rt:
        assert len(a._serving._workers) == 1
        me = rt.agent("me")
        assert await me.request("burst", "outer", {"i": 1}, timeout=5) == 2  # no deadlock
        calls = [asyncio.ensure_future(me.request("burst", "hold", {"i": i})) for i in range(10)]
        await asyncio.wait_for(full.wait(), 5)
        assert len(a._serving._workers) == 4
        gate.set()
        assert sorted(await asyncio.gather(*calls)) == list(range(10))
    assert peak == 4
