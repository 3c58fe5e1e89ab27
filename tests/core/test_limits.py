"""Limits: JSON depth without recursion, each limit named in its refusal."""

from __future__ import annotations

import pytest

from agentcomm.core.envelope import Envelope, encode_payload, new_id
from agentcomm.core.errors import ConfigurationError, LimitExceeded, ValidationError
from agentcomm.core.limits import Limits, json_depth


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        (b"1", 0),
        (b'"[[[["', 0),
        (b"[]", 1),
        (b'{"a": [1, {"b": "[[["}]}', 3),
        (b'{"a": "\\"[[", "b": [[]]}', 3),
        (b"[[[[[[[[[[]]]]]]]]]]", 10),
        # unbalanced: a decoder recurses that deep before it finds the truncation
        (b"[[[", 3),
    ],
)
def test_json_depth(text: bytes, depth: int) -> None:
    assert json_depth(text) == depth


def test_json_depth_stops_early_and_survives_huge_nesting() -> None:
    deep = b"[" * 200_000 + b"]" * 200_000
    assert json_depth(deep, stop_after=10) == 11


def _env(payload: object = None, headers: dict[str, str] | None = None) -> Envelope:
    return Envelope(
        id=new_id(),
        kind="event",
        sender="a",
        topic="t",
        payload=encode_payload(payload),
        headers=headers or {},
    )


def test_each_limit_is_named() -> None:
    limits = Limits(max_payload=100, max_headers=2, max_header_bytes=20, max_depth=3)
    limits.check(_env({"a": [1, 2]}, {"k": "v"}))
    cases = [
        (_env("x" * 200), "max_payload"),
        (_env(None, {"a": "1", "b": "2", "c": "3"}), "max_headers"),
        (_env(None, {"a": "x" * 30}), "max_header_bytes"),
        (_env([[[[1]]]]), "max_depth"),
    ]
    for env, name in cases:
        with pytest.raises(LimitExceeded, match=name) as info:
            limits.check(env)
        assert info.value.limit == name
        assert isinstance(info.value, ValidationError)


def test_none_switches_a_check_off() -> None:
    Limits(max_payload=None, max_depth=None).check(_env([[[[[[["x" * 2_000_000]]]]]]]))


def test_bad_settings_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError):
        Limits(max_payload=-1)
