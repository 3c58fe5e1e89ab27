"""Fuzzing the boundary: random bytes and near-valid envelopes never raise anything but
the library's ValidationError family, and a running agent and subscriber keep serving."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentcomm import Agent, Runtime
from agentcomm.core.envelope import decode_envelope, encode_envelope
from agentcomm.core.errors import ValidationError
from agentcomm.core.limits import Limits
from agentcomm.pubsub.partitions import event_subject
from agentcomm.security.signing import Identity, Security
from agentcomm.testing.extras import require_module

BASE: dict[str, Any] = {
    "id": "m1",
    "kind": "request",
    "sender": "fuzzer",
    "recipient": "bob",
    "handler": "echo",
    "payload": {"text": "hi"},
    "created": 1.0,
    "headers": {"k": "v", "ac-sig": "c2lnbmF0dXJl"},
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
field_names = st.sampled_from(
    [*BASE, "deadline", "error", "sequence", "key", "topic", "v", "extra"]
)


@st.composite
def near_valid(draw: st.DrawFn) -> bytes:
    """A valid envelope with some fields replaced, dropped or added, or its bytes mangled."""
    doc = dict(BASE)
    doc["kind"] = draw(st.sampled_from(["request", "notification", "event", "response"]))
    for name in draw(st.lists(field_names, max_size=4)):
        if draw(st.booleans()):
            doc[name] = draw(json_values)
        else:
            doc.pop(name, None)
    if draw(st.booleans()):
        doc["headers"] = {"ac-sig": draw(st.text(max_size=100) | st.just("A" * 86 + "=="))}
    if draw(st.booleans()):
        nesting = draw(st.integers(min_value=1, max_value=400))
        doc["payload"] = {"text": json.loads("[" * nesting + "]" * nesting)}
    data = json.dumps(doc).encode()
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        pos = draw(st.integers(min_value=0, max_value=len(data)))
        op = draw(st.sampled_from(["flip", "cut", "insert"]))
        byte = bytes([draw(st.integers(min_value=0, max_value=255))])
        if op == "flip" and pos < len(data):
            data = data[:pos] + byte + data[pos + 1 :]
        elif op == "cut":
            data = data[:pos]
        else:
            data = data[:pos] + byte + data[pos:]
    return data


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_validation_errors(data: bytes) -> None:
    try:
        decode_envelope(data)
    except ValidationError:
        pass


@pytest.fixture(params=["plain", "signed"])
def serving(
    request: pytest.FixtureRequest,
) -> Iterator[tuple[asyncio.AbstractEventLoop, Runtime, dict[str, list[Any]]]]:
    """A runtime with an agent and a subscriber, driven by its own loop (hypothesis is sync).

    ``signed``: signing is on, and the fuzzer's name has a known key, so envelopes reach
    signature verification (the ``ac-sig`` header is fuzzed like any other).
    """
    seen: dict[str, list[Any]] = {"direct": [], "events": []}
    bob = Agent("bob", mailbox_size=4096)

    @bob.handler
    async def echo(text: str) -> str:
        seen["direct"].append(text)
        return text

    @bob.on("fuzz.>")
    async def record(text: str) -> None:
        seen["events"].append(text)

    loop = asyncio.new_event_loop()
    security = None
    if request.param == "signed":
        security = Security(identities=[Identity.generate(n) for n in ("bob", "fuzzer", "checker")])
    rt = Runtime(agents=[bob], limits=Limits(max_depth=32, max_payload=100_000), security=security)
    loop.run_until_complete(rt.__aenter__())
    try:
        yield loop, rt, seen
    finally:
        loop.run_until_complete(rt.__aexit__(None, None, None))
        loop.close()


async def _feed(rt: Runtime, data: bytes) -> None:
    try:
        env = decode_envelope(data)
    except ValidationError:
        return
    # What arrives over a network is decoded first; then it is delivered as it is,
    # except for routing and timing fields (a transport refuses the rest earlier).
    now = time.time()
    if env.kind == "event":
        env = msgspec.structs.replace(env, topic="fuzz.in", sequence=None)
        await rt.transport.append("EVENTS", env, subject=event_subject(env))
        return
    env = msgspec.structs.replace(env, recipient="bob", created=now, deadline=now + 5)
    if env.kind == "request":
        resp = await rt.transport.request(env, 5.0)
        assert resp.kind == "response"
    else:
        await rt.transport.send(env)


def test_near_valid_envelopes_never_break_the_agent_or_the_subscriber(
    serving: tuple[asyncio.AbstractEventLoop, Runtime, dict[str, list[Any]]],
) -> None:
    loop, rt, seen = serving
    loop.run_until_complete(rt.events.start())

    @settings(max_examples=800, deadline=None, suppress_health_check=list(HealthCheck))
    @given(near_valid())
    def run(data: bytes) -> None:
        loop.run_until_complete(_feed(rt, data))

    run()

    async def still_serving() -> None:
        me = rt.agent("checker")
        assert await me.request("bob", "echo", {"text": "alive"}) == "alive"
        await me.publish("fuzz.end", {"text": "alive"})
        for _ in range(2000):
            if "alive" in seen["events"]:
                return
            await asyncio.sleep(0.005)
        raise AssertionError("the subscriber stopped handling events")

    loop.run_until_complete(still_serving())
    assert rt.running
    if rt.security is not None:  # the fuzz reached signature verification
        assert rt.security.refused > 0


def test_valid_envelope_round_trips() -> None:  # the fuzz base itself is valid
    env = decode_envelope(json.dumps(BASE).encode())
    assert decode_envelope(encode_envelope(env)) == env


@pytest.mark.nats
async def test_hostile_bytes_on_nats_are_counted_and_the_agent_keeps_serving(
    nats_server: Any,
) -> None:
    nats = require_module("nats")
    from agentcomm.transports.nats import NatsTransport

    bob = Agent("bob")

    @bob.handler
    async def echo(text: str) -> str:
        return text

    ns = "f" + str(time.monotonic_ns())
    transport = NatsTransport(nats_server.url, namespace=ns)
    hostile = [
        b'{"id": "\x80", "kind": "request", "sender": "x"}',  # not UTF-8
        b"[" * 100_000,
        b'{"id": 1}',
        bytes(range(256)),
    ]
    async with Runtime(transport=transport, agents=[bob], limits=Limits()) as rt:
        raw = await nats.connect(nats_server.url)
        try:
            for data in hostile:
                await raw.publish(f"{ns}.a.bob.n", data)
            await raw.flush()
        finally:
            await raw.close()
        for _ in range(2000):
            if transport.statistics().malformed >= len(hostile):
                break
            await asyncio.sleep(0.005)
        assert transport.statistics().malformed == len(hostile)
        assert await rt.agent("me").request("bob", "echo", {"text": "ok"}) == "ok"
