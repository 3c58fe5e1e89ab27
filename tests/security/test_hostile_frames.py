"""Hostile input never escapes as anything but a typed error (issue 18, decoding).

Decoders, payload codecs, the in-memory transport's public API and the blackboard
(on every transport) get deep, huge, truncated, non-UTF-8 and wrongly typed input;
only :class:`ValidationError` (or its :class:`DecodeError`) comes out, and the
runtime keeps serving. The NATS side, with a raw attacker, is tests/security/test_hostile_nats.py.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

import msgspec
import pytest

from agentcomm import (
    Agent,
    ConfigurationError,
    DecodeError,
    Envelope,
    Limits,
    UnsupportedVersion,
    ValidationError,
    decode_envelope,
)
from agentcomm.core.envelope import (
    SUPPORTED_VERSIONS,
    decode_guarded,
    encode_envelope,
    invalid_frame,
    invalid_frame_bytes,
    new_id,
)
from agentcomm.core.limits import MAX_PAYLOAD_DEPTH, MAX_WIRE_DEPTH, check_depth, json_depth
from agentcomm.core.rejects import Rejects
from agentcomm.core.schema import codec_for
from agentcomm.pubsub.partitions import event_subject
from agentcomm.testing.extras import require_module
from agentcomm.testing.fixtures import MakeRuntime
from agentcomm.testing.waits import wait_dead_letters

from .hostile import DEEP, PAYLOADS, frames, until


# -- the decoder -----------------------------------------------------------------------------
def test_the_frame_of_the_issue_is_a_decode_error_not_a_recursion_error() -> None:
    for depth in (300, 1000, 10_000, 100_000):
        frame = b'{"a":' * depth + b"1" + b"}" * depth
        with pytest.raises(DecodeError, match="deeper than 256 levels"):
            decode_envelope(frame)
    with pytest.raises(DecodeError, match="deeper than 256"):
        decode_envelope(DEEP)


def test_ten_thousand_hostile_frames_raise_only_decode_error() -> None:
    rng = random.Random(18)
    seen: dict[str, int] = {}
    start = time.perf_counter()
    for category, frame in frames(rng, 10_000, big=2):
        with pytest.raises(DecodeError):
            decode_envelope(frame)
        seen[category] = seen.get(category, 0) + 1
    assert time.perf_counter() - start < 30  # linear: no quadratic depth scan
    assert set(seen) >= {"random", "truncated", "wrong_type", "version", "missing", "deep"}
    assert set(seen) >= {"utf8", "number", "nan", "not_object", "big"}


@pytest.mark.parametrize(
    "frame",
    [
        # brackets inside strings are data, also with escaped quotes and backslashes
        b'{"id": "' + b"[" * 5000 + b'", "kind": "event", "sender": "a"}',
        b'{"id": "\\"' + b"{" * 5000 + b'\\\\", "kind": "event", "sender": "a"}',
        b'{"id": "x", "kind": "event", "sender": "a", "headers": {"k": "'
        + b"[{" * 3000
        + b'\\""}}',
        # exactly at the wire limit: the envelope is level 1
        b'{"id": "x", "kind": "event", "sender": "a", "payload": '
        + b"[" * (MAX_WIRE_DEPTH - 1)
        + b"]" * (MAX_WIRE_DEPTH - 1)
        + b"}",
    ],
)
def test_frames_with_many_brackets_that_are_not_deep_still_decode(frame: bytes) -> None:
    assert decode_envelope(frame).sender == "a"


def test_one_level_over_the_wire_limit_is_refused() -> None:
    frame = (
        b'{"id": "x", "kind": "event", "sender": "a", "payload": '
        + b"[" * MAX_WIRE_DEPTH
        + b"]" * MAX_WIRE_DEPTH
        + b"}"
    )
    with pytest.raises(DecodeError, match="deeper than 256"):
        decode_envelope(frame)


class Pair(msgspec.Struct):
    a: int
    b: int


def test_decode_guarded_turns_every_decoder_failure_into_decode_error() -> None:
    def raising(exc: BaseException) -> Any:
        def decode(data: bytes) -> Any:
            raise exc

        return decode

    failures: list[BaseException] = [
        RecursionError("deep"),
        UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"),
        OverflowError("big"),
        ValueError("int too long"),
        TypeError("odd"),
        msgspec.DecodeError("bad json"),
        msgspec.ValidationError("wrong type"),
    ]
    for exc in failures:
        with pytest.raises(DecodeError, match="record"):
            decode_guarded(raising(exc), b"{}", "record")
    decoder = msgspec.json.Decoder(Pair).decode
    for data in PAYLOADS[:11]:
        with pytest.raises(DecodeError):
            decode_guarded(decoder, data, "record")


# -- depth and size -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "depth"),
    [
        (b'["\\\\"]', 1),  # an escaped backslash before the closing quote
        (b'["\\\\\\"[[["]', 1),  # backslash, escaped quote, brackets still in the string
        (b'["a"]' * 40_000, 1),  # crosses the chunks of the string pass
        (b'["' + b"[" * 70_000 + b'"]', 1),  # a string longer than a chunk
        (b'["\xff[["]', 1),  # not UTF-8: still bytes
        (b'"[[[', 0),  # an unterminated string runs to the end
        (b"[[[]]][[]]", 3),
        (b"{[{[{}]}]}", 5),
    ],
)
def test_json_depth_reads_strings_and_escapes_as_a_decoder_does(text: bytes, depth: int) -> None:
    assert json_depth(text) == depth


def test_json_depth_is_linear_on_hostile_shapes() -> None:
    size = 2 * 1024 * 1024
    shapes = [
        b"[" * size,
        b"[]" * (size // 2),
        b'"' + b'\\"' * (size // 2),  # one string of escaped quotes (was quadratic)
        b'["' * (size // 2),
        (b"[" * 200 + b"]" * 200) * (size // 400),
        (b"[" * 9 + b"]" * 9) * (size // 18),
    ]
    for shape in shapes:
        start = time.perf_counter()
        json_depth(shape)
        assert time.perf_counter() - start < 2.0, shape[:20]


def test_check_depth_is_cheap_for_shallow_input_and_refuses_deep_or_huge(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    check_depth(b"[1]" * 100, "frame")  # 100 brackets: no scan needed
    check_depth(b"[" + b"[1]," * 10_000 + b"[1]]", "frame")  # many, but shallow
    check_depth(memoryview(b"[" * MAX_WIRE_DEPTH), "frame")
    with pytest.raises(DecodeError, match="frame nests deeper"):
        check_depth(bytearray(b"[" * (MAX_WIRE_DEPTH + 1)), "frame")
    with pytest.raises(DecodeError, match="deeper"):
        check_depth("[" * 1000, "frame")
    monkeypatch.setattr("agentcomm.core.depth.MAX_WIRE_BYTES", 1000)
    with pytest.raises(DecodeError, match="over the wire limit of 1000 bytes"):
        check_depth(b" " * 1001, "frame")


def test_limits_stay_below_the_wire_limits() -> None:
    assert Limits(max_depth=MAX_PAYLOAD_DEPTH).max_depth == MAX_PAYLOAD_DEPTH
    with pytest.raises(ConfigurationError, match="max_depth=241 is over 240"):
        Limits(max_depth=MAX_PAYLOAD_DEPTH + 1)
    with pytest.raises(ConfigurationError, match="max_payload"):
        Limits(max_payload=1 << 30)


# -- wire version ------------------------------------------------------------------------------
@pytest.mark.parametrize("version", [0, 2, 999, -1, 2**40])
def test_an_unknown_wire_version_is_refused_naming_the_versions_understood(version: int) -> None:
    frame = b'{"id": "1", "kind": "event", "sender": "a", "v": %d}' % version
    with pytest.raises(UnsupportedVersion) as info:
        decode_envelope(frame)
    assert isinstance(info.value, DecodeError)
    assert info.value.version == version
    assert info.value.supported == SUPPORTED_VERSIONS == (1,)
    assert "understands only wire version 1" in str(info.value)


def test_version_one_explicit_or_omitted_decodes() -> None:
    assert decode_envelope(b'{"id": "1", "kind": "event", "sender": "a", "v": 1}').v == 1
    assert decode_envelope(b'{"id": "1", "kind": "event", "sender": "a"}').v == 1
    env = Envelope(id="1", kind="event", sender="a")
    assert b'"v"' not in encode_envelope(env)  # the default is omitted on the wire


# -- payload codecs -------------------------------------------------------------------------
def test_payload_codecs_refuse_hostile_payloads_with_validation_error() -> None:
    pydantic = require_module("pydantic")

    class PairModel(pydantic.BaseModel):  # type: ignore[misc,name-defined]
        a: int
        b: int

    hostile = PAYLOADS[:8]  # deep, unterminated, huge numbers, NaN, not UTF-8, truncated
    for tp in (Pair, PairModel, dict[str, int], list[int], Any):
        codec = codec_for(tp)
        for payload in PAYLOADS:
            try:
                codec.decode(payload)  # nothing but ValidationError may come out
            except ValidationError:
                continue
            if payload in hostile:
                pytest.fail(f"{tp} accepted {payload[:40]!r}")


# -- the in-memory transport's public API ---------------------------------------------------
def _calc() -> Agent:
    calc = Agent("calc")

    @calc.handler
    async def add(a: int, b: int) -> int:
        return a + b

    return calc


def _request(payload: bytes, kind: str = "request") -> Envelope:
    return Envelope(
        id=new_id(),
        kind=kind,  # type: ignore[arg-type]
        sender="mallory",
        recipient="calc",
        handler="add",
        payload=msgspec.Raw(payload),
        deadline=time.time() + 10,
    )


async def test_hostile_payloads_through_the_memory_transport_get_validation_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from agentcomm import Runtime

    seen: list[int] = []
    audited = asyncio.Event()
    auditor = Agent("auditor")

    @auditor.on("orders.*")
    async def audit(a: int, b: int) -> None:
        seen.append(a + b)
        audited.set()

    with caplog.at_level(logging.WARNING):
        async with Runtime(agents=[_calc(), auditor]) as rt:
            me = rt.agent("me")
            for payload in PAYLOADS:
                resp = await rt.transport.request(_request(payload), 10)
                assert resp.error is not None
                assert resp.error.code == "validation", resp.error
                await rt.transport.send(_request(payload, "notification"))
                with pytest.raises(ValidationError):
                    await me.request("calc", "add", msgspec.Raw(payload))
                event = Envelope(
                    id=new_id(),
                    kind="event",
                    sender="mallory",
                    topic="orders.created",
                    payload=msgspec.Raw(payload),
                )
                await rt.transport.append("EVENTS", event, subject=event_subject(event))
            await me.publish("orders.created", {"a": 1, "b": 2})
            assert await me.request("calc", "add", {"a": 2, "b": 3}) == 5
            dls = await wait_dead_letters(rt, len(PAYLOADS), timeout=20)
            await asyncio.wait_for(audited.wait(), 20)
            assert len(dls) == len(PAYLOADS)
            assert {dl.reason for dl in dls} == {"invalid"}
            assert seen == [3]
            stats = {a.name: a for a in rt.statistics().agents}
            assert stats["calc"].rejected == 3 * len(PAYLOADS)
            assert rt.running
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


# -- the blackboard, on every transport ---------------------------------------------------------
def _record(value: bytes) -> bytes:
    return b'{"created":1.0,"updated":1.0,"author":"mallory","value":' + value + b"}"


HOSTILE_VALUES: dict[str, bytes] = {
    "deep": DEEP,
    "deep_record": _record(b"[" * 5000 + b"]" * 5000),
    "open": b"[" * 20_000,
    "not_json": b"\xff\xfe garbage",
    "truncated": _record(b'{"a": 1')[:-1],
    "huge_int": _record(b"1" + b"0" * 5000),
    "nan": _record(b"NaN"),
    "bad_utf8": _record(b'"\xc3\x28"'),
    "not_a_record": b'{"value": 1}',
    "empty": b"",
}


async def test_hostile_blackboard_values_are_typed_errors_and_listings_go_on(
    make_runtime: MakeRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        async with make_runtime() as rt:
            board = rt.board
            changes: list[str] = []
            sub = await board.subscribe("h.", lambda c: changes.append(c.key))
            async with board.watch("h.", snapshot=False) as watch:
                await board.write("h.good", {"ok": True})
                for name, data in HOSTILE_VALUES.items():
                    await rt.transport.kv_put("blackboard", f"h.{name}", data)
                await board.write("h.last", 1)
                got: list[str] = []
                refused = 0
                async with asyncio.timeout(20):
                    while "h.last" not in got:
                        try:
                            got.append((await watch.__anext__()).key)
                        except ValidationError:
                            refused += 1
            assert got == ["h.good", "h.last"]
            assert refused == len(HOSTILE_VALUES)
            for name in HOSTILE_VALUES:
                with pytest.raises(ValidationError, match=f"h.{name}"):
                    await board.read(f"h.{name}")
            with pytest.raises(DecodeError, match="not a blackboard record"):
                await board.read("h.deep")
            listed = await board.read_prefix("h.")
            assert sorted(listed) == ["h.good", "h.last"]
            assert (await board.read_prefix("h.", type=int)).keys() == {"h.last"}
            await board.write("h.deep", 2)  # a writer can always repair the key
            assert [c.value for c in await board.history("h.deep")] == [2]
            assert (await board.read("h.deep")).value == 2  # type: ignore[union-attr]
            await until(lambda: "h.deep" in changes and sub.failures >= len(HOSTILE_VALUES))
            assert sub.active
            assert changes == ["h.good", "h.last", "h.deep"]
            stats = board.statistics()
            assert stats.rejected >= 3 * len(HOSTILE_VALUES)
            assert rt.statistics().rejected_frames["blackboard"] == stats.rejected
            assert rt.running
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


async def test_values_no_reader_could_decode_are_never_written(make_runtime: MakeRuntime) -> None:
    deep: Any = 1
    for _ in range(MAX_WIRE_DEPTH):
        deep = [deep]
    async with make_runtime() as rt:
        with pytest.raises(ValidationError, match="deeper than 256"):
            await rt.board.write("k", deep)
        await rt.board.write("k", 1)  # now the key is known: the fast path checks too
        with pytest.raises(ValidationError, match="deeper than 256"):
            await rt.board.write("k", deep)
        with pytest.raises(ValidationError, match="deeper than 256"):
            await rt.board.update("k", lambda _: deep)
        assert (await rt.board.read("k")).value == 1  # type: ignore[union-attr]


# -- dead letters of frames that are not envelopes, and the counter -------------------------
def test_a_stand_in_keeps_the_raw_bytes_of_a_frame() -> None:
    frame = b"\xff\x00[" * 10
    env = invalid_frame(frame, topic="orders.created", sequence=7)
    assert invalid_frame_bytes(env) == frame
    assert env.headers["agentcomm-invalid-frame"] == str(len(frame))
    assert decode_envelope(encode_envelope(env)) == env  # it is itself a valid envelope
    big = invalid_frame(b"x" * 100_000, topic="t")
    assert invalid_frame_bytes(big) == b"x" * 65_536
    assert big.headers["agentcomm-invalid-frame"] == "100000"
    assert invalid_frame_bytes(Envelope(id="1", kind="event", sender="a")) is None


def test_refused_frames_are_counted_and_logged_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rejects = Rejects(logging.getLogger("agentcomm.test"), interval=3600)
    with caplog.at_level(logging.WARNING, logger="agentcomm.test"):
        for i in range(1000):
            rejects.add("request", f"subject.{i}", "bad\nframe")
        rejects.add("event", "EVENTS #1", "bad")
    assert rejects.snapshot() == {"request": 1000, "event": 1}
    assert rejects.total() == 1001
    assert rejects.total("event", "stream") == 1
    assert [r.getMessage().split(";")[0] for r in caplog.records] == [
        "refused 1 request frame (not decodable, never fatal)",
        "refused 1 event frame (not decodable, never fatal)",
    ]
    assert "\n" not in caplog.records[0].getMessage()
    caplog.clear()
    rejects.interval = 0.0
    with caplog.at_level(logging.WARNING, logger="agentcomm.test"):
        rejects.add("request", "subject.x", "bad")
    assert "refused 1000 request frames in the last" in caplog.records[0].getMessage()
