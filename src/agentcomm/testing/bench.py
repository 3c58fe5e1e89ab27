"""How the benchmarks under ``bench/`` measure: interleaved rounds, medians, spreads.

A benchmark compares agentcomm with a raw baseline doing the same work in the same
process. Best-of-N flatters whichever side had one lucky run, and running all of one
side first lets machine load drift between them. So every benchmark runs the two
alternately, round by round (:func:`rounds`), and reports the median of each side,
the ratio of the medians and the range of the per-round ratios (:func:`ratio_row`).

Example::

    base, ours = await rounds(lambda: raw(n), lambda: mine(n), repeat=5)
    print(ratio_row("request/reply", base, ours))
"""

from __future__ import annotations

import statistics
from collections.abc import Awaitable, Callable

__all__ = ["HEADER", "ratio_row", "rounds"]

#: The column titles :func:`ratio_row` fills (after a label column of 34).
HEADER = (
    f"{'scenario (median of rounds)':<34}{'baseline/s':>12}{'agentcomm/s':>13}"
    f"{'ratio':>8}{'rounds':>12}"
)


async def rounds(
    baseline: Callable[[], Awaitable[float]],
    ours: Callable[[], Awaitable[float]],
    repeat: int,
) -> tuple[list[float], list[float]]:
    """Run ``baseline()`` then ``ours()``, ``repeat`` times; each returns a rate.

    Example::

        base, mine = await rounds(lambda: queue_pair(n), lambda: stream(n), 5)
    """
    if repeat < 1:
        raise ValueError("repeat must be at least 1")
    base: list[float] = []
    mine: list[float] = []
    for i in range(repeat):
        # alternate which side goes first, so a warming machine favours neither
        if i % 2 == 0:
            base.append(await baseline())
            mine.append(await ours())
        else:
            mine.append(await ours())
            base.append(await baseline())
    return base, mine


def ratio_row(label: str, base: list[float], mine: list[float]) -> str:
    """One table row: both medians, their ratio and the range of per-round ratios.

    Example::

        print(ratio_row("sequential", [100.0, 110.0], [70.0, 75.0]))
    """
    b, o = statistics.median(base), statistics.median(mine)
    ratios = [m / x for m, x in zip(mine, base, strict=True) if x > 0]
    spread = f"{min(ratios):.2f}-{max(ratios):.2f}" if ratios else "-"
    return f"{label:<34}{b:>12,.0f}{o:>13,.0f}{o / b:>8.2f}x{spread:>12}"
