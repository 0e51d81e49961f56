"""Group 4: stores. ``apply`` per second on SQLite and PostgreSQL, with 1 and 8 worker
processes, against the same transaction written directly with sqlite3 / psycopg (read,
compare-and-set update, history insert, commit) on the same schema and durability
settings; and ``claim`` throughput with 8 workers.

Each worker process opens its own store (or connection) and drives its own tasks, all
running, with ``heartbeat`` (running -> running, so a task takes any number of them).
Throughput is all workers' ops over the wall time from the first start to the last end.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

from _timing import Row, Settings
from taskfsm.stores import open_store

POSTGRES_ENV = "TASKFSM_TEST_POSTGRES_URL"
_CTX = mp.get_context("fork")  # workers inherit the imports; each opens its own connection
_HISTORY_SQLITE = (
    "INSERT INTO taskfsm_history (task_id, event, from_phase, to_phase, status, event_id, args)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_HISTORY_PG = (
    "WITH s AS (UPDATE taskfsm_seq SET seq = seq + 1 RETURNING seq)"
    " INSERT INTO taskfsm_history (seq, task_id, event, from_phase, to_phase, status,"
    " event_id, args) SELECT s.seq, %s, %s, %s, %s, %s, %s, %s FROM s"
)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _heartbeat_json(raw: str) -> str:
    # The hand-written decision: running only; stamp updatedAt, never backwards.
    status = json.loads(raw)
    if status["phase"] != "running":
        raise RuntimeError(f"cannot heartbeat a task in phase {status['phase']}")
    now = _now_ms()
    if now > status["updatedAt"]:
        status["updatedAt"] = now
    return json.dumps(status, separators=(",", ":"))


def _raw_sqlite(path: str) -> Callable[[str], None]:
    import sqlite3

    conn = sqlite3.connect(path, timeout=60, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")  # the store's setting

    def apply(task_id: str) -> None:
        while True:
            conn.execute("BEGIN IMMEDIATE")
            try:
                _, raw, version, due_at = conn.execute(
                    "SELECT id, status, version, due_at FROM taskfsm_tasks WHERE id = ?",
                    (task_id,),
                ).fetchone()
                text = _heartbeat_json(raw)
                updated = conn.execute(
                    "UPDATE taskfsm_tasks SET status = ?, phase = ?, due_at = ?, updated_at = ?,"
                    " version = version + 1 WHERE id = ? AND version = ?",
                    (text, "running", due_at, json.loads(text)["updatedAt"], task_id, version),
                ).rowcount
                if updated != 1:
                    conn.execute("ROLLBACK")
                    continue
                conn.execute(
                    _HISTORY_SQLITE, (task_id, "heartbeat", "running", "running", text, None, "{}")
                )
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return

    return apply


def _raw_postgres(url: str) -> Callable[[str], None]:
    import psycopg

    conn = psycopg.connect(url, autocommit=True)

    def apply(task_id: str) -> None:
        while True:
            with conn.transaction():
                cur = conn.execute(
                    "SELECT id, status, version, due_at FROM taskfsm_tasks WHERE id = %s",
                    (task_id,),
                )
                _, raw, version, due_at = cur.fetchone()  # type: ignore[misc]
                text = _heartbeat_json(raw)
                updated = conn.execute(
                    "UPDATE taskfsm_tasks SET status = %s, phase = %s, due_at = %s,"
                    " updated_at = %s, version = version + 1 WHERE id = %s AND version = %s",
                    (text, "running", due_at, json.loads(text)["updatedAt"], task_id, version),
                ).rowcount
                if updated == 1:
                    conn.execute(
                        _HISTORY_PG, (task_id, "heartbeat", "running", "running", text, None, "{}")
                    )
                    return
            # lost the compare-and-set: the transaction committed nothing; read again

    return apply


def _store_apply(url: str) -> Callable[[str], None]:
    store = open_store(url)

    def apply(task_id: str) -> None:
        store.apply(task_id, "heartbeat")

    return apply


_OPENERS: dict[str, Callable[[str], Callable[[str], None]]] = {
    "raw-sqlite": _raw_sqlite,
    "raw-postgres": _raw_postgres,
    "store": _store_apply,
}


def _apply_worker(
    opener: str, target: str, task_ids: list[str], ops: int, barrier: Any, out: Any
) -> None:
    apply = _OPENERS[opener](target)
    apply(task_ids[0])  # warm: connection, statement cache
    barrier.wait()
    start = time.perf_counter()
    for i in range(ops):
        apply(task_ids[i % len(task_ids)])
    out.put((start, time.perf_counter(), ops))


def _claim_worker(url: str, limit: int, _: list[str], __: int, barrier: Any, out: Any) -> None:
    store = open_store(url)
    store.list(limit=1)  # warm: connection, statement cache
    barrier.wait()
    start = time.perf_counter()
    claimed = 0
    while batch := store.claim(limit):
        claimed += len(batch)
    out.put((start, time.perf_counter(), claimed))


def _parallel(target: Callable[..., None], args: list[tuple[Any, ...]]) -> float:
    """Run one process per args tuple, all released at once; return ops per second."""
    barrier = _CTX.Barrier(len(args))
    out = _CTX.Queue()
    procs = [_CTX.Process(target=target, args=(*a, barrier, out)) for a in args]
    for p in procs:
        p.start()
    results = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"benchmark worker failed with exit code {p.exitcode}")
    start = min(r[0] for r in results)
    end = max(r[1] for r in results)
    return float(sum(r[2] for r in results) / (end - start))


def _running_tasks(url: str, prefix: str, count: int) -> list[str]:
    ids = [f"{prefix}-{i}" for i in range(count)]
    with open_store(url) as store:
        for task_id in ids:
            store.create(task_id)
            store.apply(task_id, "schedule")
            store.apply(task_id, "start")
    return ids


@contextmanager
def _sqlite_target() -> Iterator[tuple[str, str]]:
    folder = tempfile.mkdtemp(prefix="taskfsm-bench-")
    try:
        path = os.path.join(folder, "bench.db")
        yield f"sqlite:///{path}", path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def _postgres_target(base: str) -> Iterator[tuple[str, str]]:
    """A fresh schema for the run; yields (store URL, its durability settings)."""
    import psycopg

    schema = f"taskfsm_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        settings = ", ".join(
            f"{name}={conn.execute(f'SHOW {name}').fetchone()[0]}"  # type: ignore[index]
            for name in ("fsync", "synchronous_commit")
        )
    sep = "&" if "?" in base else "?"
    url = f"{base}{sep}options={quote(f'-csearch_path={schema}')}"
    try:
        yield url, settings
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def _backend_rows(
    settings: Settings, label: str, raw_opener: str, url: str, raw_target: str
) -> list[Row]:
    rows: list[Row] = []
    repeats = 1 if settings.quick else min(settings.repeats, 3)  # each run is seconds of I/O
    per_worker = 4  # tasks per worker, cycled
    for workers, full_ops, quick_ops in ((1, 2_000, 60), (8, 400, 15)):
        ops = settings.size(full_ops, quick_ops)
        groups = [_running_tasks(url, f"w{workers}-{w}", per_worker) for w in range(workers)]
        cases = {
            "raw": [(raw_opener, raw_target, ids, ops) for ids in groups],
            "store": [("store", url, ids, ops) for ids in groups],
        }
        samples: dict[str, list[float]] = {"raw": [], "store": []}
        for _ in range(repeats):
            for name, args in cases.items():  # interleaved: the history grows for both alike
                samples[name].append(_parallel(_apply_worker, args))
        group = f"4. {label}: apply/s, {workers} worker{'s' if workers > 1 else ''}"
        note = f"{workers}x{ops:,} heartbeats"
        driver = "sqlite3" if raw_opener == "raw-sqlite" else "psycopg"
        rows.append(
            Row(
                group,
                f"raw {driver}: read, CAS update, history insert, commit",
                statistics.median(samples["raw"]),
                "ops/s",
                reference=True,
                note=note,
            )
        )
        rows.append(
            Row(
                group,
                "Store.apply(task, 'heartbeat')",
                statistics.median(samples["store"]),
                "ops/s",
                target=">= 0.7x",
                note=note,
            )
        )
    tasks = settings.size(2_000, 100)
    claim_samples: list[float] = []
    for rep in range(repeats):
        with open_store(url) as store:
            for i in range(tasks):
                task_id = f"claim-{rep}-{i}"
                store.create(task_id)
                store.apply(task_id, "schedule")
        claim_samples.append(_parallel(_claim_worker, [(url, 10, [], 0)] * 8))
    rows.append(
        Row(
            f"4. {label}: claim, 8 workers",
            "Store.claim(10) until none due",
            statistics.median(claim_samples),
            "tasks/s",
            note=f"{tasks:,} due tasks",
        )
    )
    return rows


def run(settings: Settings) -> tuple[list[Row], list[str]]:
    notes: list[str] = []
    rows: list[Row] = []
    with _sqlite_target() as (url, path):
        rows += _backend_rows(settings, "SQLite (WAL, synchronous=NORMAL)", "raw-sqlite", url, path)
    base = os.environ.get(POSTGRES_ENV)
    if base:
        with _postgres_target(base) as (url, durability):
            rows += _backend_rows(settings, f"PostgreSQL ({durability})", "raw-postgres", url, url)
    else:
        notes.append(f"PostgreSQL store rows skipped: {POSTGRES_ENV} is not set")
    return rows, notes
