"""``taskfsm simulate``: a real fleet of spawned worker processes on SQLite and PostgreSQL
(one of them killed with SIGKILL mid-task), then every history checked; and the history
check itself against forged illegal histories."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from pg_support import postgres_schema
from taskfsm import RetryPolicy, TaskMachine, TaskPhase, TaskStatus
from taskfsm.cli import ExitCode, cli
from taskfsm.cli._simulate import check_history
from taskfsm.stores import TransitionRecord, open_store

VENV_BIN = Path(sys.executable).parent
SMALL = ["--tasks", "24", "--workers", "3", "--fail-rate", "0.3", "--seed", "7"]


def simulate(db: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--db", db, "--json", "simulate", *args])


def outcome(result: Result) -> dict[str, Any]:
    assert result.exit_code == 0, (result.exit_code, result.stderr, result.stdout)
    out: dict[str, Any] = json.loads(result.stdout)
    return out


def assert_fleet_finished(db: str, out: dict[str, Any], tasks: int) -> None:
    assert out["ok"] is True
    assert out["problems"] == []
    assert sum(out["phases"].values()) == tasks
    assert set(out["phases"]) <= {"completed", "failed"}
    with open_store(db) as store:
        mine = [
            (task_id, st)
            for phase in ("completed", "failed")
            for task_id, st in store.list(phase=phase, limit=10_000)
            if task_id.startswith(out["run"])
        ]
        assert len(mine) == tasks
        retries = 0
        for task_id, st in mine:
            history = store.history(task_id)
            assert history[-1].status == st
            retries += sum(
                1 for r in history if r.event == "fail" and r.to_phase is TaskPhase.WAITING
            )
        assert retries == out["retries"]


@pytest.mark.slow
def test_a_small_fleet_on_sqlite_finishes_and_reruns(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/fleet.db"
    first = outcome(simulate(db, *SMALL))
    assert first["killed"] == "taskfsm-worker-0"
    assert first["reaped"] >= 1  # the killed worker's task came back through the reaper
    assert first["transitions"] > 0
    assert first["transitionsPerSecond"] > 0
    assert_fleet_finished(db, first, 24)
    second = outcome(simulate(db, *SMALL))  # fresh task ids: the same store again
    assert second["run"] != first["run"]
    assert_fleet_finished(db, second, 24)


@pytest.mark.slow
def test_without_kill_one_no_worker_dies(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/fleet.db"
    out = outcome(simulate(db, "--tasks", "10", "--workers", "2", "--no-kill-one"))
    assert out["killed"] is None
    assert_fleet_finished(db, out, 10)


@pytest.mark.slow
def test_one_worker_runs_without_a_kill_and_says_so(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/fleet.db"
    result = simulate(db, "--tasks", "5", "--workers", "1", "--fail-rate", "0")
    out = outcome(result)
    assert "needs at least 2 workers" in result.stderr
    assert out["killed"] is None
    assert out["phases"] == {"completed": 5}


@pytest.fixture
def postgres_db() -> Iterator[str]:
    with postgres_schema("cli") as url:
        yield url


@pytest.mark.slow
@pytest.mark.postgres
def test_a_small_fleet_on_postgresql_finishes(postgres_db: str) -> None:
    out = outcome(simulate(postgres_db, *SMALL))
    assert out["killed"] == "taskfsm-worker-0"
    assert out["reaped"] >= 1
    assert_fleet_finished(postgres_db, out, 24)


@pytest.mark.postgres
def test_store_commands_on_postgresql(postgres_db: str) -> None:
    def run(*args: str) -> Result:
        return CliRunner().invoke(cli, ["--db", postgres_db, "--json", *args])

    assert run("create", "pg-1").exit_code == 0
    for event in ("schedule", "start"):
        assert run("apply", "pg-1", event).exit_code == 0
    claimed = run("claim")
    assert (claimed.exit_code, claimed.stdout) == (0, "")
    done = run("apply", "pg-1", "complete")
    assert TaskStatus.from_json(done.stdout).phase is TaskPhase.COMPLETED
    assert run("apply", "pg-1", "complete").exit_code == ExitCode.REFUSED
    assert run("show", "ghost").exit_code == ExitCode.NOT_FOUND
    assert len(run("history", "pg-1").stdout.splitlines()) == 4


def test_refuses_a_store_with_active_tasks_it_did_not_make(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/busy.db"
    with open_store(db) as store:
        store.create("real-job")
    result = simulate(db, "--tasks", "2")
    assert result.exit_code == ExitCode.REFUSED
    assert len(result.stderr.splitlines()) == 1
    assert "'real-job'" in result.stderr
    with open_store(db) as store:
        assert [t for t, _ in store.list()] == ["real-job"]  # nothing created


@pytest.mark.parametrize("db", ["memory://", "sqlite:///:memory:"])
def test_refuses_a_store_only_one_process_sees(db: str) -> None:
    result = simulate(db)
    assert result.exit_code == ExitCode.USAGE
    assert "share" in result.stderr


@pytest.mark.slow
def test_defaults_in_a_fresh_directory_just_work(tmp_path: Path) -> None:
    """The README's main job: ``taskfsm simulate`` with no arguments on a fresh machine."""
    env = {k: v for k, v in os.environ.items() if k != "TASKFSM_DB"}
    for _ in range(2):  # and again on the same ./taskfsm.db
        done = subprocess.run(
            [str(VENV_BIN / "taskfsm"), "simulate"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr + done.stdout
        assert "invariants: ok (200 histories are legal paths)" in done.stdout
        assert "transitions/s" in done.stdout
    assert (tmp_path / "taskfsm.db").exists()


# -- the history check itself ----------------------------------------------------------

POLICY = RetryPolicy(max_retries=1, initial_delay=0.0, max_delay=0.0)
T0 = 1_700_000_000_000


def walk(*steps: tuple[str, dict[str, Any]]) -> list[TransitionRecord]:
    """A history made by the engine: the creation, then *steps*, one ms apart."""
    now = [T0]
    fsm = TaskMachine(policy=POLICY, clock=lambda: now[0])
    st = fsm.new()
    records = [TransitionRecord(1, "t", "create", None, st.phase, st)]
    for seq, (event, kwargs) in enumerate(steps, 2):
        now[0] += 1
        new = fsm.apply(st, event, **kwargs)
        records.append(TransitionRecord(seq, "t", event, st.phase, new.phase, new))
        st = new
    return records


HAPPY = (
    ("schedule", {}),
    ("start", {}),
    ("progress", {"value": 0.5}),
    ("fail", {"error": "flaky"}),
    ("start", {}),
    ("complete", {}),
)


def forge(records: list[TransitionRecord], index: int, **changes: Any) -> list[TransitionRecord]:
    import attrs

    forged = list(records)
    forged[index] = attrs.evolve(forged[index], **changes)
    return forged


def test_check_history_accepts_an_engine_made_history() -> None:
    assert check_history(walk(*HAPPY), "t", POLICY) == []


def test_check_history_finds_an_illegal_step() -> None:
    records = walk(*HAPPY)
    # `complete` straight from waiting: the engine never allows it.
    skipped = [*records[:5], *records[6:]]
    skipped[-1] = TransitionRecord(
        skipped[-1].seq, "t", "complete", TaskPhase.WAITING, TaskPhase.COMPLETED,
        skipped[-1].status,
    )  # fmt: skip
    problems = check_history(skipped, "t", POLICY)
    assert any("illegal step complete" in p for p in problems), problems


def test_check_history_finds_a_retry_the_policy_did_not_allow() -> None:
    records = walk(*HAPPY[:4], ("start", {}), ("fail", {"error": "again", "retryable": False}))
    last = records[-1]
    over = forge(
        records,
        -1,
        to_phase=TaskPhase.WAITING,
        status=TaskStatus(TaskPhase.WAITING, last.status.updated_at, None, "again", 2),
    )
    problems = check_history(over, "t", POLICY)
    assert any("illegal step fail" in p for p in problems), problems


def test_check_history_finds_time_going_backwards_and_an_unfinished_task() -> None:
    records = walk(*HAPPY[:3])
    back = forge(records, 1, status=TaskStatus(TaskPhase.WAITING, T0 - 5))
    problems = check_history(back, "t", POLICY)
    assert any("illegal step schedule" in p for p in problems), problems
    assert any("ended running" in p for p in problems), problems


def test_check_history_needs_the_creation_first() -> None:
    problems = check_history(walk(*HAPPY)[1:], "t", POLICY)
    assert problems == [problems[0]]
    assert "creation" in problems[0]
    assert check_history([], "t", POLICY) == ["t: empty history"]
