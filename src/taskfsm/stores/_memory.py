"""The memory backend: dicts behind a lock; the reference backend of the tests.

Each transaction holds the lock and keeps an undo log, so an error in the middle of a
plan leaves nothing written, exactly like a database rollback.
"""

from __future__ import annotations

import bisect
import heapq
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import attrs

from .._phase import TaskPhase
from .._status import TaskStatus
from ._driver import Execute
from ._errors import StoreUnavailable
from ._feed import Waker, WakerListener
from ._plans import (
    AppendHistory,
    DeleteCursor,
    DeleteTask,
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
from ._records import TransitionRecord


@attrs.frozen
class _Task:
    status: TaskStatus
    version: int
    due_at: int | None


class MemoryBackend:
    """Tasks, history and the change feed in dicts; safe to share between threads."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._closed = False
        self._tasks: dict[str, _Task] = {}
        self._sorted_ids: list[str] | None = []  # None: re-sort on the next list
        self._waiting: dict[str, int] = {}  # id -> due_at
        self._running: set[str] = set()
        self._history: dict[str, list[TransitionRecord]] = {}
        self._by_event_id: dict[tuple[str, str], TransitionRecord] = {}
        self._feed: dict[int, TransitionRecord] = {}
        self._feed_seqs: list[int] = []  # ascending; may hold seqs of deleted tasks
        self._feed_floor = 0
        self._seq = 0
        self._cursors: dict[str, int] = {}
        self.waker = Waker()  # wakes change-feed followers after each commit adding changes
        self._undo: list[Callable[[], None]] = []
        self._handlers: dict[type[Any], Callable[[Any], Any]] = {
            ReadTask: self._read_task,
            FindEvent: self._find_event,
            InsertTask: self._insert_task,
            UpdateTask: self._update_task,
            AppendHistory: self._append_history,
            ReadHistory: self._read_history,
            ListTasks: self._list_tasks,
            FindDue: self._find_due,
            FindStale: self._find_stale,
            DeleteTask: self._delete_task,
            ReadChanges: self._read_changes,
            PruneChanges: self._prune_changes,
            ReadCursors: self._read_cursors,
            WriteCursor: self._write_cursor,
            DeleteCursor: self._delete_cursor,
        }

    @contextmanager
    def transaction(self, write: bool) -> Iterator[Execute]:
        with self._lock:
            if self._closed:
                raise StoreUnavailable("memory store is closed")
            self._undo = []
            seq = self._seq
            try:
                yield self._execute
            except BaseException:
                for undo in reversed(self._undo):
                    undo()
                raise
            finally:
                self._undo = []
            if self._seq != seq:
                self.waker.notify()

    def listener(self) -> WakerListener:
        """Start listening for commits that add changes (see `_feed.FeedSource`)."""
        return WakerListener(self.waker)

    def close(self) -> None:
        with self._lock:
            self._closed = True

    def _execute(self, op: Op) -> Any:
        return self._handlers[type(op)](op)

    # -- writes (each registers its undo) ------------------------------------------------

    def _put(self, task_id: str, task: _Task | None) -> None:
        old = self._tasks.get(task_id)
        self._index(task_id, old, task)
        self._undo.append(lambda: self._index(task_id, task, old))

    def _index(self, task_id: str, old: _Task | None, new: _Task | None) -> None:
        if new is None:
            self._tasks.pop(task_id, None)
        else:
            self._tasks[task_id] = new
        if (old is None) != (new is None):
            self._sorted_ids = None
        self._waiting.pop(task_id, None)
        self._running.discard(task_id)
        if new is not None:
            if new.due_at is not None and new.status.phase is TaskPhase.WAITING:
                self._waiting[task_id] = new.due_at
            elif new.status.phase is TaskPhase.RUNNING:
                self._running.add(task_id)

    def _insert_task(self, op: InsertTask) -> bool:
        if op.task_id in self._tasks:
            return False
        self._put(op.task_id, _Task(op.status, 1, op.due_at))
        return True

    def _update_task(self, op: UpdateTask) -> bool:
        task = self._tasks.get(op.task_id)
        if task is None or task.version != op.version:
            return False
        self._put(op.task_id, _Task(op.status, op.version + 1, op.due_at))
        return True

    def _append_history(self, op: AppendHistory) -> list[int]:
        seqs = []
        for entry in op.entries:
            self._seq += 1
            record = entry.record(self._seq)
            self._history.setdefault(record.task_id, []).append(record)
            if record.event_id is not None:
                self._by_event_id[(record.task_id, record.event_id)] = record
            self._feed[record.seq] = record
            self._feed_seqs.append(record.seq)
            self._undo.append(partial(self._unappend, record))
            seqs.append(record.seq)
        return seqs

    def _unappend(self, record: TransitionRecord) -> None:
        self._history[record.task_id].pop()
        if not self._history[record.task_id]:
            del self._history[record.task_id]
        if record.event_id is not None:
            del self._by_event_id[(record.task_id, record.event_id)]
        del self._feed[record.seq]
        self._feed_seqs.pop()

    def _delete_task(self, op: DeleteTask) -> bool:
        if op.task_id not in self._tasks:
            return False
        self._put(op.task_id, None)
        records = self._history.pop(op.task_id, [])
        for record in records:
            self._feed.pop(record.seq, None)
            if record.event_id is not None:
                self._by_event_id.pop((record.task_id, record.event_id), None)
        self._undo.append(lambda: self._undelete(op.task_id, records))
        return True

    def _undelete(self, task_id: str, records: list[TransitionRecord]) -> None:
        self._history[task_id] = records
        for record in records:
            self._feed[record.seq] = record
            if record.event_id is not None:
                self._by_event_id[(task_id, record.event_id)] = record

    def _prune_changes(self, op: PruneChanges) -> int:
        old = self._feed_floor
        if op.before <= old:
            return 0
        self._feed_floor = op.before
        self._undo.append(lambda: setattr(self, "_feed_floor", old))
        start = bisect.bisect_left(self._feed_seqs, old)
        stop = bisect.bisect_left(self._feed_seqs, op.before)
        return sum(1 for seq in self._feed_seqs[start:stop] if seq in self._feed)

    def _write_cursor(self, op: WriteCursor) -> None:
        old = self._cursors.get(op.name)
        self._cursors[op.name] = op.seq
        self._undo.append(partial(self._restore_cursor, op.name, old))

    def _delete_cursor(self, op: DeleteCursor) -> bool:
        old = self._cursors.pop(op.name, None)
        self._undo.append(partial(self._restore_cursor, op.name, old))
        return old is not None

    def _restore_cursor(self, name: str, seq: int | None) -> None:
        if seq is None:
            self._cursors.pop(name, None)
        else:
            self._cursors[name] = seq

    # -- reads ---------------------------------------------------------------------------

    def _row(self, task_id: str) -> Row:
        task = self._tasks[task_id]
        return Row(task_id, task.status, task.version, task.due_at)

    def _read_task(self, op: ReadTask) -> Row | None:
        return self._row(op.task_id) if op.task_id in self._tasks else None

    def _find_event(self, op: FindEvent) -> TransitionRecord | None:
        return self._by_event_id.get((op.task_id, op.event_id))

    def _read_history(self, op: ReadHistory) -> list[TransitionRecord]:
        return list(self._history.get(op.task_id, ()))

    def _list_tasks(self, op: ListTasks) -> list[tuple[str, TaskStatus]]:
        if self._sorted_ids is None:
            self._sorted_ids = sorted(self._tasks)
        ids = self._sorted_ids
        start = 0 if op.after is None else bisect.bisect_right(ids, op.after)
        out: list[tuple[str, TaskStatus]] = []
        for i in range(start, len(ids)):
            task_id = ids[i]
            status = self._tasks[task_id].status
            if op.phase is None or status.phase is op.phase:
                out.append((task_id, status))
                if len(out) == op.limit:
                    break
        return out

    def _find_due(self, op: FindDue) -> list[Row]:
        due = ((at, task_id) for task_id, at in self._waiting.items() if at <= op.now)
        return [self._row(task_id) for _, task_id in heapq.nsmallest(op.limit, due)]

    def _find_stale(self, op: FindStale) -> list[Row]:
        stale = sorted(
            (self._tasks[task_id].status.updated_at, task_id)
            for task_id in self._running
            if self._tasks[task_id].status.updated_at < op.cutoff
        )
        return [self._row(task_id) for _, task_id in stale]

    def _read_cursors(self, op: ReadCursors) -> dict[str, int]:
        if op.names is None:
            return dict(self._cursors)
        return {name: self._cursors[name] for name in op.names if name in self._cursors}

    def _read_changes(self, op: ReadChanges) -> list[TransitionRecord]:
        after = max(op.after, self._feed_floor - 1)
        out: list[TransitionRecord] = []
        for i in range(bisect.bisect_right(self._feed_seqs, after), len(self._feed_seqs)):
            record = self._feed.get(self._feed_seqs[i])
            if record is not None:
                out.append(record)
                if len(out) == op.limit:
                    break
        return out
