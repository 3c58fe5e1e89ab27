"""``agentcomm nats setup``: the operator creates a namespace's streams and buckets.

With the authorization generated from a policy (``agentcomm policy nats-config``)
agents may not create, update or delete streams and buckets; the admin (or a trusted)
user runs this once per namespace, and again to change retention or replicas. It is
:meth:`NatsTransport.setup <agentcomm.transports.nats.NatsTransport.setup>` on the
command line; see ``docs/security.md``.

Example::

    AGENTCOMM_NATS=nats://admin:$PW@broker:4222 agentcomm nats setup --namespace prod --replicas 3
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING, Any, TextIO

from agentcomm.cli.ops import _with_transport, add_nats_arguments
from agentcomm.cli.output import _Fail, _json_line

if TYPE_CHECKING:
    from agentcomm.transports.nats.transport import NatsTransport

__all__ = ["add_setup_command", "cmd_setup"]


def add_setup_command(sub: Any) -> None:
    """Add ``agentcomm nats setup`` to the ``agentcomm`` parser.

    Example::

        add_setup_command(build_parser()._subparsers)
    """
    nats = sub.add_parser("nats", help="operator set-up of a NATS namespace")
    nats_sub = nats.add_subparsers(dest="nats_command", metavar="NATS_COMMAND", required=True)
    setup = nats_sub.add_parser(
        "setup",
        help="create the streams and buckets of a namespace (as the admin user)",
        description="Create, or update, the event log and dead-letter queue of pub/sub, the "
        "blackboard buckets, the presence bucket and the durable tasks' bucket and two "
        "streams of a namespace. Run it as the admin "
        "(or a trusted) user of the generated NATS config: agents may not create them.",
    )
    add_nats_arguments(setup)
    setup.add_argument("--replicas", type=int, default=1, help="copies of each (a cluster)")
    setup.add_argument("--bucket", action="append", help="blackboard buckets (default blackboard)")
    setup.add_argument("--history", type=int, default=16, help="changes kept per key (16)")
    setup.add_argument("--max-events", type=int, help="event log: at most this many events")
    setup.add_argument("--max-bytes", type=int, help="event log: at most this many bytes")
    setup.add_argument("--max-age", type=float, help="event log: drop events older (seconds)")
    setup.add_argument("--max-dead-letters", type=int, help="dead letters kept")
    setup.set_defaults(func=run_setup)


def run_setup(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run ``agentcomm nats setup``; returns the exit code.

    Example::

        run_setup(build_parser().parse_args(["nats", "setup", "--namespace", "prod"]))
    """
    try:
        return asyncio.run(_with_transport(cmd_setup, args, out or sys.stdout))
    except _Fail as exc:
        print(f"agentcomm nats setup: {exc}", file=sys.stderr)
        return 1


async def cmd_setup(t: NatsTransport, args: argparse.Namespace, out: TextIO) -> int:
    """Create or update every stream and bucket of ``t``'s namespace, one line each."""
    from agentcomm.core.flow import Retention

    limits = {
        "max_events": args.max_events,
        "max_bytes": args.max_bytes,
        "max_age": args.max_age,
        "max_dead_letters": args.max_dead_letters,
    }
    retention = Retention(**{k: v for k, v in limits.items() if v is not None})
    from agentcomm.tasks.model import BUCKET, BUCKET_HISTORY, TaskRetention, task_streams

    lines = await t.setup(
        retention=retention,
        buckets=[*(args.bucket or ["blackboard"]), (BUCKET, BUCKET_HISTORY)],
        history=args.history,
        replicas=args.replicas,
        streams=task_streams(TaskRetention()),  # durable tasks (docs/streams-and-tasks.md)
    )
    for line in lines:
        if args.json:
            _json_line(out, {"namespace": t.namespace, "result": line})
        else:
            out.write(f"{line}\n")
    out.flush()
    return 0
