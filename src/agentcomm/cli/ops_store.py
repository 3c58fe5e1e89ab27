"""The operator commands that read stores on NATS: ``agentcomm dlq ... --nats`` and ``board``.

Split from :mod:`agentcomm.cli.ops` (which parses, connects and renders); see
``docs/operations.md``.

Example::

    agentcomm dlq list --nats nats://127.0.0.1:4222 --json
    agentcomm board watch plan. --count 10
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

import msgspec

from agentcomm.cli.output import _ago, _clock, _Fail, _has_stream, _json_line, _table
from agentcomm.core.errors import ConfigurationError

if TYPE_CHECKING:
    from agentcomm.transports.nats.transport import NatsTransport

__all__ = ["cmd_board", "cmd_dlq"]


# -- dead letters -------------------------------------------------------------------------------
async def cmd_dlq(t: NatsTransport, args: argparse.Namespace, out: TextIO) -> int:
    """``agentcomm dlq list|show|redrive --nats``: the namespace's dead-letter queue."""
    from agentcomm.core.envelope import Envelope, decode_guarded, invalid_frame_bytes
    from agentcomm.core.errors import DecodeError
    from agentcomm.pubsub.bus import DEAD_LETTER_STREAM, EVENT_STREAM, DeadLetter
    from agentcomm.pubsub.partitions import event_subject

    decoder = msgspec.json.Decoder(DeadLetter).decode

    def decode(env: Envelope) -> DeadLetter | None:
        try:
            dl = decode_guarded(decoder, env.payload, f"dead letter #{env.sequence}")
        except DecodeError as exc:  # not written by a runtime: said, not fatal
            print(f"skipped: {exc}", file=sys.stderr)
            return None
        return msgspec.structs.replace(dl, sequence=env.sequence or 0)

    try:
        await t.stream_info(DEAD_LETTER_STREAM)
    except ConfigurationError:
        raise _Fail(
            f"no dead-letter queue in namespace {t.namespace!r} (no runtime there has used "
            "pub/sub yet); check --namespace"
        ) from None
    if args.action == "list":
        subject = "dlq.>" if args.subscription is None else f"dlq.{args.subscription}"
        envs = await t.read_messages(DEAD_LETTER_STREAM, limit=args.limit, filter_subject=subject)
        dls = [dl for e in envs if (dl := decode(e)) is not None]
        if not dls and args.subscription is not None:
            raise _Fail(
                f"no dead letters of subscription {args.subscription!r} in namespace "
                f"{t.namespace!r} (`agentcomm dlq list` shows every subscription's)"
            )
        if args.json:
            for dl in dls:
                _json_line(out, dl)
            return 0
        rows = [
            (dl.sequence, dl.subscription, dl.topic, dl.reason, dl.attempts,
             _ago(dl.failed_at) + " ago", dl.last_error or "")
            for dl in dls
        ]  # fmt: skip
        cols = ["seq", "subscription", "topic", "reason", "attempts", "failed", "error"]
        _table(out, f"dead letters in {t.namespace!r}", cols, rows)
        return 0
    if args.sequence is None:
        raise _Fail(f"give a dead letter's sequence number: agentcomm dlq {args.action} SEQ")
    env = await t.get_message(DEAD_LETTER_STREAM, args.sequence)
    if env is None:
        raise _Fail(f"no dead letter #{args.sequence}; `agentcomm dlq list` shows them")
    dl = decode(env)
    if dl is None:
        raise _Fail(f"entry #{args.sequence} of the dead-letter queue is not a dead letter")
    if args.action == "show":
        data = msgspec.json.encode(dl)
        out.write(data.decode() if args.json else msgspec.json.format(data, indent=2).decode())
        out.write("\n")
        return 0
    # Redrive across processes: the event goes back onto its topic (every subscription
    # of that topic sees it again; handlers are at-least-once anyway), then leaves the queue.
    if invalid_frame_bytes(dl.event) is not None:
        raise _Fail(
            f"dead letter #{dl.sequence} holds bytes that are not an event: nothing to redrive"
        )
    event = msgspec.structs.replace(dl.event, deadline=None, sequence=None)
    seq = await t.append(
        EVENT_STREAM,
        event,
        msg_id=f"redrive-{dl.sequence}-{event.id}",
        subject=event_subject(event),
    )
    await t.delete_message(DEAD_LETTER_STREAM, dl.sequence)
    if args.json:
        _json_line(out, {"redriven": dl.sequence, "topic": dl.topic, "event_sequence": seq})
    else:
        out.write(f"dead letter #{dl.sequence} republished on {dl.topic!r} as event #{seq}\n")
    return 0


# -- blackboard ---------------------------------------------------------------------------------
async def cmd_board(t: NatsTransport, args: argparse.Namespace, out: TextIO) -> int:
    """``agentcomm board get|list|watch|history``: the blackboard on NATS."""
    from agentcomm.api import Runtime
    from agentcomm.blackboard.board import Blackboard
    from agentcomm.observability.presence import Presence

    if not await _has_stream(t.client.jetstream(), f"KV_{t.namespace}_{args.bucket}"):
        raise _Fail(
            f"no blackboard bucket {args.bucket!r} in namespace {t.namespace!r}; check "
            "--bucket and --namespace"
        )
    if args.action in ("get", "history") and not args.key:
        raise _Fail(f"give a key: agentcomm board {args.action} KEY")
    from agentcomm.transports.nats.transport import NatsTransport

    # A runtime of its own (its own connection) for the blackboard API; no presence.
    rt = Runtime(transport=NatsTransport(args.nats, namespace=t.namespace))
    Presence.install(rt, enabled=False)
    async with rt:
        return await _board(Blackboard(rt, bucket=args.bucket, author="cli"), args, out)


def _entry_json(e: Any) -> dict[str, Any]:
    return msgspec.to_builtins(e)  # type: ignore[no-any-return]


async def _board(board: Any, args: argparse.Namespace, out: TextIO) -> int:
    def short(v: Any) -> str:
        s = msgspec.json.encode(v).decode()
        return s if len(s) <= 80 else s[:77] + "..."

    if args.action == "get":
        e = await board.read(args.key)
        if e is None:
            raise _Fail(f"no key {args.key!r} in bucket {board.bucket!r}")
        if args.json:
            _json_line(out, _entry_json(e))
        else:
            out.write(msgspec.json.format(msgspec.json.encode(e.value), indent=2).decode() + "\n")
            out.write(f"(revision {e.revision}, by {e.author}, {_ago(e.updated)} ago)\n")
        return 0
    if args.action == "list":
        entries = await board.read_prefix(args.key)
        if not entries:
            where = f"under {args.key!r}" if args.key else "at all"
            raise _Fail(f"no keys {where} in bucket {board.bucket!r}")
        if args.json:
            for e in entries.values():
                _json_line(out, _entry_json(e))
            return 0
        rows = [
            (k, short(e.value), e.revision, e.author, _ago(e.updated) + " ago")
            for k, e in entries.items()
        ]
        _table(
            out, f"blackboard {board.bucket!r}", ["key", "value", "rev", "author", "updated"], rows
        )
        return 0
    if args.action == "history":
        changes = await board.history(args.key)
        if not changes:
            raise _Fail(f"no key {args.key!r} (nor its history) in bucket {board.bucket!r}")
        if args.json:
            for c in changes:
                _json_line(out, _entry_json(c))
            return 0
        rows = [
            (c.revision, c.operation, _clock(c.timestamp),
             c.entry.author if c.entry else "", short(c.entry.value) if c.entry else "")
            for c in changes
        ]  # fmt: skip
        _table(out, f"history of {args.key!r}", ["rev", "op", "time", "author", "value"], rows)
        return 0
    shown = 0
    async with board.watch(args.key) as changes:
        print(
            f"agentcomm board watch: watching {args.key or 'every key'!r} (Ctrl-C stops)",
            file=sys.stderr,
            flush=True,
        )
        async for c in changes:
            if _show_change(out, c, args.json, short):
                shown += 1
            if args.count is not None and shown >= args.count:
                break
    return 0


def _show_change(out: TextIO, c: Any, as_json: bool, short: Callable[[Any], str]) -> bool:
    if as_json:
        _json_line(out, _entry_json(c))
        return True
    value = short(c.entry.value) if c.entry is not None else ""
    mark = "(initial) " if c.initial else ""
    out.write(f"{_clock(c.timestamp)}  {c.key}  {c.operation}  rev {c.revision}  {mark}{value}\n")
    out.flush()
    return True
