"""The NATS server authorization generated from a :class:`~agentcomm.policy.Policy`.

``Policy.nats_permissions`` / ``Policy.nats_config`` (and ``agentcomm policy
nats-config``) are implemented here. The permissions follow what the NATS transport
really sends (``docs/security.md`` has the table); the points that need care:

* A consumer name is one subject token and NATS wildcards match whole tokens, so
  the durable consumers an agent may pull from and acknowledge are *enumerated*:
  ``<agent>__<subscription>`` for the policy's ``subscriptions`` (or the agents'
  declared ``@agent.on`` subscriptions, from code), the ``groups`` it joins, and
  ``<durable>__replay`` for replays.
* Consumers are created with the subject form that carries the filter
  (``$JS.API.CONSUMER.CREATE.<stream>.<name>.<filter>``; the server refuses a body
  whose filter differs), so a name is bound to the topic patterns it may filter.
* Streams and buckets are created by an admin user (``agentcomm nats setup``); agents
  get ``STREAM.INFO`` only.
* Core (``durable=False``) events are plain subjects ``<ns>.e.<topic>``: an agent may
  publish there per its ``publish`` rules and subscribe (also in a queue group) per
  its ``subscribe`` rules; no consumer names are involved.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from agentcomm.core.errors import ConfigurationError

if TYPE_CHECKING:
    from agentcomm.host.agent import Agent

from agentcomm.pubsub.declare import REPLAY_SUFFIX, subscriptions_of
from agentcomm.pubsub.partitions import PARTITIONS, partition_durable
from agentcomm.security.rules import Rules, _rule_tokens

__all__ = ["broker_warnings", "consumer_grants", "nats_config", "nats_permissions"]

API = "$JS.API"


class Policy(Protocol):
    """What the broker config reads of a policy (:class:`agentcomm.Policy`)."""

    source: str
    trusted: frozenset[str]
    agents: dict[str, Rules]

    def allows(self, agent: str, action: str, target: str) -> bool: ...

    def consumer_rule(
        self, agent: str, subscription: str, *, group: str | None = None
    ) -> str | None: ...


def _tokens(action: str, rule: str) -> tuple[str, ...]:
    return _rule_tokens(action, rule, action)


def consumer_grants(
    policy: Policy, agent: str, agents: Iterable[Agent] = ()
) -> dict[str, tuple[str, ...]]:
    """The durable consumers ``agent`` may use at the broker, each with its topic filters.

    From the policy: ``<agent>__<name>`` per ``subscriptions`` entry and each of its
    ``groups``, filtered by any of its ``subscribe`` rules. From code (``agents``, the
    declared ``@agent.on`` subscriptions of the agent of that name): the durable with
    exactly its declared pattern, if the runtime would start it (covered by a rule and,
    when the policy lists consumers for the agent, listed).

    Example::

        consumer_grants(policy, "billing", [billing])   # {"billing__charge": ("orders.*",)}
    """
    rules = policy.agents[agent]
    grants: dict[str, tuple[str, ...]] = {}
    for name in rules.subscriptions:
        grants[f"{agent}__{name}"] = rules.subscribe
    for group in rules.groups:  # a group may be ordered: its partitions' consumers too
        for durable in (group, *(partition_durable(group, k) for k in range(PARTITIONS))):
            grants[durable] = rules.subscribe
    listed = bool(rules.subscriptions or rules.groups)
    for a in agents:
        if a.name != agent:
            continue
        for spec in subscriptions_of(a):
            durable = spec.durable(agent)
            if spec.core:  # durable=False: no consumer (a plain subscription)
                continue
            if not policy.allows(agent, "subscribe", spec.pattern):
                continue  # the runtime refuses it (broker_warnings says so)
            if listed and durable not in grants:
                continue
            for name, _ in spec.durables(agent):  # code knows the exact filter: only that
                grants[name] = (spec.pattern,)
    return {name: pats for name, pats in grants.items() if pats}


def broker_warnings(policy: Policy, agents: Iterable[Agent] = ()) -> list[str]:
    """What the generated broker config cannot grant, or grants wider than the policy.

    Example::

        for w in broker_warnings(policy, [billing]): print(w, file=sys.stderr)
    """
    agents = list(agents)
    out: list[str] = []
    for name, rules in sorted(policy.agents.items()):
        if name in policy.trusted:
            continue
        for a in agents:
            if a.name != name:
                continue
            for spec in subscriptions_of(a):
                what = f"agents.{name}: subscription {spec.name!r} ({spec.pattern!r})"
                if not policy.allows(name, "subscribe", spec.pattern):
                    out.append(f"{what} is not covered by its subscribe rules; it is refused")
                elif (
                    not spec.core
                    and (rules.subscriptions or rules.groups)
                    and policy.consumer_rule(name, spec.name, group=spec.group) is None
                ):
                    field, value = (
                        ("groups", spec.group) if spec.group else ("subscriptions", spec.name)
                    )
                    out.append(f"{what} is refused: add {value!r} to [agents.{name}] {field}")
        if rules.subscribe and not consumer_grants(policy, name, agents):
            out.append(
                f"agents.{name}: it has subscribe rules {list(rules.subscribe)} but no consumer "
                "names, so the broker config lets it use no consumer: add "
                f"subscriptions = [...] (the names of its @agent.on handlers) or groups = [...] "
                f"to [agents.{name}], or pass its agents with --agents MODULE:ATTR"
            )
        for action in ("subscribe", "read"):
            for rule in getattr(rules, action):
                toks = _tokens(action, rule)
                if toks[-1] == "*":
                    wide = ".".join((*toks[:-1], ">"))
                    out.append(
                        f"agents.{name}.{action}: {rule!r} ends in '*': at the broker it acts "
                        f"as {wide!r} for a client that bypasses the library (NATS permissions "
                        "match a literal '>' token with '*'); the runtime still holds it to "
                        "the rule. End it in '>' or list literal names if that matters"
                    )
    return out


def nats_permissions(
    policy: Policy,
    agent: str,
    *,
    namespace: str = "agentcomm",
    buckets: Iterable[str] = ("blackboard",),
    agents: Iterable[Agent] = (),
) -> dict[str, Any]:
    """The NATS publish/subscribe permissions of one agent's connection (see the module).

    Example::

        perms = nats_permissions(policy, "alice", namespace="prod")
    """
    from agentcomm.core.names import nats_inbox_prefix

    if agent in policy.trusted:
        return {"publish": {"allow": [">"]}, "subscribe": {"allow": [">"]}}
    rules = policy.agents.get(agent)
    if rules is None:
        raise ConfigurationError(f"{agent!r} has no entry in policy {policy.source}")
    events, dlq = f"{namespace}_EVENTS", f"{namespace}_DLQ"
    pub: list[str] = []
    for rule in rules.send:
        to = _tokens("send", rule)[0]
        pub.append(f"{namespace}.a.{'*' if to == '>' else to}.*")
        pub.append(f"{namespace}.c.{'*' if to == '>' else to}")  # cancel and credit
    if rules.publish or rules.subscribe:  # pub/sub checks its two streams exist
        pub += [f"{API}.STREAM.INFO.{events}", f"{API}.STREAM.INFO.{dlq}"]
    pub += [f"{namespace}.s.EVENTS.*.{p}" for p in rules.publish]  # <partition>.<topic>
    pub += [f"{namespace}.e.{p}" for p in rules.publish]  # core (durable=False) events
    grants = consumer_grants(policy, agent, agents) if rules.subscribe else {}
    for durable, patterns in sorted(grants.items()):
        for name in (durable, durable + REPLAY_SUFFIX):
            pub += [f"{API}.CONSUMER.{op}.{events}.{name}" for op in ("INFO", "MSG.NEXT", "DELETE")]
            pub.append(f"$JS.ACK.{events}.{name}.>")  # ack, nak, term, in progress
            pub += [
                f"{API}.CONSUMER.CREATE.{events}.{name}.{namespace}.s.EVENTS.*.{p}"
                for p in patterns
            ]
        pub.append(f"{namespace}.s.DLQ.dlq.{durable}")  # its own dead letters
    if grants:  # listing, showing and redriving dead letters (request bodies: all of them)
        pub += [f"{API}.DIRECT.GET.{dlq}", f"{API}.STREAM.MSG.DELETE.{dlq}"]
    for bucket in buckets:
        kv_stream, kv_subject = f"KV_{namespace}_{bucket}", f"$KV.{namespace}_{bucket}"
        if rules.read or rules.write:
            pub.append(f"{API}.STREAM.INFO.{kv_stream}")
        for rule in rules.write:
            pattern = ".".join(_tokens("write", rule))
            pub.append(f"{kv_subject}.{pattern}")
            # a write reads the key's current revision first (single-key direct get)
            pub.append(f"{API}.DIRECT.GET.{kv_stream}.{kv_subject}.{pattern}")
        for rule in rules.read:
            pattern = ".".join(_tokens("read", rule))
            pub.append(f"{API}.DIRECT.GET.{kv_stream}.{kv_subject}.{pattern}")  # one key
            # prefix reads, history and watches: a consumer whose filter is in the subject
            pub.append(f"{API}.CONSUMER.CREATE.{kv_stream}.*.{kv_subject}.{pattern}")
        if rules.read:
            # Those consumers are ephemeral, with random names nobody else can list.
            pub += [f"{API}.CONSUMER.{op}.{kv_stream}.*" for op in ("MSG.NEXT", "DELETE")]
    pub += _task_grants(namespace, agent, rules.send, agents)
    # Presence (every runtime on NATS announces its agents): its own records only.
    presence = f"$KV.{namespace}_presence"
    pub.append(f"{API}.STREAM.INFO.KV_{namespace}_presence")
    pub += [f"{presence}.agents.{agent}.>", f"{presence}.runtimes.>"]
    # Streams and progress: frames go to the caller's channel, under its inbox; the
    # channel takes frames only from the agent it called (docs/streams-and-tasks.md).
    pub.append(f"_INBOX.{namespace}.*.ch.>")
    own = [f"{namespace}.a.{agent}.*", f"{namespace}.c.{agent}"]
    sub = [*own, nats_inbox_prefix(agent, namespace=namespace) + ".>"]
    sub += [f"{namespace}.e.{p}" for p in rules.subscribe]  # core events, queue groups too
    return {
        "publish": {"allow": sorted(set(pub))},
        "subscribe": {"allow": sub},
        "allow_responses": True,
    }


def _task_grants(
    namespace: str, agent: str, send: Iterable[str], agents: Iterable[Agent]
) -> list[str]:
    """Durable tasks (docs/streams-and-tasks.md): what a caller and a worker publish.

    A caller queues work only for the agents it may send to; a worker pulls only its
    own work consumer. Records (keyed by random task ids) and the update log cannot be
    scoped per task at the broker: every agent taking part in tasks reads and writes
    them, and the runtimes' policy check (the ``send`` rule) decides who may cancel or
    answer. Workers are the agents that declare task handlers (all of them when no
    ``agents`` are given: the config cannot tell).
    """
    from agentcomm.tasks.declare import task_specs
    from agentcomm.tasks.model import (
        BUCKET,
        UPDATE_STREAM,
        WORK_STREAM,
        update_subject,
        work_subject,
    )

    declared = [a for a in agents if a.name == agent]
    worker = not declared if not tuple(agents) else any(task_specs(a) for a in declared)
    send = tuple(send)
    if not (send or worker):
        return []
    work, updates = f"{namespace}_{WORK_STREAM}", f"{namespace}_{UPDATE_STREAM}"
    kv_stream, kv_subject = f"KV_{namespace}_{BUCKET}", f"$KV.{namespace}_{BUCKET}"
    prefix = f"{namespace}.s."
    pub = [f"{API}.STREAM.INFO.{s}" for s in (work, updates, kv_stream)]
    pub += [f"{kv_subject}.*", f"{API}.DIRECT.GET.{kv_stream}.{kv_subject}.*"]
    pub += [f"{API}.CONSUMER.CREATE.{kv_stream}.*.{kv_subject}.>"]  # watch, list
    pub += [f"{API}.CONSUMER.{op}.{kv_stream}.*" for op in ("MSG.NEXT", "DELETE")]
    follow = f"{prefix}{UPDATE_STREAM}.{update_subject('*')}"
    pub.append(follow)  # state changes, progress, artifacts, the end
    pub += [f"{API}.CONSUMER.CREATE.{updates}.*.{follow}"]
    pub += [f"{API}.CONSUMER.{op}.{updates}.*" for op in ("INFO", "MSG.NEXT", "DELETE")]
    pub.append(f"$JS.ACK.{updates}.>")
    for rule in send:
        to = _tokens("send", rule)[0]
        pub.append(f"{prefix}{WORK_STREAM}.{work_subject('*' if to == '>' else to)}")
    if worker:
        durable, own = f"tasks__{agent}", f"{prefix}{WORK_STREAM}.{work_subject(agent)}"
        pub.append(own)  # a re-run re-queues its own work
        pub += [f"{API}.CONSUMER.{op}.{work}.{durable}" for op in ("INFO", "MSG.NEXT", "DELETE")]
        pub += [f"{API}.CONSUMER.CREATE.{work}.{durable}.{own}", f"$JS.ACK.{work}.{durable}.>"]
    return pub


def nats_config(
    policy: Policy,
    *,
    namespace: str = "agentcomm",
    passwords: Mapping[str, str] | None = None,
    buckets: Iterable[str] = ("blackboard",),
    agents: Iterable[Agent] = (),
    admin: str | None = None,
) -> str:
    """A NATS server ``authorization`` block (see :meth:`Policy.nats_config`).

    Example::

        text = nats_config(policy, namespace="prod", admin="admin")
    """
    buckets, agents = tuple(buckets), tuple(agents)
    if admin is not None and admin in policy.agents:
        raise ConfigurationError(
            f"the admin user {admin!r} is also an agent of policy {policy.source}; "
            "give the admin another name"
        )
    names = set(policy.agents) | policy.trusted | ({admin} if admin else set())
    lines = [
        f"# generated by agentcomm from the policy {policy.source}; namespace {namespace!r}",
        "# streams and buckets are created by a trusted or admin user: agentcomm nats setup",
        "authorization {",
        "  users = [",
    ]
    for name in sorted(names):
        if passwords is not None:
            if name not in passwords:
                raise ConfigurationError(f"no password given for {name!r}")
            pw = json.dumps(passwords[name])
        else:
            pw = "$AGENTCOMM_NATS_PASSWORD_" + name.upper().replace("-", "_")
        if name == admin:
            perms: dict[str, Any] = {"publish": {"allow": [">"]}, "subscribe": {"allow": [">"]}}
        else:
            perms = nats_permissions(
                policy, name, namespace=namespace, buckets=buckets, agents=agents
            )
        lines.append(f"    {{user: {json.dumps(name)}, password: {pw},")
        lines.append(f"     permissions: {json.dumps(perms)}}}")
    lines += ["  ]", "}", ""]
    return "\n".join(lines)
