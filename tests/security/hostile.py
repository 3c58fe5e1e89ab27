"""Hostile input shared by the hostile-frame tests (memory and NATS).

:func:`frames` makes byte strings that are **not** envelopes, by category: random
bytes, truncated JSON, wrong types, unknown wire versions, missing fields, deep
nesting, invalid UTF-8, numbers out of range, NaN and, on request, multi-megabyte
frames. :data:`PAYLOADS` are payloads that no handler taking ``(a: int, b: int)``
accepts. Everything is made from a seeded :class:`random.Random`, so a failure
can be reproduced.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable

#: The issue's frame: ten thousand nested objects (60 KB).
DEEP = b'{"a":' * 10000 + b"1" + b"}" * 10000

_BASE = {
    "id": "e1",
    "kind": "request",
    "sender": "mallory",
    "recipient": "calc",
    "handler": "add",
    "payload": {"a": 1, "b": 2},
    "created": 1.0,
    "headers": {"k": "v"},
}
_WRONG = [
    ("id", 5),
    ("id", None),
    ("kind", "shout"),
    ("kind", 1),
    ("sender", ["a"]),
    ("sender", None),
    ("recipient", {"x": 1}),
    ("headers", {"k": 1}),
    ("headers", [1, 2]),
    ("created", "yesterday"),
    ("deadline", "soon"),
    ("sequence", 1.5),
    ("sequence", "1"),
    ("error", "oops"),
    ("error", {"code": "x"}),
    ("v", "1"),
    ("v", 1.5),
]
_VERSIONS = [0, 2, 3, 999, -1, 2**40]


def _envelope(**changes: object) -> bytes:
    doc = dict(_BASE)
    doc.update(changes)
    return json.dumps(doc).encode()


def _without(field: str) -> bytes:
    return json.dumps({k: v for k, v in _BASE.items() if k != field}).encode()


def _deep(rng: random.Random) -> bytes:
    n = rng.choice([257, 300, 1000, 5000, 10000, 20000])
    shape = rng.randrange(4)
    if shape == 0:
        return b"[" * n + b"]" * n
    if shape == 1:
        return b'{"a":' * n + b"1" + b"}" * n
    if shape == 2:  # deep inside an otherwise valid envelope
        head = b'{"id": "e1", "kind": "request", "sender": "m", "handler": "add", "payload": '
        return head + b"[" * n + b"]" * n + b"}"
    return b"[" * n  # unterminated: decoders recurse before they see the end


def frames(rng: random.Random, n: int, *, big: int = 0) -> list[tuple[str, bytes]]:
    """``n`` hostile frames (plus ``big`` frames of 5 MB), as ``(category, bytes)``."""
    valid = _envelope()
    makers = {
        "random": lambda: rng.randbytes(rng.randint(0, 300)),
        "truncated": lambda: valid[: rng.randrange(len(valid))],
        "wrong_type": lambda: _envelope(**dict([rng.choice(_WRONG)])),
        "version": lambda: _envelope(v=rng.choice(_VERSIONS)),
        "missing": lambda: _without(rng.choice(["id", "kind", "sender"])),
        "deep": lambda: _deep(rng),
        "utf8": lambda: (
            valid.replace(b'"mallory"', b'"mal\xff\xfelory"', 1)
            if rng.random() < 0.5
            else valid.replace(b'"v"}', b'"\xc3"}')
        ),
        "number": lambda: valid.replace(
            b'"created": 1.0',
            rng.choice([b'"created": 1e999', b'"created": -1e400'])
            if rng.random() < 0.5
            else b'"created": 1.0, "sequence": 1' + b"0" * rng.choice([4400, 5000]),
        ),
        "nan": lambda: valid.replace(
            b'"created": 1.0', rng.choice([b'"created": NaN', b'"created": Infinity'])
        ),
        "not_object": lambda: rng.choice([b"null", b"1", b'"x"', b"[]", b"true", b""]),
    }
    names = sorted(makers)
    out = [(name, makers[name]()) for name in names]  # every category at least once
    while len(out) < n:
        name = rng.choice(names)
        out.append((name, makers[name]()))
    for _ in range(big):
        size = 5 * 1024 * 1024
        out.append(("big", rng.choice([b"[" * size, b'{"id": "' + b"x" * size])))
    return out


#: Payloads that ``add(a: int, b: int)`` refuses, each for a different reason.
PAYLOADS: list[bytes] = [
    DEEP,
    b"[" * 10000,
    b"[" * 300 + b"]" * 300,
    b'{"a": 1' + b"0" * 5000 + b', "b": 1}',
    b'{"a": 1e999, "b": 1}',
    b'{"a": NaN, "b": 1}',
    b'{"a": "\xff", "b": 1}',
    b'{"a": 1, "b":',
    b'{"a": "one", "b": 2}',
    b'{"a": 1}',
    b"{}",
    b"null",
    b'"' + b"x" * 1_000_000 + b'"',
    b'{"a": 1, "b": 2, "c": 3}',
]


async def until(condition: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what or condition}")
        await asyncio.sleep(0.01)
