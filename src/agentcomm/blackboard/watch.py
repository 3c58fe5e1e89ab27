"""Blackboard watches (async iterators) and callback subscriptions.

A slow watcher never stalls writers or other watchers: each buffers at most
``max_pending`` changes, then lags and resyncs from a snapshot (see
``docs/blackboard.md``).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from agentcomm.core.errors import TransportClosed, ValidationError
from agentcomm.transports.base import KVStore

if TYPE_CHECKING:
    from agentcomm.host.services import TracingHook

from agentcomm.blackboard.core import Change, Entry, _Core

__all__ = ["Subscription", "Watch"]

logger = logging.getLogger("agentcomm.blackboard")

T = TypeVar("T")


class Watch(Generic[T]):
    """An async iterator of :class:`Change` for one prefix; use it with ``async with``.

    **Slow watchers.** The engine buffers at most ``max_pending`` changes for it and
    never makes writers or other watchers wait. When the buffer overflows, the
    watch *lags*: :attr:`lagged` grows, a warning is logged, and the watch resyncs
    from a fresh snapshot. It yields, as one batch with ``initial=True``: the latest
    change of every key that changed while it was behind, in revision order (a
    put, or the delete/expire marker of a key that went away), then a ``"delete"``
    with revision 0 for a key gone so long that the engine kept no marker; then it
    resumes live. Intermediate values written while it lagged are skipped; the
    final state is never missed. To do this the watch remembers the revision of
    each key it has seen (bounded by the number of keys under its prefix).

    A change whose value does not decode (as the watch's ``type``, or at all: a
    hostile or broken writer) raises :class:`ValidationError` from the iteration,
    counted in the board's ``rejected``; the watch stays usable (iterate again to get
    the next change).

    Example::

        async with rt.board.watch("task.", max_pending=64) as changes:
            async for change in changes:
                ...
            print("resyncs:", changes.lagged)
    """

    def __init__(self, core: _Core, prefix: str, snapshot: bool, tp: Any, max_pending: int) -> None:
        self._core = core
        self.prefix = prefix
        self._snapshot = snapshot
        self._type = tp
        self._max_pending = max_pending
        self._kvw: KVStore.Watcher | None = None
        self._seen: dict[str, int] = {}
        self._high = 0  # the highest revision this watch has processed
        self._snap_keys: set[str] | None = None
        self._resyncing = False
        self._resync_puts: list[Change[T]] = []
        self._pending: deque[Change[T]] = deque()
        self._closed = False
        #: How many times this watch fell behind and resynced.
        self.lagged = 0

    async def _open(self, snapshot: bool) -> None:
        core = self._core
        if core.closed:
            raise TransportClosed("the blackboard is closed; the runtime is shutting down")
        kv = await core.ready()
        self._kvw = await kv.kv_watch(
            core.bucket, self.prefix, snapshot=snapshot, max_pending=self._max_pending
        )
        self._snap_keys = set()
        core.watches.add(self)

    async def __aenter__(self) -> Watch[T]:
        if self._kvw is None and not self._closed:
            await self._open(self._snapshot)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> Watch[T]:
        return self

    async def __anext__(self) -> Change[T]:
        while True:
            if self._pending:
                return self._pending.popleft()
            if self._closed:
                raise StopAsyncIteration
            kvw = self._kvw
            if kvw is None:
                await self._open(self._snapshot)
                continue
            try:
                item = await kvw.__anext__()
            except StopAsyncIteration:
                if kvw.lagged and not self._closed and not self._core.closed:
                    await self._resync(kvw)
                    continue
                self._closed = True
                self._core.watches.discard(self)
                raise
            change = self._apply(item)
            if change is not None:
                return change

    async def _resync(self, old: KVStore.Watcher) -> None:
        self.lagged += 1
        self._core.lagged += 1
        logger.warning(
            "blackboard watch %r fell more than %d changes behind; resyncing from a snapshot",
            self.prefix,
            self._max_pending,
        )
        await old.aclose()
        self._resyncing = True
        await self._open(True)

    def _apply(self, item: KVStore.Entry | None) -> Change[T] | None:
        seen = self._seen
        snap = self._snap_keys
        if item is None:  # end of the snapshot
            if self._resyncing:
                # A resync is delivered as one batch: what vanished, then what changed.
                now = time.time()
                for key in [k for k in seen if k not in (snap or ())]:
                    del seen[key]
                    self._pending.append(
                        Change(key=key, operation="delete", revision=0, timestamp=now, initial=True)
                    )
                self._pending.extend(self._resync_puts)
                self._resync_puts = []
                self._resyncing = False
            self._snap_keys = None
            return None
        key = item.key
        if snap is not None:
            snap.add(key)
            if item.operation == "put":
                # Skip what this watch already has; after a lag, also keys it never saw
                # that have not changed since (older than anything it processed).
                known = seen.get(key)
                if item.revision <= (self._high if known is None else known):
                    return None
            elif key not in seen:
                return None
        if item.revision > self._high:
            self._high = item.revision
        if item.operation == "put":
            seen[key] = item.revision
            entry: Entry[Any] | None = self._core.decode(item, self._type)
        else:
            seen.pop(key, None)
            entry = None
        change: Change[T] = Change(
            key=key,
            operation=item.operation,
            revision=item.revision,
            timestamp=item.timestamp,
            entry=entry,
            initial=snap is not None,
        )
        if self._resyncing:
            self._resync_puts.append(change)
            return None
        return change

    async def aclose(self) -> None:
        """Stop watching; a pending or later iteration ends. Idempotent.

        Example::

            await watch.aclose()
        """
        self._closed = True
        self._pending.clear()
        self._core.watches.discard(self)
        kvw = self._kvw
        if kvw is not None:
            await kvw.aclose()


class Subscription:
    """A running :meth:`Blackboard.subscribe` callback; close it with :meth:`aclose`.

    ``delivered`` counts callbacks that returned, ``failures`` those that raised or
    changes that did not decode; ``error`` holds the engine error that ended it, if any.

    Example::

        sub = await rt.board.subscribe("task.", on_task)
        ...
        await sub.aclose()
    """

    def __init__(
        self,
        core: _Core,
        watch: Watch[Any],
        callback: Callable[[Change[Any]], Awaitable[None] | None],
    ) -> None:
        self._core = core
        self._watch = watch
        self._callback = callback
        self._task: asyncio.Task[None] | None = None
        self.prefix = watch.prefix
        self.delivered = 0
        self.failures = 0
        self.error: BaseException | None = None

    @property
    def active(self) -> bool:
        """True while the callback task runs."""
        return self._task is not None and not self._task.done()

    @property
    def lagged(self) -> int:
        """How many times the subscription fell behind and resynced."""
        return self._watch.lagged

    def _failed(self, what: str) -> None:
        self.failures += 1
        self._core.callback_failures += 1
        logger.exception("blackboard subscription %r: %s", self.prefix, what)

    async def _run(self) -> None:
        core = self._core
        w = self._watch
        cb = self._callback
        tracing = core.rt.tracing
        try:
            while True:
                try:
                    change = await w.__anext__()
                except StopAsyncIteration:
                    return
                except ValidationError:  # a stored value that does not decode: skipped
                    self.failures += 1  # (the board counts and logs it, rate-limited)
                    core.callback_failures += 1
                    continue
                core.callbacks += 1
                try:
                    if tracing is not None:  # continues the writer's trace (docs/tracing.md)
                        await self._traced(tracing, change)
                    else:
                        result = cb(change)
                        if inspect.isawaitable(result):
                            await result
                except Exception:
                    self._failed(f"callback failed on {change.key!r} revision {change.revision}")
                else:
                    self.delivered += 1
        except Exception as exc:  # the engine failed: report it and end
            self.error = exc
            self._failed("the watch failed; the subscription ended")
        finally:
            core.subscriptions.discard(self)
            await w.aclose()

    async def _traced(self, tracing: TracingHook, change: Change[Any]) -> None:
        entry = change.entry
        attrs = {
            "agentcomm.key": change.key,
            "agentcomm.revision": change.revision,
            "agentcomm.board.operation": change.operation,
            "agentcomm.board.bucket": self._core.bucket,
            "agentcomm.causation_id": None if entry is None else entry.cause,
            "agentcomm.author": None if entry is None else entry.author,
        }
        parent = "" if entry is None else entry.traceparent or ""
        where = self.prefix or self._core.bucket
        with tracing.span("process", where, kind="consumer", parent=parent, attributes=attrs):
            result = self._callback(change)
            if inspect.isawaitable(result):
                await result

    async def aclose(self) -> None:
        """Stop the subscription; waits for a callback in progress to return.

        Example::

            await sub.aclose()
        """
        await self._watch.aclose()
        task = self._task
        if task is not None and not task.done() and task is not asyncio.current_task():
            await asyncio.wait([task])
