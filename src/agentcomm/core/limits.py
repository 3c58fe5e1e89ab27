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
from typing import TYPE_CHECKING

import msgspec

from agentcomm.core.errors import ConfigurationError, LimitExceeded
from agentcomm.core.flow import RateLimit

if TYPE_CHECKING:
    from agentcomm.core.envelope import Envelope

__all__ = ["Limits", "json_depth"]

# A JSON string (with escapes); removed before counting brackets so "[[[" in text is data.
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")
_INNERMOST = re.compile(rb"\[\]|\{\}")


def json_depth(data: bytes, stop_after: int | None = None) -> int:
    """Nesting depth of JSON text (``1`` for ``[]`` or ``{}``, ``0`` for a scalar).

    Runs in C-speed regex passes, without decoding (so without recursion), and stops
    counting once the depth exceeds ``stop_after``. Unbalanced input counts as deep
    as far as it balances; malformed JSON is the decoder's business.

    Example::

        assert json_depth(b'{"a": [1, {"b": "[[["}]}') == 3
    """
    if b"[" not in data and b"{" not in data:
        return 0
    skeleton = _NOT_BRACKET.sub(b"", _STRING.sub(b"", data))
    depth = 0
    while skeleton:
        reduced = _INNERMOST.sub(b"", skeleton)
        if reduced == skeleton:  # unbalanced brackets left over
            break
        depth += 1
        skeleton = reduced
        if stop_after is not None and depth > stop_after:
            break
    return depth


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    """Bounds on one envelope, checked by the sender and again by the receiver.

    * ``max_payload``: encoded payload bytes (default 1 MiB, NATS's default maximum);
    * ``max_headers``: number of headers; ``max_header_bytes``: their total size
      (names plus values, UTF-8);
    * ``max_depth``: JSON nesting depth of the payload (``[[1]]`` is 2);
    * ``sender_rate``: direct messages (requests and notifications) per second each
      agent may send. A sender over its rate waits (it is held, the others are not);
      across processes the receiver also refuses a sender that exceeds it (one that
      bypasses the library), answering ``RateLimited``.

    ``None`` switches one check off.

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
        if self.max_depth is not None and size > 2 * self.max_depth:
            # A payload shorter than 2*max_depth bytes cannot nest deeper than max_depth.
            depth = json_depth(bytes(payload), stop_after=self.max_depth)
            if depth > self.max_depth:
                raise LimitExceeded(
                    f"{who}: payload nests deeper than max_depth={self.max_depth}; "
                    "flatten the structure",
                    limit="max_depth",
                )
