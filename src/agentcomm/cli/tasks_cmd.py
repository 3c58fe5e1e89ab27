"""``agentcomm tasks``: the durable tasks of a namespace on NATS, or one task followed live.

``agentcomm tasks --nats URL`` lists the retained tasks (newest first) with their
state, attempt and a progress bar; ``--state`` keeps one state; ``--follow ID``
prints every update of one task as it happens (``--since CURSOR`` to go on from a
cursor) until its end. ``--json`` prints one object per line. See
``docs/operations.md``.

Example::

    agentcomm tasks --nats nats://127.0.0.1:4222 --state working
    agentcomm tasks --follow 3f0c9a... --since 41
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING, Any, TextIO

import msgspec

from agentcomm.cli.output import _ago, _clock, _Fail, _json_line, _table
from agentcomm.core.errors import ConfigurationError

if TYPE_CHECKING:
    from agentcomm.core.progress import Progress
    from agentcomm.transports.nats.transport import NatsTransport

__all__ = ["add_tasks_command", "bar", "cmd_tasks"]

_STATES = ("submitted", "working", "input-required", "completed", "failed", "canceled")


def add_tasks_command(sub: Any) -> None:
    """Add the ``tasks`` subcommand to the ``agentcomm`` parser.

    Example::

        add_tasks_command(parser.add_subparsers())
    """
    from agentcomm.cli.ops import add_nats_arguments

    p = sub.add_parser(
        "tasks",
        help="list the durable tasks on NATS with their progress, or follow one live",
        description="List the retained durable tasks of the namespace (newest first): id, "
        "agent and handler, state, attempt, a progress bar and the last change. With "
        "--follow ID, print every update of that task as it happens, until its end.",
    )
    p.add_argument("--state", choices=_STATES, help="list only the tasks in this state")
    p.add_argument("--limit", type=int, default=50, help="list at most this many (default 50)")
    p.add_argument("--follow", metavar="ID", help="follow this task's updates live")
    p.add_argument("--since", type=int, default=0, help="with --follow: after this cursor")
    add_nats_arguments(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from agentcomm.cli.ops import _with_transport

    try:
        return asyncio.run(_with_transport(cmd_tasks, args, sys.stdout))
    except _Fail as exc:
        print(f"agentcomm tasks: {exc}", file=sys.stderr)
        return 1


def bar(progress: Progress | None, width: int = 20) -> str:
    """A text progress bar: ``[#########-----------]  45%``, or the count when no total.

    Example::

        assert bar(Progress(done=1, total=4), 8) == "[##------]  25%"
    """
    if progress is None:
        return ""
    fraction = progress.fraction
    if fraction is None:
        return f"{progress.done:g} done"
    fraction = min(max(fraction, 0.0), 1.0)
    filled = round(fraction * width)
    return f"[{'#' * filled}{'-' * (width - filled)}] {fraction * 100:3.0f}%"


async def cmd_tasks(t: NatsTransport, args: argparse.Namespace, out: TextIO) -> int:
    """``agentcomm tasks [--follow ID]``: see the module docstring."""
    from agentcomm.tasks.model import TaskRetention
    from agentcomm.tasks.store import Store

    store = Store(t, TaskRetention(), manage=False)
    try:
        await store.ensure()
    except ConfigurationError:
        raise _Fail(
            f"no durable tasks in namespace {t.namespace!r} (no runtime there has started "
            "one yet); check --namespace"
        ) from None
    if args.follow:
        return await _follow(store, args, out)
    records = [r for r in await store.records() if args.state in (None, r.state)]
    records = records[: max(args.limit, 1)]
    if args.json:
        from agentcomm.tasks.model import TaskStatus

        for r in records:
            _json_line(out, TaskStatus.of(r))
        return 0
    rows = [
        [
            r.id,
            f"{r.agent}.{r.handler}",
            r.state,
            r.attempt,
            bar(r.progress, 10),
            (r.progress.message or "") if r.progress is not None else "",
            _ago(r.updated),
        ]
        for r in records
    ]
    title = f"durable tasks in {t.namespace} ({len(rows)})"
    _table(out, title, ["id", "handler", "state", "attempt", "progress", "note", "changed"], rows)
    return 0


async def _follow(store: Any, args: argparse.Namespace, out: TextIO) -> int:
    record = await store.require(args.follow)
    if not args.json:
        out.write(f"task {record.id} {record.agent}.{record.handler} from {record.caller}\n")
    async for u in store.follow(args.follow, args.since):
        if args.json:
            _json_line(out, u)
            continue
        detail = ""
        if u.kind == "progress":
            detail = bar(u.progress) + (f" {u.progress.message}" if u.progress.message else "")
        elif u.kind in ("artifact", "result"):
            detail = msgspec.json.encode(u.data).decode()[:80]
        elif u.question is not None and u.state == "input-required":
            detail = f"asks: {msgspec.json.encode(u.question.text).decode()[:80]}"
        elif u.error is not None:
            detail = f"{u.error.type}: {u.error.message}"
        out.write(f"{_clock(u.time)} #{u.cursor} {u.kind:<8} {u.state:<14} {detail}\n")
        out.flush()
    return 0
