"""Long-running work's shared vocabulary: progress reports and the frames around a stream.

The serving side (the host, which runs handlers) and the calling side (direct
messages, which opens streams) build and read the same frames; both import them
from here. The protocol is in ``docs/streams-and-tasks.md``.
"""

from __future__ import annotations

import time

import msgspec

from agentcomm.core.envelope import Envelope, ErrorInfo, Kind, new_id

__all__ = ["DEFAULT_WINDOW", "MAX_WINDOW", "WINDOW_HEADER", "Progress", "frame", "progress_payload"]

#: Chunks a stream's caller buffers (the producer's initial credit) by default.
DEFAULT_WINDOW = 64
#: The largest window a caller may ask for (and a producer grants itself).
MAX_WINDOW = 4096
#: The header of a ``stream`` envelope that carries the caller's window.
WINDOW_HEADER = "agentcomm-window"


class Progress(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A handler's report of how far it got: ``done`` of ``total`` (if known), and a note.

    Handlers send it with ``await ctx.progress(done, total, message)``; callers get it
    through ``on_progress`` (``request``, ``stream``) or ``Stream.progress``.

    Example::

        p = Progress(done=3, total=10, message="page 3")
        assert p.fraction == 0.3
    """

    done: float
    total: float | None = None
    message: str | None = None

    @property
    def fraction(self) -> float | None:
        """``done / total`` when the total is known and positive, else ``None``.

        Example::

            assert Progress(done=1, total=4).fraction == 0.25
        """
        if self.total is None or self.total <= 0:
            return None
        return self.done / self.total


_encode = msgspec.json.Encoder().encode


def frame(
    kind: Kind,
    about: Envelope,
    sender: str,
    *,
    payload: bytes | msgspec.Raw | None = None,
    sequence: int | None = None,
    error: ErrorInfo | None = None,
) -> Envelope:
    """A frame of kind ``kind`` that belongs to the message ``about``.

    Sent back to ``about``'s sender (chunks, progress, end) or on to its recipient
    (credit, cancel), with ``about``'s id as its correlation id.

    Example::

        chunk = frame("chunk", stream_env, "writer", payload=b'"hello"', sequence=1)
    """
    if kind in ("chunk", "progress", "end"):  # back to the caller: kept small
        return Envelope(
            id=new_id(),
            kind=kind,
            sender=sender,
            recipient=about.sender,
            correlation_id=about.id,
            payload=msgspec.Raw(b"null" if payload is None else payload),
            sequence=sequence,
            error=error,
            created=time.time(),
        )
    return Envelope(  # on to the agent doing the work: its policy checks the handler
        id=new_id(),
        kind=kind,
        sender=sender,
        recipient=about.recipient,
        handler=about.handler,
        correlation_id=about.id,
        causation_id=about.id,
        traceparent=about.traceparent,
        payload=msgspec.Raw(b"null" if payload is None else payload),
        sequence=sequence,
        error=error,
        created=time.time(),
    )


def progress_payload(done: float, total: float | None, message: str | None) -> bytes:
    """The JSON payload of a ``progress`` frame.

    Example::

        assert progress_payload(1, 2, None) == b'{"done":1,"total":2}'
    """
    return _encode(Progress(done=done, total=total, message=message))
