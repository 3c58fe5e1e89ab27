"""The envelope and its JSON codec."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import msgspec
import pytest

from agentcomm import DecodeError, Envelope, ErrorInfo, ValidationError, decode_envelope, new_id
from agentcomm.core.envelope import encode_envelope, encode_payload

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "docs" / "envelope.schema.json").read_text()
)


def _full() -> Envelope:
    return Envelope(
        id=new_id(),
        kind="event",
        sender="a",
        recipient="b",
        topic="orders.created",
        handler="h",
        payload=encode_payload({"x": [1, 2, {"y": None}]}),
        schema="Order",
        correlation_id="c",
        causation_id="d",
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        tracestate="k=v",
        created=1.5,
        deadline=2.5,
        sequence=7,
        key="customer-1",
        headers={"h": "v"},
        error=ErrorInfo(code="error", type="E", message="m"),
    )


def test_round_trip_keeps_every_field() -> None:
    env = _full()
    assert decode_envelope(encode_envelope(env)) == env


def test_payload_is_embedded_json_not_a_string() -> None:
    data = json.loads(encode_envelope(_full()))
    assert data["payload"] == {"x": [1, 2, {"y": None}]}


def test_defaults_are_omitted_on_the_wire() -> None:
    env = Envelope(id="1", kind="notification", sender="a", created=1.0)
    assert json.loads(encode_envelope(env)) == {
        "id": "1",
        "kind": "notification",
        "sender": "a",
        "payload": None,
        "created": 1.0,
    }


def test_every_encoded_envelope_validates_against_the_published_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    for env in (_full(), Envelope(id="1", kind="request", sender="a")):
        jsonschema.validate(json.loads(encode_envelope(env)), SCHEMA)


def test_published_schema_lists_exactly_the_envelope_fields() -> None:
    assert set(SCHEMA["properties"]) == set(Envelope.__struct_fields__)
    assert set(SCHEMA["required"]) == {"id", "kind", "sender"}


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    env = decode_envelope(b'{"id":"1","kind":"event","sender":"a","future_field":{"x":1}}')
    assert env.id == "1"


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b"[]", "Expected `object`"),
        (b'{"kind":"event","sender":"a"}', "missing required field `id`"),
        (b'{"id":"1","kind":"shout","sender":"a"}', "$.kind"),
        (b'{"id":"1","kind":"event","sender":5}', "$.sender"),
        (b'{"id":"1","kind":"event","sender":"a","headers":{"k":1}}', "$.headers"),
    ],
)
def test_malformed_input_raises_decode_error_saying_what_is_wrong(data: bytes, needle: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_envelope(data)
    assert needle in str(info.value)
    assert isinstance(info.value, ValidationError)


def test_envelope_is_immutable() -> None:
    env = _full()
    with pytest.raises(AttributeError):
        env.sender = "mallory"  # type: ignore[misc]


def test_deadline_helpers() -> None:
    env = Envelope(id="1", kind="request", sender="a", created=0.0, deadline=10.0)
    assert env.remaining(now=4.0) == 6.0
    assert env.remaining(now=11.0) == 0.0
    assert not env.expired(now=9.9)
    assert env.expired(now=10.0)
    assert Envelope(id="1", kind="request", sender="a").remaining() is None


def test_ids_are_unique() -> None:
    ids = {new_id() for _ in range(10_000)}
    assert len(ids) == 10_000


def test_unencodable_payload_is_a_validation_error() -> None:
    with pytest.raises(ValidationError, match="cannot encode object"):
        encode_payload(object())


def test_payload_accepts_structs_dataclasses_and_pydantic() -> None:
    import dataclasses

    import pydantic

    class S(msgspec.Struct):
        a: int

    @dataclasses.dataclass
    class D:
        a: int

    class P(pydantic.BaseModel):
        a: int

    for obj in (S(1), D(1), P(a=1), {"a": 1}):
        assert bytes(encode_payload(obj)) == b'{"a":1}'


def test_decode_envelopes_reads_one_envelope_or_an_array_of_them() -> None:
    from agentcomm.core.envelope import decode_envelopes

    a = Envelope(id="1", kind="chunk", sender="w", payload=msgspec.Raw(b"1"), sequence=1)
    b = Envelope(id="2", kind="chunk", sender="w", payload=msgspec.Raw(b"2"), sequence=2)
    assert decode_envelopes(encode_envelope(a)) == [a]
    batch = b"[" + encode_envelope(a) + b"," + encode_envelope(b) + b"]"
    assert decode_envelopes(batch) == [a, b]
    with pytest.raises(DecodeError, match="batch of envelopes"):
        decode_envelopes(b'[{"id": "1"}]')
    with pytest.raises(DecodeError, match="wire version"):
        decode_envelopes(b'[{"id":"1","kind":"chunk","sender":"w","v":9}]')
    with pytest.raises(DecodeError, match="deeper"):
        decode_envelopes(b"[" * 10_000)
