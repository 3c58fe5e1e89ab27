"""Failures the runtime noticed, by kind: a bounded record that ``statistics()`` shows.

A message whose handler failed, or a background step that could not finish (an
agent that could not be bound, a subscription that did not start, presence that
could not be written, an MCP change notification that could not be sent) is
counted here under its kind, with the last error's message and time; nothing is
kept per occurrence, so the record stays small however often it happens.

Example::

    log = FailureLog()
    log.add("bind", OSError("no route"), subject="billing")
    print(log.snapshot()["bind"].count)   # 1
"""

from __future__ import annotations

import time

import msgspec

__all__ = ["FAILURE_KINDS", "FailureLog", "FailureRecord"]

#: The kinds the runtime and its patterns report (``RuntimeStatistics.errors`` keys).
FAILURE_KINDS: dict[str, str] = {
    "message": "a notification whose handler raised or that had no handler",
    "bind": "an agent that could not be bound: it can send but receives nothing",
    "subscription_start": "a subscription declared at run time that did not start",
    "presence": "a presence round that could not be written (retried every interval)",
    "mcp_notify": "an MCP tool-list change notification that could not be delivered",
}


class FailureRecord(msgspec.Struct, frozen=True):
    """How often one kind of failure happened, and the last one.

    ``last_at`` is wall-clock time (``time.time()``); ``last_subject`` names what
    failed (an agent, a subscription, a message id), or is empty.

    Example::

        rec = rt.statistics().errors.get("bind")
        if rec: print(rec.count, rec.last_error)
    """

    count: int
    last_error: str
    last_at: float
    last_subject: str = ""


class FailureLog:
    """The bounded record: at most ``max_kinds`` kinds (more fold into ``"other"``).

    A message is cut to ``max_message`` characters.

    Example::

        FailureLog().add("presence", "broker refused the write")
    """

    def __init__(self, *, max_kinds: int = 32, max_message: int = 300) -> None:
        self.max_kinds = max_kinds
        self.max_message = max_message
        self._records: dict[str, FailureRecord] = {}

    def add(self, kind: str, error: BaseException | str, *, subject: str = "") -> None:
        """Count one failure of ``kind``; ``error`` is the exception or a message.

        Example::

            log.add("subscription_start", exc, subject="billing__charge")
        """
        if kind not in self._records and len(self._records) >= self.max_kinds:
            kind = "other"
        if isinstance(error, BaseException):
            text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        else:
            text = error
        if len(text) > self.max_message:
            text = text[: self.max_message - 3] + "..."
        old = self._records.get(kind)
        self._records[kind] = FailureRecord(
            count=1 if old is None else old.count + 1,
            last_error=text,
            last_at=time.time(),
            last_subject=subject[: self.max_message],
        )

    def snapshot(self) -> dict[str, FailureRecord]:
        """The records by kind (a copy, sorted by kind).

        Example::

            for kind, rec in log.snapshot().items(): print(kind, rec.count)
        """
        return dict(sorted(self._records.items()))
