"""Fault tests on a real broker: crashed subscribers, a crashed broker, contended CAS, poison.

Each test starts its own ``nats-server -js`` (killed by pid at the end) and its own
worker processes (always stopped in ``finally``). Counts and deadlines are fixed.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agentcomm import Agent, RetryPolicy, Runtime, TransportError
from agentcomm.core.envelope import Envelope, encode_payload
from agentcomm.testing.extras import require_module
from agentcomm.testing.nats_server import NatsServer, require_nats_server
from agentcomm.transports.streams import ConsumerConfig, StreamConfig

require_module("nats")

import nats.js.errors  # noqa: E402

from agentcomm.transports.nats import NatsTransport  # noqa: E402

pytestmark = [pytest.mark.nats, pytest.mark.slow]

# The worker processes: one small program, the mode is its first argument.
WORKER = r"""
import asyncio, json, sys
from agentcomm import Runtime
from agentcomm.core.envelope import Envelope, encode_payload
from agentcomm.core.errors import TransportError
from agentcomm.transports.nats import NatsTransport
from agentcomm.transports.streams import ConsumerConfig

mode, url, ns = sys.argv[1:4]

async def subscriber(out, pause_after):
    # Records each event's id, flushes, and only then acks: a kill in between means
    # redelivery (a duplicate that the id recognises), never a loss. With pause_after,
    # it stops between recording and acking once that many are recorded, and says so:
    # the test kills it exactly there.
    t = NatsTransport(url, namespace=ns)
    await t.start()
    c = await t.open_consumer(
        "WORK", ConsumerConfig(name="workers", deliver="all", ack_wait=2.0, max_ack_pending=500)
    )
    done = 0
    with open(out, "a") as f:
        while True:
            msgs = await c.fetch(100, 1.0)
            for m in msgs:
                f.write(m.envelope.id + "\n")
            f.flush()
            done += len(msgs)
            if pause_after and done >= pause_after:
                open(out + ".paused", "w").write(str(len(msgs)))
                await asyncio.Event().wait()  # received, recorded, not acked: kill me
            for m in msgs:
                await m.ack()

async def publisher(out, first, count):
    t = NatsTransport(url, namespace=ns, api_timeout=1.0)
    await t.start()
    with open(out, "a") as f:
        for n in range(first, first + count):
            env = Envelope(id=f"p{n}", kind="event", sender="pub", topic="load.item",
                           payload=encode_payload({"n": n}))
            while True:  # retry with the same message id until acknowledged
                try:
                    await t.append("LOAD", env, msg_id=f"m{n}")
                    break
                except TransportError:
                    await asyncio.sleep(0.05)
            f.write(f"{n}\n")
            f.flush()
    await t.close()

async def incrementer(count):
    async with Runtime(transport=NatsTransport(url, namespace=ns)) as rt:
        for _ in range(count):
            await rt.board.update("counter", lambda v: (v or 0) + 1, max_attempts=100_000)

async def holder(out, ordered):
    # A member of group "auditors" whose handler records the event and never ends.
    from agentcomm import Agent
    a = Agent("auditor")

    @a.on("jobs.*", name="audit", group="auditors", ordered=ordered)
    async def audit(n: int) -> None:
        with open(out, "a") as f:
            f.write(f"{n}\n")
        await asyncio.Event().wait()

    async with Runtime(transport=NatsTransport(url, namespace=ns), agents=[a]):
        await asyncio.Event().wait()

if mode == "hold":
    asyncio.run(holder(sys.argv[4], False))
elif mode == "hold-ordered":
    asyncio.run(holder(sys.argv[4], True))
elif mode == "sub":
    asyncio.run(subscriber(sys.argv[4], int(sys.argv[5])))
elif mode == "pub":
    asyncio.run(publisher(sys.argv[4], int(sys.argv[5]), int(sys.argv[6])))
elif mode == "cas":
    asyncio.run(incrementer(int(sys.argv[4])))
"""


class Workers:
    """Worker processes started by a test; every one is stopped by pid at the end."""

    def __init__(self, url: str, namespace: str) -> None:
        self.url = url
        self.namespace = namespace
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, mode: str, *args: object) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-c", WORKER, mode, self.url, self.namespace, *map(str, args)]
        proc = subprocess.Popen(argv)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[NatsServer]:
    require_nats_server()
    with NatsServer(tmp_path / "nats") as server:
        yield server


@pytest.fixture
def workers(broker: NatsServer) -> Iterator[Workers]:
    w = Workers(broker.url, "f" + os.urandom(4).hex())
    try:
        yield w
    finally:
        w.stop_all()


async def wait_until(cond: Callable[[], bool], deadline: float, what: str) -> None:
    """Poll an external condition (another process's progress) until ``deadline`` s."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while not cond():
        if loop.time() > end:
            pytest.fail(f"timed out after {deadline}s waiting for {what}")
        await asyncio.sleep(0.02)


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


@pytest.mark.timeout(120)
async def test_subscriber_killed_mid_stream_loses_nothing(workers: Workers, tmp_path: Path) -> None:
    total = 10_000
    transport = NatsTransport(workers.url, namespace=workers.namespace)
    await transport.start()
    try:
        await transport.ensure_stream(StreamConfig(name="WORK", max_msgs=50_000))

        async def publish(first: int) -> None:
            for n in range(first, total, 50):
                env = Envelope(
                    id=f"e{n}", kind="event", sender="t", topic="work.item",
                    payload=encode_payload({"n": n}),
                )  # fmt: skip
                await transport.append("WORK", env, msg_id=f"e{n}")

        await asyncio.gather(*(publish(i) for i in range(50)))
        assert (await transport.stream_info("WORK")).messages == total

        out = tmp_path / "processed.txt"
        paused = Path(f"{out}.paused")
        first = workers.start("sub", out, 2_000)
        await wait_until(paused.exists, 60, "the subscriber to hold 2,000+ events")
        os.kill(first.pid, signal.SIGKILL)  # a batch received and recorded, not acked
        first.wait(timeout=10)
        unacked = int(lines(paused)[0])
        assert unacked > 0
        assert len(set(lines(out))) < total, "the subscriber finished before the kill"

        second = workers.start("sub", out, 0)
        await wait_until(
            lambda: len(set(lines(out))) >= total and len(lines(out)) >= total + unacked,
            90,
            "every event processed and the unacked batch redelivered",
        )
        os.kill(second.pid, signal.SIGTERM)
        second.wait(timeout=10)

        seen = lines(out)
        assert set(seen) == {f"e{n}" for n in range(total)}  # none lost
        duplicates = len(seen) - len(set(seen))  # redelivered, recognised by message id
        assert duplicates >= unacked  # the unacked batch came back after the crash
        consumer = await transport.open_consumer("WORK", ConsumerConfig(name="workers"))
        info = await consumer.info()
        await consumer.close()
        assert info.num_pending == 0
    finally:
        await transport.close()


@pytest.mark.timeout(150)
async def test_broker_killed_and_restarted_loses_no_acknowledged_publish(
    broker: NatsServer, workers: Workers, tmp_path: Path
) -> None:
    per_publisher, publishers = 5_000, 3
    setup = NatsTransport(broker.url, namespace=workers.namespace)
    await setup.start()
    await setup.ensure_stream(StreamConfig(name="LOAD", max_msgs=100_000))
    await setup.close()

    outs = [tmp_path / f"acked-{i}.txt" for i in range(publishers)]
    procs = [
        workers.start("pub", outs[i], i * per_publisher, per_publisher) for i in range(publishers)
    ]
    acked = lambda: sum(len(lines(o)) for o in outs)  # noqa: E731
    await wait_until(lambda: acked() >= 3_000, 60, "3,000 acknowledged publishes")
    await asyncio.to_thread(broker.kill)  # SIGKILL while the publishers are sending
    assert acked() < publishers * per_publisher
    await asyncio.to_thread(broker.start)  # same port, same store
    await wait_until(lambda: all(p.poll() is not None for p in procs), 120, "the publishers")
    assert [p.returncode for p in procs] == [0] * publishers

    confirmed = {int(n) for o in outs for n in lines(o)}
    assert len(confirmed) == publishers * per_publisher
    transport = NatsTransport(broker.url, namespace=workers.namespace)
    await transport.start()
    try:
        consumer = await transport.open_consumer(
            "LOAD", ConsumerConfig(name="audit", deliver="all", max_ack_pending=10_000)
        )
        stored: list[int] = []
        for _ in range(200):  # bounded: 15,000 events in batches of up to 500
            msgs = await consumer.fetch(500, 1.0)
            if not msgs:
                break
            for m in msgs:
                stored.append(int(m.envelope.id[1:]))
                await m.ack()
        await consumer.close()
    finally:
        await transport.close()
    assert confirmed <= set(stored)  # no acknowledged publish is lost
    assert len(stored) == len(set(stored))  # retries were deduplicated by message id


@pytest.mark.timeout(120)
async def test_four_processes_compare_and_set_count_exactly(
    broker: NatsServer, workers: Workers
) -> None:
    procs = [workers.start("cas", 500) for _ in range(4)]
    await wait_until(lambda: all(p.poll() is not None for p in procs), 100, "the incrementers")
    assert [p.returncode for p in procs] == [0, 0, 0, 0]
    async with Runtime(transport=NatsTransport(broker.url, namespace=workers.namespace)) as rt:
        entry = await rt.board.read("counter")
    assert entry is not None
    assert entry.value == 2_000


@pytest.mark.timeout(60)
async def test_poison_event_is_tried_four_times_then_dead_lettered_once(
    broker: NatsServer,
) -> None:
    backoff = 0.3
    attempts: list[float] = []
    handled: list[int] = []
    others_done = asyncio.Event()
    worker = Agent("worker", concurrency=1)

    @worker.on("jobs.*", retry=RetryPolicy(max_attempts=4, backoff=backoff, jitter=0.0))
    async def handle(n: int) -> None:
        if n < 0:
            attempts.append(time.monotonic())
            raise RuntimeError("poison")
        handled.append(n)
        if len(handled) == 20:
            others_done.set()

    transport = NatsTransport(broker.url, namespace="p" + os.urandom(4).hex())
    async with Runtime(transport=transport, agents=[worker]) as rt:
        producer = rt.agent("producer")
        await producer.publish("jobs.bad", {"n": -1})
        for n in range(20):
            await producer.publish("jobs.ok", {"n": n})
        async with asyncio.timeout(20):
            await others_done.wait()  # the others flow while the poison waits to retry
            await rt.events.wait_dead_letter(timeout=20)  # stored after the last attempt
        dead = await rt.events.dead_letters()
        assert len(dead) == 1
    assert len(attempts) == 4
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    for i, gap in enumerate(gaps):  # 0.3, 0.6, 1.2 s: exponential backoff
        assert gap >= backoff * 2**i * 0.9, gaps
        assert gap < backoff * 2**i + 1.5, gaps
    assert len(handled) == 20
    letter = dead[0]
    assert (letter.attempts, letter.topic) == (4, "jobs.bad")
    assert letter.last_error is not None
    assert "poison" in letter.last_error


@pytest.mark.timeout(90)
async def test_kv_watch_warns_when_the_broker_goes_and_when_it_is_back(
    broker: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    caplog.set_level(logging.WARNING)
    t = NatsTransport(broker.url, namespace="w" + os.urandom(4).hex())
    await t.start()
    try:
        await t.kv_open("board", history=1)
        watcher = await t.kv_watch("board", snapshot=False)
        assert await watcher.__anext__() is None  # the end of the (empty) snapshot

        async def first_change() -> Any:
            return await watcher.__anext__()

        got = asyncio.ensure_future(first_change())
        warnings = lambda: [  # noqa: E731
            r.getMessage() for r in caplog.records if r.getMessage().startswith("watch on")
        ]
        await asyncio.to_thread(broker.kill)
        await asyncio.to_thread(broker.start)  # same port and store; the watch consumer is gone
        for _ in range(600):  # bounded: until a put lands once JetStream answers again
            try:
                await t.kv_put("board", "k", b"v")
                break
            except TransportError:
                await asyncio.sleep(0.1)
        async with asyncio.timeout(30):
            entry = await got
        assert entry is not None
        assert entry.key == "k"
        await wait_until(lambda: any("recovered" in m for m in warnings()), 30, "recovery")
        failed = [m for m in warnings() if "retrying until the broker answers" in m]
        assert len(failed) == 1  # once per outage, not once per retry
        await watcher.aclose()
    finally:
        await t.close()


def test_no_stream_response_is_a_transport_error_unless_the_stream_is_missing() -> None:
    import nats.js.errors

    from agentcomm.core.errors import ConfigurationError
    from agentcomm.transports.nats.errors import js_error

    err = js_error(nats.js.errors.NoStreamResponseError(), "append to EVENTS")
    assert isinstance(err, TransportError)
    assert not isinstance(err, ConfigurationError)


@pytest.mark.timeout(30)
async def test_append_to_a_missing_stream_is_still_a_configuration_error(
    broker: NatsServer,
) -> None:
    from agentcomm.core.errors import ConfigurationError

    t = NatsTransport(broker.url, namespace="m" + os.urandom(4).hex())
    await t.start()
    try:
        env = Envelope(id="e1", kind="event", sender="s", topic="a.b", payload=encode_payload({}))
        with pytest.raises(ConfigurationError, match="ensure_stream"):
            await t.append("NEVER", env)
    finally:
        await t.close()


@pytest.mark.timeout(60)
async def test_a_killed_group_member_hands_its_events_on_within_5s(
    workers: Workers, tmp_path: Path
) -> None:
    """Issue 17, fast crash recovery: short ack wait, heartbeats while a handler runs."""
    out = tmp_path / "held.txt"
    proc = workers.start("hold", out)
    got: list[tuple[int, float]] = []
    b = Agent("auditor")

    @b.on("jobs.*", name="audit", group="auditors")
    async def audit(n: int) -> None:
        got.append((n, time.monotonic()))

    transport = NatsTransport(workers.url, namespace=workers.namespace)
    async with Runtime(transport=transport) as rt:
        jsm = transport.client.jetstream()
        loop = asyncio.get_running_loop()
        end = loop.time() + 20
        while True:  # the holder's consumer exists and waits for events
            try:
                info = await jsm.consumer_info(f"{workers.namespace}_EVENTS", "auditors")
                if info.num_waiting:
                    break
            except nats.js.errors.NotFoundError:
                pass
            assert loop.time() < end, "the holder never subscribed"
            await asyncio.sleep(0.05)
        await rt.agent("shop").publish("jobs.new", {"n": 1})
        await wait_until(lambda: bool(lines(out)), 20, "the holder taking the event")
        await rt.attach(b)
        # Held past the 4 s ack wait: the heartbeats keep it from being redelivered.
        await asyncio.sleep(6.0)
        assert got == []
        os.kill(proc.pid, signal.SIGKILL)
        killed = time.monotonic()
        proc.wait(timeout=10)
        await wait_until(lambda: bool(got), 15, "the event handed to the other member")
    took = got[0][1] - killed
    print(f"\nheld event redelivered to the surviving member {took:.2f}s after SIGKILL")
    assert got[0][0] == 1
    assert took < 5.0


@pytest.mark.timeout(60)
async def test_an_ordered_group_keeps_a_killed_members_key_until_its_event_comes_back(
    workers: Workers, tmp_path: Path
) -> None:
    """Issue 17, ordered groups: while a member holds an event of a key, no other member
    gets a later event of that key; killed, its event comes back first, within 5 s."""
    from agentcomm.pubsub.partitions import partition_durable, partition_of

    out = tmp_path / "held.txt"
    proc = workers.start("hold-ordered", out)
    got: list[tuple[int, float]] = []
    b = Agent("auditor")

    @b.on("jobs.*", name="audit", group="auditors", ordered=True)
    async def audit(n: int) -> None:
        got.append((n, time.monotonic()))

    consumer = partition_durable("auditors", partition_of("acct-7"))
    transport = NatsTransport(workers.url, namespace=workers.namespace)
    async with Runtime(transport=transport) as rt:
        jsm = transport.client.jetstream()
        loop = asyncio.get_running_loop()
        end = loop.time() + 20
        while True:  # the holder's consumer of that partition waits for events
            try:
                info = await jsm.consumer_info(f"{workers.namespace}_EVENTS", consumer)
                if info.num_waiting:
                    break
            except nats.js.errors.NotFoundError:
                pass
            assert loop.time() < end, "the holder never subscribed"
            await asyncio.sleep(0.05)
        shop = rt.agent("shop")
        await shop.publish("jobs.new", {"n": 1}, key="acct-7")
        await wait_until(lambda: bool(lines(out)), 20, "the holder taking the event")
        await rt.attach(b)
        for n in range(2, 6):
            await shop.publish("jobs.new", {"n": n}, key="acct-7")
        await asyncio.sleep(6.0)  # past the 4 s ack wait: heartbeats keep event 1 held
        assert got == [], "another member got an event of a key that one member holds"
        os.kill(proc.pid, signal.SIGKILL)
        killed = time.monotonic()
        proc.wait(timeout=10)
        await wait_until(lambda: len(got) == 5, 20, "the key's events on the other member")
    took = got[0][1] - killed
    print(f"\nordered group: the held event came back {took:.2f}s after SIGKILL, then the rest")
    assert [n for n, _ in got] == [1, 2, 3, 4, 5]
    assert took < 5.0
