"""A trace as a waterfall: the spans of one request across agents, from its envelopes.

The tree is built from the envelopes themselves, so it works whether OpenTelemetry
tracing is on or off and on every engine: a request is a span from its creation to
the creation of the response that answers it (``correlation_id``); a notification
or an event is a point; a span's parent is the envelope that caused it
(``causation_id``: what the handler was handling when it sent). Errors come from the
error responses; a request sent again with the same parent, recipient and handler
is a retry and is numbered.

Example::

    tree = waterfall(index.get(trace_id))
    for span in tree["spans"]:
        print("  " * span["depth"], span["label"], span["duration"])
"""

from __future__ import annotations

from typing import Any

__all__ = ["waterfall"]


def waterfall(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The spans of one trace's records, in tree order with depth, offset and duration.

    Times are seconds; ``offset`` is from the trace's first envelope. A request
    still unanswered has ``pending`` set and lasts until the last envelope seen.

    Example::

        waterfall([request_record, response_record])["spans"][0]["duration"]
    """
    if not records:
        return {"start": 0.0, "duration": 0.0, "spans": []}
    responses = {r["correlation_id"]: r for r in records if r["kind"] == "response"}
    answered = {r["correlation_id"] for r in records if r["kind"] == "response"}
    ids = {r["id"] for r in records if r["kind"] != "response"}
    start = min(r["time"] for r in records)
    last = max(r["time"] for r in records)
    spans: dict[str, dict[str, Any]] = {}
    attempts: dict[tuple[Any, ...], int] = {}
    for r in records:
        if r["kind"] == "response" and r["correlation_id"] in ids:
            continue  # folded into its request
        resp = responses.get(r["id"])
        end = resp["time"] if resp is not None else r["time"]
        pending = r["kind"] in ("request", "stream") and r["id"] not in answered
        if pending:
            end = last
        parent = r["causation_id"] if r["causation_id"] in ids else None
        key = (parent, r["sender"], r["to"], r["handler"], r["kind"])
        attempts[key] = attempts.get(key, 0) + 1
        error = r["error"] or (resp["error"] if resp is not None else None)
        to = r["to"] + (f".{r['handler']}" if r["handler"] else "")
        spans[r["id"]] = {
            "id": r["id"],
            "parent": parent,
            "label": f"{r['sender']} -> {to}",
            "kind": r["kind"],
            "sender": r["sender"],
            "to": r["to"],
            "handler": r["handler"],
            "offset": r["time"] - start,
            "duration": max(end - r["time"], 0.0),
            "error": error,
            "pending": pending,
            "attempt": attempts[key],
            "preview": r["preview"],
            "response": None if resp is None else resp["preview"],
        }
    children: dict[str | None, list[dict[str, Any]]] = {}
    for s in spans.values():
        children.setdefault(s["parent"], []).append(s)
    ordered: list[dict[str, Any]] = []

    def visit(parent: str | None, depth: int) -> None:
        for s in sorted(children.get(parent, ()), key=lambda x: x["offset"]):
            s["depth"] = depth
            ordered.append(s)
            if depth < 64:  # a causation loop cannot recurse without bound
                visit(s["id"], depth + 1)

    visit(None, 0)
    return {"start": start, "duration": last - start, "spans": ordered}
