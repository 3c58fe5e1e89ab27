"""Operator commands against a running system on NATS: tail, stats, dlq, board, agents, tools.

Each command connects as its own NATS client (``--nats URL``, default
``$AGENTCOMM_NATS`` or ``nats://127.0.0.1:4222``; ``--namespace``, default
``$AGENTCOMM_NAMESPACE`` or ``agentcomm``), prints tables for a person (rich when
installed, colour only on a terminal) or JSON with ``--json``, and says what to do
when something is missing. See ``docs/operations.md``.

Example::

    agentcomm agents --nats nats://127.0.0.1:4222
    agentcomm tail billing --count 10 --json
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TextIO

from agentcomm.cli.ops_stats import cmd_stats
from agentcomm.cli.output import _ago, _clock, _Fail, _json_line, _presence, _table
from agentcomm.core.errors import ConfigurationError, TransportError

if TYPE_CHECKING:
    from agentcomm.transports.nats.transport import NatsTransport

__all__ = ["add_commands", "add_nats_arguments", "run"]

DEFAULT_URL = "nats://127.0.0.1:4222"
_MAX_TAIL_QUEUE = 10_000


def add_nats_arguments(p: argparse.ArgumentParser, *, default: bool = True) -> None:
    """Add ``--nats``, ``--namespace`` and ``--json`` to a subcommand.

    Example::

        add_nats_arguments(parser.add_parser("agents"))
    """
    p.add_argument(
        "--nats",
        metavar="URL",
        default=os.environ.get("AGENTCOMM_NATS", DEFAULT_URL) if default else None,
        help="NATS server (default: $AGENTCOMM_NATS or nats://127.0.0.1:4222)",
    )
    p.add_argument(
        "--namespace",
        default=os.environ.get("AGENTCOMM_NAMESPACE", "agentcomm"),
        help="the runtimes' namespace (default: $AGENTCOMM_NAMESPACE or agentcomm)",
    )
    p.add_argument("--json", action="store_true", help="print JSON (one object per line)")


def add_commands(sub: Any, func: Callable[[argparse.Namespace], int]) -> None:
    """Add the operator subcommands (tail, stats, board, agents) to the ``agentcomm`` parser.

    Example::

        add_commands(parser.add_subparsers(), lambda args: run(args.command, args))
    """
    tail = sub.add_parser(
        "tail",
        help="watch messages live on NATS (direct, events, dead letters)",
        description="Print every message of the namespace as it passes: time, sender, "
        "recipient or topic, kind, size and a payload preview. FILTER keeps messages from "
        "or to an agent, or on topics matching a pattern (orders.*, orders.>).",
    )
    tail.add_argument("filter", nargs="?", help="an agent name or a topic pattern")
    tail.add_argument("--count", type=int, help="stop after this many messages")
    tail.add_argument("--seconds", type=float, help="stop after this many seconds")
    tail.add_argument("--width", type=int, default=60, help="payload preview width")
    add_nats_arguments(tail)
    stats = sub.add_parser(
        "stats", help="per-agent and per-topic rates, lag, in flight and dead letters"
    )
    stats.add_argument("--watch", action="store_true", help="refresh until Ctrl-C")
    stats.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes")
    stats.add_argument("--count", type=int, help="with --watch: stop after this many refreshes")
    add_nats_arguments(stats)
    board = sub.add_parser("board", help="read, list, watch the blackboard on NATS")
    board.add_argument("action", choices=["get", "list", "watch", "history"])
    board.add_argument("key", nargs="?", default="", help="key (get, history) or prefix")
    board.add_argument("--bucket", default="blackboard", help="the bucket (default blackboard)")
    board.add_argument("--count", type=int, help="watch: stop after this many changes")
    add_nats_arguments(board)
    agents = sub.add_parser("agents", help="who is connected on NATS (from presence)")
    add_nats_arguments(agents)
    for p in (tail, stats, board, agents):
        p.set_defaults(func=func)


def run(command: str, args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run one operator command; returns the exit code.

    Example::

        run("agents", build_parser().parse_args(["agents", "--json"]))
    """
    impl = _COMMANDS[command]
    o = out or sys.stdout
    if getattr(args, "namespace", None) is None:  # tools/dlq take --nats only when asked
        args.namespace = os.environ.get("AGENTCOMM_NAMESPACE", "agentcomm")
    try:
        return asyncio.run(_with_transport(impl, args, o))
    except _Fail as exc:
        print(f"agentcomm {command}: {exc}", file=sys.stderr)
        return 1


async def _with_transport(
    impl: Callable[[NatsTransport, argparse.Namespace, TextIO], Coroutine[Any, Any, int]],
    args: argparse.Namespace,
    out: TextIO,
) -> int:
    try:
        from agentcomm.transports.nats.transport import NatsTransport
    except ImportError:
        raise _Fail("the NATS commands need: pip install 'agentcomm[nats]'") from None
    url = args.nats
    t = NatsTransport(url, namespace=args.namespace, connect_timeout=3.0)
    try:
        await t.start()
    except (TransportError, ConfigurationError) as exc:
        raise _Fail(
            f"cannot reach NATS at {url}: start `nats-server -js` there, or pass "
            "--nats URL (or set AGENTCOMM_NATS)"
        ) from exc
    try:
        return await impl(t, args, out)
    except ConfigurationError as exc:
        raise _Fail(str(exc)) from None
    except TransportError as exc:
        raise _Fail(f"{exc} (NATS at {url})") from None
    finally:
        await t.close()


# -- output ---------------------------------------------------------------------------------


# -- agents and tools ---------------------------------------------------------------------------
def _none_running(t: NatsTransport) -> str:
    return (
        f"no agents announce themselves in namespace {t.namespace!r}: start them "
        "(`agentcomm run ... --nats URL`) or pass the --namespace they use"
    )


async def cmd_agents(t: NatsTransport, args: argparse.Namespace, out: TextIO) -> int:
    """``agentcomm agents``: who is connected (one row per agent instance)."""
    agents, _ = await _presence(t)
    if not agents:
        raise _Fail(_none_running(t))
    if args.json:
        for rec in agents:
            _json_line(out, rec)
        return 0
    rows = [
        (
            r.agent,
            f"{r.host}:{r.pid}",
            ", ".join(x.handler for x in r.tools) or "-",
            ", ".join(s.pattern for s in r.subscriptions) or "-",
            _ago(r.started),
            r.statistics.handled,
            r.statistics.failed,
            sum(s.acked for s in r.subscriptions),
            sum(s.dead_lettered for s in r.subscriptions),
            r.statistics.queued,
            f"{_ago(r.updated)} ago",
        )
        for r in agents
    ]
    # direct messages and events are counted apart: "handled" never mixes them
    cols = ["agent", "host:pid", "handlers", "subscribes", "up", "direct handled"]
    cols += ["direct failed", "events handled", "dead letters", "queued"]
    _table(out, f"agents in {t.namespace!r}", [*cols, "seen"], rows)
    return 0


async def cmd_tools(t: NatsTransport, args: argparse.Namespace, out: TextIO) -> int:
    """``agentcomm tools --nats``: the tool catalogue of every connected agent."""
    agents, _ = await _presence(t)
    seen: dict[tuple[str, str], Any] = {}
    for rec in agents:
        for info in rec.tools:
            seen.setdefault((info.agent, info.handler), info)
    tools = [seen[k] for k in sorted(seen)]
    llm = getattr(args, "llm", None)
    if llm is not None:  # function-calling definitions, as without --nats
        import msgspec

        from agentcomm.tools.catalogue import anthropic_tool, openai_tool

        if not tools:
            raise _Fail(_none_running(t))
        make = openai_tool if llm == "openai" else anthropic_tool
        out.write(msgspec.json.format(msgspec.json.encode([make(i) for i in tools])).decode())
        out.write("\n")
        return 0
    if not tools:
        raise _Fail(_none_running(t))
    if args.json:
        for info in tools:
            _json_line(out, info)
        return 0
    rows = []
    for info in tools:
        props = info.input_schema.get("properties", {})
        params = ", ".join(f"{n}: {p.get('type', 'any')}" for n, p in props.items())
        rows.append((info.agent, info.handler, params, info.description.split("\n")[0]))
    _table(out, f"tools in {t.namespace!r}", ["agent", "handler", "input", "description"], rows)
    return 0


# -- tail ---------------------------------------------------------------------------------------
def _tail_record(
    subject: str, data: bytes, ns: str, width: int, inbox: bool = False
) -> dict[str, Any] | None:
    from agentcomm.core.envelope import decode_envelope
    from agentcomm.core.errors import DecodeError

    try:
        env = decode_envelope(data)
    except DecodeError:
        return None  # acknowledgements, JetStream API replies: not envelopes
    kind: str = env.kind
    topic = env.topic
    if inbox and kind != "response":
        return None  # an event fetched by a subscriber or read back: shown when published
    if subject.startswith(f"{ns}.s.DLQ."):
        kind = "dead-letter"
    elif subject.startswith(f"{ns}.a.") and subject.endswith(".nb"):
        kind = "notification"
    preview = bytes(env.payload).decode("utf-8", "replace")
    if len(preview) > width:
        preview = preview[: max(width - 3, 0)] + "..."
    return {
        "time": env.created,
        "id": env.id,
        "kind": kind,
        "sender": env.sender,
        "recipient": env.recipient,
        "handler": env.handler,
        "topic": topic,
        "size": len(data),
        "subject": subject,
        "correlation_id": env.correlation_id,
        "preview": preview,
    }


def _tail_match(rec: dict[str, Any], filt: str | None) -> bool:
    if not filt:
        return True
    if filt in (rec["sender"], rec["recipient"]):
        return True
    topic = rec["topic"]
    if topic is None:
        return False
    from agentcomm.core.topics import topic_matches

    try:
        return topic == filt or topic_matches(filt, topic)
    except ConfigurationError:
        return False


def _check_tail_filter(filt: str) -> None:
    """An agent name or a topic pattern, checked as the library checks them."""
    from agentcomm.core.names import NAME_RE
    from agentcomm.core.topics import compile_pattern

    if NAME_RE.match(filt):
        return  # an agent name (or a one-token topic)
    try:
        compile_pattern(filt)
    except ConfigurationError as exc:
        raise _Fail(
            f"{filt!r} is neither an agent name nor a topic pattern ({exc}); e.g. billing, "
            "orders.*, orders.>"
        ) from None


async def cmd_tail(t: NatsTransport, args: argparse.Namespace, out: TextIO) -> int:
    """``agentcomm tail [filter]``: print messages as they pass."""
    ns = t.namespace
    nc = t.client
    if args.filter:
        _check_tail_filter(args.filter)
        if "." not in args.filter and "*" not in args.filter and ">" not in args.filter:
            announced = {rec.agent for rec in (await _presence(t))[0]}
            if args.filter not in announced:
                print(
                    f"agentcomm tail: warning: no agent named {args.filter!r} announces itself "
                    f"in namespace {ns!r}; showing what is sent to it or published on that topic",
                    file=sys.stderr,
                )
    queue: asyncio.Queue[tuple[str, bytes, bool]] = asyncio.Queue(_MAX_TAIL_QUEUE)
    dropped = 0

    def put(msg: Any, inbox: bool) -> None:
        nonlocal dropped
        try:
            queue.put_nowait((msg.subject, msg.data, inbox))
        except asyncio.QueueFull:
            dropped += 1  # bounded: a slow terminal loses lines, never memory

    async def on_msg(msg: Any) -> None:
        put(msg, False)

    async def on_inbox(msg: Any) -> None:  # responses; JetStream deliveries land here too
        put(msg, True)

    subs = [await nc.subscribe(s, cb=on_msg) for s in (f"{ns}.a.>", f"{ns}.s.>")]
    subs.append(await nc.subscribe("_INBOX.>", cb=on_inbox))
    await nc.flush()
    colour = out.isatty() and not args.json
    print(
        f"agentcomm tail: watching {ns!r} on {args.nats}"
        + (f" for {args.filter!r}" if args.filter else "")
        + " (Ctrl-C stops)",
        file=sys.stderr,
        flush=True,
    )
    shown = 0
    loop = asyncio.get_running_loop()
    end = None if args.seconds is None else loop.time() + args.seconds
    try:
        while args.count is None or shown < args.count:
            left = None if end is None else end - loop.time()
            if left is not None and left <= 0:
                break
            try:
                async with asyncio.timeout(left):
                    subject, data, inbox = await queue.get()
            except TimeoutError:
                break
            rec = _tail_record(subject, data, ns, args.width, inbox)
            if rec is None or not _tail_match(rec, args.filter):
                continue
            shown += 1
            if args.json:
                _json_line(out, rec)
                continue
            to = rec["topic"] if rec["recipient"] is None else rec["recipient"]
            if rec["handler"]:
                to = f"{to}.{rec['handler']}"
            line = (
                f"{_clock(rec['time'])}  {rec['sender']:>12} -> {to:<24} "
                f"{rec['kind']:<12} {rec['size']:>6}B  {rec['preview']}"
            )
            if colour:
                line = f"\x1b[2m{line[:12]}\x1b[0m{line[12:]}"
            out.write(line + "\n")
            out.flush()
    finally:
        for s in subs:
            await s.unsubscribe()
    if dropped:
        print(f"agentcomm tail: {dropped} messages not shown (output too slow)", file=sys.stderr)
    return 0


# -- dead letters and the blackboard (in ops_store) -------------------------------------------
async def cmd_dlq(t: NatsTransport, args: argparse.Namespace, out: TextIO) -> int:
    """``agentcomm dlq list|show|redrive --nats``: see :mod:`agentcomm.ops_store`."""
    from agentcomm.cli.ops_store import cmd_dlq as impl

    return await impl(t, args, out)


async def cmd_board(t: NatsTransport, args: argparse.Namespace, out: TextIO) -> int:
    """``agentcomm board get|list|watch|history``: see :mod:`agentcomm.ops_store`."""
    from agentcomm.cli.ops_store import cmd_board as impl

    return await impl(t, args, out)


_COMMANDS: dict[
    str, Callable[[NatsTransport, argparse.Namespace, TextIO], Coroutine[Any, Any, int]]
] = {
    "agents": cmd_agents,
    "tools": cmd_tools,
    "tail": cmd_tail,
    "stats": cmd_stats,
    "dlq": cmd_dlq,
    "board": cmd_board,
}
