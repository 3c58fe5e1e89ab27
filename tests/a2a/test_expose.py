"""Exposing an agent over A2A: the card, the operations, bad input, auth and the policy.

Raw JSON-RPC over HTTP (httpx), so what is checked is the wire a foreign client sees.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from agentcomm.testing.extras import require_module

require_module("a2a")

import httpx  # noqa: E402

from agentcomm import Agent, Context, Runtime  # noqa: E402
from agentcomm.a2a import ApiKeyAuth, BearerAuth  # noqa: E402
from agentcomm.security.policy import Policy, Rules  # noqa: E402

worker = Agent("worker", description="Does small jobs.")
gate = asyncio.Event()


@worker.handler
async def shout(text: str) -> str:
    """Upper-case the text."""
    return text.upper()


@worker.handler
async def letters(word: str, ctx: Context) -> AsyncIterator[str]:
    """One letter per chunk."""
    for i, c in enumerate(word, 1):
        await ctx.progress(i, len(word))
        yield c


@worker.task_handler()
async def job(text: str, ctx: Context) -> str:
    """Work, ask for a number, then wait for the gate."""
    await ctx.progress(1, 2, "half")
    n = await ctx.ask(f"how many {text}?", returns=int, timeout=30)
    await gate.wait()
    return f"{n} {text}"


def _msg(text: str, skill: str | None = None, task_id: str = "") -> dict[str, Any]:
    m: dict[str, Any] = {"messageId": "m-" + text, "role": "ROLE_USER", "parts": [{"text": text}]}
    if skill:
        m["metadata"] = {"skill": skill}
    if task_id:
        m["taskId"] = task_id
    return {"message": m}


async def _rpc(c: httpx.AsyncClient, url: str, method: str, params: Any, **kw: Any) -> Any:
    body = {"jsonrpc": "2.0", "id": 7, "method": method, "params": params}
    r = await c.post(url, json=body, headers={"A2A-Version": "1.0", **kw.get("headers", {})})
    return r.json()


async def _sse(
    c: httpx.AsyncClient, url: str, method: str, params: Any, **headers: str
) -> list[Any]:
    body = {"jsonrpc": "2.0", "id": 8, "method": method, "params": params}
    out = []
    h = {"A2A-Version": "1.0", **headers}
    async with c.stream("POST", url, json=body, headers=h) as resp:
        async for line in resp.aiter_lines():
            if line.startswith("data:"):
                out.append(json.loads(line[5:]))
    return out


@pytest.fixture
async def served() -> AsyncIterator[tuple[Runtime, str, httpx.AsyncClient]]:
    gate.clear()
    async with Runtime(agents=[worker]) as rt:
        x = await rt.a2a.expose("worker", default="job")
        async with httpx.AsyncClient(timeout=10) as c:
            yield rt, x.url, c


async def test_the_card_describes_every_handler(served: Any) -> None:
    _, url, c = served
    card = (await c.get(url + ".well-known/agent-card.json")).json()
    assert card["name"] == "worker"
    assert card["description"] == "Does small jobs."
    assert card["capabilities"]["streaming"] is True
    assert {i["protocolVersion"] for i in card["supportedInterfaces"]} == {"1.0", "0.3"}
    assert card["protocolVersion"] == "0.3"  # the 0.3 fields are merged in
    skills = {s["id"]: s for s in card["skills"]}
    assert set(skills) == {"shout", "letters", "job"}
    assert "agentcomm:task" in skills["job"]["tags"]
    assert "agentcomm:stream" in skills["letters"]["tags"]
    inp = next(t for t in skills["shout"]["tags"] if t.startswith("agentcomm:input="))
    assert json.loads(inp.split("=", 1)[1])["required"] == ["text"]
    assert skills["shout"]["description"] == "Upper-case the text."


async def test_request_stream_and_the_0_3_names(served: Any) -> None:
    _, url, c = served
    r = await _rpc(c, url, "SendMessage", _msg("hi", "shout"))
    assert r["result"]["message"]["parts"] == [{"text": "HI"}]
    events = await _sse(c, url, "SendStreamingMessage", _msg("ab", "letters"))
    kinds = [next(iter(e["result"])) for e in events]
    assert kinds[0] == "task"
    assert kinds[-1] == "statusUpdate"
    assert events[-1]["result"]["statusUpdate"]["status"]["state"] == "TASK_STATE_COMPLETED"
    chunks = [
        e["result"]["artifactUpdate"]["artifact"]["parts"][0]["text"]
        for e in events
        if "artifactUpdate" in e["result"]
    ]
    assert chunks == ["a", "b"]
    assert "statusUpdate" in kinds[1:-1]  # the progress reports
    old = {
        "kind": "message",
        "messageId": "o1",
        "role": "user",
        "parts": [{"kind": "text", "text": "x"}],
        "metadata": {"skill": "shout"},
    }
    body = {"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": {"message": old}}
    r = (await c.post(url, json=body)).json()
    assert r["result"]["parts"] == [{"kind": "text", "text": "X"}]


async def test_a_task_asks_is_answered_and_resubscription_replays(served: Any) -> None:
    _, url, c = served
    r = await _rpc(c, url, "SendMessage", _msg("apples"))
    task = r["result"]["task"]
    assert task["status"]["state"] == "TASK_STATE_INPUT_REQUIRED"
    assert task["status"]["message"]["parts"][0]["text"] == "how many apples?"
    tid = task["id"]
    r = await _rpc(
        c,
        url,
        "SendMessage",
        {**_msg("3", task_id=tid), "configuration": {"returnImmediately": True}},
    )
    assert r["result"]["task"]["status"]["state"] in (
        "TASK_STATE_WORKING",
        "TASK_STATE_INPUT_REQUIRED",
    )
    # a subscriber gets the task as it is, then what follows
    sub = asyncio.create_task(_sse(c, url, "SubscribeToTask", {"id": tid}))
    await asyncio.sleep(0.3)
    gate.set()
    events = await asyncio.wait_for(sub, 10)
    assert "task" in events[0]["result"]
    assert events[-1]["result"]["statusUpdate"]["status"]["state"] == "TASK_STATE_COMPLETED"
    got = await _rpc(c, url, "GetTask", {"id": tid})
    assert got["result"]["artifacts"][0]["parts"] == [{"text": "3 apples"}]
    roles = [m["role"] for m in got["result"]["history"]]
    assert roles[:3] == ["ROLE_USER", "ROLE_AGENT", "ROLE_USER"]
    # resuming after a cursor replays what came after it, nothing before
    first = events[1]["result"]
    cursor = int(next(iter(first.values()))["metadata"]["agentcomm.cursor"])
    replay = await _sse(c, url, "SubscribeToTask", {"id": tid}, **{"Last-Event-ID": str(cursor)})
    cursors = [
        int(next(iter(e["result"].values()))["metadata"]["agentcomm.cursor"]) for e in replay
    ]
    assert cursors
    assert min(cursors) > cursor
    assert replay[-1]["result"]["statusUpdate"]["status"]["state"] == "TASK_STATE_COMPLETED"
    listed = await _rpc(c, url, "ListTasks", {})
    assert tid in [t["id"] for t in listed["result"]["tasks"]]


async def test_cancel_reaches_a_live_subscriber(served: Any) -> None:
    _, url, c = served
    tid = (await _rpc(c, url, "SendMessage", _msg("pears")))["result"]["task"]["id"]
    sub = asyncio.create_task(_sse(c, url, "SubscribeToTask", {"id": tid}))
    await asyncio.sleep(0.3)
    r = await _rpc(c, url, "CancelTask", {"id": tid})
    assert r["result"]["status"]["state"] == "TASK_STATE_CANCELED"
    events = await asyncio.wait_for(sub, 10)
    assert events[-1]["result"]["statusUpdate"]["status"]["state"] == "TASK_STATE_CANCELED"
    again = await _rpc(c, url, "CancelTask", {"id": tid})
    assert again["error"]["code"] == -32002  # not cancelable: it ended


async def test_bad_input_gets_the_right_error_and_the_server_goes_on(served: Any) -> None:
    _, url, c = served
    r = (
        await c.post(
            url,
            content=b'{"jsonrpc": "2.0", "id": 1, "method": ',
            headers={"content-type": "application/json"},
        )
    ).json()
    assert r["error"]["code"] == -32700
    assert (await _rpc(c, url, "NoSuchMethod", {}))["error"]["code"] == -32601
    assert (await _rpc(c, url, "SendMessage", {"message": {"parts": "nope"}}))["error"][
        "code"
    ] == -32602
    assert (await _rpc(c, url, "SendMessage", _msg("x", "no-such-skill")))["error"][
        "code"
    ] == -32602
    bad_args = {
        "message": {
            "messageId": "b",
            "role": "ROLE_USER",
            "parts": [{"data": {"text": 5}}],
            "metadata": {"skill": "shout"},
        }
    }
    assert (await _rpc(c, url, "SendMessage", bad_args))["error"]["code"] == -32602
    big = _msg("y" * (2 << 20), "shout")
    assert (await _rpc(c, url, "SendMessage", big))["error"]["code"] == -32600
    assert (await _rpc(c, url, "GetTask", {"id": "0" * 32}))["error"]["code"] == -32001
    assert (await _rpc(c, url, "CancelTask", {"id": "0" * 32}))["error"]["code"] == -32001
    assert (await _rpc(c, url, "SendMessage", _msg("z", task_id="0" * 32)))["error"][
        "code"
    ] == -32001
    r = await _rpc(c, url, "SendMessage", _msg("still here", "shout"))
    assert r["result"]["message"]["parts"] == [{"text": "STILL HERE"}]


async def test_auth_is_enforced_and_the_policy_applies_to_the_caller() -> None:
    policy = Policy(
        {
            "partner": Rules(send=("worker.shout",)),
            "ops": Rules(send=("worker",)),
            "worker": Rules(),
        }
    )
    async with Runtime(agents=[worker], access=policy) as rt:
        auth = [BearerAuth({"partner-token-1": "partner"}), ApiKeyAuth({"ops-key-12345": "ops"})]
        x = await rt.a2a.expose("worker", auth=auth)
        async with httpx.AsyncClient(timeout=10) as c:
            card = (await c.get(x.url + ".well-known/agent-card.json")).json()  # public
            assert set(card["securitySchemes"]) == {"bearer", "apiKey"}
            r = await c.post(
                x.url,
                json={
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "SendMessage",
                    "params": _msg("a", "shout"),
                },
            )
            assert r.status_code == 401
            bad = await c.post(x.url, json={}, headers={"Authorization": "Bearer wrong-token-0"})
            assert bad.status_code == 401
            ok = await _rpc(
                c,
                x.url,
                "SendMessage",
                _msg("a", "shout"),
                headers={"Authorization": "Bearer partner-token-1"},
            )
            assert ok["result"]["message"]["parts"] == [{"text": "A"}]
            refused = await _rpc(
                c,
                x.url,
                "SendMessage",
                _msg("ab", "letters"),
                headers={"Authorization": "Bearer partner-token-1"},
            )
            assert refused["error"]["code"] == -32600
            assert "partner" in refused["error"]["message"]
            ops = await _rpc(
                c, x.url, "SendMessage", _msg("b", "shout"), headers={"X-API-Key": "ops-key-12345"}
            )
            assert ops["result"]["message"]["parts"] == [{"text": "B"}]


async def test_only_the_loopback_unless_told() -> None:
    from agentcomm.core.errors import ConfigurationError

    async with Runtime(agents=[worker]) as rt:
        with pytest.raises(ConfigurationError, match="allow_remote"):
            await rt.a2a.expose("worker", host="0.0.0.0")
        with pytest.raises(ConfigurationError, match="auth"):
            await rt.a2a.expose("worker", host="0.0.0.0", allow_remote=True)


async def test_the_http_json_binding_serves_the_same_agent(served: Any) -> None:
    _, url, c = served
    card = (await c.get(url + ".well-known/agent-card.json")).json()
    rest = {i["url"] for i in card["supportedInterfaces"] if i["protocolBinding"] == "HTTP+JSON"}
    assert rest == {url}
    h = {"A2A-Version": "1.0"}
    r = await c.post(url + "message:send", json=_msg("hey", "shout"), headers=h)
    assert r.json()["message"]["parts"] == [{"text": "HEY"}]
    r = await c.get(url + "tasks/" + "0" * 32, headers=h)
    assert r.status_code == 404
    assert r.json()["error"]["details"][0]["reason"] == "TASK_NOT_FOUND"
    old = {"message": {"messageId": "o", "role": "ROLE_USER", "content": [{"text": "x"}]}}
    old["message"]["metadata"] = {"skill": "shout"}
    r = await c.post(url + "v1/message:send", json=old)  # 0.3's paths and fields
    assert r.json()["message"]["content"] == [{"text": "X"}]
