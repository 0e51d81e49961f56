"""The ``taskfsm`` command group: global options, error handling, the store commands and
``diagram``. ``replay`` and ``simulate`` live in their own modules."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import click

from .._engine import TaskMachine
from .._errors import InvalidArgument, TaskFSMError
from .._phase import TaskPhase
from . import _output
from ._env import Env, pass_env
from ._exit import CliError, ExitCode, exit_code

DEFAULT_DB = "sqlite:///./taskfsm.db"

_EPILOG = """\b
Exit codes:
  0  ok
  1  refused: illegal transition or bad event arguments
  2  usage error
  3  task not found
  4  store unavailable (database unreachable or unopenable)
  5  invalid data: corrupt stored status, malformed log line, unreadable file
  6  task already exists (create)
  7  missing tool: Graphviz 'dot' program or the 'graphviz' package
  8  simulate found a broken invariant
"""


def _fail(ctx: click.Context, message: str, code: int) -> NoReturn:
    click.echo(f"Error: {message}", err=True)
    ctx.exit(code)


class _Group(click.Group):
    """Reports taskfsm errors in one line on stderr with their exit code, no traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CliError as exc:
            _fail(ctx, str(exc), exc.code)
        except TaskFSMError as exc:
            _fail(ctx, str(exc), exit_code(exc))


@click.group(cls=_Group, epilog=_EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db",
    metavar="URL",
    envvar="TASKFSM_DB",
    default=DEFAULT_DB,
    show_default=True,
    help="The store: sqlite:///PATH, postgresql://..., or memory://. Env: TASKFSM_DB.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Machine-readable output: wire JSON statuses, one object per line for lists.",
)
@click.version_option(package_name="taskfsm", prog_name="taskfsm")
@click.pass_context
def cli(ctx: click.Context, db: str, as_json: bool) -> None:
    """taskfsm: task lifecycles with legal phase changes, in a durable store."""
    ctx.obj = Env(ctx, db, as_json)


@cli.command()
@click.argument("task_id", metavar="ID")
@pass_env
def create(env: Env, task_id: str) -> None:
    """Create task ID (phase pending)."""
    _output.status(task_id, env.store().create(task_id), env.as_json)


@cli.command()
@click.argument("task_id", metavar="ID")
@click.argument("event")
@click.option("--progress", "value", type=float, metavar="P", help="progress: the value, 0-1.")
@click.option("--error", metavar="MSG", help="fail: the error message.")
@click.option(
    "--non-retryable",
    is_flag=True,
    help="fail: the error is final (no retry); by default a failure is retryable.",
)
@click.option("--event-id", metavar="KEY", help="Idempotency key: applied at most once.")
@pass_env
def apply(
    env: Env,
    task_id: str,
    event: str,
    value: float | None,
    error: str | None,
    non_retryable: bool,
    event_id: str | None,
) -> None:
    """Apply EVENT to task ID and print its new status.

    Events: schedule, start, progress --progress P, heartbeat, complete,
    fail --error MSG [--non-retryable], cancel, restart.
    """
    kwargs: dict[str, Any] = {}
    if value is not None:
        kwargs["value"] = value
    if error is not None:
        kwargs["error"] = error
    if non_retryable:
        kwargs["retryable"] = False
    try:
        st = env.store().apply(task_id, event, event_id=event_id, **kwargs)
    except InvalidArgument as exc:  # its message names the argument, not the task
        raise CliError(f"cannot {event} task {task_id!r}: {exc}", exit_code(exc)) from None
    _output.status(task_id, st, env.as_json)


@cli.command()
@click.argument("task_id", metavar="ID")
@pass_env
def show(env: Env, task_id: str) -> None:
    """Print the status of task ID."""
    _output.status(task_id, env.store().get(task_id), env.as_json)


@cli.command("list")
@click.option("--phase", type=click.Choice([p.value for p in TaskPhase]), help="Only this phase.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True, metavar="N")
@click.option("--after", metavar="ID", help="Start after this id (pagination).")
@pass_env
def list_(env: Env, phase: str | None, limit: int, after: str | None) -> None:
    """List tasks by id, optionally of one phase."""
    tasks = env.store().list(phase=phase, limit=limit, after=after)
    _output.statuses(tasks, env.as_json)


@cli.command()
@click.argument("task_id", metavar="ID")
@pass_env
def history(env: Env, task_id: str) -> None:
    """Print every transition of task ID, oldest first."""
    _output.history(env.store().history(task_id), env.as_json)


@cli.command()
@click.argument("limit", metavar="[N]", type=click.IntRange(min=1), default=1)
@pass_env
def claim(env: Env, limit: int) -> None:
    """Start up to N due waiting tasks (default 1) and print them."""
    _output.statuses(env.store().claim(limit), env.as_json)


@cli.command()
@click.option(
    "--timeout",
    metavar="SECONDS",
    type=click.FloatRange(min=0),
    required=True,
    help="Fail running tasks not updated for this long.",
)
@pass_env
def reap(env: Env, timeout: float) -> None:
    """Fail running tasks not updated for SECONDS; print their ids.

    A worker that died leaves its task running; this fails it as a retryable timeout."""
    reaped: Sequence[str] = env.store().reap_stale(timeout)
    for task_id in reaped:
        if env.as_json:
            _output.emit_json({"id": task_id})
        else:
            click.echo(task_id)


@cli.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["mermaid", "dot", "svg"]),
    default="mermaid",
    show_default=True,
    help="svg pipes the dot text through Graphviz's dot program.",
)
@click.option("-o", "--output", metavar="FILE", default="-", help="Write here (- is stdout).")
def diagram(fmt: str, output: str) -> None:
    """Print the lifecycle diagram, generated from the state machine."""
    fsm = TaskMachine()
    try:
        text = fsm.diagram("mermaid" if fmt == "mermaid" else "dot")
    except TaskFSMError as exc:  # dot without the graphviz package
        raise CliError(str(exc), ExitCode.MISSING_TOOL) from None
    data = _svg(text) if fmt == "svg" else text.encode()
    if output == "-":
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    try:
        with open(output, "wb") as out:
            out.write(data)
    except OSError as exc:
        raise CliError(
            f"cannot write {output}: {exc.strerror or exc}", ExitCode.INVALID_DATA
        ) from None


def _svg(dot_text: str) -> bytes:
    dot = shutil.which("dot")
    if dot is None:
        raise CliError(
            "--format svg needs Graphviz's 'dot' program, which is not on PATH "
            "(install Graphviz, e.g. apt-get install graphviz, or use --format dot)",
            ExitCode.MISSING_TOOL,
        )
    done = subprocess.run([dot, "-Tsvg"], input=dot_text.encode(), capture_output=True, check=False)
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip().splitlines() or ["no message"]
        raise CliError(
            f"dot -Tsvg failed with exit code {done.returncode}: {reason[0]}",
            ExitCode.MISSING_TOOL,
        )
    return done.stdout


def main(argv: Sequence[str] | None = None) -> None:
    """Run the ``taskfsm`` command (the console script's entry point).

    Args:
        argv: The arguments; ``sys.argv[1:]`` when None.
    """
    cli.main(args=list(argv) if argv is not None else None, prog_name="taskfsm")
