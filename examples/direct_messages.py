"""Direct message passing between agents, on agentcomm.

A naive ``MessageBus`` registers mailboxes, sends ``AgentMessage`` objects and
implements ``request_response`` by re-queueing replies that are not its own (which
livelocks with many requests in flight). Here every request has its own future,
a deadline, and a typed, validated payload.

Run: ``python examples/direct_messages.py``
"""

from __future__ import annotations

import asyncio

import msgspec

from agentcomm import Agent, Context, NoResponders, RequestTimeout, Runtime


class CustomerQuery(msgspec.Struct, frozen=True):
    """What the requester asks for."""

    customer_id: str


class CustomerRecord(msgspec.Struct, frozen=True):
    """What the responder answers."""

    customer_id: str
    name: str
    tier: str


# MessageBus.register("customer-data") -> an Agent with handlers
customer_data = Agent("customer-data")


@customer_data.handler
async def lookup(query: CustomerQuery, ctx: Context) -> CustomerRecord:
    """Look up a customer (the receiver's side of request_response)."""
    if query.customer_id == "c-42":
        print(f"  customer-data: request from {ctx.sender}, {ctx.remaining():.1f}s left")
    return CustomerRecord(customer_id=query.customer_id, name="Ada Lovelace", tier="gold")


# a notification handler: MessageBus.send(...) with message_type="notification"
audit = Agent("audit")
seen: list[str] = []


@audit.handler
async def record(event: str) -> None:
    """Keep an audit line."""
    seen.append(event)


async def main() -> None:
    async with Runtime(agents=[customer_data, audit]) as rt:
        support = rt.agent("support")  # MessageBus.register("support")

        # MessageBus.request_response(AgentMessage(...), timeout=5.0)
        record_ = await support.request(
            "customer-data", "lookup", CustomerQuery("c-42"), timeout=5.0, returns=CustomerRecord
        )
        print(f"support got {record_.name} ({record_.tier})")

        # 64 requests in flight from one agent: each answered by its own future
        answers = await asyncio.gather(
            *(
                support.request("customer-data", "lookup", {"customer_id": f"batch-{i}"})
                for i in range(64)
            )
        )
        print(f"{len(answers)} concurrent answers, first {answers[0]['customer_id']}")

        # MessageBus.send(AgentMessage(message_type="notification", ...))
        await support.send("audit", "record", {"event": "looked up c-42"})

        # a naive bus raises ValueError for an unknown receiver; we raise NoResponders
        try:
            await support.request("billing", "charge", {"amount": 10})
        except NoResponders as exc:
            print(f"fail fast: {exc}")

        # deadlines: RequestTimeout is also a TimeoutError
        try:
            await support.request("customer-data", "lookup", {"customer_id": "c-1"}, timeout=0)
        except RequestTimeout as exc:
            print(f"deadline: {exc}")

    print(f"audit saw: {seen}")


if __name__ == "__main__":
    asyncio.run(main())
