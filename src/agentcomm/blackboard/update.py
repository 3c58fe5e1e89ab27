"""The read-modify-write loop behind ``Blackboard.update`` (compare-and-set, retried).

Internal to :mod:`agentcomm.blackboard`: :func:`compare_and_set_loop` reads the key,
applies the caller's function, writes with the revision it read and, when another
writer won the race, backs off (a little, randomised) and tries again.
"""

from __future__ import annotations

import asyncio
import inspect
import random
import time
from collections.abc import Callable
from typing import Any

from agentcomm.blackboard.core import Entry, _Core, check_key
from agentcomm.core.errors import ConfigurationError, RevisionConflict
from agentcomm.transports.base import KVStore

__all__ = ["compare_and_set_loop"]


async def compare_and_set_loop(
    core: _Core,
    author: str,
    cause: str | None,
    key: str,
    fn: Callable[[Any], Any],
    type: Any,
    max_attempts: int,
    ttl: float | None,
) -> Entry[Any]:
    """Update ``key`` with ``fn`` as ``author``; see ``Blackboard.update`` (the public API)."""
    if max_attempts < 1:
        raise ConfigurationError(f"max_attempts must be at least 1, got {max_attempts}")
    tracing = core.rt.tracing
    check_key(key)
    core.rt.authorize(author, "write", key)
    core.rt.authorize(author, "read", key)
    if ttl is not None:
        core.check_ttl(ttl)
    kv = await core.ready()
    bucket = core.bucket
    for attempt in range(1, max_attempts + 1):
        raw_cur = await kv.kv_get(bucket, key)
        cur = None if raw_cur is None else core.decode(raw_cur, type)
        new = fn(None if cur is None else cur.value)
        if inspect.isawaitable(new):
            new = await new
        now = time.time()
        created = now if cur is None else cur.created
        trace = None if tracing is None else tracing.current_traceparent()[0]
        data = core.encode(key, new, author, created, now, ttl, trace, cause)
        try:
            if cur is None:
                rev = await kv.kv_put(bucket, key, data, create_only=True, ttl=ttl)
            else:
                rev = await kv.kv_put(bucket, key, data, expected_revision=cur.revision, ttl=ttl)
        except RevisionConflict as exc:
            core.conflicts += 1
            if attempt == max_attempts:
                err = RevisionConflict(
                    key,
                    None if cur is None else cur.revision,
                    core.decode_or_none(exc.current, type),
                )
                err.args = (
                    f"key {key!r}: update lost the race {max_attempts} times; raise "
                    "max_attempts or have fewer writers share this key",
                )
                raise err from None
            await _backoff(attempt)
            continue
        core.remember(key, rev, now if cur is None else cur.created)
        core.writes += 1
        return core.decode(
            KVStore.Entry(key=key, value=data, revision=rev, operation="put", timestamp=now),
            type,
        )
    raise AssertionError("unreachable")  # pragma: no cover


async def _backoff(attempt: int) -> None:
    if attempt == 1:
        await asyncio.sleep(0)
    else:
        await asyncio.sleep(random.uniform(0, min(0.05, 0.0002 * 2**attempt)))
