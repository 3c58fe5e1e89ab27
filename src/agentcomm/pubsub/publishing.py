"""What ``PubSub.publish`` stores: the event envelope, its rate limits, its span.

Internal to :mod:`agentcomm.pubsub`: :func:`event_envelope` builds an event with
every optional field, :class:`PublishLimits` holds the per-publisher and per-topic
token buckets, :func:`traced_append` stores an event inside a ``"publish <topic>"``
span (docs/tracing.md).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from agentcomm.core.envelope import Envelope, encode_payload, new_id
from agentcomm.core.flow import RateBuckets, RateLimit
from agentcomm.core.topics import compile_pattern
from agentcomm.pubsub.declare import EVENT_STREAM
from agentcomm.pubsub.metrics import MAX_TRACKED_TOPICS
from agentcomm.pubsub.partitions import event_subject

if TYPE_CHECKING:
    from agentcomm.host.runtime import Runtime
    from agentcomm.host.services import TracingHook

__all__ = ["PublishLimits", "event_envelope", "traced_append"]


def event_envelope(
    sender: str,
    topic: str,
    payload: Any,
    key: str | None,
    msg_id: str | None,
    ttl: float | None,
    headers: dict[str, str] | None,
    cause: Envelope | None,
    traceparent: str | None,
    tracestate: str | None,
) -> Envelope:
    """An event envelope with every optional field (the common case builds fewer)."""
    now = time.time()
    return Envelope(
        id=msg_id or new_id(),
        kind="event",
        sender=sender,
        topic=topic,
        payload=encode_payload(payload),
        created=now,
        deadline=None if ttl is None else now + ttl,
        key=key,
        causation_id=None if cause is None else cause.id,
        traceparent=traceparent,
        tracestate=tracestate,
        headers=headers or {},
    )


def untraced_envelope(
    sender: str,
    topic: str,
    payload: Any,
    key: str | None,
    msg_id: str | None,
    ttl: float | None,
    headers: dict[str, str] | None,
    cause: Envelope | None,
) -> Envelope:
    """The event envelope of an untraced publish (a cause's trace context passed on)."""
    if ttl is None and cause is None and headers is None:  # the common case, fewer fields
        return Envelope(
            id=msg_id or new_id(),
            kind="event",
            sender=sender,
            topic=topic,
            payload=encode_payload(payload),
            key=key,
        )
    tp = ts = None
    if cause is not None:
        tp, ts = cause.traceparent, cause.tracestate
    return event_envelope(sender, topic, payload, key, msg_id, ttl, headers, cause, tp, ts)


class PublishLimits:
    """The publish rate limits of one pub/sub: one per publisher, and per topic pattern."""

    def __init__(
        self, publisher_limit: RateLimit | None, topic_limits: dict[str, RateLimit] | None
    ) -> None:
        self.publisher_limit = publisher_limit
        self._topic_limits = [
            (compile_pattern(p), p, lim) for p, lim in (topic_limits or {}).items()
        ]
        self.active = publisher_limit is not None or bool(self._topic_limits)
        self._buckets = RateBuckets(MAX_TRACKED_TOPICS)

    async def take(self, sender: str, topic: str, wait: bool, deadline: float | None) -> None:
        """Take a token of every limit that applies (wait, or raise ``RateLimited``)."""
        lim = self.publisher_limit
        if lim is not None:
            what = f"publisher {sender!r}"
            await self._buckets.get(what, lim).take(what, wait=wait, deadline=deadline)
        for match, pattern, tlim in self._topic_limits:
            if match(topic):
                what = f"topic {topic!r} (limit {pattern!r})"
                await self._buckets.get(what, tlim).take(what, wait=wait, deadline=deadline)


async def traced_append(
    rt: Runtime,
    tracing: TracingHook,
    sender: str,
    topic: str,
    payload: Any,
    key: str | None,
    msg_id: str | None,
    ttl: float | None,
    headers: dict[str, str] | None,
    cause: Envelope | None,
) -> tuple[int, Envelope, bool]:
    """Seal and store an event in a ``"publish <topic>"`` span whose context it carries.

    Returns its sequence, the envelope stored and whether it was a duplicate.
    """
    attrs = {"agentcomm.sender": sender, "agentcomm.key": key}
    with tracing.span("publish", topic, kind="producer", attributes=attrs) as span:
        tp, ts = tracing.current_traceparent()
        env = event_envelope(sender, topic, payload, key, msg_id, ttl, headers, cause, tp, ts)
        if rt.guard is not None:
            env = rt.guard.seal(env)
        seq, duplicate = await rt.transport.append_checked(
            EVENT_STREAM, env, msg_id=msg_id, subject=event_subject(env)
        )
        tracing.describe_current(env)
        span.set_attribute("agentcomm.sequence", seq)
        if duplicate:
            span.set_attribute("agentcomm.duplicate", True)
        return seq, env, duplicate
