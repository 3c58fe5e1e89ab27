"""Failures of background work are counted by kind in ``statistics().errors``, not only logged."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from agentcomm import Agent, PermissionDenied, Runtime, TransportError
from agentcomm.host.failures import FAILURE_KINDS, FailureLog, FailureRecord
from agentcomm.observability.presence import Presence
from agentcomm.testing.extras import require_module
from agentcomm.transports.base import Inbox
from agentcomm.transports.memory import MemoryTransport


async def until(cond: Callable[[], Any], what: str, deadline: float = 5.0) -> Any:
    """Wait (bounded) until ``cond()`` is truthy; fail saying ``what`` did not happen."""
    end = asyncio.get_running_loop().time() + deadline
    while True:
        got = cond()
        if got:
            return got
        if asyncio.get_running_loop().time() > end:
            pytest.fail(f"{what} did not happen within {deadline}s")
        await asyncio.sleep(0.01)


def test_the_record_is_bounded_and_keeps_the_last_error() -> None:
    log = FailureLog(max_kinds=2, max_message=20)
    log.add("bind", OSError("first"), subject="a")
    log.add("bind", "second, and much longer than twenty characters", subject="b")
    log.add("presence", ValueError())
    log.add("novel", "x")
    log.add("another", "y")
    snap = log.snapshot()
    assert list(snap) == ["bind", "other", "presence"]
    assert snap["bind"].count == 2
    assert snap["bind"].last_error == "second, and much ..."
    assert snap["bind"].last_subject == "b"
    assert snap["presence"].last_error == "ValueError"
    assert snap["other"].count == 2
    assert snap["bind"].last_at > 0


class _RefusingBinds(MemoryTransport):
    """Binds later, as a network engine does, and the broker refuses ``outcast``."""

    def bind_nowait(self, address: str, inbox: Inbox) -> bool:
        return False if address == "outcast" else super().bind_nowait(address, inbox)

    async def bind(self, address: str, inbox: Inbox) -> None:
        if address == "outcast":
            raise PermissionDenied("the broker refused the subscription for outcast")
        await super().bind(address, inbox)


async def test_a_failed_bind_is_counted_and_the_agent_can_still_send() -> None:
    async with Runtime(_RefusingBinds(), agents=[Agent("peer")]) as rt:
        outcast = rt.agent("outcast")
        rec = await until(lambda: rt.statistics().errors.get("bind"), "the bind failure")
        assert isinstance(rec, FailureRecord)
        assert (rec.count, rec.last_subject) == (1, "outcast")
        assert rec.last_error == "PermissionDenied: the broker refused the subscription for outcast"
        await outcast.send("peer", "anything")  # sending still works (no handler: counted)
        msg = await until(lambda: rt.statistics().errors.get("message"), "the unhandled message")
        assert msg.count == rt.statistics().failures == 1


async def test_a_subscription_that_does_not_start_is_counted() -> None:
    def access(agent: str, action: str, target: str) -> None:
        if (agent, action) == ("late", "subscribe"):
            raise PermissionDenied(f"{agent} may not subscribe to {target}")

    async with Runtime(agents=[Agent("early")], access=access) as rt:
        late = rt.agent("late")

        @late.on("secret.*")
        async def peek(x: int) -> None: ...

        rec = await until(
            lambda: rt.statistics().errors.get("subscription_start"), "the refused start"
        )
        assert rec.count == 1
        assert rec.last_error == "PermissionDenied: late may not subscribe to secret.*"


class _NoPresenceWrites(MemoryTransport):
    """Shared with other processes (so presence runs), but the store refuses its writes."""

    shared = True

    async def kv_put(self, bucket: str, key: str, value: bytes, **kw: Any) -> int:
        if bucket == "presence":
            raise TransportError("presence bucket is read-only here")
        return await super().kv_put(bucket, key, value, **kw)


async def test_presence_that_cannot_be_written_is_counted_every_round() -> None:
    rt = Runtime(_NoPresenceWrites(), agents=[Agent("solo")])
    Presence.install(rt, interval=0.02)
    async with rt:
        rec = await until(
            lambda: (r := rt.statistics().errors.get("presence")) and r.count >= 3 and r,
            "three failed presence rounds",
        )
        assert rec.last_error == "TransportError: presence bucket is read-only here"
        assert rec.last_subject == "presence"
        assert rt.running  # presence never fails the runtime


async def test_an_mcp_change_notification_that_fails_is_counted() -> None:
    require_module("mcp")
    crm = Agent("crm")

    @crm.handler
    async def lookup(identifier: str) -> str:
        return identifier

    class Gone:
        async def send_tool_list_changed(self) -> None:
            raise ConnectionResetError("client went away")

    async with Runtime(agents=[crm]) as rt:
        server = await rt.tools.expose("crm")
        gone = Gone()
        server._legacy.add(gone)  # type: ignore[arg-type]  # a legacy client whose link broke

        @crm.handler
        async def refund(order: str) -> str:
            return order

        rec = await until(lambda: rt.statistics().errors.get("mcp_notify"), "the failed notify")
        assert (rec.count, rec.last_subject) == (1, "crm")
        assert rec.last_error == "ConnectionResetError: client went away"
        assert gone not in server._legacy  # and the broken client is dropped


def test_every_reported_kind_is_documented() -> None:
    from agentcomm import RuntimeStatistics

    doc = RuntimeStatistics.__doc__ or ""
    for kind in FAILURE_KINDS:
        assert f"``{kind}``" in doc, f"RuntimeStatistics does not document the kind {kind!r}"
