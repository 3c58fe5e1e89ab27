"""Size limits for envelopes: payload bytes, headers, JSON nesting depth.

Hostile or broken peers send megabyte payloads, thousands of headers or JSON nested
ten thousand levels deep. With ``Runtime(limits=Limits(...))`` the sender checks its
own envelopes before they leave (a bug shows up at its source) and every receiver
checks again before a handler runs (a peer that bypasses the library is still held).
A refusal is :class:`~agentcomm.errors.LimitExceeded`, a
:class:`~agentcomm.errors.ValidationError`: requests get it back, events go to the
dead-letter queue.

Example::

    async with Runtime(limits=Limits(max_payload=64_000, max_depth=16)) as rt: ...
"""

from __future__ import annotations

import re
from itertools import accumulate, cycle
from operator import mul
from typing import TYPE_CHECKING

import msgspec

from .errors import ConfigurationError, DecodeError, LimitExceeded
from .flow import RateLimit

if TYPE_CHECKING:
    from .envelope import Envelope

__all__ = [
    "MAX_PAYLOAD_DEPTH",
    "MAX_WIRE_BYTES",
    "MAX_WIRE_DEPTH",
    "Limits",
    "check_depth",
    "json_depth",
]

#: The deepest JSON document agentcomm decodes from the wire or a store (an envelope,
#: a blackboard record, a presence record, a payload). msgspec and pydantic decode
#: recursively, so depth is bounded *before* decoding; deeper input is refused with
#: :class:`~agentcomm.errors.DecodeError`. :attr:`Limits.max_depth` (a payload's
#: depth) must stay at or below :data:`MAX_PAYLOAD_DEPTH`, which leaves room for the
#: wrappers around a payload (envelope, dead letter, blackboard record).
MAX_WIRE_DEPTH = 256
MAX_PAYLOAD_DEPTH = MAX_WIRE_DEPTH - 16
#: The largest document agentcomm decodes (NATS's own ceiling for ``max_payload``).
MAX_WIRE_BYTES = 64 << 20

_SAME = bytes.maketrans(b"{}", b"[]")  # for depth, both kinds of bracket are alike
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_RUNS = re.compile(rb"\[++|\]++")
_CHUNK = 1 << 16


def _skeleton(data: bytes) -> bytes:
    """The brackets of ``data`` outside JSON strings, ``{}`` written as ``[]``."""
    if b'"' not in data:
        return data.translate(_SAME, _NOT_BRACKETS)
    if b"\\" in data:
        # Escapes first: pairs of backslashes, then escaped quotes, left to right as a
        # decoder reads them. A backslash outside a string is an error where a decoder
        # stops, so what this does after it cannot matter.
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    # Every quote left opens or closes a string: keep what is outside, chunk by chunk
    # (bounded memory), carrying whether a chunk starts inside a string.
    out = []
    inside = 0
    for i in range(0, len(data), _CHUNK):
        parts = data[i : i + _CHUNK].split(b'"')
        out.append(b"".join(parts[inside::2]).translate(_SAME, _NOT_BRACKETS))
        inside ^= (len(parts) - 1) & 1
    return b"".join(out)


def json_depth(data: bytes, stop_after: int | None = None) -> int:
    """Nesting depth of JSON text (``1`` for ``[]`` or ``{}``, ``0`` for a scalar).

    Linear, without recursion and in C-speed passes: the brackets outside strings
    are kept; then rounds remove adjacent ``[]`` pairs (each round lowers the depth
    by exactly one, and rounds go on only while they shrink what is left by an
    eighth, so together they cost at most eight passes); what remains is measured
    as a running sum over runs of brackets. It is the deepest level a decoder
    reaches, also on truncated input (``b"[[["`` is 3); on unbalanced input it may
    overcount, never undercount. With ``stop_after``, a deeper document gives
    ``stop_after + 1``.

    Example::

        assert json_depth(b'{"a": [1, {"b": "[[["}]}') == 3
    """
    if b"[" not in data and b"{" not in data:
        return 0
    skeleton = _skeleton(data)
    rounds = 0
    while b"[]" in skeleton:
        reduced = skeleton.replace(b"[]", b"")
        rounds += 1
        shrunk = len(skeleton) - len(reduced) >= len(skeleton) >> 3
        skeleton = reduced
        if not shrunk or (stop_after is not None and rounds > stop_after):
            break
    if skeleton:
        signs = cycle((1, -1) if skeleton[0] == 0x5B else (-1, 1))  # b"["
        sums = accumulate(map(mul, map(len, _RUNS.findall(skeleton)), signs))
        rounds += max(0, max(sums, default=0))
    return rounds if stop_after is None else min(rounds, stop_after + 1)


def check_depth(data: bytes | bytearray | memoryview | str, what: str) -> None:
    """Raise :class:`DecodeError` when ``data`` is over the wire limits (size, depth).

    Cheap for ordinary input, with bounds a decoder cannot get past: each level of
    an array takes a ``[`` and each level of an object at least four bytes
    (``{"":``), so a document of ``n`` bytes with ``k`` ``[`` nests at most
    ``k + (n - k) / 4`` levels (one count), and never deeper than its number of
    ``[`` and ``{`` (a second count); only when both bounds are over the limit does
    the linear :func:`json_depth` scan run. Callers skip it for documents of at most
    :data:`MAX_WIRE_DEPTH` bytes. ``what`` names the document in the message.

    Example::

        check_depth(b"[" * 10_000, "envelope")  # raises DecodeError
    """
    if type(data) is not bytes:
        data = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    size = len(data)
    if size > MAX_WIRE_BYTES:
        raise DecodeError(f"{what} is {size} bytes, over the wire limit of {MAX_WIRE_BYTES} bytes")
    arrays = data.count(b"[")
    if arrays + ((size - arrays) >> 2) <= MAX_WIRE_DEPTH:
        return
    if arrays + data.count(b"{") <= MAX_WIRE_DEPTH:
        return
    if json_depth(data) > MAX_WIRE_DEPTH:
        raise DecodeError(
            f"{what} nests deeper than {MAX_WIRE_DEPTH} levels (the wire limit); "
            "flatten the structure"
        )


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    """Bounds on one envelope, checked by the sender and again by the receiver.

    * ``max_payload``: encoded payload bytes (default 1 MiB, NATS's default maximum);
    * ``max_headers``: number of headers; ``max_header_bytes``: their total size
      (names plus values, UTF-8);
    * ``max_depth``: JSON nesting depth of the payload (``[[1]]`` is 2), at most
      :data:`MAX_PAYLOAD_DEPTH` (240);
    * ``sender_rate``: direct messages (requests and notifications) per second each
      agent may send. A sender over its rate waits (it is held, the others are not);
      across processes the receiver also refuses a sender that exceeds it (one that
      bypasses the library), answering ``RateLimited``.

    ``None`` switches one check off. The wire limits (:data:`MAX_WIRE_DEPTH`,
    :data:`MAX_WIRE_BYTES`) hold whatever these are: deeper or larger input is never
    decoded.

    Example::

        limits = Limits(max_payload=64_000, max_depth=16)
        limits.check(env)  # raises LimitExceeded naming the limit
    """

    max_payload: int | None = 1_048_576
    max_headers: int | None = 64
    max_header_bytes: int | None = 16_384
    max_depth: int | None = 32
    sender_rate: RateLimit | None = None

    def __post_init__(self) -> None:
        for field in ("max_payload", "max_headers", "max_header_bytes", "max_depth"):
            value = getattr(self, field)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ConfigurationError(f"Limits.{field} must be a non-negative int or None")
        if self.max_depth is not None and self.max_depth > MAX_PAYLOAD_DEPTH:
            raise ConfigurationError(
                f"Limits.max_depth={self.max_depth} is over {MAX_PAYLOAD_DEPTH}, the deepest "
                f"payload that fits the wire limit of {MAX_WIRE_DEPTH} levels with its envelope"
            )
        if self.max_payload is not None and self.max_payload > MAX_WIRE_BYTES:
            raise ConfigurationError(
                f"Limits.max_payload={self.max_payload} is over the wire limit of "
                f"{MAX_WIRE_BYTES} bytes"
            )

    def check(self, env: Envelope) -> None:
        """Raise :class:`LimitExceeded` if ``env`` breaks a limit.

        Example::

            Limits(max_payload=10).check(env)
        """
        payload = env.payload
        size = len(payload)
        who = f"message {env.id} from {env.sender!r}"
        if self.max_payload is not None and size > self.max_payload:
            raise LimitExceeded(
                f"{who}: payload is {size} bytes, over max_payload={self.max_payload}; "
                "send a reference (a blackboard key, a URL) instead of the data",
                limit="max_payload",
            )
        headers = env.headers
        if headers:
            if self.max_headers is not None and len(headers) > self.max_headers:
                raise LimitExceeded(
                    f"{who}: {len(headers)} headers, over max_headers={self.max_headers}",
                    limit="max_headers",
                )
            if self.max_header_bytes is not None:
                total = sum(len(k.encode()) + len(v.encode()) for k, v in headers.items())
                if total > self.max_header_bytes:
                    raise LimitExceeded(
                        f"{who}: headers take {total} bytes, over "
                        f"max_header_bytes={self.max_header_bytes}",
                        limit="max_header_bytes",
                    )
        depth = self.max_depth
        if depth is not None and size > 2 * depth:
            # A payload shorter than 2*max_depth bytes, or with fewer brackets than
            # max_depth, cannot nest deeper than max_depth (a decoded payload is whole).
            data = bytes(payload)
            if data.count(b"[") + data.count(b"{") > depth and json_depth(data) > depth:
                raise LimitExceeded(
                    f"{who}: payload nests deeper than max_depth={self.max_depth}; "
                    "flatten the structure",
                    limit="max_depth",
                )
