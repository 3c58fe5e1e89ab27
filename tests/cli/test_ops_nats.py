"""The operator CLI against a running system on NATS: agents, tools, stats, dlq, tail, board.

Agents run in this test's runtime on a private ``nats-server -js``; each command runs
as a real ``python -m agentcomm`` process and its output (text and ``--json``) is checked.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

from agentcomm.testing.extras import require_module

require_module("nats")

from agentcomm import Agent, Reject, Runtime  # noqa: E402
from agentcomm.observability.presence import Presence, read_presence  # noqa: E402
from agentcomm.testing.nats_server import NatsServer  # noqa: E402
from agentcomm.transports.nats.transport import NatsTransport  # noqa: E402

pytestmark = [pytest.mark.nats, pytest.mark.slow]

calc = Agent("calc")


@calc.handler
async def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


ledger = Agent("ledger")


@ledger.on("orders.*", start="all")
async def book(order_id: str, amount: float) -> None:
    if amount < 0:
        raise Reject("negative amount")


async def cli(*args: str, timeout: float = 30) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agentcomm", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    async with asyncio.timeout(timeout):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in text.splitlines() if x.strip()]


async def wait_for(cond: Any, what: str, deadline: float = 10.0) -> Any:
    end = asyncio.get_running_loop().time() + deadline
    while True:
        got = await cond()
        if got:
            return got
        if asyncio.get_running_loop().time() > end:
            pytest.fail(f"{what} did not happen within {deadline}s")
        await asyncio.sleep(0.05)


@pytest.fixture
async def system(nats_server: NatsServer) -> AsyncIterator[tuple[Runtime, list[str]]]:
    ns = "ops" + os.urandom(4).hex()
    rt = Runtime(transport=NatsTransport(nats_server.url, namespace=ns), agents=[calc, ledger])
    Presence.install(rt, interval=0.2)
    async with rt:
        yield rt, ["--nats", nats_server.url, "--namespace", ns]


async def _announced(rt: Runtime) -> bool:
    agents, runtimes = await read_presence(rt.transport)
    return {a.agent for a in agents} >= {"calc", "ledger"} and bool(runtimes)


@pytest.mark.timeout(90)
async def test_agents_tools_stats_and_dlq(system: tuple[Runtime, list[str]]) -> None:
    rt, opts = system
    me = rt.agent("me")
    assert await me.request("calc", "add", {"a": 2, "b": 3}) == 5
    await me.publish("orders.created", {"order_id": "o-1", "amount": 10.0})
    await me.publish("orders.created", {"order_id": "o-2", "amount": -1.0})

    async def settled() -> bool:
        snap = await rt.events.refresh()
        s = snap.subscription("ledger__book")
        return s.acked == 1 and s.dead_lettered == 1

    await wait_for(settled, "both events handled")
    await wait_for(lambda: _announced(rt), "presence")

    rc, out, _ = await cli("agents", *opts, "--json")
    assert rc == 0
    recs = {r["agent"]: r for r in lines(out)}
    assert set(recs) == {"calc", "ledger", "me"}
    assert recs["calc"]["pid"] == os.getpid()
    assert [t["handler"] for t in recs["calc"]["tools"]] == ["add"]
    assert recs["ledger"]["subscriptions"][0]["pattern"] == "orders.*"
    rc, out, _ = await cli("agents", *opts)
    assert rc == 0
    assert "calc" in out
    assert "orders.*" in out
    assert f":{os.getpid()}" in out

    rc, out, _ = await cli("tools", *opts, "--json")
    assert rc == 0
    (tool,) = lines(out)
    assert (tool["agent"], tool["handler"], tool["description"]) == (
        "calc",
        "add",
        "Add two integers.",
    )
    assert tool["input_schema"]["properties"]["a"] == {"type": "integer"}
    rc, out, _ = await cli("tools", *opts)
    assert rc == 0
    assert "Add two integers." in out
    assert "a: integer" in out

    async def stats_seen() -> dict[str, Any] | None:
        rc, out, _ = await cli("stats", *opts, "--json")
        assert rc == 0
        (snap,) = lines(out)
        topics = {t["topic"]: t for t in snap["topics"]}
        ok = topics.get("orders.created", {}).get("published") == 2
        return snap if ok and snap["agents"] else None

    snap = await wait_for(stats_seen, "stats with the published events")
    assert snap["dead_letters"] == 1
    assert snap["events_stored"] == 2
    (sub,) = snap["subscriptions"]
    assert (sub["subscription"], sub["pattern"], sub["lag"]) == ("ledger__book", "orders.*", 0)
    assert sub["dead_lettered"] == 1
    agents = {a["agent"]: a for a in snap["agents"]}
    assert agents["calc"]["handled"] == 1
    rc, out, _ = await cli("stats", *opts, "--watch", "--interval", "0.1", "--count", "2")
    assert rc == 0
    assert out.count("ledger__book") == 2
    assert "dead letters: 1" in out

    rc, out, _ = await cli("dlq", "list", *opts, "--json")
    assert rc == 0
    (dl,) = lines(out)
    assert (dl["reason"], dl["subscription"], dl["topic"]) == (
        "rejected",
        "ledger__book",
        "orders.created",
    )
    rc, out, _ = await cli("dlq", "list", *opts)
    assert rc == 0
    assert "negative amount" in out
    rc, out, _ = await cli("dlq", "show", str(dl["sequence"]), *opts)
    assert rc == 0
    assert json.loads(out)["event"]["payload"]["order_id"] == "o-2"
    rc, out, err = await cli("dlq", "show", "999", *opts)
    assert rc == 1
    assert "agentcomm dlq list" in err
    rc, out, _ = await cli("dlq", "redrive", str(dl["sequence"]), *opts, "--json")
    assert rc == 0
    assert lines(out)[0]["topic"] == "orders.created"

    async def redriven() -> bool:  # delivered again, rejected again: a new dead letter
        snap = await rt.events.refresh()
        return snap.subscription("ledger__book").dead_lettered == 2

    await wait_for(redriven, "the redriven event's second dead letter")
    rc, out, _ = await cli("dlq", "list", *opts, "--json")
    assert [d["sequence"] for d in lines(out)] == [dl["sequence"] + 1]


@pytest.mark.timeout(60)
async def test_tail_shows_requests_responses_and_events(
    system: tuple[Runtime, list[str]],
) -> None:
    rt, opts = system
    me = rt.agent("me")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agentcomm", "tail", "calc", "--count", "2", "--json", *opts,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    async with asyncio.timeout(30):
        ready = await proc.stderr.readline()
    assert b"watching" in ready
    await me.publish("orders.created", {"order_id": "o-3", "amount": 1.0})  # filtered out
    assert await me.request("calc", "add", {"a": 1, "b": 1}) == 2
    async with asyncio.timeout(30):
        out, _ = await proc.communicate()
    assert proc.returncode == 0
    # requests and responses travel on different subjects: their lines may swap
    req, resp = sorted(lines(out.decode()), key=lambda r: r["kind"] != "request")
    assert (req["sender"], req["recipient"], req["handler"], req["kind"]) == (
        "me",
        "calc",
        "add",
        "request",
    )
    assert json.loads(req["preview"]) == {"a": 1, "b": 1}
    assert (resp["sender"], resp["kind"], resp["preview"]) == ("calc", "response", "2")

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agentcomm", "tail", "orders.*", "--count", "2", *opts,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    async with asyncio.timeout(30):
        await proc.stderr.readline()
    await me.publish("orders.paid", {"order_id": "o-4", "amount": 2.0})
    await me.publish("orders.paid", {"order_id": "o-5", "amount": 2.0})
    async with asyncio.timeout(30):
        out, _ = await proc.communicate()
    text = out.decode()
    first, second = text.splitlines()  # once each: the subscriber's fetch is not shown again
    assert '"o-4"' in first
    assert '"o-5"' in second
    assert "me -> orders.paid" in text
    assert "event" in text
    assert '"o-4"' in text


@pytest.mark.timeout(60)
async def test_board_get_list_history_watch(system: tuple[Runtime, list[str]]) -> None:
    rt, opts = system
    await rt.board.write("plan.goal", {"text": "ship it"})
    await rt.board.write("plan.goal", {"text": "ship it today"})
    await rt.board.write("plan.owner", "ana")

    rc, out, _ = await cli("board", "get", "plan.goal", *opts, "--json")
    assert rc == 0
    (entry,) = lines(out)
    assert entry["value"] == {"text": "ship it today"}
    assert entry["author"] == "runtime"
    rc, out, _ = await cli("board", "get", "plan.goal", *opts)
    assert rc == 0
    assert '"ship it today"' in out
    assert "revision" in out
    rc, out, err = await cli("board", "get", "plan.nope", *opts)
    assert rc == 1
    assert "no key 'plan.nope'" in err
    rc, out, _ = await cli("board", "list", "plan.", *opts, "--json")
    assert [e["key"] for e in lines(out)] == ["plan.goal", "plan.owner"]
    rc, out, _ = await cli("board", "list", *opts)
    assert rc == 0
    assert "plan.owner" in out
    assert '"ana"' in out
    rc, out, _ = await cli("board", "history", "plan.goal", *opts, "--json")
    assert [c["entry"]["value"]["text"] for c in lines(out)] == ["ship it", "ship it today"]
    rc, out, err = await cli("board", "list", *opts, "--bucket", "nope")
    assert rc == 1
    assert "no blackboard bucket 'nope'" in err

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agentcomm", "board", "watch", "plan.", "--count", "3", *opts,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    async with asyncio.timeout(30):
        await proc.stderr.readline()
    await rt.board.write("plan.owner", "bo")
    async with asyncio.timeout(30):
        out, _ = await proc.communicate()
    text = out.decode()
    assert text.count("(initial)") == 2
    assert "plan.owner  put" in text
    assert '"bo"' in text


@pytest.mark.timeout(60)
async def test_errors_say_what_to_do(nats_server: NatsServer) -> None:
    rc, _, err = await cli("agents", "--nats", "nats://127.0.0.1:1")
    assert rc == 1
    assert "cannot reach NATS at nats://127.0.0.1:1" in err
    assert "nats-server -js" in err
    opts = ["--nats", nats_server.url, "--namespace", "empty" + os.urandom(4).hex()]
    rc, out, err = await cli("agents", *opts)
    assert rc == 1  # said, and an exit code that says it (issue 15)
    assert out == ""
    assert "no agents announce themselves" in err
    rc, _, err = await cli("dlq", "list", *opts)
    assert rc == 1
    assert "no dead-letter queue" in err


@pytest.mark.timeout(60)
async def test_presence_records_leave_with_the_runtime(nats_server: NatsServer) -> None:
    ns = "pres" + os.urandom(4).hex()
    reader = NatsTransport(nats_server.url, namespace=ns)
    await reader.start()
    try:
        rt = Runtime(transport=NatsTransport(nats_server.url, namespace=ns), agents=[calc])
        async with rt:
            await wait_for(lambda: _names(reader), "calc announced")
            helper = await rt.attach(Agent("helper"))
            await rt.extension("presence", Presence).publish()
            assert await _names(reader, {"calc", "helper"})
            await rt.detach(helper)
            await rt.extension("presence", Presence).publish()
            assert await _names(reader, {"calc"})
        agents, runtimes = await read_presence(reader)
        assert agents == []
        assert runtimes == []
    finally:
        await reader.close()


async def _names(reader: NatsTransport, want: set[str] | None = None) -> bool:
    try:
        agents, _ = await read_presence(reader)
    except Exception:  # the bucket may not exist yet
        return False
    names = {a.agent for a in agents}
    return names == (want or {"calc"})


AGENT_MODULE = '''
from agentcomm import Agent

echo = Agent("echo")


@echo.handler
async def say(text: str) -> str:
    """Say it back."""
    return text
'''


@pytest.mark.timeout(90)
async def test_agents_run_in_another_process_are_listed_until_they_stop(
    nats_server: NatsServer, tmp_path: Any
) -> None:
    module = tmp_path / "echoagents.py"
    module.write_text(AGENT_MODULE)
    ns = "opsrun" + os.urandom(4).hex()
    opts = ["--nats", nats_server.url, "--namespace", ns]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agentcomm", "run", f"{module}:echo", *opts,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            assert (await proc.stdout.readline()).startswith(b"agentcomm: running")

        async def listed() -> list[dict[str, Any]]:
            rc, out, err = await cli("agents", *opts, "--json")
            if rc == 1 and "no agents announce themselves" in err:
                return []
            assert rc == 0
            return lines(out)

        (rec,) = await wait_for(listed, "the agent process announced")
        assert (rec["agent"], rec["pid"]) == ("echo", proc.pid)
        rc, out, _ = await cli("tools", *opts)
        assert rc == 0
        assert "Say it back." in out
    finally:
        if proc.returncode is None:
            proc.terminate()
        async with asyncio.timeout(30):
            await proc.wait()
    assert await listed() == []  # a clean shutdown removes the record at once


@pytest.mark.timeout(60)
async def test_presence_failures_never_fail_the_runtime(
    nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    t = NatsTransport(nats_server.url, namespace="presfail" + os.urandom(4).hex())
    calls = 0

    async def refused(*args: Any, **kwargs: Any) -> int:
        nonlocal calls
        calls += 1
        raise RuntimeError("refused by the broker")

    monkeypatch.setattr(t, "kv_put", refused)
    rt = Runtime(transport=t, agents=[calc])
    Presence.install(rt, interval=0.05)

    async def retried() -> bool:
        return calls >= 3

    with caplog.at_level("WARNING", logger="agentcomm.presence"):
        async with rt:
            await wait_for(retried, "presence retries")
            assert rt.statistics().errors["presence"].count >= 3  # counted every round
            assert await rt.agent("me").request("calc", "add", {"a": 1, "b": 2}) == 3
    assert caplog.text.count("cannot announce agents") == 1  # once, not at every retry


@pytest.mark.timeout(60)
async def test_a_handler_typed_object_is_announced_with_the_others(nats_server: NatsServer) -> None:
    ns = "odd" + os.urandom(4).hex()
    odd = Agent("odd")

    @odd.handler
    async def anything(value: object) -> object:
        "Echo any JSON value."
        return value

    @odd.handler
    async def plain(n: int) -> int:
        return n

    reader = NatsTransport(nats_server.url, namespace=ns)
    await reader.start()
    try:
        async with Runtime(transport=NatsTransport(nats_server.url, namespace=ns), agents=[odd]):

            async def announced() -> bool:
                try:
                    agents, _ = await read_presence(reader)
                except Exception:  # the bucket may not exist yet
                    return False
                return any({t.handler for t in a.tools} == {"anything", "plain"} for a in agents)

            await wait_for(announced, "odd announced with both handlers")
    finally:
        await reader.close()
