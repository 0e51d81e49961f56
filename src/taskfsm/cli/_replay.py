"""``taskfsm replay``: run an event log (JSON lines) through the engine, fast.

Each line is ``{"task": ID, "event": NAME, ...args, "event_id": KEY?}``; the args are the
event's keyword arguments (``value`` for progress, ``error`` and ``retryable`` for fail).
The loop is the hot path of a benchmark against parsing alone, so per line it does one
``json.loads`` and one engine apply, and nothing that allocates beyond those.
"""

from __future__ import annotations

import gc
import json
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any, TextIO

import attrs
import click

from .._engine import TaskMachine
from .._errors import IllegalTransition, InvalidArgument, TaskExists, TaskFSMError
from .._phase import TaskPhase
from .._status import TaskStatus
from ._env import Env
from ._exit import CliError, ExitCode

if TYPE_CHECKING:
    from ..stores import Store

# Lines are read in batches of about this many bytes: the progress bar moves per batch.
_BATCH_BYTES = 1 << 20
# Files at least this large get a progress bar (on a terminal).
_BAR_MIN_BYTES = 4 << 20

Problem = Callable[[int, str], bool]


@attrs.define
class ReplayResult:
    """What a replay did.

    Attributes:
        lines: Non-blank lines read.
        applied: Events the engine (or store) accepted.
        refused: Events refused: illegal transitions and bad event arguments.
        malformed: Lines that are not an event (bad JSON, no task or event).
        duplicates: Events skipped because their ``event_id`` was already applied.
        stopped_at: The line replay stopped at (without --keep-going), else None.
        statuses: The last status of each task seen.
    """

    lines: int = 0
    applied: int = 0
    refused: int = 0
    malformed: int = 0
    duplicates: int = 0
    stopped_at: int | None = None
    statuses: dict[str, TaskStatus] = attrs.Factory(dict)

    def phase_counts(self) -> dict[str, int]:
        """Tasks per phase, every phase listed."""
        counts = Counter(st.phase for st in self.statuses.values())
        return {phase.value: counts.get(phase, 0) for phase in TaskPhase}

    def to_dict(self) -> dict[str, Any]:
        """The JSON summary printed with --json."""
        return {
            "lines": self.lines,
            "applied": self.applied,
            "refused": self.refused,
            "malformed": self.malformed,
            "duplicates": self.duplicates,
            "tasks": len(self.statuses),
            "phases": self.phase_counts(),
            "stoppedAt": self.stopped_at,
        }


class _Malformed(Exception):
    pass


def _describe(line: str, exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON: {exc}"
    text = line.strip()
    shown = text if len(text) <= 80 else text[:77] + "..."
    return f'not an event (need an object with string "task" and "event"): {shown}'


def _refusal(exc: TaskFSMError, task: object, event: object) -> str:
    if isinstance(exc, IllegalTransition):
        return str(exc if exc.task_id is not None else exc.with_task(str(task)))
    return f"cannot {event} task {task!r}: {exc}"


def replay_memory(batches: Iterator[list[str]], fsm: TaskMachine, problem: Problem) -> ReplayResult:
    """Replay into a dict of statuses; a task is created (``fsm.new()``) on first sight.

    Args:
        batches: Lists of lines, in order.
        fsm: The engine.
        problem: Called as ``problem(line number, message)`` for each bad line;
            returns False to stop.

    Returns:
        The counts and the final statuses.
    """
    result = ReplayResult()
    statuses = result.statuses
    used: dict[tuple[str, str], str] = {}  # (task, event id) -> its event
    loads, apply, new, get = json.loads, fsm.apply, fsm.new, statuses.get
    lineno = blank = 0
    collecting = gc.isenabled()
    gc.disable()  # nothing here makes cycles; the collector only rescans the statuses
    try:
        for batch in batches:
            for lineno, line in enumerate(batch, lineno + 1):  # noqa: B020  # resumes numbering
                try:
                    rec = loads(line)
                    size = len(rec)
                    # The common shapes, {"task", "event"} and {"task", "event", "value"}:
                    # no pops, no ** repacking of the arguments.
                    if size == 2 or (size == 3 and "value" in rec):
                        task = rec["task"]
                        event = rec["event"]
                        st = get(task)
                        if st is None:
                            if type(task) is not str:
                                raise _Malformed
                            st = statuses[task] = new()
                        if size == 2:
                            statuses[task] = apply(st, event)
                        else:
                            statuses[task] = apply(st, event, value=rec["value"])
                        continue
                    task = rec.pop("task")
                    event = rec.pop("event")
                    event_id = rec.pop("event_id", None)
                    st = get(task)
                    if st is None:
                        if type(task) is not str:
                            raise _Malformed
                        st = statuses[task] = new()
                    if event_id is None:
                        statuses[task] = apply(st, event, **rec)
                    elif (key := _delivery(task, event_id)) not in used:
                        statuses[task] = apply(st, event, **rec)
                        used[key] = event
                    elif used[key] == event:
                        result.duplicates += 1  # a redelivery: applied once, like a store
                    else:
                        raise InvalidArgument(
                            f"event id {event_id!r} was already used by {used[key]!r}"
                        )
                except TaskFSMError as exc:
                    if type(event) is not str:
                        result.malformed += 1
                        go_on = problem(lineno, _describe(line, exc))
                    else:
                        result.refused += 1
                        go_on = problem(lineno, _refusal(exc, task, event))
                    if not go_on:
                        return _stop(result, lineno, blank)
                except (ValueError, KeyError, TypeError, AttributeError, _Malformed) as exc:
                    if not line.strip():
                        blank += 1
                        continue
                    result.malformed += 1
                    if not problem(lineno, _describe(line, exc)):
                        return _stop(result, lineno, blank)
    finally:
        if collecting:
            gc.enable()
    return _finish(result, lineno, blank)


def _delivery(task: str, event_id: object) -> tuple[str, str]:
    # Event ids are per task, as in the stores.
    if type(event_id) is not str:
        raise _Malformed
    return (task, event_id)


def replay_store(batches: Iterator[list[str]], store: Store, problem: Problem) -> ReplayResult:
    """Replay into a store: each task is created on first sight (an existing one is kept),
    each event applied atomically with its ``event_id``. Same arguments as `replay_memory`,
    with *store* an open store instead of an engine."""
    result = ReplayResult()
    statuses = result.statuses
    lineno = blank = 0
    for batch in batches:
        for lineno, line in enumerate(batch, lineno + 1):  # noqa: B020  # resumes numbering
            task: object = None
            event: object = None
            try:
                rec = json.loads(line)
                task = rec.pop("task")
                event = rec.pop("event")
                event_id = rec.pop("event_id", None)
                if not (type(task) is str and type(event) is str):
                    raise _Malformed
                if event_id is not None and type(event_id) is not str:
                    raise _Malformed
                if task not in statuses:
                    try:
                        statuses[task] = store.create(task)
                    except TaskExists:
                        statuses[task] = store.get(task)
                statuses[task] = store.apply(task, event, event_id=event_id, **rec)
            except TaskFSMError as exc:
                from ..stores import StoreUnavailable

                if isinstance(exc, StoreUnavailable):
                    raise
                result.refused += 1
                if not problem(lineno, _refusal(exc, task, event)):
                    return _stop(result, lineno, blank)
            except (ValueError, KeyError, TypeError, AttributeError, _Malformed) as exc:
                if not line.strip():
                    blank += 1
                    continue
                result.malformed += 1
                if not problem(lineno, _describe(line, exc)):
                    return _stop(result, lineno, blank)
    return _finish(result, lineno, blank)


def _finish(result: ReplayResult, lineno: int, blank: int) -> ReplayResult:
    result.lines = lineno - blank
    result.applied = result.lines - result.refused - result.malformed - result.duplicates
    return result


def _stop(result: ReplayResult, lineno: int, blank: int) -> ReplayResult:
    result.stopped_at = lineno
    return _finish(result, lineno, blank)


def _batches(stream: TextIO, name: str, bar: Any) -> Iterator[list[str]]:
    try:
        while batch := stream.readlines(_BATCH_BYTES):
            yield batch
            if bar is not None:
                bar.update(stream.buffer.tell() - bar.pos)
    except UnicodeDecodeError as exc:
        raise CliError(f"{name} is not UTF-8 text: {exc}", ExitCode.INVALID_DATA) from None
    except OSError as exc:
        raise CliError(
            f"cannot read {name}: {exc.strerror or exc}", ExitCode.INVALID_DATA
        ) from None


def _open(path: str, stack: ExitStack) -> tuple[TextIO, str, int | None]:
    if path == "-":
        return sys.stdin, "<stdin>", None
    try:
        stream = stack.enter_context(open(path, encoding="utf-8"))  # noqa: SIM115
        size = os.fstat(stream.fileno()).st_size
    except OSError as exc:
        raise CliError(
            f"cannot read {path}: {exc.strerror or exc}", ExitCode.INVALID_DATA
        ) from None
    return stream, path, size


def _wants_bar(size: int | None) -> bool:
    return (
        size is not None and size >= _BAR_MIN_BYTES and sys.stdout.isatty() and sys.stderr.isatty()
    )


def _print_summary(result: ReplayResult, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(result.to_dict(), separators=(",", ":")))
        return
    dup = f", {result.duplicates} duplicate" if result.duplicates else ""
    click.echo(
        f"replayed {result.lines} events on {len(result.statuses)} tasks: "
        f"{result.applied} applied, {result.refused} refused, {result.malformed} malformed{dup}"
    )
    counts = result.phase_counts()
    width = max(len(p) for p in counts)
    for phase, n in counts.items():
        click.echo(f"  {phase.ljust(width)}  {n}")


@click.command()
@click.argument("file", metavar="FILE|-")
@click.option(
    "--keep-going",
    is_flag=True,
    help="Report every bad line and go on; by default replay stops at the first.",
)
@click.option(
    "--into-db",
    is_flag=True,
    help="Apply the events to the store at --db (tasks created on first sight) instead of "
    "an in-memory dict.",
)
@click.pass_context
def replay(ctx: click.Context, file: str, keep_going: bool, into_db: bool) -> None:
    """Run an event log through the engine; print tasks per phase.

    FILE (or - for stdin) holds JSON lines: {"task": ID, "event": NAME, ...}, with the
    event's arguments ("value" for progress; "error" and "retryable" for fail) and an
    optional "event_id". Each illegal event and malformed line is reported on stderr as
    "line N: ...". Exits 1 when an event was refused, else 5 when a line was malformed.
    """
    env = ctx.find_object(Env)
    assert env is not None

    def problem(lineno: int, message: str) -> bool:
        click.echo(f"line {lineno}: {message}", err=True)
        return keep_going

    with ExitStack() as stack:
        stream, name, size = _open(file, stack)
        bar: Any = None
        if _wants_bar(size):
            bar = stack.enter_context(
                click.progressbar(length=size, label=f"replaying {name}", file=sys.stderr)
            )
        batches = _batches(stream, name, bar)
        if into_db:
            result = replay_store(batches, env.store(), problem)
        else:
            result = replay_memory(batches, TaskMachine(), problem)
    if result.stopped_at is not None:
        click.echo(
            f"stopped at line {result.stopped_at}; --keep-going replays past bad lines",
            err=True,
        )
    _print_summary(result, env.as_json)
    if result.refused:
        ctx.exit(ExitCode.REFUSED)
    if result.malformed:
        ctx.exit(ExitCode.INVALID_DATA)
