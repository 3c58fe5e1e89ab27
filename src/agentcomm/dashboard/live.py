"""The dashboard's live state: what it polls, at what pace, and what it sends to browsers.

:class:`Live` runs three loops in one task group, each bounded in cost whatever the
traffic: every :data:`TICK` it polls the source for new envelopes and keeps at most
:data:`PER_TICK` of them (the newest; the rest are counted as *sampled out*), which
feed the tail, the traces and the flow graph; every :data:`STATS_EVERY` it takes a
snapshot (agents, topics, subscriptions, dead letters) and derives rates from the
counters; every :data:`TASKS_EVERY` it lists the durable tasks. A watch on the
blackboard forwards each change. Everything reaches the browsers through the
:class:`~agentcomm.dashboard.feed.Hub`, encoded once, never waiting for a browser.

Example::

    live = Live(RuntimeSource(rt))
    async with asyncio.TaskGroup() as tg:
        tg.create_task(live.run())
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any

import msgspec

from agentcomm.core.errors import ConfigurationError
from agentcomm.core.topics import topic_matches
from agentcomm.dashboard.feed import Hub, TraceIndex, record_of
from agentcomm.dashboard.sources import RuntimeSource

__all__ = ["Live"]

logger = logging.getLogger("agentcomm.dashboard")

#: Seconds between two polls of the message source.
TICK = 0.25
#: Envelopes kept per poll at most (the newest); more are counted, not shown.
PER_TICK = 400
#: Seconds between two snapshots of the figures.
STATS_EVERY = 1.0
#: Seconds between two listings of the durable tasks.
TASKS_EVERY = 2.0
#: Messages per second below which an idle edge leaves the flow graph.
EDGE_FLOOR = 0.01
#: Records kept for a browser that opens the page (the tail's back scroll).
RECENT = 300


def _matches(pattern: str, topic: str) -> bool:
    try:
        return topic == pattern or topic_matches(pattern, topic)
    except ConfigurationError:
        return False


class Live:
    """Polls a source and broadcasts to the browsers; the figures the page shows.

    Example::

        live = Live(source); print(live.counters())
    """

    def __init__(self, source: RuntimeSource, hub: Hub | None = None) -> None:
        self.source = source
        self.hub = hub or Hub()
        self.traces = TraceIndex()
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT)
        #: Envelopes seen and kept, and those sampled out (polled past PER_TICK, or missed).
        self.seen = 0
        self.sampled_out = 0
        self.last_stats: dict[str, Any] | None = None
        self.last_tasks: list[dict[str, Any]] = []
        self.errors = 0
        self.last_error: str | None = None
        self._edges: dict[tuple[str, str], int] = {}
        self._edge_window_start = time.monotonic()
        self._edge_rates: dict[tuple[str, str], float] = {}
        self._prev: dict[tuple[str, str], tuple[float, int, int, int]] = {}
        self._rates: dict[tuple[str, str], tuple[float, float, float]] = {}

    async def run(self) -> None:
        """Run the loops until cancelled."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._loop(TICK, self.poll_messages))
            tg.create_task(self._loop(STATS_EVERY, self.refresh_stats))
            tg.create_task(self._loop(TASKS_EVERY, self.refresh_tasks))
            tg.create_task(self._watch_board())

    async def _loop(self, every: float, step: Any) -> None:
        while True:
            try:
                await step()
            except Exception as exc:  # a hiccup of the engine: said on the page, not fatal
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                logger.debug("dashboard: %s failed: %s", step.__name__, exc)
            await asyncio.sleep(every)

    def broadcast(self, kind: str, data: Any) -> None:
        """Send ``data`` to every browser as the event ``kind`` (encoded once)."""
        if self.hub.clients:
            self.hub.broadcast(kind, msgspec.json.encode(data))

    # -- messages ---------------------------------------------------------------------
    async def poll_messages(self) -> None:
        """Take the new envelopes: tail records, traces, flow edges."""
        got, missed = self.source.poll()
        if len(got) > PER_TICK:
            self.sampled_out += len(got) - PER_TICK
            got = got[-PER_TICK:]
        self.sampled_out += missed
        batch = []
        for env, kind, size in got:
            rec = record_of(env, kind=kind, size=size)
            self.traces.add(rec)
            self.recent.append(rec)
            if rec["kind"] != "response":
                to = rec["recipient"] or f"topic:{rec['topic'] or '?'}"
                key = (rec["sender"], to)
                self._edges[key] = self._edges.get(key, 0) + 1
            batch.append(rec)
        self.seen += len(batch)
        if batch:
            self.broadcast("msgs", {"records": batch, "sampled_out": self.sampled_out})

    # -- figures ----------------------------------------------------------------------
    async def refresh_stats(self) -> None:
        """A snapshot of the figures with rates and the flow graph; sent to the browsers."""
        snap = await self.source.snapshot()
        for row in snap["agents"]:
            row.update(self._rate(row))
        snap["flow"] = self._flow(snap)
        snap["dashboard"] = self.counters()
        self.last_stats = snap
        self.broadcast("stats", snap)

    def _rate(self, row: dict[str, Any]) -> dict[str, float]:
        """Per-second rates of an agent's counters between two snapshots of it."""
        key = (row["agent"], row["instance"])
        now = row["updated"]
        cur = (now, row["received"], row["handled"], row["sent"])
        prev = self._prev.get(key)
        rates = self._rates.get(key, (0.0, 0.0, 0.0))
        if prev is not None and now > prev[0]:
            dt = now - prev[0]
            rates = (
                max(cur[1] - prev[1], 0) / dt,
                max(cur[2] - prev[2], 0) / dt,
                max(cur[3] - prev[3], 0) / dt,
            )
            self._rates[key] = rates
        if prev is None or now > prev[0]:
            self._prev[key] = cur
        return {"received_rate": rates[0], "handled_rate": rates[1], "sent_rate": rates[2]}

    def _flow(self, snap: dict[str, Any]) -> dict[str, Any]:
        """Nodes (agents, topics) and edges weighted by messages per second.

        An edge from a sender is the share of that sender's envelopes seen on it,
        times the sender's send rate from its counters, so the weights stay right
        when the dashboard samples, averaged over the last few snapshots (an idle
        edge fades out); topic-to-subscriber edges are the subscriptions' delivery
        rates.
        """
        now = time.monotonic()
        window = max(now - self._edge_window_start, 1e-3)
        edges, self._edges, self._edge_window_start = self._edges, {}, now
        out_rate: dict[str, float] = {}
        for row in snap["agents"]:
            out_rate[row["agent"]] = out_rate.get(row["agent"], 0.0) + row.get("sent_rate", 0.0)
        seen_by: dict[str, int] = {}
        for (sender, _), n in edges.items():
            seen_by[sender] = seen_by.get(sender, 0) + n
        smooth = self._edge_rates
        for key in set(smooth) | set(edges):
            n = edges.get(key, 0)
            rate = n / window
            total = out_rate.get(key[0], 0.0)
            if n and total > 0:
                rate = max(rate, total * n / seen_by[key[0]])
            # a moving average over a few seconds; an edge idle long enough disappears
            smooth[key] = rate if key not in smooth else 0.5 * smooth[key] + 0.5 * rate
            if smooth[key] < EDGE_FLOOR:
                del smooth[key]
        result = [
            {"from": sender, "to": to, "rate": rate, "kind": "message"}
            for (sender, to), rate in sorted(smooth.items())
        ]
        topics = {t["topic"]: t.get("publish_rate", 0.0) for t in snap["topics"]}
        for sub in snap["subscriptions"]:
            matched = [t for t in topics if _matches(sub["pattern"], t)] or [sub["pattern"]]
            published = sum(topics.get(t, 0.0) for t in matched)
            for t in matched:
                share = topics.get(t, 0.0) / published if published else 1 / len(matched)
                rate = sub.get("deliver_rate", 0.0) * share
                result.append({"from": f"topic:{t}", "to": sub["agent"], "rate": rate,
                               "kind": "delivery"})  # fmt: skip
        nodes = {row["agent"] for row in snap["agents"]}
        for e in result:
            nodes.add(e["from"])
            nodes.add(e["to"])
        return {"nodes": sorted(nodes), "edges": result}

    def counters(self) -> dict[str, Any]:
        """The dashboard's own figures: envelopes seen, sampled out, dropped for browsers."""
        return {
            "seen": self.seen,
            "sampled_out": self.sampled_out,
            "dropped_for_clients": self.hub.dropped,
            "queued_bytes": self.hub.queued_bytes,
            "clients": len(self.hub.clients),
            "traces": len(self.traces),
            "errors": self.errors,
            "last_error": self.last_error,
        }

    async def refresh_tasks(self) -> None:
        """List the durable tasks (sent when they changed)."""
        tasks = await self.source.tasks()
        if tasks != self.last_tasks:
            self.last_tasks = tasks
            self.broadcast("tasks", tasks)

    async def _watch_board(self) -> None:
        """Forward every blackboard change to the browsers (restarted after a failure)."""
        from agentcomm.dashboard.sources import _builtins

        while True:
            try:
                async with self.source.board.watch("", snapshot=False) as changes:
                    async for change in changes:
                        self.broadcast("board", _builtins(change))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.errors += 1
                self.last_error = f"blackboard watch: {type(exc).__name__}: {exc}"
            await asyncio.sleep(1.0)
