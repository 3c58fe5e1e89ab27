"""Topic names and subscription patterns (the NATS subject rules).

A topic is ``.``-separated tokens, each of letters, digits, ``_`` or ``-``:
``orders.created``, ``eu.orders.c-17``. A pattern may also use ``*`` for exactly one
token and ``>`` as the last token for one or more tokens:

=================  ==========================  ===============================
pattern            matches                     does not match
=================  ==========================  ===============================
``orders.*``       ``orders.created``          ``orders``, ``orders.eu.created``
``orders.>``       ``orders.a``, ``orders.a.b``  ``orders``
``*.created``      ``orders.created``          ``created``
``>``              every topic
=================  ==========================  ===============================

A pattern that could never match a valid topic (an empty token, ``>`` before the end,
``or*ders``, a space) is a :class:`~agentcomm.errors.ConfigurationError` at once.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from agentcomm.core.errors import ConfigurationError

__all__ = ["check_pattern", "check_topic", "compile_pattern", "topic_matches"]

_TOKEN = re.compile(r"^[A-Za-z0-9_-]+$")
MAX_TOPIC_LENGTH = 255


def check_topic(topic: str) -> str:
    """Validate a concrete topic (no wildcards); return it or raise ConfigurationError.

    Example::

        check_topic("orders.created")
    """
    if not isinstance(topic, str) or not topic or len(topic) > MAX_TOPIC_LENGTH:
        raise ConfigurationError(
            f"invalid topic {topic!r}: use 1-{MAX_TOPIC_LENGTH} characters of "
            "'.'-separated tokens such as 'orders.created'"
        )
    for token in topic.split("."):
        if not _TOKEN.match(token):
            raise ConfigurationError(
                f"invalid topic {topic!r}: token {token!r} must be 1 or more letters, digits, "
                "'_' or '-' (wildcards '*' and '>' are for subscriptions, not for publishing)"
            )
    return topic


def check_pattern(pattern: str) -> str:
    """Validate a subscription pattern (``*`` one token, ``>`` the rest); return it.

    Example::

        check_pattern("orders.*")
        check_pattern("orders.>.x")  # raises ConfigurationError
    """
    if not isinstance(pattern, str) or not pattern or len(pattern) > MAX_TOPIC_LENGTH:
        raise ConfigurationError(
            f"invalid topic pattern {pattern!r}: use '.'-separated tokens such as 'orders.*'"
        )
    tokens = pattern.split(".")
    for i, token in enumerate(tokens):
        if token == "*":
            continue
        if token == ">":
            if i != len(tokens) - 1:
                raise ConfigurationError(
                    f"invalid topic pattern {pattern!r}: '>' matches the rest of the topic, "
                    "so it can only be the last token (e.g. 'orders.>')"
                )
            continue
        if not _TOKEN.match(token):
            raise ConfigurationError(
                f"invalid topic pattern {pattern!r}: token {token!r} can never match; a token "
                "is letters, digits, '_' or '-', or a whole '*' or '>' wildcard"
            )
    return pattern


def compile_pattern(pattern: str) -> Callable[[str], bool]:
    """A fast ``matches(topic) -> bool`` for a valid pattern.

    Example::

        m = compile_pattern("orders.*"); assert m("orders.new") and not m("orders")
    """
    check_pattern(pattern)
    if "*" not in pattern and ">" not in pattern:
        return pattern.__eq__
    if pattern == ">":
        return lambda topic: True
    pats = pattern.split(".")
    tail = pats[-1] == ">"
    if tail:
        pats = pats[:-1]
        prefix_len = len(pats)

        def match_tail(topic: str) -> bool:
            toks = topic.split(".")
            if len(toks) <= prefix_len:
                return False
            return all(p == "*" or p == t for p, t in zip(pats, toks, strict=False))

        return match_tail
    n = len(pats)

    def match(topic: str) -> bool:
        toks = topic.split(".")
        if len(toks) != n:
            return False
        return all(p == "*" or p == t for p, t in zip(pats, toks, strict=True))

    return match


def topic_matches(pattern: str, topic: str) -> bool:
    """True when ``topic`` matches ``pattern``.

    Example::

        assert topic_matches("orders.>", "orders.eu.created")
    """
    return compile_pattern(pattern)(topic)
