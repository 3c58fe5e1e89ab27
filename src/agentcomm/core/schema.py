"""Payload schemas: typed decoding, validation and JSON Schema for handler types.

A handler declares what it takes and returns with ordinary annotations: a msgspec
``Struct``, a pydantic model, a dataclass, a ``TypedDict`` or plain typed arguments.
:func:`inspect_handler` turns the signature into a :class:`HandlerSpec` whose codecs
validate both ways. Codecs are built once per handler, never per message.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import inspect
import typing
from collections.abc import Callable
from typing import Any, get_args

import msgspec

from agentcomm.core.depth import MAX_WIRE_DEPTH, check_depth
from agentcomm.core.envelope import encode_payload, encode_payload_bytes
from agentcomm.core.errors import ConfigurationError, DecodeError, ValidationError

__all__ = ["Codec", "HandlerSpec", "codec_for", "inspect_handler"]


def _is_pydantic(tp: Any) -> bool:
    return (
        isinstance(tp, type)
        and hasattr(tp, "model_validate_json")
        and hasattr(tp, "model_json_schema")
    )


def _uses_pydantic(tp: Any) -> bool:
    if _is_pydantic(tp):
        return True
    return any(_uses_pydantic(a) for a in get_args(tp))


def _is_model(tp: Any) -> bool:
    """A type that is a whole payload object on its own (not plain arguments)."""
    if _is_pydantic(tp):
        return True
    if isinstance(tp, type) and (
        issubclass(tp, msgspec.Struct) or dataclasses.is_dataclass(tp) or typing.is_typeddict(tp)
    ):
        return True
    return False


def _inline_ref(schema: dict[str, Any]) -> dict[str, Any]:
    """Turn ``{"$ref": "#/$defs/X", "$defs": {...}}`` into X's schema with the defs kept."""
    ref = schema.get("$ref")
    defs = schema.get("$defs", {})
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        name = ref.removeprefix("#/$defs/")
        body = dict(defs[name])
        rest = {k: v for k, v in defs.items() if k != name}
        if rest:
            body["$defs"] = rest
        return body
    return schema


class HandlerContext:
    """Base of the per-message context a handler may declare (``ctx: Context``).

    A parameter annotated with a subclass is filled by the runtime, never decoded
    from the payload (``agentcomm.Context`` is the one applications use).

    Example::

        assert issubclass(agentcomm.Context, HandlerContext)
    """

    __slots__ = ()


class Codec:
    """Encodes and validates one payload type; built once, reused for every message.

    Example::

        codec = codec_for(int)
        assert codec.decode(b"3") == 3
    """

    __slots__ = ("_adapter", "_decoder", "name", "type")

    def __init__(self, tp: Any, name: str | None = None) -> None:
        self.type = tp
        self.name = name or getattr(tp, "__name__", None) or repr(tp)
        self._adapter: Any = None
        self._decoder: msgspec.json.Decoder[Any] | None = None
        if _uses_pydantic(tp):
            try:
                import pydantic
            except ImportError as exc:  # pragma: no cover - pydantic types imply pydantic
                raise ConfigurationError("pydantic types need pydantic installed") from exc
            self._adapter = pydantic.TypeAdapter(tp)
        else:
            try:
                self._decoder = msgspec.json.Decoder(tp)
            except TypeError as exc:
                raise ConfigurationError(
                    f"type {tp!r} cannot be used in a payload: {exc}"
                ) from None

    def decode(self, raw: bytes | msgspec.Raw) -> Any:
        """Decode and validate raw JSON; raises :class:`ValidationError` naming the field.

        Hostile input (nested deeper than the wire limit, not UTF-8, numbers out of
        range) raises ValidationError too, never anything else. Bytes are checked
        against the wire limits before the decoder (which recurses) runs; a
        ``msgspec.Raw`` payload was checked with the frame or record it came in
        (on the wire, in a store) or made in this process, so it pays nothing (a
        RecursionError from an in-process one still becomes ValidationError).

        Example::

            codec_for(int).decode(b'"x"')  # raises ValidationError
        """
        try:
            if type(raw) is not _Raw and len(raw) > MAX_WIRE_DEPTH:
                check_depth(raw, "payload")
            if self._decoder is not None:
                return self._decoder.decode(raw)
            return self._adapter.validate_json(bytes(raw))
        except msgspec.ValidationError as exc:
            raise ValidationError(f"{self.name}: {exc}") from None
        except msgspec.DecodeError as exc:
            raise ValidationError(f"{self.name}: payload is not valid JSON: {exc}") from None
        except DecodeError as exc:  # over the wire limits
            raise DecodeError(f"{self.name}: {exc}") from None
        except (ValueError, RecursionError, OverflowError, TypeError) as exc:
            # pydantic.ValidationError is a ValueError; the rest only on hostile input
            raise ValidationError(f"{self.name}: {exc}") from None

    @property
    def fast_decode(self) -> Callable[[bytes | msgspec.Raw], Any] | None:
        """msgspec's own decode for this type (``None`` for pydantic types): raises
        msgspec's errors, not typed ones; hot paths fall back to :meth:`decode`.

        Example::

            assert codec_for(int).fast_decode(b"3") == 3
        """
        return None if self._decoder is None else self._decoder.decode

    def decoder(self) -> Callable[[bytes | msgspec.Raw], Any]:
        """A decode function for payloads already checked against the wire limits.

        The same results and errors as :meth:`decode`, minus the wrapper on the
        happy path (used per chunk of a stream).

        Example::

            decode = codec_for(int).decoder(); assert decode(b"3") == 3
        """
        dec, slow = self._decoder, self.decode
        if dec is None:
            return slow
        fast = dec.decode

        def decode(raw: bytes | msgspec.Raw) -> Any:
            if type(raw) is _Raw:
                try:
                    return fast(raw)
                except Exception:  # decoded again below, for the typed error
                    pass
            return slow(raw)

        return decode

    def validate(self, obj: Any) -> msgspec.Raw:
        """Check ``obj`` against the type and return its JSON encoding.

        Example::

            raw = codec_for(int).validate(3)
        """
        if self._adapter is not None:
            try:
                return msgspec.Raw(self._adapter.dump_json(self._adapter.validate_python(obj)))
            except ValueError as exc:
                raise ValidationError(f"{self.name}: {exc}") from None
        raw = encode_payload(obj)
        if type(obj) is not self.type or self.type not in _SCALARS:
            dec = self._decoder  # exact scalars are valid by construction
            try:
                dec.decode(raw)  # type: ignore[union-attr]  # set when _adapter is not
            except Exception:  # decoded again, for the typed error
                self.decode(raw)
        return raw

    def json_schema(self) -> dict[str, Any]:
        """The JSON Schema of this type.

        Example::

            assert codec_for(int).json_schema() == {"type": "integer"}
        """
        if self._adapter is not None:
            return dict(self._adapter.json_schema())
        try:
            return _inline_ref(msgspec.json.schema(self.type, schema_hook=_schema_hook))
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"no JSON Schema for {self.name}: {exc}") from None


#: The JSON Schema of a value typed ``object``: any JSON value.
ANY_JSON: dict[str, Any] = {"description": "any JSON value"}


def _schema_hook(tp: Any) -> dict[str, Any]:
    """A field typed ``object`` accepts any JSON value (msgspec decodes it as ``Any``)."""
    if tp is object:
        return dict(ANY_JSON)
    raise NotImplementedError


_SCALARS = frozenset({int, str, float, bool, type(None)})
_Raw = msgspec.Raw
_codec_cache: dict[Any, Codec] = {}
#: Bound of the codec cache: types made at run time (one per request) cannot grow it
#: without limit; past the bound the oldest codec is rebuilt when next needed.
CODEC_CACHE_SIZE = 4096


def codec_for(tp: Any) -> Codec:
    """The (cached) codec of a type.

    Example::

        codec_for(list[int]).decode(b"[1, 2]")
    """
    try:
        return _codec_cache[tp]
    except (KeyError, TypeError):
        pass
    codec = Codec(tp)
    try:
        _codec_cache[tp] = codec
    except TypeError:  # unhashable annotation
        return codec
    if len(_codec_cache) > CODEC_CACHE_SIZE:
        del _codec_cache[next(iter(_codec_cache))]
    return codec


@dataclasses.dataclass(frozen=True, slots=True)
class HandlerSpec:
    """What :func:`inspect_handler` learns from a handler's signature.

    ``mode`` is ``"none"`` (no payload), ``"model"`` (the payload is one object passed
    as the single argument) or ``"args"`` (the payload's fields are the keyword args).

    Example::

        spec = inspect_handler(my_handler)
        print(spec.input.json_schema())
    """

    name: str
    fn: Callable[..., Any]
    input: Codec
    output: Codec | None
    mode: str
    arg_names: tuple[str, ...]
    context_arg: str | None
    description: str
    is_async: bool

    #: The name of the return type's schema (``None`` when undeclared).
    output_name: str | None
    #: ``decode_args(raw) -> kwargs``: validate a payload into the handler's keyword
    #: arguments; raises :class:`ValidationError` (the handler must then not run).
    decode_args: Callable[[msgspec.Raw | bytes], dict[str, Any]]
    #: ``decode_positional(raw) -> args``: the same validation, returning the
    #: positional arguments of the call; ``None`` when the handler cannot be called
    #: positionally (a context argument, keyword-only parameters, pydantic, models).
    decode_positional: Callable[[msgspec.Raw | bytes], tuple[Any, ...]] | None
    #: ``encode_result(value) -> raw``: validate the return value against the declared
    #: return type and encode it; raises :class:`ValidationError`. For a stream
    #: handler, each chunk it yields.
    encode_result: Callable[[Any], msgspec.Raw]
    #: True for an async generator handler: it streams chunks (``output`` is the
    #: chunk type, from ``AsyncIterator[T]``) and is called with ``stream()``.
    streams: bool = False


def _result_encoder(codec: Codec | None) -> Callable[[Any], msgspec.Raw]:
    """A return-value validator specialised once per handler."""
    if codec is None:
        return encode_payload
    if codec.type in _SCALARS and codec._decoder is not None:
        exact, validate = codec.type, codec.validate

        def encode_scalar(value: Any) -> msgspec.Raw:
            if type(value) is exact:  # valid by construction
                return msgspec.Raw(_scalar_encode(value))
            return validate(value)

        return encode_scalar
    if codec._decoder is not None:  # msgspec types: encode, decode to check, once each
        encode, check, validate = encode_payload_bytes, codec._decoder.decode, codec.validate

        def encode_checked(value: Any) -> msgspec.Raw:
            try:
                raw = encode(value)
                check(raw)
            except Exception:  # validated the slow way, for the typed error
                return validate(value)
            return msgspec.Raw(raw)

        return encode_checked
    return codec.validate


_scalar_encode = msgspec.json.Encoder().encode


def _positional_decoder(codec: Codec) -> Callable[[msgspec.Raw | bytes], tuple[Any, ...]] | None:
    """Positional arguments straight from the decoded struct (no kwargs dict)."""
    if codec._decoder is None:  # pydantic arguments
        return None
    decode, astuple = codec.decode, msgspec.structs.astuple

    def decode_tuple(raw: msgspec.Raw | bytes) -> tuple[Any, ...]:
        return astuple(decode(raw))

    return decode_tuple


def _args_decoder(mode: str, codec: Codec, arg_names: tuple[str, ...]) -> Callable[..., Any]:
    """A decoder specialised once per handler (it runs on every message)."""
    decode = codec.decode
    if mode == "model":
        (arg,) = arg_names

        def decode_model(raw: msgspec.Raw | bytes) -> dict[str, Any]:
            return {arg: decode(raw)}

        return decode_model
    if mode == "args":
        if codec._decoder is not None:  # a msgspec Struct built from the signature
            asdict = msgspec.structs.asdict

            def decode_struct(raw: msgspec.Raw | bytes) -> dict[str, Any]:
                return asdict(decode(raw))

            return decode_struct

        def decode_fields(raw: msgspec.Raw | bytes) -> dict[str, Any]:
            obj = decode(raw)
            return {n: getattr(obj, n) for n in arg_names}

        return decode_fields

    def decode_none(raw: msgspec.Raw | bytes) -> dict[str, Any]:
        decode(raw)
        return {}

    return decode_none


def inspect_handler(fn: Callable[..., Any], name: str | None = None) -> HandlerSpec:
    """Build the :class:`HandlerSpec` of a handler from its annotations.

    Example::

        async def add(a: int, b: int) -> int: return a + b
        spec = inspect_handler(add)
        assert spec.mode == "args"
    """
    hname = name or fn.__name__
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception as exc:
        raise ConfigurationError(
            f"handler {hname!r}: cannot resolve its type annotations ({exc}); "
            "define the types it uses at module level"
        ) from None
    sig = inspect.signature(fn)
    context_arg: str | None = None
    fields: list[tuple[str, Any, Any]] = []
    all_positional = True
    for p in sig.parameters.values():
        if p.kind is not p.POSITIONAL_OR_KEYWORD:
            all_positional = False
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise ConfigurationError(
                f"handler {hname!r}: *args/**kwargs cannot be described by a schema; "
                "declare each argument with a type"
            )
        ann = hints.get(p.name, Any)
        if isinstance(ann, type) and issubclass(ann, HandlerContext):
            context_arg = p.name
            continue
        if p.name not in hints:
            raise ConfigurationError(
                f"handler {hname!r}: argument {p.name!r} has no type annotation; "
                "agents exchange schema-validated data, so annotate it"
            )
        fields.append((p.name, ann, p.default))
    if not fields:
        mode = "none"
        in_codec = codec_for(type(None) | dict[str, Any])
        arg_names: tuple[str, ...] = ()
    elif len(fields) == 1 and fields[0][2] is inspect.Parameter.empty and _is_model(fields[0][1]):
        mode = "model"
        in_codec = codec_for(fields[0][1])
        arg_names = (fields[0][0],)
    else:
        mode = "args"
        arg_names = tuple(f[0] for f in fields)
        if any(_uses_pydantic(f[1]) for f in fields):
            import pydantic

            model = pydantic.create_model(  # type: ignore[call-overload]
                f"{hname}_args",
                __config__=pydantic.ConfigDict(extra="forbid"),
                **{n: (t, ... if d is inspect.Parameter.empty else d) for n, t, d in fields},
            )
            in_codec = Codec(model, name=f"{hname} arguments")
        else:
            struct = msgspec.defstruct(
                f"{hname}_args",
                [(n, t) if d is inspect.Parameter.empty else (n, t, d) for n, t, d in fields],
                forbid_unknown_fields=True,
                kw_only=True,
            )
            in_codec = Codec(struct, name=f"{hname} arguments")
    ret = hints.get("return", Any)
    streams = inspect.isasyncgenfunction(fn)
    if streams:
        ret = _chunk_type(hname, ret)
    out_codec = None if ret is Any else codec_for(ret)
    doc = inspect.getdoc(fn) or ""
    return HandlerSpec(
        name=hname,
        fn=fn,
        input=in_codec,
        output=out_codec,
        mode=mode,
        arg_names=arg_names,
        context_arg=context_arg,
        description=doc.split("\n\n")[0].strip(),
        is_async=inspect.iscoroutinefunction(fn),
        output_name=None if out_codec is None else out_codec.name,
        decode_args=_args_decoder(mode, in_codec, arg_names),
        decode_positional=(
            _positional_decoder(in_codec)
            if mode == "args" and context_arg is None and all_positional
            else None
        ),
        encode_result=_result_encoder(out_codec),
        streams=streams,
    )


def _chunk_type(hname: str, ret: Any) -> Any:
    """``T`` of a stream handler's ``AsyncIterator[T]`` (or AsyncGenerator/AsyncIterable)."""
    if ret is Any:
        return Any
    origin = typing.get_origin(ret)
    if origin in (
        collections.abc.AsyncIterator,
        collections.abc.AsyncGenerator,
        collections.abc.AsyncIterable,
    ):
        args = typing.get_args(ret)
        return args[0] if args else Any
    raise ConfigurationError(
        f"handler {hname!r} is an async generator (a stream handler): annotate its return "
        f"as AsyncIterator[ChunkType], not {ret!r}"
    )
