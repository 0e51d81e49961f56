"""``taskfsm simulate``: a real worker fleet on the chosen store, then a check of every
task's history against a fresh engine, and a summary.

Each run creates fresh task ids ``sim-<time>-<hex>-<n>``, so it can be re-run on the same
store; it refuses a store holding active tasks that simulate did not make, since its
workers claim, and its reaper fails, any task in the store.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import multiprocessing
import os
import secrets
import signal
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import attrs
import click

from .._engine import TaskMachine
from .._errors import TaskFSMError
from .._phase import TaskPhase
from .._policy import RetryPolicy
from .._status import TaskStatus
from ._env import Env, open_db
from ._exit import CliError, ExitCode
from ._fleet import CLAIMED, COUNTERS, LOST, WorkerConfig, scaled_policy, work

if TYPE_CHECKING:
    from ..stores import Store, TransitionRecord

_ACTIVE = (TaskPhase.PENDING, TaskPhase.WAITING, TaskPhase.RUNNING)
_PREFIX = "sim-"
_PAGE = 1000


@attrs.define
class Summary:
    """The outcome of one simulation."""

    run: str
    tasks: int
    workers: int
    seed: int
    time_scale: float
    phases: dict[str, int] = attrs.Factory(dict)
    retries: int = 0
    transitions: int = 0
    reaped: int = 0
    lost: int = 0
    claimed: int = 0
    killed: str | None = None
    setup_s: float = 0.0
    wall_s: float = 0.0
    problems: list[str] = attrs.Factory(list)

    @property
    def rate(self) -> float:
        """The fleet's transitions per second of its wall time."""
        return self.transitions / self.wall_s if self.wall_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The JSON summary printed with --json."""
        return {
            "run": self.run,
            "tasks": self.tasks,
            "workers": self.workers,
            "seed": self.seed,
            "timeScale": self.time_scale,
            "phases": self.phases,
            "retries": self.retries,
            "transitions": self.transitions,
            "transitionsPerSecond": round(self.rate, 1),
            "wallSeconds": round(self.wall_s, 3),
            "setupSeconds": round(self.setup_s, 3),
            "claims": self.claimed,
            "reaped": self.reaped,
            "lost": self.lost,
            "killed": self.killed,
            "ok": not self.problems,
            "problems": self.problems,
        }


def _in_memory(url: str) -> bool:
    # Each process would open its own empty store.
    url = url.partition("?")[0].lower()
    return url.startswith("memory:") or url.endswith(":memory:") or url.rstrip("/") == "sqlite:"


def _active_ids(store: Store) -> Iterator[str]:
    for phase in _ACTIVE:
        after = None
        while page := store.list(phase=phase.value, limit=_PAGE, after=after):
            for task_id, _ in page:
                yield task_id
            after = page[-1][0]


def _refuse_foreign_tasks(store: Store, url: str) -> None:
    for task_id in _active_ids(store):
        if not task_id.startswith(_PREFIX):
            raise CliError(
                f"the store at {url} holds active tasks simulate did not make (e.g. "
                f"{task_id!r}); simulate claims and reaps every task in its store: "
                "point --db at a scratch database",
                ExitCode.REFUSED,
            )


def _unfinished(store: Store, run: str) -> int:
    return sum(1 for task_id in _active_ids(store) if task_id.startswith(run))


def _reachable(policy: RetryPolicy, prev: TaskStatus, rec: TransitionRecord) -> list[TaskStatus]:
    """The statuses a fresh engine reaches from *prev* with *rec*'s event, stamped at
    *rec*'s time (so an ``updated_at`` going backwards shows as a mismatch)."""
    fsm = TaskMachine(policy=policy, clock=lambda: int(rec.status.updated_at))
    options: list[dict[str, Any]]
    if rec.event == "progress":
        options = [{"value": rec.status.progress}]
    elif rec.event == "fail":
        options = [{"error": rec.status.error_message, "retryable": r} for r in (True, False)]
    else:
        options = [{}]
    reached = []
    for kwargs in options:
        with contextlib.suppress(TaskFSMError):
            reached.append(fsm.apply(prev, rec.event, **kwargs))
    return reached


def check_history(records: list[TransitionRecord], task_id: str, policy: RetryPolicy) -> list[str]:
    """Problems with *task_id*'s history: it must start with its creation, follow legal
    transitions of a fresh engine with *policy*, and end completed or failed."""
    if not records:
        return [f"{task_id}: empty history"]
    first = records[0]
    if (first.event, first.from_phase, first.to_phase) != ("create", None, TaskPhase.PENDING):
        return [f"{task_id}: history does not start with its creation: {first}"]
    problems = []
    for prev, rec in itertools.pairwise(records):
        if rec.seq <= prev.seq or rec.from_phase is not prev.to_phase:
            problems.append(f"{task_id}: record {rec.seq} does not follow record {prev.seq}")
        elif rec.status not in _reachable(policy, prev.status, rec):
            problems.append(
                f"{task_id}: illegal step {rec.event} from {prev.status.to_json()} "
                f"to {rec.status.to_json()}"
            )
    last = records[-1].status.phase
    if last not in (TaskPhase.COMPLETED, TaskPhase.FAILED):
        problems.append(f"{task_id}: ended {last.value}, not completed or failed")
    return problems


@attrs.define
class _Fleet:
    procs: list[Any]
    ready: Any
    go: Any
    holding: Any
    stop: Any
    counters: Any


def _spawn_fleet(
    url: str, workers: int, fail_rate: float, seed: int, time_scale: float, doomed: bool
) -> _Fleet:
    mp = multiprocessing.get_context("spawn")
    fleet = _Fleet(
        [], mp.Semaphore(0), mp.Event(), mp.Event(), mp.Event(),
        mp.Array("q", workers * COUNTERS, lock=False),
    )  # fmt: skip
    for index in range(workers):
        config = WorkerConfig(index, url, time_scale, fail_rate, seed, doomed and index == 0)
        proc = mp.Process(
            target=work,
            args=(config, fleet.ready, fleet.go, fleet.holding, fleet.stop, fleet.counters),
            name=f"taskfsm-worker-{index}",
            daemon=True,
        )
        proc.start()
        fleet.procs.append(proc)
    return fleet


def _await_ready(fleet: _Fleet) -> bool:
    """Wait until every worker has opened the store; False if one exited first."""
    waiting = len(fleet.procs)
    while waiting:
        if fleet.ready.acquire(timeout=0.1):
            waiting -= 1
        elif not all(proc.is_alive() for proc in fleet.procs):
            return False
    return True


def _run(
    env: Env,
    tasks: int,
    workers: int,
    fail_rate: float,
    seed: int,
    time_scale: float,
    kill_one: bool,
    stale_timeout: float,
) -> Summary:
    run = f"{_PREFIX}{time.strftime('%Y%m%d%H%M%S')}-{secrets.token_hex(2)}-"
    summary = Summary(run, tasks, workers, seed, time_scale)
    policy = scaled_policy(time_scale)
    timeout_s = stale_timeout * time_scale
    tick = max(0.005, min(0.05, timeout_s / 4))
    with open_db(env.db, TaskMachine(policy=policy)) as store:
        _refuse_foreign_tasks(store, env.db)
        started = time.perf_counter()
        ids = [f"{run}{n:05d}" for n in range(tasks)]
        for task_id in ids:
            store.create(task_id)
            store.apply(task_id, "schedule")
        doomed = kill_one and workers >= 2
        fleet = _spawn_fleet(env.db, workers, fail_rate, seed, time_scale, doomed)
        try:
            if not _await_ready(fleet):
                summary.problems.append("a worker exited before it opened the store")
                return summary
            summary.setup_s = time.perf_counter() - started
            fleet_started = time.perf_counter()
            fleet.go.set()
            victim = fleet.procs[0] if doomed else None
            while True:
                if victim is not None and fleet.holding.is_set():
                    os.kill(victim.pid, signal.SIGKILL)  # mid-task: no clean-up at all
                    victim.join()
                    summary.killed, victim = victim.name, None
                summary.reaped += sum(
                    1 for task_id in store.reap_stale(timeout_s) if task_id.startswith(run)
                )
                if _unfinished(store, run) == 0:
                    break
                if not any(proc.is_alive() for proc in fleet.procs):
                    summary.problems.append("every worker exited with tasks unfinished")
                    break
                (fleet.holding if victim is not None else fleet.stop).wait(tick)
            summary.wall_s = time.perf_counter() - fleet_started
        finally:
            fleet.stop.set()
            fleet.go.set()
            for proc in fleet.procs:
                proc.join(timeout=30)
                if proc.is_alive():
                    proc.kill()
                    proc.join()
        for index, proc in enumerate(fleet.procs):
            killed = proc.name == summary.killed and proc.exitcode == -signal.SIGKILL
            if proc.exitcode != 0 and not killed:
                summary.problems.append(f"{proc.name} exited with code {proc.exitcode}")
            summary.claimed += fleet.counters[index * COUNTERS + CLAIMED]
            summary.lost += fleet.counters[index * COUNTERS + LOST]
        if summary.killed is not None and summary.reaped == 0:
            summary.problems.append(f"{summary.killed} was killed but no task was reaped")
        _check(store, ids, policy, summary)
    return summary


def _check(store: Store, ids: list[str], policy: RetryPolicy, summary: Summary) -> None:
    phases = dict.fromkeys((p.value for p in TaskPhase), 0)
    for task_id in ids:
        records = store.history(task_id)
        summary.problems.extend(check_history(records, task_id, policy))
        # The fleet's transitions: not the creation nor the schedule done in the setup.
        summary.transitions += max(0, len(records) - 2)
        summary.retries += sum(
            1 for r in records if r.event == "fail" and r.to_phase is TaskPhase.WAITING
        )
        if records:
            phases[records[-1].to_phase.value] += 1
    summary.phases = {phase: n for phase, n in phases.items() if n}


def _print(summary: Summary, db: str, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(summary.to_dict(), separators=(",", ":")))
        return
    click.echo(
        f"simulate: {summary.tasks} tasks ({summary.run}*), {summary.workers} workers, "
        f"{db}, seed {summary.seed}, time scale {summary.time_scale:g}"
    )
    killed = f"  ({summary.killed} killed with SIGKILL)" if summary.killed else ""
    rows = [
        *((phase, str(n), "") for phase, n in summary.phases.items()),
        ("retries", str(summary.retries), ""),
        ("reaped", str(summary.reaped), killed),
        ("lost", str(summary.lost), "  (reaped while their worker was alive)"),
        ("transitions", str(summary.transitions), ""),
        ("wall time", f"{summary.wall_s:.2f}", f" s  (+ {summary.setup_s:.2f} s set-up)"),
        ("transitions/s", f"{summary.rate:.0f}", ""),
    ]
    label_w = max(len(label) for label, _, _ in rows)
    value_w = max(len(value) for _, value, _ in rows)
    for label, value, note in rows:
        click.echo(f"{label.ljust(label_w)}  {value.rjust(value_w)}{note}")
    if summary.problems:
        click.echo(f"invariants: {len(summary.problems)} broken")
    else:
        click.echo(f"invariants: ok ({summary.tasks} histories are legal paths)")


@click.command()
@click.option(
    "--tasks",
    type=click.IntRange(min=1),
    default=200,
    show_default=True,
    metavar="N",
    help="Tasks to create, with fresh ids sim-<time>-<hex>-<n>.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    metavar="W",
    help="Worker processes, each opening the store itself.",
)
@click.option(
    "--fail-rate",
    type=click.FloatRange(0, 1),
    default=0.2,
    show_default=True,
    metavar="F",
    help="Share of attempts that fail; a quarter of failures are not retryable.",
)
@click.option("--seed", type=int, metavar="S", help="Seed of the workers' choices (random).")
@click.option(
    "--time-scale",
    type=click.FloatRange(min=0, min_open=True),
    default=0.001,
    show_default=True,
    metavar="X",
    help="Multiplies every simulated delay: work, retry waits, the stale timeout.",
)
@click.option(
    "--kill-one/--no-kill-one",
    default=True,
    show_default=True,
    help="SIGKILL one worker while it holds a task, for the reaper to recover.",
)
@click.option(
    "--stale-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=300.0,
    show_default=True,
    metavar="SECONDS",
    help="Simulated seconds without an update before the reaper fails a running task.",
)
@click.pass_context
def simulate(
    ctx: click.Context,
    tasks: int,
    workers: int,
    fail_rate: float,
    seed: int | None,
    time_scale: float,
    kill_one: bool,
    stale_timeout: float,
) -> None:
    """Run a worker fleet on --db; check every history.

    Creates and schedules N fresh tasks; W worker processes claim them, report progress,
    complete or fail them; failed tasks retry on the default policy's schedule (delays
    times X); a reaper fails the task of the worker killed mid-run. Then each history is
    replayed through a fresh engine. Exits 8 if any invariant broke. Re-running on the
    same store is fine (fresh ids); a store with active tasks simulate did not make is
    refused.
    """
    env = ctx.find_object(Env)
    assert env is not None
    if _in_memory(env.db):
        raise CliError(
            f"simulate needs a store its worker processes share, not {env.db}",
            ExitCode.USAGE,
        )
    if seed is None:
        seed = secrets.randbelow(2**31)
    if kill_one and workers < 2:
        click.echo("note: --kill-one needs at least 2 workers; no worker is killed", err=True)
    summary = _run(env, tasks, workers, fail_rate, seed, time_scale, kill_one, stale_timeout)
    for problem in summary.problems:
        click.echo(f"invariant broken: {problem}", err=True)
    _print(summary, env.db, env.as_json)
    if summary.problems:
        ctx.exit(ExitCode.CHECK_FAILED)
