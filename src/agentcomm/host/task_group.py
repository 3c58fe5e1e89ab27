"""The runtime's task group: remembers its tasks, so shutdown can cancel stragglers."""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["_RuntimeTaskGroup"]


class _RuntimeTaskGroup(asyncio.TaskGroup):
    """A task group that remembers its tasks, so shutdown can cancel stragglers."""

    def __init__(self) -> None:
        super().__init__()
        self._owned: set[asyncio.Task[Any]] = set()

    def create_task(self, coro: Any, *, name: str | None = None, context: Any = None) -> Any:
        task = super().create_task(coro, name=name, context=context)
        self._owned.add(task)
        task.add_done_callback(self._owned.discard)
        return task

    def cancel_remaining(self) -> list[str]:
        """Cancel every task still running; returns their names."""
        names = []
        for task in list(self._owned):
            if not task.done():
                names.append(task.get_name())
                task.cancel()
        return names
