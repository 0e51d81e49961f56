"""The plan drivers: one transaction per attempt, a rerun from scratch on a lost
compare-and-set, a clear error when every attempt loses; and real CAS conflicts on
PostgreSQL forced by a concurrent writer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import pytest
from _impl_support import postgres_schema

from taskfsm import InvalidArgument, TaskMachine, TaskPhase, TaskStatus, system_clock
from taskfsm.stores import TooManyConflicts, open_store
from taskfsm.stores._driver import Execute, run_async, run_sync
from taskfsm.stores._plans import Conflict, Op, Plan, ReadTask, Steps


class Recorder:
    """A backend that logs its transactions and answers every operation with None."""

    def __init__(self) -> None:
        self.log: list[str] = []

    @contextmanager
    def transaction(self, write: bool) -> Iterator[Execute]:
        self.log.append(f"begin write={write}")
        try:
            yield self._execute
        except BaseException as exc:
            self.log.append(f"rollback {type(exc).__name__}")
            raise
        self.log.append("commit")

    @asynccontextmanager
    async def atransaction(self, write: bool) -> AsyncIterator[Any]:
        with self.transaction(write) as execute:

            async def aexecute(op: Op) -> Any:
                return execute(op)

            yield aexecute

    def _execute(self, op: Op) -> Any:
        self.log.append(type(op).__name__)
        return None

    def close(self) -> None:
        self.log.append("close")


class AsyncRecorder:
    def __init__(self, recorder: Recorder) -> None:
        self.transaction = recorder.atransaction


def losing(times: int, error: type[Exception] = Conflict) -> Plan[str]:
    """A plan that reads once, then loses its compare-and-set *times* times."""
    attempts = iter(range(times + 1))

    def start() -> Steps[str]:
        yield ReadTask("a")
        if next(attempts) < times:
            raise error("lost")
        return "done"

    return Plan(start, True, "apply 'start' to task 'a'")


def test_a_lost_compare_and_set_rolls_back_and_reruns_the_plan() -> None:
    backend = Recorder()
    assert run_sync(backend, losing(2)) == "done"
    attempt_lost = ["begin write=True", "ReadTask", "rollback Conflict"]
    assert backend.log == [*attempt_lost, *attempt_lost, "begin write=True", "ReadTask", "commit"]


def test_every_attempt_lost_raises_too_many_conflicts_naming_the_operation() -> None:
    backend = Recorder()
    with pytest.raises(TooManyConflicts, match=r"gave up on apply 'start' to task 'a' after 5"):
        run_sync(backend, losing(10), attempts=5)
    assert backend.log.count("commit") == 0
    assert backend.log.count("rollback Conflict") == 5


def test_other_errors_roll_back_once_and_are_not_retried() -> None:
    backend = Recorder()
    with pytest.raises(InvalidArgument, match="lost"):
        run_sync(backend, losing(1, InvalidArgument))
    assert backend.log == ["begin write=True", "ReadTask", "rollback InvalidArgument"]


async def test_the_async_driver_retries_the_same_way() -> None:
    recorder = Recorder()
    assert await run_async(AsyncRecorder(recorder), losing(3)) == "done"
    assert recorder.log.count("rollback Conflict") == 3
    assert recorder.log[-1] == "commit"
    with pytest.raises(TooManyConflicts):
        await run_async(AsyncRecorder(recorder), losing(9), attempts=4)


# -- real conflicts on PostgreSQL ---------------------------------------------------------


class Interloper:
    """A machine clock that, while the store is deciding, bumps the task's version
    through another connection: the store's compare-and-set must then lose."""

    def __init__(self, url: str, task_id: str) -> None:
        import psycopg

        self.conn = psycopg.connect(url, autocommit=True)
        self.task_id = task_id
        self.times = 0
        self.calls = 0

    def __call__(self) -> int:
        if self.times:
            self.calls += 1
            if self.calls <= self.times:
                self.conn.execute(
                    "UPDATE taskfsm_tasks SET version = version + 1 WHERE id = %s",
                    (self.task_id,),
                )
        return system_clock()


@pytest.mark.postgres
def test_postgres_apply_decides_again_after_losing_its_compare_and_set() -> None:
    with postgres_schema() as url:
        interloper = Interloper(url, "a")
        heard: list[tuple[TaskStatus, TaskStatus, str]] = []
        machine = TaskMachine(clock=interloper, listeners=[lambda *t: heard.append(t)])
        with open_store(url, machine=machine) as store:
            store.create("a")
            store.apply("a", "schedule")
            before = store.apply("a", "start")
            heard.clear()
            interloper.times = 2
            try:
                status = store.apply("a", "progress", value=0.5, event_id="p1")
            finally:
                interloper.times = 0
                interloper.conn.close()
            assert interloper.calls == 3  # decided three times, written once
            assert heard == [(before, status, "progress")]  # listeners: once, after commit
            assert status.progress == 0.5
            assert store.get("a") == status
            events = [r.event for r in store.history("a")]
            assert events == ["create", "schedule", "start", "progress"]


@pytest.mark.postgres
def test_postgres_apply_gives_up_after_losing_every_attempt_and_writes_nothing() -> None:
    with postgres_schema() as url:
        interloper = Interloper(url, "a")
        heard: list[tuple[TaskStatus, TaskStatus, str]] = []
        machine = TaskMachine(clock=interloper, listeners=[lambda *t: heard.append(t)])
        with open_store(url, machine=machine) as store:
            store.create("a")
            store.apply("a", "schedule")
            before = (store.get("a"), store.history("a"))
            heard.clear()
            interloper.times = 10_000
            try:
                with pytest.raises(TooManyConflicts, match="apply 'start' to task 'a'"):
                    store.apply("a", "start")
            finally:
                interloper.times = 0
                interloper.conn.close()
            assert heard == []  # nothing committed, nothing heard
            assert (store.get("a"), store.history("a")) == before
            assert store.get("a").phase is TaskPhase.WAITING
