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

import asyncio
import inspect
import logging
import random
import re
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, overload

import msgspec

from .envelope import _enc_hook
from .errors import (
    ConfigurationError,
    KeyExists,
    RevisionConflict,
    TransportClosed,
    ValidationError,
)
from .schema import Codec, codec_for
from .transports.base import KVStore

if TYPE_CHECKING:
    from .runtime import Runtime

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

logger = logging.getLogger("agentcomm.blackboard")

T = TypeVar("T")

#: Entries kept per key by default (the NATS KV maximum is 64).
DEFAULT_HISTORY = 16
#: Attempts :meth:`Blackboard.update` makes before giving up.
DEFAULT_ATTEMPTS = 100
#: Undelivered changes a watcher may fall behind by before it lags (see :class:`Watch`).
DEFAULT_MAX_PENDING = 1024
#: The bucket behind ``rt.board``.
DEFAULT_BUCKET = "blackboard"

_TOKEN = r"[A-Za-z0-9_=-]+"
KEY_RE = re.compile(rf"{_TOKEN}(?:\.{_TOKEN})*")
BUCKET_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_KEY_LENGTH = 255
_valid_keys: dict[str, None] = {}


def check_key(key: str) -> str:
    """Validate a blackboard key and return it; raises :class:`ConfigurationError`.

    A key is 1-255 characters: tokens of letters, digits, ``_``, ``-`` or ``=``
    joined by single dots, e.g. ``research.q1.findings``.

    Example::

        check_key("research.q1")   # ok
        check_key("research/q1")   # ConfigurationError: use '.' between tokens
    """
    if type(key) is str and key in _valid_keys:
        return key
    if not isinstance(key, str) or len(key) > MAX_KEY_LENGTH or not KEY_RE.fullmatch(key):
        hint = ""
        if isinstance(key, str) and "/" in key:
            hint = f" (write {key.replace('/', '.')!r}: '/' is not a separator here)"
        raise ConfigurationError(
            f"invalid blackboard key {key!r}{hint}: use 1-{MAX_KEY_LENGTH} characters, "
            "tokens of letters, digits, '_', '-' or '=' joined by single dots, "
            "e.g. 'research.q1.findings'"
        )
    if len(_valid_keys) >= 4096:  # a bounded cache of keys already checked
        _valid_keys.clear()
    _valid_keys[key] = None
    return key


def check_prefix(prefix: str) -> str:
    """Validate a prefix: ``""`` (every key), ``"a.b."`` (every key below ``a.b``) or a key.

    Example::

        check_prefix("research.")   # keys starting with "research."
        check_prefix("research")    # the key "research" alone
    """
    if prefix == "":
        return prefix
    if isinstance(prefix, str) and prefix.endswith("."):
        try:
            check_key(prefix[:-1])
        except ConfigurationError:
            pass
        else:
            return prefix
    try:
        return check_key(prefix)
    except ConfigurationError:
        raise ConfigurationError(
            f"invalid blackboard prefix {prefix!r}: use '' (every key), a key followed "
            "by a dot such as 'research.' (every key below it), or a whole key"
        ) from None


def _selects(prefix: str, key: str) -> bool:
    return not prefix or (key.startswith(prefix) if prefix[-1] == "." else key == prefix)


class Entry(msgspec.Struct, Generic[T], frozen=True, kw_only=True):
    """One key's current value and metadata; frozen, its value decoded afresh per read.

    ``revision`` strictly increases with every change of the board (not in +1 steps);
    ``created`` is when the key was last created (written while absent), ``updated``
    when this revision was written, ``expires`` when it expires (``None``: never).

    Example::

        entry = await board.read("task.1")
        if entry is not None:
            print(entry.value, entry.author, entry.revision)
    """

    key: str
    value: T
    revision: int
    author: str
    created: float
    updated: float
    expires: float | None = None


class Change(msgspec.Struct, Generic[T], frozen=True, kw_only=True):
    """One change a watcher sees (or one item of a key's history).

    ``operation`` is ``"put"`` (``entry`` holds the new value), ``"delete"`` or
    ``"expire"`` (``entry`` is ``None``). ``initial`` marks changes that come from a
    snapshot: the starting one, or the resync after the watcher lagged.

    Example::

        async for change in board.watch("task."):
            if change.operation == "put":
                print(change.key, "=", change.value)
            else:
                print(change.key, "is gone")
    """

    key: str
    operation: Literal["put", "delete", "expire"]
    revision: int
    timestamp: float
    entry: Entry[T] | None = None
    initial: bool = False

    @property
    def value(self) -> T | None:
        """The new value for a put, ``None`` for a delete or expiry."""
        return None if self.entry is None else self.entry.value


class BoardStatistics(msgspec.Struct, frozen=True):
    """A frozen snapshot of a blackboard's counters (see :meth:`Blackboard.statistics`).

    ``conflicts`` counts refused compare-and-set writes (including retried ones in
    ``update``), ``lagged`` counts watcher resyncs, ``callback_failures`` callbacks
    that raised or changes they could not decode.

    Example::

        s = rt.board.statistics(); print(s.writes, s.conflicts, s.callback_failures)
    """

    bucket: str
    history: int
    reads: int
    writes: int
    deletes: int
    conflicts: int
    watches: int
    subscriptions: int
    lagged: int
    callbacks: int
    callback_failures: int


class _Record(msgspec.Struct, omit_defaults=True):
    """What the blackboard stores as the KV value bytes (see docs/blackboard.md)."""

    created: float
    updated: float
    author: str
    value: msgspec.Raw
    expires: float | None = None


class _Created(msgspec.Struct):
    created: float


class _RecordOut(msgspec.Struct, omit_defaults=True, gc=False):
    """The encoding side of :class:`_Record`: the value is encoded in the same pass."""

    created: float
    updated: float
    author: str
    value: Any
    expires: float | None = None


# Same encoder settings as payloads (encode_payload): Structs, dataclasses, pydantic.
_encode_record = msgspec.json.Encoder(enc_hook=_enc_hook).encode
_decode_record = msgspec.json.Decoder(_Record).decode
_decode_created = msgspec.json.Decoder(_Created).decode
_decode_any = msgspec.json.Decoder().decode
_now = time.time
_CREATED = b'{"created":'


def _created_of(data: bytes, default: float) -> float:
    """The ``created`` time of a stored record, without decoding a large value."""
    if len(data) > 256 and data.startswith(_CREATED):  # encoded first: slice it out
        end = data.find(b",", 11)
        if end > 0:
            try:
                return float(data[11:end])
            except ValueError:
                pass
    try:
        return _decode_created(data).created
    except (msgspec.ValidationError, msgspec.DecodeError):
        return default  # not a record; reading it will say so


class _Core:
    """Per-runtime, per-bucket state shared by every :class:`Blackboard` view."""

    def __init__(self, rt: Runtime, bucket: str, history: int) -> None:
        if not isinstance(bucket, str) or not BUCKET_RE.fullmatch(bucket):
            raise ConfigurationError(
                f"invalid bucket name {bucket!r}: use 1-64 letters, digits, '_' or '-'"
            )
        if not 1 <= history <= 64:
            raise ConfigurationError(f"history must be between 1 and 64, got {history}")
        self.rt = rt
        self.kv: KVStore = rt.transport
        self.bucket = bucket
        self.history = history
        self.opened = False
        self.closed = False
        self.schemas: dict[str, Codec] = {}
        # Weak: a watch its owner dropped without closing is not kept alive here.
        self.watches: weakref.WeakSet[Watch[Any]] = weakref.WeakSet()
        self.subscriptions: set[Subscription] = set()
        #: key -> (revision, created) of what this board last wrote there (bounded).
        self.known: dict[str, tuple[int, float]] = {}
        self.reads = self.writes = self.deletes = self.conflicts = 0
        self.lagged = self.callbacks = self.callback_failures = 0

    async def ready(self) -> KVStore:
        if not self.rt._running:
            raise TransportClosed("the runtime is not running; use the board inside `async with`")
        if not self.opened:
            await self.kv.kv_open(self.bucket, history=self.history)
            self.opened = True
        return self.kv

    def schema(self, key: str) -> Codec | None:
        schemas = self.schemas
        if key in schemas:
            return schemas[key]
        i = len(key)
        while (i := key.rfind(".", 0, i)) > 0:
            codec = schemas.get(key[: i + 1])
            if codec is not None:
                return codec
        return schemas.get("")

    def decode(self, e: KVStore.Entry, tp: Any) -> Entry[Any]:
        try:
            rec = _decode_record(e.value)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise ValidationError(
                f"key {e.key!r} revision {e.revision} is not a blackboard record ({exc}); "
                "write it through the blackboard API"
            ) from None
        codec = codec_for(tp) if tp is not None else self.schema(e.key)
        if codec is None:
            try:
                value = _decode_any(rec.value)
            except msgspec.DecodeError as exc:
                raise ValidationError(f"key {e.key!r}: value is not valid JSON: {exc}") from None
        else:
            try:
                value = codec.decode(rec.value)
            except ValidationError as exc:
                raise ValidationError(f"key {e.key!r}: {exc}") from None
        return Entry(
            key=e.key,
            value=value,
            revision=e.revision,
            author=rec.author,
            created=rec.created,
            updated=rec.updated,
            expires=rec.expires,
        )

    def remember(self, key: str, revision: int, created: float) -> None:
        known = self.known
        if len(known) >= 4096:
            known.clear()
        known[key] = (revision, created)

    def decode_or_none(self, e: KVStore.Entry | None, tp: Any) -> Entry[Any] | None:
        if e is None:
            return None
        try:
            return self.decode(e, tp)
        except ValidationError:
            return None

    def encode(
        self, key: str, value: Any, author: str, created: float, now: float, ttl: float | None
    ) -> bytes:
        """The stored bytes of a write: the value (validated if declared) and metadata."""
        if self.schemas:
            codec = self.schema(key)
            if codec is not None:
                try:
                    value = codec.validate(value)
                except ValidationError as exc:
                    raise ValidationError(f"key {key!r}: {exc}") from None
        rec = _RecordOut(created, now, author, value, None if ttl is None else now + ttl)
        try:
            return _encode_record(rec)
        except (NotImplementedError, TypeError, msgspec.EncodeError) as exc:
            raise ValidationError(f"key {key!r}: value cannot be encoded as JSON: {exc}") from None

    def check_ttl(self, ttl: float | None) -> None:
        if ttl is not None and not (ttl > 0 and ttl >= self.kv.min_ttl):
            raise ConfigurationError(
                f"ttl must be a number of seconds >= {max(self.kv.min_ttl, 0.0):g} "
                f"on the {getattr(self.kv, 'name', 'current')} transport, got {ttl!r}"
            )

    async def aclose(self) -> None:
        """Close every watch and subscription (called by the runtime at shutdown)."""
        self.closed = True
        subs = list(self.subscriptions)
        for w in list(self.watches):
            await w.aclose()
        tasks = [s._task for s in subs if s._task is not None and not s._task.done()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.rt.drain_timeout)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending)


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

    __slots__ = ("_core", "author")

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
        return view

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

        Example::

            entry = await board.read("research.q1", type=Findings)
        """
        core = self._core
        check_key(key)
        core.rt._authorize(self.author, "read", key)
        kv = await core.ready()
        e = await kv.kv_get(core.bucket, key)
        core.reads += 1
        return None if e is None else core.decode(e, type)

    async def read_prefix(self, prefix: str, *, type: Any = None) -> dict[str, Entry[Any]]:
        """Every present entry selected by ``prefix``, by key (sorted).

        ``prefix`` is ``""`` (every key), ``"a.b."`` (every key below ``a.b``) or a key.

        Example::

            results = await board.read_prefix("research_results.")
        """
        core = self._core
        check_prefix(prefix)
        core.rt._authorize(self.author, "read", prefix)
        kv = await core.ready()
        entries = await kv.kv_entries(core.bucket, prefix)
        core.reads += 1
        return {e.key: core.decode(e, type) for e in sorted(entries, key=lambda e: e.key)}

    async def keys(self, prefix: str = "") -> list[str]:
        """The present keys selected by ``prefix``, sorted.

        Example::

            assert await board.keys("task.") == ["task.1", "task.2"]
        """
        core = self._core
        check_prefix(prefix)
        core.rt._authorize(self.author, "read", prefix)
        kv = await core.ready()
        return sorted(await kv.kv_keys(core.bucket, prefix))

    async def history(self, key: str, *, type: Any = None) -> list[Change[Any]]:
        """The key's most recent changes, oldest first, deletes and expiries included.

        At most :attr:`max_history` items.

        Example::

            for change in await board.history("task.1"):
                print(change.revision, change.operation, change.value)
        """
        core = self._core
        check_key(key)
        core.rt._authorize(self.author, "read", key)
        kv = await core.ready()
        core.reads += 1
        return [
            Change(
                key=e.key,
                operation=e.operation,
                revision=e.revision,
                timestamp=e.timestamp,
                entry=core.decode(e, type) if e.operation == "put" else None,
            )
            for e in await kv.kv_history(core.bucket, key)
        ]

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
        if type(key) is not str or key not in _valid_keys:
            check_key(key)
        rt = core.rt
        rt._authorize(self.author, "write", key)
        if ttl is not None:
            core.check_ttl(ttl)
        if expected_revision is not None and expected_revision < 1:
            raise ConfigurationError(
                f"expected_revision must be a revision read from the board (>= 1), got "
                f"{expected_revision}; use create() to write only if the key is absent"
            )
        kv = core.kv if core.opened and rt._running else await core.ready()
        bucket = core.bucket
        if expected_revision is None and (known := core.known.get(key)) is not None:
            # Last writer wins, tried first as compare-and-set on the revision this
            # board wrote last: if nobody wrote since, ``created`` carries over without
            # reading the key (one engine operation instead of two).
            now = _now()
            if core.schemas or ttl is not None:
                data = core.encode(key, value, self.author, known[1], now, ttl)
            else:  # the hot path: Core.encode, inlined
                try:
                    data = _encode_record(_RecordOut(known[1], now, self.author, value, None))
                except (NotImplementedError, TypeError, msgspec.EncodeError) as exc:
                    raise ValidationError(
                        f"key {key!r}: value cannot be encoded as JSON: {exc}"
                    ) from None
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
        elif len(cur.value) <= 256:
            try:
                created = _decode_created(cur.value).created
            except (msgspec.ValidationError, msgspec.DecodeError):
                created = now  # not a record; reading it will say so
        else:
            created = _created_of(cur.value, now)
        data = core.encode(key, value, self.author, created, now, ttl)
        try:
            if expected_revision is None and ttl is None:
                rev = await kv.kv_put(bucket, key, data)
            else:
                rev = await kv.kv_put(
                    bucket, key, data, expected_revision=expected_revision, ttl=ttl
                )
        except RevisionConflict as exc:
            core.conflicts += 1
            raise RevisionConflict(
                key, expected_revision, core.decode_or_none(exc.current, None)
            ) from None
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
        check_key(key)
        core.rt._authorize(self.author, "write", key)
        if ttl is not None:
            core.check_ttl(ttl)
        now = time.time()
        data = core.encode(key, value, self.author, now, now, ttl)
        kv = await core.ready()
        try:
            rev = await kv.kv_put(core.bucket, key, data, create_only=True, ttl=ttl)
        except RevisionConflict as exc:
            core.conflicts += 1
            raise KeyExists(key, None, core.decode_or_none(exc.current, None)) from None
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
        check_key(key)
        core.rt._authorize(self.author, "write", key)
        kv = await core.ready()
        try:
            rev = await kv.kv_delete(core.bucket, key, expected_revision=expected_revision)
        except RevisionConflict as exc:
            core.conflicts += 1
            raise RevisionConflict(
                key, expected_revision, core.decode_or_none(exc.current, None)
            ) from None
        core.known.pop(key, None)
        core.deletes += 1
        return rev

    async def update(
        self,
        key: str,
        fn: Callable[[Any], Any],
        *,
        type: Any = None,
        max_attempts: int = DEFAULT_ATTEMPTS,
        ttl: float | None = None,
    ) -> Entry[Any]:
        """Read, apply ``fn`` (sync or async), write with compare-and-set; retry on conflict.

        ``fn`` gets the current value (``None`` when absent) and returns the new one;
        it may run several times, so keep it free of side effects. After
        ``max_attempts`` lost races it raises :class:`RevisionConflict`. Returns the
        written entry.

        Example::

            entry = await board.update("stats.runs", lambda n: (n or 0) + 1)
        """
        if max_attempts < 1:
            raise ConfigurationError(f"max_attempts must be at least 1, got {max_attempts}")
        core = self._core
        check_key(key)
        core.rt._authorize(self.author, "write", key)
        core.rt._authorize(self.author, "read", key)
        if ttl is not None:
            core.check_ttl(ttl)
        kv = await core.ready()
        bucket = core.bucket
        for attempt in range(1, max_attempts + 1):
            raw_cur = await kv.kv_get(bucket, key)
            cur = None if raw_cur is None else core.decode(raw_cur, type)
            new = fn(None if cur is None else cur.value)
            if inspect.isawaitable(new):
                new = await new
            now = time.time()
            data = core.encode(key, new, self.author, now if cur is None else cur.created, now, ttl)
            try:
                if cur is None:
                    rev = await kv.kv_put(bucket, key, data, create_only=True, ttl=ttl)
                else:
                    rev = await kv.kv_put(
                        bucket, key, data, expected_revision=cur.revision, ttl=ttl
                    )
            except RevisionConflict as exc:
                core.conflicts += 1
                if attempt == max_attempts:
                    err = RevisionConflict(
                        key,
                        None if cur is None else cur.revision,
                        core.decode_or_none(exc.current, type),
                    )
                    err.args = (
                        f"key {key!r}: update lost the race {max_attempts} times; raise "
                        "max_attempts or have fewer writers share this key",
                    )
                    raise err from None
                await _backoff(attempt)
                continue
            core.remember(key, rev, now if cur is None else cur.created)
            core.writes += 1
            return core.decode(
                KVStore.Entry(key=key, value=data, revision=rev, operation="put", timestamp=now),
                type,
            )
        raise AssertionError("unreachable")  # pragma: no cover

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
        core.rt._authorize(self.author, "read", prefix)
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
        c = self._core
        return BoardStatistics(
            bucket=c.bucket,
            history=c.history,
            reads=c.reads,
            writes=c.writes,
            deletes=c.deletes,
            conflicts=c.conflicts,
            watches=len(c.watches),
            subscriptions=len(c.subscriptions),
            lagged=c.lagged,
            callbacks=c.callbacks,
            callback_failures=c.callback_failures,
        )


async def _backoff(attempt: int) -> None:
    if attempt == 1:
        await asyncio.sleep(0)
    else:
        await asyncio.sleep(random.uniform(0, min(0.05, 0.0002 * 2**attempt)))


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

    A change whose value does not decode as the watch's ``type`` raises
    :class:`ValidationError` from the iteration; the watch stays usable (iterate
    again to get the next change).

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
        try:
            while True:
                try:
                    change = await w.__anext__()
                except StopAsyncIteration:
                    return
                except ValidationError:
                    self._failed("a change could not be decoded")
                    continue
                core.callbacks += 1
                try:
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

    async def aclose(self) -> None:
        """Stop the subscription; waits for a callback in progress to return.

        Example::

            await sub.aclose()
        """
        await self._watch.aclose()
        task = self._task
        if task is not None and not task.done() and task is not asyncio.current_task():
            await asyncio.wait([task])
