"""Engine contract: core pub/sub (``Broadcast``), driven on the ``Transport`` itself.

Fan-out to every matching listener (wildcards as topics have them), a group's
listeners sharing the events, nothing stored (a listener sees only what is broadcast
after it started; nobody listening is no error), a closed listener getting nothing
more, the payload limit. Publisher and listeners are different users of the engine
(another connection on NATS), as another process would be.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import msgspec
import pytest

from agentcomm.core.envelope import Envelope, encode_payload, new_id
from agentcomm.core.errors import LimitExceeded
from agentcomm.testing.contract.engine_support import DEADLINE, event, started, until
from agentcomm.testing.fixtures import MakeTransport

__all__ = [
    "test_a_closed_listener_gets_nothing_more",
    "test_a_group_shares_the_events_and_plain_listeners_get_all",
    "test_broadcast_fans_out_by_pattern",
    "test_broadcast_stores_nothing",
    "test_an_oversized_event_is_refused",
]


class Heard:
    """What one listener was handed (its sink), with a wait on a condition."""

    def __init__(self) -> None:
        self.items: list[Envelope] = []
        self._changed = asyncio.Event()

    def __call__(self, env: Envelope) -> None:
        self.items.append(env)
        self._changed.set()

    @property
    def values(self) -> list[object]:
        return [msgspec.json.decode(e.payload) for e in self.items]

    async def wait(self, cond: Callable[[], bool], timeout: float = DEADLINE) -> None:
        async with asyncio.timeout(timeout):
            while not cond():
                self._changed.clear()
                await self._changed.wait()


async def test_broadcast_fans_out_by_pattern(make_transport: MakeTransport) -> None:
    async with started(make_transport) as pub, started(make_transport) as sub:
        heard = {p: Heard() for p in ("m.*", "m.>", "m.cpu", "x.*")}
        twice = Heard()  # a second listener of one pattern gets every event too
        listeners = [await sub.listen(p, h) for p, h in heard.items()]
        listeners.append(await sub.listen("m.*", twice))
        for n, topic in enumerate(["m.a.b", "x.q", "m.cpu", "x.z"], start=1):
            await pub.broadcast(event(topic, n))
        await heard["m.cpu"].wait(lambda: len(heard["m.cpu"].items) >= 1)
        await heard["x.*"].wait(lambda: len(heard["x.*"].items) >= 2)
        await heard["m.>"].wait(lambda: len(heard["m.>"].items) >= 2)
        await twice.wait(lambda: len(twice.items) >= 1)
        assert heard["m.*"].values == [3]
        assert heard["m.>"].values == [1, 3]
        assert heard["m.cpu"].values == [3]
        assert heard["x.*"].values == [2, 4]
        assert twice.values == [3]
        got = heard["m.cpu"].items[0]
        assert (got.kind, got.sender, got.topic, got.sequence) == ("event", "tester", "m.cpu", None)
        for listener in listeners:
            await listener.close()


async def test_a_group_shares_the_events_and_plain_listeners_get_all(
    make_transport: MakeTransport,
) -> None:
    n = 40
    async with (
        started(make_transport) as pub,
        started(make_transport) as a,
        started(make_transport) as b,
    ):
        ga, gb, plain = Heard(), Heard(), Heard()
        la = await a.listen("g.*", ga, group="workers")
        lb = await b.listen("g.*", gb, group="workers")
        lp = await a.listen("g.*", plain)
        assert (la.group, la.pattern, lp.group) == ("workers", "g.*", None)
        for i in range(n):
            await pub.broadcast(event("g.work", i))
        await plain.wait(lambda: len(plain.items) >= n)
        # the two members together: a wait on one of them misses the other's last events
        await until(lambda: len(ga.items) + len(gb.items) >= n, what="the group's events")
        shared = sorted(int(v) for v in [*ga.values, *gb.values])  # type: ignore[call-overload]
        assert shared == list(range(n)), "each event to exactly one member of the group"
        assert plain.values == list(range(n)), "a listener outside the group gets all, in order"
        for listener in (la, lb, lp):
            await listener.close()


async def test_broadcast_stores_nothing(make_transport: MakeTransport) -> None:
    async with started(make_transport) as pub, started(make_transport) as sub:
        await pub.broadcast(event("s.before", 1))  # nobody listens: gone, and no error
        await pub.flush()  # the engine has it (NATS: the server) before anyone listens
        heard = Heard()
        listener = await sub.listen("s.*", heard)
        await pub.broadcast(event("s.after", 2))
        await heard.wait(lambda: len(heard.items) >= 1)
        assert heard.values == [2], "only what was broadcast after the listener started"
        await listener.close()


async def test_a_closed_listener_gets_nothing_more(make_transport: MakeTransport) -> None:
    async with started(make_transport) as pub, started(make_transport) as sub:
        gone, stays = Heard(), Heard()
        closing = await sub.listen("c.*", gone)
        listener = await sub.listen("c.*", stays)
        await pub.broadcast(event("c.one", 1))
        await stays.wait(lambda: len(stays.items) >= 1)
        await gone.wait(lambda: len(gone.items) >= 1)
        await closing.close()
        await closing.close()  # idempotent
        await pub.broadcast(event("c.two", 2))
        await stays.wait(lambda: len(stays.items) >= 2)
        assert gone.values == [1]
        assert stays.values == [1, 2]
        await listener.close()


async def test_an_oversized_event_is_refused(make_transport: MakeTransport) -> None:
    async with started(make_transport) as pub:
        big = Envelope(
            id=new_id(),
            kind="event",
            sender="tester",
            topic="big.one",
            payload=encode_payload("x" * (2 << 20)),
        )
        with pytest.raises(LimitExceeded):
            await pub.broadcast(big)
