"""Schema: created once even when many open a fresh database at once, versioned (a newer
version refuses to open), statuses stored as readable wire JSON, due times stored once."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _impl_support import fresh_url

from taskfsm import InvalidStatus, RetryPolicy, TaskMachine, TaskPhase
from taskfsm.stores import IncompatibleSchema, Store, open_store

PG = pytest.param("postgresql", marks=pytest.mark.postgres, id="postgresql")
DURABLE = ["sqlite", PG]


def sql(url: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one statement on the store's database directly, as an operator would."""
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            return conn.execute(query, params).fetchall()
    import psycopg

    with psycopg.connect(url, autocommit=True) as pg:
        cur = pg.execute(query.replace("?", "%s"), params)
        return cur.fetchall() if cur.description else []


@pytest.mark.parametrize("backend", DURABLE)
def test_many_threads_opening_a_fresh_database_at_once_create_one_schema(
    backend: str, tmp_path: Path
) -> None:
    with fresh_url(backend, tmp_path) as url:
        barrier = threading.Barrier(8)
        stores: list[Store] = []
        errors: list[BaseException] = []

        def open_it() -> None:
            barrier.wait()
            try:
                stores.append(open_store(url))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=open_it) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        for i, store in enumerate(stores):
            store.create(f"t{i}")
        assert len(stores[0].list()) == 8
        for store in stores:
            store.close()
        versions = sql(url, "SELECT value FROM taskfsm_meta WHERE key = 'schema_version'")
        assert versions == [(1,)]


@pytest.mark.parametrize("backend", DURABLE)
def test_reopening_keeps_everything(backend: str, tmp_path: Path) -> None:
    with fresh_url(backend, tmp_path) as url:
        with open_store(url) as store:
            store.create("a")
            store.apply("a", "schedule")
        with open_store(url) as store:
            assert store.get("a").phase is TaskPhase.WAITING
            assert [r.event for r in store.history("a")] == ["create", "schedule"]


@pytest.mark.parametrize("backend", DURABLE)
def test_a_newer_schema_version_refuses_to_open(backend: str, tmp_path: Path) -> None:
    with fresh_url(backend, tmp_path) as url:
        open_store(url).close()
        sql(url, "UPDATE taskfsm_meta SET value = 7 WHERE key = 'schema_version'")
        with pytest.raises(IncompatibleSchema, match=r"schema version 7.*knows version 1"):
            open_store(url)


@pytest.mark.parametrize("backend", DURABLE)
def test_status_is_stored_as_wire_json_with_indexed_columns(backend: str, tmp_path: Path) -> None:
    with fresh_url(backend, tmp_path) as url, open_store(url) as store:
        store.create("a")
        store.apply("a", "schedule")
        status = store.apply("a", "start")
        store.apply("a", "heartbeat")
        status = store.apply("a", "progress", value=0.25)
        rows = sql(url, "SELECT status, phase, due_at, updated_at, version FROM taskfsm_tasks")
        assert rows == [(status.to_json(), "running", None, status.updated_at, 5)]
        history = sql(url, "SELECT event, status, args FROM taskfsm_history ORDER BY seq")
        assert history[-1] == ("progress", status.to_json(), '{"value":0.25}')


@pytest.mark.parametrize("backend", DURABLE)
def test_a_corrupt_row_among_claimed_tasks_is_skipped_and_left_as_it_is(
    backend: str, tmp_path: Path
) -> None:
    clock = [1_000]
    machine = TaskMachine(clock=lambda: clock[0])
    with fresh_url(backend, tmp_path) as url, open_store(url, machine=machine) as store:
        for task_id in ("b", "a"):
            store.create(task_id)
            store.apply(task_id, "schedule")
            clock[0] += 1  # b is due before a
        sql(url, "UPDATE taskfsm_tasks SET status = ? WHERE id = ?", ("{not json", "b"))
        assert [t for t, _ in store.claim(10)] == ["a"]
        with pytest.raises(InvalidStatus, match="'b'"):
            store.get("b")
        assert [r.event for r in store.history("b")] == ["create", "schedule"]
        assert [r.event for r in store.changes(limit=100)][-1] == "start"


class Draws:
    """An injectable jitter source that counts its draws."""

    def __init__(self, *values: float) -> None:
        self.values = list(values)
        self.count = 0

    def __call__(self) -> float:
        self.count += 1
        return self.values.pop(0)


@pytest.mark.parametrize("backend", ["memory", *DURABLE])
def test_a_jittered_due_time_is_drawn_once_and_survives_a_reopen(
    backend: str, tmp_path: Path
) -> None:
    clock = [1_000_000]

    def machine(draws: Callable[[], float]) -> TaskMachine:
        policy = RetryPolicy(initial_delay=30.0, jitter=True, random=draws)
        return TaskMachine(policy, clock=lambda: clock[0])

    with fresh_url(backend, tmp_path) as url:
        first = Draws(0.5)
        store = open_store(url, machine=machine(first))
        store.create("a")
        store.apply("a", "schedule")
        store.claim(1)
        failed = store.apply("a", "fail", error="flaky")
        assert (failed.phase, failed.retries, first.count) == (TaskPhase.WAITING, 1, 1)
        due = failed.updated_at + 15_000  # 0.5 * 30 s
        if backend != "memory":  # a new process: other draws would give other times
            store.close()
            store = open_store(url, machine=machine(Draws(0.0, 0.0)))
        assert store.claim(1, now=due - 1) == []
        assert [task_id for task_id, _ in store.claim(1, now=due)] == ["a"]
        assert first.count == 1
        store.close()
