"""An EventBus-style program, ported to agentcomm pub/sub.

An ``orders`` agent publishes order events; ``inventory`` and ``billing`` subscribe
to ``orders.created``, ``notifier`` to every ``orders.*`` event, and ``fulfilment``
shares ``orders.paid`` work in a consumer group. What changed from a naive
sketch:

* the log is bounded (by count, bytes, age), not an ever-growing ``event_log`` list;
* a topic with no subscriber keeps its events (counted as unrouted) instead of
  filing a "no_subscribers" dead letter, so a subscriber that starts later can
  replay them;
* a failing handler is retried with exponential backoff; only after its last
  attempt (or on ``Reject``) does the event become a dead letter, with the reason,
  attempts, last error and subscriber, and it can be redriven;
* ``replay`` hands retained events to *one* subscriber; a naive version
  re-published them, duplicating the log and re-notifying everyone;
* handlers are typed (a msgspec Struct), run concurrently per subscriber, and the
  events of one order (``key``) stay in order.

Run: ``python examples/pubsub_events.py``
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any, TextIO

import msgspec

from agentcomm import Agent, Context, Reject, RetryPolicy, Runtime


class Order(msgspec.Struct, frozen=True):
    """An order event's payload."""

    order_id: str
    sku: str
    quantity: int
    amount: float


STOCK = {"book": 10, "lamp": 1}
FAST_RETRY = RetryPolicy(max_attempts=3, backoff=0.01, jitter=0.0)


def build_agents(log: list[tuple[str, str]]) -> list[Agent]:
    """The subscribers; ``log`` records (agent, what) as they handle events.

    Example::

        agents = build_agents([])
    """
    inventory, billing, notifier = Agent("inventory"), Agent("billing"), Agent("notifier")
    packers = [Agent("packer-1"), Agent("packer-2")]

    @inventory.on("orders.created", retry=FAST_RETRY)
    async def reserve(order: Order) -> None:
        """Reserve stock; an unknown SKU can never succeed, so reject it at once."""
        if order.sku not in STOCK:
            raise Reject(f"unknown sku {order.sku!r}")
        if STOCK[order.sku] < order.quantity:
            raise RuntimeError(f"out of stock: {order.sku}")
        STOCK[order.sku] -= order.quantity
        log.append(("inventory", order.order_id))

    @billing.on("orders.created", concurrency=4)
    async def charge(order: Order, ctx: Context) -> None:
        """Charge the customer, then announce it (the new event records its cause)."""
        log.append(("billing", order.order_id))
        await ctx.publish("orders.paid", order, key=order.order_id)

    @notifier.on("orders.*")
    async def notify(order: Order, ctx: Context) -> None:
        """Tell a human about every order event."""
        log.append(("notifier", f"{ctx.envelope.topic}:{order.order_id}"))

    for packer in packers:

        @packer.on("orders.paid", group="fulfilment")
        async def pack(order: Order, ctx: Context) -> None:
            """Members of the 'fulfilment' group share the paid orders."""
            log.append(("fulfilment", order.order_id))

    return [inventory, billing, notifier, *packers]


async def run(out: TextIO) -> dict[str, Any]:
    """Run the scenario, narrate it to ``out`` and return what happened.

    Example::

        result = asyncio.run(run(sys.stdout))
    """
    w = out.write
    log: list[tuple[str, str]] = []

    def settled(dead: int) -> bool:
        kinds = [who for who, _ in log]
        return dead >= 2 and kinds.count("fulfilment") >= 3 and kinds.count("notifier") >= 6

    async with Runtime(agents=build_agents(log)) as rt:
        shop = rt.agent("orders")
        orders = [
            Order(order_id="o-1", sku="book", quantity=1, amount=12.5),
            Order(order_id="o-2", sku="lamp", quantity=2, amount=40.0),  # out of stock
            Order(order_id="o-3", sku="unicorn", quantity=1, amount=99.0),  # unknown
        ]
        for order in orders:
            seq = await shop.publish("orders.created", order, key=order.order_id)
            w(f"published orders.created {order.order_id} as event #{seq}\n")
        await shop.publish("audit.trail", {"note": "nobody listens here yet"})
        w("published audit.trail with no subscriber: kept in the log, not a dead letter\n")
        for _ in range(1000):  # wait (bounded) until every subscriber is done
            if settled(len(await rt.events.dead_letters())):
                break
            await asyncio.sleep(0.01)

        w("\ndead letters:\n")
        dead = await rt.events.dead_letters()
        for dl in dead:
            w(
                f"  #{dl.sequence} {dl.topic} {dl.event.sequence} for {dl.subscription}: "
                f"{dl.reason} after {dl.attempts} attempt(s): {dl.last_error}\n"
            )
        STOCK["lamp"] = 5  # restocked: redrive the out-of-stock order
        lamp = next(d for d in dead if d.reason == "max_attempts")
        redriven = await rt.events.redrive(lamp.sequence)
        w(f"redrive #{lamp.sequence} after restocking: {'handled' if redriven else 'failed'}\n")

        before = len([x for x in log if x[0] == "notifier"])
        replayed = await rt.events.replay("notifier", start=1)
        after = len([x for x in log if x[0] == "notifier"])
        w(f"replayed {replayed} events to notifier only ({after - before} notifications)\n")

        snap = await rt.events.refresh()
        w("\ntopic             published  delivered  unrouted  dead\n")
        for t in snap.topics:
            w(
                f"  {t.topic:<16}{t.published:>9}{t.delivered:>11}{t.unrouted:>10}"
                f"{t.dead_lettered:>6}\n"
            )
        w(f"\n{snap.events_stored} events retained in the log (bounded)\n")
        return {
            "log": list(log),
            "dead": [(d.reason, d.event.key) for d in dead],
            "redriven": redriven,
            "replayed": replayed,
            "left": [(d.reason, d.event.key) for d in await rt.events.dead_letters()],
            "unrouted": snap.topic("audit.trail").unrouted,
            "published": snap.published,
        }


def main() -> int:
    """Run the example, printing to stdout."""
    asyncio.run(run(sys.stdout))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
