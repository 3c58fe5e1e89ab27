"""Declaring event subscriptions on agents (``@agent.on``); started by :mod:`.pubsub`.

Declarations are checked at once (pattern, group, start, limits) and kept on the
agent (``agent.declarations["pubsub"]``) until a runtime's pub/sub starts them; an agent
running in a runtime tells that runtime's pub/sub at once. Nothing here is global.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from agentcomm.core.errors import ConfigurationError
from agentcomm.core.flow import RetryPolicy
from agentcomm.core.schema import HandlerSpec, inspect_handler
from agentcomm.core.topics import check_pattern
from agentcomm.transports.streams import DeliverPolicy

if TYPE_CHECKING:
    from agentcomm.host.agent import Agent

__all__ = ["Start", "declare_subscription", "has_subscriptions", "subscriptions_of"]

#: The key of pub/sub's declarations in ``Agent.declarations``.
DECLARATIONS = "pubsub"

F = TypeVar("F", bound=Callable[..., Any])

#: Where a new subscription starts: ``"new"`` (events published from now on),
#: ``"all"`` (every retained event), a sequence number (``int``) or a time (an aware
#: ``datetime``). Only applies when the subscription's durable consumer is created.
Start = str | int | _dt.datetime


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

    def durable(self, agent: str) -> str:
        return self.group if self.group is not None else f"{agent}__{self.name}"


def _ack_wait(retry: RetryPolicy) -> float:
    """The consumers' ack_wait: long enough to cover a local retry's backoff."""
    return max(60.0, 2 * retry.max_backoff + 30.0)


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
) -> Callable[[F], F]:
    """The decorator behind :meth:`Agent.on <agentcomm.api.agent.Agent.on>`.

    Validates everything at declaration: an invalid pattern, group or start is a
    :class:`~agentcomm.errors.ConfigurationError` here, not a silent no-op later.

    Example::

        declare_subscription(agent, "orders.*")(handler_function)
    """
    from agentcomm.core.names import check_name

    check_pattern(topic)
    if group is not None:
        check_name("consumer group", group)
    _deliver(start)
    if concurrency < 1 or max_in_flight < concurrency:
        raise ConfigurationError(
            f"concurrency must be >= 1 and max_in_flight >= concurrency, got "
            f"concurrency={concurrency}, max_in_flight={max_in_flight}"
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
        )
        agent.declare(DECLARATIONS, spec)  # a running pub/sub starts it now
        return fn

    return register


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
