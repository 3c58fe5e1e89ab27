"""The transport contract itself: every method abstract, so a forgetful engine cannot exist."""

from __future__ import annotations

import inspect

import pytest

from agentcomm.transports.base import Transport
from agentcomm.transports.channels import Channels
from agentcomm.transports.kv import KVStore
from agentcomm.transports.log import EventLog
from agentcomm.transports.streams import LogConsumer, LogMessage

# The only concrete members: the hot-path shortcut with a documented fallback.
_DEFAULTED = {"bind_nowait"}


def _public_methods(cls: type) -> set[str]:
    return {
        name
        for name, member in vars(cls).items()
        if inspect.isfunction(member) and not name.startswith("_")
    }


@pytest.mark.parametrize("part", [Transport, KVStore, EventLog, Channels, LogConsumer, LogMessage])
def test_every_contract_method_is_abstract(part: type) -> None:
    methods = _public_methods(part) - _DEFAULTED
    assert methods, f"{part.__name__} declares no methods"
    assert methods <= part.__abstractmethods__, methods - part.__abstractmethods__


def _engine(leave_out: str | None) -> type:
    async def stub(self: object, *args: object, **kwargs: object) -> None:
        raise AssertionError("never called")

    body = {name: stub for name in Transport.__abstractmethods__ if name != leave_out}
    return type("Engine", (Transport,), body)


def test_an_engine_missing_one_method_cannot_be_created() -> None:
    every = Transport.__abstractmethods__
    assert {"kv_get", "append_checked", "flush", "unbind", "signal", "open_consumer"} <= every
    _engine(None)()  # with every method: created
    for missing in sorted(every):
        with pytest.raises(TypeError, match=missing):
            _engine(missing)()


def test_the_watcher_and_channel_handles_are_abstract_too() -> None:
    assert {"__anext__", "aclose"} <= KVStore.Watcher.__abstractmethods__
    from agentcomm.transports.channels import Channel

    assert {"close"} <= Channel.__abstractmethods__
