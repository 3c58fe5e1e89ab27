"""What the operator commands share: failures, tables, JSON lines, times, streams, presence."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any, TextIO

import msgspec

__all__ = ["_Fail", "_ago", "_clock", "_has_stream", "_json_line", "_presence", "_table"]


class _Fail(Exception):
    """A command failed with a message that says what to do (exit code 1)."""


def _json_line(out: TextIO, obj: Any) -> None:
    out.write(msgspec.json.encode(obj).decode() + "\n")
    out.flush()


def _table(out: TextIO, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A table for a person: rich when installed (colour on a terminal), else plain text."""
    cells = [["" if v is None else str(v) for v in row] for row in rows]
    try:
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table
    except ImportError:
        widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
        out.write(f"{title}\n")
        out.write("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)) + "\n")
        for r in cells:
            out.write("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) + "\n")
        out.flush()
        return
    table = Table(title=title, title_justify="left")
    for c in columns:
        table.add_column(c, overflow="fold")
    for r in cells:  # cells are data, not markup: "[1, 2]" must print as it is
        table.add_row(*(escape(v) for v in r))
    Console(file=out, width=max(100, _term_width(out))).print(table)


def _ago(ts: float) -> str:
    d = max(time.time() - ts, 0.0)
    return f"{d:.0f}s" if d < 120 else f"{d / 60:.0f}m" if d < 7200 else f"{d / 3600:.0f}h"


def _clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int(ts * 1000) % 1000:03d}"


async def _has_stream(js: Any, name: str) -> bool:
    import nats.js.errors

    try:
        await js.stream_info(name)
    except nats.js.errors.NotFoundError:
        return False
    return True


def _term_width(out: TextIO) -> int:
    try:
        return os.get_terminal_size(out.fileno()).columns if out.isatty() else 160
    except (OSError, ValueError, AttributeError):
        return 160


async def _presence(t: Any) -> tuple[list[Any], list[Any]]:
    from agentcomm.observability.presence import BUCKET, read_presence

    if not await _has_stream(t.client.jetstream(), f"KV_{t.namespace}_{BUCKET}"):
        return [], []  # no runtime ever announced itself in this namespace
    return await read_presence(t)
