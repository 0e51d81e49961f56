"""Async stores and the change feed: async apply/s with 50 coroutines on PostgreSQL, and
feed latency from commit to dispatcher callback (PostgreSQL LISTEN/NOTIFY, SQLite polling).

    .venv/bin/python benchmarks/async_feed.py [--quick]

``run(settings)`` returns the rows for benchmarks/run.py. Latency: one change at a time
(the writer waits for its callback before the next), measured from the moment the
writer's ``apply`` returned (the commit acknowledged) to the callback's start, with the
dispatcher in a thread of the same process on its own store object.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).parent))

from _timing import Row, Settings
from taskfsm import Dispatcher, Notification
from taskfsm.stores import open_async_store, open_store

POSTGRES_ENV = "TASKFSM_TEST_POSTGRES_URL"
GROUP_APPLY = "6. async PostgreSQL: apply/s, 50 coroutines"
GROUP_LATENCY = "6. feed latency: commit -> callback"
COROUTINES = 50
SQLITE_POLL = 0.05


@contextmanager
def _postgres_schema(base: str) -> Iterator[str]:
    import psycopg

    schema = f"taskfsm_feed_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@contextmanager
def _sqlite_file() -> Iterator[str]:
    folder = tempfile.mkdtemp(prefix="taskfsm-feed-")
    try:
        yield f"sqlite:///{folder}/feed.db"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def _async_apply_rate(url: str, per_coroutine: int) -> float:
    """Heartbeats per second from *COROUTINES* coroutines, each on its own running task."""
    async with open_async_store(url) as store:
        ids = [f"a{i}" for i in range(COROUTINES)]
        for task_id in ids:
            await store.create(task_id)
            await store.apply(task_id, "schedule")
            await store.apply(task_id, "start")

        async def beat(task_id: str) -> None:
            for _ in range(per_coroutine):
                await store.apply(task_id, "heartbeat")

        start = time.perf_counter()
        await asyncio.gather(*(beat(t) for t in ids))
        elapsed = time.perf_counter() - start
    return COROUTINES * per_coroutine / elapsed


def _latencies(url: str, changes: int, poll_interval: float) -> list[float]:
    """Commit-to-callback latencies in ms, one change at a time."""
    arrived = threading.Event()
    received: list[float] = []

    def callback(note: Notification) -> None:
        received.append(time.perf_counter())
        arrived.set()

    with open_store(url) as writer, open_store(url) as reader:
        writer.create("t")
        writer.apply("t", "schedule")
        writer.apply("t", "start")
        dispatcher = Dispatcher(
            reader, "bench", callback, start_after=3, poll_interval=poll_interval
        )
        thread = threading.Thread(target=dispatcher.run, kwargs={"max_changes": changes})
        thread.start()
        committed: list[float] = []
        for _ in range(changes):
            arrived.clear()
            writer.apply("t", "heartbeat")
            committed.append(time.perf_counter())
            if not arrived.wait(60):
                raise RuntimeError("the dispatcher never received a change")
        thread.join(60)
    return [(r - c) * 1000 for r, c in zip(received, committed, strict=True)]


def _latency_rows(label: str, lat: list[float], note: str) -> list[Row]:
    ordered = sorted(lat)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return [
        Row(GROUP_LATENCY, f"{label}: median", statistics.median(lat), "ms", note=note),
        Row(GROUP_LATENCY, f"{label}: p99", p99, "ms", note=note),
    ]


def run(settings: Settings) -> tuple[list[Row], list[str]]:
    rows: list[Row] = []
    notes: list[str] = []
    changes = settings.size(300, 30)
    with _sqlite_file() as url:
        lat = _latencies(url, changes, SQLITE_POLL)
        rows += _latency_rows(
            f"SQLite polling every {SQLITE_POLL * 1000:.0f} ms", lat, f"{changes} changes"
        )
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        notes.append(f"PostgreSQL feed rows skipped: {POSTGRES_ENV} is not set")
        return rows, notes
    with _postgres_schema(base) as url:
        per = settings.size(200, 10)
        rate = asyncio.run(_async_apply_rate(url, per))
        rows.append(
            Row(
                GROUP_APPLY,
                "AsyncStore.apply(task, 'heartbeat')",
                rate,
                "ops/s",
                note=f"{COROUTINES}x{per} heartbeats, pool of 10 connections",
            )
        )
    with _postgres_schema(base) as url:
        lat = _latencies(url, changes, 5.0)
        rows += _latency_rows("PostgreSQL LISTEN/NOTIFY", lat, f"{changes} changes")
    return rows, notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    args = parser.parse_args(argv)
    rows, notes = run(Settings(quick=args.quick, repeats=1))
    for row in rows:
        print(f"{row.group:45} {row.name:45} {row.value:12,.2f} {row.unit:6} {row.note}")
    for note in notes:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
