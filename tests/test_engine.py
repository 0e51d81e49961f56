"""TaskMachine: every row of the event table, every illegal pair, and the compiled table."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
from transitions import MachineError

from taskfsm import (
    CAN_RETRY,
    DEFAULT_LIFECYCLE,
    Edge,
    IllegalTransition,
    InvalidArgument,
    Lifecycle,
    RetryPolicy,
    TaskFSMError,
    TaskMachine,
    TaskPhase,
    TaskStatus,
)

P, W, R, F, C, X = (
    TaskPhase.PENDING,
    TaskPhase.WAITING,
    TaskPhase.RUNNING,
    TaskPhase.FAILED,
    TaskPhase.COMPLETED,
    TaskPhase.CANCELLED,
)
NOW = 5_000
BEFORE = 1_000

# The DESIGN.md event table: (phase, event) pairs that are legal, as plain data.
LEGAL: dict[str, set[TaskPhase]] = {
    "schedule": {P},
    "start": {W},
    "progress": {R},
    "heartbeat": {R},
    "complete": {R},
    "fail": {P, W, R},
    "cancel": {P, W, R},
    "restart": {F, X},
}
ALLOWED = {phase: {e for e, srcs in LEGAL.items() if phase in srcs} for phase in TaskPhase}
# Valid arguments per event, so that only the phase decides legality.
ARGS: dict[str, dict[str, Any]] = {"progress": {"value": 1.0}, "fail": {"error": "boom"}}


class FakeClock:
    """A settable clock in ms."""

    def __init__(self, now: int = NOW) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def machine(policy: RetryPolicy | None = None, now: int = NOW, **kw: Any) -> TaskMachine:
    return TaskMachine(policy, FakeClock(now), **kw)


def status(phase: TaskPhase, **kw: Any) -> TaskStatus:
    """A status in *phase* with every field set, so effects are visible."""
    fields: dict[str, Any] = {"progress": 0.4, "error_message": "earlier", "retries": 1}
    fields.update(kw)
    return TaskStatus(phase, BEFORE, **fields)


# -- new ------------------------------------------------------------------------------


def test_new() -> None:
    assert machine().new() == TaskStatus(P, NOW, None, None, 0)


def test_new_with_negative_clock_is_clamped_to_zero() -> None:
    assert machine(now=-5).new().updated_at == 0


def test_default_clock_is_wall_clock_ms() -> None:
    import time

    before = time.time_ns() // 1_000_000
    st = TaskMachine().new()
    after = time.time_ns() // 1_000_000
    assert before <= st.updated_at <= after
    assert type(st.updated_at) is int


# -- every row of the event table -------------------------------------------------------


def test_schedule() -> None:
    assert machine().schedule(status(P)) == TaskStatus(W, NOW, 0.4, "earlier", 1)


def test_start_sets_progress_zero() -> None:
    assert machine().start(status(W)) == TaskStatus(R, NOW, 0.0, "earlier", 1)
    assert machine().start(status(W, progress=None)).progress == 0.0


@pytest.mark.parametrize("value", [0.4, 0.5, 1.0, 1])
def test_progress_sets_value(value: float) -> None:
    new = machine().progress(status(R), value)
    assert new == TaskStatus(R, NOW, float(value), "earlier", 1)
    assert type(new.progress) is float


def test_progress_from_none() -> None:
    assert machine().progress(status(R, progress=None), 0.0).progress == 0.0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0.39, r"progress must not decrease: 0.4 -> 0.39"),
        (0.0, r"progress must not decrease: 0.4 -> 0.0"),
        (-0.1, r"progress must be within \[0, 1\], got -0.1"),
        (1.5, r"progress must be within \[0, 1\], got 1.5"),
        (2, r"progress must be within \[0, 1\], got 2"),
        (math.nan, r"progress must be within \[0, 1\], got nan"),
        (math.inf, r"progress must be within \[0, 1\], got inf"),
        (True, r"progress must be within \[0, 1\], got True"),
        ("0.5", r"progress must be within \[0, 1\], got '0.5'"),
        (None, r"progress must be within \[0, 1\], got None"),
    ],
)
def test_progress_rejected(value: Any, message: str) -> None:
    fsm = machine()
    running = status(R)
    with pytest.raises(InvalidArgument, match=message):
        fsm.progress(running, value)
    assert not fsm.can(running, "progress", value=value)


def test_heartbeat_changes_only_updated_at() -> None:
    assert machine().heartbeat(status(R)) == TaskStatus(R, NOW, 0.4, "earlier", 1)


def test_complete() -> None:
    assert machine().complete(status(R)) == TaskStatus(C, NOW, 1.0, None, 1)


@pytest.mark.parametrize("phase", [P, W, R])
def test_fail_retry_branch(phase: TaskPhase) -> None:
    new = machine().fail(status(phase), "connection reset")
    assert new == TaskStatus(W, NOW, None, "connection reset", 2)


@pytest.mark.parametrize("phase", [P, W, R])
def test_fail_final_branch(phase: TaskPhase) -> None:
    new = machine().fail(status(phase), "unsupported codec", retryable=False)
    assert new == TaskStatus(F, NOW, None, "unsupported codec", 1)


@pytest.mark.parametrize("phase", [P, W, R])
def test_cancel(phase: TaskPhase) -> None:
    assert machine().cancel(status(phase)) == TaskStatus(X, NOW, 0.4, "earlier", 1)


@pytest.mark.parametrize("phase", [F, X])
def test_restart(phase: TaskPhase) -> None:
    assert machine().restart(status(phase, retries=2)) == TaskStatus(W, NOW, None, None, 0)


@pytest.mark.parametrize(
    ("event", "kwargs", "method"),
    [
        ("schedule", {}, "schedule"),
        ("start", {}, "start"),
        ("progress", {"value": 0.5}, "progress"),
        ("heartbeat", {}, "heartbeat"),
        ("complete", {}, "complete"),
        ("fail", {"error": "boom"}, "fail"),
        ("fail", {"error": "boom", "retryable": False}, "fail"),
        ("cancel", {}, "cancel"),
        ("restart", {}, "restart"),
    ],
)
def test_apply_and_named_method_agree(event: str, kwargs: dict[str, Any], method: str) -> None:
    fsm = machine()
    phase = min(LEGAL[event], key=list(TaskPhase).index)
    st = status(phase)
    assert fsm.apply(st, event, **kwargs) == getattr(fsm, method)(st, **kwargs)
    assert fsm.can(st, event, **kwargs)
    assert event in fsm.allowed_events(st)


def test_the_input_status_is_untouched() -> None:
    st = status(R)
    copy = TaskStatus(st.phase, st.updated_at, st.progress, st.error_message, st.retries)
    machine().fail(st, "boom")
    assert st == copy


# -- fail: classification and the policy -----------------------------------------------


class Unsupported(Exception):
    pass


@pytest.mark.parametrize(
    ("error", "retryable", "dest"),
    [
        ("boom", None, W),
        ("boom", True, W),
        ("boom", False, F),
        (TimeoutError("slow"), None, W),
        (Unsupported("codec"), None, F),  # policy: non_retryable
        (Unsupported("codec"), True, W),  # the caller's word wins
        (TimeoutError("slow"), False, F),
    ],
)
def test_fail_classification(
    error: BaseException | str, retryable: bool | None, dest: TaskPhase
) -> None:
    fsm = machine(RetryPolicy(non_retryable=Unsupported))
    new = fsm.fail(status(R, retries=0), error, retryable)
    assert new.phase is dest
    assert new.retries == (1 if dest is W else 0)
    assert new.error_message == str(error)


def test_fail_error_message_from_exception() -> None:
    assert machine().fail(status(R), KeyError("asset")).error_message == "'asset'"
    assert machine().fail(status(R), RuntimeError("disk full")).error_message == "disk full"


def test_fail_with_empty_exception_message_names_its_type() -> None:
    assert machine().fail(status(R), TimeoutError()).error_message == "TimeoutError"
    assert machine().fail(status(R), "").error_message == ""


@pytest.mark.parametrize(
    ("max_retries", "retries", "dest"),
    [(0, 0, F), (2, 0, W), (2, 1, W), (2, 2, F), (2, 5, F), (None, 0, W), (None, 10**6, W)],
)
def test_fail_respects_the_retry_budget(
    max_retries: int | None, retries: int, dest: TaskPhase
) -> None:
    new = machine(RetryPolicy(max_retries=max_retries)).fail(status(R, retries=retries), "boom")
    assert new.phase is dest
    assert new.retries == retries + (dest is W)


def test_default_flow_retries_twice_then_fails() -> None:
    fsm = machine()
    st = fsm.start(fsm.schedule(fsm.new()))
    st = fsm.fail(st, "first")
    assert (st.phase, st.retries, st.error_message) == (W, 1, "first")
    st = fsm.fail(fsm.start(st), "second")
    assert (st.phase, st.retries, st.error_message) == (W, 2, "second")
    st = fsm.fail(fsm.start(st), "third")
    assert (st.phase, st.retries, st.error_message) == (F, 2, "third")


def test_restart_resets_the_retry_budget() -> None:
    fsm = machine(RetryPolicy(max_retries=1))
    st = fsm.fail(fsm.start(fsm.schedule(fsm.new())), "first")
    st = fsm.fail(fsm.start(st), "second")
    assert (st.phase, st.retries) == (F, 1)
    assert not fsm.can(st, "start")
    st = fsm.restart(st)
    assert st == TaskStatus(W, NOW, None, None, 0)
    st = fsm.fail(fsm.start(st), "again")  # a fresh budget: retried again
    assert (st.phase, st.retries) == (W, 1)


def test_successful_run_after_a_retry_keeps_the_count() -> None:
    fsm = machine()
    st = fsm.fail(fsm.start(fsm.schedule(fsm.new())), "flaky")
    st = fsm.complete(fsm.progress(fsm.start(st), 0.5))
    assert st == TaskStatus(C, NOW, 1.0, None, 1)


# -- illegal events ----------------------------------------------------------------------

ILLEGAL = [
    (phase, event)
    for phase, event in itertools.product(TaskPhase, LEGAL)
    if phase not in LEGAL[event]
]


def test_illegal_pairs_are_the_complement() -> None:
    assert len(ILLEGAL) == 6 * 8 - 13


@pytest.mark.parametrize(("phase", "event"), ILLEGAL)
def test_illegal_pair_raises(phase: TaskPhase, event: str) -> None:
    fsm = machine()
    st = status(phase)
    with pytest.raises(IllegalTransition) as info:
        fsm.apply(st, event, **ARGS.get(event, {}))
    err = info.value
    assert err.event == event
    assert err.phase == phase.value
    assert err.allowed == ALLOWED[phase]
    assert err.task_id is None
    allowed = ", ".join(sorted(ALLOWED[phase])) or "none"
    assert str(err) == f"cannot {event} task: phase is {phase.value}; allowed: {allowed}"
    assert not fsm.can(st, event, **ARGS.get(event, {}))
    with pytest.raises(IllegalTransition):
        getattr(fsm, event)(st, *ARGS.get(event, {}).values())


def test_illegal_message_spelled_out() -> None:
    with pytest.raises(IllegalTransition) as info:
        machine().complete(machine().new())
    assert (
        str(info.value) == "cannot complete task: phase is pending; allowed: cancel, fail, schedule"
    )
    assert info.value.allowed == {"cancel", "fail", "schedule"}
    assert isinstance(info.value, TaskFSMError)
    assert str(info.value.with_task("job-7")) == (
        "cannot complete task 'job-7': phase is pending; allowed: cancel, fail, schedule"
    )


def test_unknown_event() -> None:
    with pytest.raises(IllegalTransition, match="cannot explode task: phase is running"):
        machine().apply(status(R), "explode")
    assert not machine().can(status(R), "explode")


@pytest.mark.parametrize("event", ["complete", "fail", "progress", "heartbeat", "cancel"])
def test_completed_is_protected(event: str) -> None:
    # A late result can never overwrite a completed task.
    with pytest.raises(IllegalTransition, match="phase is completed; allowed: none"):
        machine().apply(status(C), event, **ARGS.get(event, {}))


@pytest.mark.parametrize("phase", [F, X])
@pytest.mark.parametrize("event", ["complete", "fail", "progress", "start", "cancel"])
def test_failed_and_cancelled_are_protected(phase: TaskPhase, event: str) -> None:
    with pytest.raises(IllegalTransition, match=f"phase is {phase.value}; allowed: restart"):
        machine().apply(status(phase), event, **ARGS.get(event, {}))


def test_late_fail_after_complete_is_refused() -> None:
    fsm = machine()
    done = fsm.complete(fsm.start(fsm.schedule(fsm.new())))
    with pytest.raises(IllegalTransition):
        fsm.fail(done, "worker lost")
    with pytest.raises(IllegalTransition):
        fsm.complete(done)


# -- arguments ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phase", "event", "kwargs", "message"),
    [
        (R, "progress", {}, "progress needs the argument 'value'"),
        (R, "progress", {"value": 0.5, "step": 1}, "progress got an unexpected argument 'step'"),
        (R, "fail", {}, "fail needs the argument 'error'"),
        (R, "fail", {"retryable": True}, "fail needs the argument 'error'"),
        (R, "fail", {"error": 42}, "fail error must be a string or an exception, got 42"),
        (R, "fail", {"error": None}, "fail error must be a string or an exception, got None"),
        (R, "fail", {"error": "x", "retryable": 1}, "fail retryable must be True, False or None"),
        (R, "fail", {"error": "x", "retryable": "no"}, "fail retryable must be True, False"),
        (R, "fail", {"error": "x", "code": 3}, r"unexpected argument 'code' \(takes: error, retr"),
        (P, "schedule", {"at": 1}, r"unexpected argument 'at' \(takes: no arguments\)"),
        (W, "start", {"worker": "w1"}, "start got an unexpected argument 'worker'"),
        (R, "heartbeat", {"value": 0.5}, "heartbeat got an unexpected argument 'value'"),
        (R, "complete", {"value": 1.0}, "complete got an unexpected argument 'value'"),
        (R, "cancel", {"reason": "x"}, "cancel got an unexpected argument 'reason'"),
        (F, "restart", {"retries": 0}, "restart got an unexpected argument 'retries'"),
    ],
)
def test_bad_arguments(phase: TaskPhase, event: str, kwargs: dict[str, Any], message: str) -> None:
    fsm = machine()
    with pytest.raises(InvalidArgument, match=message) as info:
        fsm.apply(status(phase), event, **kwargs)
    assert isinstance(info.value, ValueError)
    assert not fsm.can(status(phase), event, **kwargs)


# -- the clock ---------------------------------------------------------------------------


def test_updated_at_never_decreases_when_the_clock_goes_back() -> None:
    clock = FakeClock(10_000)
    fsm = TaskMachine(clock=clock)
    st = fsm.schedule(fsm.new())
    assert st.updated_at == 10_000
    clock.now = 3_000  # NTP step back
    st = fsm.start(st)
    assert st.updated_at == 10_000
    st = fsm.heartbeat(st)
    assert st.updated_at == 10_000
    clock.now = 10_001
    assert fsm.heartbeat(st).updated_at == 10_001


def test_heartbeat_stamps_the_clock() -> None:
    clock = FakeClock(1_000)
    fsm = TaskMachine(clock=clock)
    st = fsm.start(fsm.schedule(fsm.new()))
    clock.now = 61_000
    assert fsm.heartbeat(st) == TaskStatus(R, 61_000, 0.0, None, 0)


def test_clock_is_read_only_for_accepted_events() -> None:
    calls = 0

    def clock() -> int:
        nonlocal calls
        calls += 1
        return NOW

    fsm = TaskMachine(clock=clock)
    with pytest.raises(IllegalTransition):
        fsm.complete(status(P))
    assert calls == 0
    fsm.schedule(status(P))
    assert calls == 1


# -- queries -----------------------------------------------------------------------------


@pytest.mark.parametrize("phase", list(TaskPhase))
def test_allowed_events(phase: TaskPhase) -> None:
    fsm = machine()
    assert fsm.allowed_events(status(phase)) == ALLOWED[phase]
    assert isinstance(fsm.allowed_events(status(phase)), frozenset)


def test_can_depends_on_arguments() -> None:
    fsm = machine()
    assert fsm.can(status(R), "progress", value=0.9)
    assert not fsm.can(status(R), "progress", value=0.1)
    assert not fsm.can(status(R), "progress")
    assert fsm.can(status(R), "fail", error="x")
    assert not fsm.can(status(R), "fail")


def test_can_fail_when_budget_is_spent() -> None:
    # fail is always possible from an active phase: the final branch is unconditional.
    assert machine(RetryPolicy(max_retries=0)).can(status(R), "fail", error="x")


def test_retry_delay_and_due_at() -> None:
    fsm = machine()
    assert fsm.retry_delay(status(W, retries=0)) == 0.0
    assert fsm.retry_delay(status(W, retries=1)) == 30.0
    assert fsm.retry_delay(status(W, retries=2)) == 60.0
    assert fsm.retry_delay(status(W, retries=9)) == 180.0
    assert fsm.retry_delay(status(R, retries=2)) == 0.0
    assert fsm.retry_delay(status(F, retries=2)) == 0.0
    assert fsm.due_at(status(W, retries=2)) == BEFORE + 60_000
    assert fsm.due_at(status(W, retries=0)) == BEFORE
    assert fsm.due_at(status(P)) == BEFORE


def test_retry_delay_with_jitter_uses_the_policy_source() -> None:
    fsm = machine(RetryPolicy(jitter=True, random=lambda: 0.25))
    assert fsm.retry_delay(status(W, retries=1)) == 7.5
    assert fsm.due_at(status(W, retries=1)) == BEFORE + 7_500


def test_machine_property_is_stable() -> None:
    fsm = machine()
    assert fsm.machine is fsm.machine
    assert fsm.machine.models == []


def test_engines_are_independent() -> None:
    a = machine()
    b = machine(lifecycle=DEFAULT_LIFECYCLE.with_edge("complete", "waiting", "completed"))
    assert a.machine is not b.machine
    assert not a.can(status(W), "complete")
    assert b.can(status(W), "complete")


# -- the compiled table agrees with the transitions machine ------------------------------


class _Model:
    """A throwaway transitions model: the condition outcome is chosen by the test."""

    def __init__(self, outcome: bool) -> None:
        self.outcome = outcome

    def can_retry(self, event_data: object) -> bool:
        return self.outcome


def _machine_destination(
    fsm: TaskMachine, phase: TaskPhase, event: str, outcome: bool
) -> TaskPhase | None:
    """Where the transitions machine itself takes a model in *phase* on *event*."""
    model = _Model(outcome)
    fsm.machine.add_model(model, initial=phase.value)
    try:
        if event not in fsm.machine.events:
            return None
        try:
            moved = model.trigger(event)  # type: ignore[attr-defined]
        except MachineError:
            return None
        return TaskPhase(model.state) if moved else None  # type: ignore[attr-defined]
    finally:
        fsm.machine.remove_model(model)


def _engine_destination(
    fsm: TaskMachine, phase: TaskPhase, event: str, outcome: bool
) -> TaskPhase | None:
    """Where `fsm.apply` takes a status in *phase*, its arguments making can_retry *outcome*."""
    kwargs: dict[str, Any] = {}
    if event == "progress":
        kwargs = {"value": 1.0}
    elif event == "fail":
        kwargs = {"error": "boom", "retryable": outcome}
    try:
        return fsm.apply(TaskStatus(phase, 0, retries=0), event, **kwargs).phase
    except IllegalTransition:
        return None


UNLESS_FIRST = Lifecycle(
    edges=(
        Edge("fail", (P, W), F, unless=(CAN_RETRY,)),
        Edge("fail", (P, W), W, conditions=(CAN_RETRY,)),
        Edge("fail", R, F, conditions=(CAN_RETRY,), unless=()),  # retryable fails are final
        Edge("start", (P, W), R),
        Edge("complete", (W, R), C),
        Edge("pause", R, W),
        Edge("cancel", (R, F), X),
    )
)


@pytest.mark.parametrize(
    "lifecycle",
    [
        DEFAULT_LIFECYCLE,
        DEFAULT_LIFECYCLE.with_edge("complete", "waiting", "completed"),
        DEFAULT_LIFECYCLE.without_edge("cancel", "running").with_edge(
            "restart", "completed", "pending"
        ),
        UNLESS_FIRST,
    ],
    ids=["default", "complete-from-waiting", "no-cancel-running", "unless-first"],
)
def test_compiled_table_agrees_with_the_machine(lifecycle: Lifecycle) -> None:
    # The policy allows a retry, so can_retry is exactly the `retryable` argument.
    fsm = TaskMachine(RetryPolicy(max_retries=None), FakeClock(), lifecycle=lifecycle)
    events = [*lifecycle.events, "explode"]
    checked = 0
    for phase, event, outcome in itertools.product(TaskPhase, events, (True, False)):
        expected = _machine_destination(fsm, phase, event, outcome)
        assert _engine_destination(fsm, phase, event, outcome) == expected, (phase, event, outcome)
        checked += expected is not None
    assert checked > 0
    for phase in TaskPhase:
        assert fsm.allowed_events(TaskStatus(phase, 0)) == set(
            fsm.machine.get_triggers(phase.value)
        )


def test_retry_counted_only_on_the_can_retry_branch() -> None:
    fsm = TaskMachine(RetryPolicy(max_retries=None), FakeClock(), lifecycle=UNLESS_FIRST)
    # unless=can_retry branch taken: a final failure, not a retry.
    assert fsm.fail(TaskStatus(W, 0), "x", retryable=False) == TaskStatus(F, NOW, None, "x", 0)
    assert fsm.fail(TaskStatus(W, 0), "x", retryable=True) == TaskStatus(W, NOW, None, "x", 1)
    # can_retry branch into failed still counts the retry it was granted.
    assert fsm.fail(TaskStatus(R, 0), "x", retryable=True) == TaskStatus(F, NOW, None, "x", 1)
    with pytest.raises(IllegalTransition, match="cannot fail task: phase is running"):
        fsm.fail(TaskStatus(R, 0), "x", retryable=False)
