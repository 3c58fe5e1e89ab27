"""Handler signatures become validated schemas, both ways."""

from __future__ import annotations

import dataclasses
from typing import Any, TypedDict

import msgspec
import pydantic
import pytest

from agentcomm import Agent, ConfigurationError, Context, RemoteError, Runtime, ValidationError
from agentcomm.core.schema import codec_for, inspect_handler


class Order(msgspec.Struct):
    id: str
    qty: int


class POrder(pydantic.BaseModel):
    id: str
    qty: int = pydantic.Field(gt=0)


@dataclasses.dataclass
class DOrder:
    id: str
    qty: int


class TOrder(TypedDict):
    id: str
    qty: int


async def plain(a: int, b: str = "x") -> str:
    """Plain typed arguments.

    More text that is not part of the description.
    """
    return f"{a}{b}"


async def with_ctx(order: Order, ctx: Context) -> int:
    return order.qty


def test_plain_arguments_become_an_object_schema() -> None:
    spec = inspect_handler(plain)
    assert spec.mode == "args"
    assert spec.description == "Plain typed arguments."
    schema = spec.input.json_schema()
    assert schema["type"] == "object"
    assert schema["required"] == ["a"]
    assert schema["properties"]["a"] == {"type": "integer"}
    assert spec.decode_args(b'{"a": 1}') == {"a": 1, "b": "x"}
    with pytest.raises(ValidationError, match="Object contains unknown field `c`"):
        spec.decode_args(b'{"a": 1, "c": 2}')


def test_single_model_argument_is_the_whole_payload_and_context_is_injected() -> None:
    spec = inspect_handler(with_ctx)
    assert spec.mode == "model"
    assert spec.context_arg == "ctx"
    assert spec.decode_args(b'{"id": "o1", "qty": 2}') == {"order": Order("o1", 2)}
    assert "ctx" not in str(spec.input.json_schema())


@pytest.mark.parametrize("model", [Order, POrder, DOrder, TOrder])
def test_every_kind_of_model_validates(model: Any) -> None:
    codec = codec_for(model)
    codec.decode(b'{"id": "o1", "qty": 2}')
    with pytest.raises(ValidationError):
        codec.decode(b'{"id": "o1", "qty": "two"}')
    assert codec.json_schema()["properties"]["qty"]["type"] == "integer"


def test_pydantic_constraints_are_enforced() -> None:
    with pytest.raises(ValidationError, match="greater than 0"):
        codec_for(POrder).decode(b'{"id": "o1", "qty": 0}')


def test_mixed_pydantic_arguments_use_pydantic() -> None:
    async def h(order: POrder, note: str = "") -> None: ...

    spec = inspect_handler(h)
    assert spec.mode == "args"
    kwargs = spec.decode_args(b'{"order": {"id": "o", "qty": 1}}')
    assert kwargs["order"] == POrder(id="o", qty=1)
    with pytest.raises(ValidationError):
        spec.decode_args(b'{"order": {"id": "o", "qty": 1}, "extra": 1}')


def test_unannotated_or_variadic_arguments_are_refused() -> None:
    async def untyped(a) -> None: ...  # type: ignore[no-untyped-def]

    async def variadic(*args: int) -> None: ...

    with pytest.raises(ConfigurationError, match="no type annotation"):
        inspect_handler(untyped)
    with pytest.raises(ConfigurationError, match=r"\*args"):
        inspect_handler(variadic)


def test_return_value_is_validated() -> None:
    async def h() -> int:
        return "not an int"  # type: ignore[return-value]

    spec = inspect_handler(h)
    with pytest.raises(ValidationError):
        spec.encode_result("not an int")
    assert bytes(spec.encode_result(3)) == b"3"


async def test_bad_return_value_reaches_the_caller_as_a_remote_error() -> None:
    liar = Agent("liar")

    @liar.handler
    async def count() -> int:
        return "many"  # type: ignore[return-value]

    async with Runtime(agents=[liar]) as rt:
        with pytest.raises(RemoteError, match="breaks its schema"):
            await rt.agent("me").request("liar", "count")


async def test_sync_handlers_and_pydantic_payloads_work_end_to_end() -> None:
    shop = Agent("shop")

    @shop.handler
    def total(order: POrder) -> POrder:
        return POrder(id=order.id, qty=order.qty * 2)

    async with Runtime(agents=[shop]) as rt:
        me = rt.agent("me")
        assert await me.request("shop", "total", POrder(id="a", qty=2), returns=POrder) == POrder(
            id="a", qty=4
        )
        with pytest.raises(ValidationError, match="greater than 0"):
            await me.request("shop", "total", {"id": "a", "qty": -1})
