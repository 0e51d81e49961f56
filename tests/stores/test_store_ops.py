"""Example tests of every store operation and every store error, on every backend."""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterator
from typing import Any

import hypothesis.strategies as hst
import pytest
from hypothesis import HealthCheck, given, settings

from conftest import DURABLE, FakeClock, UrlFactory
from taskfsm import (
    IllegalTransition,
    InvalidArgument,
    InvalidStatus,
    RetryPolicy,
    TaskExists,
    TaskMachine,
    TaskNotFound,
    TaskPhase,
    TaskStatus,
)
from taskfsm.stores import StoreUnavailable, TransitionRecord, open_store

POLICY = RetryPolicy(
    max_retries=2, initial_delay=10.0, multiplier=2.0, max_delay=30.0, non_retryable=(KeyError,)
)
T0 = 1_700_000_000_000


@pytest.fixture
def fsm(clock: FakeClock) -> TaskMachine:
    return TaskMachine(policy=POLICY, clock=clock)


@pytest.fixture
def store(store_url: str, fsm: TaskMachine) -> Iterator[Any]:
    with open_store(store_url, machine=fsm) as s:
        yield s


def make_running(store: Any, task_id: str) -> TaskStatus:
    store.create(task_id)
    store.apply(task_id, "schedule")
    return store.apply(task_id, "start")  # type: ignore[no-any-return]


def snapshot(store: Any, *task_ids: str) -> tuple[object, ...]:
    """Everything a write could change: statuses, histories, the change feed."""
    return (
        [store.get(t) for t in task_ids],
        [store.history(t) for t in task_ids],
        store.changes(after=0, limit=10_000),
    )


# -- create / get / delete ----------------------------------------------------------------


def test_create_returns_a_pending_status_stamped_by_the_clock(store: Any) -> None:
    st = store.create("job-1")
    assert st == TaskStatus(TaskPhase.PENDING, T0)
    assert store.get("job-1") == st
    (rec,) = store.history("job-1")
    assert isinstance(rec, TransitionRecord)
    assert (rec.task_id, rec.event, rec.from_phase, rec.to_phase) == (
        "job-1",
        "create",
        None,
        TaskPhase.PENDING,
    )
    assert rec.status == st
    assert rec.event_id is None


def test_create_twice_raises_task_exists_and_writes_nothing(store: Any, clock: FakeClock) -> None:
    store.create("job-1")
    store.apply("job-1", "schedule")
    before = snapshot(store, "job-1")
    clock.advance(5)
    with pytest.raises(TaskExists, match="job-1") as err:
        store.create("job-1")
    assert err.value.task_id == "job-1"
    assert snapshot(store, "job-1") == before


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda s: s.get("ghost"), id="get"),
        pytest.param(lambda s: s.apply("ghost", "schedule"), id="apply"),
        pytest.param(lambda s: s.apply("ghost", "schedule", event_id="e1"), id="apply-event-id"),
        pytest.param(lambda s: s.history("ghost"), id="history"),
        pytest.param(lambda s: s.delete("ghost"), id="delete"),
    ],
)
def test_unknown_task_raises_task_not_found(store: Any, call: Any) -> None:
    store.create("other")
    with pytest.raises(TaskNotFound, match="ghost") as err:
        call(store)
    assert err.value.task_id == "ghost"
    assert isinstance(err.value, KeyError)
    assert [t for t, _ in store.list()] == ["other"]
    assert len(store.changes()) == 1


def test_delete_removes_status_and_history_and_the_id_can_be_reused(
    store: Any, clock: FakeClock
) -> None:
    make_running(store, "job-1")
    store.create("job-2")
    store.delete("job-1")
    with pytest.raises(TaskNotFound):
        store.get("job-1")
    with pytest.raises(TaskNotFound):
        store.history("job-1")
    assert [t for t, _ in store.list()] == ["job-2"]
    clock.advance(1)
    assert store.create("job-1") == TaskStatus(TaskPhase.PENDING, T0 + 1)
    assert [r.event for r in store.history("job-1")] == ["create"]
    assert store.get("job-2") == TaskStatus(TaskPhase.PENDING, T0)


# -- apply: the event table --------------------------------------------------------------


def test_apply_walks_the_happy_path_with_the_event_tables_effects(
    store: Any, clock: FakeClock
) -> None:
    store.create("job")
    clock.advance(1)
    assert store.apply("job", "schedule") == TaskStatus(TaskPhase.WAITING, T0 + 1)
    clock.advance(1)
    assert store.apply("job", "start") == TaskStatus(TaskPhase.RUNNING, T0 + 2, progress=0.0)
    clock.advance(1)
    assert store.apply("job", "progress", value=0.25) == TaskStatus(
        TaskPhase.RUNNING, T0 + 3, progress=0.25
    )
    clock.advance(1)
    assert store.apply("job", "heartbeat") == TaskStatus(TaskPhase.RUNNING, T0 + 4, progress=0.25)
    clock.advance(1)
    done = store.apply("job", "complete")
    assert done == TaskStatus(TaskPhase.COMPLETED, T0 + 5, progress=1.0)
    assert store.get("job") == done
    hist = store.history("job")
    assert [(r.event, r.from_phase, r.to_phase) for r in hist] == [
        ("create", None, TaskPhase.PENDING),
        ("schedule", TaskPhase.PENDING, TaskPhase.WAITING),
        ("start", TaskPhase.WAITING, TaskPhase.RUNNING),
        ("progress", TaskPhase.RUNNING, TaskPhase.RUNNING),
        ("heartbeat", TaskPhase.RUNNING, TaskPhase.RUNNING),
        ("complete", TaskPhase.RUNNING, TaskPhase.COMPLETED),
    ]
    assert [r.status.updated_at for r in hist] == [T0 + i for i in range(6)]
    assert hist[-1].status == done
    seqs = [r.seq for r in hist]
    assert seqs == sorted(set(seqs))


def test_fail_retries_while_the_policy_allows_then_fails_and_restart_resets(
    store: Any, clock: FakeClock
) -> None:
    make_running(store, "job")
    st = store.apply("job", "fail", error="disk full")
    assert st == TaskStatus(TaskPhase.WAITING, T0, error_message="disk full", retries=1)
    store.apply("job", "start")
    st = store.apply("job", "fail", error=TimeoutError("slow"))
    assert st == TaskStatus(TaskPhase.WAITING, T0, error_message="slow", retries=2)
    store.apply("job", "start")
    st = store.apply("job", "fail", error="again")
    assert st == TaskStatus(TaskPhase.FAILED, T0, error_message="again", retries=2)
    clock.advance(7)
    assert store.apply("job", "restart") == TaskStatus(TaskPhase.WAITING, T0 + 7)
    assert [r.event for r in store.history("job")][-4:] == ["fail", "start", "fail", "restart"]


@pytest.mark.parametrize(
    ("kwargs", "phase", "retries"),
    [
        ({"error": KeyError("k")}, TaskPhase.FAILED, 0),  # a non_retryable type
        ({"error": "x", "retryable": False}, TaskPhase.FAILED, 0),
        ({"error": KeyError("k"), "retryable": True}, TaskPhase.WAITING, 1),
        ({"error": ValueError("v")}, TaskPhase.WAITING, 1),
    ],
)
def test_fail_classifies_the_error_with_the_policy(
    store: Any, kwargs: dict[str, Any], phase: TaskPhase, retries: int
) -> None:
    make_running(store, "job")
    st = store.apply("job", "fail", **kwargs)
    assert (st.phase, st.retries, st.progress) == (phase, retries, None)
    assert st.error_message == str(kwargs["error"])
    assert store.history("job")[-1].status == st


def test_cancel_from_each_active_phase(store: Any) -> None:
    store.create("p")
    store.create("w")
    store.apply("w", "schedule")
    make_running(store, "r")
    for task_id in ("p", "w", "r"):
        assert store.apply(task_id, "cancel").phase is TaskPhase.CANCELLED
    assert store.apply("r", "restart").phase is TaskPhase.WAITING


def test_updated_at_never_goes_backwards_when_the_clock_does(store: Any, clock: FakeClock) -> None:
    store.create("job")
    clock.now = T0 - 60_000
    assert store.apply("job", "schedule").updated_at == T0
    clock.now = T0 + 5
    assert store.apply("job", "start").updated_at == T0 + 5


# -- apply: errors write nothing -----------------------------------------------------------


@pytest.mark.parametrize(
    ("setup", "event", "phase"),
    [
        ([], "start", "pending"),
        ([], "complete", "pending"),
        ([], "restart", "pending"),
        (["schedule"], "schedule", "waiting"),
        (["schedule"], "progress", "waiting"),
        (["schedule", "start", "complete"], "fail", "completed"),
        (["schedule", "start", "complete"], "cancel", "completed"),
        (["cancel"], "start", "cancelled"),
        ([], "explode", "pending"),
    ],
)
def test_illegal_event_names_the_task_and_writes_nothing(
    store: Any, clock: FakeClock, setup: list[str], event: str, phase: str
) -> None:
    store.create("job-7")
    for ev in setup:
        store.apply("job-7", ev)
    before = snapshot(store, "job-7")
    clock.advance(10)
    kwargs: dict[str, Any] = {"value": 0.5} if event == "progress" else {}
    with pytest.raises(IllegalTransition) as err:
        store.apply("job-7", event, event_id="ev-1", **kwargs)
    assert err.value.task_id == "job-7"
    assert (err.value.event, err.value.phase) == (event, phase)
    assert "job-7" in str(err.value)
    assert snapshot(store, "job-7") == before


@pytest.mark.parametrize(
    ("event", "kwargs"),
    [
        ("progress", {}),
        ("progress", {"value": 1.5}),
        ("progress", {"value": -0.1}),
        ("progress", {"value": math.nan}),
        ("progress", {"value": True}),
        ("progress", {"value": "0.5"}),
        ("progress", {"value": 0.1}),  # decreasing: the task is at 0.5
        ("progress", {"value": 0.7, "step": 3}),
        ("fail", {}),
        ("fail", {"error": 42}),
        ("fail", {"error": "x", "retryable": "yes"}),
        ("heartbeat", {"value": 1}),
        ("complete", {"error": "x"}),
    ],
)
def test_invalid_event_arguments_raise_and_write_nothing(
    store: Any, clock: FakeClock, event: str, kwargs: dict[str, Any]
) -> None:
    make_running(store, "job")
    store.apply("job", "progress", value=0.5)
    before = snapshot(store, "job")
    clock.advance(10)
    with pytest.raises(InvalidArgument):
        store.apply("job", event, event_id="ev-1", **kwargs)
    assert snapshot(store, "job") == before
    # The refused event id was not consumed: a valid event may use it.
    assert store.apply("job", "heartbeat", event_id="ev-1").updated_at == T0 + 10


# -- event ids -----------------------------------------------------------------------------


def test_redelivered_event_id_returns_the_stored_result_and_writes_nothing(
    store: Any, clock: FakeClock
) -> None:
    make_running(store, "job")
    first = store.apply("job", "progress", event_id="m-1", value=0.3)
    assert store.history("job")[-1].event_id == "m-1"
    clock.advance(100)
    store.apply("job", "progress", event_id="m-2", value=0.6)
    current = store.get("job")
    before = snapshot(store, "job")
    clock.advance(100)
    # Redelivered after a later event: the result of m-1, not the current status.
    assert store.apply("job", "progress", event_id="m-1", value=0.3) == first
    assert store.apply("job", "progress", event_id="m-2", value=0.6) == current
    assert snapshot(store, "job") == before


def test_redelivered_fail_is_not_counted_twice(store: Any) -> None:
    make_running(store, "job")
    first = store.apply("job", "fail", event_id="f-1", error="boom")
    assert first.retries == 1
    assert store.apply("job", "fail", event_id="f-1", error="boom") == first
    assert store.get("job").retries == 1
    assert [r.event for r in store.history("job")].count("fail") == 1


def test_redelivery_of_an_event_id_that_was_refused_applies_it(store: Any) -> None:
    store.create("job")
    with pytest.raises(IllegalTransition):
        store.apply("job", "start", event_id="s-1")
    store.apply("job", "schedule")
    assert store.apply("job", "start", event_id="s-1").phase is TaskPhase.RUNNING
    assert store.history("job")[-1].event_id == "s-1"


def test_event_id_reused_for_another_event_raises_and_writes_nothing(store: Any) -> None:
    make_running(store, "job")
    store.apply("job", "heartbeat", event_id="x-1")
    before = snapshot(store, "job")
    with pytest.raises(InvalidArgument, match="x-1"):
        store.apply("job", "complete", event_id="x-1")
    assert snapshot(store, "job") == before


# -- list ----------------------------------------------------------------------------------


def test_list_is_ordered_by_id_with_keyset_pagination_and_a_phase_filter(store: Any) -> None:
    ids = [f"t{i:02d}" for i in range(12)]
    for i, task_id in enumerate(reversed(ids)):
        store.create(task_id)
        if i % 3:
            store.apply(task_id, "schedule")
    waiting = sorted(t for t in ids if store.get(t).phase is TaskPhase.WAITING)
    assert 0 < len(waiting) < len(ids)

    everything = store.list()
    assert [t for t, _ in everything] == ids
    assert all(st == store.get(t) for t, st in everything)
    assert [t for t, _ in store.list(limit=5)] == ids[:5]
    assert [t for t, _ in store.list(after="t04", limit=5)] == ids[5:10]
    assert [t for t, _ in store.list(after="t04x", limit=3)] == ids[5:8]
    assert store.list(after="t11") == []
    assert [t for t, _ in store.list(phase="waiting")] == waiting
    assert [t for t, _ in store.list(phase=TaskPhase.WAITING, after=waiting[1], limit=2)] == (
        waiting[2:4]
    )
    assert [t for t, _ in store.list(phase=TaskPhase.PENDING)] == sorted(set(ids) - set(waiting))
    assert store.list(phase=TaskPhase.RUNNING) == []


def test_list_pages_visit_every_task_exactly_once(store: Any) -> None:
    ids = ["b", "B", "a-1", "a_1", "a", "Z9", "z", "\u00e9t\u00e9", "10", "9", "job:1", "job.1"]
    for task_id in ids:
        store.create(task_id)
    seen: list[str] = []
    after = None
    for _ in range(len(ids) + 1):  # bounded: a page that repeats must not loop forever
        page = store.list(limit=5, after=after)
        if not page:
            break
        assert len(page) <= 5
        seen += [t for t, _ in page]
        after = page[-1][0]
    else:
        pytest.fail(f"list pages never ended: {seen}")
    assert sorted(seen) == sorted(ids)
    assert len(seen) == len(ids)


task_ids = hst.text(
    hst.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=6,
)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ids=hst.lists(task_ids, unique=True, max_size=12), limit=hst.integers(1, 4))
def test_list_orders_any_ids_by_code_point_on_every_backend(
    new_url: UrlFactory, ids: list[str], limit: int
) -> None:
    with open_store(new_url()) as store:
        for task_id in ids:
            store.create(task_id)
        seen: list[str] = []
        after = None
        for _ in range(len(ids) + 1):
            page = store.list(limit=limit, after=after)
            if not page:
                break
            seen += [t for t, _ in page]
            after = page[-1][0]
        assert seen == sorted(ids)


@pytest.mark.parametrize("task_id", ["a\x00b", "\ud800x", ""])
def test_an_id_no_backend_can_store_is_refused_alike_everywhere(store: Any, task_id: str) -> None:
    # The memory store is the reference: an id is refused on every backend or on none,
    # and the refusal is a taskfsm error, not a driver's.
    with pytest.raises(InvalidArgument):
        store.create(task_id)
    assert store.list() == []
    assert store.changes() == []


@pytest.mark.parametrize("event_id", ["e\x00", "\udfffe"])
def test_an_event_id_no_backend_can_store_is_refused_alike_everywhere(
    store: Any, event_id: str
) -> None:
    store.create("job")
    before = snapshot(store, "job")
    with pytest.raises(InvalidArgument):
        store.apply("job", "schedule", event_id=event_id)
    assert snapshot(store, "job") == before


# -- claim ---------------------------------------------------------------------------------


def test_claim_starts_only_due_tasks(store: Any, clock: FakeClock) -> None:
    store.create("pending")
    store.create("fresh")
    store.apply("fresh", "schedule")  # due at T0
    make_running(store, "retried")
    clock.now = T0 + 100
    store.apply("retried", "fail", error="flaky")  # retry 1: due at T0 + 100 + 10 s
    make_running(store, "restarted")
    store.apply("restarted", "fail", error="fatal", retryable=False)
    clock.now = T0 + 200
    store.apply("restarted", "restart")  # due at once
    clock.now = T0 + 300

    claimed = store.claim(10, now=T0 + 300)
    assert [t for t, _ in claimed] == ["fresh", "restarted"]  # oldest due first
    for task_id, st in claimed:
        assert st.phase is TaskPhase.RUNNING
        assert st.progress == 0.0
        assert store.get(task_id) == st
        assert store.history(task_id)[-1].event == "start"
    assert store.claim(10, now=T0 + 100 + 9_999) == []
    ((task_id, st),) = store.claim(10, now=T0 + 100 + 10_000)
    assert task_id == "retried"
    assert (st.phase, st.retries, st.progress) == (TaskPhase.RUNNING, 1, 0.0)
    assert store.get("pending").phase is TaskPhase.PENDING

    # The second retry waits delay(2) = 20 s after the failure.
    clock.now = T0 + 50_000
    store.apply("retried", "fail", error="flaky")
    assert store.claim(10, now=T0 + 69_999) == []
    assert [t for t, _ in store.claim(10, now=T0 + 70_000)] == ["retried"]


def test_claim_honours_the_limit_oldest_due_first(store: Any, clock: FakeClock) -> None:
    ids = ["e", "d", "c", "b", "a"]  # scheduled in this order, so due in this order
    for task_id in ids:
        store.create(task_id)
        store.apply(task_id, "schedule")
        clock.advance(10)
    assert [t for t, _ in store.claim(2)] == ["e", "d"]
    assert [t for t, _ in store.claim(2)] == ["c", "b"]
    assert [t for t, _ in store.claim(2)] == ["a"]
    assert store.claim(2) == []


def test_claim_without_now_uses_the_machines_clock(store: Any, clock: FakeClock) -> None:
    make_running(store, "job")
    store.apply("job", "fail", error="flaky")  # due at T0 + 10 s
    clock.now = T0 + 9_999
    assert store.claim(5) == []
    clock.now = T0 + 10_000
    assert [t for t, _ in store.claim(5)] == ["job"]


# -- reap_stale ----------------------------------------------------------------------------


def test_reap_stale_fails_running_tasks_past_the_timeout_as_retryable(
    store: Any, clock: FakeClock
) -> None:
    make_running(store, "stale")
    make_running(store, "last-try")
    for _ in range(2):
        store.apply("last-try", "fail", error="flaky")
        store.apply("last-try", "start")
    make_running(store, "alive")
    store.create("waiting")
    store.apply("waiting", "schedule")
    clock.now = T0 + 50_000
    store.apply("alive", "heartbeat")
    clock.now = T0 + 60_000

    assert sorted(store.reap_stale(30, now=T0 + 60_000)) == ["last-try", "stale"]
    stale = store.get("stale")
    assert (stale.phase, stale.retries, stale.progress) == (TaskPhase.WAITING, 1, None)
    assert stale.error_message is not None
    assert stale.error_message.startswith("timed out")
    assert "30" in stale.error_message
    last = store.get("last-try")
    assert (last.phase, last.retries) == (TaskPhase.FAILED, 2)
    assert last.error_message is not None
    assert last.error_message.startswith("timed out")
    for task_id in ("stale", "last-try"):
        rec = store.history(task_id)[-1]
        assert (rec.event, rec.from_phase) == ("fail", TaskPhase.RUNNING)
        assert rec.status == store.get(task_id)
    assert store.get("alive").phase is TaskPhase.RUNNING
    assert store.get("waiting").phase is TaskPhase.WAITING
    assert store.reap_stale(30, now=T0 + 60_000) == []


def test_reap_stale_without_now_uses_the_machines_clock(store: Any, clock: FakeClock) -> None:
    make_running(store, "job")
    clock.now = T0 + 1_000
    assert store.reap_stale(5) == []
    clock.now = T0 + 6_001
    assert store.reap_stale(5) == ["job"]
    assert store.get("job").phase is TaskPhase.WAITING


# -- change feed ---------------------------------------------------------------------------


def test_changes_list_every_transition_in_commit_order(store: Any, clock: FakeClock) -> None:
    store.create("a")
    store.create("b")
    store.apply("a", "schedule")
    clock.advance(1)  # so a is due before b
    store.apply("b", "schedule", event_id="e-b")
    store.claim(5)
    store.apply("b", "cancel")
    feed = store.changes()
    assert [(r.task_id, r.event) for r in feed] == [
        ("a", "create"),
        ("b", "create"),
        ("a", "schedule"),
        ("b", "schedule"),
        ("a", "start"),
        ("b", "start"),
        ("b", "cancel"),
    ]
    seqs = [r.seq for r in feed]
    assert seqs == sorted(set(seqs))
    assert feed[3].event_id == "e-b"
    by_seq = {r.seq: r for t in "ab" for r in store.history(t)}
    assert all(by_seq[r.seq] == r for r in feed)
    assert store.changes(after=feed[2].seq) == feed[3:]
    assert store.changes(after=feed[2].seq, limit=2) == feed[3:5]
    assert store.changes(limit=1) == feed[:1]
    assert store.changes(after=feed[-1].seq) == []


def test_prune_changes_drops_old_feed_entries_but_keeps_history(store: Any) -> None:
    store.create("a")
    store.apply("a", "schedule")
    store.create("b")
    store.apply("a", "start")
    feed = store.changes()
    history = store.history("a")
    assert store.prune_changes(feed[2].seq) == 2
    assert store.changes() == feed[2:]
    assert store.history("a") == history
    assert store.prune_changes(feed[2].seq) == 0
    assert store.prune_changes(feed[-1].seq + 1) == 2
    assert store.changes() == []
    # Sequence numbers are never reused after pruning.
    store.apply("a", "complete")
    (rec,) = store.changes()
    assert rec.seq > feed[-1].seq
    assert store.history("a")[:-1] == history


def test_seqs_are_never_reused_after_the_newest_records_are_deleted(
    new_url: UrlFactory, backend: str
) -> None:
    url = new_url()
    store = open_store(url)
    try:
        store.create("a")
        store.create("b")
        store.apply("b", "schedule")
        newest = store.changes()[-1].seq
        store.delete("b")  # takes the newest records with it
        if backend != "memory":  # and a reopened store must not forget the counter either
            store.close()
            store = open_store(url)
        store.create("c")
        (rec,) = store.changes(after=newest)
        assert (rec.task_id, rec.event) == ("c", "create")
        assert rec.seq > newest
        assert store.history("c")[0].seq == rec.seq
    finally:
        store.close()


# -- durability ----------------------------------------------------------------------------


@pytest.mark.parametrize("backend", DURABLE)
def test_reopening_keeps_statuses_history_and_due_retries(store_url: str, clock: FakeClock) -> None:
    jittery = RetryPolicy(max_retries=3, initial_delay=10.0, jitter=True, random=lambda: 0.5)
    with open_store(store_url, machine=TaskMachine(policy=jittery, clock=clock)) as store:
        make_running(store, "retried")
        store.apply("retried", "fail", error="flaky", event_id="f-1")  # due at T0 + 5 s (drawn)
        store.create("idle")
        make_running(store, "busy")
        store.apply("busy", "progress", value=0.4)
        before = snapshot(store, "retried", "idle", "busy")
        listed = store.list()
    # A new process would draw other jitter: the stored due time must win.
    redraw = RetryPolicy(max_retries=3, initial_delay=10.0, jitter=True, random=lambda: 0.0)
    with open_store(store_url, machine=TaskMachine(policy=redraw, clock=clock)) as store:
        assert snapshot(store, "retried", "idle", "busy") == before
        assert store.list() == listed
        redelivered = store.apply("retried", "fail", error="flaky", event_id="f-1")
        assert redelivered == store.get("retried")
        assert snapshot(store, "retried", "idle", "busy") == before
        assert store.claim(5, now=T0 + 4_999) == []
        assert [t for t, _ in store.claim(5, now=T0 + 5_000)] == ["retried"]
        with pytest.raises(TaskExists):
            store.create("idle")


@pytest.mark.parametrize("backend", DURABLE)
def test_reopening_keeps_the_pruned_feed_pruned(store_url: str) -> None:
    with open_store(store_url) as store:
        for task_id in "abc":
            store.create(task_id)
        feed = store.changes()
        assert store.prune_changes(feed[1].seq) == 1
    with open_store(store_url) as store:
        assert store.changes() == feed[1:]
        assert [r.seq for r in store.history("a")] == [feed[0].seq]


def _rows(url: str) -> tuple[Any, list[tuple[str, list[str], list[str], list[tuple[Any, ...]]]]]:
    """(connection, [(table, column names, column types, rows)]) of the store's database."""
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url[len("sqlite:///") :])
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        out = []
        for table in tables:
            info = conn.execute(f'PRAGMA table_info("{table}")').fetchall()
            rows = conn.execute(f'SELECT * FROM "{table}"').fetchall()
            out.append((table, [c[1] for c in info], [str(c[2]).lower() for c in info], rows))
        return conn, out
    import psycopg

    conn = psycopg.connect(url, autocommit=True)
    cols: dict[str, list[tuple[str, str]]] = {}
    for table, column, dtype in conn.execute(
        "SELECT table_name, column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
    ):
        cols.setdefault(table, []).append((column, dtype))
    out = []
    for table, spec in cols.items():
        names = ", ".join(f'"{c}"' for c, _ in spec)
        rows = conn.execute(f'SELECT {names} FROM "{table}"')
        out.append((table, [c for c, _ in spec], [t for _, t in spec], rows.fetchall()))
    return conn, out


def _as_json(value: object) -> object:
    if isinstance(value, (str, bytes)):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def corrupt_status_row(url: str, task_id: str, status: TaskStatus, payload: str) -> None:
    """Overwrite *task_id*'s stored status with *payload*, found without knowing the schema:
    the table holding the task id in exactly one row, in a column whose JSON is the status."""
    conn, tables = _rows(url)
    try:
        for table, names, types, rows in tables:
            mine = [r for r in rows if task_id in r]
            if len(mine) != 1:
                continue
            (row,) = mine
            id_col = names[row.index(task_id)]
            for name, dtype, value in zip(names, types, row, strict=True):
                if _as_json(value) == status.to_dict():
                    cast = "::jsonb" if dtype == "jsonb" else "::json" if dtype == "json" else ""
                    mark = "?" if url.startswith("sqlite") else "%s"
                    conn.execute(
                        f'UPDATE "{table}" SET "{name}" = {mark}{cast} WHERE "{id_col}" = {mark}',
                        (payload, task_id),
                    )
                    conn.commit()
                    return
        raise AssertionError(f"no status row of {task_id!r} found in {[t[0] for t in tables]}")
    finally:
        conn.close()


def read_raw(url: str) -> object:
    """Every row of every table of the store's database."""
    conn, tables = _rows(url)
    conn.close()
    return [(t, rows) for t, _, _, rows in tables]


@pytest.mark.parametrize("backend", DURABLE)
@pytest.mark.parametrize(
    "payload", ["{not json", '{"phase": "exploded", "updatedAt": 1}', "[]", '{"phase": "running"}']
)
def test_corrupt_status_row_raises_invalid_status_and_writes_nothing(
    store_url: str, fsm: TaskMachine, payload: str
) -> None:
    with open_store(store_url, machine=fsm) as store:
        status = make_running(store, "broken")
        store.create("fine")
    if payload == "{not json" and store_url.startswith("postgresql"):
        # A json/jsonb column cannot hold invalid JSON text; the other payloads still apply.
        conn, tables = _rows(store_url)
        conn.close()
        if any("json" in t for _, _, types, _ in tables for t in types):
            pytest.skip("the PostgreSQL store keeps statuses in a json column")
    corrupt_status_row(store_url, "broken", status, payload)
    raw_before = read_raw(store_url)
    with open_store(store_url, machine=fsm) as store:
        with pytest.raises(InvalidStatus, match="broken"):
            store.get("broken")
        for event, kwargs in [
            ("progress", {"value": 0.5}),
            ("cancel", {}),
            ("fail", {"error": "x"}),
        ]:
            with pytest.raises(InvalidStatus, match="broken"):
                store.apply("broken", event, event_id=f"ev-{event}", **kwargs)
        assert store.get("fine").phase is TaskPhase.PENDING
        assert len(store.history("broken")) == 3
    assert read_raw(store_url) == raw_before


# -- opening -------------------------------------------------------------------------------


def test_unknown_scheme_raises_invalid_argument_listing_the_schemes() -> None:
    with pytest.raises(InvalidArgument, match="redis") as err:
        open_store("redis://localhost/0")
    for scheme in ("memory", "sqlite", "postgresql"):
        assert scheme in str(err.value)


def test_unreachable_postgresql_raises_store_unavailable_without_the_password() -> None:
    pytest.importorskip("psycopg")
    url = "postgresql://someone:s3cr3t-pw@127.0.0.1:1/nowhere?connect_timeout=3"
    with pytest.raises(StoreUnavailable) as err, open_store(url) as store:
        store.get("x")
    assert "127.0.0.1" in str(err.value)
    assert "s3cr3t-pw" not in str(err.value)
