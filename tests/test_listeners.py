"""Listeners: run after accepted transitions only; a failing one is logged and contained."""

from __future__ import annotations

import logging

import pytest

from taskfsm import IllegalTransition, InvalidArgument, TaskMachine, TaskPhase, TaskStatus

Call = tuple[TaskStatus, TaskStatus, str]


class Recorder:
    def __init__(self) -> None:
        self.calls: list[Call] = []

    def __call__(self, old: TaskStatus, new: TaskStatus, event: str) -> None:
        self.calls.append((old, new, event))


def clock() -> int:
    return 1_000


def broken(old: TaskStatus, new: TaskStatus, event: str) -> None:
    raise RuntimeError("listener bug")


def test_called_with_old_new_and_event() -> None:
    rec = Recorder()
    fsm = TaskMachine(clock=clock, listeners=[rec])
    st0 = fsm.new()
    st1 = fsm.schedule(st0)
    st2 = fsm.apply(st1, "start")
    st3 = fsm.progress(st2, 0.5)
    st4 = fsm.fail(st3, "boom")
    assert rec.calls == [
        (st0, st1, "schedule"),
        (st1, st2, "start"),
        (st2, st3, "progress"),
        (st3, st4, "fail"),
    ]
    assert rec.calls[-1][1].phase is TaskPhase.WAITING


def test_new_is_not_a_transition() -> None:
    rec = Recorder()
    TaskMachine(clock=clock, listeners=[rec]).new()
    assert rec.calls == []


def test_not_called_for_rejected_events_or_queries() -> None:
    rec = Recorder()
    fsm = TaskMachine(clock=clock, listeners=[rec])
    pending = fsm.new()
    with pytest.raises(IllegalTransition):
        fsm.complete(pending)
    with pytest.raises(IllegalTransition):
        fsm.apply(pending, "explode")
    running = fsm.start(fsm.schedule(pending))
    rec.calls.clear()
    with pytest.raises(InvalidArgument):
        fsm.progress(running, 1.5)
    with pytest.raises(InvalidArgument):
        fsm.apply(running, "fail")
    assert fsm.can(running, "complete")
    fsm.allowed_events(running)
    fsm.retry_delay(running)
    assert rec.calls == []


def test_a_raising_listener_is_logged_and_contained(caplog: pytest.LogCaptureFixture) -> None:
    before, after = Recorder(), Recorder()
    fsm = TaskMachine(clock=clock, listeners=[before, broken, after])
    pending = fsm.new()
    with caplog.at_level(logging.ERROR, logger="taskfsm"):
        waiting = fsm.schedule(pending)
    # The transition stands, unchanged by the failure.
    assert waiting == TaskStatus(TaskPhase.WAITING, 1_000)
    assert pending == TaskStatus(TaskPhase.PENDING, 1_000)
    # Listeners before and after it still ran, with the same arguments.
    assert before.calls == after.calls == [(pending, waiting, "schedule")]
    [record] = [r for r in caplog.records if r.name == "taskfsm"]
    assert record.levelno == logging.ERROR
    assert "listener" in record.getMessage()
    assert "schedule" in record.getMessage()
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)
    # The engine keeps working.
    assert fsm.start(waiting).phase is TaskPhase.RUNNING
    assert len(after.calls) == 2


def test_a_listener_cannot_corrupt_the_snapshot(caplog: pytest.LogCaptureFixture) -> None:
    def meddler(old: TaskStatus, new: TaskStatus, event: str) -> None:
        new.progress = 0.0  # type: ignore[misc]  # frozen: raises

    rec = Recorder()
    fsm = TaskMachine(clock=clock, listeners=[meddler, rec])
    running = fsm.start(fsm.schedule(fsm.new()))
    with caplog.at_level(logging.ERROR, logger="taskfsm"):
        new = fsm.progress(running, 0.75)
    assert new.progress == 0.75
    assert rec.calls[-1] == (running, new, "progress")
    assert any(r.name == "taskfsm" for r in caplog.records)


def test_add_and_remove_listener() -> None:
    rec = Recorder()
    fsm = TaskMachine(clock=clock)
    fsm.add_listener(rec)
    st = fsm.schedule(fsm.new())
    fsm.remove_listener(rec)
    fsm.start(st)
    fsm.remove_listener(rec)  # removing again is no error
    assert [event for _, _, event in rec.calls] == ["schedule"]


def test_listeners_run_in_order() -> None:
    order: list[str] = []
    fsm = TaskMachine(clock=clock)
    fsm.add_listener(lambda o, n, e: order.append("first"))
    fsm.add_listener(lambda o, n, e: order.append("second"))
    fsm.schedule(fsm.new())
    assert order == ["first", "second"]


def test_base_exceptions_are_not_swallowed() -> None:
    def interrupt(old: TaskStatus, new: TaskStatus, event: str) -> None:
        raise KeyboardInterrupt

    fsm = TaskMachine(clock=clock, listeners=[interrupt])
    with pytest.raises(KeyboardInterrupt):
        fsm.schedule(fsm.new())


def test_decide_runs_no_listener_and_notify_runs_them_all() -> None:
    heard: list[tuple[TaskStatus, TaskStatus, str]] = []
    fsm = TaskMachine(listeners=[lambda *t: heard.append(t)])
    old = fsm.new()
    new = fsm.decide(old, "schedule")
    assert new.phase is TaskPhase.WAITING
    assert heard == []
    fsm.notify(old, new, "schedule")
    assert heard == [(old, new, "schedule")]
