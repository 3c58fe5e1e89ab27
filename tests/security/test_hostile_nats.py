"""A raw nats-py attacker against a running system: no frame ends a runtime (issue 18).

Each test starts its own ``nats-server -js`` (or uses the session's), runs agentcomm
runtimes on it, and publishes hostile bytes with plain nats-py onto every subject the
library listens on: agent requests and notifications, the event stream, blackboard
and presence buckets, and replies to a request. The runtimes keep serving, each bad
frame is handled once (an error reply, a dead letter, a skipped entry) and counted.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from pathlib import Path
from typing import Any

import pytest

from agentcomm import (
    Agent,
    ConfigurationError,
    DecodeError,
    Runtime,
    TransportError,
    UnsupportedVersion,
    decode_envelope,
)
from agentcomm.core.envelope import invalid_frame_bytes
from agentcomm.observability.presence import read_presence
from agentcomm.testing.extras import require_module
from agentcomm.testing.nats_server import NatsServer

from .hostile import DEEP, frames, until

nats = require_module("nats")

from agentcomm.transports.nats.transport import NatsTransport  # noqa: E402

pytestmark = pytest.mark.nats


def _ns() -> str:
    return "h" + os.urandom(5).hex()


def _billing(seen: list[int]) -> Agent:
    billing = Agent("billing")

    @billing.on("orders.*")
    async def charge(n: int) -> None:
        seen.append(n)

    return billing


def _no_errors(caplog: pytest.LogCaptureFixture) -> None:
    bad = [
        r
        for r in caplog.records
        if r.name.startswith("agentcomm") and (r.levelno >= logging.ERROR or r.exc_info)
    ]
    assert not bad, [r.getMessage() for r in bad]


async def test_the_deep_frame_of_the_issue_is_dead_lettered_once_and_ends_nothing(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    ns = _ns()
    subject = f"{ns}.s.EVENTS.0.orders.created"
    raw = await nats.connect(nats_server.url)
    js = raw.jetstream()
    seen: list[int] = []
    try:
        with caplog.at_level(logging.WARNING):
            async with Runtime(
                transport=NatsTransport(nats_server.url, namespace=ns), agents=[_billing(seen)]
            ) as rt:
                shop = rt.agent("shop")
                await shop.publish("orders.created", {"n": 0})
                await until(lambda: seen == [0], what="the first event")
                ack = await js.publish(subject, DEEP)  # the attacker
                for n in range(1, 6):
                    await shop.publish("orders.created", {"n": n})
                await until(lambda: seen == [0, 1, 2, 3, 4, 5], what="the events after it")
                dls = await rt.events.dead_letters()
                assert [(dl.reason, dl.event.sequence) for dl in dls] == [("invalid", ack.seq)]
                assert "deeper than 256" in (dls[0].last_error or "")
                assert invalid_frame_bytes(dls[0].event) == DEEP  # the raw bytes are kept
                with pytest.raises(ConfigurationError, match="not an envelope"):
                    await rt.events.redrive(dls[0].sequence)  # no event to hand back
                stats = rt.statistics()
                assert stats.rejected_frames == {"event": 1}
                assert rt.events.statistics().rejected_frames == 1
                sub = rt.events.statistics().subscription("billing__charge")
                assert sub.dead_lettered == 1
                assert sub.stopped is None
                assert rt.running
            # While nobody runs, another hostile frame waits in the durable consumer.
            ack2 = await js.publish(subject, b"[" * 50_000)
            seen2: list[int] = []
            async with Runtime(
                transport=NatsTransport(nats_server.url, namespace=ns), agents=[_billing(seen2)]
            ) as rt2:
                await rt2.agent("shop").publish("orders.created", {"n": 6})
                await until(lambda: seen2 == [6], what="the second runtime's event")
                dls = await rt2.events.dead_letters()
                assert [dl.event.sequence for dl in dls] == [ack.seq, ack2.seq]
                info = await js.consumer_info(f"{ns}_EVENTS", "billing__charge")
                assert info.num_ack_pending == 0  # terminated: never handed out again
                assert info.num_redelivered == 0
                assert rt2.statistics().rejected_frames == {"event": 1}
        _no_errors(caplog)
    finally:
        await raw.close()


async def test_bad_direct_frames_get_an_error_reply_or_are_counted(
    nats_server: NatsServer,
) -> None:
    ns = _ns()
    calc = Agent("calc")

    @calc.handler
    async def add(a: int, b: int) -> int:
        return a + b

    transport = NatsTransport(nats_server.url, namespace=ns)
    async with Runtime(transport=transport, agents=[calc]) as rt:
        await transport.flush()
        raw = await nats.connect(nats_server.url)
        try:
            versioned = b'{"id": "1", "kind": "request", "sender": "m", "handler": "add", "v": 2}'
            replies = [
                decode_envelope((await raw.request(f"{ns}.a.calc.r", f, timeout=5)).data)
                for f in (DEEP, versioned, b"\xff\xfe", b'{"a": 1' + b"0" * 5000 + b"}")
            ]
            for f in (DEEP, b"nonsense"):
                await raw.publish(f"{ns}.a.calc.n", f)
                await raw.publish(f"{ns}.a.calc.nb", f)
                await raw.publish(f"{ns}.a.calc.x", f)
            await raw.flush()
        finally:
            await raw.close()
        for r in replies:
            assert r.kind == "response"
            assert r.sender == "calc"
            assert r.error is not None
            assert r.error.code == "validation"
        assert replies[0].error.type == "DecodeError"  # type: ignore[union-attr]
        assert "deeper than 256" in replies[0].error.message  # type: ignore[union-attr]
        assert replies[1].error.type == UnsupportedVersion.__name__  # type: ignore[union-attr]
        assert "understands only wire version 1" in replies[1].error.message  # type: ignore[union-attr]
        want = {"request": 4, "notification": 4, "direct": 2}
        await until(lambda: transport.statistics().rejected_frames == want, 10)
        assert transport.statistics().malformed == 10
        assert await rt.agent("me").request("calc", "add", {"a": 1, "b": 2}) == 3


async def test_bad_replies_give_the_requester_a_transport_error(nats_server: NatsServer) -> None:
    ns = _ns()
    raw = await nats.connect(nats_server.url)
    bad = [
        DEEP,
        b"[" * 300,
        b"",
        b"\xff",
        b'{"id": "1", "kind": "response", "sender": "e", "v": 9}',
    ]
    it = iter(bad)

    async def respond(msg: Any) -> None:
        await msg.respond(next(it))

    await raw.subscribe(f"{ns}.a.evil.r", cb=respond)
    await raw.flush()
    try:
        transport = NatsTransport(nats_server.url, namespace=ns)
        async with Runtime(transport=transport) as rt:
            me = rt.agent("me")
            for _ in bad:
                with pytest.raises(TransportError, match="not a valid envelope"):
                    await me.request("evil", "x", {}, timeout=5)
            assert rt.statistics().rejected_frames == {"reply": len(bad)}
    finally:
        await raw.close()


# -- the fuzz run ---------------------------------------------------------------------------
N_REQUESTS = 3000
N_NOTIFICATIONS = 2500
N_EVENTS = 2500
N_BOARD = 1000
N_PRESENCE = 600
N_REPLIES = 400
BIG = 4  # 5 MB frames (the server below allows 8 MB messages)


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_ten_thousand_hostile_frames_on_every_subject_end_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rng = random.Random(1818)
    corpus = frames(rng, 4000)
    big = [f for _, f in frames(rng, 0, big=BIG)]

    def pick() -> bytes:
        return rng.choice(corpus)[1]

    with NatsServer(tmp_path, config="max_payload: 8388608\n") as server:
        ns = _ns()
        seen: list[int] = []
        calc = Agent("calc")

        @calc.handler
        async def add(a: int, b: int) -> int:
            return a + b

        transport = NatsTransport(server.url, namespace=ns)
        client_transport = NatsTransport(server.url, namespace=ns)
        raw = await nats.connect(server.url)
        js = raw.jetstream(timeout=10)
        caplog.set_level(logging.WARNING)
        try:
            async with (
                Runtime(transport=transport, agents=[calc, _billing(seen)]) as rt,
                Runtime(transport=client_transport) as client_rt,
            ):
                board_changes: list[str] = []
                sub = await rt.board.subscribe("h.", lambda c: board_changes.append(c.key))
                await rt.board.write("h.ok", 1)
                shop = client_rt.agent("shop")
                await shop.publish("orders.created", {"n": -1})
                await until(lambda: seen == [-1] and board_changes == ["h.ok"], 30)
                await transport.flush()
                await until(lambda: bool(transport._bindings), 10)
                await _presence_ready(rt)

                # The normal client keeps asking while the attacker publishes.
                stop = asyncio.Event()
                answered: list[int] = []

                async def normal_client() -> None:
                    me = client_rt.agent("client")
                    i = 0
                    while not stop.is_set():
                        assert (
                            await me.request("calc", "add", {"a": i, "b": 1}, timeout=30) == i + 1
                        )
                        answered.append(i)
                        i += 1

                error_replies = 0

                async def on_reply(msg: Any) -> None:
                    nonlocal error_replies
                    env = decode_envelope(msg.data)
                    assert env.error is not None
                    assert env.error.code == "validation"
                    error_replies += 1

                inbox = f"_INBOX.attacker.{os.urandom(4).hex()}"
                await raw.subscribe(inbox, cb=on_reply)
                reply_frames = iter([pick() for _ in range(N_REPLIES)])

                async def evil(msg: Any) -> None:
                    await msg.respond(next(reply_frames))

                await raw.subscribe(f"{ns}.a.evil.r", cb=evil)
                await raw.flush()

                client = asyncio.create_task(normal_client())
                start = time.monotonic()
                sent = await _attack(raw, js, ns, pick, big, inbox)
                me = client_rt.agent("asker")
                for _ in range(N_REPLIES):
                    with pytest.raises(TransportError):
                        await me.request("evil", "x", {}, timeout=10)
                want = {
                    "request": N_REQUESTS,
                    "notification": N_NOTIFICATIONS + sent["big_direct"],
                    "event": sent["events"],
                    "blackboard": N_BOARD,
                }
                await until(lambda: _counts(rt) == want, 60, "every frame counted")
                await until(lambda: sub.failures == N_BOARD, 30, "every bad change seen")
                await until(lambda: error_replies == N_REQUESTS, 30, "the error replies")
                assert client_rt.statistics().rejected_frames == {"reply": N_REPLIES}
                agents, _ = await read_presence(rt.transport)
                assert {a.agent for a in agents} >= {"calc", "billing"}
                assert rt.statistics().rejected_frames["presence"] == N_PRESENCE

                def dead_lettered() -> int:
                    return rt.events.statistics().subscription("billing__charge").dead_lettered

                await until(lambda: dead_lettered() == sent["events"], 60, "the dead letters")
                snap = await rt.events.refresh()
                assert snap.dead_letters == sent["events"]  # each exactly once
                assert snap.rejected_frames == sent["events"]
                await shop.publish("orders.created", {"n": 1})
                await until(lambda: seen == [-1, 1], 30, "an event after the attack")
                stop.set()
                await client
                assert len(answered) > 0
                assert await rt.board.read_prefix("h.") == {"h.ok": await rt.board.read("h.ok")}
                assert sub.active
                assert rt.running
                assert client_rt.running
                elapsed = time.monotonic() - start
                total = N_REQUESTS + N_NOTIFICATIONS + N_REPLIES + sum(sent.values())
                assert total >= 10_000
                print(f"{total} hostile frames, {len(answered)} normal requests in {elapsed:.1f}s")
        finally:
            await raw.close()
    _no_errors(caplog)


def _counts(rt: Runtime) -> dict[str, int]:
    counts = dict(rt.statistics().rejected_frames)
    counts.pop("presence", None)
    return counts


async def _presence_ready(rt: Runtime) -> None:
    for _ in range(500):
        try:
            agents, _ = await read_presence(rt.transport)
        except Exception:  # the bucket is made by the first announcement
            agents = []
        if agents:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("presence never announced the agents")


async def _attack(
    raw: Any, js: Any, ns: str, pick: Any, big: list[bytes], inbox: str
) -> dict[str, int]:
    """Publish the hostile frames; return how many the server took, by kind."""
    sent = {"events": 0, "big_direct": 0, "board": 0, "presence": 0}
    for i in range(N_REQUESTS):
        await raw.publish(f"{ns}.a.calc.r", pick(), reply=inbox)
        if i % 500 == 0:
            await raw.flush()
    for i in range(N_NOTIFICATIONS):
        await raw.publish(f"{ns}.a.calc.{'n' if i % 2 else 'nb'}", pick())
        if i % 500 == 0:
            await raw.flush()
    for frame in big:
        await raw.publish(f"{ns}.a.calc.n", frame)
        sent["big_direct"] += 1
    await raw.flush()

    async def stored(subject: str, data: bytes, kind: str) -> None:
        try:
            await js.publish(subject, data)
        except nats.errors.Error:
            return  # refused by the server (too large): not counted
        sent[kind] += 1

    events = [pick() for _ in range(N_EVENTS - len(big))] + big
    subject = f"{ns}.s.EVENTS.0.orders.created"
    for i in range(0, len(events), 100):
        await asyncio.gather(*(stored(subject, f, "events") for f in events[i : i + 100]))
    for i in range(0, N_BOARD, 100):
        await asyncio.gather(
            *(
                stored(f"$KV.{ns}_blackboard.h.k{k}", pick(), "board")
                for k in range(i, min(i + 100, N_BOARD))
            )
        )
    for i in range(0, N_PRESENCE, 100):
        await asyncio.gather(
            *(
                stored(f"$KV.{ns}_presence.agents.evil{k}", pick(), "presence")
                for k in range(i, min(i + 100, N_PRESENCE))
            )
        )
    assert sent["board"] == N_BOARD
    assert sent["presence"] == N_PRESENCE
    return sent


def test_the_fuzz_corpus_is_refused_by_the_decoder() -> None:  # the counts rely on it
    for _, f in frames(random.Random(1818), 4000):
        with pytest.raises(DecodeError):
            decode_envelope(f)
