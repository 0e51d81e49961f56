"""Stateful test of the stores: random operations checked against a reference model.

The model is written here from DESIGN.md's event table as plain data, independent of the
engine, and predicts every status, every history record, the change feed, which tasks
`claim` may hand out and which `reap_stale` must fail. On SQLite and PostgreSQL the store
is also closed and reopened between steps, and event ids are redelivered.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from conftest import FakeClock, UrlFactory
from taskfsm import (
    IllegalTransition,
    InvalidArgument,
    RetryPolicy,
    TaskExists,
    TaskMachine,
    TaskNotFound,
    TaskPhase,
    TaskStatus,
)
from taskfsm.stores import open_store

P, W, R = "pending", "waiting", "running"
F, C, X = "failed", "completed", "cancelled"

# DESIGN.md's event table: event -> {from phase: to phase}. "fail" goes to waiting (retry)
# or failed; RETRY marks that choice, resolved by the model below.
RETRY = "waiting-or-failed"
TABLE: dict[str, dict[str, str]] = {
    "schedule": {P: W},
    "start": {W: R},
    "progress": {R: R},
    "heartbeat": {R: R},
    "complete": {R: C},
    "fail": {P: RETRY, W: RETRY, R: RETRY},
    "cancel": {P: X, W: X, R: X},
    "restart": {F: W, X: W},
}
# Arguments: event -> (required, optional).
ARGS: dict[str, tuple[set[str], set[str]]] = {
    "progress": ({"value"}, set()),
    "fail": ({"error"}, {"retryable"}),
}
MAX_RETRIES = 2
DELAY_MS = {1: 1_000, 2: 2_000}  # initial 1 s, doubling, capped at 3 s
POLICY = RetryPolicy(
    max_retries=MAX_RETRIES,
    initial_delay=1.0,
    multiplier=2.0,
    max_delay=3.0,
    non_retryable=(KeyError,),
)
TASK_IDS = ["a", "b", "c"]
ABSENT = object()

# (event, from phase, to phase, status, event id): what a history record must hold.
Rec = tuple[str, "TaskPhase | None", TaskPhase, TaskStatus, "str | None"]


@dataclass
class Task:
    status: TaskStatus
    due_at: int | None
    history: list[Rec] = field(default_factory=list)
    # event id -> (event, kwargs, the status it produced)
    event_ids: dict[str, tuple[str, dict[str, Any], TaskStatus]] = field(default_factory=dict)


def args_error(event: str, kwargs: dict[str, Any], current: TaskStatus) -> bool:
    """Would the arguments be refused (InvalidArgument)?"""
    required, optional = ARGS.get(event, (set(), set()))
    if not set(kwargs) <= required | optional or not required <= set(kwargs):
        return True
    if event == "progress":
        v = kwargs["value"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v):
            return True
        if not 0 <= v <= 1:
            return True
        return current.progress is not None and v < current.progress
    if event == "fail":
        if not isinstance(kwargs["error"], (str, BaseException)):
            return True
        return kwargs.get("retryable") not in (None, True, False)
    return False


def effect(event: str, kwargs: dict[str, Any], cur: TaskStatus, now: int) -> TaskStatus:
    """The new status from the event table (the event is legal and its args valid)."""
    stamp = max(now, cur.updated_at)
    phase = TABLE[event][cur.phase.value]
    progress, error, retries = cur.progress, cur.error_message, cur.retries
    if event == "start":
        progress = 0.0
    elif event == "progress":
        progress = float(kwargs["value"])
    elif event == "complete":
        progress, error = 1.0, None
    elif event == "fail":
        err = kwargs["error"]
        error = err if isinstance(err, str) else (str(err) or type(err).__name__)
        retryable = kwargs.get("retryable")
        if retryable is None:
            retryable = not isinstance(err, KeyError)
        progress = None
        if retryable and retries < MAX_RETRIES:
            phase, retries = W, retries + 1
        else:
            phase = F
    elif event == "restart":
        progress, error, retries = None, None, 0
    return TaskStatus(phase, stamp, progress, error, retries)


def due_at(status: TaskStatus) -> int | None:
    if status.phase is not TaskPhase.WAITING:
        return None
    return status.updated_at + DELAY_MS.get(status.retries, 0)


EVENTS = sorted(TABLE)
progress_values = st.one_of(
    st.floats(0.0, 1.0),
    st.sampled_from([0.0, 0.5, 1.0, 1, -0.1, 1.5, math.nan, True, "0.5", None]),
)
errors = st.one_of(
    st.text(max_size=5),
    st.sampled_from([ValueError("bad value"), KeyError("k"), RuntimeError(), 42, None]),
)


@st.composite
def event_kwargs(draw: st.DrawFn, event: str, current: TaskStatus | None) -> dict[str, Any]:
    """Arguments for *event*: mostly valid for *current*, sometimes not."""
    kwargs: dict[str, Any] = {}
    valid = draw(st.integers(0, 4)) > 0
    if event == "progress" and draw(st.integers(0, 9)):
        low = current.progress if current is not None and current.progress is not None else 0.0
        kwargs["value"] = draw(st.floats(low, 1.0) if valid else progress_values)
    elif event == "fail" and draw(st.integers(0, 9)):
        kwargs["error"] = draw(errors if not valid else st.one_of(st.text(max_size=5), errors))
        retryable = draw(st.sampled_from([ABSENT, None, True, False, "yes"][: 4 if valid else 5]))
        if retryable is not ABSENT:
            kwargs["retryable"] = retryable
    if not draw(st.integers(0, 12)):
        kwargs["step"] = 1  # an argument no event takes
    return kwargs


class StoreMachine(RuleBasedStateMachine):
    def __init__(self, new_url: UrlFactory, durable: bool) -> None:
        super().__init__()
        self.durable = durable
        self.url = new_url()
        self.clock = FakeClock()
        self.store: Any = open_store(self.url, machine=TaskMachine(POLICY, self.clock))
        self.tasks: dict[str, Task] = {}
        self.feed: list[Rec] = []  # transitions not yet read from the change feed
        self.feed_ids: list[str] = []
        self.cursor = 0
        self.next_id = 0

    def teardown(self) -> None:
        self.store.close()

    # -- helpers ---------------------------------------------------------------------------

    def record(self, task_id: str, rec: Rec) -> None:
        task = self.tasks[task_id]
        task.history.append(rec)
        task.status = rec[3]
        task.due_at = due_at(rec[3])
        self.feed.append(rec)
        self.feed_ids.append(task_id)

    def expect_unchanged(self, task_id: str) -> None:
        task = self.tasks[task_id]
        assert self.store.get(task_id) == task.status
        assert len(self.store.history(task_id)) == len(task.history)

    # -- rules -----------------------------------------------------------------------------

    @rule(task_id=st.sampled_from(TASK_IDS))
    def create(self, task_id: str) -> None:
        if task_id in self.tasks:
            with pytest.raises(TaskExists):
                self.store.create(task_id)
            self.expect_unchanged(task_id)
            return
        got = self.store.create(task_id)
        expected = TaskStatus(TaskPhase.PENDING, self.clock.now)
        assert got == expected
        self.tasks[task_id] = Task(expected, None)
        self.record(task_id, ("create", None, TaskPhase.PENDING, expected, None))

    @initialize()
    def create_all(self) -> None:
        for task_id in TASK_IDS:
            self.create(task_id)

    def movable(self) -> list[str]:
        """Tasks an event can move (all but completed ones)."""
        return sorted(t for t, v in self.tasks.items() if v.status.phase is not TaskPhase.COMPLETED)

    def legal_event(self, data: st.DataObject, with_id: bool) -> None:
        task_id = data.draw(st.sampled_from(self.movable()), label="task")
        current = self.tasks[task_id].status
        legal = sorted(e for e in EVENTS if current.phase.value in TABLE[e])
        event = data.draw(st.sampled_from(legal), label="event")
        kwargs = data.draw(event_kwargs(event, current), label="kwargs")
        self.apply(task_id, event, kwargs, self.new_event_id() if with_id else None)

    # Three rules for legal events, so most steps move tasks along their lifecycle.
    @precondition(lambda self: self.movable())
    @rule(data=st.data(), with_id=st.booleans())
    def legal_event_a(self, data: st.DataObject, with_id: bool) -> None:
        self.legal_event(data, with_id)

    @precondition(lambda self: self.movable())
    @rule(data=st.data(), with_id=st.booleans())
    def legal_event_b(self, data: st.DataObject, with_id: bool) -> None:
        self.legal_event(data, with_id)

    @precondition(lambda self: self.movable())
    @rule(data=st.data(), with_id=st.booleans())
    def legal_event_c(self, data: st.DataObject, with_id: bool) -> None:
        self.legal_event(data, with_id)

    @rule(
        task_id=st.sampled_from(TASK_IDS),
        event=st.sampled_from([*EVENTS, "explode"]),
        data=st.data(),
        with_id=st.booleans(),
    )
    def any_event(self, task_id: str, event: str, data: st.DataObject, with_id: bool) -> None:
        current = self.tasks[task_id].status if task_id in self.tasks else None
        kwargs = data.draw(event_kwargs(event, current), label="kwargs")
        self.apply(task_id, event, kwargs, self.new_event_id() if with_id else None)

    def new_event_id(self) -> str:
        self.next_id += 1
        return f"ev-{self.next_id}"

    def apply(self, task_id: str, event: str, kwargs: dict[str, Any], event_id: str | None) -> None:
        task = self.tasks.get(task_id)
        if task is None:
            with pytest.raises(TaskNotFound):
                self.store.apply(task_id, event, event_id=event_id, **kwargs)
            return
        cur = task.status
        if cur.phase.value not in TABLE.get(event, {}):
            with pytest.raises(IllegalTransition) as err:
                self.store.apply(task_id, event, event_id=event_id, **kwargs)
            assert (err.value.task_id, err.value.event, err.value.phase) == (
                task_id,
                event,
                cur.phase.value,
            )
            self.expect_unchanged(task_id)
            return
        if args_error(event, kwargs, cur):
            with pytest.raises(InvalidArgument):
                self.store.apply(task_id, event, event_id=event_id, **kwargs)
            self.expect_unchanged(task_id)
            return
        expected = effect(event, kwargs, cur, self.clock.now)
        assert self.store.apply(task_id, event, event_id=event_id, **kwargs) == expected
        self.record(task_id, (event, cur.phase, expected.phase, expected, event_id))
        if event_id is not None:
            task.event_ids[event_id] = (event, kwargs, expected)

    @precondition(lambda self: any(t.event_ids for t in self.tasks.values()))
    @rule(data=st.data(), same_event=st.integers(0, 4))
    def redeliver(self, data: st.DataObject, same_event: int) -> None:
        """Redeliver a recorded event id; now and then with another event (refused)."""
        with_ids = sorted(t for t, v in self.tasks.items() if v.event_ids)
        task_id = data.draw(st.sampled_from(with_ids), label="task")
        task = self.tasks[task_id]
        event_id = data.draw(st.sampled_from(sorted(task.event_ids)), label="event id")
        event, kwargs, result = task.event_ids[event_id]
        if same_event:
            assert self.store.apply(task_id, event, event_id=event_id, **kwargs) == result
        else:
            others = [e for e in ("heartbeat", "cancel", "schedule") if e != event]
            other = data.draw(st.sampled_from(others), label="other event")
            with pytest.raises(InvalidArgument):
                self.store.apply(task_id, other, event_id=event_id)
        self.expect_unchanged(task_id)

    @rule(ms=st.integers(-3_000, 5_000))
    def tick(self, ms: int) -> None:
        self.clock.now = max(0, self.clock.now + ms)

    @rule(limit=st.integers(1, 4))
    def claim(self, limit: int) -> None:
        now = self.clock.now
        due = {
            t: v.due_at for t, v in self.tasks.items() if v.due_at is not None and v.due_at <= now
        }
        got = self.store.claim(limit)
        ids = [t for t, _ in got]
        assert len(ids) == len(set(ids)) == min(limit, len(due)), (ids, due)
        assert set(ids) <= set(due)
        dues = [due[t] for t in ids]
        assert dues == sorted(dues), "claim must hand out the oldest due first"
        if ids:
            assert max(dues) <= min((d for t, d in due.items() if t not in ids), default=max(dues))
        for task_id, status in got:
            cur = self.tasks[task_id].status
            expected = effect("start", {}, cur, now)
            assert status == expected
            self.record(task_id, ("start", cur.phase, expected.phase, expected, None))

    @rule(timeout_s=st.sampled_from([0, 0.001, 0.5, 2]))
    def reap_stale(self, timeout_s: float) -> None:
        now = self.clock.now
        cutoff = now - round(timeout_s * 1000)
        running = {
            t: v.status.updated_at
            for t, v in self.tasks.items()
            if v.status.phase is TaskPhase.RUNNING
        }
        stale = {t for t, at in running.items() if at < cutoff}
        boundary = {t for t, at in running.items() if at == cutoff}
        reaped = self.store.reap_stale(timeout_s)
        assert len(reaped) == len(set(reaped))
        assert stale <= set(reaped) <= stale | boundary, (reaped, running, cutoff)
        for task_id in reaped:
            cur = self.tasks[task_id].status
            got = self.store.get(task_id)
            assert got.error_message is not None
            assert got.error_message.startswith("timed out")
            expected = effect("fail", {"error": got.error_message, "retryable": True}, cur, now)
            assert got == expected
            self.record(task_id, ("fail", cur.phase, expected.phase, expected, None))

    @precondition(lambda self: len(self.tasks) == len(TASK_IDS))  # one gone at a time
    @rule(task_id=st.sampled_from(TASK_IDS))
    def delete(self, task_id: str) -> None:
        if task_id not in self.tasks:
            with pytest.raises(TaskNotFound):
                self.store.delete(task_id)
            return
        self.store.delete(task_id)
        del self.tasks[task_id]

    @precondition(lambda self: self.durable)
    @rule()
    def reopen(self) -> None:
        self.store.close()
        self.store = open_store(self.url, machine=TaskMachine(POLICY, self.clock))

    @rule(phase=st.sampled_from([None, *TaskPhase]), limit=st.integers(1, 3))
    def inspect(self, phase: TaskPhase | None, limit: int) -> None:
        """Page through `list` and read every history; both must match the model."""
        self.histories()
        seen: list[tuple[str, TaskStatus]] = []
        after = None
        for _ in range(len(TASK_IDS) + 1):  # bounded: a repeating page must not loop forever
            page = self.store.list(phase=phase, limit=limit, after=after)
            if not page:
                break
            assert len(page) <= limit
            seen += page
            after = page[-1][0]
        else:
            pytest.fail(f"list pages never ended: {seen}")
        expected = sorted(
            (t, v.status) for t, v in self.tasks.items() if phase is None or v.status.phase is phase
        )
        assert seen == expected

    def histories(self) -> None:
        for task_id, task in self.tasks.items():
            hist = self.store.history(task_id)
            got = [(r.event, r.from_phase, r.to_phase, r.status, r.event_id) for r in hist]
            assert got == task.history
            assert all(r.task_id == task_id for r in hist)
            seqs = [r.seq for r in hist]
            assert seqs == sorted(set(seqs))

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def statuses_match(self) -> None:
        for task_id in TASK_IDS:
            if task_id in self.tasks:
                assert self.store.get(task_id) == self.tasks[task_id].status
            else:
                with pytest.raises(TaskNotFound):
                    self.store.get(task_id)

    @invariant()
    def feed_follows_every_transition(self) -> None:
        new = self.store.changes(after=self.cursor, limit=1_000)
        got = [(r.task_id, (r.event, r.from_phase, r.to_phase, r.status, r.event_id)) for r in new]
        assert got == list(zip(self.feed_ids, self.feed, strict=True))
        seqs = [r.seq for r in new]
        assert seqs == sorted(set(seqs))
        assert all(s > self.cursor for s in seqs)
        if new:
            self.cursor = new[-1].seq
        self.feed.clear()
        self.feed_ids.clear()


EXAMPLES = {"memory": 100, "sqlite": 50, "postgresql": 15}


def test_store_against_the_reference_model(new_url: UrlFactory, backend: str) -> None:
    run_state_machine_as_test(
        lambda: StoreMachine(new_url, durable=backend != "memory"),
        settings=settings(
            max_examples=EXAMPLES[backend],
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
