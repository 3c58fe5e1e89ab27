"""A 3-node JetStream cluster on loopback, with faults (issue 17; docs/nats.md, "Clusters").

The tests start three nats-server processes routed to each other, run agentcomm on
them with three replicas of every stream and bucket, and SIGKILL the node that leads
what is being used: nothing acknowledged is lost, compare-and-set counts exactly,
and request/reply recovers. Each test prints what it measured (run with ``-s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentcomm import Agent, NoResponders, RequestTimeout, Runtime, TransportError
from agentcomm.testing.extras import require_module
from agentcomm.testing.nats_cluster import NatsCluster
from agentcomm.testing.nats_server import require_nats_server

require_module("nats")

import nats  # noqa: E402

from agentcomm.transports.nats import NatsTransport  # noqa: E402

pytestmark = [pytest.mark.nats, pytest.mark.slow]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    require_nats_server()
    with NatsCluster(tmp_path / "cluster", size=3) as c:
        yield c


def _transport(cluster: NatsCluster, ns: str) -> NatsTransport:
    return NatsTransport(cluster.urls, namespace=ns, replicas=3)


async def _leader(cluster: NatsCluster, stream: str) -> str:
    """The name of the node leading ``stream`` (asked of any live node)."""
    for url in [n.url for n in cluster.nodes if n.running]:
        try:
            nc = await nats.connect(url, allow_reconnect=False, connect_timeout=2)
        except Exception:
            continue
        try:
            info = await nc.jetstream(timeout=5).stream_info(stream)
            if info.cluster is not None and info.cluster.leader:
                return info.cluster.leader
        finally:
            await nc.close()
    raise AssertionError(f"no leader for {stream}")


async def _caught_up(cluster: NatsCluster, stream: str, name: str, timeout: float = 30) -> None:
    """Wait until node ``name`` is a current replica of ``stream`` (or leads it)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        nc = await nats.connect(cluster.node(name).url, allow_reconnect=False)
        try:
            info = await nc.jetstream(timeout=5).stream_info(stream)
            cl = info.cluster
            if cl is not None and (
                cl.leader == name or any(r.name == name and r.current for r in cl.replicas or [])
            ):
                return
        except Exception:
            pass
        finally:
            await nc.close()
        await asyncio.sleep(0.2)
    raise AssertionError(f"{name} did not catch up on {stream} within {timeout}s")


async def test_stream_leader_killed_while_publishing_and_consuming(cluster: NatsCluster) -> None:
    ns, total = "cl1", 1500
    handled: Counter[int] = Counter()
    all_handled = asyncio.Event()
    sub = Agent("auditor")

    @sub.on("orders.*", name="audit")
    async def audit(i: int) -> None:
        handled[i] += 1
        if len(handled) == total:
            all_handled.set()

    acked: set[int] = set()
    failures = 0
    async with (
        Runtime(transport=_transport(cluster, ns), agents=[sub]),
        Runtime(transport=_transport(cluster, ns)) as pub_rt,
    ):
        shop = pub_rt.agent("shop")
        leader = await _leader(cluster, f"{ns}_EVENTS")
        killed_at = None
        for i in range(total):
            if i == total // 3:
                cluster.node(leader).kill()
                killed_at = time.monotonic()
            while True:  # the writer's retry, as docs/nats.md says: same message id
                try:
                    await shop.publish("orders.created", {"i": i}, msg_id=f"order-{i}")
                    break
                except TransportError:
                    failures += 1
                    await asyncio.sleep(0.1)
            acked.add(i)
        assert killed_at is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_handled.wait(), 60)
        cluster.node(leader).start()
        await _caught_up(cluster, f"{ns}_EVENTS", leader)
        new_leader = await _leader(cluster, f"{ns}_EVENTS")
    lost = acked - set(handled)
    duplicates = sum(n - 1 for n in handled.values())
    print(
        f"\nstream leader {leader} killed at event {total // 3}; new leader {new_leader}; "
        f"{total} acknowledged, {len(lost)} lost, {duplicates} handled twice, "
        f"{failures} publish calls failed and were retried"
    )
    assert not lost
    assert set(handled) == acked  # nothing handled that was never published


async def test_kv_leader_killed_during_compare_and_set_increments(cluster: NatsCluster) -> None:
    ns, writers, each = "cl2", 4, 500
    failures = 0
    reasons: Counter[str] = Counter()
    async with Runtime(transport=_transport(cluster, ns)) as rt:
        board = rt.board
        await board.write("counter", 0)
        leader = await _leader(cluster, f"KV_{ns}_blackboard")
        done = 0
        quarter = asyncio.Event()

        async def writer() -> None:
            nonlocal failures, done
            for _ in range(each):
                while True:
                    try:
                        await board.update("counter", lambda n: (n or 0) + 1, max_attempts=1000)
                        break
                    except TransportError as exc:
                        failures += 1  # nothing stored: the writer tries again
                        reasons[str(exc)[:90]] += 1
                        await asyncio.sleep(0.1)
                done += 1
                if done == writers * each // 4:
                    quarter.set()

        async def killer() -> None:
            await quarter.wait()
            cluster.node(leader).kill()

        await asyncio.gather(killer(), *(writer() for _ in range(writers)))
        cluster.node(leader).start()
        await _caught_up(cluster, f"KV_{ns}_blackboard", leader)
        # A read may be answered by any replica (direct get), one that has not applied
        # the last write yet: read until the replicas agree, within a bound.
        end = time.monotonic() + 10
        while True:
            entry = await board.read("counter")
            assert entry is not None
            if entry.value == writers * each or time.monotonic() > end:
                break
            await asyncio.sleep(0.1)
    print(f"\nKV leader {leader} killed; counter {entry.value}; {failures} failed update calls")
    print(dict(reasons))
    assert entry.value == writers * each


async def test_request_reply_rides_out_a_node_loss(cluster: NatsCluster) -> None:
    ns = "cl3"
    calc = Agent("calc")

    @calc.handler
    async def add(a: int, b: int) -> int:
        return a + b

    # The agent connects to node 1 only (it learns the others from the cluster), the
    # caller to node 2; node 1 is killed: the agent's connection moves to a node it
    # learned of, and requests succeed again.
    server_side = NatsTransport(cluster.nodes[0].url, namespace=ns)
    caller_side = NatsTransport([cluster.nodes[1].url], namespace=ns)
    async with Runtime(transport=server_side, agents=[calc]), Runtime(transport=caller_side) as rt:
        me = rt.agent("me")
        assert await me.request("calc", "add", {"a": 1, "b": 2}, timeout=5) == 3
        cluster.nodes[0].kill()
        killed = time.monotonic()
        errors: Counter[str] = Counter()
        while True:
            try:
                assert await me.request("calc", "add", {"a": 2, "b": 2}, timeout=1) == 4
                break
            except (NoResponders, RequestTimeout, TransportError) as exc:  # typed, fast
                errors[type(exc).__name__] += 1
                assert time.monotonic() - killed < 20, "requests never recovered"
                await asyncio.sleep(0.05)
        recovered = time.monotonic() - killed
    print(f"\nnode n1 killed: requests served again after {recovered:.2f}s; errors {dict(errors)}")
    assert recovered < 20
