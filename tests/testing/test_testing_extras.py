"""A missing test dependency skips on a developer's machine and fails under ``CI=true``."""

from __future__ import annotations

import msgspec
import pytest

from agentcomm.testing.extras import require_module


def test_an_installed_module_is_returned() -> None:
    assert require_module("msgspec") is msgspec


def test_a_missing_extra_skips_locally_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"pip install 'agentcomm\[nats\]'"):
        require_module("nats.no_such_submodule_here")
    with pytest.raises(pytest.skip.Exception, match="pip install no_such_dist"):
        require_module("no_such_dist")


@pytest.mark.parametrize("value", ["true", "TRUE"])
def test_a_missing_extra_fails_under_ci(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match=r"CI=true.*fails the run"):
        require_module("opentelemetry.no_such_submodule_here")
