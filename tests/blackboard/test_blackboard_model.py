"""Hypothesis stateful test: the blackboard against a plain-dict model.

Random sequences of read / write / compare-and-set (current and stale) / create /
delete / history / read_prefix must give exactly what a dict of
``key -> (value, revision)`` predicts, with revisions strictly increasing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from agentcomm import Runtime
from agentcomm.blackboard.board import Blackboard
from agentcomm.core.errors import KeyExists, RevisionConflict

T = TypeVar("T")

KEYS = st.sampled_from(["a", "a.b", "a.c", "b.x"])
VALUES = st.one_of(st.integers(-5, 5), st.text(max_size=3), st.lists(st.integers(0, 3), max_size=2))
HISTORY = 3


class BoardMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.rt = Runtime()
        self.run(self.rt.__aenter__())
        self.board = Blackboard(self.rt, bucket="model", history=HISTORY)
        self.model: dict[str, tuple[Any, int]] = {}
        self.last_op: dict[str, tuple[str, int]] = {}  # key -> (operation, revision)
        self.top = 0

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        try:
            self.run(self.rt.__aexit__(None, None, None))
        finally:
            self.loop.close()

    def _advanced(self, rev: int) -> int:
        assert rev > self.top, f"revision {rev} does not increase past {self.top}"
        self.top = rev
        return rev

    def _check_current(self, key: str, current: Any) -> None:
        if key in self.model:
            assert current is not None
            assert (current.value, current.revision) == self.model[key]
        else:
            assert current is None

    @rule(key=KEYS, value=VALUES)
    def write(self, key: str, value: Any) -> None:
        rev = self._advanced(self.run(self.board.write(key, value)))
        self.model[key] = (value, rev)
        self.last_op[key] = ("put", rev)

    @rule(key=KEYS, value=VALUES)
    def cas_with_current_revision(self, key: str, value: Any) -> None:
        if key not in self.model:
            return
        rev = self.run(self.board.write(key, value, expected_revision=self.model[key][1]))
        self.model[key] = (value, self._advanced(rev))
        self.last_op[key] = ("put", rev)

    @rule(key=KEYS, value=VALUES, back=st.integers(1, 3))
    def cas_with_stale_revision(self, key: str, value: Any, back: int) -> None:
        current = self.model.get(key)
        stale = (current[1] if current else self.top + 1) - back
        if stale < 1:
            return
        try:
            self.run(self.board.write(key, value, expected_revision=stale))
        except RevisionConflict as exc:
            self._check_current(key, exc.current)
        else:
            raise AssertionError(f"stale revision {stale} of {key!r} was accepted")

    @rule(key=KEYS, value=VALUES)
    def create(self, key: str, value: Any) -> None:
        try:
            rev = self.run(self.board.create(key, value))
        except KeyExists as exc:
            assert key in self.model
            self._check_current(key, exc.current)
        else:
            assert key not in self.model
            self.model[key] = (value, self._advanced(rev))
            self.last_op[key] = ("put", rev)

    @rule(key=KEYS)
    def delete(self, key: str) -> None:
        rev = self._advanced(self.run(self.board.delete(key)))
        self.model.pop(key, None)
        self.last_op[key] = ("delete", rev)

    @rule(key=KEYS)
    def read(self, key: str) -> None:
        self._check_current(key, self.run(self.board.read(key)))

    @rule()
    def read_prefix(self) -> None:
        got = self.run(self.board.read_prefix("a."))
        want = {k: v for k, v in self.model.items() if k.startswith("a.")}
        assert {k: (e.value, e.revision) for k, e in got.items()} == want

    @invariant()
    def history_is_bounded_and_ends_with_the_last_change(self) -> None:
        for key, (op, rev) in self.last_op.items():
            hist = self.run(self.board.history(key))
            assert 1 <= len(hist) <= HISTORY
            revs = [c.revision for c in hist]
            assert revs == sorted(set(revs))
            assert (hist[-1].operation, hist[-1].revision) == (op, rev)
            if op == "put":
                assert hist[-1].value == self.model[key][0]


BoardMachine.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestBoardAgainstDict = BoardMachine.TestCase
