"""Engine contract: messaging and channels, driven on the ``Transport`` itself.

Binding, request/reply with correlation, notifications, no responders, timeouts,
full mailboxes, queue groups (one address bound by several inboxes, from one or
several users of the engine), signals to every binding, counted start/close, and
private channels. No runtime: what a runtime relies on, checked where it lives.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
import pytest

from agentcomm.core.envelope import Envelope, new_id
from agentcomm.core.errors import (
    ConfigurationError,
    MailboxFull,
    NoResponders,
    RequestTimeout,
    TransportClosed,
)
from agentcomm.testing.contract.engine_support import DEADLINE, Box, message, started
from agentcomm.testing.fixtures import MakeTransport
from agentcomm.transports.base import Transport

__all__ = [
    "test_a_closed_transport_refuses_to_bind",
    "test_a_full_mailbox_refuses_or_waits_for_room",
    "test_a_request_nobody_answers_times_out",
    "test_binding_one_inbox_twice_is_refused",
    "test_channel_frames_arrive_in_order_and_a_closed_channel_discards",
    "test_closing_one_user_leaves_the_engine_to_the_others",
    "test_no_responders_at_once_before_bind_and_after_unbind",
    "test_notifications_arrive_in_order",
    "test_one_address_bound_twice_is_a_queue_group",
    "test_request_is_answered_through_its_delivery",
    "test_requests_in_flight_are_answered_by_their_own_correlation",
    "test_signals_reach_every_binding",
    "test_start_and_close_are_counted",
    "test_unbinding_one_member_keeps_the_group",
]


def _payload(env: Envelope) -> Any:
    return msgspec.json.decode(env.payload)


async def _serve(box: Box, tag: str, served: list[str]) -> None:
    """Answer every request in ``box`` with ``[tag, payload]``, noting who served it."""
    while True:
        d = await box.take(timeout=3600)
        served.append(tag)
        await box.answer(d, [tag, _payload(d.envelope)])


async def test_request_is_answered_through_its_delivery(make_transport: MakeTransport) -> None:
    async with started(make_transport) as t:
        box = Box()
        await t.bind("w", box)
        sent = message("w", {"q": 1})
        sent = msgspec.structs.replace(sent, headers={"x": "1"})
        pending = asyncio.ensure_future(t.request(sent, timeout=DEADLINE))
        d = await box.take()
        got = d.envelope
        assert (got.id, got.kind, got.sender, got.recipient) == (sent.id, "request", "tester", "w")
        assert _payload(got) == {"q": 1}
        got.headers["x"] = "changed by the receiver"
        assert sent.headers == {"x": "1"}, "the receiver holds its own copy"
        await box.answer(d, "a1")
        response = await pending
    assert response.kind == "response"
    assert response.correlation_id == sent.id
    assert _payload(response) == "a1"


async def test_requests_in_flight_are_answered_by_their_own_correlation(
    make_transport: MakeTransport,
) -> None:
    async with started(make_transport) as t:
        box = Box()
        await t.bind("w", box)
        envs = [message("w", i) for i in range(20)]
        calls = [asyncio.ensure_future(t.request(e, timeout=DEADLINE)) for e in envs]
        deliveries = [await box.take() for _ in envs]
        for d in reversed(deliveries):  # answered in the opposite order
            await box.answer(d, _payload(d.envelope) * 10)
        responses = await asyncio.gather(*calls)
    assert [_payload(r) for r in responses] == [i * 10 for i in range(20)]
    assert [r.correlation_id for r in responses] == [e.id for e in envs]


async def test_no_responders_at_once_before_bind_and_after_unbind(
    make_transport: MakeTransport,
) -> None:
    async with started(make_transport) as t:
        t0 = time.perf_counter()
        with pytest.raises(NoResponders):
            await t.request(message("nobody"), timeout=DEADLINE)
        with pytest.raises(NoResponders):
            await t.send(message("nobody", kind="notification"))
        box = Box()
        await t.bind("w", box)
        await t.send(message("w", 1, kind="notification"))
        assert _payload((await box.take()).envelope) == 1
        await t.unbind("w", box)
        await t.unbind("w", box)  # not bound any more: nothing to do
        with pytest.raises(NoResponders):
            await t.request(message("w"), timeout=DEADLINE)
        with pytest.raises(NoResponders):
            await t.send(message("w", kind="notification"), block=False)
        assert time.perf_counter() - t0 < DEADLINE / 2, "no responders is said at once"


async def test_a_request_nobody_answers_times_out(make_transport: MakeTransport) -> None:
    async with started(make_transport) as t:
        box = Box()
        await t.bind("w", box)
        t0 = time.perf_counter()
        with pytest.raises(RequestTimeout):
            await t.request(message("w", timeout=0.3), timeout=0.3)
        took = time.perf_counter() - t0
        assert len(box) == 1, "the request was delivered, only never answered"
    assert 0.25 <= took < 0.3 + DEADLINE / 4


async def test_notifications_arrive_in_order(make_transport: MakeTransport) -> None:
    async with started(make_transport) as t:
        box = Box(capacity=100)
        await t.bind("w", box)
        for i in range(50):
            await t.send(message("w", i, kind="notification"))
        got = [_payload((await box.take()).envelope) for _ in range(50)]
    assert got == list(range(50))


async def test_a_full_mailbox_refuses_or_waits_for_room(make_transport: MakeTransport) -> None:
    async with started(make_transport) as t:
        box = Box(capacity=1)
        await t.bind("w", box)
        await t.send(message("w", 1, kind="notification"))  # fills it
        with pytest.raises(MailboxFull):
            await t.send(message("w", 2, kind="notification"), block=False)
        waiting = asyncio.ensure_future(t.send(message("w", 3, kind="notification")))
        await asyncio.sleep(0.05)  # give it the chance to return early, which it must not
        assert not waiting.done(), "a blocking send waits for room"
        assert _payload((await box.take()).envelope) == 1
        async with asyncio.timeout(DEADLINE):
            await waiting
        assert _payload((await box.take()).envelope) == 3


async def test_binding_one_inbox_twice_is_refused(make_transport: MakeTransport) -> None:
    async with started(make_transport) as t:
        box = Box()
        await t.bind("w", box)
        with pytest.raises(ConfigurationError):
            await t.bind("w", box)
        await t.bind("v", box)  # another address is another binding


async def test_a_closed_transport_refuses_to_bind(make_transport: MakeTransport) -> None:
    t = make_transport()
    with pytest.raises(TransportClosed):
        await t.bind("w", Box())
    await t.start()
    await t.close()
    with pytest.raises(TransportClosed):
        await t.bind("w", Box())


async def _group(t1: Transport, t2: Transport) -> tuple[Box, Box]:
    a, b = Box(), Box()
    await t1.bind("w", a)
    await t2.bind("w", b)
    await t2.flush()
    return a, b


async def test_one_address_bound_twice_is_a_queue_group(make_transport: MakeTransport) -> None:
    served: list[str] = []
    async with started(make_transport) as t1, started(make_transport) as t2:
        a, b = await _group(t1, t2)
        async with asyncio.TaskGroup() as tg:
            servers = [
                tg.create_task(_serve(a, "a", served)),
                tg.create_task(_serve(b, "b", served)),
            ]
            answers = [await t1.request(message("w", i), timeout=DEADLINE) for i in range(40)]
            for s in servers:
                s.cancel()
        for i in range(10):
            await t2.send(message("w", i, kind="notification"))
        notified = len(a) + len(b)
    assert sorted(_payload(r)[1] for r in answers) == list(range(40)), "each answered once"
    assert len(served) == 40
    assert {"a", "b"} <= set(served), "both members of the group served requests"
    assert notified == 10, "each notification reached exactly one member"


async def test_signals_reach_every_binding(make_transport: MakeTransport) -> None:
    async with started(make_transport) as t1, started(make_transport) as t2:
        a, b = await _group(t1, t2)
        cancel = Envelope(id=new_id(), kind="cancel", sender="tester", recipient="w")
        await t1.signal(cancel)
        for box in (a, b):
            (got,) = await box.wait_controls(1)
            assert (got.id, got.kind) == (cancel.id, "cancel")
        assert len(a) == len(b) == 0, "a signal passes the mailbox"
        await t1.signal(Envelope(id=new_id(), kind="cancel", sender="tester", recipient="gone"))


async def test_unbinding_one_member_keeps_the_group(make_transport: MakeTransport) -> None:
    async with started(make_transport) as t1, started(make_transport) as t2:
        a, b = await _group(t1, t2)
        await t1.unbind("w", a)  # in effect for every user when it returns
        for i in range(6):
            await t1.send(message("w", i, kind="notification"))
        assert (len(a), len(b)) == (0, 6)
        await t2.unbind("w", b)
        with pytest.raises(NoResponders):
            await t1.send(message("w", kind="notification"))


async def test_start_and_close_are_counted(make_transport: MakeTransport) -> None:
    t = make_transport()
    await t.start()
    await t.start()  # a second runtime on the same transport object
    try:
        box = Box()
        await t.bind("w", box)
        await t.close()  # the first one leaves: the engine keeps working for the other
        pending = asyncio.ensure_future(t.request(message("w", 1), timeout=DEADLINE))
        await box.answer(await box.take(), "still here")
        assert _payload(await pending) == "still here"
    finally:
        await t.close()
    with pytest.raises(TransportClosed):
        await t.bind("w", Box())


async def test_closing_one_user_leaves_the_engine_to_the_others(
    make_transport: MakeTransport,
) -> None:
    async with started(make_transport) as t2:
        b = Box()
        async with started(make_transport) as t1:
            a = Box()
            await t1.bind("w", a)
            await t2.bind("w", b)
            await t2.flush()
            await t1.unbind("w", a)  # what a runtime does before it closes
        pending = asyncio.ensure_future(t2.request(message("w", 2), timeout=DEADLINE))
        await b.answer(await b.take(), "served by the one left")
        assert _payload(await pending) == "served by the one left"


async def test_channel_frames_arrive_in_order_and_a_closed_channel_discards(
    make_transport: MakeTransport,
) -> None:
    frames: list[Envelope] = []
    arrived = asyncio.Event()

    def sink(env: Envelope) -> None:
        frames.append(env)
        arrived.set()

    async def count(n: int) -> None:
        async with asyncio.timeout(DEADLINE):
            while len(frames) < n:
                arrived.clear()
                await arrived.wait()

    async with started(make_transport) as reader, started(make_transport) as writer:
        ch = await reader.open_channel(sink)
        await reader.flush()
        for i in range(100):
            await writer.post(ch.address, message("reader", i, kind="chunk"))
        await count(100)
        await ch.close()
        await ch.close()  # idempotent
        await reader.flush()
        await writer.post(ch.address, message("reader", 100, kind="chunk"))  # no error
        await writer.flush()
        probe = await reader.open_channel(sink)  # a frame posted after a closed one ...
        await reader.flush()
        await writer.post(probe.address, message("reader", 101, kind="chunk"))
        await count(101)
        await probe.close()
    assert [_payload(f) for f in frames] == [*range(100), 101], "... is the only one after"
