"""Blackboard internals: key rules, entries and changes, the record codec, the core.

:mod:`agentcomm.blackboard` is the public face; :mod:`agentcomm.blackboard_watch`
holds watches and callback subscriptions. Everything here is re-exported there.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import weakref
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar

import msgspec

from agentcomm.core.envelope import DECODE_ERRORS, _enc_hook, decode_failure, decode_guarded
from agentcomm.core.errors import (
    ConfigurationError,
    DecodeError,
    RevisionConflict,
    TransportClosed,
    ValidationError,
)
from agentcomm.core.limits import MAX_WIRE_DEPTH, check_depth
from agentcomm.core.schema import Codec, codec_for
from agentcomm.transports.base import KVStore

if TYPE_CHECKING:
    from agentcomm.core.envelope import Envelope
    from agentcomm.host.runtime import Runtime

__all__ = [
    "BoardStatistics",
    "Change",
    "Entry",
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
    #: Id of the message whose handler wrote this revision (through ``ctx.board``).
    cause: str | None = None
    #: W3C ``traceparent`` of the writer's span (with tracing on), see docs/tracing.md.
    traceparent: str | None = None

    def as_cause(self) -> Envelope | None:
        """A stand-in for the message that caused this write, to pass as ``cause=``.

        ``None`` when the write had no recorded cause. Lets a watcher's onward
        messages say what caused them, so a conversation can be rebuilt across a
        blackboard hop.

        Example::

            await agent.send("reviewer", "review", {"key": e.key}, cause=e.as_cause())
        """
        if self.cause is None:
            return None
        from agentcomm.core.envelope import Envelope

        return Envelope(
            id=self.cause, kind="event", sender=self.author, traceparent=self.traceparent
        )


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
    that raised or changes they could not decode; ``rejected`` stored entries that did
    not decode (not a record, too deep, not JSON, not of the type asked for): a read
    of such a key raises, listings skip it (see ``docs/blackboard.md``).

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
    rejected: int = 0


class _Record(msgspec.Struct, omit_defaults=True):
    """What the blackboard stores as the KV value bytes (see docs/blackboard.md)."""

    created: float
    updated: float
    author: str
    value: msgspec.Raw
    expires: float | None = None
    trace: str | None = None  # the writer's traceparent (tracing on)
    cause: str | None = None  # id of the message whose handler wrote it


class _Created(msgspec.Struct):
    created: float


class _RecordOut(msgspec.Struct, omit_defaults=True, gc=False):
    """The encoding side of :class:`_Record`: the value is encoded in the same pass."""

    created: float
    updated: float
    author: str
    value: Any
    expires: float | None = None
    trace: str | None = None
    cause: str | None = None


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
        return decode_guarded(_decode_created, data, "record").created
    except DecodeError:
        return default  # not a record; reading it will say so


class _Watching(Protocol):
    """What the core needs of a watch (:class:`agentcomm.blackboard.watch.Watch`)."""

    async def aclose(self) -> None: ...


class _Subscribed(Protocol):
    """What the core needs of a subscription (``agentcomm.blackboard.watch.Subscription``)."""

    _task: asyncio.Task[None] | None


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
        self.watches: weakref.WeakSet[_Watching] = weakref.WeakSet()
        self.subscriptions: set[_Subscribed] = set()
        #: key -> (revision, created) of what this board last wrote there (bounded).
        self.known: dict[str, tuple[int, float]] = {}
        self.reads = self.writes = self.deletes = self.conflicts = 0
        self.lagged = self.callbacks = self.callback_failures = self.rejected = 0

    async def ready(self) -> KVStore:
        if not self.rt._running:
            raise TransportClosed("the runtime is not running; use the board inside `async with`")
        if not self.opened:
            await self.kv.kv_open(self.bucket, history=self.history)
            self.opened = True
        return self.kv

    def schema(self, key: str) -> Codec | None:
        schemas = self.schemas
        if not schemas:
            return None
        if key in schemas:
            return schemas[key]
        i = len(key)
        while (i := key.rfind(".", 0, i)) > 0:
            codec = schemas.get(key[: i + 1])
            if codec is not None:
                return codec
        return schemas.get("")

    def decode(self, e: KVStore.Entry, tp: Any) -> Entry[Any]:
        """The entry of stored bytes; raises :class:`ValidationError` (counted) if they
        do not decode, as a record or as the value's type (hostile input included)."""
        # decode_guarded, inlined (this is every read's hot path): the depth check
        # covers the value too, since it is nested inside the record.
        data = e.value
        try:
            if len(data) > MAX_WIRE_DEPTH:
                check_depth(data, "record")
            rec = _decode_record(data)
        except (DecodeError, *DECODE_ERRORS) as exc:
            why = exc if isinstance(exc, DecodeError) else decode_failure(exc, "record")
            raise self.refuse(
                e,
                DecodeError(
                    f"key {e.key!r} revision {e.revision} is not a blackboard record ({why}); "
                    "write it through the blackboard API"
                ),
            ) from None
        codec = codec_for(tp) if tp is not None else self.schema(e.key)
        try:
            value = _decode_any(rec.value) if codec is None else codec.decode(rec.value)
        except DecodeError as exc:
            raise self.refuse(e, DecodeError(f"key {e.key!r}: {exc}")) from None
        except ValidationError as exc:
            raise self.refuse(e, ValidationError(f"key {e.key!r}: {exc}")) from None
        except DECODE_ERRORS as exc:  # msgspec's own, from the untyped decoder
            why = decode_failure(exc, "value")
            raise self.refuse(e, DecodeError(f"key {e.key!r}: {why}")) from None
        return Entry(
            key=e.key,
            value=value,
            revision=e.revision,
            author=rec.author,
            created=rec.created,
            updated=rec.updated,
            expires=rec.expires,
            cause=rec.cause,
            traceparent=rec.trace,
        )

    def refuse(self, e: KVStore.Entry, exc: ValidationError) -> ValidationError:
        """Count a stored entry that did not decode; return the error to raise."""
        self.rejected += 1
        self.rt._rejects.add("blackboard", f"{self.bucket}:{e.key}", exc)
        return exc

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

    def entries(self, entries: list[KVStore.Entry], tp: Any) -> dict[str, Entry[Any]]:
        """The decoded entries by key (sorted); those that do not decode are skipped
        (counted in ``rejected``)."""
        out = {}
        for e in sorted(entries, key=lambda e: e.key):
            entry = self.decode_or_none(e, tp)
            if entry is not None:
                out[e.key] = entry
        return out

    def changes(self, items: list[KVStore.Entry], tp: Any) -> list[Change[Any]]:
        """A key's history as changes; puts that do not decode are skipped (counted)."""
        out: list[Change[Any]] = []
        for e in items:
            entry = None
            if e.operation == "put" and (entry := self.decode_or_none(e, tp)) is None:
                continue
            out.append(
                Change(
                    key=e.key,
                    operation=e.operation,
                    revision=e.revision,
                    timestamp=e.timestamp,
                    entry=entry,
                )
            )
        return out

    def conflict(
        self, cls: type[RevisionConflict], key: str, expected: int | None, exc: RevisionConflict
    ) -> RevisionConflict:
        """Count a lost compare-and-set and describe it with the entry that won."""
        self.conflicts += 1
        return cls(key, expected, self.decode_or_none(exc.current, None))

    def encode(
        self,
        key: str,
        value: Any,
        author: str,
        created: float,
        now: float,
        ttl: float | None,
        trace: str | None = None,
        cause: str | None = None,
    ) -> bytes:
        """The stored bytes of a write: the value (validated if declared) and metadata."""
        if self.schemas:
            codec = self.schema(key)
            if codec is not None:
                try:
                    value = codec.validate(value)
                except ValidationError as exc:
                    raise ValidationError(f"key {key!r}: {exc}") from None
        rec = _RecordOut(
            created, now, author, value, None if ttl is None else now + ttl, trace, cause
        )
        try:
            data = _encode_record(rec)
        except (NotImplementedError, TypeError, msgspec.EncodeError, RecursionError) as exc:
            raise ValidationError(f"key {key!r}: value cannot be encoded as JSON: {exc}") from None
        if len(data) > MAX_WIRE_DEPTH:
            self.check_record(key, data)
        return data

    @staticmethod
    def check_record(key: str, data: bytes) -> None:
        """Refuse to store what no reader could decode (over the wire limits)."""
        try:
            check_depth(data, "the record of this value")
        except DecodeError as exc:
            raise ValidationError(f"key {key!r}: {exc}") from None

    def check_ttl(self, ttl: float | None) -> None:
        if ttl is not None and not (ttl > 0 and ttl >= self.kv.min_ttl):
            raise ConfigurationError(
                f"ttl must be a number of seconds >= {max(self.kv.min_ttl, 0.0):g} "
                f"on the {getattr(self.kv, 'name', 'current')} transport, got {ttl!r}"
            )

    def statistics(self) -> BoardStatistics:
        """A frozen snapshot of the counters (``Blackboard.statistics``)."""
        return BoardStatistics(
            bucket=self.bucket,
            history=self.history,
            reads=self.reads,
            writes=self.writes,
            deletes=self.deletes,
            conflicts=self.conflicts,
            watches=len(self.watches),
            subscriptions=len(self.subscriptions),
            lagged=self.lagged,
            callbacks=self.callbacks,
            callback_failures=self.callback_failures,
            rejected=self.rejected,
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
