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

from typing import TYPE_CHECKING

import msgspec

from agentcomm.core.depth import (
    MAX_PAYLOAD_DEPTH,
    MAX_WIRE_BYTES,
    MAX_WIRE_DEPTH,
    check_depth,
    json_depth,
)
from agentcomm.core.errors import ConfigurationError, LimitExceeded
from agentcomm.core.flow import RateLimit

if TYPE_CHECKING:
    from agentcomm.core.envelope import Envelope

__all__ = [
    "ENGINE_MAX_PAYLOAD",
    "MAX_PAYLOAD_DEPTH",
    "MAX_WIRE_BYTES",
    "MAX_WIRE_DEPTH",
    "Limits",
    "check_depth",
    "json_depth",
    "too_large",
]

#: The largest message an engine carries by default: NATS's default ``max_payload``
#: (1 MiB). The memory engine refuses the same, so a program that works in one process
#: works on NATS (``MemoryTransport(max_payload=...)`` to change it).
ENGINE_MAX_PAYLOAD = 1_048_576


def too_large(what: str, size: int, limit: int) -> LimitExceeded:
    """The error for a message of ``size`` bytes over an engine's ``limit``.

    Example::

        if len(payload) > ENGINE_MAX_PAYLOAD:
            raise too_large("request to bob", len(payload), ENGINE_MAX_PAYLOAD)
    """
    return LimitExceeded(
        f"{what}: {size} bytes, over the transport's max_payload of {limit} bytes (NATS's "
        "default, the same on every transport); send a reference (a blackboard key, a "
        "URL) instead of the data",
        limit="max_payload",
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
        headers = env.headers
        depth = self.max_depth
        max_payload = self.max_payload
        if (
            not headers
            and (depth is None or size <= 2 * depth)
            and (max_payload is None or size <= max_payload)
        ):
            return  # a small message without headers: nothing can be over (the hot path)
        who = f"message {env.id} from {env.sender!r}"
        if max_payload is not None and size > max_payload:
            raise LimitExceeded(
                f"{who}: payload is {size} bytes, over max_payload={self.max_payload}; "
                "send a reference (a blackboard key, a URL) instead of the data",
                limit="max_payload",
            )
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
