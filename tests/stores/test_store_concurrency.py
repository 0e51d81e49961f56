"""Concurrency of the stores: threads sharing one store object, and real processes (spawned,
each with its own connections) sharing one SQLite file or PostgreSQL schema."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import _workers
import pytest

from conftest import DURABLE
from taskfsm import IllegalTransition, TaskMachine, TaskPhase, TaskStatus
from taskfsm.stores import open_store

SPAWN = multiprocessing.get_context("spawn")
JOIN_TIMEOUT = 120


def race(n: int, fn: Callable[[], Any]) -> list[tuple[str, Any]]:
    """Run *fn* in *n* threads released together; [("ok", result) | ("err", exception)]."""
    barrier = threading.Barrier(n)

    def one() -> tuple[str, Any]:
        barrier.wait()
        try:
            return ("ok", fn())
        except Exception as exc:
            return ("err", exc)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda _: one(), range(n)))


# -- threads -------------------------------------------------------------------------------


def test_threads_racing_start_one_wins_the_others_are_refused(store_url: str) -> None:
    with open_store(store_url, machine=TaskMachine(policy=_workers.policy())) as store:
        for round_ in range(8):
            task_id = f"job-{round_}"
            store.create(task_id)
            store.apply(task_id, "schedule")
            outcomes = race(8, lambda t=task_id: store.apply(t, "start"))
            wins = [r for kind, r in outcomes if kind == "ok"]
            losses = [r for kind, r in outcomes if kind == "err"]
            assert len(wins) == 1, outcomes
            assert wins[0].phase is TaskPhase.RUNNING
            assert len(losses) == 7
            for exc in losses:
                assert isinstance(exc, IllegalTransition), repr(exc)
                assert (exc.task_id, exc.event, exc.phase) == (task_id, "start", "running")
            events = [r.event for r in store.history(task_id)]
            assert events == ["create", "schedule", "start"]
            assert store.get(task_id) == wins[0]


def test_threads_racing_one_event_id_apply_it_once(store_url: str) -> None:
    with open_store(store_url, machine=TaskMachine(policy=_workers.policy())) as store:
        for round_ in range(5):
            task_id = f"job-{round_}"
            store.create(task_id)
            store.apply(task_id, "schedule")
            store.apply(task_id, "start")
            outcomes = race(
                8, lambda t=task_id: store.apply(t, "fail", event_id="once", error="boom")
            )
            assert all(kind == "ok" for kind, _ in outcomes), outcomes
            results = {r for _, r in outcomes}
            assert results == {store.get(task_id)}
            (result,) = results
            assert (result.phase, result.retries) == (TaskPhase.WAITING, 1)
            events = [r.event for r in store.history(task_id)]
            assert events == ["create", "schedule", "start", "fail"]


def test_threads_claiming_get_each_due_task_once(store_url: str) -> None:
    with open_store(store_url, machine=TaskMachine(policy=_workers.policy())) as store:
        ids = [f"job-{i:02d}" for i in range(20)]
        for task_id in ids:
            store.create(task_id)
            store.apply(task_id, "schedule")

        def drain() -> list[str]:
            mine: list[str] = []
            for _ in range(len(ids) + 1):  # bounded: each batch must take tasks off the queue
                batch = store.claim(3)
                if not batch:
                    return mine
                mine += [t for t, _ in batch]
            raise AssertionError(f"claim never ran dry: {mine}")

        outcomes = race(8, drain)
        assert all(kind == "ok" for kind, _ in outcomes), outcomes
        claimed = [t for _, batch in outcomes for t in batch]
        assert sorted(claimed) == ids
        assert all(st.phase is TaskPhase.RUNNING for _, st in store.list())


# -- processes -----------------------------------------------------------------------------


def _random_delivery(rnd: random.Random, task_ids: list[str], n: int) -> _workers.Delivery:
    roll = rnd.random()
    if roll < 0.08:
        return ("", "claim()", {"limit": rnd.randint(1, 3)}, None)
    if roll < 0.10:
        return ("", "reap_stale()", {"timeout_s": 0.0}, None)
    event = rnd.choices(
        ["schedule", "start", "progress", "heartbeat", "complete", "fail", "cancel", "restart"],
        weights=[3, 5, 5, 2, 2, 6, 1, 4],
    )[0]
    kwargs: dict[str, Any] = {}
    if event == "progress":
        kwargs["value"] = round(rnd.random(), 2)
    elif event == "fail":
        kwargs["error"] = rnd.choice([f"err-{n}", KeyError(f"k{n}"), ValueError(f"v{n}")])
        kwargs["retryable"] = rnd.choice([None, True, False])
    # Direct starts always carry an id, so a start record without one is a claim.
    event_id = f"ev-{n}" if event == "start" or rnd.random() < 0.8 else None
    return (rnd.choice(task_ids), event, kwargs, event_id)


@pytest.mark.slow
@pytest.mark.parametrize("backend", DURABLE)
def test_processes_firing_random_events_leave_legal_histories(
    store_url: str, tmp_path: Path
) -> None:
    workers, per_worker = 8, 40
    rnd = random.Random(20240611)
    task_ids = [f"task-{i}" for i in range(8)]
    with open_store(store_url, machine=TaskMachine(policy=_workers.policy())) as store:
        for i, task_id in enumerate(task_ids):
            store.create(task_id)
            if i % 2:
                store.apply(task_id, "schedule")
    plans: list[list[_workers.Delivery]] = [[] for _ in range(workers)]
    n = 0
    for w in range(workers):
        for _ in range(per_worker):
            n += 1
            delivery = _random_delivery(rnd, task_ids, n)
            plans[w].append(delivery)
            if delivery[3] is not None and rnd.random() < 0.25:  # redelivered elsewhere
                other = rnd.choice([o for o in range(workers) if o != w])
                plans[other].insert(rnd.randrange(len(plans[other]) + 1), delivery)

    barrier = SPAWN.Barrier(workers)
    outs = [tmp_path / f"out-{w}.json" for w in range(workers)]
    procs = [
        SPAWN.Process(target=_workers.fire_events, args=(store_url, plan, str(out), barrier))
        for plan, out in zip(plans, outs, strict=True)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(JOIN_TIMEOUT)
    assert [p.exitcode for p in procs] == [0] * workers

    rows = [row for out in outs for row in json.loads(out.read_text())]
    assert not [r for r in rows if r[1] == "unnamed"], "IllegalTransition without the task id"
    pol = _workers.policy()
    recorded: dict[str, TaskStatus] = {}
    claim_starts: Counter[str] = Counter()
    reap_fails: Counter[str] = Counter()
    with open_store(store_url, machine=TaskMachine(policy=pol)) as store:
        for task_id in task_ids:
            for rec in _workers.check_history(store, task_id, pol):
                if rec.event_id is not None:
                    recorded[rec.event_id] = rec.status
                elif rec.event == "start":
                    claim_starts[task_id] += 1
                elif rec.event == "fail" and str(rec.status.error_message).startswith("timed"):
                    reap_fails[task_id] += 1
        assert len(store.changes(limit=100_000)) == sum(len(store.history(t)) for t in task_ids)
    accepted = [r for r in rows if r[1] == "ok"]
    assert len(accepted) > len(task_ids) * 3, "too few events were accepted to mean anything"
    for event_id, _, status_json in accepted:
        if event_id is None:
            continue
        # Every delivery of an applied event id returns the status that event produced.
        assert event_id in recorded, f"{event_id} was accepted but is not in any history"
        assert TaskStatus.from_json(status_json) == recorded[event_id], event_id
    redelivered = Counter(r[0] for r in accepted if r[0] is not None)
    assert any(c > 1 for c in redelivered.values()), "no redelivery was exercised"
    # Each claim and each reap handed out is exactly one transition in the histories.
    assert Counter(t for r in rows if r[1] == "claimed" for t in r[2]) == claim_starts
    assert Counter(t for r in rows if r[1] == "reaped" for t in r[2]) == reap_fails
    assert claim_starts, "no claim was exercised"


@pytest.mark.slow
@pytest.mark.parametrize("backend", DURABLE)
def test_processes_claiming_get_each_task_exactly_once(store_url: str, tmp_path: Path) -> None:
    workers = 4
    task_ids = [f"due-{i:03d}" for i in range(240)]
    with open_store(store_url, machine=TaskMachine(policy=_workers.policy())) as store:
        for task_id in task_ids:
            store.create(task_id)
            store.apply(task_id, "schedule")
        store.create("not-scheduled")
    barrier = SPAWN.Barrier(workers)
    outs = [tmp_path / f"claimed-{w}.json" for w in range(workers)]
    procs = [
        SPAWN.Process(target=_workers.claim_all, args=(store_url, 7, str(out), barrier))
        for out in outs
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(JOIN_TIMEOUT)
    assert [p.exitcode for p in procs] == [0] * workers
    claimed = [t for out in outs for t in json.loads(out.read_text())]
    duplicates = [t for t, c in Counter(claimed).items() if c > 1]
    assert duplicates == []
    assert sorted(claimed) == task_ids
    with open_store(store_url, machine=TaskMachine(policy=_workers.policy())) as store:
        assert [t for t, _ in store.list(phase="running", limit=1000)] == task_ids
        assert store.get("not-scheduled").phase is TaskPhase.PENDING
        for task_id in task_ids[::20]:
            assert [r.event for r in store.history(task_id)] == ["create", "schedule", "start"]


@pytest.mark.slow
@pytest.mark.parametrize("backend", DURABLE)
def test_processes_killed_mid_apply_leave_no_partial_write(store_url: str) -> None:
    workers, rounds, after = 4, 3, 40
    task_ids = [f"crash-{i}" for i in range(6)]
    pol = _workers.policy()
    with open_store(store_url, machine=TaskMachine(policy=pol)) as store:
        for task_id in task_ids:
            store.create(task_id)
    for round_ in range(rounds):  # several kills, each at a random point of an apply loop
        seeds = range(round_ * workers, (round_ + 1) * workers)
        readies = [SPAWN.Event() for _ in seeds]
        procs = [
            SPAWN.Process(target=_workers.churn, args=(store_url, task_ids, seed, ready, after))
            for seed, ready in zip(seeds, readies, strict=True)
        ]
        for p in procs:
            p.start()
        for p, ready in zip(procs, readies, strict=True):
            # The worker keeps applying after it signals, so the kill lands mid-loop.
            assert ready.wait(JOIN_TIMEOUT), f"worker {p.pid} never reached {after} applies"
            assert p.pid is not None
            os.kill(p.pid, signal.SIGKILL)
        for p in procs:
            p.join(JOIN_TIMEOUT)
            assert p.exitcode == -signal.SIGKILL
    with open_store(store_url, machine=TaskMachine(policy=pol)) as store:
        total = 0
        for task_id in task_ids:
            total += len(_workers.check_history(store, task_id, pol))
        assert total >= rounds * workers * after
        # The store stays usable: tasks the dead workers left running can be reaped.
        running = {t for t, _ in store.list(phase="running")}
        reaped = store.reap_stale(0, now=store.machine.clock() + 1)
        assert set(reaped) == running
        for task_id in task_ids:
            _workers.check_history(store, task_id, pol)


@pytest.mark.slow
@pytest.mark.parametrize("backend", DURABLE)
def test_a_feed_reader_racing_writer_processes_never_misses_a_record(
    store_url: str, tmp_path: Path
) -> None:
    workers = 4
    rnd = random.Random(7)
    task_ids = [f"feed-{i}" for i in range(12)]
    with open_store(store_url, machine=TaskMachine(policy=_workers.policy())) as store:
        for task_id in task_ids:
            store.create(task_id)
        plans = [
            [_random_delivery(rnd, task_ids, w * 1000 + i) for i in range(60)]
            for w in range(workers)
        ]
        barrier = SPAWN.Barrier(workers + 1)
        procs = [
            SPAWN.Process(
                target=_workers.fire_events,
                args=(store_url, plan, str(tmp_path / f"out-{w}.json"), barrier),
            )
            for w, plan in enumerate(plans)
        ]
        for p in procs:
            p.start()
        barrier.wait()
        # Follow the feed while the writers commit: a cursor must never skip a record
        # that commits later with a smaller seq.
        cursor, read = 0, []
        while True:
            writing = any(p.is_alive() for p in procs)
            batch = store.changes(after=cursor, limit=1000)
            if batch:
                assert batch[0].seq > cursor
                read += [r.seq for r in batch]
                cursor = batch[-1].seq
            elif not writing:
                break
        for p in procs:
            p.join(JOIN_TIMEOUT)
        assert [p.exitcode for p in procs] == [0] * workers
        everything = [r.seq for r in store.changes(limit=100_000)]
        assert read == everything
        assert len(everything) > len(task_ids) + workers * 10
