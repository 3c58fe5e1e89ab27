"""``agentcomm a2a serve`` and ``agentcomm a2a card``: serve an agent over A2A, read a card.

Example::

    agentcomm a2a serve examples/a2a_concierge.py:concierge --default chat --http 127.0.0.1:8000
    agentcomm a2a card http://127.0.0.1:8000/
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any

from agentcomm.core.errors import ConfigurationError

__all__ = ["add_a2a_commands", "print_card", "serve_a2a"]


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    try:
        return host.strip("[]") or "127.0.0.1", int(port)
    except ValueError:
        raise ConfigurationError(f"expected HOST:PORT, got {text!r}") from None


def _pairs(items: Sequence[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        identity, sep, secret = item.partition("=")
        if not sep or not identity or not secret:
            raise ConfigurationError(f"{what}: expected IDENTITY=SECRET, got {item!r}")
        out[secret] = identity
    return out


async def serve_a2a(
    target: str,
    *,
    http: str = "127.0.0.1:8000",
    default: str | None = None,
    nats: str | None = None,
    remote: bool = False,
    tokens: Sequence[str] = (),
    api_keys: Sequence[str] = (),
    allow_remote: bool = False,
    public_url: str | None = None,
    send_wait: float | None = None,
) -> int:
    """Run an agent (or, with ``remote``, only describe one running elsewhere on NATS)
    and serve it over A2A until SIGINT/SIGTERM.

    Example::

        asyncio.run(serve_a2a("examples/a2a_concierge.py:concierge", default="chat"))
    """
    from agentcomm.a2a.auth import ApiKeyAuth, Auth, BearerAuth
    from agentcomm.api import Runtime
    from agentcomm.tools.schemas import load_agents

    # The SDK logs every refused request with its traceback; the caller gets the error.
    logging.getLogger("a2a").setLevel(logging.CRITICAL)
    agents = load_agents(target)
    if len(agents) != 1:
        raise ConfigurationError(f"{target} names {len(agents)} agents; A2A serves one")
    agent = agents[0]
    if remote and not nats:
        raise ConfigurationError("--remote describes an agent running elsewhere: give --nats URL")
    auth: list[Auth] = []
    if tokens:
        auth.append(BearerAuth(_pairs(tokens, "--token")))
    if api_keys:
        auth.append(ApiKeyAuth(_pairs(api_keys, "--api-key")))
    host, port = _address(http)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with Runtime(nats, agents=[] if remote else [agent]) as rt:
            exposure = await rt.a2a.expose(
                agent,
                host=host,
                port=port,
                default=default,
                auth=auth,
                allow_remote=allow_remote,
                public_url=public_url,
                send_wait=send_wait,
            )
            skills = ", ".join(f"{s.id} ({s.kind})" for s in exposure.skills.values())
            print(
                f"agentcomm: serving {agent.name} over A2A at {exposure.url} [{skills}]",
                file=sys.stderr,
                flush=True,
            )
            await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return 0


async def print_card(url: str, *, as_json: bool = False, out: Any = None) -> int:
    """Fetch an agent card and print it readably (or as JSON).

    Example::

        asyncio.run(print_card("http://127.0.0.1:8000/"))
    """
    import httpx

    from agentcomm.a2a.card import format_card

    out = out or sys.stdout
    card_url = url if url.endswith(".json") else url.rstrip("/") + "/.well-known/agent-card.json"
    try:
        async with httpx.AsyncClient(timeout=10.0) as client:
            resp = await client.get(card_url)
    except httpx.HTTPError as exc:
        raise ConfigurationError(f"cannot read the card at {card_url}: {exc}") from None
    if resp.status_code != 200:
        raise ConfigurationError(f"{card_url} answered HTTP {resp.status_code}")
    card = resp.json()
    print(json.dumps(card, indent=2) if as_json else format_card(card), file=out)
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    return asyncio.run(
        serve_a2a(
            args.target,
            http=args.http,
            default=args.default,
            nats=args.nats,
            remote=args.remote,
            tokens=args.token,
            api_keys=args.api_key,
            allow_remote=args.allow_remote,
            public_url=args.public_url,
            send_wait=args.send_wait,
        )
    )


def _cmd_card(args: argparse.Namespace) -> int:
    return asyncio.run(print_card(args.url, as_json=args.json))


def add_a2a_commands(sub: Any) -> None:
    """Register ``agentcomm a2a ...`` on the main parser's subcommands."""
    a2a = sub.add_parser("a2a", help="serve an agent over A2A, or read an A2A agent card")
    a2a_sub = a2a.add_subparsers(dest="a2a_command", metavar="A2A_COMMAND", required=True)
    serve = a2a_sub.add_parser("serve", help="serve an agent over A2A (JSON-RPC, spec 1.0 and 0.3)")
    serve.add_argument("target", help="module:attr or file.py:attr naming one Agent")
    serve.add_argument(
        "--http", default="127.0.0.1:8000", metavar="HOST:PORT", help="where (127.0.0.1:8000)"
    )
    serve.add_argument("--default", metavar="SKILL", help="the skill of a message naming none")
    serve.add_argument("--nats", metavar="URL", help="run on this NATS server (default: memory)")
    serve.add_argument(
        "--remote", action="store_true", help="the agent runs elsewhere on --nats: describe only"
    )
    serve.add_argument(
        "--token", action="append", default=[], metavar="IDENTITY=TOKEN", help="a bearer token"
    )
    serve.add_argument(
        "--api-key", action="append", default=[], metavar="IDENTITY=KEY", help="an API key"
    )
    serve.add_argument(
        "--allow-remote", action="store_true", help="allow a host other than the loopback"
    )
    serve.add_argument("--public-url", metavar="URL", help="the URL the card announces")
    serve.add_argument(
        "--send-wait",
        type=float,
        metavar="SECONDS",
        help="a blocking SendMessage answers after this long with the task as it is",
    )
    serve.set_defaults(func=_cmd_serve)
    card = a2a_sub.add_parser("card", help="print an A2A agent card (readable, or --json)")
    card.add_argument("url", help="the agent's base URL, or the card's URL")
    card.add_argument("--json", action="store_true", help="print the card as JSON")
    card.set_defaults(func=_cmd_card)
