"""Declaring event subscriptions on agents (``@agent.on``); started by :mod:`.pubsub`.

Declarations are checked at once (pattern, group, start, limits) and kept on the
agent (``agent.declarations["pubsub"]``) until a runtime's pub/sub starts them; an agent
running in a runtime tells that runtime's pub/sub at once. Nothing here is global.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from agentcomm.core.errors import ConfigurationError
from agentcomm.core.flow import RetryPolicy
from agentcomm.core.schema import HandlerSpec, inspect_handler
from agentcomm.core.topics import check_pattern
from agentcomm.pubsub.partitions import PARTITIONS, event_filter, partition_durable
from agentcomm.transports.streams import ConsumerConfig, DeliverPolicy

if TYPE_CHECKING:
    from agentcomm.host.agent import Agent

__all__ = [
    "HANDLER_TIMEOUT",
    "REPLAY_SUFFIX",
    "Start",
    "declare_subscription",
    "has_subscriptions",
    "subscriptions_of",
]

#: The event log's stream and the dead-letter stream (``<ns>_EVENTS``, ``<ns>_DLQ`` on NATS).
EVENT_STREAM = "EVENTS"
DEAD_LETTER_STREAM = "DLQ"

#: The suffix of the consumer a replay of a durable subscription uses (``<durable>__replay``),
#: the name the generated broker config grants.
REPLAY_SUFFIX = "__replay"

#: The key of pub/sub's declarations in ``Agent.declarations``.
DECLARATIONS = "pubsub"

F = TypeVar("F", bound=Callable[..., Any])

#: Where a new subscription starts: ``"new"`` (events published from now on),
#: ``"all"`` (every retained event), a sequence number (``int``) or a time (an aware
#: ``datetime``). Only applies when the subscription's durable consumer is created.
Start = str | int | _dt.datetime

#: The default ``handler_timeout`` (seconds): far longer than a normal handler, even
#: one awaiting a slow model or tool, so only a stuck one is cut short; short enough
#: that a stuck handler holds its subscription (and, keyed, its key) for minutes, not
#: forever. Longer than the consumers' ``ack_wait`` (:data:`ACK_WAIT`): a handler held
#: past that is reported in progress (``touch_held``), so it is not redelivered meanwhile.
HANDLER_TIMEOUT = 300.0


@dataclass(frozen=True, slots=True)
class _SubSpec:
    name: str
    pattern: str
    handler: HandlerSpec
    group: str | None
    retry: RetryPolicy
    start: Start
    concurrency: int
    max_in_flight: int
    handler_timeout: float | None = HANDLER_TIMEOUT
    #: An ordered consumer group: one consumer per partition, one event at a time each.
    ordered: bool = False
    #: ``@agent.on(..., durable=False)``: core pub/sub (``pubsub.core_events``), no log.
    core: bool = False

    def durable(self, agent: str) -> str:
        return self.group if self.group is not None else f"{agent}__{self.name}"

    def durables(self, agent: str) -> list[tuple[str, int | None]]:
        """The consumers this subscription reads from, with the partition of each."""
        durable = self.durable(agent)
        if not self.ordered:
            return [(durable, None)]
        return [(partition_durable(durable, k), k) for k in range(PARTITIONS)]

    def consumer_config(self, durable: str, partition: int | None = None) -> ConsumerConfig:
        """The durable consumer this subscription reads from (named ``durable``)."""
        deliver, seq, at = _deliver(self.start)
        return ConsumerConfig(
            name=durable,
            filter_subject=event_filter(self.pattern, partition),
            deliver=deliver,
            opt_start_seq=seq,
            opt_start_time=at,
            # a partition of an ordered group hands out one event at a time
            max_ack_pending=self.max_in_flight if partition is None else 1,
            ack_wait=_ack_wait(self.retry),
        )


#: The consumers' ack_wait (seconds). Short, so that the events a crashed subscriber
#: held go to another member of its group within about 5 s; an event held longer here
#: (a slow handler, one waiting behind its key or for a local retry) is kept from
#: redelivery by ``in_progress()`` heartbeats every second (``touch_held``).
ACK_WAIT = 4.0


def _ack_wait(retry: RetryPolicy) -> float:
    """The consumers' ack_wait: :data:`ACK_WAIT` (heartbeats cover the retries' backoff)."""
    del retry
    return ACK_WAIT


def _deliver(start: Start) -> tuple[DeliverPolicy, int | None, float | None]:
    if isinstance(start, bool):
        pass
    elif start == "new" or start == "all":
        return ("new" if start == "new" else "all"), None, None
    elif isinstance(start, int) and start >= 1:
        return "by_start_sequence", start, None
    elif isinstance(start, _dt.datetime):
        if start.tzinfo is None:
            raise ConfigurationError(
                "start=datetime must be timezone-aware, e.g. datetime.now(timezone.utc)"
            )
        return "by_start_time", None, start.timestamp()
    raise ConfigurationError(
        f"invalid start {start!r}: use 'new', 'all', a sequence number >= 1 or an aware datetime"
    )


def declare_subscription(
    agent: Agent,
    topic: str,
    *,
    name: str | None = None,
    group: str | None = None,
    retry: RetryPolicy | None = None,
    start: Start = "new",
    concurrency: int = 1,
    max_in_flight: int = 256,
    handler_timeout: float | None = HANDLER_TIMEOUT,
    ordered: bool = False,
    durable: bool = True,
) -> Callable[[F], F]:
    """The decorator behind :meth:`Agent.on <agentcomm.api.agent.Agent.on>`.

    ``name`` names the subscription (the handler's name by default); with
    ``group``, the agents of that group share the events, otherwise the agent gets
    every one; ``retry`` is the :class:`~agentcomm.flow.RetryPolicy`; ``start`` is
    ``"new"``, ``"all"``, a sequence or an aware datetime; ``concurrency`` handlers
    run at once (events with the same key stay in order); ``max_in_flight`` bounds
    the events held. An async handler running longer than ``handler_timeout``
    seconds is cancelled and the attempt counts as failed (retried, then
    dead-lettered as ``"timeout"``); ``None`` means no timeout. A sync handler
    cannot be cancelled: one that overruns is only logged (docs/pubsub.md).
    ``ordered=True`` (with ``group``) makes an ordered consumer group: the events
    of one key are never handled by two members at once, and always in sequence
    order (one consumer per partition of the log; docs/pubsub.md).
    ``durable=False`` subscribes to core events instead (published with
    ``durable=False``: no log, at most once; ``max_in_flight`` bounds the events
    waiting, the oldest dropped past it); ``start`` and ``retry`` need the log.

    Validates everything at declaration: an invalid pattern, group, start or
    timeout is a :class:`~agentcomm.errors.ConfigurationError` here, not a silent
    no-op later.

    Example::

        declare_subscription(agent, "orders.*")(handler_function)
    """
    from agentcomm.core.names import check_name

    check_pattern(topic)
    if group is not None:
        check_name("consumer group", group)
    if ordered and group is None:
        raise ConfigurationError(
            "ordered=True is for consumer groups: pass group=...; a subscription of one "
            "agent already handles each key's events in order"
        )
    _deliver(start)
    if concurrency < 1 or max_in_flight < concurrency:
        raise ConfigurationError(
            f"concurrency must be >= 1 and max_in_flight >= concurrency, got "
            f"concurrency={concurrency}, max_in_flight={max_in_flight}"
        )
    if handler_timeout is not None and (
        isinstance(handler_timeout, bool)
        or not isinstance(handler_timeout, int | float)
        or not math.isfinite(handler_timeout)
        or handler_timeout <= 0
    ):
        raise ConfigurationError(
            f"handler_timeout must be positive seconds or None (no timeout), got "
            f"{handler_timeout!r}"
        )
    if ordered and not durable:
        raise ConfigurationError(
            "ordered=True needs the event log's partitions: it cannot be durable=False"
        )
    if not durable and (retry is not None or start != "new"):
        what = "retry=" if retry is not None else "start="
        raise ConfigurationError(
            f"{what} needs the event log: a durable=False subscription gets core events "
            "as they are published (no storage, no redelivery); drop it or use durable=True"
        )
    policy = retry if retry is not None else RetryPolicy()

    def register(fn: F) -> F:
        sname = check_name("subscription", name or fn.__name__)
        specs = subscriptions_of(agent)
        if any(s.name == sname for s in specs):
            raise ConfigurationError(
                f"agent {agent.name!r} already has a subscription named {sname!r}; "
                "pass name=... to tell them apart"
            )
        spec = _SubSpec(
            name=sname,
            pattern=topic,
            handler=inspect_handler(fn, sname),
            group=group,
            retry=policy,
            start=start,
            concurrency=concurrency,
            max_in_flight=max_in_flight,
            handler_timeout=None if handler_timeout is None else float(handler_timeout),
            ordered=ordered,
            core=not durable,
        )
        agent.declare(DECLARATIONS, spec)  # a running pub/sub starts it now
        return fn

    return register


def one_pattern(groups: dict[str, str], spec: _SubSpec, agent: str) -> None:
    """Record ``spec``'s group in ``groups``; ConfigurationError if it had another pattern."""
    if spec.group is not None:
        known = groups.setdefault(spec.group, spec.pattern)
        if known != spec.pattern:
            raise ConfigurationError(
                f"consumer group {spec.group!r} subscribes to {known!r}; member "
                f"{agent!r} asks for {spec.pattern!r}: a group has one pattern"
            )


def has_subscriptions(agents: Iterable[Agent]) -> bool:
    """True when any of ``agents`` declared an event subscription.

    The runtime uses it to start pub/sub as soon as it starts (or attaches such an
    agent), so subscribers receive events without a first pub/sub call.

    Example::

        if has_subscriptions(rt.agents.values()):
            await PubSub.of(rt).start()
    """
    return any(subscriptions_of(a) for a in agents)


def subscriptions_of(agent: Agent) -> list[_SubSpec]:
    """The subscriptions ``agent`` declared with ``@agent.on`` (a live list)."""
    specs: list[_SubSpec] = agent.declarations.get(DECLARATIONS, [])
    return specs
