"""``agentcomm demo``: a small multi-agent scenario on the in-memory transport, narrated.

A support desk: a ``triage`` agent takes a ticket, asks ``customer-data`` for the
customer, asks ``billing`` for the balance, and notifies ``notifier``. It shows
request/response, notifications, deadlines, fail-fast and remote errors.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TextIO

import msgspec

from agentcomm.api import Agent, Context, Runtime
from agentcomm.cli.demo_work import work_section
from agentcomm.core.errors import NoResponders, RemoteError, RequestTimeout, ValidationError

__all__ = ["build_agents", "demo_agents", "pubsub_demo", "run_demo", "run_nats_demo"]


class Customer(msgspec.Struct, frozen=True):
    """A customer record."""

    id: str
    name: str
    plan: str


class Ticket(msgspec.Struct, frozen=True):
    """A support ticket."""

    customer_id: str
    text: str


class Verdict(msgspec.Struct, frozen=True):
    """What triage decided."""

    customer: str
    balance: float
    route: str


CUSTOMERS = {
    "c-1": Customer("c-1", "Ada Lovelace", "pro"),
    "c-2": Customer("c-2", "Alan Turing", "free"),
}
BALANCES = {"c-1": 120.5, "c-2": -30.0}


def build_agents(out: TextIO) -> list[Agent]:
    """The demo's agents, writing what they do to ``out``.

    Example::

        agents = build_agents(sys.stdout)
    """
    customer_data = Agent("customer-data")
    billing = Agent("billing")
    triage = Agent("triage")
    notifier = Agent("notifier", concurrency=1)

    @customer_data.handler
    async def lookup_customer(identifier: str) -> Customer:
        """Look up a customer by id."""
        customer = CUSTOMERS.get(identifier)
        if customer is None:
            raise KeyError(f"no customer {identifier}")
        return customer

    @billing.handler
    async def balance(customer_id: str) -> float:
        """The customer's account balance."""
        return BALANCES[customer_id]

    @billing.handler
    async def slow_report(ctx: Context) -> str:
        """A report that takes longer than callers wait."""
        await asyncio.sleep(5)
        return "done"

    @notifier.handler
    async def notify(channel: str, text: str) -> None:
        """Deliver a notification to a human channel."""
        out.write(f"  [notifier] #{channel}: {text}\n")

    @triage.handler
    async def handle_ticket(ticket: Ticket, ctx: Context) -> Verdict:
        """Route a support ticket."""
        customer = await ctx.request(
            "customer-data",
            "lookup_customer",
            {"identifier": ticket.customer_id},
            returns=Customer,
        )
        owed = await ctx.request("billing", "balance", {"customer_id": customer.id}, returns=float)
        route = (
            "collections" if owed < 0 else ("priority" if customer.plan == "pro" else "standard")
        )
        await ctx.send(
            "notifier", "notify", {"channel": route, "text": f"{customer.name}: {ticket.text}"}
        )
        return Verdict(customer=customer.name, balance=owed, route=route)

    return [customer_data, billing, triage, notifier]


async def run_demo(out: TextIO, *, trace: bool = False) -> int:
    """Run the scenario and narrate it to ``out``; returns an exit code.

    With ``trace``, the first ticket's trace is printed as a tree of spans through
    every agent it touched, with timings (OpenTelemetry, recorded in memory).

    Example::

        asyncio.run(run_demo(sys.stdout, trace=True))
    """
    w = out.write
    recorder = None
    if trace:
        from agentcomm.observability.tracing import TraceRecorder

        recorder = TraceRecorder()
    w("agentcomm demo: the four patterns on the in-memory transport\n\n")
    w("1. Direct messages (request/response with correlation ids and deadlines)\n")
    async with Runtime(
        agents=build_agents(out),
        default_timeout=2.0,
        tracing=None if recorder is None else recorder.provider,
    ) as rt:
        desk = rt.agent("desk")
        for cid, text in [("c-1", "invoice looks wrong"), ("c-2", "cannot log in")]:
            verdict = await desk.request(
                "triage", "handle_ticket", {"customer_id": cid, "text": text}, returns=Verdict
            )
            w(
                f"  desk -> triage.handle_ticket({cid}) = route {verdict.route!r}, "
                f"balance {verdict.balance}\n"
            )
            if recorder is not None and cid == "c-1":
                await asyncio.sleep(0.05)  # let the notification's span end
                w("\n  trace of that request (OpenTelemetry spans, durations):\n")
                tree = recorder.format_tree(recorder.trace_ids()[0])
                w("".join(f"    {line}\n" for line in tree.splitlines()) + "\n")
        w("  ten tickets at once, each answered by its own future:\n")
        verdicts = await asyncio.gather(
            *(
                desk.request(
                    "triage",
                    "handle_ticket",
                    {"customer_id": "c-1", "text": f"#{i}"},
                    returns=Verdict,
                )
                for i in range(10)
            )
        )
        w(f"  {len(verdicts)} verdicts, all for {verdicts[0].customer}\n\n")

        w("2. Failures are typed and fast\n")
        try:
            await desk.request("auditor", "review", {})
        except NoResponders as exc:
            w(f"  NoResponders at once: {exc}\n")
        try:
            await desk.request("customer-data", "lookup_customer", {"identifier": 42})
        except ValidationError as exc:
            w(f"  ValidationError, handler never ran: {exc}\n")
        try:
            await desk.request("customer-data", "lookup_customer", {"identifier": "c-9"})
        except RemoteError as exc:
            w(f"  RemoteError: {exc}\n")
        try:
            await desk.request("billing", "slow_report", None, timeout=0.2)
        except RequestTimeout as exc:
            w(f"  RequestTimeout: {exc}\n")

        stats = rt.statistics()
        w("\nagent            handled  failed  rejected\n")
        for a in stats.agents:
            w(f"  {a.name:<15}{a.handled:>7}{a.failed:>8}{a.rejected:>10}\n")
        w(
            f"\nthe runtime's bounded message log holds {stats.messages_logged} envelopes; "
            "the last 3:\n"
        )
        for env in rt.message_log.recent(3):
            target = env.recipient or env.topic
            w(f"  {env.kind:<12} {env.sender} -> {target} ({env.payload_size()} bytes)\n")
    await _blackboard_section(out)
    await _pubsub_section(out)
    await _mcp_section(out)
    await work_section(out)
    return 0


async def _blackboard_section(out: TextIO) -> None:
    from agentcomm.core.errors import RevisionConflict

    w = out.write
    w("\n3. Shared blackboard (versioned keys, compare-and-set, watches)\n")
    async with Runtime() as rt:
        board = rt.board
        async with board.watch("ticket.", snapshot=False) as changes:
            triage, billing = board.as_author("triage"), board.as_author("billing")
            first = await triage.write("ticket.c-1", {"route": "priority"})
            await billing.write("ticket.c-1", {"route": "collections"}, expected_revision=first)
            try:
                await triage.write("ticket.c-1", {"route": "standard"}, expected_revision=first)
            except RevisionConflict as exc:
                w(f"  triage's stale write refused: {exc.current.author} wrote first\n")
            for _ in range(2):
                change = await anext(changes)
                w(f"  watcher: {change.key} r{change.revision} -> {change.value}\n")
        await asyncio.gather(
            *(board.update("stats.tickets", lambda n: (n or 0) + 1) for _ in range(10))
        )
        count = await board.read("stats.tickets")
        w(f"  10 concurrent update() increments -> {count.value if count else None}\n")


class Invoice(msgspec.Struct, frozen=True):
    """An invoice event of the pub/sub demo."""

    invoice_id: str
    customer_id: str
    amount: float


@contextlib.asynccontextmanager
async def pubsub_demo() -> AsyncIterator[Runtime]:
    """A runtime after a small pub/sub scenario that leaves three dead letters.

    ``printer`` fails while the printer is "offline" (retried, then dead-lettered),
    ``ledger`` rejects negative amounts, and one invoice expires (TTL) before it is
    handled. The printer is back online when the runtime is yielded, so a redrive
    succeeds. Used by ``agentcomm demo`` and ``agentcomm dlq``.

    Example::

        async with pubsub_demo() as rt:
            print(len(await rt.events.dead_letters()))
    """
    from agentcomm.core.errors import Reject
    from agentcomm.core.flow import RetryPolicy

    printer_online = [False]
    printer, ledger = Agent("printer"), Agent("ledger")
    printed: list[str] = []

    @printer.on("invoices.*", retry=RetryPolicy(max_attempts=3, backoff=0.01, jitter=0.0))
    async def print_invoice(invoice: Invoice) -> None:
        """Print an invoice (fails while the printer is offline)."""
        if not printer_online[0] and invoice.invoice_id == "i-2":
            raise ConnectionError("printer offline")
        printed.append(invoice.invoice_id)

    @ledger.on("invoices.created", concurrency=4)
    async def book(invoice: Invoice) -> None:
        """Book an invoice; a negative amount can never be booked."""
        if invoice.amount < 0:
            raise Reject(f"negative amount {invoice.amount}")

    async with Runtime(agents=[printer, ledger]) as rt:
        billing = rt.agent("billing")
        await billing.publish("invoices.created", Invoice("i-1", "c-1", 120.5), key="c-1")
        await billing.publish("invoices.created", Invoice("i-2", "c-2", 30.0), key="c-2")
        await billing.publish("invoices.created", Invoice("i-3", "c-1", -5.0), key="c-1")
        await billing.publish("invoices.reminder", Invoice("i-4", "c-2", 30.0), ttl=1e-6)
        for _ in range(1000):  # bounded wait for the three dead letters
            if len(await rt.events.dead_letters()) >= 3:
                break
            await asyncio.sleep(0.005)
        printer_online[0] = True
        yield rt


async def _pubsub_section(out: TextIO) -> None:
    w = out.write
    w("\n4. Pub/sub events (durable bounded log, retries, dead letters, replay)\n")
    async with pubsub_demo() as rt:
        for dl in await rt.events.dead_letters():
            w(
                f"  dead letter #{dl.sequence}: {dl.topic} for {dl.subscription}, "
                f"{dl.reason} after {dl.attempts} attempt(s): {dl.last_error}\n"
            )
        dls = await rt.events.dead_letters(subscription="printer__print_invoice")
        first = next(d for d in dls if d.reason == "max_attempts")
        ok = await rt.events.redrive(first.sequence)
        w(f"  printer back online; redrive #{first.sequence}: {'handled' if ok else 'failed'}\n")
        count = await rt.events.replay("ledger", start=1)
        w(f"  replayed {count} retained events to ledger only, nothing re-published\n")
        snap = await rt.events.refresh()
        w(
            f"  {snap.published} published, {snap.events_stored} retained, "
            f"{snap.dead_letters} dead letters stored now\n"
        )


async def _mcp_section(out: TextIO) -> None:
    w = out.write
    w("\n5. MCP tools (handlers exposed as MCP tools, called by an MCP client)\n")
    try:
        import mcp
    except ImportError:
        w("  skipped: pip install 'agentcomm[mcp]'\n")
        return
    crm = Agent("customer-data")

    @crm.handler
    async def lookup_customer(identifier: str, fields: list[str] | None = None) -> dict[str, str]:
        """Look up customer details by email or ID."""
        record = {"id": identifier, "plan": "team", "email": f"{identifier}@example.com"}
        return {f: record[f] for f in fields} if fields else record

    async with Runtime(agents=[crm]) as rt:
        server = await rt.tools.expose("customer-data")
        async with mcp.Client(server.server) as client:
            (tool,) = (await client.list_tools()).tools
            args = list(tool.input_schema["properties"])
            w(f"  tool {tool.name!r}: {tool.description} args={args}\n")
            r = await client.call_tool(tool.name, {"identifier": "c-7", "fields": ["plan"]})
            w(f"  call -> {r.structured_content}\n")
            r = await client.call_tool(tool.name, {"identifier": 7})
            w(f"  bad arguments -> isError: {r.content[0].text[:60]}...\n")  # type: ignore[union-attr]
        names = [t.llm_name for t in rt.tools.catalogue()]
        w(f"  catalogue for LLM function calling: {names}\n")


# -- the same agents as separate processes on NATS (``agentcomm demo --nats URL``) ----------
DEMO_AGENTS = ("customer-data", "billing", "triage", "notifier")


def demo_agents() -> list[Agent]:
    """The direct-messaging demo's agents, printing to stdout line by line.

    ``agentcomm run agentcomm.cli.demo:demo_agents --only billing --nats URL`` runs one of
    them; ``agentcomm demo --nats URL`` starts one such process per agent.

    Example::

        agents = demo_agents()
    """
    import sys

    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # the notifier's lines reach a pipe at once
    return build_agents(sys.stdout)


async def run_nats_demo(url: str, out: TextIO, *, namespace: str | None = None) -> int:
    """Run the demo's agents as separate processes on the NATS server at ``url``; narrate.

    Each agent runs in its own ``agentcomm run`` process; this process is the help desk
    that sends them tickets. At the end every agent process is stopped with SIGTERM and
    shuts down cleanly. Returns an exit code.

    Example::

        asyncio.run(run_nats_demo("nats://127.0.0.1:4222", sys.stdout))
    """
    import os
    import signal
    import sys

    from agentcomm.transports.nats.transport import NatsTransport

    ns = namespace or f"demo{os.getpid()}"
    probe = NatsTransport(url, namespace=ns)  # fail in one line, now, when nothing listens
    await probe.start()
    await probe.close()
    w = out.write
    w(f"agentcomm demo on NATS at {url} (namespace {ns}): one process per agent\n\n")
    procs: dict[str, asyncio.subprocess.Process] = {}
    ready = {name: asyncio.Event() for name in DEMO_AGENTS}

    async def pump(name: str, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            if line.startswith("agentcomm: running"):
                ready[name].set()
            elif line:
                w(f"  [{name}, pid {proc.pid}] {line.strip()}\n")

    try:
        async with asyncio.TaskGroup() as tg:
            for name in DEMO_AGENTS:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "agentcomm",
                    "run",
                    "agentcomm.cli.demo:demo_agents",
                    "--only",
                    name,
                    "--nats",
                    url,
                    "--namespace",
                    ns,
                    stdout=asyncio.subprocess.PIPE,
                )
                procs[name] = proc
                tg.create_task(pump(name, proc))
            async with asyncio.timeout(30):
                for event in ready.values():
                    await event.wait()
            pids = ", ".join(f"{n} {p.pid}" for n, p in procs.items())
            w(f"agents started ({pids})\n\n")
            async with Runtime(transport=NatsTransport(url, namespace=ns)) as rt:
                desk = rt.agent("desk")
                for cid, text in [("c-1", "invoice looks wrong"), ("c-2", "cannot log in")]:
                    verdict = await desk.request(
                        "triage",
                        "handle_ticket",
                        {"customer_id": cid, "text": text},
                        returns=Verdict,
                        timeout=5.0,
                    )
                    w(f"  desk -> triage.handle_ticket({cid}) = route {verdict.route!r}\n")
                verdicts = await asyncio.gather(
                    *(
                        desk.request(
                            "triage",
                            "handle_ticket",
                            {"customer_id": "c-1", "text": f"#{i}"},
                            returns=Verdict,
                            timeout=5.0,
                        )
                        for i in range(10)
                    )
                )
                w(f"  ten tickets at once across processes: {len(verdicts)} verdicts\n")
                try:
                    await desk.request("auditor", "review", {})
                except NoResponders as exc:
                    w(f"  NoResponders at once, from the server: {exc}\n")
                try:
                    await desk.request("billing", "slow_report", None, timeout=0.3)
                except RequestTimeout as exc:
                    w(f"  RequestTimeout: {exc}\n")
            w("\nstopping the agent processes with SIGTERM (clean shutdown)\n")
            for proc in procs.values():
                proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(30):
                codes = {name: await proc.wait() for name, proc in procs.items()}
        w("".join(f"  {name} exited with {code}\n" for name, code in codes.items()))
        return 0 if all(code == 0 for code in codes.values()) else 1
    finally:
        for proc in procs.values():
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
