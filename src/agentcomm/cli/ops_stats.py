"""``agentcomm stats``: one snapshot of a namespace on NATS, as tables or JSON lines.

Agents, topics and subscriptions from presence and the streams, and the failures
each runtime counted (``rt.statistics().errors``, background work included).

Example::

    agentcomm stats --nats nats://127.0.0.1:4222 --json
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import TYPE_CHECKING, Any, TextIO

from agentcomm.cli.output import _ago, _Fail, _has_stream, _json_line, _presence, _table
from agentcomm.core.errors import ConfigurationError
from agentcomm.pubsub.partitions import topic_of

if TYPE_CHECKING:
    from agentcomm.transports.nats.transport import NatsTransport

__all__ = ["cmd_stats", "collect_stats"]


# -- stats --------------------------------------------------------------------------------------
async def collect_stats(t: NatsTransport) -> dict[str, Any]:
    """One snapshot of the namespace: agents, topics, subscriptions, streams, failures.

    ``failures`` has one row per runtime and kind (``rt.statistics().errors``):
    ``runtime`` (host:pid), ``instance``, ``kind``, ``count``, ``last_error``,
    ``last_at`` and ``last_subject``.

    Example::

        snap = await collect_stats(transport); print(snap["dead_letters"])
    """
    import nats.js.errors

    agents, runtimes = await _presence(t)
    js = t.client.jetstream(timeout=t.api_timeout)
    subs: list[dict[str, Any]] = []
    streams: dict[str, Any] = {}
    dead_by_sub: dict[str, int] = {}
    for rec in agents:
        for s in rec.subscriptions:
            dead_by_sub[s.name] = dead_by_sub.get(s.name, 0) + s.dead_lettered
    for name in ("EVENTS", "DLQ"):
        try:
            si = await js.stream_info(f"{t.namespace}_{name}")
            streams[name] = {"messages": si.state.messages, "bytes": si.state.bytes}
        except nats.js.errors.NotFoundError:
            streams[name] = {"messages": 0, "bytes": 0}
    if streams["EVENTS"]["messages"] or await _has_stream(js, f"{t.namespace}_EVENTS"):
        prefix = f"{t.namespace}.s.EVENTS."
        for ci in await js.consumers_info(f"{t.namespace}_EVENTS"):
            filt = ci.config.filter_subject or ">"
            subs.append(
                {
                    "subscription": ci.name,
                    "pattern": topic_of(filt[len(prefix) :]) if filt.startswith(prefix) else filt,
                    "lag": ci.num_pending or 0,
                    "in_flight": ci.num_ack_pending or 0,
                    "redelivered": ci.num_redelivered or 0,
                    "dead_lettered": dead_by_sub.get(ci.name or "", 0),
                }
            )
    topics: dict[str, dict[str, Any]] = {}
    # What each topic holds in the log, from the stream itself: it outlives the
    # publishers (their presence records count only what live runtimes published).
    stored: dict[str, int] = {}
    if streams["EVENTS"]["messages"]:
        prefix = f"{t.namespace}.s.EVENTS."
        si = await js.stream_info(f"{t.namespace}_EVENTS", subjects_filter=f"{prefix}>")
        for subject, count in (si.state.subjects or {}).items():
            topic = topic_of(subject[len(prefix) :])  # the partitions of a topic add up
            stored[topic] = stored.get(topic, 0) + count
    for topic, count in stored.items():
        topics[topic] = {"topic": topic, "published": 0, "publish_rate": 0.0,
                         "delivered": 0, "deliver_rate": 0.0, "retried": 0,
                         "dead_lettered": 0, "stored": count}  # fmt: skip
    for r in runtimes:
        for tp in r.pubsub.topics if r.pubsub else ():
            row = topics.setdefault(
                tp.topic,
                {"topic": tp.topic, "published": 0, "publish_rate": 0.0, "delivered": 0,
                 "deliver_rate": 0.0, "retried": 0, "dead_lettered": 0, "stored": 0},
            )  # fmt: skip
            for k in ("published", "publish_rate", "delivered", "deliver_rate", "retried"):
                row[k] += getattr(tp, k)
            row["dead_lettered"] += tp.dead_lettered
    per_agent: dict[str, dict[str, Any]] = {}
    for rec in agents:
        a = rec.statistics
        row = per_agent.setdefault(
            rec.agent,
            {"agent": rec.agent, "instances": 0, "received": 0, "handled": 0, "failed": 0,
             "handled_rate": 0.0, "queued": 0, "in_flight": 0},
        )  # fmt: skip
        row["instances"] += 1
        for k in ("received", "handled", "failed", "queued", "in_flight"):
            row[k] += getattr(a, k)
        row["handled_rate"] += rec.handled_rate
    failures = [
        {"runtime": f"{r.host}:{r.pid}", "instance": r.instance, "kind": kind,
         "count": rec.count, "last_error": rec.last_error, "last_at": rec.last_at,
         "last_subject": rec.last_subject}
        for r in runtimes
        for kind, rec in sorted(r.errors.items())
    ]  # fmt: skip
    return {
        "time": time.time(),
        "namespace": t.namespace,
        "agents": [per_agent[k] for k in sorted(per_agent)],
        "topics": [topics[k] for k in sorted(topics)],
        "subscriptions": sorted(subs, key=lambda s: s["subscription"]),
        "events_stored": streams["EVENTS"]["messages"],
        "dead_letters": streams["DLQ"]["messages"],
        "failures": failures,
    }


def _print_stats(out: TextIO, snap: dict[str, Any]) -> None:
    _table(
        out,
        f"agents in {snap['namespace']!r}",
        ["agent", "instances", "handled", "handled/s", "failed", "queued", "in flight"],
        [
            (a["agent"], a["instances"], a["handled"], f"{a['handled_rate']:.1f}", a["failed"],
             a["queued"], a["in_flight"])
            for a in snap["agents"]
        ],
    )  # fmt: skip
    _table(
        out,
        "topics",
        ["topic", "in log", "published", "pub/s", "delivered", "deliv/s", "retried", "dead"],
        [
            (x["topic"], x["stored"], x["published"], f"{x['publish_rate']:.1f}",
             x["delivered"], f"{x['deliver_rate']:.1f}", x["retried"], x["dead_lettered"])
            for x in snap["topics"]
        ],
    )  # fmt: skip
    _table(
        out,
        "subscriptions",
        ["subscription", "pattern", "lag", "in flight", "redelivered", "dead"],
        [
            (s["subscription"], s["pattern"], s["lag"], s["in_flight"], s["redelivered"],
             s["dead_lettered"])
            for s in snap["subscriptions"]
        ],
    )  # fmt: skip
    if snap["failures"]:
        _table(
            out,
            "failures (counted by each runtime, background work included)",
            ["runtime", "kind", "count", "last", "subject", "last error"],
            [
                (f["runtime"], f["kind"], f["count"], _ago(f["last_at"]), f["last_subject"],
                 f["last_error"])
                for f in snap["failures"]
            ],
        )  # fmt: skip
    else:
        out.write("failures: none\n")
    out.write(f"events stored: {snap['events_stored']}   dead letters: {snap['dead_letters']}\n")
    out.flush()


async def cmd_stats(t: NatsTransport, args: argparse.Namespace, out: TextIO) -> int:
    """``agentcomm stats [--watch]``: rates, lag, in flight, dead letters."""
    if args.interval <= 0:
        raise ConfigurationError("--interval must be positive seconds")
    shown = 0
    while True:
        snap = await collect_stats(t)
        if shown == 0 and not (snap["agents"] or snap["topics"] or snap["events_stored"]):
            raise _Fail(
                f"nothing runs in namespace {t.namespace!r}: no agents announce themselves "
                "and no events are stored; start them, or pass the --namespace they use"
            )
        shown += 1
        if args.json:
            _json_line(out, snap)
        else:
            if args.watch and out.isatty():
                out.write("\x1b[2J\x1b[H")  # clear the screen between refreshes
            _print_stats(out, snap)
            if args.watch:
                out.write(f"(every {args.interval:g}s, Ctrl-C stops)\n\n")
                out.flush()
        if not args.watch or (args.count is not None and shown >= args.count):
            return 0
        await asyncio.sleep(args.interval)
