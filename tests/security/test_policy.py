"""The access policy: patterns, deny by default, TOML loading, the NATS config it generates."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentcomm.core.errors import ConfigurationError, PermissionDenied
from agentcomm.security.policy import Policy, Rules
from agentcomm.testing.extras import require_module

POLICY = """
trusted = ["runtime"]

[defaults]
subscribe = ["status.>"]

[agents.planner]
send = ["researcher", "calc.add"]
publish = ["plans.*"]
read = ["research.", "plan.goal"]
write = ["plan."]
call = ["search.*"]

[agents.researcher]
subscribe = ["plans.*"]
write = ["research."]

[agents.everything]
send = ["*"]
read = [""]
"""


@pytest.fixture
def policy() -> Policy:
    return Policy.from_toml(POLICY, source="policy.toml")


@pytest.mark.parametrize(
    ("agent", "action", "target", "allowed"),
    [
        ("planner", "send", "researcher.search", True),
        ("planner", "send", "calc.add", True),
        ("planner", "send", "calc.sub", False),
        ("planner", "send", "researcher", False),  # a target always names a handler
        ("planner", "publish", "plans.created", True),
        ("planner", "publish", "plans.a.b", False),
        ("planner", "publish", "plans", False),
        ("researcher", "subscribe", "plans.*", True),
        ("researcher", "subscribe", "plans.created", True),
        ("researcher", "subscribe", "plans.>", False),  # wider than the rule
        ("researcher", "subscribe", "*.created", False),
        ("researcher", "subscribe", "status.a.b", True),  # from [defaults]
        ("researcher", "subscribe", "status.*", True),
        ("planner", "read", "research.q1.findings", True),
        ("planner", "read", "research.", True),  # a prefix read below the rule
        ("planner", "read", "research", False),
        ("planner", "read", "plan.goal", True),
        ("planner", "read", "plan.other", False),
        ("planner", "read", "", False),  # the whole board
        ("everything", "read", "", True),
        ("everything", "send", "anyone.anything", True),
        ("planner", "write", "plan.x.y", True),
        ("planner", "write", "research.x", False),
        ("planner", "call", "search.web", True),
        ("planner", "call", "shell.run", False),
        ("runtime", "write", "anything", True),  # trusted
        ("stranger", "read", "plan.goal", False),  # not in the policy
        ("planner", "delete", "x", False),  # unknown action
    ],
)
def test_decisions(policy: Policy, agent: str, action: str, target: str, allowed: bool) -> None:
    assert policy.allows(agent, action, target) is allowed
    if allowed:
        policy(agent, action, target)
    else:
        with pytest.raises(PermissionDenied):
            policy(agent, action, target)


def test_refusal_names_the_rule_and_the_file(policy: Policy) -> None:
    with pytest.raises(PermissionDenied) as info:
        policy("planner", "send", "calc.sub")
    exc = info.value
    assert (exc.agent, exc.action, exc.target, exc.rule) == (
        "planner",
        "send",
        "calc.sub",
        "agents.planner.send",
    )
    assert "policy.toml" in str(exc)
    assert "'calc.add'" in str(exc)
    with pytest.raises(PermissionDenied, match=r"no \[agents\.stranger\] entry"):
        policy("stranger", "send", "calc.add")
    assert policy.rule_for("planner", "send", "calc.add") == "agents.planner.send: 'calc.add'"


def test_same_policy_as_code() -> None:
    code = Policy(
        {"planner": Rules(send=("calc.add",)), "calc": {}},
        defaults={"subscribe": ["status.>"]},
    )
    assert code.allows("planner", "send", "calc.add")
    assert code.allows("calc", "subscribe", "status.up")
    assert not code.allows("calc", "send", "planner.x")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[agents.a]\nsend = 'calc'", "list of patterns"),
        ("[agents.a]\nsned = ['calc']", "unknown actions"),
        ("[agents.a]\npublish = ['a.>.b']", "invalid pattern"),
        ("[agents.a]\npublish = ['a..b']", "invalid pattern"),
        ("[agents.a]\npublish = ['a*']", "invalid pattern"),
        ("agent = 1", "unknown top-level"),
        ("trusted = 'runtime'", "list of agent names"),
        ("[agents", "not valid TOML"),
    ],
)
def test_bad_policies_are_configuration_errors(text: str, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        Policy.from_toml(text)


def test_from_file_and_check(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text("[agents.a]\nsend = ['ghost.x']\n[agents.b]\n")
    policy = Policy.from_file(path)
    assert policy.source == str(path)
    assert policy.check() == [
        "agents.a.send: 'ghost.x' names 'ghost', which has no entry",
        "agents.b: no rules at all (it may only receive)",
    ]
    with pytest.raises(ConfigurationError, match="cannot read"):
        Policy.from_file(tmp_path / "missing.toml")


def test_decision_cache_is_bounded(policy: Policy) -> None:
    for i in range(10_000):
        policy.allows("planner", "publish", f"plans.t{i}")
    assert len(policy._cache) <= 4096


def test_nats_permissions_follow_the_subject_layout(policy: Policy) -> None:
    perms = policy.nats_permissions("planner", namespace="prod")
    pub = perms["publish"]["allow"]
    assert "prod.a.researcher.*" in pub
    assert "prod.a.calc.*" in pub
    assert "prod.s.EVENTS.*.plans.*" in pub
    assert "prod.e.plans.*" in pub  # core (durable=False) events, per the publish rules
    assert "$KV.prod_blackboard.plan.>" in pub
    assert perms["subscribe"]["allow"] == [
        "prod.a.planner.*",
        "prod.c.planner",  # cancel and credit frames (docs/streams-and-tasks.md)
        "_INBOX.prod.planner.>",
        "prod.e.status.>",  # core events, per the subscribe rules
    ]
    assert "prod.c.researcher" in pub  # it may cancel what it asked of researcher
    # JetStream: only the streams and API calls this agent's rules need
    assert "$JS.API.STREAM.INFO.prod_EVENTS" in pub  # it publishes: checks the stream
    # Streams and buckets are the admin's (agentcomm nats setup): never created,
    # updated or deleted by an agent (issue 18: an agent shrank the event stream).
    assert not any(
        p.startswith(f"$JS.API.STREAM.{op}.") for p in pub for op in ("CREATE", "UPDATE", "DELETE")
    )
    # subscribe rules (from [defaults]) but no consumer names: no consumer at all
    assert not any("CONSUMER" in p and "prod_EVENTS" in p for p in pub)
    assert not any(p.startswith("$JS.ACK.prod_EVENTS") for p in pub)
    # durable tasks: it may queue work for the agents it sends to, and no one else
    assert "prod.s.TASKS.tasks.work.researcher" in pub
    assert not any(p.startswith("prod.s.TASKS.") and p.endswith(".bob") for p in pub)
    # reads: single keys and consumers whose create subject carries the rule as filter;
    # no batched direct get (its body, with the keys, is out of the broker's sight)
    kv, kvs = "KV_prod_blackboard", "$KV.prod_blackboard"
    assert f"$JS.API.DIRECT.GET.{kv}" not in pub
    assert f"$JS.API.DIRECT.GET.{kv}.{kvs}.research.>" in pub
    assert f"$JS.API.DIRECT.GET.{kv}.{kvs}.plan.goal" in pub
    assert f"$JS.API.CONSUMER.CREATE.{kv}.*.{kvs}.research.>" in pub
    assert not any(p.startswith("$JS.API.DIRECT.GET.prod_EVENTS") for p in pub)
    writer = policy.nats_permissions("researcher", namespace="prod")["publish"]["allow"]
    assert "$JS.API.DIRECT.GET.KV_prod_blackboard" not in writer  # writes only: no scans
    assert (
        "$JS.API.DIRECT.GET.KV_prod_blackboard.$KV.prod_blackboard.research.>" in writer
    )  # but it reads the keys it writes (compare-and-set)
    assert perms["allow_responses"] is True
    assert policy.nats_permissions("runtime")["publish"]["allow"] == [">"]
    assert (
        "prod.a.*.*" in policy.nats_permissions("everything", namespace="prod")["publish"]["allow"]
    )


def test_nats_config_has_one_user_per_agent_and_no_secrets(policy: Policy) -> None:
    text = policy.nats_config(namespace="prod")
    for name in ("planner", "researcher", "everything", "runtime"):
        assert f'user: "{name}"' in text
        assert f"password: $AGENTCOMM_NATS_PASSWORD_{name.upper()}," in text
    with_pw = policy.nats_config(passwords={n: "s3cret" for n in policy.agents} | {"runtime": "r"})
    assert 'password: "s3cret"' in with_pw
    with pytest.raises(ConfigurationError, match="no password"):
        policy.nats_config(passwords={})


async def test_policy_refuses_an_unlisted_tool_call_through_mcp() -> None:
    mcp = require_module("mcp")
    import mcp_types as mt

    from agentcomm import Agent, Runtime

    crm = Agent("crm")

    @crm.handler
    async def lookup(identifier: str) -> str:
        "Look a customer up."
        return f"customer {identifier}"

    @crm.handler
    async def delete_all() -> str:
        "Delete every customer."
        raise AssertionError("the policy must stop this call")

    policy = Policy.from_toml(
        '[agents.mcp-gateway]\ncall = ["crm.lookup"]\nsend = ["crm.lookup"]\n[agents.crm]\n',
        source="tools.toml",
    )
    async with Runtime(agents=[crm], access=policy) as rt:
        server = await rt.tools.expose("crm")
        async with mcp.Client(server.server) as client:
            ok = await client.call_tool("lookup", {"identifier": "c1"})
            refused = await client.call_tool("delete_all", {})
    text = "".join(b.text for b in refused.content if isinstance(b, mt.TextContent))
    assert not ok.is_error
    assert refused.is_error
    assert "'mcp-gateway' may not call 'crm.delete_all'" in text
    assert "tools.toml" in text


def test_consumer_names_bind_durables_to_the_agent() -> None:
    policy = Policy.from_toml(
        """
        [agents.billing]
        subscribe = ["orders.>"]
        subscriptions = ["charge"]
        groups = ["billing-workers"]
        [agents.legacy]
        subscribe = ["orders.>"]
        """,
        source="p.toml",
    )
    assert policy.consumer_rule("billing", "charge") == "agents.billing.subscriptions: 'charge'"
    policy.check_consumer("billing", "x", group="billing-workers")
    with pytest.raises(PermissionDenied) as info:
        policy.check_consumer("billing", "refund")
    assert info.value.rule == "agents.billing.subscriptions"
    assert "'billing__refund'" in str(info.value)
    assert "add it there" in str(info.value)
    with pytest.raises(PermissionDenied, match="groups"):
        policy.check_consumer("billing", "charge", group="other")
    # An entry that lists no consumers keeps the old behaviour in the runtime ...
    policy.check_consumer("legacy", "anything")
    # ... but gets no consumer at the broker, and check() says what to add.
    legacy = policy.nats_permissions("legacy")["publish"]["allow"]
    assert not any("CONSUMER" in p and "_EVENTS" in p for p in legacy)
    assert any("agents.legacy" in w and "no consumer names" in w for w in policy.check())
    pub = policy.nats_permissions("billing", namespace="prod")["publish"]["allow"]
    for name in ("billing__charge", "billing__charge__replay", "billing-workers"):
        assert f"$JS.API.CONSUMER.MSG.NEXT.prod_EVENTS.{name}" in pub
        assert f"$JS.ACK.prod_EVENTS.{name}.>" in pub
        assert f"$JS.API.CONSUMER.CREATE.prod_EVENTS.{name}.prod.s.EVENTS.*.orders.>" in pub
    assert "prod.s.DLQ.dlq.billing__charge" in pub
    assert not any(p.endswith("prod_EVENTS.*") or "prod_EVENTS.>" in p for p in pub)
    with pytest.raises(ConfigurationError, match="invalid name"):
        Policy.from_toml("[agents.a]\nsubscriptions = ['a.b']")
    with pytest.raises(ConfigurationError, match="admin"):
        policy.nats_config(admin="billing")
