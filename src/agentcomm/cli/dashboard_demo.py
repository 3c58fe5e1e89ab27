"""The system ``agentcomm demo --dashboard`` runs: every pattern, over and over.

The support desk of ``agentcomm demo`` (``triage`` asks ``customer-data`` and
``billing``, then notifies ``notifier``: a request that touches four agents), an
``invoices.*`` topic with a ``printer`` that dead-letters poisoned invoices and a
``ledger`` that books them, a ``planner`` that writes the blackboard, and a durable
``report`` task with progress. :func:`demo_traffic` drives it until cancelled.

Example::

    async with demo_runtime(sys.stdout) as rt:
        await demo_traffic(rt, rounds=3)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from typing import TextIO

import msgspec

from agentcomm.api import Agent, Context, Runtime
from agentcomm.cli.demo import build_agents
from agentcomm.core.errors import AgentCommError, Reject
from agentcomm.core.flow import RetryPolicy

__all__ = ["demo_runtime", "demo_traffic"]


class Invoice(msgspec.Struct, frozen=True):
    """An invoice event."""

    invoice_id: str
    amount: float


def _agents(out: TextIO) -> list[Agent]:
    printer, ledger, planner, reporter = (
        Agent("printer"),
        Agent("ledger"),
        Agent("planner"),
        Agent("reporter"),
    )

    @printer.on("invoices.*", retry=RetryPolicy(max_attempts=2, backoff=0.05, jitter=0.0))
    async def print_invoice(invoice: Invoice) -> None:
        """Print an invoice; a poisoned one can never be printed."""
        if invoice.invoice_id.startswith("poison"):
            raise ValueError(f"cannot print {invoice.invoice_id}: the printer jams")

    @ledger.on("invoices.created")
    async def book(invoice: Invoice) -> None:
        """Book an invoice; a negative amount is rejected."""
        if invoice.amount < 0:
            raise Reject("negative amount")

    @planner.handler
    async def plan(step: int, ctx: Context) -> int:
        """Write the plan's next step on the blackboard."""
        await ctx.board.write("plan.step", {"step": step, "status": "in progress"})
        await ctx.board.write(f"plan.notes.{step % 3}", {"note": f"step {step}"})
        return step

    @reporter.task_handler()
    async def report(pages: int, ctx: Context) -> str:
        """A long report, with progress."""
        for page in range(pages):
            await asyncio.sleep(0.4)
            await ctx.progress(page + 1, pages, f"page {page + 1} of {pages}")
        return f"{pages} pages"

    return [*build_agents(out), printer, ledger, planner, reporter]


@contextlib.asynccontextmanager
async def demo_runtime(out: TextIO) -> AsyncIterator[Runtime]:
    """A running in-memory runtime with the demo's agents (narration to ``out``).

    Example::

        async with demo_runtime(io.StringIO()) as rt: ...
    """
    async with Runtime(agents=_agents(out), default_timeout=5.0) as rt:
        yield rt


async def demo_traffic(rt: Runtime, *, rounds: int | None = None, pause: float = 0.5) -> None:
    """Tickets, invoices (one in five poisoned), plan steps and a report now and then."""
    desk = rt.agent("help-desk")
    for n in itertools.count(1) if rounds is None else range(1, rounds + 1):
        customer = "c-1" if n % 2 else "c-2"
        try:
            await desk.request(
                "triage", "handle_ticket", {"customer_id": customer, "text": f"ticket {n}"}
            )
            await desk.request("planner", "plan", {"step": n})
        except AgentCommError:
            pass  # shown on the page as an error response; the demo goes on
        name = f"poison-{n}" if n % 5 == 0 else f"i-{n}"
        await desk.publish("invoices.created", Invoice(name, -1.0 if n % 7 == 0 else 10.0 * n))
        if n % 10 == 1:
            await desk.start_task("reporter", "report", {"pages": 5})
        await asyncio.sleep(pause)
