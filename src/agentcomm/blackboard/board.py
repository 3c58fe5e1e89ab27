"""The shared blackboard: versioned state with compare-and-set, prefix watches and history.

Every agent may read and write shared keys. Each change gets a revision that
strictly increases, so writers can say "only if nobody wrote since I read"
(:meth:`Blackboard.write` with ``expected_revision``, or :meth:`Blackboard.update`,
which retries for you); watchers see every change of a prefix in revision order.

Keys are ``.``-separated tokens (``research.q1.findings``), the form NATS KV keys
and subject filters use, so a prefix watch maps onto one NATS subject filter.

Example::

    async with Runtime() as rt:
        board = rt.board
        rev = await board.write("task.1", {"state": "todo"})
        await board.update("stats.done", lambda n: (n or 0) + 1)
        async with board.watch("task.") as changes:
            async for change in changes:
                print(change.key, change.operation, change.value)
                break
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar, overload

import msgspec

from agentcomm.core.errors import ConfigurationError, KeyExists, RevisionConflict, ValidationError
from agentcomm.core.limits import MAX_WIRE_DEPTH
from agentcomm.core.schema import codec_for

if TYPE_CHECKING:
    from agentcomm.host.runtime import Runtime

__all__ = [
    "Blackboard",
    "BoardStatistics",
    "Change",
    "Entry",
    "Subscription",
    "Watch",
    "check_key",
    "check_prefix",
]

from agentcomm.blackboard.core import (
    DEFAULT_ATTEMPTS,
    DEFAULT_BUCKET,
    DEFAULT_HISTORY,
    DEFAULT_MAX_PENDING,
    BoardStatistics,
    Change,
    Entry,
    _Core,
    _created_of,
    _encode_record,
    _now,
    _RecordOut,
    _valid_keys,
    check_key,
    check_prefix,
)
from agentcomm.blackboard.traced import _in_span, in_write_span
from agentcomm.blackboard.update import compare_and_set_loop
from agentcomm.blackboard.watch import Subscription, Watch

logger = logging.getLogger("agentcomm.blackboard")

T = TypeVar("T")


class Blackboard:
    """A view of the shared board whose writes are authored by ``author``.

    ``rt.board`` is the runtime's board (author ``"runtime"``); ``agent.board`` and
    ``ctx.board`` write as that agent. Views of one runtime and bucket share their
    state. ``Blackboard(rt, bucket="notes", history=4)`` opens another bucket
    (``history`` defaults to what the bucket is open with, else 16).

    Example::

        board = rt.board
        rev = await board.write("plan.step1", {"done": False})
        await board.write("plan.step1", {"done": True}, expected_revision=rev)
    """

    __slots__ = ("_cause", "_core", "author")

    def __init__(
        self,
        rt: Runtime,
        *,
        bucket: str = DEFAULT_BUCKET,
        history: int | None = None,
        author: str = "runtime",
    ) -> None:
        name = "blackboard" if bucket == DEFAULT_BUCKET else f"blackboard:{bucket}"
        core: _Core = rt.extension(
            name, lambda r: _Core(r, bucket, DEFAULT_HISTORY if history is None else history)
        )
        if history is not None and core.history != history:
            raise ConfigurationError(
                f"bucket {bucket!r} is already open with history={core.history}; "
                f"open it with the same history (asked for {history})"
            )
        self._core = core
        self.author = author
        self._cause: str | None = None  # set by ctx.board: the message being handled

    @property
    def bucket(self) -> str:
        """The KV bucket holding this board."""
        return self._core.bucket

    @property
    def max_history(self) -> int:
        """How many changes :meth:`history` keeps per key."""
        return self._core.history

    def as_author(self, author: str) -> Blackboard:
        """A view of the same board whose writes are authored (and authorized) as ``author``.

        Example::

            ops = rt.board.as_author("ops")
        """
        view = Blackboard.__new__(Blackboard)
        view._core = self._core
        view.author = author
        view._cause = self._cause
        return view

    async def _traced(self, operation: str, key: str, call: Awaitable[T]) -> T:
        """Run a write's body in a ``"write <key>"`` span (docs/tracing.md)."""
        return await in_write_span(self._core, self.author, self._cause, operation, key, call)

    def declare(self, prefix: str, type: Any) -> None:
        """Validate every write under ``prefix`` against ``type`` and decode reads with it.

        The most specific declaration wins (a key, then ``a.b.``, then ``a.``, then
        ``""``). An explicit ``type=`` on a read overrides it.

        Example::

            rt.board.declare("tasks.", Task)
            await rt.board.write("tasks.1", {"title": 3})  # ValidationError
        """
        self._core.schemas[check_prefix(prefix)] = codec_for(type)

    # -- reading -----------------------------------------------------------------
    @overload
    async def read(self, key: str, *, type: None = None) -> Entry[Any] | None: ...

    @overload
    async def read(self, key: str, *, type: type[T]) -> Entry[T] | None: ...

    async def read(self, key: str, *, type: Any = None) -> Entry[Any] | None:
        """The key's entry, or ``None`` when it is absent (never written, deleted, expired).

        The value is decoded as ``type`` when given (raising :class:`ValidationError`
        on a mismatch), else as the declared type of its prefix, else as plain JSON.
        Stored bytes that are not a record (written around the library, too deep,
        not JSON) raise :class:`DecodeError`; either is counted in ``rejected``.

        Example::

            entry = await board.read("research.q1", type=Findings)
        """
        core = self._core
        check_key(key)
        core.rt.authorize(self.author, "read", key)
        kv = await core.ready()
        e = await kv.kv_get(core.bucket, key)
        core.reads += 1
        return None if e is None else core.decode(e, type)

    async def read_prefix(self, prefix: str, *, type: Any = None) -> dict[str, Entry[Any]]:
        """Every present entry selected by ``prefix``, by key (sorted).

        ``prefix`` is ``""`` (every key), ``"a.b."`` (every key below ``a.b``) or a key.
        An entry that does not decode (as ``type``, or at all) is left out, counted in
        :meth:`statistics` (``rejected``) and logged; :meth:`read` of its key raises.

        Example::

            results = await board.read_prefix("research_results.")
        """
        core = self._core
        check_prefix(prefix)
        core.rt.authorize(self.author, "read", prefix)
        kv = await core.ready()
        entries = await kv.kv_entries(core.bucket, prefix)
        core.reads += 1
        return core.entries(entries, type)

    async def keys(self, prefix: str = "") -> list[str]:
        """The present keys selected by ``prefix``, sorted.

        Example::

            assert await board.keys("task.") == ["task.1", "task.2"]
        """
        core = self._core
        check_prefix(prefix)
        core.rt.authorize(self.author, "read", prefix)
        kv = await core.ready()
        return sorted(await kv.kv_keys(core.bucket, prefix))

    async def history(self, key: str, *, type: Any = None) -> list[Change[Any]]:
        """The key's most recent changes, oldest first, deletes and expiries included.

        At most :attr:`max_history` items. A put that does not decode is left out
        (counted in :meth:`statistics`, ``rejected``).

        Example::

            for change in await board.history("task.1"):
                print(change.revision, change.operation, change.value)
        """
        core = self._core
        check_key(key)
        core.rt.authorize(self.author, "read", key)
        kv = await core.ready()
        core.reads += 1
        return core.changes(await kv.kv_history(core.bucket, key), type)

    # -- writing -------------------------------------------------------------------
    async def write(
        self,
        key: str,
        value: Any,
        *,
        expected_revision: int | None = None,
        ttl: float | None = None,
    ) -> int:
        """Store ``value`` under ``key``; return the new revision.

        Without ``expected_revision`` the last writer wins. With it, the write happens
        only if the key is still at that revision (compare-and-set), else
        :class:`RevisionConflict` carries the current entry. ``ttl`` (seconds) makes
        this revision expire: it then reads as absent and watchers see ``"expire"``.

        Example::

            entry = await board.read("doc.title")
            try:
                await board.write("doc.title", "New", expected_revision=entry.revision)
            except RevisionConflict as exc:
                print("lost the race to", exc.current.author)
        """
        core = self._core
        rt = core.rt
        tracing = rt.tracing
        if tracing is not None and not _in_span.get():
            return await self._traced(
                "write", key, self.write(key, value, expected_revision=expected_revision, ttl=ttl)
            )
        if type(key) is not str or key not in _valid_keys:
            check_key(key)
        rt.authorize(self.author, "write", key)
        if ttl is not None:
            core.check_ttl(ttl)
        if expected_revision is not None and expected_revision < 1:
            raise ConfigurationError(
                f"expected_revision must be a revision read from the board (>= 1), got "
                f"{expected_revision}; use create() to write only if the key is absent"
            )
        kv = core.kv if core.opened and rt._running else await core.ready()
        bucket = core.bucket
        trace = None if tracing is None else tracing.current_traceparent()[0]
        cause = self._cause
        if expected_revision is None and (known := core.known.get(key)) is not None:
            # Last writer wins, tried first as compare-and-set on the revision this
            # board wrote last: if nobody wrote since, ``created`` carries over without
            # reading the key (one engine operation instead of two).
            now = _now()
            if core.schemas or ttl is not None:
                data = core.encode(key, value, self.author, known[1], now, ttl, trace, cause)
            else:  # the hot path: Core.encode, inlined
                try:
                    rec = _RecordOut(known[1], now, self.author, value, None, trace, cause)
                    data = _encode_record(rec)
                except (NotImplementedError, TypeError, msgspec.EncodeError, RecursionError) as exc:
                    raise ValidationError(
                        f"key {key!r}: value cannot be encoded as JSON: {exc}"
                    ) from None
                if len(data) > MAX_WIRE_DEPTH:  # what no reader could decode is never stored
                    core.check_record(key, data)
            try:
                rev = await kv.kv_put(bucket, key, data, expected_revision=known[0], ttl=ttl)
            except RevisionConflict:
                pass  # someone else wrote: read, then write unconditionally
            else:
                core.known[key] = (rev, known[1])
                core.writes += 1
                return rev
        cur = await kv.kv_get(bucket, key)
        if expected_revision is not None and (cur is None or cur.revision != expected_revision):
            core.conflicts += 1
            raise RevisionConflict(key, expected_revision, core.decode_or_none(cur, None))
        now = _now()
        if cur is None:
            created = now
        else:
            created = _created_of(cur.value, now)  # now, if it is not a record
        data = core.encode(key, value, self.author, created, now, ttl, trace, cause)
        try:
            if expected_revision is None and ttl is None:
                rev = await kv.kv_put(bucket, key, data)
            else:
                rev = await kv.kv_put(
                    bucket, key, data, expected_revision=expected_revision, ttl=ttl
                )
        except RevisionConflict as exc:
            raise core.conflict(RevisionConflict, key, expected_revision, exc) from None
        core.remember(key, rev, created)
        core.writes += 1
        return rev

    async def create(self, key: str, value: Any, *, ttl: float | None = None) -> int:
        """Store ``value`` only if ``key`` is absent; return the revision.

        Raises :class:`KeyExists` (a :class:`RevisionConflict`) carrying the current
        entry when the key is present.

        Example::

            await board.create("lock.report", {"owner": "analyst"}, ttl=30)
        """
        core = self._core
        tracing = core.rt.tracing
        if tracing is not None and not _in_span.get():
            return await self._traced("create", key, self.create(key, value, ttl=ttl))
        check_key(key)
        core.rt.authorize(self.author, "write", key)
        if ttl is not None:
            core.check_ttl(ttl)
        now = time.time()
        trace = None if tracing is None else tracing.current_traceparent()[0]
        data = core.encode(key, value, self.author, now, now, ttl, trace, self._cause)
        kv = await core.ready()
        try:
            rev = await kv.kv_put(core.bucket, key, data, create_only=True, ttl=ttl)
        except RevisionConflict as exc:
            raise core.conflict(KeyExists, key, None, exc) from None
        core.remember(key, rev, now)
        core.writes += 1
        return rev

    async def delete(self, key: str, *, expected_revision: int | None = None) -> int:
        """Delete ``key`` (a tombstone that watchers see as ``"delete"``); return its revision.

        Its earlier changes stay in :meth:`history`. With ``expected_revision`` it
        deletes only if the key is still at that revision (else
        :class:`RevisionConflict`).

        Example::

            await board.delete("lock.report")
        """
        core = self._core
        if core.rt.tracing is not None and not _in_span.get():
            return await self._traced(
                "delete", key, self.delete(key, expected_revision=expected_revision)
            )
        check_key(key)
        core.rt.authorize(self.author, "write", key)
        kv = await core.ready()
        try:
            rev = await kv.kv_delete(core.bucket, key, expected_revision=expected_revision)
        except RevisionConflict as exc:
            raise core.conflict(RevisionConflict, key, expected_revision, exc) from None
        core.known.pop(key, None)
        core.deletes += 1
        return rev

    def update(
        self,
        key: str,
        fn: Callable[[Any], Any],
        *,
        type: Any = None,
        max_attempts: int = DEFAULT_ATTEMPTS,
        ttl: float | None = None,
    ) -> Coroutine[Any, Any, Entry[Any]]:
        """Read, apply ``fn`` (sync or async), write with compare-and-set; retry on conflict.

        ``fn`` gets the current value (``None`` when absent) and returns the new one;
        it may run several times, so keep it free of side effects. After
        ``max_attempts`` lost races it raises :class:`RevisionConflict`. Returns the
        written entry.

        A plain method that returns the coroutine (one frame less on the hot path);
        await it as any other.

        Example::

            entry = await board.update("stats.runs", lambda n: (n or 0) + 1)
        """
        core = self._core
        call = compare_and_set_loop(
            core, self.author, self._cause, key, fn, type, max_attempts, ttl
        )
        tracing = core.rt.tracing
        if tracing is not None and not _in_span.get():
            return self._traced("update", key, call)
        return call

    # -- watching ------------------------------------------------------------------
    def watch(
        self,
        prefix: str = "",
        *,
        snapshot: bool = True,
        type: Any = None,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> Watch[Any]:
        """Iterate over the changes of the keys selected by ``prefix``.

        With ``snapshot`` the iteration starts with the present entries (``initial``
        set), then every later change in revision order. The watch registers when
        entered (``async with``) or on the first iteration; it ends when closed or
        when the runtime stops. See :class:`Watch` for what happens to a slow watcher.

        Example::

            async with board.watch("research_results.") as changes:
                async for change in changes:
                    print(change.key, change.value)
        """
        core = self._core
        check_prefix(prefix)
        core.rt.authorize(self.author, "read", prefix)
        if max_pending < 1:
            raise ConfigurationError(f"max_pending must be at least 1, got {max_pending}")
        return Watch(core, prefix, snapshot, type, max_pending)

    async def subscribe(
        self,
        prefix: str,
        callback: Callable[[Change[Any]], Awaitable[None] | None],
        *,
        snapshot: bool = False,
        type: Any = None,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> Subscription:
        """Call ``callback(change)`` for every change under ``prefix``, one at a time, in order.

        The watch is registered when this returns; a task of the runtime's task group
        runs the callbacks until :meth:`Subscription.aclose` or shutdown. A callback
        that raises (or a change that does not decode as ``type``) is logged and
        counted in :meth:`statistics` and the subscription's ``failures``; the
        subscription goes on.

        Example::

            async def on_request(change: Change) -> None:
                print("new request", change.value)

            sub = await board.subscribe("research_request", on_request)
        """
        core = self._core
        w = self.watch(prefix, snapshot=snapshot, type=type, max_pending=max_pending)
        await w._open(snapshot)
        sub = Subscription(core, w, callback)
        core.subscriptions.add(sub)
        sub._task = core.rt.task_group.create_task(sub._run(), name=f"agentcomm:board:{prefix}")
        return sub

    def statistics(self) -> BoardStatistics:
        """A frozen snapshot of the board's counters.

        Example::

            print(rt.board.statistics().conflicts)
        """
        return self._core.statistics()
