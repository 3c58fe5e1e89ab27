"""How a command ends when something expected goes wrong: one line, the right exit code.

``main`` hands every exception a command raises to :func:`report`. A typed error
(:class:`~agentcomm.errors.AgentCommError`) already says what to fix; a missing
optional dependency gets the install command; a module the user named that does not
import, an unreachable server or a reader that went away (``| head``) each get one line
too. Only a real bug (anything else) keeps its traceback.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

from agentcomm.core.errors import AgentCommError

__all__ = ["EXTRAS", "PipeSafe", "report"]

#: Top-level modules of the optional extras, and the extra that installs each.
EXTRAS = {
    "nats": "nats",
    "mcp": "mcp",
    "rich": "cli",
    "opentelemetry": "otel",
    "prometheus_client": "otel",
    "pydantic": "pydantic",
    "starlette": "dashboard",
    "uvicorn": "dashboard",
    "a2a": "a2a",
    "cryptography": "nats",
}


def _leaf(exc: BaseException) -> BaseException:
    """The first real exception inside exception groups (a task group's failures)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        typed = [e for e in exc.exceptions if isinstance(e, AgentCommError)]
        exc = typed[0] if typed else exc.exceptions[0]
    return exc


def report(exc: BaseException, command: str, err: TextIO | None = None) -> int | None:
    """Print ``exc`` as one line for ``agentcomm <command>``; the exit code, or ``None``
    when it is a bug whose traceback the user should see (re-raise it).

    Example::

        try: return func(args)
        except Exception as exc:
            code = report(exc, "run")
            if code is None: raise
            return code
    """
    err = err or sys.stderr
    exc = _leaf(exc)
    where = f"agentcomm {command}".rstrip()
    if isinstance(exc, BrokenPipeError):
        # The reader went away (`agentcomm tail | head`): not a failure of ours. Point
        # stdout at /dev/null so the interpreter's final flush does not complain.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    if isinstance(exc, KeyboardInterrupt):
        return 130
    if isinstance(exc, AgentCommError):
        print(f"{where}: {exc}", file=err)
        return 1
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        top = exc.name.split(".")[0]
        if top in EXTRAS:
            print(
                f"{where}: this needs the {EXTRAS[top]!r} extra: "
                f"pip install 'agentcomm[{EXTRAS[top]}]'",
                file=err,
            )
        else:
            print(
                f"{where}: cannot import {exc.name!r} (is it on the Python path? a file is "
                "named as path/to/file.py:attr)",
                file=err,
            )
        return 1
    if isinstance(exc, (ConnectionError, TimeoutError)):
        print(f"{where}: {type(exc).__name__}: {exc or 'timed out'}", file=err)
        return 1
    return None


class PipeSafe:
    """A text stream over ``stream`` for narrating programs (the demo) piped into
    ``head``: once the reader has gone, writes from agents' handlers are dropped
    quietly (no handler "fails"), and the next write of the narrating task raises
    :class:`BrokenPipeError`, which :func:`report` turns into a quiet exit.

    Example::

        out = PipeSafe(sys.stdout)   # inside the coroutine that narrates
    """

    def __init__(self, stream: TextIO) -> None:
        import asyncio

        self._stream = stream
        self._owner = asyncio.current_task()
        self.broken = False

    def write(self, text: str) -> int:
        import asyncio

        if not self.broken:
            try:
                self._stream.write(text)
                self._stream.flush()
                return len(text)
            except BrokenPipeError:
                self.broken = True
        if asyncio.current_task() is self._owner:
            raise BrokenPipeError("the reader of this output has gone")
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self.broken = True
