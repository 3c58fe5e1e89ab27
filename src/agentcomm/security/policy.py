"""A declarative access policy: who may send, publish, subscribe, read, write and call what.

Without a policy everything is allowed (as before). Once a policy is given, anything
it does not allow is refused with :class:`~agentcomm.errors.PermissionDenied`, whose
message names the policy entry that was consulted. The same policy is a TOML file or
plain Python, and it is the runtime's access hook::

    # policy.toml
    trusted = ["runtime"]            # may do everything (the runtime's own rt.board)

    [defaults]                       # granted to every agent listed below
    subscribe = ["status.>"]

    [agents.planner]
    send = ["researcher", "calc.add"]   # an agent (any handler) or agent.handler
    publish = ["plans.*"]
    read = ["research."]                # blackboard prefix (ends with "."), key or pattern
    write = ["plan."]

    [agents.researcher]
    subscribe = ["plans.*"]
    subscriptions = ["follow"]          # its durable consumers: researcher__follow
    groups = ["indexers"]               # and the consumer groups it joins
    write = ["research."]
    call = ["search.*"]                 # MCP tools: server.tool or agent.handler

Then ``Runtime(access=Policy.from_file("policy.toml"))``.

**Patterns** are NATS subject patterns: tokens separated by dots, ``*`` matches one
token, ``>`` the rest. For ``send`` and ``call`` a bare name means every handler of it
(``"calc"`` is ``"calc.*"``). For ``read`` and ``write`` a rule ending in a dot is a
prefix (``"research."`` is ``"research.>"``) and ``""`` is the whole board. A
``subscribe`` (or a prefix read) is allowed only when one rule covers *every* subject
the requested pattern can match: ``orders.>`` covers ``orders.*``, not the reverse.

**Consumers**: ``subscriptions`` (names of the agent's ``@agent.on`` subscriptions,
whose durable consumer is ``<agent>__<name>``) and ``groups`` (consumer groups it
joins) say which durable consumers it may use. When an agent's entry lists either,
the runtime refuses to start any other subscription of it; without them it starts
them as before, but the generated broker config grants that agent no consumer.

:meth:`Policy.nats_config` turns the same policy into a NATS server authorization
block (``agentcomm policy nats-config policy.toml``), so the broker refuses a process
that bypasses the library; see ``docs/security.md`` for what the broker can check.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from agentcomm.core.errors import ConfigurationError, PermissionDenied
from agentcomm.core.names import nats_inbox_prefix
from agentcomm.security.rules import (
    _FIELDS,
    ACTIONS,
    CONSUMER_FIELDS,
    Rules,
    _rule_tokens,
    _tokens,
)

if TYPE_CHECKING:
    from agentcomm.host.agent import Agent

__all__ = ["ACTIONS", "CONSUMER_FIELDS", "Policy", "Rules", "nats_inbox_prefix"]

_CONSUMER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,128}$")

_CACHE_SIZE = 4096


def _target_tokens(action: str, target: str) -> tuple[str, ...]:
    if action in ("read", "write"):
        if target == "":
            return (">",)
        if target.endswith("."):
            target += ">"
    return _tokens(target)


def _covers(rule: tuple[str, ...], target: tuple[str, ...]) -> bool:
    """True when every subject ``target`` matches is matched by ``rule``."""
    for i, r in enumerate(rule):
        if r == ">":
            return i < len(target)
        if i >= len(target):
            return False
        t = target[i]
        if t == ">" or (t == "*" and r != "*"):
            return False
        if r != "*" and r != t:
            return False
    return len(rule) == len(target)


class Policy:
    """Deny-by-default access rules per agent; callable as the runtime's access hook.

    ``agents`` maps agent names to :class:`Rules` (or dicts of lists); ``defaults``
    is added to every listed agent; ``trusted`` names may do everything; ``source``
    names where the policy came from, in refusals.

    Example::

        policy = Policy({"alice": Rules(send=("calc",)), "calc": Rules()})
        async with Runtime(access=policy, agents=[calc]) as rt: ...
        policy("alice", "send", "calc.add")      # passes
        policy("alice", "send", "bob.greet")     # raises PermissionDenied
    """

    def __init__(
        self,
        agents: Mapping[str, Rules | Mapping[str, Iterable[str]]],
        *,
        defaults: Rules | Mapping[str, Iterable[str]] | None = None,
        trusted: Iterable[str] = (),
        source: str = "<code>",
    ) -> None:
        self.source = source
        self.trusted = frozenset(trusted)
        self.defaults = _as_rules(defaults, f"{source} [defaults]")
        self.agents: dict[str, Rules] = {}
        self._compiled: dict[tuple[str, str], list[tuple[str, tuple[str, ...]]]] = {}
        for name, rules in agents.items():
            r = _as_rules(rules, f"{source} [agents.{name}]").merged(self.defaults)
            self.agents[name] = r
            for action in ACTIONS:
                where = f"{source} [agents.{name}] {action}"
                self._compiled[(name, action)] = [
                    (rule, _rule_tokens(action, rule, where)) for rule in getattr(r, action)
                ]
            for field in CONSUMER_FIELDS:
                for cname in getattr(r, field):
                    if not isinstance(cname, str) or not _CONSUMER_NAME.match(cname):
                        raise ConfigurationError(
                            f"{source} [agents.{name}] {field}: invalid name {cname!r}: use "
                            "1-128 letters, digits, '_' or '-' (a subscription or group name)"
                        )
        self._cache: dict[tuple[str, str, str], str | None] = {}

    # -- loading -------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "<dict>") -> Policy:
        """Build from the parsed form of the TOML file (``agents``, ``defaults``, ``trusted``).

        Example::

            Policy.from_dict({"agents": {"alice": {"send": ["calc"]}}})
        """
        unknown = set(data) - {"agents", "defaults", "trusted"}
        if unknown:
            raise ConfigurationError(
                f"{source}: unknown top-level keys {sorted(unknown)}; "
                "expected 'agents', 'defaults' and 'trusted'"
            )
        agents = data.get("agents", {})
        trusted = data.get("trusted", [])
        if not isinstance(agents, Mapping):
            raise ConfigurationError(f"{source}: 'agents' must be a table of agent tables")
        if not isinstance(trusted, list) or not all(isinstance(t, str) for t in trusted):
            raise ConfigurationError(f"{source}: 'trusted' must be a list of agent names")
        return cls(agents, defaults=data.get("defaults"), trusted=trusted, source=source)

    @classmethod
    def from_toml(cls, text: str, *, source: str = "<toml>") -> Policy:
        """Parse TOML text.

        Example::

            Policy.from_toml('[agents.alice]\\nsend = ["calc"]')
        """
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"{source} is not valid TOML: {exc}") from None
        return cls.from_dict(data, source=source)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Policy:
        """Load a TOML policy file.

        Example::

            policy = Policy.from_file("policy.toml")
        """
        try:
            with open(path, "rb") as f:
                text = f.read().decode()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(
                f"cannot read policy file {os.fspath(path)!r}: {exc}"
            ) from None
        return cls.from_toml(text, source=os.fspath(path))

    # -- deciding ------------------------------------------------------------------
    def rule_for(self, agent: str, action: str, target: str) -> str | None:
        """The rule allowing ``agent`` to ``action`` on ``target``, or ``None``.

        Example::

            assert policy.rule_for("alice", "send", "calc.add") == "agents.alice.send: 'calc'"
        """
        key = (agent, action, target)
        cache = self._cache
        if key in cache:
            return cache[key]
        if agent in self.trusted:
            found: str | None = f"trusted: {agent!r}"
        else:
            found = None
            want = _target_tokens(action, target)
            for rule, toks in self._compiled.get((agent, action), ()):
                if _covers(toks, want):
                    found = f"agents.{agent}.{action}: {rule!r}"
                    break
        if len(cache) >= _CACHE_SIZE:
            cache.pop(next(iter(cache)))
        cache[key] = found
        return found

    def allows(self, agent: str, action: str, target: str) -> bool:
        """True when the policy allows it.

        Example::

            if policy.allows("alice", "publish", "orders.created"): ...
        """
        return self.rule_for(agent, action, target) is not None

    def __call__(self, agent: str, action: str, target: str) -> None:
        """The access hook: return if allowed, raise :class:`PermissionDenied` if not.

        Example::

            Runtime(access=policy)
        """
        if self.rule_for(agent, action, target) is not None:
            return
        if action not in ACTIONS:
            rule = "unknown action"
            why = f"the policy knows only the actions {list(ACTIONS)}"
        elif agent not in self.agents:
            rule = f"agents.{agent} (absent)"
            why = f"{agent!r} has no [agents.{agent}] entry, so it may do nothing"
        else:
            rule = f"agents.{agent}.{action}"
            have = list(getattr(self.agents[agent], action))
            why = f"no pattern in [agents.{agent}] {action} = {have} covers it"
        raise PermissionDenied(
            f"policy {self.source}: {agent!r} may not {action} {target!r}: {why} "
            "(deny by default); add a rule if this should be allowed",
            agent=agent,
            action=action,
            target=target,
            rule=rule,
        )

    def check(self, agents: Iterable[Agent] = ()) -> list[str]:
        """Warnings about a policy that loaded fine but looks wrong.

        Also what the generated NATS config cannot grant or grants wider than the
        rules (consumer names, rules ending in ``*``); ``agents`` (loaded from code)
        are checked against it too.

        Example::

            for warning in policy.check(): print(warning)
        """
        from agentcomm.security.policy_nats import broker_warnings

        warnings: list[str] = []
        for name, rules in sorted(self.agents.items()):
            for rule in rules.send:
                to = rule.split(".", 1)[0]
                if to not in ("*", ">") and to not in self.agents and to not in self.trusted:
                    warnings.append(
                        f"agents.{name}.send: {rule!r} names {to!r}, which has no entry"
                    )
            if not any(getattr(rules, a) for a in ACTIONS):
                warnings.append(f"agents.{name}: no rules at all (it may only receive)")
        return warnings + broker_warnings(self, agents)

    def consumer_rule(
        self, agent: str, subscription: str, *, group: str | None = None
    ) -> str | None:
        """The entry letting ``agent`` use the consumer of ``subscription`` (or ``group``).

        ``None`` when refused. An agent whose entry lists neither ``subscriptions`` nor
        ``groups`` may use any (as before those lists existed; the broker config then
        grants it none, and :meth:`check` says so).

        Example::

            policy.consumer_rule("billing", "charge")   # "agents.billing.subscriptions: 'charge'"
        """
        if agent in self.trusted:
            return f"trusted: {agent!r}"
        rules = self.agents.get(agent)
        if rules is None:
            return None
        if not rules.subscriptions and not rules.groups:
            return f"agents.{agent} (lists no consumers)"
        if group is not None:
            return f"agents.{agent}.groups: {group!r}" if group in rules.groups else None
        if subscription in rules.subscriptions:
            return f"agents.{agent}.subscriptions: {subscription!r}"
        return None

    def check_consumer(self, agent: str, subscription: str, *, group: str | None = None) -> None:
        """Raise :class:`PermissionDenied` unless ``agent`` may use that durable consumer.

        The runtime calls it before it starts a subscription (``@agent.on``) under a
        policy; the consumer is ``<agent>__<subscription>``, or the group's name.

        Example::

            policy.check_consumer("billing", "charge", group="billing-workers")
        """
        if self.consumer_rule(agent, subscription, group=group) is not None:
            return
        field, value = ("groups", group) if group is not None else ("subscriptions", subscription)
        durable = group if group is not None else f"{agent}__{subscription}"
        have = list(getattr(self.agents[agent], field)) if agent in self.agents else []
        raise PermissionDenied(
            f"policy {self.source}: {agent!r} may not use the consumer {durable!r} of its "
            f"subscription {subscription!r}: [agents.{agent}] {field} = {have} does not list "
            f"{value!r}; add it there (and regenerate the NATS config) if this is intended",
            agent=agent,
            action="subscribe",
            target=durable,
            rule=f"agents.{agent}.{field}",
        )

    # -- the broker ------------------------------------------------------------------
    def nats_permissions(
        self,
        agent: str,
        *,
        namespace: str = "agentcomm",
        buckets: Iterable[str] = ("blackboard",),
        agents: Iterable[Agent] = (),
    ) -> dict[str, Any]:
        """The NATS publish/subscribe permissions of one agent's connection.

        Derived from the policy and from what the transport really does on the wire
        (``docs/security.md`` has the table). The broker checks, per agent: which agents
        it sends to (not which handler: that travels inside the envelope); which topics
        it publishes; which durable consumers it pulls from and acknowledges (its
        ``subscriptions`` and ``groups``, or those its ``agents`` declare in code) and
        with which topic filters it creates them; which blackboard keys it writes and
        reads (single keys, prefix reads and watches); that it reads replies only under
        its own inbox prefix (:func:`nats_inbox_prefix`). It never creates, updates or
        deletes a stream or bucket: an admin does (``agentcomm nats setup``).

        Example::

            perms = policy.nats_permissions("alice", namespace="prod")
        """
        from agentcomm.security.policy_nats import nats_permissions

        return nats_permissions(self, agent, namespace=namespace, buckets=buckets, agents=agents)

    def nats_config(
        self,
        *,
        namespace: str = "agentcomm",
        passwords: Mapping[str, str] | None = None,
        buckets: Iterable[str] = ("blackboard",),
        agents: Iterable[Agent] = (),
        admin: str | None = None,
    ) -> str:
        """A NATS server ``authorization`` block: one user per agent (and trusted name).

        Without ``passwords`` each password is the environment variable
        ``AGENTCOMM_NATS_PASSWORD_<NAME>``, which nats-server reads when it loads the
        file (so no secret is written into it). ``agents`` (loaded from code) tell the
        consumer names of their declared subscriptions; ``admin`` adds a user that may
        do everything, to create the streams and buckets (``agentcomm nats setup``).

        Example::

            Path("auth.conf").write_text(policy.nats_config(namespace="prod", admin="admin"))
            # nats-server -js -c server.conf   (server.conf: include ./auth.conf)
        """
        from agentcomm.security.policy_nats import nats_config

        return nats_config(
            self,
            namespace=namespace,
            passwords=passwords,
            buckets=buckets,
            agents=agents,
            admin=admin,
        )


def _as_rules(value: Rules | Mapping[str, Iterable[str]] | None, where: str) -> Rules:
    if value is None:
        return Rules()
    if isinstance(value, Rules):
        return value
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{where} must be a table of action = [patterns]")
    unknown = set(value) - set(_FIELDS)
    if unknown:
        raise ConfigurationError(
            f"{where}: unknown actions {sorted(unknown)}; the actions are {list(ACTIONS)} "
            f"(and the consumer lists {list(CONSUMER_FIELDS)})"
        )
    out: dict[str, tuple[str, ...]] = {}
    for action, rules in value.items():
        if isinstance(rules, str) or not isinstance(rules, Iterable):
            raise ConfigurationError(f"{where} {action} must be a list of patterns")
        out[action] = tuple(rules)
    return Rules(**out)
