"""``taskfsm replay``: generated event logs with deliberate illegal and malformed lines, with
and without --keep-going, in memory and into a store, checked against the engine itself."""

from __future__ import annotations

import json
import os
import pty
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskfsm import TaskFSMError, TaskMachine, TaskPhase
from taskfsm.cli import ExitCode, cli
from taskfsm.stores import open_store

VENV_BIN = Path(sys.executable).parent


def run(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=stdin)


def event_kwargs(event: str, rng: random.Random, progress: float | None) -> dict[str, Any]:
    if event == "progress":
        return {"value": round(min(1.0, (progress or 0.0) + rng.choice([0.0, 0.1, 0.25])), 2)}
    if event == "fail":
        return {"error": "boom", "retryable": rng.choice([True, False, None])}
    return {}


def legal_log(n_tasks: int, n_events: int, seed: int) -> list[dict[str, Any]]:
    """*n_events* legal events: random walks of *n_tasks* live tasks through the engine; a
    task that reached a phase without events is replaced by a new one."""
    rng = random.Random(seed)
    fsm = TaskMachine()
    statuses = {f"job-{n}": fsm.new() for n in range(n_tasks)}
    live = sorted(statuses)
    log = []
    while len(log) < n_events:
        slot = rng.randrange(n_tasks)
        task = live[slot]
        current = statuses[task]
        allowed = sorted(fsm.allowed_events(current))
        if not allowed:
            live[slot] = f"job-{len(statuses)}"
            statuses[live[slot]] = fsm.new()
            continue
        event = rng.choice(allowed)
        kwargs = event_kwargs(event, rng, current.progress)
        statuses[task] = fsm.apply(current, event, **kwargs)
        log.append({"task": task, "event": event, **kwargs})
    return log


def reference(lines: list[str]) -> tuple[dict[str, TaskPhase], list[int], list[int]]:
    """What replay must do, computed line by line with the engine: final phases, the
    numbers of refused lines and of malformed lines."""
    fsm = TaskMachine()
    statuses: dict[str, Any] = {}
    refused, malformed = [], []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            malformed.append(n)
            continue
        if not (isinstance(rec, dict) and isinstance(rec.get("task"), str)):
            malformed.append(n)
            continue
        if not isinstance(rec.get("event"), str):
            malformed.append(n)
            continue
        task, event = rec.pop("task"), rec.pop("event")
        current = statuses.setdefault(task, fsm.new())
        try:
            statuses[task] = fsm.apply(current, event, **rec)
        except TaskFSMError:
            refused.append(n)
    return {t: s.phase for t, s in statuses.items()}, refused, malformed


def write(path: Path, lines: list[str]) -> str:
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


def with_illegal(log: list[dict[str, Any]], at: list[int]) -> list[str]:
    """*log* as JSON lines with an illegal event inserted before each index in *at*: a
    `complete` of a task that is still pending. Line *at[k]* + k + 1 is the k-th."""
    lines = [json.dumps(rec) for rec in log]
    assert max(at) <= len(lines)
    for k, index in enumerate(sorted(at)):
        lines.insert(index + k, json.dumps({"task": f"fresh-{k}", "event": "complete"}))
    return lines


def summary(result: Result) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    return out


def test_a_legal_log_replays_to_the_engines_phases(tmp_path: Path) -> None:
    lines = [json.dumps(rec) for rec in legal_log(50, 2000, seed=1)]
    phases, refused, malformed = reference(lines)
    assert refused == malformed == []
    result = run("--json", "replay", write(tmp_path / "log.jsonl", lines))
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    out = summary(result)
    assert out["phases"] == {p.value: Counter(phases.values())[p] for p in TaskPhase}
    assert (out["lines"], out["applied"], out["refused"], out["malformed"]) == (
        len(lines),
        len(lines),
        0,
        0,
    )
    assert out["tasks"] == len(phases)
    assert out["stoppedAt"] is None


def test_text_summary_lists_every_phase(tmp_path: Path) -> None:
    lines = [json.dumps(rec) for rec in legal_log(5, 40, seed=2)]
    result = run("replay", write(tmp_path / "log.jsonl", lines))
    assert result.exit_code == 0, result.stderr
    first, *rows = result.stdout.splitlines()
    assert first.startswith(f"replayed {len(lines)} events on ")
    assert [row.split()[0] for row in rows] == [p.value for p in TaskPhase]


def test_stops_at_the_first_illegal_event_with_its_line_number(tmp_path: Path) -> None:
    lines = with_illegal(legal_log(20, 500, seed=3), at=[100, 300])
    result = run("--json", "replay", write(tmp_path / "log.jsonl", lines))
    assert result.exit_code == ExitCode.REFUSED
    err = result.stderr.splitlines()
    assert err[0] == (
        "line 101: cannot complete task 'fresh-0': phase is pending; "
        "allowed: cancel, fail, schedule"
    )
    assert err[1].startswith("stopped at line 101")
    assert len(err) == 2
    out = summary(result)
    assert (out["lines"], out["refused"], out["applied"], out["stoppedAt"]) == (101, 1, 100, 101)


def test_keep_going_reports_every_illegal_event(tmp_path: Path) -> None:
    log = legal_log(20, 500, seed=4)
    lines = with_illegal(log, at=[0, 250, len(log)])
    phases, refused, _ = reference(lines)
    assert refused == [1, 252, len(log) + 3]
    result = run("--json", "replay", "--keep-going", write(tmp_path / "log.jsonl", lines))
    assert result.exit_code == ExitCode.REFUSED
    assert [line.split(":")[0] for line in result.stderr.splitlines()] == [
        "line 1",
        "line 252",
        f"line {len(log) + 3}",
    ]
    out = summary(result)
    assert (out["refused"], out["applied"], out["lines"]) == (3, len(lines) - 3, len(lines))
    assert out["phases"] == {p.value: Counter(phases.values())[p] for p in TaskPhase}


MALFORMED = [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "not an event"),
    ('{"event": "schedule"}', "not an event"),
    ('{"task": 7, "event": "schedule"}', "not an event"),
    ('{"task": "a", "event": ["schedule"]}', "not an event"),
    ('{"task": "a", "event": 5}', "not an event"),
    ('{"task": "a", "event": "schedule", "event_id": 9}', "not an event"),
    ('"just a string"', "not an event"),
]


@pytest.mark.parametrize(("bad", "why"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_a_malformed_line_exits_5_naming_its_line(tmp_path: Path, bad: str, why: str) -> None:
    lines = ['{"task": "a", "event": "schedule"}', "", bad, '{"task": "a", "event": "start"}']
    result = run("replay", write(tmp_path / "log.jsonl", lines))
    assert result.exit_code == ExitCode.INVALID_DATA, result.stderr
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"line 3: {why}")


def test_keep_going_over_malformed_and_illegal_lines_exits_1(tmp_path: Path) -> None:
    lines = [
        '{"task": "a", "event": "schedule"}',
        "{oops",
        '{"task": "a", "event": "complete"}',
        "   ",
        '{"task": "a", "event": "start"}',
        '{"task": "a", "event": "progress", "value": 1.5}',
        '{"task": "a", "event": "progress", "value": 0.5, "colour": "red"}',
        '{"task": "a", "event": "complete"}',
    ]
    phases, refused, malformed = reference(lines)
    assert (refused, malformed) == ([3, 6, 7], [2])
    result = run("--json", "replay", "--keep-going", write(tmp_path / "log.jsonl", lines))
    assert result.exit_code == ExitCode.REFUSED
    err = result.stderr.splitlines()
    assert [line.split(":")[0] for line in err] == ["line 2", "line 3", "line 6", "line 7"]
    assert err[2] == "line 6: cannot progress task 'a': progress must be within [0, 1], got 1.5"
    assert "'colour'" in err[3]
    out = summary(result)
    assert (out["lines"], out["applied"], out["refused"], out["malformed"]) == (7, 3, 3, 1)
    assert phases == {"a": TaskPhase.COMPLETED}


def test_reads_stdin_with_dash() -> None:
    log = "".join(json.dumps(rec) + "\n" for rec in legal_log(3, 30, seed=5))
    result = run("--json", "replay", "-", stdin=log)
    assert result.exit_code == 0, result.stderr
    assert summary(result)["lines"] == log.count("\n")


def test_event_ids_apply_once_per_task(tmp_path: Path) -> None:
    lines = [
        '{"task": "a", "event": "schedule", "event_id": "e1"}',
        '{"task": "a", "event": "schedule", "event_id": "e1"}',
        '{"task": "b", "event": "schedule", "event_id": "e1"}',
        '{"task": "a", "event": "start", "event_id": "e1"}',
    ]
    result = run("--json", "replay", "--keep-going", write(tmp_path / "log.jsonl", lines))
    assert result.exit_code == ExitCode.REFUSED
    assert result.stderr.splitlines() == [
        "line 4: cannot start task 'a': event id 'e1' was already used by 'schedule'"
    ]
    out = summary(result)
    assert (out["applied"], out["duplicates"], out["refused"]) == (2, 1, 1)
    assert out["phases"]["waiting"] == 2


def test_unreadable_files_exit_5_in_one_line(tmp_path: Path) -> None:
    result = run("replay", str(tmp_path / "missing.jsonl"))
    assert result.exit_code == ExitCode.INVALID_DATA
    assert (
        result.stderr
        == f"Error: cannot read {tmp_path / 'missing.jsonl'}: No such file or directory\n"
    )
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b'{"task": "a", "event": "schedule"}\n\xff\xfe\n')
    result = run("replay", str(binary))
    assert result.exit_code == ExitCode.INVALID_DATA
    assert len(result.stderr.splitlines()) == 1
    assert "not UTF-8" in result.stderr


def test_into_db_applies_to_the_store_and_keeps_existing_tasks(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/tasks.db"
    with open_store(db) as store:
        store.create("old")
        store.apply("old", "schedule")
    lines = [
        '{"task": "old", "event": "start"}',
        '{"task": "new", "event": "schedule", "event_id": "s-1"}',
        '{"task": "new", "event": "schedule", "event_id": "s-1"}',
        '{"task": "new", "event": "complete"}',
        '{"task": "old", "event": "fail", "error": "gone", "retryable": false}',
    ]
    log = write(tmp_path / "log.jsonl", lines)
    result = run("--db", db, "--json", "replay", "--into-db", "--keep-going", log)
    assert result.exit_code == ExitCode.REFUSED
    assert result.stderr.splitlines() == [
        "line 4: cannot complete task 'new': phase is waiting; allowed: cancel, fail, start"
    ]
    out = summary(result)
    assert (out["lines"], out["applied"], out["refused"]) == (5, 4, 1)
    with open_store(db) as store:
        assert store.get("old").phase is TaskPhase.FAILED
        assert store.get("new").phase is TaskPhase.WAITING
        assert [r.event for r in store.history("new")] == ["create", "schedule"]
    assert out["phases"]["failed"] == out["phases"]["waiting"] == 1


def test_into_db_and_memory_agree(tmp_path: Path) -> None:
    lines = with_illegal(legal_log(10, 300, seed=6), at=[50, 150])
    log = write(tmp_path / "log.jsonl", lines)
    memory = run("--json", "replay", "--keep-going", log)
    db = f"sqlite:///{tmp_path}/tasks.db"
    stored = run("--db", db, "--json", "replay", "--keep-going", "--into-db", log)
    assert memory.exit_code == stored.exit_code == ExitCode.REFUSED
    assert memory.stderr == stored.stderr
    assert summary(memory) == summary(stored)


def test_into_db_with_an_unreachable_store_exits_4(tmp_path: Path) -> None:
    log = write(tmp_path / "log.jsonl", ['{"task": "a", "event": "schedule"}'])
    bad = tmp_path / "not-a.db"
    bad.write_bytes(b"garbage " * 512)
    result = run("--db", f"sqlite:///{bad}", "replay", "--into-db", log)
    assert result.exit_code == ExitCode.STORE_UNAVAILABLE
    assert len(result.stderr.splitlines()) == 1


LINES = st.one_of(
    st.builds(
        lambda t, e, v: json.dumps({"task": t, "event": e, **v}),
        st.sampled_from(["a", "b", "c"]),
        st.sampled_from(
            ["schedule", "start", "heartbeat", "complete", "cancel", "restart", "bogus"]
        ),
        st.just({}),
    ),
    st.builds(
        lambda t, v: json.dumps({"task": t, "event": "progress", "value": v}),
        st.sampled_from(["a", "b"]),
        st.sampled_from([0.0, 0.5, 1.0, 2.0, -1]),
    ),
    st.builds(
        lambda t, r: json.dumps({"task": t, "event": "fail", "error": "x", "retryable": r}),
        st.sampled_from(["a", "b"]),
        st.sampled_from([True, False, None, "yes"]),
    ),
    st.sampled_from(["", "{", "[]", '{"task": "a"}', "null"]),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(lines=st.lists(LINES, max_size=40))
def test_replay_matches_the_engine_line_by_line(tmp_path: Path, lines: list[str]) -> None:
    phases, refused, malformed = reference(lines)
    log = write(tmp_path / f"log-{os.urandom(4).hex()}.jsonl", lines)
    result = run("--json", "replay", "--keep-going", log)
    reported = [int(line.split(":")[0].split()[1]) for line in result.stderr.splitlines()]
    assert reported == sorted(refused + malformed)
    expected_code = (
        ExitCode.REFUSED if refused else ExitCode.INVALID_DATA if malformed else ExitCode.OK
    )
    assert result.exit_code == expected_code
    out = summary(result)
    assert out["phases"] == {p.value: Counter(phases.values())[p] for p in TaskPhase}
    assert (out["refused"], out["malformed"]) == (len(refused), len(malformed))


# -- the progress bar: on a terminal only ----------------------------------------------


def _big_log(path: Path) -> str:
    # Past the 4 MiB threshold: 120k lines of about 45 bytes.
    lines = [
        json.dumps({"task": f"job-{n // 4:06d}", "event": e})
        for n, e in enumerate(["schedule", "start", "heartbeat", "complete"] * 30_000)
    ]
    assert sum(len(line) + 1 for line in lines) > 4 << 20
    return write(path, lines)


def test_no_progress_bar_when_not_on_a_terminal(tmp_path: Path) -> None:
    result = run("replay", _big_log(tmp_path / "big.jsonl"))
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""


@pytest.mark.slow
def test_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    log = _big_log(tmp_path / "big.jsonl")
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [str(VENV_BIN / "taskfsm"), "replay", log],
        stdin=subprocess.DEVNULL,
        stdout=terminal,
        stderr=terminal,
        env={**os.environ, "TERM": "xterm"},
    )
    os.close(terminal)
    seen = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    assert proc.wait(timeout=60) == 0
    os.close(controller)
    text = seen.decode(errors="replace")
    assert "replaying" in text
    assert "100%" in text
    assert "replayed 120000 events on 30000 tasks" in text
