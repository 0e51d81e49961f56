"""Lifecycle: the graph as data, its variants, and the transitions machine built from it."""

from __future__ import annotations

from typing import Any

import pytest

from taskfsm import (
    CAN_RETRY,
    DEFAULT_LIFECYCLE,
    Edge,
    IllegalTransition,
    InvalidArgument,
    Lifecycle,
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


def clock() -> int:
    return 1_000


def test_default_lifecycle_is_the_design_table() -> None:
    assert DEFAULT_LIFECYCLE.initial is P
    assert DEFAULT_LIFECYCLE.events == (
        "schedule",
        "start",
        "progress",
        "heartbeat",
        "complete",
        "fail",
        "cancel",
        "restart",
    )
    assert [
        (e.event, e.source, e.dest, e.conditions, e.unless) for e in DEFAULT_LIFECYCLE.edges
    ] == [
        ("schedule", (P,), W, (), ()),
        ("start", (W,), R, (), ()),
        ("progress", (R,), R, (), ()),
        ("heartbeat", (R,), R, (), ()),
        ("complete", (R,), C, (), ()),
        ("fail", (P, W, R), W, (CAN_RETRY,), ()),  # the retry branch, tried first
        ("fail", (P, W, R), F, (), ()),
        ("cancel", (P, W, R), X, (), ()),
        ("restart", (F, X), W, (), ()),
    ]


def test_edge_converts_phases_and_conditions() -> None:
    edge = Edge("fail", ["pending", TaskPhase.RUNNING], "waiting", conditions=CAN_RETRY)
    assert edge.source == (P, R)
    assert edge.dest is W
    assert edge.conditions == (CAN_RETRY,)
    assert Edge("start", "waiting", "running").source == (W,)


def test_edge_as_transitions_dict() -> None:
    assert Edge("start", W, R).as_transitions_dict() == {
        "trigger": "start",
        "source": ["waiting"],
        "dest": "running",
    }
    assert Edge("fail", (P, W), F, unless=[CAN_RETRY]).as_transitions_dict() == {
        "trigger": "fail",
        "source": ["pending", "waiting"],
        "dest": "failed",
        "unless": ["can_retry"],
    }
    assert Edge("fail", R, W, conditions=[CAN_RETRY]).as_transitions_dict()["conditions"] == [
        "can_retry"
    ]


# -- with_edge ------------------------------------------------------------------------


def test_with_edge_complete_from_waiting() -> None:
    variant = DEFAULT_LIFECYCLE.with_edge("complete", "waiting", "completed")
    assert variant.edges[:-1] == DEFAULT_LIFECYCLE.edges
    assert variant.edges[-1] == Edge("complete", W, C)
    assert DEFAULT_LIFECYCLE.edges[-1].event == "restart"  # the default is untouched

    fsm = TaskMachine(clock=clock, lifecycle=variant)
    waiting = TaskStatus(W, 10, error_message="earlier", retries=1)
    assert fsm.allowed_events(waiting) == {"start", "complete", "fail", "cancel"}
    assert fsm.can(waiting, "complete")
    assert fsm.complete(waiting) == TaskStatus(C, 1_000, 1.0, None, 1)
    assert "complete" in fsm.machine.get_triggers("waiting")
    # The default engine still refuses it.
    with pytest.raises(IllegalTransition):
        TaskMachine(clock=clock).complete(waiting)


def test_with_edge_new_event() -> None:
    variant = DEFAULT_LIFECYCLE.with_edge("pause", "running", "waiting")
    assert variant.events[-1] == "pause"
    fsm = TaskMachine(clock=clock, lifecycle=variant)
    running = TaskStatus(R, 10, progress=0.5)
    # An event the engine has no effect for only changes the phase (and updated_at).
    assert fsm.apply(running, "pause") == TaskStatus(W, 1_000, progress=0.5)
    with pytest.raises(InvalidArgument, match="pause got an unexpected argument 'value'"):
        fsm.apply(running, "pause", value=1)


def test_with_edge_accepts_a_condition_name_string() -> None:
    # Bug fixed: a plain string was split into one-letter condition names.
    variant = DEFAULT_LIFECYCLE.without_edge("fail").with_edge(
        "fail", "running", "waiting", conditions=CAN_RETRY
    )
    assert variant.edges[-1].conditions == (CAN_RETRY,)


def test_with_edge_conditions_list() -> None:
    variant = DEFAULT_LIFECYCLE.with_edge("fail", ["failed"], "failed", unless=[CAN_RETRY])
    assert variant.edges[-1] == Edge("fail", (F,), F, unless=(CAN_RETRY,))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dest": "paused"}, "unknown phase in lifecycle: 'paused'"),
        ({"source": "paused"}, "unknown phase in lifecycle: 'paused'"),
        ({"source": ["waiting", "paused"]}, "unknown phase in lifecycle: 'paused'"),
        ({"conditions": ["is_ready"]}, r"unknown condition 'is_ready' \(known: can_retry\)"),
        ({"unless": ["is_ready"]}, r"unknown condition 'is_ready' \(known: can_retry\)"),
        ({"event": "_private"}, "event name must be a public identifier, got '_private'"),
        ({"event": "not valid"}, "event name must be a public identifier, got 'not valid'"),
        ({"event": ""}, "event name must be a public identifier, got ''"),
    ],
)
def test_with_edge_rejects_unknown_names(kwargs: dict[str, Any], message: str) -> None:
    # Bug fixed: an unknown destination phase raised a bare ValueError, not InvalidArgument.
    args: dict[str, Any] = {"event": "complete", "source": "waiting", "dest": "completed", **kwargs}
    with pytest.raises(InvalidArgument, match=message):
        DEFAULT_LIFECYCLE.with_edge(**args)


def test_unknown_initial_phase_is_rejected() -> None:
    with pytest.raises(InvalidArgument, match="unknown phase in lifecycle: 'new'"):
        Lifecycle(DEFAULT_LIFECYCLE.edges, initial="new")


@pytest.mark.parametrize("event", ["start", "complete", "restart", "pause"])
def test_can_retry_guards_only_fail(event: str) -> None:
    # Bug fixed: can_retry on another event built fine, then apply/can died with KeyError
    # 'error' (only fail carries an error to classify).
    with pytest.raises(InvalidArgument, match=f"'can_retry' needs .* got event '{event}'"):
        DEFAULT_LIFECYCLE.with_edge(event, "pending", "running", conditions=[CAN_RETRY])
    with pytest.raises(InvalidArgument, match="'can_retry'"):
        Edge(event, "pending", "running", unless=[CAN_RETRY])


# -- without_edge ---------------------------------------------------------------------


def test_without_edge_from_some_phases() -> None:
    variant = DEFAULT_LIFECYCLE.without_edge("cancel", "running")
    assert Edge("cancel", (P, W), X) in variant.edges
    fsm = TaskMachine(clock=clock, lifecycle=variant)
    assert "cancel" not in fsm.allowed_events(TaskStatus(R, 1))
    assert fsm.can(TaskStatus(P, 1), "cancel")
    with pytest.raises(IllegalTransition) as info:
        fsm.cancel(TaskStatus(R, 1))
    assert info.value.allowed == {"progress", "heartbeat", "complete", "fail"}


def test_without_edge_everywhere() -> None:
    variant = DEFAULT_LIFECYCLE.without_edge("restart")
    assert "restart" not in variant.events
    fsm = TaskMachine(clock=clock, lifecycle=variant)
    assert fsm.allowed_events(TaskStatus(F, 1)) == frozenset()
    with pytest.raises(IllegalTransition, match="phase is failed; allowed: none"):
        fsm.restart(TaskStatus(F, 1))


def test_without_edge_removes_both_fail_branches() -> None:
    variant = DEFAULT_LIFECYCLE.without_edge("fail", ["pending"])
    fsm = TaskMachine(clock=clock, lifecycle=variant)
    assert not fsm.can(TaskStatus(P, 1), "fail", error="boom")
    assert fsm.fail(TaskStatus(W, 1), "boom") == TaskStatus(W, 1_000, None, "boom", 1)


@pytest.mark.parametrize(
    ("event", "source", "message"),
    [
        ("pause", None, "no 'pause' edge leaves"),
        ("complete", "waiting", r"no 'complete' edge leaves \['waiting'\]"),
        ("restart", ["running", "pending"], r"no 'restart' edge leaves \['pending', 'running'\]"),
        ("cancel", "paused", "unknown phase in lifecycle: 'paused'"),
    ],
)
def test_without_edge_rejects_what_is_not_there(
    event: str, source: str | list[str] | None, message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        DEFAULT_LIFECYCLE.without_edge(event, source)


def test_lifecycle_is_immutable_data() -> None:
    variant = DEFAULT_LIFECYCLE.with_edge("complete", "waiting", "completed")
    assert variant != DEFAULT_LIFECYCLE
    assert variant.without_edge("complete", "waiting") == DEFAULT_LIFECYCLE


# -- the transitions machine ----------------------------------------------------------


def test_machine_has_every_phase_and_no_model() -> None:
    machine = DEFAULT_LIFECYCLE.machine()
    assert list(machine.states) == [p.value for p in TaskPhase]
    assert machine.initial == "pending"
    assert machine.models == []
    assert set(machine.events) == set(DEFAULT_LIFECYCLE.events)


@pytest.mark.parametrize("phase", list(TaskPhase))
def test_machine_triggers_per_phase(phase: TaskPhase) -> None:
    expected = {
        P: {"schedule", "fail", "cancel"},
        W: {"start", "fail", "cancel"},
        R: {"progress", "heartbeat", "complete", "fail", "cancel"},
        F: {"restart"},
        C: set(),
        X: {"restart"},
    }[phase]
    assert set(DEFAULT_LIFECYCLE.machine().get_triggers(phase.value)) == expected


def test_custom_initial_phase() -> None:
    lifecycle = Lifecycle(DEFAULT_LIFECYCLE.edges, initial="waiting", title="Jobs")
    fsm = TaskMachine(clock=clock, lifecycle=lifecycle)
    assert fsm.new() == TaskStatus(W, 1_000)
    assert fsm.machine.initial == "waiting"
    assert "Jobs" in fsm.diagram("mermaid")
