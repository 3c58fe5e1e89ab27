"""Tool sharing over MCP, on agentcomm.

A ``customer-data`` agent exposes ``lookup_customer(identifier, fields)``; it needs no
MCP code: its handler's annotations are the tool's schema and its docstring the tool's
description. A ``billing`` agent uses that tool over MCP, exactly as a hand-written
second agent does with ``MCPServerStdio(command=..., args=[...])``: the customer-data
agent runs in its own process, started as ``agentcomm mcp serve`` over stdio (or is
reached at a streamable-HTTP URL), and billing calls it with an ordinary request.

Run it::

    python examples/mcp_customer_data.py            # customer-data over stdio
    python examples/mcp_customer_data.py --http     # customer-data over streamable HTTP

Serve the customer-data agent alone to any MCP client::

    agentcomm mcp serve examples/mcp_customer_data.py:customer_data
    agentcomm mcp serve examples/mcp_customer_data.py:customer_data --http 127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import msgspec

from agentcomm import Agent, Context, Runtime


class Customer(msgspec.Struct, frozen=True):
    id: str
    email: str
    name: str
    plan: str
    seats: int


#: The customer database (a stand-in for a real database).
CUSTOMERS = {
    c.id: c
    for c in (
        Customer("c-100", "ada@example.com", "Ada Lovelace", "team", 12),
        Customer("c-200", "alan@example.com", "Alan Turing", "solo", 1),
    )
}
PRICE_CENTS = {"solo": 900, "team": 1900}

customer_data = Agent("customer-data", description="Owns customer records")


@customer_data.handler
async def lookup_customer(identifier: str, fields: list[str] | None = None) -> dict[str, Any]:
    """Look up customer details by email or ID.

    ``fields`` picks the fields to return (all of them when omitted).
    """
    found = CUSTOMERS.get(identifier) or next(
        (c for c in CUSTOMERS.values() if c.email == identifier), None
    )
    if found is None:
        raise LookupError(f"no customer with id or email {identifier!r}")
    record = msgspec.structs.asdict(found)
    if not fields:
        return record
    unknown = sorted(set(fields) - set(record))
    if unknown:
        raise ValueError(f"unknown fields {unknown}; known: {sorted(record)}")
    return {f: record[f] for f in fields}


class Invoice(msgspec.Struct, frozen=True):
    customer: str
    plan: str
    seats: int
    amount_cents: int


billing = Agent("billing", description="Handles billing queries using customer-data tools")


@billing.handler
async def monthly_invoice(identifier: str, ctx: Context) -> Invoice:
    """Compute a customer's monthly invoice from the customer-data agent's records."""
    c = await ctx.request(
        "customer-data",
        "lookup_customer",
        {"identifier": identifier, "fields": ["id", "plan", "seats"]},
    )
    return Invoice(c["id"], c["plan"], c["seats"], PRICE_CENTS[c["plan"]] * c["seats"])


def serve_command() -> list[str]:
    """The command that serves the customer-data agent over MCP stdio."""
    return [sys.executable, "-m", "agentcomm", "mcp", "serve", f"{__file__}:customer_data"]


async def run_billing(*, command: list[str] | None = None, url: str | None = None) -> list[str]:
    """Run the billing agent against a customer-data MCP server; return what it printed."""
    lines: list[str] = []
    async with Runtime(agents=[billing]) as rt:
        conn = await rt.tools.connect("customer-data", command=command, url=url)
        lines.append(f"customer-data tools over MCP: {conn.tool_names()}")
        me = rt.agent("support-desk")
        for who in ("ada@example.com", "c-200"):
            inv = await me.request(
                "billing", "monthly_invoice", {"identifier": who}, returns=Invoice
            )
            lines.append(
                f"{inv.customer}: {inv.seats} x {inv.plan} = ${inv.amount_cents / 100:.2f}"
            )
        try:
            await me.request("billing", "monthly_invoice", {"identifier": "nobody@example.com"})
        except Exception as exc:
            lines.append(f"unknown customer -> {type(exc).__name__}: {exc}")
    return lines


async def main(http: bool = False) -> list[str]:
    """Run the whole scenario: customer-data over stdio (a subprocess) or over HTTP."""
    if not http:
        return await run_billing(command=serve_command())
    async with Runtime(agents=[customer_data]) as server_rt:
        server = await server_rt.tools.expose("customer-data")
        async with server.serve_http("127.0.0.1", 0) as url:
            return await run_billing(url=url)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http", action="store_true", help="use streamable HTTP, not stdio")
    for line in asyncio.run(main(http=parser.parse_args().http)):
        print(line)
