"""Every store operation, written once as a backend-neutral plan (sans-I/O).

A plan is a generator that yields operation objects (`ReadTask`, `UpdateTask`, ...) and
receives their results; it holds the store's rules (ask the engine, compare-and-set,
idempotency, due times) and does no I/O. A backend adapter maps each operation to its
storage (dicts, SQLite SQL, PostgreSQL SQL) and a driver (`_driver`) runs the plan inside
one transaction, retrying from scratch when the plan raises `Conflict`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Generator
from typing import Any, Generic, TypeVar

import attrs

from .._engine import TaskMachine
from .._errors import (
    IllegalTransition,
    InvalidArgument,
    InvalidStatus,
    TaskExists,
    TaskNotFound,
)
from .._phase import TaskPhase
from .._status import TaskStatus
from ._records import TransitionRecord, audit_args, decode_status

T = TypeVar("T")

log = logging.getLogger("taskfsm")


class Conflict(Exception):
    """A compare-and-set lost to a concurrent writer: the driver retries the plan."""


# -- operations: what a plan asks its backend to do ------------------------------------


@attrs.frozen
class Row:
    """A task row: its stored status (wire JSON text, or the object in memory),
    its version (the compare-and-set counter) and its due time when waiting."""

    task_id: str
    raw: str | TaskStatus
    version: int
    due_at: int | None


@attrs.frozen
class Entry:
    """A history record about to be appended (it gets its ``seq`` on append)."""

    task_id: str
    event: str
    from_phase: TaskPhase | None
    status: TaskStatus
    event_id: str | None
    args: dict[str, Any]
    # The status before the transition, for the engine's listeners (None for create).
    previous: TaskStatus | None = None

    def record(self, seq: int) -> TransitionRecord:
        """This entry as the record stored under *seq*."""
        return TransitionRecord(
            seq,
            self.task_id,
            self.event,
            self.from_phase,
            self.status.phase,
            self.status,
            self.event_id,
            self.args,
        )


@attrs.frozen
class ReadTask:
    """-> `Row` | None."""

    task_id: str


@attrs.frozen
class FindEvent:
    """-> the `TransitionRecord` of *task_id* carrying *event_id* | None."""

    task_id: str
    event_id: str


@attrs.frozen
class InsertTask:
    """Insert a new task at version 1 -> False if the id is taken (nothing written)."""

    task_id: str
    status: TaskStatus
    due_at: int | None


@attrs.frozen
class UpdateTask:
    """Compare-and-set: write if the stored version is still *version* -> written?

    *moved* says the phase or the due time changed; when False (progress, heartbeat:
    the hot path) a backend may skip rewriting the columns its indexes cover.
    """

    task_id: str
    version: int
    status: TaskStatus
    due_at: int | None
    moved: bool = True


@attrs.frozen
class AppendHistory:
    """Append records with fresh, commit-ordered seqs -> their seqs. Always the last
    write of a plan, so a backend may serialise seq allocation up to the commit."""

    entries: tuple[Entry, ...]


@attrs.frozen
class ReadHistory:
    """-> the task's records, oldest first."""

    task_id: str


@attrs.frozen
class ListTasks:
    """-> up to *limit* (task id, raw status) with id > *after*, ordered by id."""

    phase: TaskPhase | None
    limit: int
    after: str | None


@attrs.frozen
class FindDue:
    """-> up to *limit* waiting `Row`s due at *now*, oldest due first; locked for this
    transaction where the backend can, skipping rows other writers hold."""

    now: int
    limit: int


@attrs.frozen
class FindStale:
    """-> running `Row`s last updated before *cutoff*, locked like `FindDue`."""

    cutoff: int


@attrs.frozen
class DeleteTask:
    """Remove the task and its history -> False if there was no such task."""

    task_id: str


@attrs.frozen
class ReadChanges:
    """-> up to *limit* records with seq > *after* still in the feed, by seq."""

    after: int
    limit: int


@attrs.frozen
class PruneChanges:
    """Drop records with seq < *before* from the change feed (history is kept)
    -> how many left the feed."""

    before: int


@attrs.frozen
class ReadCursors:
    """-> {consumer name: committed seq} of the named change-feed consumers (all of
    them when *names* is None)."""

    names: tuple[str, ...] | None


@attrs.frozen
class WriteCursor:
    """Store *seq* as the committed cursor of consumer *name* (insert or overwrite)."""

    name: str
    seq: int


@attrs.frozen
class DeleteCursor:
    """Forget consumer *name*'s cursor -> False if there was none."""

    name: str


Op = (
    ReadTask
    | FindEvent
    | InsertTask
    | UpdateTask
    | AppendHistory
    | ReadHistory
    | ListTasks
    | FindDue
    | FindStale
    | DeleteTask
    | ReadChanges
    | PruneChanges
    | ReadCursors
    | WriteCursor
    | DeleteCursor
)

Steps = Generator[Op, Any, T]


@attrs.frozen
class Plan(Generic[T]):
    """A plan ready to run: *start* makes a fresh generator for each attempt.

    Args:
        start: Makes the plan's generator.
        write: Does it write? Backends take their write lock up front for it.
        what: What it does, for error messages (e.g. ``apply 'start' to task 'a'``).
        committed: Called by the driver with the appended entries once the transaction
            that wrote them has committed (never for a rolled-back attempt).
    """

    start: Callable[[], Steps[T]]
    write: bool
    what: str
    committed: Callable[[list[Entry]], None] | None = None


# -- argument checks -------------------------------------------------------------------


def check_key(what: str, value: object) -> str:
    """A task id, event id or consumer name: a non-empty string every backend can store
    (PostgreSQL text refuses NUL, and no database takes lone surrogates)."""
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"{what} must be a non-empty string, got {value!r}")
    if "\x00" in value:
        raise InvalidArgument(f"{what} must not contain NUL characters, got {value!r}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument(f"{what} must be valid Unicode text, got {value!r}") from None
    return value


def check_task_id(task_id: object) -> str:
    return check_key("task id", task_id)


def check_count(name: str, value: object) -> int:
    if type(value) is not int or value < 0:
        raise InvalidArgument(f"{name} must be a non-negative int, got {value!r}")
    return value


def check_phase(phase: object) -> TaskPhase | None:
    if phase is None or isinstance(phase, TaskPhase):
        return phase
    if isinstance(phase, str):
        try:
            return TaskPhase(phase)
        except ValueError:
            pass
    allowed = ", ".join(p.value for p in TaskPhase)
    raise InvalidArgument(f"phase must be one of {allowed}, got {phase!r}")


def check_event(event: object, event_id: object) -> None:
    if not isinstance(event, str) or not event:
        raise InvalidArgument(f"event must be a non-empty string, got {event!r}")
    if event_id is not None:
        check_key("event_id", event_id)


def check_now(machine: TaskMachine, now: object) -> int:
    if now is None:
        return machine.clock()
    if type(now) is not int or now < 0:
        raise InvalidArgument(f"now must be None or a non-negative int (ms), got {now!r}")
    return now


def check_consumer(name: object) -> str:
    return check_key("consumer name", name)


def check_timeout(timeout_s: object) -> float:
    if (
        isinstance(timeout_s, bool)
        or not isinstance(timeout_s, (int, float))
        or not math.isfinite(timeout_s)
        or timeout_s < 0
    ):
        raise InvalidArgument(
            f"timeout_s must be a finite non-negative number of seconds, got {timeout_s!r}"
        )
    return timeout_s


# -- the rules shared by every plan ------------------------------------------------------


def _due_at(
    machine: TaskMachine, old: TaskStatus | None, old_due: int | None, new: TaskStatus
) -> int | None:
    """When *new* is due: only waiting tasks are. Computed once when a task enters
    waiting (or is retried again while waiting), so a jitter draw is never redone."""
    if new.phase is not TaskPhase.WAITING:
        return None
    if (
        old is not None
        and old_due is not None
        and old.phase is TaskPhase.WAITING
        and old.retries == new.retries
    ):
        return old_due
    return machine.due_at(new)


def _decide(
    machine: TaskMachine, task_id: str, status: TaskStatus, event: str, kwargs: dict[str, Any]
) -> TaskStatus:
    try:
        return machine.decide(status, event, **kwargs)
    except IllegalTransition as exc:
        raise exc.with_task(task_id) from None


def _transition(
    machine: TaskMachine,
    row: Row,
    event: str,
    kwargs: dict[str, Any],
    event_id: str | None,
    out: list[Entry],
) -> Steps[TaskStatus]:
    """Decide *event* on *row* with the engine and compare-and-set the result."""
    current = decode_status(row.task_id, row.raw)
    new = _decide(machine, row.task_id, current, event, kwargs)
    due = _due_at(machine, current, row.due_at, new)
    moved = new.phase is not current.phase or due != row.due_at
    written = yield UpdateTask(row.task_id, row.version, new, due, moved)
    if not written:
        raise Conflict(row.task_id)
    out.append(Entry(row.task_id, event, current.phase, new, event_id, audit_args(kwargs), current))
    return new


def _skip_corrupt(what: str, exc: InvalidStatus, row: Row, corrupt: set[str]) -> None:
    # One corrupt row must not stop every worker's claim; it is left as it is, loudly.
    log.error("%s skipped task %r: %s", what, row.task_id, exc)
    corrupt.add(row.task_id)


# -- the plans ---------------------------------------------------------------------------


def create(machine: TaskMachine, task_id: str) -> Steps[TaskStatus]:
    status = machine.new()
    inserted = yield InsertTask(task_id, status, _due_at(machine, None, None, status))
    if not inserted:
        raise TaskExists(task_id)
    yield AppendHistory((Entry(task_id, "create", None, status, None, {}),))
    return status


def get(task_id: str) -> Steps[TaskStatus]:
    row: Row | None = yield ReadTask(task_id)
    if row is None:
        raise TaskNotFound(task_id)
    return decode_status(task_id, row.raw)


def apply(
    machine: TaskMachine,
    task_id: str,
    event: str,
    event_id: str | None,
    kwargs: dict[str, Any],
) -> Steps[TaskStatus]:
    row: Row | None = yield ReadTask(task_id)
    if row is None:
        raise TaskNotFound(task_id)
    if event_id is not None:
        done: TransitionRecord | None = yield FindEvent(task_id, event_id)
        if done is not None:
            if done.event != event:
                raise InvalidArgument(
                    f"event id {event_id!r} of task {task_id!r} was already used by "
                    f"{done.event!r}, got {event!r}"
                )
            return done.status
    entries: list[Entry] = []
    new = yield from _transition(machine, row, event, kwargs, event_id, entries)
    yield AppendHistory(tuple(entries))
    return new


def history(task_id: str) -> Steps[list[TransitionRecord]]:
    records: list[TransitionRecord] = yield ReadHistory(task_id)
    if not records:
        row: Row | None = yield ReadTask(task_id)
        if row is None:
            raise TaskNotFound(task_id)
    return records


def list_tasks(
    phase: TaskPhase | None, limit: int, after: str | None
) -> Steps[list[tuple[str, TaskStatus]]]:
    if limit == 0:
        return []
    rows: list[tuple[str, str | TaskStatus]] = yield ListTasks(phase, limit, after)
    return [(task_id, decode_status(task_id, raw)) for task_id, raw in rows]


def claim(machine: TaskMachine, limit: int, now: int) -> Steps[list[tuple[str, TaskStatus]]]:
    if limit == 0:
        return []
    claimed: list[tuple[str, TaskStatus]] = []
    entries: list[Entry] = []
    corrupt: set[str] = set()
    while len(claimed) < limit:
        # Corrupt rows stay due; ask for as many more, so they never starve the queue.
        wanted = limit - len(claimed) + len(corrupt)
        rows: list[Row] = yield FindDue(now, wanted)
        for row in rows:
            if row.task_id in corrupt or len(claimed) == limit:
                continue
            try:
                new = yield from _transition(machine, row, "start", {}, None, entries)
            except InvalidStatus as exc:
                _skip_corrupt("claim", exc, row, corrupt)
                continue
            claimed.append((row.task_id, new))
        if len(rows) < wanted:
            break  # no more due tasks
    if entries:
        yield AppendHistory(tuple(entries))
    return claimed


def reap_stale(machine: TaskMachine, timeout_s: float, now: int) -> Steps[list[str]]:
    rows: list[Row] = yield FindStale(now - round(timeout_s * 1000))
    kwargs: dict[str, Any] = {"error": f"timed out after {timeout_s}s", "retryable": True}
    entries: list[Entry] = []
    corrupt: set[str] = set()
    for row in rows:
        try:
            yield from _transition(machine, row, "fail", kwargs, None, entries)
        except InvalidStatus as exc:
            _skip_corrupt("reap_stale", exc, row, corrupt)
    if entries:
        yield AppendHistory(tuple(entries))
    return [entry.task_id for entry in entries]


def delete(task_id: str) -> Steps[None]:
    deleted = yield DeleteTask(task_id)
    if not deleted:
        raise TaskNotFound(task_id)


def changes(after: int, limit: int) -> Steps[list[TransitionRecord]]:
    if limit == 0:
        return []
    records: list[TransitionRecord] = yield ReadChanges(after, limit)
    return records


def prune_changes(before: int) -> Steps[int]:
    pruned: int = yield PruneChanges(before)
    return pruned


def get_cursor(name: str) -> Steps[int | None]:
    found: dict[str, int] = yield ReadCursors((name,))
    return found.get(name)


def set_cursor(name: str, seq: int) -> Steps[None]:
    yield WriteCursor(name, seq)


def cursors() -> Steps[dict[str, int]]:
    found: dict[str, int] = yield ReadCursors(None)
    return found


def delete_cursor(name: str) -> Steps[bool]:
    deleted: bool = yield DeleteCursor(name)
    return deleted


def prune_consumed(names: tuple[str, ...] | None) -> Steps[int]:
    """Prune what every named consumer (every registered one when None) has committed;
    nothing while any of them has no cursor yet."""
    found: dict[str, int] = yield ReadCursors(names)
    if not found or (names is not None and len(found) < len(set(names))):
        return 0
    pruned: int = yield PruneChanges(min(found.values()) + 1)
    return pruned


# -- checked entry points: the arguments of the public API -> a plan ----------------------


class Planner:
    """Checks the public arguments and builds each operation's `Plan` for *machine*;
    shared by the sync and the async store so neither holds a rule."""

    def __init__(self, machine: TaskMachine) -> None:
        self.machine = machine

    def _notify(self, entries: list[Entry]) -> None:
        # The engine's listeners hear of a transition once, and only once it is committed.
        for entry in entries:
            if entry.previous is not None:
                self.machine.notify(entry.previous, entry.status, entry.event)

    def create(self, task_id: str) -> Plan[TaskStatus]:
        check_task_id(task_id)
        return Plan(lambda: create(self.machine, task_id), True, f"create task {task_id!r}")

    def get(self, task_id: str) -> Plan[TaskStatus]:
        check_task_id(task_id)
        return Plan(lambda: get(task_id), False, f"get task {task_id!r}")

    def apply(
        self, task_id: str, event: str, event_id: str | None, kwargs: dict[str, Any]
    ) -> Plan[TaskStatus]:
        check_task_id(task_id)
        check_event(event, event_id)
        return Plan(
            lambda: apply(self.machine, task_id, event, event_id, kwargs),
            True,
            f"apply {event!r} to task {task_id!r}",
            self._notify,
        )

    def history(self, task_id: str) -> Plan[list[TransitionRecord]]:
        check_task_id(task_id)
        return Plan(lambda: history(task_id), False, f"read history of task {task_id!r}")

    def list_tasks(
        self, phase: TaskPhase | str | None, limit: int, after: str | None
    ) -> Plan[list[tuple[str, TaskStatus]]]:
        checked = check_phase(phase)
        check_count("limit", limit)
        if after is not None:
            check_key("after", after)
        return Plan(lambda: list_tasks(checked, limit, after), False, "list tasks")

    def claim(self, limit: int, now: int | None) -> Plan[list[tuple[str, TaskStatus]]]:
        check_count("limit", limit)
        at = check_now(self.machine, now)
        return Plan(
            lambda: claim(self.machine, limit, at), True, f"claim {limit} tasks", self._notify
        )

    def reap_stale(self, timeout_s: float, now: int | None) -> Plan[list[str]]:
        timeout = check_timeout(timeout_s)
        at = check_now(self.machine, now)
        return Plan(
            lambda: reap_stale(self.machine, timeout, at),
            True,
            "reap stale running tasks",
            self._notify,
        )

    def delete(self, task_id: str) -> Plan[None]:
        check_task_id(task_id)
        return Plan(lambda: delete(task_id), True, f"delete task {task_id!r}")

    def changes(self, after: int, limit: int) -> Plan[list[TransitionRecord]]:
        check_count("after", after)
        check_count("limit", limit)
        return Plan(lambda: changes(after, limit), False, "read changes")

    def prune_changes(self, before: int) -> Plan[int]:
        check_count("before", before)
        return Plan(lambda: prune_changes(before), True, "prune changes")

    def get_cursor(self, name: str) -> Plan[int | None]:
        check_consumer(name)
        return Plan(lambda: get_cursor(name), False, f"read cursor of consumer {name!r}")

    def set_cursor(self, name: str, seq: int) -> Plan[None]:
        check_consumer(name)
        check_count("seq", seq)
        return Plan(lambda: set_cursor(name, seq), True, f"commit cursor of consumer {name!r}")

    def cursors(self) -> Plan[dict[str, int]]:
        return Plan(cursors, False, "read consumer cursors")

    def delete_cursor(self, name: str) -> Plan[bool]:
        check_consumer(name)
        return Plan(lambda: delete_cursor(name), True, f"delete cursor of consumer {name!r}")

    def prune_consumed(self, names: tuple[str, ...] | None) -> Plan[int]:
        if names is not None:
            for name in names:
                check_consumer(name)
        return Plan(lambda: prune_consumed(names), True, "prune consumed changes")
