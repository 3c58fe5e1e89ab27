"""Partitions of the event log: the subject an event is stored under, and the filters.

Every event is stored under ``<partition>.<topic>``: the partition is CRC-32 (IEEE,
as ``zlib.crc32``) of the event's key in UTF-8, modulo :data:`PARTITIONS`, or of its
id when it has no key. So all the events of one key are in one partition, in their
sequence order, as in Kafka's partitions. A subscription filters ``*.<pattern>``
(every partition); an *ordered* consumer group (``@agent.on(..., group=g,
ordered=True)``) reads each partition ``k`` through its own consumer ``<g>__p<k>``
that hands out one event at a time (``max_ack_pending=1``), so two members never
hold events of one key at once and each key's events run in order
(``docs/pubsub.md``, "Ordered consumer groups").

Example::

    subject = event_subject(env)            # "3.orders.created"
    assert topic_of(subject) == "orders.created"
    assert event_filter("orders.*") == "*.orders.*"
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentcomm.core.envelope import Envelope

__all__ = [
    "PARTITIONS",
    "event_filter",
    "event_subject",
    "partition_durable",
    "partition_of",
    "topic_of",
]

#: How many partitions the event log has (part of the wire format: every process of
#: a namespace, in any language, computes the same partition for a key).
PARTITIONS = 16
_crc32 = zlib.crc32


def partition_of(key: str) -> int:
    """The partition of events with ``key``: ``crc32(key) % PARTITIONS``.

    Example::

        assert 0 <= partition_of("customer-17") < PARTITIONS
    """
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % PARTITIONS


def event_subject(env: Envelope) -> str:
    """The subject ``env`` is stored under in the event log: ``<partition>.<topic>``.

    Example::

        event_subject(env)  # "5.orders.created"
    """
    key = env.key
    data = (env.id if key is None else key).encode("utf-8", "surrogatepass")
    return f"{_crc32(data) % PARTITIONS}.{env.topic}"


def event_filter(pattern: str, partition: int | None = None) -> str:
    """The log filter of topic ``pattern``: every partition, or only ``partition``.

    Example::

        assert event_filter("orders.>", 3) == "3.orders.>"
    """
    return f"{'*' if partition is None else partition}.{pattern}"


def topic_of(subject: str) -> str:
    """The topic of an event-log subject (``subject`` without its partition).

    Example::

        assert topic_of("3.orders.created") == "orders.created"
    """
    head, _, rest = subject.partition(".")
    return rest if rest and (head == "*" or head.isdigit()) else subject


def partition_durable(group: str, partition: int) -> str:
    """The consumer of an ordered group ``group`` that reads ``partition``.

    Example::

        assert partition_durable("billing", 3) == "billing__p3"
    """
    return f"{group}__p{partition}"
