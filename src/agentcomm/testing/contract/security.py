"""Contract tests: signatures, replay, access policy and limits, on every transport.

Hostile input is injected straight into the transport (``rt.transport.send`` /
``request`` / ``append``), as a process that bypasses the library would; the
receiving runtime must refuse it before any handler runs.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
import pytest

from agentcomm.api import Agent, Runtime
from agentcomm.core.envelope import Envelope, encode_payload, new_id
from agentcomm.core.errors import LimitExceeded, PermissionDenied, RateLimited, RequestTimeout
from agentcomm.core.flow import RateLimit
from agentcomm.core.limits import Limits
from agentcomm.pubsub.partitions import event_subject
from agentcomm.security.policy import Policy
from agentcomm.security.signing import Identity, Security
from agentcomm.testing.fixtures import MakeRuntime

__all__ = [
    "test_deeply_nested_payload_refused_by_the_receiver",
    "test_expired_message_is_refused",
    "test_flooding_sender_is_held_while_others_are_served",
    "test_forged_event_is_dead_lettered",
    "test_forged_sender_is_refused",
    "test_oversize_payload_refused_by_the_sender",
    "test_policy_refuses_blackboard_read_and_write",
    "test_policy_refuses_publish",
    "test_policy_refuses_send_and_request",
    "test_policy_refuses_subscribe",
    "test_rate_limit_wait_never_outlasts_the_deadline",
    "test_replayed_message_is_refused",
    "test_signed_request_round_trip",
    "test_tampered_payload_is_refused",
    "test_unsigned_message_is_refused",
]

DEADLINE = 10.0


def _ids() -> dict[str, Identity]:
    return {n: Identity.generate(n) for n in ("alice", "bob", "shop", "audit")}


def _bob(calls: list[Any]) -> Agent:
    bob = Agent("bob")

    @bob.handler
    async def echo(text: str) -> str:
        calls.append(text)
        return text

    return bob


def _request_env(sender: str, text: str, **kw: Any) -> Envelope:
    now = time.time()
    fields: dict[str, Any] = {"created": now, "deadline": now + DEADLINE}
    fields.update(kw)
    return Envelope(
        id=new_id(),
        kind="request",
        sender=sender,
        recipient="bob",
        handler="echo",
        payload=encode_payload({"text": text}),
        **fields,
    )


async def _refused(rt: Runtime, env: Envelope) -> tuple[str, str]:
    resp = await rt.transport.request(env, DEADLINE)
    assert resp.error is not None, "a hostile request was answered normally"
    return resp.error.code, resp.error.type


async def _wait_for(cond: Any, what: str) -> None:
    for _ in range(int(DEADLINE / 0.005)):
        if cond():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"not reached within {DEADLINE}s: {what}")


async def test_signed_request_round_trip(make_runtime: MakeRuntime) -> None:
    ids = _ids()
    security = Security(identities=ids.values())
    calls: list[Any] = []
    async with make_runtime(agents=[_bob(calls)], security=security) as rt:
        alice = rt.agent("alice")
        assert await alice.request("bob", "echo", {"text": "hi"}) == "hi"
        await alice.send("bob", "echo", {"text": "note"})
        await _wait_for(lambda: len(calls) == 2, "both messages handled")
    assert security.verified >= 3  # request, response, notification
    assert security.refused == 0


async def test_forged_sender_is_refused(make_runtime: MakeRuntime) -> None:
    ids = _ids()
    security = Security(identities=ids.values())
    mallory_as_alice = Security(identities=[Identity.generate("alice")])  # another key
    calls: list[Any] = []
    async with make_runtime(agents=[_bob(calls)], security=security) as rt:
        forged = mallory_as_alice.sign(_request_env("alice", "pay mallory"))
        assert await _refused(rt, forged) == ("authentication", "AuthenticationError")
        unknown = Security(identities=[Identity.generate("mallory")])
        env = unknown.sign(_request_env("mallory", "hello"))
        assert await _refused(rt, env) == ("authentication", "AuthenticationError")
    assert calls == []


async def test_tampered_payload_is_refused(make_runtime: MakeRuntime) -> None:
    ids = _ids()
    security = Security(identities=ids.values())
    calls: list[Any] = []
    async with make_runtime(agents=[_bob(calls)], security=security) as rt:
        signed = security.sign(_request_env("alice", "pay 10"))
        tampered = msgspec.structs.replace(signed, payload=encode_payload({"text": "pay 10000"}))
        assert await _refused(rt, tampered) == ("authentication", "AuthenticationError")
        redirected = msgspec.structs.replace(signed, handler="other")
        assert (await _refused(rt, redirected))[0] == "authentication"
    assert calls == []


async def test_unsigned_message_is_refused(make_runtime: MakeRuntime) -> None:
    security = Security(identities=_ids().values())
    calls: list[Any] = []
    async with make_runtime(agents=[_bob(calls)], security=security) as rt:
        assert await _refused(rt, _request_env("alice", "x")) == (
            "authentication",
            "AuthenticationError",
        )
    assert calls == []


async def test_replayed_message_is_refused(make_runtime: MakeRuntime) -> None:
    security = Security(identities=_ids().values())
    calls: list[Any] = []
    async with make_runtime(agents=[_bob(calls)], security=security) as rt:
        env = security.sign(_request_env("alice", "once"))
        ok = await rt.transport.request(env, DEADLINE)
        assert ok.error is None
        assert await _refused(rt, env) == ("authentication", "ReplayDetected")
        note = msgspec.structs.replace(_request_env("alice", "n"), kind="notification")
        note = security.sign(note)
        await rt.transport.send(note)
        await rt.transport.send(note)
        await _wait_for(lambda: security.replays >= 2, "the replayed notification refused")
    assert calls == ["once", "n"]


async def test_expired_message_is_refused(make_runtime: MakeRuntime) -> None:
    security = Security(identities=_ids().values(), window=60.0)
    calls: list[Any] = []
    async with make_runtime(agents=[_bob(calls)], security=security) as rt:
        old = time.time() - 3600  # an hour-old capture, replayed with a fresh deadline
        env = security.sign(_request_env("alice", "old", created=old))
        assert await _refused(rt, env) == ("authentication", "ReplayDetected")
    assert calls == []


async def test_forged_event_is_dead_lettered(make_runtime: MakeRuntime) -> None:
    security = Security(identities=_ids().values())
    got: list[Any] = []
    audit = Agent("audit")

    @audit.on("orders.*")
    async def record(id: int) -> None:
        got.append(id)

    async with make_runtime(agents=[audit], security=security) as rt:
        shop = rt.agent("shop")
        await shop.publish("orders.created", {"id": 1})
        forged = Envelope(
            id=new_id(),
            kind="event",
            sender="shop",
            topic="orders.created",
            payload=encode_payload({"id": 666}),
        )
        await rt.transport.append("EVENTS", forged, subject=event_subject(forged))
        await shop.publish("orders.created", {"id": 2})
        await _wait_for(lambda: len(got) == 2, "the two genuine events handled")
        await rt.events.wait_dead_letter(timeout=DEADLINE)
        (dl,) = await rt.events.dead_letters()
    assert got == [1, 2]
    assert dl.reason == "unauthenticated"
    assert dl.event.payload == forged.payload


async def test_oversize_payload_refused_by_the_sender(make_runtime: MakeRuntime) -> None:
    calls: list[Any] = []
    limits = Limits(max_payload=1000)
    async with make_runtime(agents=[_bob(calls)], limits=limits) as rt:
        alice = rt.agent("alice")
        with pytest.raises(LimitExceeded, match="max_payload"):
            await alice.request("bob", "echo", {"text": "x" * 2000})
        with pytest.raises(LimitExceeded, match="max_payload"):
            await alice.send("bob", "echo", {"text": "x" * 2000})
        with pytest.raises(LimitExceeded, match="max_payload"):
            await alice.publish("t", {"text": "x" * 2000})
        assert await alice.request("bob", "echo", {"text": "small"}) == "small"
    assert calls == ["small"]


async def test_deeply_nested_payload_refused_by_the_receiver(make_runtime: MakeRuntime) -> None:
    calls: list[Any] = []
    async with make_runtime(agents=[_bob(calls)], limits=Limits(max_depth=8)) as rt:
        deep: Any = "x"
        for _ in range(100):
            deep = [deep]
        env = _request_env("alice", "x")
        env = msgspec.structs.replace(env, payload=encode_payload({"text": deep}))
        assert await _refused(rt, env) == ("limit", "LimitExceeded")
    assert calls == []


def _policy() -> Policy:
    return Policy.from_toml(
        """
        [agents.alice]
        send = ["bob.echo"]
        publish = ["orders.*"]
        read = ["plan."]
        write = ["notes."]
        [agents.bob]
        subscribe = ["orders.created"]
        """,
        source="contract-policy",
    )


async def test_policy_refuses_send_and_request(make_runtime: MakeRuntime) -> None:
    calls: list[Any] = []
    async with make_runtime(agents=[_bob(calls)], access=_policy()) as rt:
        alice, carol = rt.agent("alice"), rt.agent("carol")
        assert await alice.request("bob", "echo", {"text": "ok"}) == "ok"
        with pytest.raises(PermissionDenied, match=r"agents\.carol") as info:
            await carol.request("bob", "echo", {"text": "no"})
        assert info.value.rule == "agents.carol (absent)"
        with pytest.raises(PermissionDenied) as info:
            await alice.send("bob", "other", {})
        assert info.value.rule == "agents.alice.send"
        assert info.value.target == "bob.other"
    assert calls == ["ok"]


async def test_policy_refuses_publish(make_runtime: MakeRuntime) -> None:
    async with make_runtime(access=_policy()) as rt:
        alice = rt.agent("alice")
        await alice.publish("orders.created", {"id": 1})
        with pytest.raises(PermissionDenied, match=r"agents\.alice") as info:
            await alice.publish("payments.done", {"id": 1})
        assert info.value.action == "publish"


async def test_policy_refuses_subscribe(make_runtime: MakeRuntime) -> None:
    spy = Agent("alice")

    @spy.on("orders.>")
    async def listen(id: int) -> None:  # pragma: no cover - must never run
        raise AssertionError("subscribed despite the policy")

    with pytest.raises(PermissionDenied) as info:
        async with make_runtime(agents=[spy], access=_policy()) as rt:
            await rt.events.publish("alice", "orders.created", {"id": 1})
    assert info.value.action == "subscribe"
    assert info.value.rule == "agents.alice.subscribe"


async def test_policy_refuses_blackboard_read_and_write(make_runtime: MakeRuntime) -> None:
    async with make_runtime(access=_policy()) as rt:
        alice = rt.agent("alice")
        await alice.board.write("notes.today", {"text": "fine"})
        with pytest.raises(PermissionDenied) as info:
            await alice.board.write("plan.goal", {"text": "hijack"})
        assert (info.value.action, info.value.rule) == ("write", "agents.alice.write")
        with pytest.raises(PermissionDenied):
            await alice.board.read("notes.today")  # may write notes., may read only plan.
        assert await alice.board.read("plan.goal") is None


async def test_flooding_sender_is_held_while_others_are_served(make_runtime: MakeRuntime) -> None:
    calls: list[Any] = []
    limits = Limits(sender_rate=RateLimit(100.0, burst=10))
    async with make_runtime(agents=[_bob(calls)], limits=limits) as rt:
        flooder, alice = rt.agent("flooder"), rt.agent("alice")
        sent = 0

        stop = False

        async def flood() -> None:
            nonlocal sent
            for _ in range(10_000):
                if stop:
                    return
                await flooder.send("bob", "echo", {"text": "spam"})
                sent += 1

        start = time.monotonic()
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(flood())
            for i in range(20):  # alice has her own budget: the flood does not spend it
                assert await alice.request("bob", "echo", {"text": f"a{i}"}) == f"a{i}"
            elapsed = time.monotonic() - start
            stop = True
            task.cancel()
    assert sent <= 10 + 100.0 * elapsed + 1  # held at its rate, whatever the machine speed
    assert sent < 10_000
    assert [c for c in calls if c != "spam"] == [f"a{i}" for i in range(20)]


async def test_rate_limit_wait_never_outlasts_the_deadline(make_runtime: MakeRuntime) -> None:
    calls: list[Any] = []
    limits = Limits(sender_rate=RateLimit(0.5, burst=1))  # the next token in 2 s
    async with make_runtime(agents=[_bob(calls)], limits=limits) as rt:
        me = rt.agent("me")
        assert await me.request("bob", "echo", {"text": "first"}, timeout=DEADLINE) == "first"
        with pytest.raises(RequestTimeout) as info:  # at once, not after holding it 2 s
            await me.request("bob", "echo", {"text": "late"}, timeout=0.2)
        assert info.value.timeout == pytest.approx(0.2)
        with pytest.raises(RateLimited):  # a notification cannot wait past its ttl either
            await me.send("bob", "echo", {"text": "late"}, ttl=0.2)
    assert calls == ["first"]
