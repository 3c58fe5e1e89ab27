"""A2A calls per second: agentcomm's exposure vs a bare a2a-sdk server, same skill.

Both answer ``SendMessage`` with the text upper-cased, in an agent message. The bare
server is the SDK's ``DefaultRequestHandler`` with an ``AgentExecutor`` doing it; ours
is an agent whose handler is exposed by ``rt.a2a.expose`` (each call is a real
agentcomm request through the runtime: validation, the agent's workers, deadline).
Both are served by uvicorn on 127.0.0.1 in this process, and the same httpx client
posts the same JSON-RPC requests, one at a time and 8 in flight, in the same run.
Run: ``python bench/a2a.py [--n N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import time
from typing import Any

# This file is named a2a.py: keep its folder off sys.path so `import a2a` finds the SDK.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]

import httpx  # noqa: E402
import uvicorn  # noqa: E402
from a2a.helpers.proto_helpers import get_message_text, new_text_message  # noqa: E402
from a2a.server.agent_execution import AgentExecutor, RequestContext  # noqa: E402
from a2a.server.events import EventQueue  # noqa: E402
from a2a.server.request_handlers import DefaultRequestHandler  # noqa: E402
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes  # noqa: E402
from a2a.server.tasks import InMemoryTaskStore  # noqa: E402
from a2a.types import a2a_pb2 as pb  # noqa: E402
from starlette.applications import Starlette  # noqa: E402

from agentcomm import Agent, Runtime  # noqa: E402

shouter = Agent("shouter")


@shouter.handler
async def shout(text: str) -> str:
    """Upper-case the text."""
    return text.upper()


class _Shout(AgentExecutor):
    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.message is not None
        text = get_message_text(context.message)
        await event_queue.enqueue_event(new_text_message(text.upper()))

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        raise NotImplementedError


def _bare_app(url: str) -> Starlette:
    card = pb.AgentCard(
        name="bare",
        description="bare",
        version="1",
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[pb.AgentSkill(id="shout", name="shout", description="shout", tags=["x"])],
    )
    card.supported_interfaces.append(
        pb.AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="1.0")
    )
    card.capabilities.streaming = False
    handler = DefaultRequestHandler(_Shout(), InMemoryTaskStore(), card)
    routes = [*create_agent_card_routes(card), *create_jsonrpc_routes(handler, "/")]
    return Starlette(routes=routes)


async def _serve(app: Any) -> tuple[uvicorn.Server, asyncio.Task[None], str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # NODELAY
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    return server, task, f"http://127.0.0.1:{port}/"


def _body(i: int, skill: str | None) -> dict[str, Any]:
    msg: dict[str, Any] = {"messageId": f"m{i}", "role": "ROLE_USER", "parts": [{"text": "hi"}]}
    if skill:
        msg["metadata"] = {"skill": skill}
    return {"jsonrpc": "2.0", "id": i, "method": "SendMessage", "params": {"message": msg}}


async def _rate(
    client: httpx.AsyncClient, url: str, n: int, inflight: int, skill: str | None
) -> float:
    headers = {"A2A-Version": "1.0"}

    async def one(i: int) -> None:
        r = await client.post(url, json=_body(i, skill), headers=headers)
        parts = r.json()["result"]["message"]["parts"]
        assert parts[0]["text"] == "HI", parts

    for i in range(20):  # warm up
        await one(i)
    sem = asyncio.Semaphore(inflight)

    async def bounded(i: int) -> None:
        async with sem:
            await one(i)

    start = time.perf_counter()
    if inflight == 1:
        for i in range(n):
            await one(i)
    else:
        async with asyncio.TaskGroup() as tg:
            for i in range(n):
                tg.create_task(bounded(i))
    return n / (time.perf_counter() - start)


async def main(n: int) -> None:
    async with Runtime(agents=[shouter]) as rt:
        ours = await rt.a2a.expose("shouter")
        bare_server, bare_task, bare_url = await _serve(_bare_app("http://127.0.0.1/"))
        limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
        # TCP_NODELAY: httpx writes headers and body apart, and Nagle + delayed ACKs would
        # add 40 ms to every call on both servers alike, hiding what is measured
        nodelay = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
        transport = httpx.AsyncHTTPTransport(limits=limits, socket_options=nodelay)
        async with httpx.AsyncClient(timeout=30, transport=transport) as client:
            print(f"A2A SendMessage calls/s over HTTP on 127.0.0.1, n={n}")
            print(f"{'':14}{'bare a2a-sdk':>14}{'agentcomm':>12}{'ratio':>8}")
            for inflight in (1, 8):
                bare = await _rate(client, bare_url, n, inflight, None)
                mine = await _rate(client, ours.url, n, inflight, "shout")
                label = "sequential" if inflight == 1 else f"{inflight} in flight"
                print(f"{label:14}{bare:14.0f}{mine:12.0f}{mine / bare:7.2f}x")
        bare_server.should_exit = True
        await bare_task


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="calls per measurement")
    asyncio.run(main(parser.parse_args().n))
