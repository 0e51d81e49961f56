"""Process workers of the store suite, and the history checks shared by the tests.

Workers run in "spawn" children: they open their own store from a URL (never inherit a
connection) and report through a JSON file or a multiprocessing Event. Everything passed to
them is plain data, so they pickle.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from taskfsm import (
    IllegalTransition,
    InvalidArgument,
    RetryPolicy,
    TaskFSMError,
    TaskMachine,
    TaskPhase,
    TaskStatus,
)
from taskfsm.stores import TransitionRecord, open_store

# (task id, event, kwargs, event id): one delivery of an event.
Delivery = tuple[str, str, dict[str, Any], str | None]

#: The policy of the multi-process tests: a small retry budget so both fail branches occur.
POLICY_KWARGS: dict[str, Any] = {
    "max_retries": 2,
    "initial_delay": 0.0,
    "max_delay": 0.0,
    "non_retryable": (KeyError,),
}


def policy() -> RetryPolicy:
    return RetryPolicy(**POLICY_KWARGS)


# -- workers (run in spawned children) ------------------------------------------------------


def fire_events(url: str, deliveries: Sequence[Delivery], out: str, barrier: Any) -> None:
    """Apply *deliveries* in order; write [event_id, outcome, status JSON] rows to *out*."""
    rows: list[list[Any]] = []
    with open_store(url, machine=TaskMachine(policy=policy())) as store:
        barrier.wait()
        for task_id, event, kwargs, event_id in deliveries:
            # Pseudo-events: the queue operations, racing the events of other workers.
            if event == "claim()":
                rows.append([None, "claimed", [t for t, _ in store.claim(kwargs["limit"])]])
                continue
            if event == "reap_stale()":
                rows.append([None, "reaped", store.reap_stale(kwargs["timeout_s"])])
                continue
            try:
                st = store.apply(task_id, event, event_id=event_id, **kwargs)
            except IllegalTransition as exc:
                rows.append([event_id, "illegal" if exc.task_id == task_id else "unnamed", None])
            except InvalidArgument:
                rows.append([event_id, "invalid", None])
            else:
                rows.append([event_id, "ok", st.to_json()])
    Path(out).write_text(json.dumps(rows))


def claim_all(url: str, limit: int, out: str, barrier: Any) -> None:
    """Claim batches of *limit* until nothing is due; write the claimed ids to *out*."""
    claimed: list[str] = []
    with open_store(url, machine=TaskMachine(policy=policy())) as store:
        barrier.wait()
        for _ in range(10_000):  # bounded: each batch must take tasks off the queue
            batch = store.claim(limit)
            if not batch:
                break
            for task_id, st in batch:
                if st.phase is not TaskPhase.RUNNING:
                    raise AssertionError(f"claimed {task_id!r} is not running: {st}")
                claimed.append(task_id)
        else:
            raise AssertionError("claim never ran dry")
    Path(out).write_text(json.dumps(claimed))


def churn(url: str, task_ids: Sequence[str], seed: int, ready: Any, after: int) -> None:
    """Apply legal-looking random events to *task_ids* forever; set *ready* after *after*
    accepted applies. The parent kills this process with SIGKILL mid-loop."""
    rnd = random.Random(seed)
    fsm = TaskMachine(policy=policy())
    done = 0
    with open_store(url, machine=fsm) as store:
        while True:
            task_id = rnd.choice(task_ids)
            current = store.get(task_id)
            # Never complete: every other phase has a way out, so the churn never runs dry.
            events = sorted(fsm.allowed_events(current) - {"complete"})
            event = rnd.choice(events)
            kwargs: dict[str, Any] = {}
            if event == "progress":
                kwargs = {"value": min(1.0, (current.progress or 0.0) + 0.1)}
            elif event == "fail":
                kwargs = {"error": f"boom {done}", "retryable": rnd.random() < 0.7}
            try:
                store.apply(task_id, event, event_id=f"{seed}-{done}", **kwargs)
            except (IllegalTransition, InvalidArgument):
                continue  # another worker moved the task first
            done += 1
            if done == after:
                ready.set()


# -- checks (run in the test process) -------------------------------------------------------


def _replays(pol: RetryPolicy, prev: TaskStatus, rec: TransitionRecord) -> list[TaskStatus]:
    """The statuses a fresh engine can reach from *prev* with *rec*'s event, stamped at
    *rec*'s time (so an updated_at going backwards shows up as a mismatch)."""
    fsm = TaskMachine(policy=pol, clock=lambda: rec.status.updated_at)
    if rec.event == "progress":
        options: list[dict[str, Any]] = [{"value": rec.status.progress}]
    elif rec.event == "fail":
        options = [{"error": rec.status.error_message, "retryable": r} for r in (True, False)]
    else:
        options = [{}]
    reached = []
    for kwargs in options:
        with contextlib.suppress(TaskFSMError):
            reached.append(fsm.apply(prev, rec.event, **kwargs))
    return reached


def check_history(store: Any, task_id: str, pol: RetryPolicy) -> list[TransitionRecord]:
    """Assert *task_id*'s history is a legal path that ends in its current status."""
    hist: list[TransitionRecord] = store.history(task_id)
    assert hist, f"{task_id}: empty history"
    first = hist[0]
    assert (first.event, first.from_phase, first.to_phase) == ("create", None, TaskPhase.PENDING)
    assert first.status.retries == 0
    assert first.event_id is None
    for rec in hist:
        assert rec.task_id == task_id
        assert rec.status.phase is rec.to_phase, rec
    seqs = [rec.seq for rec in hist]
    assert seqs == sorted(set(seqs)), f"{task_id}: seq {seqs}"
    for prev, rec in itertools.pairwise(hist):
        assert rec.from_phase is prev.to_phase, f"{task_id}: {prev} then {rec}"
        assert rec.status in _replays(pol, prev.status, rec), (
            f"{task_id}: {rec.event} from {prev.status} cannot give {rec.status}"
        )
    assert store.get(task_id) == hist[-1].status, f"{task_id}: status != last history record"
    since_restart = 0
    for rec in hist:
        if rec.event == "restart":
            since_restart = 0
        elif rec.event == "fail" and rec.to_phase is TaskPhase.WAITING:
            since_restart += 1
    assert hist[-1].status.retries == since_restart, f"{task_id}: retries vs history"
    ids = [rec.event_id for rec in hist if rec.event_id is not None]
    assert len(ids) == len(set(ids)), f"{task_id}: an event id recorded twice: {ids}"
    return hist
