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
    write = ["research."]
    call = ["search.*"]                 # MCP tools: server.tool or agent.handler

Then ``Runtime(access=Policy.from_file("policy.toml"))``.

**Patterns** are NATS subject patterns: tokens separated by dots, ``*`` matches one
token, ``>`` the rest. For ``send`` and ``call`` a bare name means every handler of it
(``"calc"`` is ``"calc.*"``). For ``read`` and ``write`` a rule ending in a dot is a
prefix (``"research."`` is ``"research.>"``) and ``""`` is the whole board. A
``subscribe`` (or a prefix read) is allowed only when one rule covers *every* subject
the requested pattern can match: ``orders.>`` covers ``orders.*``, not the reverse.

:meth:`Policy.nats_config` turns the same policy into a NATS server authorization
block (``agentcomm policy nats-config policy.toml``), so the broker refuses a process
that bypasses the library; see ``docs/security.md`` for what the broker can check.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from agentcomm.core.errors import ConfigurationError, PermissionDenied
from agentcomm.core.names import nats_inbox_prefix

__all__ = ["ACTIONS", "Policy", "Rules", "nats_inbox_prefix"]

#: The actions a policy governs, as passed to the runtime's access hook.
ACTIONS = ("send", "publish", "subscribe", "read", "write", "call")

_CACHE_SIZE = 4096


class Rules(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What one agent may do: a tuple of patterns per action (empty: nothing).

    Example::

        Rules(send=("calc",), publish=("orders.*",), write=("research.",))
    """

    send: tuple[str, ...] = ()
    publish: tuple[str, ...] = ()
    subscribe: tuple[str, ...] = ()
    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()
    call: tuple[str, ...] = ()

    def merged(self, other: Rules) -> Rules:
        """These rules plus ``other``'s (the ``[defaults]`` table is merged this way).

        Example::

            everyone.merged(Rules(send=("calc",)))
        """
        return Rules(**{a: getattr(self, a) + getattr(other, a) for a in ACTIONS})


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

    def check(self) -> list[str]:
        """Warnings about a policy that loaded fine but looks wrong (sorted).

        Example::

            for warning in policy.check(): print(warning)
        """
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
        return warnings

    # -- the broker ------------------------------------------------------------------
    def nats_permissions(
        self, agent: str, *, namespace: str = "agentcomm", buckets: Iterable[str] = ("blackboard",)
    ) -> dict[str, Any]:
        """The NATS publish/subscribe permissions of one agent's connection.

        Derived from the policy and from what the transport really does on the wire
        (``docs/security.md`` has the table). The broker checks, per agent: which agents
        it sends to (not which handler: that travels inside the envelope); which topics
        it publishes; which blackboard keys it writes; that it reads replies only under
        its own inbox prefix (:func:`nats_inbox_prefix`); whether it may use pub/sub
        streams and subscribe at all; whether it may read the blackboard at all (an
        agent that only writes gets single-key reads of its own keys). Which topics a
        subscriber's consumer filters and which keys a batched read returns are in the
        JetStream request body, out of the broker's sight: the runtime checks those.

        Example::

            perms = policy.nats_permissions("alice", namespace="prod")
        """
        if agent in self.trusted:
            return {"publish": {"allow": [">"]}, "subscribe": {"allow": [">"]}}
        rules = self.agents.get(agent)
        if rules is None:
            raise ConfigurationError(f"{agent!r} has no entry in policy {self.source}")
        api = "$JS.API"
        pub: list[str] = []
        for rule in rules.send:
            to = _rule_tokens("send", rule, "send")[0]
            pub.append(f"{namespace}.a.{'*' if to == '>' else to}.*")
        if rules.publish or rules.subscribe:  # pub/sub creates or updates its two streams
            for stream in (f"{namespace}_EVENTS", f"{namespace}_DLQ"):
                pub += [f"{api}.STREAM.{op}.{stream}" for op in ("INFO", "CREATE", "UPDATE")]
        pub += [f"{namespace}.s.EVENTS.{p}" for p in rules.publish]
        if rules.subscribe:
            events, dlq = f"{namespace}_EVENTS", f"{namespace}_DLQ"
            pub += [
                f"{api}.CONSUMER.{op}.{events}.*"
                for op in ("DURABLE.CREATE", "INFO", "MSG.NEXT", "DELETE")
            ]
            # the named form (``CREATE.<stream>.<name>[.<filter>]``) other clients use
            pub.append(f"{api}.CONSUMER.CREATE.{events}.>")
            pub += [f"$JS.ACK.{events}.>", f"{namespace}.s.DLQ.>"]  # acks, dead letters
            # listing, showing and redriving dead letters
            pub += [f"{api}.DIRECT.GET.{dlq}", f"{api}.STREAM.MSG.DELETE.{dlq}"]
        for bucket in buckets:
            kv_stream, kv_subject = f"KV_{namespace}_{bucket}", f"$KV.{namespace}_{bucket}"
            if rules.read or rules.write:
                pub += [f"{api}.STREAM.INFO.{kv_stream}", f"{api}.STREAM.CREATE.{kv_stream}"]
            for rule in rules.write:
                pattern = ".".join(_rule_tokens("write", rule, "write"))
                pub.append(f"{kv_subject}.{pattern}")
                # a write reads the key's current revision first (single-key direct get)
                pub.append(f"{api}.DIRECT.GET.{kv_stream}.{kv_subject}.{pattern}")
            if rules.read:
                # Prefix reads, history and watches go through request bodies (batched
                # direct gets, consumers) the broker cannot see into: the whole bucket.
                pub += [f"{api}.DIRECT.GET.{kv_stream}", f"{api}.DIRECT.GET.{kv_stream}.>"]
                pub += [
                    f"{api}.CONSUMER.CREATE.{kv_stream}",
                    f"{api}.CONSUMER.CREATE.{kv_stream}.>",
                ]
                pub += [f"{api}.CONSUMER.{op}.{kv_stream}.*" for op in ("MSG.NEXT", "DELETE")]
        # Presence (every runtime on NATS announces its agents): its own records only.
        presence_stream, presence = f"KV_{namespace}_presence", f"$KV.{namespace}_presence"
        pub += [f"{api}.STREAM.INFO.{presence_stream}", f"{api}.STREAM.CREATE.{presence_stream}"]
        pub += [f"{presence}.agents.{agent}.>", f"{presence}.runtimes.>"]
        sub = [f"{namespace}.a.{agent}.*", nats_inbox_prefix(agent, namespace=namespace) + ".>"]
        return {
            "publish": {"allow": sorted(set(pub))},
            "subscribe": {"allow": sub},
            "allow_responses": True,
        }

    def nats_config(
        self,
        *,
        namespace: str = "agentcomm",
        passwords: Mapping[str, str] | None = None,
        buckets: Iterable[str] = ("blackboard",),
    ) -> str:
        """A NATS server ``authorization`` block: one user per agent (and trusted name).

        Without ``passwords`` each password is the environment variable
        ``AGENTCOMM_NATS_PASSWORD_<NAME>``, which nats-server reads when it loads the
        file (so no secret is written into it).

        Example::

            Path("auth.conf").write_text(policy.nats_config(namespace="prod"))
            # nats-server -js -c server.conf   (server.conf: include ./auth.conf)
        """
        buckets = tuple(buckets)
        lines = [
            f"# generated by agentcomm from the policy {self.source}; namespace {namespace!r}",
            "authorization {",
            "  users = [",
        ]
        for name in sorted(set(self.agents) | self.trusted):
            if passwords is not None:
                if name not in passwords:
                    raise ConfigurationError(f"no password given for {name!r}")
                pw = json.dumps(passwords[name])
            else:
                pw = "$AGENTCOMM_NATS_PASSWORD_" + name.upper().replace("-", "_")
            perms = self.nats_permissions(name, namespace=namespace, buckets=buckets)
            lines.append(f"    {{user: {json.dumps(name)}, password: {pw},")
            lines.append(f"     permissions: {json.dumps(perms)}}}")
        lines += ["  ]", "}", ""]
        return "\n".join(lines)


def _as_rules(value: Rules | Mapping[str, Iterable[str]] | None, where: str) -> Rules:
    if value is None:
        return Rules()
    if isinstance(value, Rules):
        return value
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{where} must be a table of action = [patterns]")
    unknown = set(value) - set(ACTIONS)
    if unknown:
        raise ConfigurationError(
            f"{where}: unknown actions {sorted(unknown)}; the actions are {list(ACTIONS)}"
        )
    out: dict[str, tuple[str, ...]] = {}
    for action, rules in value.items():
        if isinstance(rules, str) or not isinstance(rules, Iterable):
            raise ConfigurationError(f"{where} {action} must be a list of patterns")
        out[action] = tuple(rules)
    return Rules(**out)
