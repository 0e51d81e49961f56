"""The ``taskfsm`` command through its real entry point: every store command, --json output
parsed back, every error path with its one-line message and exit code, ``diagram``, and the
installed console script and ``python -m taskfsm`` in subprocesses."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskfsm import TaskMachine, TaskPhase, TaskStatus
from taskfsm.cli import ExitCode, cli
from taskfsm.stores import open_store

VENV_BIN = Path(sys.executable).parent


def run(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, input=stdin)


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.exit_code, result.stderr, result.exception)
    return result.stdout


def fails(result: Result, code: ExitCode) -> str:
    """Assert *result* exited with *code* and one line on stderr, no traceback; return it."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    assert isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def json_lines(text: str) -> list[Any]:
    return [json.loads(line) for line in text.splitlines()]


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/tasks.db"


def apply(db: str, task: str, event: str, *opts: str) -> Result:
    return run("--db", db, "--json", "apply", task, event, *opts)


def running(db: str, task: str) -> None:
    ok(run("--db", db, "create", task))
    for event in ("schedule", "start"):
        ok(apply(db, task, event))


# -- store commands --------------------------------------------------------------------


def test_create_show_apply_in_text(db: str) -> None:
    out = ok(run("--db", db, "create", "job-1"))
    header, row = out.splitlines()
    assert header.split() == ["ID", "PHASE", "PROGRESS", "RETRIES", "UPDATED", "ERROR"]
    assert row.split()[:4] == ["job-1", "pending", "-", "0"]
    ok(run("--db", db, "apply", "job-1", "schedule"))
    ok(run("--db", db, "apply", "job-1", "start"))
    out = ok(run("--db", db, "apply", "job-1", "progress", "--progress", "0.5"))
    assert out.splitlines()[1].split()[:4] == ["job-1", "running", "0.50", "0"]
    out = ok(run("--db", db, "show", "job-1"))
    assert out.splitlines()[1].split()[:4] == ["job-1", "running", "0.50", "0"]


def test_json_statuses_are_the_wire_format(db: str) -> None:
    created = TaskStatus.from_dict(json.loads(ok(run("--db", db, "--json", "create", "j"))))
    assert created.phase is TaskPhase.PENDING
    assert created.retries == 0
    ok(apply(db, "j", "schedule"))
    ok(apply(db, "j", "start"))
    st = TaskStatus.from_dict(json.loads(ok(apply(db, "j", "progress", "--progress", "0.25"))))
    assert (st.phase, st.progress) == (TaskPhase.RUNNING, 0.25)
    shown = json.loads(ok(run("--db", db, "--json", "show", "j")))
    assert shown == st.to_dict()  # exactly the wire object, nothing added
    with open_store(db) as store:
        assert store.get("j") == TaskStatus.from_dict(shown)


def test_fail_retries_then_non_retryable_fails_and_restart_resets(db: str) -> None:
    running(db, "j")
    retried = TaskStatus.from_dict(json.loads(ok(apply(db, "j", "fail", "--error", "flaky"))))
    assert (retried.phase, retried.retries, retried.error_message) == (
        TaskPhase.WAITING,
        1,
        "flaky",
    )
    final = TaskStatus.from_dict(
        json.loads(ok(apply(db, "j", "fail", "--error", "bad codec", "--non-retryable")))
    )
    assert (final.phase, final.retries, final.error_message) == (
        TaskPhase.FAILED,
        1,
        "bad codec",
    )
    restarted = TaskStatus.from_dict(json.loads(ok(apply(db, "j", "restart"))))
    assert (restarted.phase, restarted.retries) == (TaskPhase.WAITING, 0)


def test_event_id_makes_apply_idempotent(db: str) -> None:
    running(db, "j")
    first = ok(apply(db, "j", "progress", "--progress", "0.5", "--event-id", "m-1"))
    ok(apply(db, "j", "progress", "--progress", "0.75", "--event-id", "m-2"))
    again = ok(apply(db, "j", "progress", "--progress", "0.5", "--event-id", "m-1"))
    assert again == first
    hist = json_lines(ok(run("--db", db, "--json", "history", "j")))
    assert [r["eventId"] for r in hist].count("m-1") == 1
    line = fails(apply(db, "j", "heartbeat", "--event-id", "m-1"), ExitCode.REFUSED)
    assert "m-1" in line
    assert "'progress'" in line


def test_list_filters_by_phase_and_pages_with_after(db: str) -> None:
    for n in range(5):
        ok(run("--db", db, "create", f"t{n}"))
    ok(apply(db, "t1", "schedule"))
    ok(apply(db, "t3", "schedule"))
    rows = json_lines(ok(run("--db", db, "--json", "list")))
    assert [r["id"] for r in rows] == ["t0", "t1", "t2", "t3", "t4"]
    for row in rows:
        TaskStatus.from_dict(row["status"])
    waiting = json_lines(ok(run("--db", db, "--json", "list", "--phase", "waiting")))
    assert [(r["id"], TaskStatus.from_dict(r["status"]).phase) for r in waiting] == [
        ("t1", TaskPhase.WAITING),
        ("t3", TaskPhase.WAITING),
    ]
    page = json_lines(ok(run("--db", db, "--json", "list", "--limit", "2", "--after", "t1")))
    assert [r["id"] for r in page] == ["t2", "t3"]
    text = ok(run("--db", db, "list", "--phase", "pending")).splitlines()
    assert [line.split()[0] for line in text] == ["ID", "t0", "t2", "t4"]
    assert ok(run("--db", db, "list", "--phase", "running")) == ""


def test_history_lists_every_transition(db: str) -> None:
    running(db, "j")
    ok(apply(db, "j", "complete"))
    records = json_lines(ok(run("--db", db, "--json", "history", "j")))
    assert [(r["event"], r["fromPhase"], r["toPhase"]) for r in records] == [
        ("create", None, "pending"),
        ("schedule", "pending", "waiting"),
        ("start", "waiting", "running"),
        ("complete", "running", "completed"),
    ]
    assert TaskStatus.from_dict(records[-1]["status"]).progress == 1.0
    text = ok(run("--db", db, "history", "j")).splitlines()
    assert text[0].split()[:4] == ["SEQ", "EVENT", "FROM", "TO"]
    assert [line.split()[1] for line in text[1:]] == ["create", "schedule", "start", "complete"]


def test_claim_starts_due_tasks_up_to_n(db: str) -> None:
    for n in range(3):
        ok(run("--db", db, "create", f"t{n}"))
        ok(apply(db, f"t{n}", "schedule"))
    claimed = json_lines(ok(run("--db", db, "--json", "claim", "2")))
    assert len(claimed) == 2
    assert {TaskStatus.from_dict(r["status"]).phase for r in claimed} == {TaskPhase.RUNNING}
    one = ok(run("--db", db, "claim")).splitlines()
    assert len(one) == 2
    assert one[1].split()[1] == "running"
    assert ok(run("--db", db, "claim", "5")) == ""


def test_reap_fails_silent_running_tasks(db: str) -> None:
    running(db, "stuck")
    ok(run("--db", db, "create", "idle"))
    assert ok(run("--db", db, "reap", "--timeout", "3600")) == ""
    assert json_lines(ok(run("--db", db, "--json", "reap", "--timeout", "0"))) == [{"id": "stuck"}]
    st = TaskStatus.from_dict(json.loads(ok(run("--db", db, "--json", "show", "stuck"))))
    assert (st.phase, st.retries) == (TaskPhase.WAITING, 1)
    assert st.error_message is not None
    assert "timed out" in st.error_message
    running(db, "stuck2")
    assert ok(run("--db", db, "reap", "--timeout", "0")) == "stuck2\n"


def test_db_defaults_to_env_then_taskfsm_db_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    ok(run("create", "here", env={"TASKFSM_DB": None}))
    assert (tmp_path / "taskfsm.db").exists()
    other = f"sqlite:///{tmp_path}/other.db"
    ok(run("create", "there", env={"TASKFSM_DB": other}))
    with open_store(other) as store:
        assert [t for t, _ in store.list()] == ["there"]
    with open_store("sqlite:///taskfsm.db") as store:
        assert [t for t, _ in store.list()] == ["here"]


# -- errors: one line, no traceback, a distinct exit code --------------------------------


def test_illegal_transition_names_task_phase_and_allowed_events(db: str) -> None:
    ok(run("--db", db, "create", "job-7"))
    line = fails(run("--db", db, "apply", "job-7", "complete"), ExitCode.REFUSED)
    assert line == (
        "Error: cannot complete task 'job-7': phase is pending; allowed: cancel, fail, schedule"
    )
    line = fails(run("--db", db, "apply", "job-7", "explode"), ExitCode.REFUSED)
    assert "cannot explode task 'job-7'" in line


@pytest.mark.parametrize(
    ("opts", "needle"),
    [
        (("progress", "--progress", "1.5"), "1.5"),
        (("progress",), "'value'"),
        (("fail",), "'error'"),
        (("complete", "--error", "x"), "'error'"),
        (("heartbeat", "--non-retryable"), "'retryable'"),
    ],
)
def test_bad_event_arguments_are_refused_naming_the_task(
    db: str, opts: tuple[str, ...], needle: str
) -> None:
    running(db, "j")
    ok(apply(db, "j", "progress", "--progress", "0.5"))
    line = fails(apply(db, "j", *opts), ExitCode.REFUSED)
    assert line.startswith(f"Error: cannot {opts[0]} task 'j': ")
    assert needle in line


def test_decreasing_progress_is_refused(db: str) -> None:
    running(db, "j")
    ok(apply(db, "j", "progress", "--progress", "0.5"))
    line = fails(apply(db, "j", "progress", "--progress", "0.25"), ExitCode.REFUSED)
    assert "must not decrease" in line


@pytest.mark.parametrize(
    "args",
    [("show", "ghost"), ("apply", "ghost", "schedule"), ("history", "ghost")],
    ids=lambda a: a[0],
)
def test_unknown_task_exits_3(db: str, args: tuple[str, ...]) -> None:
    assert fails(run("--db", db, *args), ExitCode.NOT_FOUND) == "Error: task 'ghost' not found"


def test_create_existing_task_exits_6(db: str) -> None:
    ok(run("--db", db, "create", "j"))
    line = fails(run("--db", db, "create", "j"), ExitCode.EXISTS)
    assert line == "Error: task 'j' already exists"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_database_exits_4_without_the_password() -> None:
    url = f"postgresql://user:s3cret@127.0.0.1:{_closed_port()}/nodb?connect_timeout=2"
    line = fails(run("--db", url, "show", "j"), ExitCode.STORE_UNAVAILABLE)
    assert "127.0.0.1" in line
    assert "s3cret" not in line


def test_a_file_that_is_not_a_database_exits_4(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not a database " * 200)
    fails(run("--db", f"sqlite:///{path}", "list"), ExitCode.STORE_UNAVAILABLE)


def test_unknown_store_scheme_is_a_usage_error() -> None:
    line = fails(run("--db", "mysql://x/y", "list"), ExitCode.USAGE)
    assert line.startswith("Error: --db: ")
    assert "sqlite:///" in line


def test_corrupt_stored_status_exits_5(db: str, tmp_path: Path) -> None:
    running(db, "broken")
    with sqlite3.connect(tmp_path / "tasks.db") as conn:
        changed = conn.execute(
            "UPDATE taskfsm_tasks SET status = ? WHERE id = ?", ('{"phase": "exploded"}', "broken")
        ).rowcount
    assert changed == 1
    line = fails(run("--db", db, "show", "broken"), ExitCode.INVALID_DATA)
    assert "'broken'" in line
    assert "phase" in line
    fails(run("--db", db, "apply", "broken", "complete"), ExitCode.INVALID_DATA)


@pytest.mark.parametrize(
    "args",
    [
        ("apply", "j"),
        ("create",),
        ("list", "--phase", "sleeping"),
        ("list", "--limit", "0"),
        ("claim", "0"),
        ("reap",),
        ("reap", "--timeout", "-1"),
        ("apply", "j", "progress", "--progress", "half"),
        ("diagram", "--format", "png"),
        ("nonsense",),
    ],
    ids=lambda a: "-".join(a),
)
def test_usage_errors_exit_2(db: str, args: tuple[str, ...]) -> None:
    result = run("--db", db, *args)
    assert result.exit_code == ExitCode.USAGE, result.stderr
    assert "Traceback" not in result.stderr


def test_help_documents_the_exit_codes() -> None:
    out = ok(run("--help"))
    for code in ExitCode:
        assert f"  {code.value}  " in out


# -- engine-only property: the command agrees with the engine -----------------------------

EVENTS = st.sampled_from(
    [
        ("schedule",),
        ("start",),
        ("progress", "--progress", "0.5"),
        ("progress", "--progress", "0.25"),
        ("heartbeat",),
        ("complete",),
        ("fail", "--error", "flaky"),
        ("fail", "--error", "final", "--non-retryable"),
        ("cancel",),
        ("restart",),
    ]
)


def _engine_kwargs(opts: tuple[str, ...]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if "--progress" in opts:
        kwargs["value"] = float(opts[opts.index("--progress") + 1])
    if "--error" in opts:
        kwargs["error"] = opts[opts.index("--error") + 1]
    if "--non-retryable" in opts:
        kwargs["retryable"] = False
    return kwargs


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(EVENTS, min_size=1, max_size=8))
def test_apply_exit_codes_agree_with_the_engine(tmp_path: Path, steps: list[Any]) -> None:
    db = f"sqlite:///{tmp_path}/prop-{os.urandom(6).hex()}.db"
    fsm = TaskMachine()
    ok(run("--db", db, "create", "p"))
    expected = fsm.new()
    for opts in steps:
        result = apply(db, "p", *opts)
        kwargs = _engine_kwargs(opts)
        if fsm.can(expected, opts[0], **kwargs):
            expected = fsm.apply(expected, opts[0], **kwargs)
            got = TaskStatus.from_dict(json.loads(ok(result)))
            assert (got.phase, got.progress, got.retries, got.error_message) == (
                expected.phase,
                expected.progress,
                expected.retries,
                expected.error_message,
            )
        else:
            fails(result, ExitCode.REFUSED)


# -- diagram ---------------------------------------------------------------------------


def test_diagram_prints_the_machines_mermaid_and_dot() -> None:
    assert ok(run("diagram")) == TaskMachine().diagram("mermaid")
    assert ok(run("diagram", "--format", "dot")) == TaskMachine().diagram("dot")


def test_diagram_writes_to_a_file(tmp_path: Path) -> None:
    out = tmp_path / "lifecycle.mmd"
    assert ok(run("diagram", "-o", str(out))) == ""
    assert out.read_text() == TaskMachine().diagram("mermaid")


def test_diagram_to_an_unwritable_path_exits_5(tmp_path: Path) -> None:
    line = fails(
        run("diagram", "-o", str(tmp_path / "no" / "such" / "dir.mmd")), ExitCode.INVALID_DATA
    )
    assert "dir.mmd" in line


def test_svg_without_graphviz_dot_says_so_in_one_line(tmp_path: Path) -> None:
    line = fails(
        run("diagram", "--format", "svg", env={"PATH": str(tmp_path)}), ExitCode.MISSING_TOOL
    )
    assert "'dot'" in line
    assert "Graphviz" in line


def test_svg_pipes_the_dot_text_through_the_dot_program(tmp_path: Path) -> None:
    # A stand-in `dot` that records its input and arguments proves the pipe itself.
    fake = tmp_path / "dot"
    fake.write_text(
        f"#!{sys.executable}\nimport sys\n"
        f"open({str(tmp_path / 'seen')!r}, 'w').write(' '.join(sys.argv[1:]) + '\\n' "
        "+ sys.stdin.read())\nsys.stdout.write('<svg>made</svg>')\n"
    )
    fake.chmod(0o755)
    out = ok(run("diagram", "--format", "svg", env={"PATH": str(tmp_path)}))
    assert out == "<svg>made</svg>"
    args, dot_text = (tmp_path / "seen").read_text().split("\n", 1)
    assert args == "-Tsvg"
    assert dot_text == TaskMachine().diagram("dot")


def test_svg_when_dot_fails_exits_7(tmp_path: Path) -> None:
    fake = tmp_path / "dot"
    fake.write_text("#!/bin/sh\necho 'syntax error in line 1' >&2\nexit 3\n")
    fake.chmod(0o755)
    line = fails(
        run("diagram", "--format", "svg", env={"PATH": str(tmp_path)}), ExitCode.MISSING_TOOL
    )
    assert "exit code 3" in line
    assert "syntax error" in line


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot program is not installed")
def test_svg_with_the_real_dot_program(tmp_path: Path) -> None:
    out = tmp_path / "lifecycle.svg"
    ok(run("diagram", "--format", "svg", "-o", str(out)))
    svg = out.read_text()
    assert "<svg" in svg
    assert "completed" in svg


# -- the installed command -------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [[str(VENV_BIN / "taskfsm")], [sys.executable, "-m", "taskfsm"]],
    ids=["console-script", "python-m"],
)
def test_installed_command_runs_and_reports_errors(command: list[str], tmp_path: Path) -> None:
    if not Path(command[0]).exists():
        pytest.fail(f"{command[0]} is not installed: pip install -e . first")
    env = {**os.environ, "TASKFSM_DB": f"sqlite:///{tmp_path}/sub.db"}

    def sub(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*command, *args], capture_output=True, text=True, env=env, timeout=60, check=False
        )

    created = sub("--json", "create", "s-1")
    assert created.returncode == 0, created.stderr
    assert TaskStatus.from_json(created.stdout).phase is TaskPhase.PENDING
    refused = sub("apply", "s-1", "complete")
    assert refused.returncode == ExitCode.REFUSED
    assert refused.stderr.splitlines() == [
        "Error: cannot complete task 's-1': phase is pending; allowed: cancel, fail, schedule"
    ]
    missing = sub("show", "nope")
    assert (missing.returncode, missing.stderr) == (3, "Error: task 'nope' not found\n")
    usage = sub("apply")
    assert usage.returncode == ExitCode.USAGE
    assert "Usage:" in usage.stderr
    assert sub("--version").stdout.startswith("taskfsm, version ")
