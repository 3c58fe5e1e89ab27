"""``agentcomm dashboard --nats URL`` and ``agentcomm demo --dashboard``: the live web page.

``dashboard`` watches a running namespace on NATS from an operator runtime of its own
(no agents, no presence record): agents from presence, messages from a plain
subscription, dead letters, the blackboard and tasks from the shared stores. ``demo
--dashboard`` runs a small system in this process (the support desk of ``agentcomm
demo``, an invoice printer that dead-letters poisoned invoices, a planner writing the
blackboard, a durable report task) over and over, with the page on it. Both print the
page's URL, which carries the access token, and run until Ctrl-C (or ``--seconds``).
See ``docs/dashboard.md``.

Example::

    agentcomm dashboard --nats nats://127.0.0.1:4222 --namespace prod --allow-actions
    agentcomm demo --dashboard --http 127.0.0.1:8321
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import sys
from typing import Any

from agentcomm.core.errors import ConfigurationError, TransportError

__all__ = ["add_dashboard_command", "add_demo_options", "run_demo_dashboard"]


def _http(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"--http takes HOST:PORT (127.0.0.1:8321), got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def add_demo_options(p: argparse.ArgumentParser) -> None:
    """The dashboard's own options (``--http``, ``--allow-actions``, ...) on a subcommand.

    Example::

        add_demo_options(parser.add_parser("dashboard"))
    """
    p.add_argument(
        "--http",
        type=_http,
        default=("127.0.0.1", 0),
        metavar="HOST:PORT",
        help="where the page listens (default 127.0.0.1 and a free port)",
    )
    p.add_argument(
        "--allow-actions",
        action="store_true",
        help="allow redrive and delete from the page (as --operator, under the policy)",
    )
    p.add_argument("--operator", default="operator", help="the identity actions run as")
    p.add_argument("--token", help="the access token (default: a new random one)")
    p.add_argument("--seconds", type=float, help="stop after this many seconds")
    p.add_argument("--open", action="store_true", help="open the page in a web browser")


def add_dashboard_command(sub: Any) -> None:
    """Add ``agentcomm dashboard`` to the ``agentcomm`` parser.

    Example::

        add_dashboard_command(parser.add_subparsers())
    """
    from agentcomm.cli.ops import add_nats_arguments

    p = sub.add_parser(
        "dashboard",
        help="a live web page of a namespace on NATS: agents, flow, traces, dead letters",
        description="Serve a live dashboard of the namespace's agents, messages, traces, "
        "topics, dead letters, blackboard and tasks. Prints the URL (with its token).",
    )
    add_nats_arguments(p)
    p.add_argument("--bucket", default="blackboard", help="the blackboard bucket to show")
    add_demo_options(p)
    p.set_defaults(func=_run_namespace)


def _run_namespace(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(serve_namespace(args))
    except (ConfigurationError, TransportError) as exc:
        print(f"agentcomm dashboard: {exc}", file=sys.stderr)
        return 1


async def _until(args: argparse.Namespace, url: str) -> None:
    print(f"agentcomm dashboard: {url}", flush=True)
    print("(Ctrl-C stops)", file=sys.stderr, flush=True)
    if args.open:
        import webbrowser

        webbrowser.open(url)
    if args.seconds is None:
        await asyncio.Event().wait()
    else:
        await asyncio.sleep(args.seconds)


async def serve_namespace(args: argparse.Namespace) -> int:
    """Run the dashboard of ``args.namespace`` on ``args.nats`` until stopped."""
    try:
        from agentcomm.transports.nats.transport import NatsTransport
    except ImportError:
        raise ConfigurationError(
            "the dashboard on NATS needs: pip install 'agentcomm[nats]'"
        ) from None
    from agentcomm.api import Runtime
    from agentcomm.dashboard import Dashboard, NamespaceSource
    from agentcomm.observability.presence import Presence

    transport = NatsTransport(args.nats, namespace=args.namespace, connect_timeout=3.0)
    rt = Runtime(transport=transport)
    Presence.install(rt, enabled=False)  # an observer: not announced as a runtime
    try:
        await rt.__aenter__()
    except (TransportError, ConfigurationError) as exc:
        raise ConfigurationError(
            f"cannot reach NATS at {args.nats}: start `nats-server -js` there, or pass "
            "--nats URL (or set AGENTCOMM_NATS)"
        ) from exc
    try:
        source = NamespaceSource(rt, bucket=args.bucket, operator=args.operator)
        host, port = args.http
        async with Dashboard(
            source, host=host, port=port, token=args.token, allow_actions=args.allow_actions
        ) as dash:
            await _until(args, dash.url)
    finally:
        await rt.__aexit__(None, None, None)
    return 0


def run_demo_dashboard(args: argparse.Namespace) -> int:
    """``agentcomm demo --dashboard``: the demo system, continuously, with the page on it."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_demo(args))
    return 0


async def _demo(args: argparse.Namespace) -> None:
    from agentcomm.cli.dashboard_demo import demo_runtime, demo_traffic

    async with demo_runtime(io.StringIO()) as rt:
        host, port = args.http
        async with rt.dashboard(
            host=host,
            port=port,
            token=args.token,
            allow_actions=args.allow_actions,
            operator=args.operator,
        ) as dash:
            async with asyncio.TaskGroup() as tg:
                traffic = tg.create_task(demo_traffic(rt))
                await _until(args, dash.url)
                traffic.cancel()
