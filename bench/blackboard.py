"""Blackboard throughput: agentcomm's in-memory board vs a dict-plus-asyncio.Lock baseline.

The baseline is the article's blackboard without subscribers: a dict of entries
under an ``asyncio.Lock``, each write updating value, author, timestamp and
version. Scenarios, each in the same process and run:

* ``uncontended writes``: one writer, last-writer-wins writes to 100 keys;
* ``8 writers, update``: 8 tasks each incrementing one shared counter; agentcomm
  uses ``board.update`` (compare-and-set, retried), the baseline holds the lock
  around read-modify-write;
* ``8 writers, update, think``: the same, but the increment awaits once between
  read and write (as an agent that calls a model would), so agentcomm's optimistic
  writes conflict and retry while the baseline's lock serialises the writers.

Run: ``python bench/blackboard.py [--n N] [--repeat R]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from agentcomm import Runtime
from agentcomm.testing.bench import HEADER, ratio_row, rounds

WRITERS = 8


class DictBoard:
    """The raw baseline: the article's Blackboard.write, minus notifications."""

    def __init__(self) -> None:
        self.entries: dict[str, list[Any]] = {}
        self.lock = asyncio.Lock()

    async def write(self, key: str, value: Any, author: str) -> int:
        async with self.lock:
            entry = self.entries.get(key)
            if entry is None:
                self.entries[key] = entry = [value, author, time.time(), 1]
            else:
                entry[0] = value
                entry[1] = author
                entry[2] = time.time()
                entry[3] += 1
            return int(entry[3])

    async def increment(self, key: str, author: str, think: bool) -> None:
        async with self.lock:
            entry = self.entries.get(key)
            current = 0 if entry is None else entry[0]
            if think:
                await asyncio.sleep(0)
            if entry is None:
                self.entries[key] = [current + 1, author, time.time(), 1]
            else:
                entry[0] = current + 1
                entry[1] = author
                entry[2] = time.time()
                entry[3] += 1


async def _plus_one_think(n: int | None) -> int:
    await asyncio.sleep(0)
    return (n or 0) + 1


def _plus_one(n: int | None) -> int:
    return (n or 0) + 1


async def baseline_writes(n: int) -> float:
    board = DictBoard()
    start = time.perf_counter()
    for i in range(n):
        await board.write(f"k{i % 100}", {"n": i}, "writer")
    return n / (time.perf_counter() - start)


async def agentcomm_writes(n: int) -> float:
    async with Runtime() as rt:
        board = rt.board
        await board.write("warm", 0)
        start = time.perf_counter()
        for i in range(n):
            await board.write(f"k{i % 100}", {"n": i})
        return n / (time.perf_counter() - start)


async def baseline_increments(n: int, think: bool) -> float:
    board = DictBoard()
    each = n // WRITERS

    async def writer() -> None:
        for _ in range(each):
            await board.increment("counter", "writer", think)

    start = time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(WRITERS)))
    elapsed = time.perf_counter() - start
    assert board.entries["counter"][0] == each * WRITERS
    return each * WRITERS / elapsed


async def agentcomm_increments(n: int, think: bool) -> tuple[float, int]:
    each = n // WRITERS
    fn = _plus_one_think if think else _plus_one
    async with Runtime() as rt:
        board = rt.board
        await board.write("warm", 0)

        async def writer() -> None:
            for _ in range(each):
                await board.update("counter", fn)

        start = time.perf_counter()
        await asyncio.gather(*(writer() for _ in range(WRITERS)))
        elapsed = time.perf_counter() - start
        entry = await board.read("counter")
        assert entry is not None
        assert entry.value == each * WRITERS
        return each * WRITERS / elapsed, board.statistics().conflicts


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=50_000, help="operations per measurement")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds (medians)")
    args = parser.parse_args()
    n, r = args.n, args.repeat
    print(HEADER + "  notes")
    base, ours = await rounds(lambda: baseline_writes(n), lambda: agentcomm_writes(n), r)
    print(ratio_row("uncontended writes", base, ours))
    for think in (False, True):
        label = f"{WRITERS} writers, update" + (", think" if think else "")
        conflicts: list[int] = []

        async def mine(t: bool = think, seen: list[int] = conflicts) -> float:
            rate, lost = await agentcomm_increments(n, t)
            seen.append(lost)
            return rate

        base, ours = await rounds(lambda t=think: baseline_increments(n, t), mine, r)
        note = f"{statistics.median(conflicts):.0f} CAS conflicts retried (median)"
        print(ratio_row(label, base, ours) + f"  {note}")


if __name__ == "__main__":
    asyncio.run(main())
