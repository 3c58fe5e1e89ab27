"""How deep and how large a JSON document agentcomm decodes: checked before msgspec recurses.

Example::

    check_depth(b'{"a": [1]}', "an envelope")  # raises DecodeError when too deep
"""

from __future__ import annotations

import re
from itertools import accumulate, cycle
from operator import mul

from agentcomm.core.errors import DecodeError

__all__ = ["MAX_PAYLOAD_DEPTH", "MAX_WIRE_BYTES", "MAX_WIRE_DEPTH", "check_depth", "json_depth"]


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
