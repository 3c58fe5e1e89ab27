"""The statistics of core (``durable=False``) subscriptions: counters and their snapshot."""

from __future__ import annotations

import msgspec

__all__ = ["CoreCounters", "CoreSubscriptionStatistics"]


class CoreCounters:
    """Mutable counters of one core subscription (snapshotted by ``statistics()``)."""

    __slots__ = (
        "dropped",
        "expired",
        "failed",
        "handled",
        "invalid",
        "received",
        "refused",
        "timeouts",
    )

    def __init__(self) -> None:
        self.received = self.handled = self.failed = self.invalid = self.refused = 0
        self.expired = self.timeouts = self.dropped = 0


class CoreSubscriptionStatistics(msgspec.Struct, frozen=True):
    """Counters of one core (``durable=False``) subscription: nothing stored, at most once.

    ``received`` counts the events the engine handed it; ``dropped`` those pushed out
    of its queue, oldest first, because ``max_queued`` were already waiting (a
    handler slower than the publishers); ``engine_dropped`` those the engine dropped
    before (NATS: the client's pending limit, a slow consumer). ``handled`` handler
    runs that returned; ``failed`` those that raised (never retried: logged);
    ``invalid`` payloads the handler's schema refused, ``refused`` events the guard
    refused (signature, limits, policy), ``expired`` events whose ttl had passed:
    each counted and logged, none retried nor dead-lettered (there is no log to keep
    them in). ``timeouts`` counts runs cancelled by ``handler_timeout`` (in ``failed``).

    Example::

        s = rt.events.statistics().core_subscription("dash__cpu"); print(s.dropped)
    """

    name: str
    agent: str
    pattern: str
    group: str | None
    received: int
    handled: int
    failed: int
    invalid: int
    refused: int
    expired: int
    timeouts: int
    dropped: int
    engine_dropped: int
    queued: int
    max_queued: int
    running: int
