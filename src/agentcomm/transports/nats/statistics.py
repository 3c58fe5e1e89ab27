"""The frozen statistics snapshot of a NATS transport (``NatsTransport.statistics()``)."""

from __future__ import annotations

import msgspec

__all__ = ["NatsStatistics"]


class NatsStatistics(msgspec.Struct, frozen=True):
    """A frozen snapshot of a :class:`NatsTransport`.

    ``malformed`` counts inbound messages that were not valid envelopes (never
    fatal: see ``docs/security.md``); ``rejected_frames`` counts those and the
    runtime's refused stored records by kind; ``reply_failures`` counts responses
    that could not be sent.

    Example::

        snap = transport.statistics(); print(snap.connected, snap.reconnects)
    """

    url: str
    namespace: str
    connected: bool
    reconnects: int
    disconnects: int
    malformed: int
    reply_failures: int
    bound: tuple[str, ...]
    rejected_frames: dict[str, int] = msgspec.field(default_factory=dict)
