"""Random event sequences against an independent reference model of the event table.

The reference below is the DESIGN.md event table written out as plain data and a few
lines of Python; it never calls the engine. Hypothesis fires random events with random
arguments (progress in and out of range, decreasing, NaN; fail with strings and exceptions,
retryable True/False/None) under a random retry budget and a clock that jumps both ways,
and checks that the engine accepts exactly what the reference accepts and produces the
same snapshot.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from taskfsm import (
    IllegalTransition,
    InvalidArgument,
    RetryPolicy,
    TaskMachine,
    TaskPhase,
    TaskStatus,
)

# (phase, event) -> destination; fail has (retry destination, final destination).
TABLE: dict[tuple[str, str], str | tuple[str, str]] = {
    ("pending", "schedule"): "waiting",
    ("waiting", "start"): "running",
    ("running", "progress"): "running",
    ("running", "heartbeat"): "running",
    ("running", "complete"): "completed",
    ("pending", "fail"): ("waiting", "failed"),
    ("waiting", "fail"): ("waiting", "failed"),
    ("running", "fail"): ("waiting", "failed"),
    ("pending", "cancel"): "cancelled",
    ("waiting", "cancel"): "cancelled",
    ("running", "cancel"): "cancelled",
    ("failed", "restart"): "waiting",
    ("cancelled", "restart"): "waiting",
}
EVENTS = ["schedule", "start", "progress", "heartbeat", "complete", "fail", "cancel", "restart"]
# Arguments each event takes: (required, optional).
TAKES: dict[str, tuple[set[str], set[str]]] = {
    "progress": ({"value"}, set()),
    "fail": ({"error"}, {"retryable"}),
}


class Unsupported(Exception):
    """The policy's non-retryable error type."""


@attrs.frozen
class Ref:
    phase: str
    updated_at: int
    progress: float | None = None
    error_message: str | None = None
    retries: int = 0


class Rejected(Exception):
    def __init__(self, kind: type[Exception]) -> None:
        self.kind = kind


def ref_allowed(phase: str) -> set[str]:
    return {event for (src, event) in TABLE if src == phase}


def ref_valid_progress(value: object) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and not math.isnan(value)
        and 0 <= value <= 1
    )


def ref_apply(
    ref: Ref, event: str, kwargs: dict[str, Any], now: int, max_retries: int | None
) -> tuple[Ref, bool]:
    """The reference: the new snapshot and whether a failure->retry edge was taken."""
    dest = TABLE.get((ref.phase, event))
    if dest is None:
        raise Rejected(IllegalTransition)
    required, optional = TAKES.get(event, (set(), set()))
    if set(kwargs) - required - optional or required - set(kwargs):
        raise Rejected(InvalidArgument)
    stamp = max(now, ref.updated_at)
    progress, error, retries = ref.progress, ref.error_message, ref.retries
    if event == "start":
        progress = 0.0
    elif event == "progress":
        value = kwargs["value"]
        if not ref_valid_progress(value) or (progress is not None and value < progress):
            raise Rejected(InvalidArgument)
        progress = float(value)
    elif event == "complete":
        progress, error = 1.0, None
    elif event == "restart":
        progress, error, retries = None, None, 0
    elif event == "fail":
        failure = kwargs["error"]
        retryable = kwargs.get("retryable")
        if not isinstance(failure, (str, BaseException)) or not (
            retryable is None or isinstance(retryable, bool)
        ):
            raise Rejected(InvalidArgument)
        if retryable is None:
            retryable = not isinstance(failure, Unsupported)
        retry = retryable and (max_retries is None or retries < max_retries)
        assert isinstance(dest, tuple)
        text = failure if isinstance(failure, str) else str(failure) or type(failure).__name__
        progress, error = None, text
        if retry:
            return Ref(dest[0], stamp, progress, error, retries + 1), True
        return Ref(dest[1], stamp, progress, error, retries), False
    assert isinstance(dest, str)
    return Ref(dest, stamp, progress, error, retries), False


def as_ref(status: TaskStatus) -> Ref:
    return Ref(
        status.phase.value, status.updated_at, status.progress, status.error_message, status.retries
    )


class FakeClock:
    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


errors = (
    st.text(max_size=8)
    | st.builds(RuntimeError, st.text(min_size=1, max_size=8))
    | st.builds(Unsupported, st.text(max_size=8))
    | st.builds(TimeoutError)  # empty message
    | st.sampled_from([42, None, b"bytes"])  # not an error: rejected
)
retryables = st.none() | st.booleans() | st.sampled_from([0, 1, "yes"])


class EngineVersusReference(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.fsm = TaskMachine(clock=self.clock)
        self.max_retries: int | None = 2
        self.status = self.fsm.new()
        self.ref = as_ref(self.status)
        self.retry_edges = 0
        self.highest_updated_at = 0
        self.accepted = 0

    @initialize(
        max_retries=st.none() | st.integers(min_value=0, max_value=3),
        start=st.integers(min_value=0, max_value=2**41),
    )
    def setup(self, max_retries: int | None, start: int) -> None:
        self.clock.now = start
        self.max_retries = max_retries
        policy = RetryPolicy(max_retries=max_retries, non_retryable=Unsupported)
        self.fsm = TaskMachine(policy, self.clock)
        self.status = self.fsm.new()
        assert as_ref(self.status) == Ref("pending", start)
        self.ref = as_ref(self.status)
        self.highest_updated_at = self.status.updated_at

    def fire(self, event: str, kwargs: dict[str, Any], method: bool) -> None:
        try:
            expected, retried = ref_apply(self.ref, event, kwargs, self.clock.now, self.max_retries)
        except Rejected as rejected:
            assert not self.fsm.can(self.status, event, **kwargs)
            with pytest.raises(rejected.kind) as info:
                self.call(event, kwargs, method)
            if isinstance(info.value, IllegalTransition):
                assert info.value.event == event
                assert info.value.phase == self.ref.phase
                assert info.value.allowed == ref_allowed(self.ref.phase)
            return
        assert self.fsm.can(self.status, event, **kwargs)
        new = self.call(event, kwargs, method)
        assert as_ref(new) == expected, (event, kwargs)
        self.status, self.ref = new, expected
        # retries counts the failure->retry edges taken since the last restart.
        self.retry_edges = 0 if event == "restart" else self.retry_edges + retried
        self.accepted += 1

    def call(self, event: str, kwargs: dict[str, Any], method: bool) -> TaskStatus:
        if method and event in EVENTS:
            return getattr(self.fsm, event)(self.status, **kwargs)  # type: ignore[no-any-return]
        return self.fsm.apply(self.status, event, **kwargs)

    @rule(delta=st.integers(min_value=-(10**6), max_value=10**6))
    def clock_jumps(self, delta: int) -> None:
        self.clock.now = max(0, self.clock.now + delta)

    @rule(
        event=st.sampled_from(["schedule", "start", "heartbeat", "complete", "cancel", "restart"]),
        method=st.booleans(),
    )
    def no_argument_event(self, event: str, method: bool) -> None:
        self.fire(event, {}, method)

    @rule(event=st.sampled_from([*EVENTS, "explode"]), extra=st.sampled_from(["value", "x"]))
    def unexpected_argument(self, event: str, extra: str) -> None:
        kwargs: dict[str, Any] = {"value": 1.0} if event == "progress" else {}
        kwargs |= {"error": "boom"} if event == "fail" else {}
        kwargs[extra] = 0.5
        self.fire(event, kwargs, method=False)

    @rule(event=st.sampled_from(["progress", "fail"]))
    def missing_argument(self, event: str) -> None:
        self.fire(event, {}, method=False)

    @rule(data=st.data(), method=st.booleans())
    def progress(self, data: st.DataObject, method: bool) -> None:
        current = self.ref.progress if self.ref.progress is not None else 0.0
        value = data.draw(
            st.floats(min_value=-0.5, max_value=1.5)
            | st.floats(min_value=current, max_value=1.0)
            | st.sampled_from([current, math.nextafter(current, -1), 0, 1, True, math.nan])
            | st.sampled_from([math.inf, -math.inf, "0.5", None]),
            label="value",
        )
        self.fire("progress", {"value": value}, method)

    @rule(error=errors, retryable=retryables, method=st.booleans())
    def fail(self, error: object, retryable: object, method: bool) -> None:
        self.fire("fail", {"error": error, "retryable": retryable}, method)

    @rule(error=errors)
    def fail_without_retryable(self, error: object) -> None:
        self.fire("fail", {"error": error}, method=False)

    @invariant()
    def same_snapshot(self) -> None:
        assert as_ref(self.status) == self.ref
        assert self.fsm.allowed_events(self.status) == ref_allowed(self.ref.phase)

    @invariant()
    def retries_count_retry_edges_since_restart(self) -> None:
        assert self.status.retries == self.retry_edges
        if self.max_retries is not None:
            assert self.status.retries <= self.max_retries

    @invariant()
    def updated_at_is_monotonic(self) -> None:
        assert self.status.updated_at >= self.highest_updated_at
        self.highest_updated_at = self.status.updated_at

    @invariant()
    def snapshot_is_valid_and_round_trips(self) -> None:
        status = self.status
        rebuilt = TaskStatus(
            status.phase, status.updated_at, status.progress, status.error_message, status.retries
        )
        assert rebuilt == status
        assert TaskStatus.from_json(status.to_json()) == status
        assert isinstance(status.phase, TaskPhase)


EngineVersusReference.TestCase.settings = settings(
    max_examples=200, stateful_step_count=40, deadline=None
)
TestEngineVersusReference = EngineVersusReference.TestCase
