"""The ``agentcomm`` command line: thin over the public API.

Run ``agentcomm --help`` for the commands; each has its own ``--help``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence

__all__ = ["build_parser", "main"]

Command = Callable[[argparse.Namespace], int]


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return asyncio.run(run_demo(out=sys.stdout))


def _cmd_version(args: argparse.Namespace) -> int:
    from . import __version__

    print(f"agentcomm {__version__}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``agentcomm`` command.

    Example::

        build_parser().parse_args(["demo"])
    """
    parser = argparse.ArgumentParser(
        prog="agentcomm",
        description="Agents talking to each other: direct messages, a shared blackboard, "
        "pub/sub events and MCP tools, in-process or on NATS.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser("demo", help="run a small multi-agent scenario in-process and narrate it")
    demo.set_defaults(func=_cmd_demo)

    version = sub.add_parser("version", help="print the version")
    version.set_defaults(func=_cmd_version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``agentcomm`` console script.

    Example::

        main(["demo"])
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Command | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return func(args)
    except KeyboardInterrupt:
        return 130
