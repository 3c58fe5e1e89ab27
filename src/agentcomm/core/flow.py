"""Flow-control values of pub/sub: retry policy, rate limits, retention.

Small frozen values, as httpx's ``Timeout``/``Limits``: pass them to
:class:`~agentcomm.pubsub.PubSub` and to ``@agent.on(...)``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import OrderedDict

import msgspec

from agentcomm.core.errors import ConfigurationError, RateLimited

__all__ = ["RateBuckets", "RateLimit", "Retention", "RetryPolicy", "TokenBucket"]


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """How a failing event handler is retried: exponential backoff with jitter.

    Attempt ``n`` (1-based) that fails is retried after
    ``min(max_backoff, backoff * multiplier ** (n - 1))`` seconds, each delay spread
    by ``±jitter`` (a fraction). After ``max_attempts`` attempts the event goes to the
    dead-letter queue. A handler raising :class:`~agentcomm.errors.Retry` chooses the
    delay itself (the attempt still counts); :class:`~agentcomm.errors.Reject` sends the
    event to the dead letters at once.

    Example::

        @agent.on("orders.*", retry=RetryPolicy(max_attempts=5, backoff=0.2))
        async def on_order(order: Order) -> None: ...
    """

    max_attempts: int = 5
    backoff: float = 0.1
    multiplier: float = 2.0
    max_backoff: float = 30.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigurationError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.backoff < 0 or self.max_backoff < 0 or self.multiplier < 1:
            raise ConfigurationError(
                "backoff and max_backoff must be >= 0 seconds and multiplier >= 1"
            )
        if not 0 <= self.jitter <= 1:
            raise ConfigurationError(f"jitter is a fraction in [0, 1], got {self.jitter}")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based).

        Example::

            RetryPolicy(backoff=1.0, jitter=0).delay(3)  # 4.0
        """
        base = min(self.max_backoff, self.backoff * self.multiplier ** max(attempt - 1, 0))
        if self.jitter:
            base *= 1 + random.uniform(-self.jitter, self.jitter)
        return max(base, 0.0)


class RateLimit(msgspec.Struct, frozen=True):
    """A token bucket: ``rate`` events per second on average, bursts of up to ``burst``.

    Example::

        PubSub.install(rt, publisher_limit=RateLimit(100.0, burst=20))
    """

    rate: float
    burst: int = 1

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ConfigurationError("a RateLimit needs rate > 0 events/s and burst >= 1")


class Retention(msgspec.Struct, frozen=True, kw_only=True):
    """Bounds of the event log and of the dead-letter queue; nothing is unbounded.

    The event log keeps at most ``max_events`` events, ``max_bytes`` bytes and (when
    set) events younger than ``max_age`` seconds; the oldest go first. A message id
    published again within ``dedupe_window`` seconds is stored once. The dead-letter
    queue keeps at most ``max_dead_letters``; when full, the oldest dead letter is
    dropped to make room (and counted in ``dead_letters_dropped``).

    Example::

        PubSub.install(rt, retention=Retention(max_events=10_000, max_age=3600))
    """

    max_events: int = 100_000
    max_bytes: int = 64 << 20
    max_age: float | None = None
    dedupe_window: float = 120.0
    max_dead_letters: int = 10_000

    def __post_init__(self) -> None:
        if min(self.max_events, self.max_bytes, self.max_dead_letters) < 1:
            raise ConfigurationError("retention limits must be >= 1 (nothing is unbounded)")
        if self.dedupe_window <= 0 or (self.max_age is not None and self.max_age <= 0):
            raise ConfigurationError("max_age and dedupe_window must be positive seconds")


class TokenBucket:
    """The state of one :class:`RateLimit` (not thread-safe; one event loop).

    Example::

        bucket = TokenBucket(RateLimit(10.0, burst=5))
        await bucket.take("publisher 'a'", wait=True)
    """

    __slots__ = ("_last", "_tokens", "limit")

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self._tokens = float(limit.burst)
        self._last = time.monotonic()

    def try_take(self) -> float:
        """Take one token; return 0.0 on success, else the seconds until one is free.

        Example::

            if bucket.try_take() == 0.0: ...
        """
        now = time.monotonic()
        lim = self.limit
        tokens = min(float(lim.burst), self._tokens + (now - self._last) * lim.rate)
        self._last = now
        if tokens >= 1.0:
            self._tokens = tokens - 1.0
            return 0.0
        self._tokens = tokens
        return (1.0 - tokens) / lim.rate

    async def take(self, what: str, *, wait: bool, deadline: float | None = None) -> None:
        """Take one token, waiting for it, or raise :class:`RateLimited` if ``wait`` is False.

        With ``deadline`` (a ``time.time()`` value, like an envelope's), a wait that
        would end after it raises :class:`RateLimited` at once instead of waiting.

        Example::

            await bucket.take("topic 'orders'", wait=False)
        """
        while (delay := self.try_take()) > 0.0:
            if not wait or (deadline is not None and time.time() + delay > deadline):
                raise RateLimited(what, delay)
            await asyncio.sleep(delay)


class RateBuckets:
    """Token buckets by key (a sender, a topic...), at most ``max_size``, least recently used go.

    A bucket in use moves to the recent end, so an active sender keeps its state
    (a flooder cannot reset its own limit by making the map evict it); only the
    bucket left unused longest is dropped, and by then it has mostly refilled.

    Example::

        buckets = RateBuckets(max_size=10_000)
        await buckets.get("sender 'a'", RateLimit(10.0)).take("sender 'a'", wait=True)
    """

    __slots__ = ("_buckets", "max_size")

    def __init__(self, max_size: int = 10_000) -> None:
        if max_size < 1:
            raise ConfigurationError(f"max_size must be >= 1, got {max_size}")
        self.max_size = max_size
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def __contains__(self, key: object) -> bool:
        return key in self._buckets

    def get(self, key: str, limit: RateLimit) -> TokenBucket:
        """The bucket of ``key`` (created full with ``limit`` when absent), now the most recent.

        Example::

            bucket = buckets.get("publisher 'shop'", RateLimit(5.0, burst=2))
        """
        buckets = self._buckets
        b = buckets.get(key)
        if b is None:
            if len(buckets) >= self.max_size:
                buckets.popitem(last=False)
            b = buckets[key] = TokenBucket(limit)
        else:
            buckets.move_to_end(key)
        return b
