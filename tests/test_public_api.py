"""The public surface is deliberate: a test fails when it drifts."""

from __future__ import annotations

import inspect
import subprocess
import sys

import agentcomm


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
        "opt = ('nats', 'mcp', 'pydantic', 'opentelemetry', 'rich');"
        "bad = [m for m in opt if m in sys.modules];"
        "print(','.join(bad))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == ""
