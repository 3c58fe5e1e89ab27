"""The key/value half of the in-memory transport (see :class:`~.base.KVStore`)."""

from __future__ import annotations

__all__ = ["MemoryKV"]


class MemoryKV:
    """In-memory key/value buckets for the blackboard."""

    def __init__(self) -> None:
        pass
