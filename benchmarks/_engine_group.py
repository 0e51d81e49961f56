"""Group 1: the engine in memory, per transition, against the floor and the alternatives.

Every row runs the same path per task: create it, then schedule, start, progress x3,
complete (6 transitions), stamping ``updated_at = max(now, previous)`` from the same clock.
Task creation is timed too and amortised over the 6 transitions.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import attrs
from statemachine import State, StateMachine
from transitions import Machine

from _timing import Row, Settings, medians_per_op
from taskfsm import DEFAULT_LIFECYCLE, TaskMachine, TaskPhase, system_clock

GROUP = "1. engine: us per transition"
PROGRESS = (0.25, 0.5, 0.75)
EVENTS_PER_TASK = 3 + len(PROGRESS)
PHASES = [p.value for p in TaskPhase]


@attrs.frozen
class FloorStatus:
    """The floor's snapshot: frozen, slotted, the same fields, no validation."""

    phase: TaskPhase
    updated_at: int
    progress: float | None = None
    error_message: str | None = None
    retries: int = 0


# The floor's rules: (phase, event) -> phase, the first edge of each pair.
FLOOR_TABLE: dict[tuple[TaskPhase, str], TaskPhase] = {}
for _edge in DEFAULT_LIFECYCLE.edges:
    for _source in _edge.source:
        FLOOR_TABLE.setdefault((_source, _edge.event), _edge.dest)


def floor_step(st: FloorStatus, event: str, progress: float | None) -> FloorStatus:
    now = system_clock()
    previous = st.updated_at
    return FloorStatus(
        FLOOR_TABLE[(st.phase, event)],
        now if now > previous else previous,
        progress,
        st.error_message,
        st.retries,
    )


_new = object.__new__
_SET = tuple(FloorStatus.__dict__[f.name].__set__ for f in attrs.fields(FloorStatus))


def floor_step_slots(st: FloorStatus, event: str, progress: float | None) -> FloorStatus:
    # The same, with the snapshot built through its slots' descriptors, as the engine's
    # trusted constructor does, instead of the frozen class's __init__.
    now = system_clock()
    previous = st.updated_at
    new: FloorStatus = _new(FloorStatus)
    set_phase, set_updated_at, set_progress, set_error, set_retries = _SET
    set_phase(new, FLOOR_TABLE[(st.phase, event)])
    set_updated_at(new, now if now > previous else previous)
    set_progress(new, progress)
    set_error(new, st.error_message)
    set_retries(new, st.retries)
    return new


def _floor(
    n: int, step: Callable[[FloorStatus, str, float | None], FloorStatus] = floor_step
) -> Callable[[], int]:
    def run() -> int:
        for _ in range(n):
            st = FloorStatus(TaskPhase.PENDING, system_clock())
            st = step(st, "schedule", st.progress)
            st = step(st, "start", 0.0)
            for value in PROGRESS:
                st = step(st, "progress", value)
            st = step(st, "complete", 1.0)
        return n * EVENTS_PER_TASK

    return run


def _apply(n: int) -> Callable[[], int]:
    fsm = TaskMachine(clock=system_clock)

    def run() -> int:
        apply = fsm.apply
        for _ in range(n):
            st = fsm.new()
            st = apply(st, "schedule")
            st = apply(st, "start")
            for value in PROGRESS:
                st = apply(st, "progress", value=value)
            st = apply(st, "complete")
        return n * EVENTS_PER_TASK

    return run


def _methods(n: int) -> Callable[[], int]:
    fsm = TaskMachine(clock=system_clock)

    def run() -> int:
        for _ in range(n):
            st = fsm.new()
            st = fsm.schedule(st)
            st = fsm.start(st)
            for value in PROGRESS:
                st = fsm.progress(st, value)
            st = fsm.complete(st)
        return n * EVENTS_PER_TASK

    return run


class _Model:
    """A mutable task for the `transitions` rows; `state` is set by the machine.

    ``progress_value``, not ``progress``: the model also gets a ``progress`` trigger.
    """

    state: str
    trigger: Callable[[str], bool]  # added by the machine

    def __init__(self) -> None:
        self.updated_at = system_clock()
        self.progress_value: float | None = None
        self.error_message: str | None = None
        self.retries = 0

    def can_retry(self, _: Any = None) -> bool:
        return False


def _transitions_machine(model: Any) -> Machine:
    return Machine(
        model=model,
        states=PHASES,
        initial=DEFAULT_LIFECYCLE.initial.value,
        transitions=[e.as_transitions_dict() for e in DEFAULT_LIFECYCLE.edges],
        auto_transitions=False,
    )


def _stamp(model: Any, progress: float | None) -> None:
    now = system_clock()
    if now > model.updated_at:
        model.updated_at = now
    model.progress_value = progress


def _trigger_cycle(model: Any, trigger: Callable[[str], Any]) -> None:
    trigger("schedule")
    _stamp(model, model.progress_value)
    trigger("start")
    _stamp(model, 0.0)
    for value in PROGRESS:
        trigger("progress")
        _stamp(model, value)
    trigger("complete")
    _stamp(model, 1.0)


def _transitions_shared(n: int) -> Callable[[], int]:
    model = _Model()
    machine = _transitions_machine(model)

    def run() -> int:
        for _ in range(n):
            # One model re-pointed at each task: load its state, then drive it.
            machine.set_state("pending", model)
            model.updated_at, model.progress_value = system_clock(), None
            _trigger_cycle(model, model.trigger)
        return n * EVENTS_PER_TASK

    return run


def _transitions_per_task(n: int) -> Callable[[], int]:
    machine = _transitions_machine(None)  # a fresh machine per run: add_model is O(models)

    def run() -> int:
        for _ in range(n):
            model = _Model()
            machine.add_model(model)
            _trigger_cycle(model, model.trigger)
        return n * EVENTS_PER_TASK

    return run


class _StateChart(StateMachine):
    """The default lifecycle in python-statemachine."""

    pending = State(initial=True)
    waiting = State()
    running = State()
    completed = State(final=True)
    failed = State()
    cancelled = State()

    schedule = pending.to(waiting)
    start = waiting.to(running)
    progress = running.to.itself()  # type: ignore[no-untyped-call]
    heartbeat = running.to.itself()  # type: ignore[no-untyped-call]
    complete = running.to(completed)
    fail = (
        pending.to(waiting, cond="can_retry")
        | waiting.to(waiting, cond="can_retry")
        | running.to(waiting, cond="can_retry")
        | pending.to(failed)
        | waiting.to(failed)
        | running.to(failed)
    )
    cancel = pending.to(cancelled) | waiting.to(cancelled) | running.to(cancelled)
    restart = failed.to(waiting) | cancelled.to(waiting)

    def __init__(self) -> None:
        self.updated_at = system_clock()
        self.progress_value: float | None = None
        super().__init__()

    def can_retry(self) -> bool:
        return False


def _statemachine(n: int) -> Callable[[], int]:
    def run() -> int:
        for _ in range(n):
            sm = _StateChart()
            _trigger_cycle(sm, sm.send)
        return n * EVENTS_PER_TASK

    return run


def check_paths() -> None:
    """Every row must end where the engine ends: completed, progress 1."""
    (_floor(1))()
    fsm = TaskMachine()
    st = fsm.complete(fsm.progress(fsm.start(fsm.schedule(fsm.new())), 0.5))
    model = _Model()
    _transitions_machine(model)
    _trigger_cycle(model, model.trigger)
    sm = _StateChart()
    _trigger_cycle(sm, sm.send)
    assert st.phase == model.state == sm.current_state_value == "completed", (
        st,
        model.state,
        sm.current_state_value,
    )


def run(settings: Settings) -> list[Row]:
    check_paths()
    cases: list[tuple[str, Callable[[int], Callable[[], int]], int, int, bool, str]] = [
        (
            "floor: dict (phase, event) -> phase + frozen attrs snapshot",
            _floor,
            5_000,
            2_000,
            True,
            "",
        ),
        (
            "floor, snapshot set through its slot descriptors",
            partial(_floor, step=floor_step_slots),
            5_000,
            2_000,
            False,
            "how the engine builds the statuses it derives",
        ),
        ("TaskMachine.apply(status, event, **kw)", _apply, 5_000, 2_000, False, ""),
        ("TaskMachine.schedule/start/progress/complete", _methods, 5_000, 2_000, False, ""),
        (
            "transitions: one shared Machine + model, trigger()",
            _transitions_shared,
            1_000,
            200,
            False,
            "model re-pointed per task with set_state",
        ),
        (
            "transitions: a model per task via add_model",
            _transitions_per_task,
            1_000,
            200,
            False,
            "tasks stay live in the Machine; add_model is O(models)",
        ),
        ("python-statemachine: an instance per task, send()", _statemachine, 30, 10, False, ""),
    ]
    sizes = [settings.size(full, quick) for _, _, full, quick, _, _ in cases]
    values = medians_per_op(
        [partial(make, n) for (_, make, *_), n in zip(cases, sizes, strict=True)],
        settings.short_repeats,
    )
    return [
        Row(
            GROUP,
            name,
            value,
            "us",
            reference=reference,
            note=f"{n:,} tasks/run" + (f"; {note}" if note else ""),
        )
        for (name, _, _, _, reference, note), n, value in zip(cases, sizes, values, strict=True)
    ]
