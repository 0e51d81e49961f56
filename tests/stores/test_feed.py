"""The change feed's consumers: `follow` (sync and async) waking on NOTIFY, a condition
variable or polling; named cursors and safe pruning; consumer processes killed mid-stream;
8 writer processes and 2 consumers on PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import signal
import threading
from pathlib import Path
from typing import Any

import _feed_workers
import pytest

from conftest import DURABLE, PG, UrlFactory
from taskfsm import IllegalTransition, InvalidArgument, TaskMachine, TransitionRecord
from taskfsm.stores import open_async_store, open_store

SPAWN = multiprocessing.get_context("spawn")
JOIN_TIMEOUT = 120


def _poll_interval(url: str) -> float:
    """SQLite can only poll; elsewhere an hour, so only a wake-up can end the wait."""
    return 0.01 if url.startswith("sqlite") else 3600.0


def _write(url: str, task_id: str) -> None:
    with open_store(url) as store:
        store.create(task_id)
        store.apply(task_id, "schedule")


# -- follow ---------------------------------------------------------------------------------


def test_follow_yields_the_backlog_then_wakes_on_new_commits(store_url: str) -> None:
    with open_store(store_url) as store:
        store.create("a")
        got: list[TransitionRecord] = []
        first = threading.Event()

        def follower() -> None:
            for record in store.follow(poll_interval=_poll_interval(store_url)):
                got.append(record)
                first.set()
                if len(got) == 4:
                    return

        thread = threading.Thread(target=follower, daemon=True)
        thread.start()
        assert first.wait(JOIN_TIMEOUT)
        # The follower has the backlog and waits: these commits must wake it (on
        # PostgreSQL through NOTIFY from another store object; memory: the same store).
        if store_url.startswith("memory"):
            store.apply("a", "schedule")
            store.create("b")
            store.apply("b", "schedule")
        else:
            store.apply("a", "schedule")
            _write(store_url, "b")
        thread.join(JOIN_TIMEOUT)
        assert not thread.is_alive(), "follow() was never woken"
        assert got == store.changes()
        assert [(r.task_id, r.event) for r in got] == [
            ("a", "create"),
            ("a", "schedule"),
            ("b", "create"),
            ("b", "schedule"),
        ]


async def test_async_follow_wakes_without_blocking_the_loop(store_url: str) -> None:
    async with open_async_store(store_url) as store:
        await store.create("a")
        got: list[TransitionRecord] = []
        first = asyncio.Event()

        async def follower() -> None:
            async for record in store.follow(poll_interval=_poll_interval(store_url)):
                got.append(record)
                first.set()
                if len(got) == 3:
                    return

        task = asyncio.ensure_future(follower())
        await asyncio.wait_for(first.wait(), JOIN_TIMEOUT)
        await store.apply("a", "schedule")  # the loop runs while the follower waits
        await store.apply("a", "start")
        await asyncio.wait_for(task, JOIN_TIMEOUT)
        assert got == await store.changes()


def test_follow_stop_event_ends_it_and_after_skips(store_url: str) -> None:
    with open_store(store_url) as store:
        for i in range(5):
            store.create(f"t{i}")
        stop = threading.Event()
        seqs = []
        for record in store.follow(after=2, poll_interval=0.01, batch=2, stop=stop):
            seqs.append(record.seq)
            if len(seqs) == 3:
                stop.set()
        assert seqs == [r.seq for r in store.changes(after=2)]


async def test_async_follow_stop_event(store_url: str) -> None:
    async with open_async_store(store_url) as store:
        await store.create("a")
        stop = asyncio.Event()
        seqs = []
        async for record in store.follow(poll_interval=0.01, stop=stop):
            seqs.append(record.seq)
            stop.set()
        assert seqs == [1]


def test_follow_rejects_bad_arguments(store_url: str) -> None:
    with open_store(store_url) as store:
        for kwargs, word in (
            ({"after": -1}, "after"),
            ({"poll_interval": 0}, "poll_interval"),
            ({"poll_interval": float("nan")}, "poll_interval"),
            ({"batch": 0}, "batch"),
        ):
            with pytest.raises(InvalidArgument, match=word):
                store.follow(**kwargs)


@pytest.mark.parametrize("backend", [PG])
def test_notify_is_sent_by_the_writing_transaction_on_commit(new_url: UrlFactory) -> None:
    """A committed write notifies the schema's channel; a refused one does not."""
    import psycopg

    from taskfsm.stores._postgres import FEED_CHANNEL

    url = new_url()
    with open_store(url) as store, psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(f"SELECT {FEED_CHANNEL}").fetchone()
        assert row is not None
        conn.execute(psycopg.sql.SQL("LISTEN {}").format(psycopg.sql.Identifier(row[0])))
        store.create("a")
        with pytest.raises(IllegalTransition):
            store.apply("a", "complete")
        store.apply("a", "schedule")
        payloads = [n.payload for n in conn.notifies(timeout=JOIN_TIMEOUT, stop_after=2)]
        assert payloads == ["1", "2"]


# -- cursors and retention ------------------------------------------------------------------


def test_cursors_and_prune_consumed(store_url: str) -> None:
    with open_store(store_url) as store:
        for i in range(6):
            store.create(f"t{i}")
        assert store.get_cursor("hooks") is None
        assert store.prune_consumed() == 0  # no consumer yet: keep everything
        store.set_cursor("hooks", 4)
        store.set_cursor("audit", 2)
        assert store.cursors() == {"hooks": 4, "audit": 2}
        assert store.prune_consumed(("hooks", "missing")) == 0  # one has no cursor
        assert store.prune_consumed() == 2  # below audit's cursor + 1
        assert [r.seq for r in store.changes()] == [3, 4, 5, 6]
        store.set_cursor("audit", 5)
        assert store.prune_consumed(("hooks",)) == 2
        assert [r.seq for r in store.changes()] == [5, 6]
        assert store.delete_cursor("audit") is True
        assert store.delete_cursor("audit") is False
        assert store.cursors() == {"hooks": 4}
        store.set_cursor("hooks", 1)  # an operator may rewind a consumer
        assert store.get_cursor("hooks") == 1
        with pytest.raises(InvalidArgument, match="consumer name"):
            store.get_cursor("")
        with pytest.raises(InvalidArgument, match="seq"):
            store.set_cursor("hooks", -1)


async def test_async_cursors(store_url: str) -> None:
    async with open_async_store(store_url) as store:
        await store.create("a")
        await store.apply("a", "schedule")
        await store.set_cursor("c", 1)
        assert await store.get_cursor("c") == 1
        assert await store.cursors() == {"c": 1}
        assert await store.prune_consumed() == 1
        assert await store.delete_cursor("c") is True


@pytest.mark.parametrize("backend", DURABLE)
def test_cursor_survives_reopening(store_url: str) -> None:
    with open_store(store_url) as store:
        store.set_cursor("hooks", 7)
    with open_store(store_url) as store:
        assert store.get_cursor("hooks") == 7


# -- consumers killed mid-stream --------------------------------------------------------------


def _fill(url: str, tasks: int) -> int:
    with open_store(url, machine=TaskMachine()) as store:
        for i in range(tasks):
            store.create(f"t{i}")
            store.apply(f"t{i}", "schedule")
            store.apply(f"t{i}", "start")
        return store.changes(after=3 * tasks - 1)[0].seq


def _seqs(log: Path) -> list[int]:
    return [int(line.split()[0]) for line in log.read_text().splitlines()]


def _run_to_end(url: str, log: Path, final: int) -> None:
    proc = SPAWN.Process(target=_feed_workers.consume, args=(url, "hooks", str(log), final))
    proc.start()
    proc.join(JOIN_TIMEOUT)
    assert proc.exitcode == 0


@pytest.mark.slow
@pytest.mark.parametrize("backend", DURABLE)
def test_killed_consumer_restarts_and_sees_every_change_exactly_once(
    store_url: str, tmp_path: Path
) -> None:
    final = _fill(store_url, 60)
    log = tmp_path / "seen.log"
    for report_after in (25, 40):  # killed twice, at 25 then 40 more handled changes
        ready = SPAWN.Event()
        proc = SPAWN.Process(
            target=_feed_workers.consume,
            args=(store_url, "hooks", str(log), final, ready, report_after, True),
        )
        proc.start()
        assert ready.wait(JOIN_TIMEOUT)
        assert proc.pid is not None
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(JOIN_TIMEOUT)
        assert proc.exitcode == -signal.SIGKILL
    _run_to_end(store_url, log, final)
    with open_store(store_url) as store:
        assert _seqs(log) == [r.seq for r in store.changes(limit=10_000)]
        assert store.get_cursor("hooks") == final


@pytest.mark.slow
@pytest.mark.parametrize("backend", DURABLE)
def test_consumer_killed_at_any_point_repeats_at_most_the_change_in_flight(
    store_url: str, tmp_path: Path
) -> None:
    final = _fill(store_url, 80)
    log = tmp_path / "seen.log"
    ready = SPAWN.Event()
    proc = SPAWN.Process(
        target=_feed_workers.consume,
        args=(store_url, "hooks", str(log), final, ready, 30, False),
    )
    proc.start()
    assert ready.wait(JOIN_TIMEOUT)
    assert proc.pid is not None
    os.kill(proc.pid, signal.SIGKILL)  # wherever it is: callback, commit, read
    proc.join(JOIN_TIMEOUT)
    first = _seqs(log)
    _run_to_end(store_url, log, final)
    every = _seqs(log)
    second = every[len(first) :]
    with open_store(store_url) as store:
        expected = [r.seq for r in store.changes(limit=10_000)]
    if second and first and second[0] == first[-1]:
        second = second[1:]  # delivered, but killed before its cursor was committed
    assert first + second == expected


# -- many writers, two consumers --------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("backend", [PG])
def test_eight_writers_two_consumers_lose_nothing(store_url: str, tmp_path: Path) -> None:
    writers, tasks, shared = 8, 12, [f"s{i}" for i in range(10)]
    with open_store(store_url) as store:
        for task_id in shared:
            store.create(task_id)
            store.apply(task_id, "schedule")
    total = 2 * len(shared) + writers * tasks * 5 + len(shared)
    barrier = SPAWN.Barrier(writers + 2)
    procs = []
    for c in range(2):
        out = tmp_path / f"consumer-{c}.json"
        procs.append(
            SPAWN.Process(
                target=_feed_workers.follow_all,
                args=(store_url, f"consumer-{c}", total, str(out), barrier),
            )
        )
    for w in range(writers):
        out = tmp_path / f"writer-{w}.json"
        procs.append(
            SPAWN.Process(
                target=_feed_workers.write_tasks,
                args=(store_url, w, tasks, shared, str(out), barrier),
            )
        )
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(JOIN_TIMEOUT)
    assert [p.exitcode for p in procs] == [0] * len(procs)
    with open_store(store_url) as store:
        feed = store.changes(limit=100_000)
        cursors = store.cursors()
    assert len(feed) == total
    expected = [[r.seq, r.task_id, r.event] for r in feed]
    for c in range(2):
        seen: list[Any] = json.loads((tmp_path / f"consumer-{c}.json").read_text())
        assert seen == expected  # every seq, in order, no gap, no repeat
        assert cursors[f"consumer-{c}"] == feed[-1].seq
    written = []
    for w in range(writers):
        written += json.loads((tmp_path / f"writer-{w}.json").read_text())
    in_feed = [[task_id, event] for _, task_id, event in expected]
    for pair in written:
        assert pair in in_feed, pair
    starts = [task_id for task_id, event in written if task_id in shared and event == "start"]
    assert sorted(starts) == sorted(shared)  # exactly one start won per shared task
