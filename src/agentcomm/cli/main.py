"""The ``agentcomm`` command line: thin over the public API.

Run ``agentcomm --help`` for the commands; each has its own ``--help``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Sequence

__all__ = ["build_parser", "main"]

Command = Callable[[argparse.Namespace], int]


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.dashboard:
        from agentcomm.cli.dashboard_cmd import run_demo_dashboard

        return run_demo_dashboard(args)
    if args.serve:
        if not args.nats:
            print("agentcomm demo: --serve runs on NATS: give --nats URL", file=sys.stderr)
            return 2
        from agentcomm.cli.demo_serve import serve_demo

        return asyncio.run(
            serve_demo(args.nats, sys.stdout, namespace=args.namespace, seconds=args.seconds)
        )
    if args.nats:
        from agentcomm.cli.demo import run_nats_demo

        return asyncio.run(run_nats_demo(args.nats, sys.stdout))
    from agentcomm.cli.demo import run_demo
    from agentcomm.cli.failures import PipeSafe

    async def narrate() -> int:  # `agentcomm demo | head` ends quietly
        return await run_demo(out=PipeSafe(sys.stdout), trace=args.trace)  # type: ignore[arg-type]

    return asyncio.run(narrate())


def _cmd_run(args: argparse.Namespace) -> int:
    import signal

    from agentcomm.api import Runtime
    from agentcomm.core.errors import ConfigurationError
    from agentcomm.tools.catalogue import load_agents

    try:
        from agentcomm.transports.nats.transport import NatsTransport
    except ImportError:
        print("agentcomm run: the NATS transport needs: pip install 'agentcomm[nats]'")
        return 2
    agents = [a for target in args.target for a in load_agents(target)]
    if args.only:
        agents = [a for a in agents if a.name in args.only]
        missing = sorted(set(args.only) - {a.name for a in agents})
        if missing:
            raise ConfigurationError(f"no agent named {missing} in {args.target}")
    if not agents:
        raise ConfigurationError(f"{args.target} names no agents")

    async def run() -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        transport = NatsTransport(args.nats, namespace=args.namespace)
        try:
            async with Runtime(
                transport=transport, agents=agents, drain_timeout=args.drain_timeout
            ):
                await transport.flush()  # reachable from other processes from here on
                names = ", ".join(a.name for a in agents)
                print(
                    f"agentcomm: running {names} on {args.nats}; SIGINT/SIGTERM stops", flush=True
                )
                await stop.wait()
                # Leaving the runtime finishes in-flight work (up to the drain timeout);
                # unfinished events stay unacked and are redelivered, never half done.
                print("agentcomm: stopping", file=sys.stderr, flush=True)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        return 0

    return asyncio.run(run())


def _cmd_mcp_serve(args: argparse.Namespace) -> int:
    from agentcomm.cli.tools_cmd import serve_agents

    return asyncio.run(
        serve_agents(
            args.target,
            http=args.http,
            name=args.name,
            board=args.board or (),
            resumable=args.resumable,
        )
    )


def _cmd_tools(args: argparse.Namespace) -> int:
    if args.nats:
        from agentcomm.cli.ops import run

        return run("tools", args)
    from agentcomm.cli.tools_cmd import list_tools_cli

    return asyncio.run(
        list_tools_cli(
            args.target, urls=args.url, commands=args.command, as_json=args.json, llm=args.llm
        )
    )


def _cmd_ops(args: argparse.Namespace) -> int:
    from agentcomm.cli.ops import run

    return run(args.command, args)


def _cmd_keys_generate(args: argparse.Namespace) -> int:
    from agentcomm.core.errors import ConfigurationError
    from agentcomm.security.signing import Identity

    try:
        for name in args.name:
            ident = Identity.generate(name)
            path = ident.save(args.out, overwrite=args.force)
            # The private key goes to the file only, never to the terminal or a log.
            print(f"{name}: private key {path} (mode 0600), public key {ident.public_key_b64()}")
    except ConfigurationError as exc:
        # the library's advice names its keyword; here the flag is --force
        text = (
            str(exc)
            .replace("pass overwrite=True", "pass --force")
            .replace("overwrite=True", "--force")
        )
        print(f"agentcomm keys generate: {text}", file=sys.stderr)
        return 1
    return 0


def _cmd_policy(args: argparse.Namespace) -> int:
    from agentcomm.core.errors import ConfigurationError
    from agentcomm.security.policy import Policy
    from agentcomm.security.policy_nats import broker_warnings
    from agentcomm.tools.catalogue import load_agents

    try:
        policy = Policy.from_file(args.file)
        agents = [a for target in args.agents or () for a in load_agents(target)]
        if args.policy_command == "check":
            warnings = policy.check(agents)
            for w in warnings:
                print(f"warning: {w}")
            print(
                f"{args.file}: {len(policy.agents)} agents, {len(policy.trusted)} trusted, "
                f"{len(warnings)} warnings"
            )
            return 0
        text = policy.nats_config(
            namespace=args.namespace,
            buckets=args.bucket or ["blackboard"],
            agents=agents,
            admin=args.admin or None,
        )
        for w in broker_warnings(policy, agents):
            print(f"warning: {w}", file=sys.stderr)
    except ConfigurationError as exc:
        print(f"agentcomm policy {args.policy_command}: {exc}", file=sys.stderr)
        return 1
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


def _cmd_version(args: argparse.Namespace) -> int:
    from agentcomm.core.version import __version__

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
    demo.add_argument(
        "--trace",
        action="store_true",
        help="print the OpenTelemetry trace of one request through every agent it touched",
    )
    demo.add_argument(
        "--nats",
        metavar="URL",
        help="run the agents as separate processes on this NATS server (nats://host:4222)",
    )
    demo.add_argument(
        "--dashboard", action="store_true", help="run continuously with the live web dashboard"
    )
    demo.add_argument(
        "--serve",
        action="store_true",
        help="with --nats: keep the demo system running on NATS until Ctrl-C, to try the "
        "operator commands on (docs/operations.md)",
    )
    demo.add_argument("--namespace", default="demo", help="the namespace of --serve (default demo)")
    from agentcomm.cli.dashboard_cmd import add_dashboard_command, add_demo_options

    add_demo_options(demo)
    add_dashboard_command(sub)
    demo.set_defaults(func=_cmd_demo)

    run = sub.add_parser(
        "run",
        help="run agents from a Python module on NATS until SIGINT/SIGTERM",
        description="Start the agents named by TARGET (module:attr or file.py:attr: an Agent, "
        "a list of agents, or a function returning them) on a NATS server; a clean "
        "shutdown on SIGINT/SIGTERM finishes in-flight work or leaves it for redelivery.",
    )
    run.add_argument("target", nargs="+", help="module:attr or file.py:attr naming agents")
    run.add_argument(
        "--nats",
        metavar="URL",
        default=os.environ.get("AGENTCOMM_NATS"),
        required=not os.environ.get("AGENTCOMM_NATS"),
        help="NATS server, nats://host:4222 (default: $AGENTCOMM_NATS)",
    )
    run.add_argument(
        "--namespace",
        default="agentcomm",
        help="subject/stream prefix shared by cooperating processes",
    )
    run.add_argument(
        "--only", action="append", metavar="NAME", help="run only this agent (repeatable)"
    )
    run.add_argument(
        "--drain-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long shutdown waits for in-flight work (default 10)",
    )
    run.set_defaults(func=_cmd_run)

    mcp = sub.add_parser("mcp", help="serve agents as MCP tools")
    mcp_sub = mcp.add_subparsers(dest="mcp_command", metavar="MCP_COMMAND", required=True)
    serve = mcp_sub.add_parser(
        "serve", help="serve agents' handlers as MCP tools (stdio unless --http is given)"
    )
    serve.add_argument(
        "target", nargs="+", help="module:attr or file.py:attr naming an Agent, list or Runtime"
    )
    serve.add_argument(
        "--http", metavar="HOST:PORT", help="serve streamable HTTP here (e.g. 127.0.0.1:8000)"
    )
    serve.add_argument("--name", help="the MCP server name (default: the agent's name)")
    serve.add_argument(
        "--board",
        action="append",
        metavar="PREFIX",
        help="publish the blackboard keys under PREFIX as board:// resources (repeatable)",
    )
    serve.add_argument(
        "--resumable",
        action="store_true",
        help="with --http: keep stream events so a client resumes with Last-Event-ID "
        "(costs about 8%% per call)",
    )
    serve.set_defaults(func=_cmd_mcp_serve)

    from agentcomm.cli.a2a_cmd import add_a2a_commands

    add_a2a_commands(sub)

    tools = sub.add_parser("tools", help="list the tool catalogue of agents and MCP servers")
    tools.add_argument("target", nargs="*", help="module:attr or file.py:attr naming agents")
    tools.add_argument(
        "--url",
        action="append",
        default=[],
        metavar="NAME=URL",
        help="also import an MCP server's tools over streamable HTTP",
    )
    tools.add_argument(
        "--command",
        action="append",
        default=[],
        metavar="NAME=CMD",
        help="also import an MCP server's tools over stdio (CMD is shell-split)",
    )
    tools.add_argument("--json", action="store_true", help="print the catalogue as JSON")
    tools.add_argument(
        "--nats", metavar="URL", help="list what the agents connected to this NATS server offer"
    )
    tools.add_argument("--namespace", help="their namespace (with --nats; $AGENTCOMM_NAMESPACE)")
    tools.add_argument(
        "--llm",
        choices=["openai", "anthropic"],
        help="print LLM function-calling tool definitions instead",
    )
    tools.set_defaults(func=_cmd_tools)

    dlq = sub.add_parser(
        "dlq",
        help="list, show or redrive the pub/sub dead letters of a system on NATS",
        description="Dead letters of a running system on NATS (--nats URL or $AGENTCOMM_NATS, "
        "--namespace). An in-process runtime's are rt.events.dead_letters() in its own code.",
    )
    dlq.add_argument("action", choices=["list", "show", "redrive"])
    dlq.add_argument("sequence", nargs="?", type=int, help="dead letter number (show, redrive)")
    dlq.add_argument("--subscription", help="only this subscription's dead letters (list)")
    dlq.add_argument("--limit", type=int, default=100, help="at most this many (list)")
    from agentcomm.cli.ops import add_nats_arguments

    add_nats_arguments(dlq)
    dlq.set_defaults(func=_cmd_ops)  # an operator command like tail or stats

    from agentcomm.cli.ops import add_commands
    from agentcomm.cli.ops_setup import add_setup_command
    from agentcomm.cli.tasks_cmd import add_tasks_command

    add_commands(sub, _cmd_ops)
    add_tasks_command(sub)
    add_setup_command(sub)

    keys = sub.add_parser("keys", help="agent signing keys (Ed25519)")
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="KEYS_COMMAND", required=True)
    gen = keys_sub.add_parser(
        "generate", help="write NAME.key (private, mode 0600) and NAME.pub for each agent"
    )
    gen.add_argument("name", nargs="+", help="agent names")
    gen.add_argument("--out", default=".", help="directory for the key files (default: .)")
    gen.add_argument("--force", action="store_true", help="overwrite existing key files")
    gen.set_defaults(func=_cmd_keys_generate)

    pol = sub.add_parser("policy", help="check an access policy, or turn it into NATS config")
    pol_sub = pol.add_subparsers(dest="policy_command", metavar="POLICY_COMMAND", required=True)
    check = pol_sub.add_parser("check", help="load a TOML policy and report problems")
    check.add_argument("file", help="the policy file (TOML)")
    check.set_defaults(func=_cmd_policy)
    agents_help = (
        "module:attr or file.py:attr naming agents (as for `agentcomm run`; repeatable): "
        "their declared subscriptions name the consumers each may use"
    )
    check.add_argument("--agents", action="append", metavar="TARGET", help=agents_help)
    natsc = pol_sub.add_parser(
        "nats-config",
        help="print the NATS server authorization block for the policy (one user per agent)",
    )
    natsc.add_argument("file", help="the policy file (TOML)")
    natsc.add_argument("--namespace", default="agentcomm", help="the NatsTransport namespace")
    natsc.add_argument("--bucket", action="append", help="blackboard buckets (default: blackboard)")
    natsc.add_argument("--agents", action="append", metavar="TARGET", help=agents_help)
    natsc.add_argument(
        "--admin",
        default="admin",
        metavar="NAME",
        help="a user that may do everything, to create the streams and buckets "
        "(`agentcomm nats setup`); default admin, '' for none",
    )
    natsc.add_argument("-o", "--output", help="write to this file instead of stdout")
    natsc.set_defaults(func=_cmd_policy)

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
    except (Exception, KeyboardInterrupt) as exc:  # expected failures: one line each
        from agentcomm.cli.failures import report

        code = report(exc, str(getattr(args, "command", "") or ""))
        if code is None:
            raise  # a bug: its traceback is the report
        return code
