"""The SQL compiler shared by the SQLite and PostgreSQL backends.

Both backends store the same tables and answer the same plan operations with the same
statements, up to a few dialect details: those are described as data (`Dialect`), and
`SqlCompiler` renders every statement once, when it is built, so compiling an operation
formats no SQL. A backend module keeps what truly differs: its schema, its connections
and transactions, and how it allocates change-feed seqs (`append_history`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from .._phase import TaskPhase
from ._plans import (
    AppendHistory,
    DeleteCursor,
    DeleteTask,
    Entry,
    FindDue,
    FindEvent,
    FindStale,
    InsertTask,
    ListTasks,
    Op,
    PruneChanges,
    ReadChanges,
    ReadCursors,
    ReadHistory,
    ReadTask,
    Row,
    UpdateTask,
    WriteCursor,
)
from ._records import TransitionRecord, args_json, encode_status, record_from_row
from ._sql import Fetch, Sql, SqlSteps

ROW = "SELECT id, status, version, due_at FROM taskfsm_tasks"
RECORD = (
    "SELECT seq, task_id, event, from_phase, to_phase, status, event_id, args FROM taskfsm_history"
)


class Dialect(NamedTuple):
    """What a backend's SQL differs in. Fragments are SQL text, never values.

    Args:
        mark: The parameter placeholder (``?`` or ``%s``).
        greatest: The function returning the larger of two values (``max``, ``GREATEST``).
        lock_rows: Appended to the queries that pick rows to claim or reap, e.g.
            ``" FOR UPDATE SKIP LOCKED"``.
        lock_row: Appended to a read of a row the transaction goes on to update,
            e.g. ``" FOR UPDATE"``.
        array_param: Test list membership with ``= ANY(mark)`` and one list parameter,
            rather than ``IN (mark, mark, ...)`` with a parameter per item.
    """

    mark: str
    greatest: str
    lock_rows: str = ""
    lock_row: str = ""
    array_param: bool = False


def row(found: tuple[Any, ...]) -> Row:
    return Row(found[0], found[1], found[2], found[3])


def history_params(e: Entry) -> tuple[Any, ...]:
    """A history record's parameters, from ``task_id`` to ``args`` (without ``seq``)."""
    return (
        e.task_id,
        e.event,
        None if e.from_phase is None else e.from_phase.value,
        e.status.phase.value,
        encode_status(e.status),
        e.event_id,
        args_json(e.args),
    )


class SqlCompiler:
    """Maps each plan operation to statements in *dialect*. A backend subclasses it to
    add `append_history`, which allocates the records' seqs its own way."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        mark = dialect.mark

        def q(template: str) -> str:
            # Templates are written with ``?``; rendered once, here.
            return template.replace("?", mark)

        self._read_task = q(f"{ROW} WHERE id = ?")
        self._find_event = q(f"{RECORD} WHERE task_id = ? AND event_id = ?")
        self._insert_task = q(
            "INSERT INTO taskfsm_tasks (id, status, phase, due_at, updated_at, version)"
            " VALUES (?, ?, ?, ?, ?, 1) ON CONFLICT (id) DO NOTHING"
        )
        self._update_moved = q(
            "UPDATE taskfsm_tasks SET status = ?, phase = ?, due_at = ?, updated_at = ?,"
            " version = version + 1 WHERE id = ? AND version = ?"
        )
        self._update_in_place = q(
            "UPDATE taskfsm_tasks SET status = ?, updated_at = ?, version = version + 1"
            " WHERE id = ? AND version = ?"
        )
        self._read_history = q(f"{RECORD} WHERE task_id = ? ORDER BY seq")
        self._list = {
            (False, False): q("SELECT id, status FROM taskfsm_tasks ORDER BY id LIMIT ?"),
            (False, True): q(
                "SELECT id, status FROM taskfsm_tasks WHERE id > ? ORDER BY id LIMIT ?"
            ),
            (True, False): q(
                "SELECT id, status FROM taskfsm_tasks WHERE phase = ? ORDER BY id LIMIT ?"
            ),
            (True, True): q(
                "SELECT id, status FROM taskfsm_tasks WHERE phase = ? AND id > ?"
                " ORDER BY id LIMIT ?"
            ),
        }
        self._find_due = q(
            f"{ROW} WHERE due_at IS NOT NULL AND due_at <= ? AND phase = ?"
            f" ORDER BY due_at, id LIMIT ?{dialect.lock_rows}"
        )
        self._find_stale = q(
            f"{ROW} WHERE phase = 'running' AND updated_at < ?"
            f" ORDER BY updated_at, id{dialect.lock_rows}"
        )
        self._delete_task = q("DELETE FROM taskfsm_tasks WHERE id = ?")
        self._delete_history = q("DELETE FROM taskfsm_history WHERE task_id = ?")
        self._read_changes = q(
            f"{RECORD} WHERE seq > {dialect.greatest}(?, (SELECT value - 1 FROM taskfsm_meta"
            " WHERE key = 'feed_floor')) ORDER BY seq LIMIT ?"
        )
        self._read_floor = (
            f"SELECT value FROM taskfsm_meta WHERE key = 'feed_floor'{dialect.lock_row}"
        )
        self._count_changes = q("SELECT count(*) FROM taskfsm_history WHERE seq >= ? AND seq < ?")
        self._write_floor = q("UPDATE taskfsm_meta SET value = ? WHERE key = 'feed_floor'")
        self._read_all_cursors = "SELECT name, seq FROM taskfsm_feed_cursors"
        self._read_named_cursors = f"{self._read_all_cursors} WHERE name"
        if dialect.array_param:
            self._read_named_cursors += q(" = ANY(?)")
        self._write_cursor = q(
            "INSERT INTO taskfsm_feed_cursors (name, seq) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET seq = excluded.seq"
        )
        self._delete_cursor = q("DELETE FROM taskfsm_feed_cursors WHERE name = ?")

        self._compilers: dict[type[Any], Callable[[Any], SqlSteps[Any]]] = {
            ReadTask: self.read_task,
            FindEvent: self.find_event,
            InsertTask: self.insert_task,
            UpdateTask: self.update_task,
            AppendHistory: self.append_history,
            ReadHistory: self.read_history,
            ListTasks: self.list_tasks,
            FindDue: self.find_due,
            FindStale: self.find_stale,
            DeleteTask: self.delete_task,
            ReadChanges: self.read_changes,
            PruneChanges: self.prune_changes,
            ReadCursors: self.read_cursors,
            WriteCursor: self.write_cursor,
            DeleteCursor: self.delete_cursor,
        }

    def compile(self, op: Op) -> SqlSteps[Any]:
        return self._compilers[type(op)](op)

    def append_history(self, op: AppendHistory) -> SqlSteps[list[int]]:
        raise NotImplementedError  # each backend allocates seqs its own way

    def read_task(self, op: ReadTask) -> SqlSteps[Row | None]:
        found = yield Sql(self._read_task, (op.task_id,), Fetch.ONE)
        return None if found is None else row(found)

    def find_event(self, op: FindEvent) -> SqlSteps[TransitionRecord | None]:
        found = yield Sql(self._find_event, (op.task_id, op.event_id), Fetch.ONE)
        return None if found is None else record_from_row(*found)

    def insert_task(self, op: InsertTask) -> SqlSteps[bool]:
        st = op.status
        count = yield Sql(
            self._insert_task,
            (op.task_id, encode_status(st), st.phase.value, op.due_at, st.updated_at),
            Fetch.ROWCOUNT,
        )
        return bool(count == 1)

    def update_task(self, op: UpdateTask) -> SqlSteps[bool]:
        st = op.status
        text = encode_status(st)
        if op.moved:
            count = yield Sql(
                self._update_moved,
                (text, st.phase.value, op.due_at, st.updated_at, op.task_id, op.version),
                Fetch.ROWCOUNT,
            )
        else:
            # Same phase and due time: leave the indexed columns alone.
            count = yield Sql(
                self._update_in_place,
                (text, st.updated_at, op.task_id, op.version),
                Fetch.ROWCOUNT,
            )
        return bool(count == 1)

    def read_history(self, op: ReadHistory) -> SqlSteps[list[TransitionRecord]]:
        rows = yield Sql(self._read_history, (op.task_id,), Fetch.ALL)
        return [record_from_row(*r) for r in rows]

    def list_tasks(self, op: ListTasks) -> SqlSteps[list[tuple[str, str]]]:
        params: list[Any] = []
        if op.phase is not None:
            params.append(op.phase.value)
        if op.after is not None:
            params.append(op.after)
        params.append(op.limit)
        query = self._list[(op.phase is not None, op.after is not None)]
        rows = yield Sql(query, params, Fetch.ALL)
        return [(r[0], r[1]) for r in rows]

    def find_due(self, op: FindDue) -> SqlSteps[list[Row]]:
        rows = yield Sql(self._find_due, (op.now, TaskPhase.WAITING.value, op.limit), Fetch.ALL)
        return [row(r) for r in rows]

    def find_stale(self, op: FindStale) -> SqlSteps[list[Row]]:
        rows = yield Sql(self._find_stale, (op.cutoff,), Fetch.ALL)
        return [row(r) for r in rows]

    def delete_task(self, op: DeleteTask) -> SqlSteps[bool]:
        count = yield Sql(self._delete_task, (op.task_id,), Fetch.ROWCOUNT)
        if count != 1:
            return False
        yield Sql(self._delete_history, (op.task_id,))
        return True

    def read_changes(self, op: ReadChanges) -> SqlSteps[list[TransitionRecord]]:
        rows = yield Sql(self._read_changes, (op.after, op.limit), Fetch.ALL)
        return [record_from_row(*r) for r in rows]

    def prune_changes(self, op: PruneChanges) -> SqlSteps[int]:
        (floor,) = yield Sql(self._read_floor, (), Fetch.ONE)
        if op.before <= floor:
            return 0
        (count,) = yield Sql(self._count_changes, (floor, op.before), Fetch.ONE)
        yield Sql(self._write_floor, (op.before,))
        return int(count)

    def read_cursors(self, op: ReadCursors) -> SqlSteps[dict[str, int]]:
        names = op.names
        if names is None:
            rows = yield Sql(self._read_all_cursors, (), Fetch.ALL)
        elif self.dialect.array_param:
            rows = yield Sql(self._read_named_cursors, (list(names),), Fetch.ALL)
        else:
            marks = ", ".join((self.dialect.mark,) * len(names))
            rows = yield Sql(f"{self._read_named_cursors} IN ({marks})", names, Fetch.ALL)
        return {name: seq for name, seq in rows}

    def write_cursor(self, op: WriteCursor) -> SqlSteps[None]:
        yield Sql(self._write_cursor, (op.name, op.seq))

    def delete_cursor(self, op: DeleteCursor) -> SqlSteps[bool]:
        count = yield Sql(self._delete_cursor, (op.name,), Fetch.ROWCOUNT)
        return bool(count == 1)
