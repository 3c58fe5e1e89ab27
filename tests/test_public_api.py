"""The public surface is deliberate: a test fails when it drifts."""

from __future__ import annotations

import inspect
import subprocess
import sys

import agentcomm

#: The public surface, pinned: adding or removing a name is an API decision.
PUBLIC_API = (
    "Agent",
    "AgentCommError",
    "AgentStatistics",
    "Alert",
    "Audio",
    "AuthenticationError",
    "Blackboard",
    "BlackboardError",
    "BoardStatistics",
    "Change",
    "ClientUnsupported",
    "ConfigurationError",
    "Context",
    "DeadLetter",
    "DecodeError",
    "DeliveryError",
    "Entry",
    "Envelope",
    "ErrorInfo",
    "Identity",
    "Image",
    "InputDeclined",
    "InputTimeout",
    "InvalidTransition",
    "KeyExists",
    "Keyring",
    "LimitExceeded",
    "Limits",
    "MailboxFull",
    "Message",
    "MessageLog",
    "NoResponders",
    "PermissionDenied",
    "Policy",
    "Progress",
    "PubSub",
    "PubSubStatistics",
    "Question",
    "RateLimit",
    "RateLimited",
    "Reject",
    "RemoteError",
    "ReplayDetected",
    "RequestTimeout",
    "Resource",
    "Retention",
    "Retry",
    "RetryPolicy",
    "RevisionConflict",
    "Root",
    "Rules",
    "Runtime",
    "RuntimeStatistics",
    "Security",
    "Stream",
    "SubscriptionStatistics",
    "TaskCancelled",
    "TaskError",
    "TaskFinished",
    "TaskHandle",
    "TaskLost",
    "TaskNotWaiting",
    "TaskRetention",
    "TaskStatistics",
    "TaskStatus",
    "TaskUpdate",
    "ToolError",
    "ToolInfo",
    "Tools",
    "TopicStatistics",
    "Transport",
    "TransportClosed",
    "TransportError",
    "UnknownHandler",
    "UnknownTask",
    "UnsupportedVersion",
    "ValidationError",
    "Watch",
    "__version__",
    "decode_envelope",
    "encode_envelope",
    "new_id",
    "quote_untrusted",
)


def test_all_matches_the_pinned_snapshot() -> None:
    added = sorted(set(agentcomm.__all__) - set(PUBLIC_API))
    removed = sorted(set(PUBLIC_API) - set(agentcomm.__all__))
    assert (added, removed) == ([], []), (
        f"agentcomm.__all__ changed (added {added}, removed {removed}): if this is a "
        "deliberate API change, update PUBLIC_API in tests/test_public_api.py and record "
        "it in CHANGELOG.md under Unreleased"
    )
    assert list(agentcomm.__all__) == list(PUBLIC_API), "same names, new order: update PUBLIC_API"


def test_all_names_exist_and_are_documented_with_an_example() -> None:
    for name in agentcomm.__all__:
        obj = getattr(agentcomm, name)
        if name.startswith("__") or isinstance(obj, str):
            continue
        doc = inspect.getdoc(obj)
        assert doc, f"{name} has no docstring"
        assert "Example" in doc or "example" in doc, f"{name}'s docstring has no example"


def test_all_is_sorted_and_unique() -> None:
    names = list(agentcomm.__all__)
    assert len(names) == len(set(names))
    assert names == sorted(names, key=lambda n: (not n[0].isupper() and n[0] != "_", n))


def test_public_modules_define_their_own_all() -> None:
    for name in agentcomm.__all__:
        obj = getattr(agentcomm, name)
        module = getattr(obj, "__module__", "")
        if module.startswith("agentcomm."):
            mod = sys.modules[module]
            assert name in getattr(mod, "__all__", ()), f"{module} does not export {name}"


def test_importing_agentcomm_loads_no_optional_dependency() -> None:
    code = (
        "import sys, agentcomm, agentcomm.transports;"
        "opt = ('nats', 'mcp', 'pydantic', 'opentelemetry', 'rich', 'prometheus_client');"
        "bad = [m for m in opt if m in sys.modules];"
        "print(','.join(bad))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == ""
