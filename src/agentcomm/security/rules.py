"""Policy rules as NATS subject tokens: one rule per action, validated."""

from __future__ import annotations

import msgspec

from agentcomm.core.errors import ConfigurationError

__all__ = ["ACTIONS", "CONSUMER_FIELDS", "Rules", "_rule_tokens", "_tokens"]

#: The actions a policy governs, as passed to the runtime's access hook.
ACTIONS = ("send", "publish", "subscribe", "read", "write", "call")
#: The per-agent lists of durable consumers it may use (names, not patterns).
CONSUMER_FIELDS = ("subscriptions", "groups")
_FIELDS = ACTIONS + CONSUMER_FIELDS


def _tokens(pattern: str) -> tuple[str, ...]:
    return tuple(pattern.split("."))


def _rule_tokens(action: str, rule: str, where: str) -> tuple[str, ...]:
    if not isinstance(rule, str):
        raise ConfigurationError(f"{where}: rules are strings, got {rule!r}")
    if action in ("read", "write"):
        if rule in ("", ">"):
            return (">",)
        if rule.endswith("."):
            rule += ">"
    elif action in ("send", "call"):
        if rule in ("*", ">"):
            return ("*", "*")
        if "." not in rule:
            rule += ".*"
    toks = _tokens(rule)
    for i, t in enumerate(toks):
        if not t or (t == ">" and i != len(toks) - 1) or (len(t) > 1 and ("*" in t or ">" in t)):
            raise ConfigurationError(
                f"{where}: invalid pattern {rule!r}: use dot-separated tokens, '*' for one "
                "token and '>' only as the last token"
            )
    return toks


class Rules(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What one agent may do: a tuple of patterns per action (empty: nothing).

    ``subscriptions`` and ``groups`` name the durable consumers it may use: its
    subscriptions ``<agent>__<name>`` and the consumer groups it joins.

    Example::

        Rules(send=("calc",), publish=("orders.*",), write=("research.",))
        Rules(subscribe=("orders.*",), subscriptions=("charge",), groups=("billing",))
    """

    send: tuple[str, ...] = ()
    publish: tuple[str, ...] = ()
    subscribe: tuple[str, ...] = ()
    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()
    call: tuple[str, ...] = ()
    subscriptions: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()

    def merged(self, other: Rules) -> Rules:
        """These rules plus ``other``'s (the ``[defaults]`` table is merged this way).

        Example::

            everyone.merged(Rules(send=("calc",)))
        """
        return Rules(**{a: getattr(self, a) + getattr(other, a) for a in _FIELDS})
