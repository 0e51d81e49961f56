"""The async stores (`open_async_store`) against memory, SQLite and PostgreSQL: the same
operations and errors as the sync stores, coroutines racing on one task, and cancellation
of coroutines in the middle of `apply`."""

from __future__ import annotations

import asyncio
import itertools
import random
from typing import Any

import pytest

from conftest import FakeClock
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
from taskfsm.stores import AsyncStore, StoreUnavailable, open_async_store

POLICY = RetryPolicy(max_retries=2, initial_delay=10.0, multiplier=2.0, max_delay=60.0)


def machine(clock: FakeClock | None = None) -> TaskMachine:
    return TaskMachine(policy=POLICY, clock=clock)


async def check_consistent(store: AsyncStore, task_id: str) -> list[Any]:
    """Status == last history record; seqs strictly increasing; phases chain up."""
    hist = await store.history(task_id)
    assert hist[0].event == "create"
    assert await store.get(task_id) == hist[-1].status, task_id
    seqs = [r.seq for r in hist]
    assert all(a < b for a, b in itertools.pairwise(seqs)), seqs
    for prev, rec in itertools.pairwise(hist):
        assert rec.from_phase is prev.to_phase, (prev, rec)
        assert rec.status.phase is rec.to_phase
    return hist


# -- operations ---------------------------------------------------------------------------


async def test_lifecycle_history_and_feed(store_url: str, clock: FakeClock) -> None:
    async with open_async_store(store_url, machine=machine(clock)) as store:
        created = await store.create("job-1")
        assert created == TaskStatus(TaskPhase.PENDING, clock.now)
        await store.apply("job-1", "schedule")
        clock.advance(5)
        running = await store.apply("job-1", "start")
        assert (running.phase, running.progress, running.updated_at) == (
            TaskPhase.RUNNING,
            0.0,
            clock.now,
        )
        await store.apply("job-1", "progress", value=0.5)
        done = await store.apply("job-1", "complete")
        assert (done.phase, done.progress) == (TaskPhase.COMPLETED, 1.0)
        assert await store.get("job-1") == done
        hist = await store.history("job-1")
        assert [r.event for r in hist] == ["create", "schedule", "start", "progress", "complete"]
        assert [r.to_phase for r in hist][-1] is TaskPhase.COMPLETED
        assert hist[3].args == {"value": 0.5}
        feed = await store.changes()
        assert feed == hist
        assert await store.changes(after=hist[1].seq, limit=2) == hist[2:4]
        assert await store.changes(limit=0) == []


async def test_errors_name_the_task(store_url: str) -> None:
    async with open_async_store(store_url, machine=machine()) as store:
        await store.create("a")
        with pytest.raises(TaskExists):
            await store.create("a")
        with pytest.raises(TaskNotFound):
            await store.get("nope")
        with pytest.raises(TaskNotFound):
            await store.apply("nope", "schedule")
        with pytest.raises(TaskNotFound):
            await store.history("nope")
        with pytest.raises(TaskNotFound):
            await store.delete("nope")
        with pytest.raises(IllegalTransition) as info:
            await store.apply("a", "complete")
        assert (info.value.task_id, info.value.event, info.value.phase) == (
            "a",
            "complete",
            "pending",
        )
        with pytest.raises(InvalidArgument, match="task id"):
            await store.create("")
        with pytest.raises(InvalidArgument, match="limit"):
            await store.list(limit=-1)
        with pytest.raises(InvalidArgument, match="phase"):
            await store.list(phase="sleeping")
        await store.apply("a", "schedule")
        await store.apply("a", "start")
        await store.apply("a", "progress", value=0.6)
        with pytest.raises(InvalidArgument):
            await store.apply("a", "progress", value=0.5)
        # Nothing of the refused events was written.
        assert [r.event for r in await store.history("a")] == [
            "create",
            "schedule",
            "start",
            "progress",
        ]


async def test_event_id_is_idempotent(store_url: str) -> None:
    async with open_async_store(store_url, machine=machine()) as store:
        await store.create("a")
        await store.apply("a", "schedule")
        await store.apply("a", "start")
        first = await store.apply("a", "fail", event_id="e1", error="boom")
        again = await store.apply("a", "fail", event_id="e1", error="boom")
        assert first == again
        assert first.phase is TaskPhase.WAITING
        assert first.retries == 1
        with pytest.raises(InvalidArgument, match="already used"):
            await store.apply("a", "cancel", event_id="e1")
        assert len(await store.history("a")) == 4


async def test_list_claim_reap_delete_prune(store_url: str, clock: FakeClock) -> None:
    async with open_async_store(store_url, machine=machine(clock)) as store:
        for i in range(5):
            await store.create(f"t{i}")
        for i in range(3):
            await store.apply(f"t{i}", "schedule")
        page = await store.list(limit=2)
        assert [tid for tid, _ in page] == ["t0", "t1"]
        assert [tid for tid, _ in await store.list(limit=10, after="t1")] == ["t2", "t3", "t4"]
        pending = await store.list(phase="pending")
        assert [tid for tid, _ in pending] == ["t3", "t4"]
        claimed = await store.claim(2)
        assert [tid for tid, _ in claimed] == ["t0", "t1"]
        assert all(st.phase is TaskPhase.RUNNING for _, st in claimed)
        clock.advance(60_000)
        assert sorted(await store.reap_stale(30.0)) == ["t0", "t1"]
        t0 = await store.get("t0")
        assert (t0.phase, t0.retries) == (TaskPhase.WAITING, 1)
        assert "timed out" in (t0.error_message or "")
        # Not due before the policy's delay; due after it.
        assert [tid for tid, _ in await store.claim(10)] == ["t2"]
        clock.advance(10_000)
        assert sorted(tid for tid, _ in await store.claim(10)) == ["t0", "t1"]
        await store.delete("t4")
        with pytest.raises(TaskNotFound):
            await store.get("t4")
        feed = await store.changes(limit=1000)
        assert all(r.task_id != "t4" for r in feed)
        cut = feed[3].seq
        assert await store.prune_changes(before=cut) == 3
        assert (await store.changes(limit=1000))[0].seq == cut


async def test_closed_store_refuses(store_url: str) -> None:
    store = open_async_store(store_url, machine=machine())
    await store.create("a")  # opens itself on first use
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(StoreUnavailable):
        await store.get("a")


# -- concurrency --------------------------------------------------------------------------


async def test_coroutines_racing_start_exactly_one_wins(store_url: str) -> None:
    async with open_async_store(store_url, machine=machine()) as store:
        for round_ in range(5):
            task_id = f"job-{round_}"
            await store.create(task_id)
            await store.apply(task_id, "schedule")
            outcomes = await asyncio.gather(
                *(store.apply(task_id, "start") for _ in range(20)), return_exceptions=True
            )
            wins = [o for o in outcomes if isinstance(o, TaskStatus)]
            losses = [o for o in outcomes if not isinstance(o, TaskStatus)]
            assert len(wins) == 1, outcomes
            assert len(losses) == 19
            for exc in losses:
                assert isinstance(exc, IllegalTransition), repr(exc)
                assert (exc.task_id, exc.phase) == (task_id, "running")
            assert [r.event for r in await store.history(task_id)] == [
                "create",
                "schedule",
                "start",
            ]


async def test_coroutines_racing_progress_all_land_in_order(store_url: str) -> None:
    async with open_async_store(store_url, machine=machine()) as store:
        await store.create("a")
        await store.apply("a", "schedule")
        await store.apply("a", "start")
        values = [round(0.02 * i, 2) for i in range(1, 41)]
        outcomes = await asyncio.gather(
            *(store.apply("a", "progress", value=v) for v in values), return_exceptions=True
        )
        accepted = [o.progress for o in outcomes if isinstance(o, TaskStatus)]
        refused = [o for o in outcomes if not isinstance(o, TaskStatus)]
        assert all(isinstance(e, InvalidArgument) for e in refused), refused
        hist = await check_consistent(store, "a")
        written = [r.status.progress for r in hist if r.event == "progress"]
        assert written == sorted(written)
        assert sorted(accepted) == written


async def _cancel_storm(store: AsyncStore, seed: int, tasks: int, rounds: int) -> None:
    """Apply event streams to *tasks* tasks and cancel random in-flight applies."""
    rnd = random.Random(seed)
    ids = [f"c{seed}-{i}" for i in range(tasks)]
    for task_id in ids:
        await store.create(task_id)
    fsm = store.machine
    for _ in range(rounds):
        statuses = await asyncio.gather(*(store.get(t) for t in ids))
        calls: list[asyncio.Task[Any]] = []
        for task_id, st in zip(ids, statuses, strict=True):
            events = sorted(fsm.allowed_events(st) - {"progress"})
            if not events:  # completed: nothing more to do
                continue
            event = rnd.choice(events)
            kwargs: dict[str, Any] = {"error": "boom"} if event == "fail" else {}
            calls.append(asyncio.ensure_future(store.apply(task_id, event, **kwargs)))
        # Let the applies reach random points (connection checkout, a statement, the
        # commit), then cancel about half of them wherever each one is.
        for _ in range(rnd.randrange(0, 12)):
            await asyncio.sleep(0)
        for call in calls:
            if rnd.random() < 0.5:
                call.cancel()
        results = await asyncio.gather(*calls, return_exceptions=True)
        for result in results:
            # IllegalTransition: a cancelled caller's transaction committed after our read
            # (cancelling stops the waiting, not a transaction already under way).
            assert isinstance(result, (TaskStatus, asyncio.CancelledError, IllegalTransition)), (
                repr(result)
            )


async def test_cancelled_applies_fully_happen_or_not_at_all(store_url: str) -> None:
    async with open_async_store(store_url, machine=machine()) as store:
        await asyncio.gather(*(_cancel_storm(store, seed, 6, 12) for seed in range(4)))
        all_seqs: list[int] = []
        for seed in range(4):
            for i in range(6):
                hist = await check_consistent(store, f"c{seed}-{i}")
                all_seqs += [r.seq for r in hist]
        feed = await store.changes(limit=100_000)
        assert sorted(all_seqs) == [r.seq for r in feed]
        assert len(set(all_seqs)) == len(all_seqs)


async def test_cancelled_caller_does_not_break_the_store(store_url: str) -> None:
    store = open_async_store(store_url, machine=machine())
    await store.create("a")
    call = asyncio.ensure_future(store.apply("a", "schedule"))
    await asyncio.sleep(0)
    call.cancel()
    # Memory applies without an await, so its call may be done before the cancel.
    outcome = (await asyncio.gather(call, return_exceptions=True))[0]
    assert isinstance(outcome, (TaskStatus, asyncio.CancelledError)), repr(outcome)
    if not store_url.startswith("memory"):
        # Closing waits for a transaction the cancelled caller left running.
        await store.close()
        store = open_async_store(store_url, machine=machine())
    async with store:
        st = await store.get("a")
        hist = await check_consistent(store, "a")
        assert len(hist) == (2 if st.phase is TaskPhase.WAITING else 1)
        # The store still works, and the event applies (again or for the first time).
        if st.phase is TaskPhase.PENDING:
            await store.apply("a", "schedule")
        assert (await store.apply("a", "start")).phase is TaskPhase.RUNNING
