"""The stream half of the in-memory transport (see :class:`~.base.EventLog`)."""

from __future__ import annotations

__all__ = ["MemoryEventLog"]


class MemoryEventLog:
    """In-memory retained event logs and consumers for pub/sub."""

    def __init__(self) -> None:
        pass
