"""The message envelope shared by every pattern, and its JSON codec.

One frozen :class:`Envelope` carries requests, responses, notifications and events.
The payload travels as raw JSON bytes (``msgspec.Raw``): it is encoded once by the
sender and decoded by the receiver into the receiver's own declared type, so two
agents can never share a mutable object. The wire format is documented in
``docs/wire-format.md`` and ``docs/envelope.schema.json``.
"""

from __future__ import annotations

import base64
import itertools
import os
import time
from collections.abc import Callable
from typing import Any, Literal, TypeVar

import msgspec

from agentcomm.core.depth import MAX_WIRE_DEPTH, check_depth
from agentcomm.core.errors import DecodeError, LimitExceeded, UnsupportedVersion, ValidationError

__all__ = [
    "Envelope",
    "ErrorInfo",
    "Kind",
    "decode_envelope",
    "decode_envelopes",
    "decode_guarded",
    "encode_envelope",
    "encode_payload",
    "invalid_frame",
    "invalid_frame_bytes",
    "new_id",
]

Kind = Literal[
    "request",
    "response",
    "notification",
    "event",
    # long-running work (docs/streams-and-tasks.md): a stream's opening, its chunks,
    # progress reports, its end; and the control frames credit and cancel
    "stream",
    "chunk",
    "progress",
    "end",
    "credit",
    "cancel",
]

WIRE_VERSION = 1
#: The wire versions (the envelope's ``v``) this library decodes.
SUPPORTED_VERSIONS = (WIRE_VERSION,)
T = TypeVar("T")


class ErrorInfo(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """Why a request failed, carried by an error response.

    ``code`` is one of ``"error"`` (the handler raised), ``"validation"`` (the payload
    did not match the handler's schema; the handler never ran), ``"unknown_handler"``,
    ``"timeout"`` (the receiver gave up at the deadline), ``"permission"``,
    ``"limit"``, ``"authentication"`` or ``"transport"`` (a proxy agent's engine,
    such as an MCP server, failed).

    Example::

        ErrorInfo(code="error", type="ZeroDivisionError", message="division by zero")
    """

    code: str = "error"
    type: str
    message: str
    #: The agent where the error was raised, when agents in between relayed it (a
    #: handler that let a :class:`~agentcomm.errors.RemoteError` through).
    origin: str | None = None


# gc=False: an envelope holds only strings, numbers, bytes and a str->str dict, so it
# can never be part of a reference cycle; untracked, the logs that retain millions of
# envelopes cost the cyclic garbage collector nothing.
class Envelope(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """The one message type of agentcomm; immutable.

    Example::

        env = Envelope(id=new_id(), kind="notification", sender="a", recipient="b",
                       handler="note", payload=encode_payload({"text": "hi"}))
        assert decode_envelope(encode_envelope(env)) == env
    """

    id: str
    kind: Kind
    sender: str
    recipient: str | None = None
    topic: str | None = None
    handler: str | None = None
    payload: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"null"))
    schema: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    traceparent: str | None = None
    tracestate: str | None = None
    created: float = msgspec.field(default_factory=time.time)
    deadline: float | None = None
    sequence: int | None = None
    key: str | None = None
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    error: ErrorInfo | None = None
    #: A channel address (``Transport.open_channel``) where the receiver sends what
    #: belongs to this message besides its answer: a stream's chunks, progress.
    reply_to: str | None = None
    v: int = WIRE_VERSION

    def remaining(self, now: float | None = None) -> float | None:
        """Seconds left before the deadline (never negative), or ``None`` without one.

        Example::

            if (left := env.remaining()) is not None and left == 0: ...
        """
        if self.deadline is None:
            return None
        left = self.deadline - (time.time() if now is None else now)
        return left if left > 0 else 0.0

    def expired(self, now: float | None = None) -> bool:
        """True when the envelope has a deadline (or TTL) that has passed.

        Example::

            if env.expired(): drop_it()
        """
        return self.deadline is not None and (time.time() if now is None else now) >= self.deadline

    def payload_size(self) -> int:
        """Size of the encoded payload in bytes.

        Example::

            assert env.payload_size() < 1_000_000
        """
        return len(self.payload)


_envelope_encoder = msgspec.json.Encoder()
_envelope_decoder = msgspec.json.Decoder(Envelope)
_envelopes_decoder = msgspec.json.Decoder(list[Envelope])

_prefix = os.urandom(6).hex()
_counter = itertools.count()


def new_id() -> str:
    """A process-unique, globally unlikely-to-collide message id (fast; not a UUID).

    Example::

        assert new_id() != new_id()
    """
    return _prefix + hex(next(_counter))  # e.g. "3f9a1c0b2d4e0x1a"


def encode_envelope(env: Envelope) -> bytes:
    """Encode an envelope to its JSON wire form.

    Example::

        data = encode_envelope(env)
    """
    return _envelope_encoder.encode(env)


DECODE_ERRORS = (ValueError, RecursionError, OverflowError, TypeError)
"""What a decoder may raise on hostile input (msgspec's errors and UnicodeError are
ValueErrors); :func:`decode_failure` turns each into a :class:`DecodeError`."""


def decode_failure(exc: BaseException, what: str) -> DecodeError:
    """The :class:`DecodeError` for ``exc`` raised while decoding ``what`` (for hot paths
    that inline :func:`decode_guarded`).

    Example::

        try:
            value = decoder(data)
        except DECODE_ERRORS as exc:
            raise decode_failure(exc, "value") from None
    """
    if isinstance(exc, msgspec.ValidationError):
        return DecodeError(f"{what} is not valid: {exc}")
    if isinstance(exc, UnicodeError):  # a string with bytes that are not UTF-8 (fuzz-found)
        return DecodeError(f"{what} is not valid UTF-8 JSON: {exc}")
    return DecodeError(f"{what} is not valid JSON: {exc}")


def decode_guarded(decode: Callable[[Any], T], data: Any, what: str) -> T:
    """Run ``decode(data)`` on bytes from the wire or a store; only :class:`DecodeError` escapes.

    The wire limits are checked first (:func:`~agentcomm.limits.check_depth`: a
    document of at most 256 bytes cannot be deeper, so it pays one length test),
    because msgspec and pydantic recurse; then every exception a decoder raises on
    hostile input (msgspec errors, RecursionError, UnicodeError, OverflowError,
    ValueError, TypeError) becomes a :class:`DecodeError` naming ``what``.

    Example::

        record = decode_guarded(msgspec.json.Decoder(Record).decode, data, "record")
    """
    if len(data) > MAX_WIRE_DEPTH:
        check_depth(data, what)
    try:
        return decode(data)
    except DECODE_ERRORS as exc:  # msgspec's errors and UnicodeError are ValueErrors
        raise decode_failure(exc, what) from None


def decode_envelope(data: bytes | bytearray | memoryview | str) -> Envelope:
    """Decode JSON wire bytes into an :class:`Envelope`; raises :class:`DecodeError`.

    Raises :class:`~agentcomm.errors.UnsupportedVersion` (a DecodeError) for a wire
    version ``v`` other than those in :data:`SUPPORTED_VERSIONS`, and DecodeError for
    anything that is not an envelope: not JSON, not UTF-8, wrong types, missing
    fields, numbers out of range, nested deeper than 256 levels or over 64 MiB.

    Example::

        env = decode_envelope(b'{"id": "1", "kind": "event", "sender": "a"}')
    """
    n = len(data)
    if n > MAX_WIRE_DEPTH and (  # check_depth's first bound, inlined: the hot path
        type(data) is not bytes or (k := data.count(b"[")) + ((n - k) >> 2) > MAX_WIRE_DEPTH
    ):
        check_depth(data, "envelope")
    try:
        env = _envelope_decoder.decode(data)
    except DECODE_ERRORS as exc:
        raise decode_failure(exc, "envelope") from None
    if env.v != WIRE_VERSION:
        raise UnsupportedVersion(env.v, SUPPORTED_VERSIONS)
    return env


def decode_envelopes(data: bytes | bytearray | memoryview) -> list[Envelope]:
    """Decode a message that holds one envelope or a JSON array of them, in order.

    Channels on NATS carry a batch of frames as one array (``docs/wire-format.md``);
    raises :class:`DecodeError` as :func:`decode_envelope` does, for the whole batch.

    Example::

        envs = decode_envelopes(b'[{"id": "1", "kind": "chunk", "sender": "a"}]')
    """
    if data[:1] != b"[":
        return [decode_envelope(data)]
    if len(data) > MAX_WIRE_DEPTH:
        check_depth(data, "batch of envelopes")
    try:
        envs = _envelopes_decoder.decode(data)
    except DECODE_ERRORS as exc:
        raise decode_failure(exc, "batch of envelopes") from None
    for env in envs:
        if env.v != WIRE_VERSION:
            raise UnsupportedVersion(env.v, SUPPORTED_VERSIONS)
    return envs


def _enc_hook(obj: Any) -> Any:
    dump = getattr(obj, "model_dump", None)  # pydantic v2 models
    if dump is not None:
        return dump(mode="json")
    raise NotImplementedError(
        f"cannot encode {type(obj).__name__} as a payload; use a dict, a msgspec Struct, "
        "a dataclass or a pydantic model"
    )


_payload_encoder = msgspec.json.Encoder(enc_hook=_enc_hook)
#: :func:`encode_payload`'s encoder without its typed errors: the JSON bytes, or
#: msgspec's exception (for hot paths that fall back to ``encode_payload`` on error).
encode_payload_bytes = _payload_encoder.encode


def encode_payload(obj: Any) -> msgspec.Raw:
    """Encode a payload object (dict, Struct, dataclass, pydantic model...) to raw JSON.

    Example::

        raw = encode_payload({"query": "llm agents"})
    """
    try:
        return msgspec.Raw(_payload_encoder.encode(obj))
    except RecursionError:
        raise LimitExceeded(
            f"payload nests deeper than Python can encode (receivers decode at most "
            f"{MAX_WIRE_DEPTH} levels); flatten the structure",
            limit="max_depth",
        ) from None
    except (NotImplementedError, TypeError, msgspec.EncodeError) as exc:
        raise ValidationError(f"payload cannot be encoded as JSON: {exc}") from None


#: Header of the stand-in envelope for a stored frame that did not decode (see
#: :func:`invalid_frame`); its value is the frame's size in bytes.
INVALID_FRAME_HEADER = "agentcomm-invalid-frame"
#: How many bytes of such a frame are kept (base64 in the stand-in's payload).
INVALID_FRAME_KEEP = 65_536


def invalid_frame(data: bytes, *, topic: str | None, sequence: int | None = None) -> Envelope:
    """A stand-in event for stream bytes that are not an envelope, to dead-letter them.

    The payload is a JSON string: the frame's first :data:`INVALID_FRAME_KEEP` bytes
    in base64; the header :data:`INVALID_FRAME_HEADER` holds the frame's full size.
    The sender is ``""`` (unknown). :func:`invalid_frame_bytes` gives the bytes back.

    Example::

        env = invalid_frame(b"[[[", topic="orders.created")
        assert invalid_frame_bytes(env) == b"[[["
    """
    kept = bytes(data[:INVALID_FRAME_KEEP])
    return Envelope(
        id=new_id(),
        kind="event",
        sender="",
        topic=topic,
        sequence=sequence,
        payload=msgspec.Raw(b'"' + base64.b64encode(kept) + b'"'),
        headers={INVALID_FRAME_HEADER: str(len(data))},
    )


def invalid_frame_bytes(env: Envelope) -> bytes | None:
    """The kept bytes of a frame that did not decode, or ``None`` for a real envelope.

    Example::

        for dl in await rt.events.dead_letters():
            raw = invalid_frame_bytes(dl.event)  # not None: the frame was not an envelope
    """
    if INVALID_FRAME_HEADER not in env.headers:
        return None
    try:
        return base64.b64decode(bytes(env.payload).strip(b'"'), validate=True)
    except ValueError:  # binascii.Error is a ValueError
        return b""
