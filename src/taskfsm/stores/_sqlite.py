"""The SQLite backend (stdlib ``sqlite3``): the schema, the dialect and the connections
(the statements shared with PostgreSQL are in `_sqlbase`).

WAL journal with ``synchronous=NORMAL``: a commit is atomic and consistent, and survives
a crash of the process; a power loss may lose the last transactions (not corrupt the
file). Writes take the write lock up front (``BEGIN IMMEDIATE``), so processes sharing
the file serialise their read-decide-write and never fail a lock upgrade midway.
"""

from __future__ import annotations

import sqlite3
import threading
from functools import partial
from types import TracebackType
from typing import Any

from ._driver import Execute
from ._errors import IncompatibleSchema, StoreUnavailable
from ._plans import AppendHistory, Conflict, Op
from ._sql import Fetch, Sql, SqlSteps, drive
from ._sqlbase import Dialect, SqlCompiler, history_params

SCHEMA_VERSION = 1

_SCHEMA = (
    """CREATE TABLE taskfsm_meta (
        key TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    )""",
    # status is the wire JSON; phase, due_at and updated_at copy it for the indexes.
    # due_at is set only while waiting; version is the compare-and-set counter.
    """CREATE TABLE taskfsm_tasks (
        id TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        phase TEXT NOT NULL,
        due_at INTEGER,
        updated_at INTEGER NOT NULL,
        version INTEGER NOT NULL
    ) WITHOUT ROWID""",
    "CREATE INDEX taskfsm_tasks_phase ON taskfsm_tasks (phase, id)",
    "CREATE INDEX taskfsm_tasks_due ON taskfsm_tasks (due_at, id) WHERE due_at IS NOT NULL",
    # AUTOINCREMENT: a seq is never reused, even after the newest records are deleted,
    # so a change-feed cursor never skips a record.
    """CREATE TABLE taskfsm_history (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        task_id TEXT NOT NULL,
        event TEXT NOT NULL,
        from_phase TEXT,
        to_phase TEXT NOT NULL,
        status TEXT NOT NULL,
        event_id TEXT,
        args TEXT NOT NULL
    )""",
    "CREATE INDEX taskfsm_history_task ON taskfsm_history (task_id, seq)",
    "CREATE UNIQUE INDEX taskfsm_history_event_id ON taskfsm_history (task_id, event_id)"
    " WHERE event_id IS NOT NULL",
    # The committed change-feed cursor of each named consumer (see taskfsm.Dispatcher).
    """CREATE TABLE taskfsm_feed_cursors (
        name TEXT PRIMARY KEY,
        seq INTEGER NOT NULL
    ) WITHOUT ROWID""",
    "INSERT INTO taskfsm_meta (key, value) VALUES ('feed_floor', 0)",
    f"INSERT INTO taskfsm_meta (key, value) VALUES ('schema_version', {SCHEMA_VERSION})",
)

#: SQLite's SQL: ``?`` marks, ``max()``, and no row locks (a write transaction holds
#: the whole database's write lock from its ``BEGIN IMMEDIATE``).
DIALECT = Dialect(mark="?", greatest="max")

_APPEND = (
    "INSERT INTO taskfsm_history (task_id, event, from_phase, to_phase, status, event_id, args)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)


class SqliteSql(SqlCompiler):
    """Maps each plan operation to SQLite statements."""

    def __init__(self) -> None:
        super().__init__(DIALECT)

    def append_history(self, op: AppendHistory) -> SqlSteps[list[int]]:
        # AUTOINCREMENT hands out the seqs, in commit order under the write lock.
        seqs = []
        for e in op.entries:
            seq = yield Sql(_APPEND, history_params(e), Fetch.LASTROWID)
            seqs.append(seq)
        return seqs


def _run(conn: sqlite3.Connection, stmt: Sql) -> Any:
    if stmt.many:
        conn.executemany(stmt.query, stmt.params)
        return None
    cur = conn.execute(stmt.query, stmt.params)
    fetch = stmt.fetch
    if fetch is Fetch.ONE:
        return cur.fetchone()
    if fetch is Fetch.ALL:
        return cur.fetchall()
    if fetch is Fetch.ROWCOUNT:
        return cur.rowcount
    if fetch is Fetch.LASTROWID:
        return cur.lastrowid
    return None


class SqliteBackend:
    """A SQLite database file (or ``:memory:``), safe to share between threads: each
    transaction borrows a connection from a small pool of idle ones.

    Args:
        path: The database file, or ``":memory:"`` (one connection, used in turn).
        timeout: Seconds to wait for another writer's lock before giving up.

    Raises:
        StoreUnavailable: The file cannot be opened.
        IncompatibleSchema: The file holds a newer taskfsm schema.
    """

    def __init__(self, path: str, timeout: float = 30.0) -> None:
        self.path = path
        self._timeout = timeout
        self._sql = SqliteSql()
        self._lock = threading.Lock()
        # In-memory databases are per connection: share one, one transaction at a time.
        self._gate = threading.Lock() if path == ":memory:" else None
        self._idle: list[sqlite3.Connection] = []
        self._closed = False
        try:
            conn = self._connect()
            try:
                self._setup(conn)
            except BaseException:
                conn.close()
                raise
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from None
        self._idle.append(conn)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=self._timeout, isolation_level=None, check_same_thread=False
        )
        # NORMAL is durable against process crashes under WAL and skips an fsync per commit.
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    def _setup(self, conn: sqlite3.Connection) -> None:
        """Create the schema on first open; refuse a newer one. Safe when several
        processes open the file at once: the write lock serialises them."""
        if self.path != ":memory:":
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("BEGIN IMMEDIATE")
        try:
            exists = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'taskfsm_meta'"
            ).fetchone()
            if exists:
                found = conn.execute(
                    "SELECT value FROM taskfsm_meta WHERE key = 'schema_version'"
                ).fetchone()
                version = None if found is None else found[0]
                if version != SCHEMA_VERSION:
                    raise IncompatibleSchema(
                        f"SQLite database {self.path!r} has taskfsm schema version {version!r};"
                        f" this taskfsm knows version {SCHEMA_VERSION} only (upgrade taskfsm)"
                    )
            else:
                for statement in _SCHEMA:
                    conn.execute(statement)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _unavailable(self, exc: sqlite3.Error) -> StoreUnavailable:
        text = str(exc)
        if "locked" in text or "busy" in text:
            text = f"{text} (another writer held it for more than {self._timeout}s)"
        return StoreUnavailable(f"SQLite database {self.path!r}: {text}")

    def _acquire(self) -> sqlite3.Connection:
        if self._gate is not None:
            self._gate.acquire()
        try:
            with self._lock:
                if self._closed:
                    raise StoreUnavailable(f"SQLite store {self.path!r} is closed")
                if self._idle:
                    return self._idle.pop()
            return self._connect()
        except BaseException:
            if self._gate is not None:
                self._gate.release()
            raise

    def _release(self, conn: sqlite3.Connection) -> None:
        with self._lock:
            if self._closed:
                conn.close()
            else:
                self._idle.append(conn)
        if self._gate is not None:
            self._gate.release()

    def transaction(self, write: bool) -> _Transaction:
        return _Transaction(self, write)

    def _execute(self, conn: sqlite3.Connection, op: Op) -> Any:
        return drive(self._sql.compile(op), partial(_run, conn))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class _Transaction:
    """One transaction on a borrowed connection: ``BEGIN IMMEDIATE`` for writes (plain
    autocommit statements for reads); commit on success, roll back on any exception."""

    __slots__ = ("_backend", "_conn", "_write")

    def __init__(self, backend: SqliteBackend, write: bool) -> None:
        self._backend = backend
        self._write = write

    def __enter__(self) -> Execute:
        backend = self._backend
        conn = self._conn = backend._acquire()
        if self._write:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                backend._release(conn)
                raise backend._unavailable(exc) from exc
        return partial(backend._execute, conn)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        backend, conn = self._backend, self._conn
        try:
            if conn.in_transaction:
                conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
        except sqlite3.Error as err:
            raise backend._unavailable(err) from err
        finally:
            backend._release(conn)
        if isinstance(exc, sqlite3.IntegrityError):
            # A unique index caught a race the plan did not see: rerun it.
            raise Conflict(str(exc)) from exc
        if isinstance(exc, sqlite3.Error):
            raise backend._unavailable(exc) from exc
