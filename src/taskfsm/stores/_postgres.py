"""The PostgreSQL backend (psycopg 3): the schema, the dialect, seq allocation and NOTIFY
(the statements shared with SQLite are in `_sqlbase`), run by a sync connection pool
(`PostgresBackend`) or an async one (`AsyncPostgresRunner`).

Transactions run at READ COMMITTED: a compare-and-set ``UPDATE ... WHERE version = %s``
waits for a concurrent writer of the row and then sees its committed version, so it
fails exactly when it lost. ``claim`` and ``reap_stale`` lock their rows with
``FOR UPDATE SKIP LOCKED``: workers on many machines never block each other.

Change-feed seqs come from a single counter row, incremented by the last statement of
each writing transaction (together with the history insert). The row lock is held to
the commit, so seqs are handed out in commit order: a reader that saw seq n never later
finds a smaller one. A BIGSERIAL would not do: its values are taken at insert time,
and transactions commit in another order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from .._errors import TaskFSMError
from ._driver import AsyncExecute, Execute, run_async
from ._errors import IncompatibleSchema, StoreUnavailable
from ._plans import AppendHistory, Conflict, Op, Plan
from ._sql import Fetch, Sql, SqlSteps, adrive, drive
from ._sqlbase import Dialect, SqlCompiler, history_params
from ._url import redact

if TYPE_CHECKING:
    import psycopg

    from ._pg_feed import AsyncPgListener, PgListener

T = TypeVar("T")

SCHEMA_VERSION = 1

#: Connections per store (per process): a few serve many threads or coroutines.
POOL_MAX_SIZE = 10
#: Seconds to wait for a connection (connect, or a free one from the pool).
CONNECT_TIMEOUT = 10.0
# Serialises schema creation between processes opening a fresh database at once.
_SCHEMA_LOCK = 0x7461736B66736D  # "taskfsm"

#: The NOTIFY channel of the change feed, as an SQL expression: one per schema (channels
#: are database-wide), hashed to stay within the 63-byte identifier limit.
FEED_CHANNEL = "'taskfsm_feed_' || md5(current_schema())"

_SCHEMA = (
    "CREATE TABLE taskfsm_meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL)",
    # The change-feed counter: one row, updated last in every writing transaction.
    """CREATE TABLE taskfsm_seq (
        singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
        seq BIGINT NOT NULL
    )""",
    "INSERT INTO taskfsm_seq (singleton, seq) VALUES (TRUE, 0)",
    # status is the wire JSON; phase, due_at and updated_at copy it for the indexes.
    # due_at is set only while waiting; version is the compare-and-set counter.
    # COLLATE "C": ids sort by code point, as in SQLite and Python, whatever the locale.
    # fillfactor: room for HOT updates (progress, heartbeat touch no indexed column).
    """CREATE TABLE taskfsm_tasks (
        id TEXT COLLATE "C" PRIMARY KEY,
        status TEXT NOT NULL,
        phase TEXT NOT NULL,
        due_at BIGINT,
        updated_at BIGINT NOT NULL,
        version BIGINT NOT NULL
    ) WITH (fillfactor = 80)""",
    "CREATE INDEX taskfsm_tasks_phase ON taskfsm_tasks (phase, id)",
    "CREATE INDEX taskfsm_tasks_due ON taskfsm_tasks (due_at, id) WHERE due_at IS NOT NULL",
    """CREATE TABLE taskfsm_history (
        seq BIGINT PRIMARY KEY,
        task_id TEXT COLLATE "C" NOT NULL,
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
    "CREATE TABLE taskfsm_feed_cursors (name TEXT PRIMARY KEY, seq BIGINT NOT NULL)",
    "INSERT INTO taskfsm_meta (key, value) VALUES ('feed_floor', 0)",
    f"INSERT INTO taskfsm_meta (key, value) VALUES ('schema_version', {SCHEMA_VERSION})",
)

_HISTORY_COLUMNS = "(seq, task_id, event, from_phase, to_phase, status, event_id, args)"

#: PostgreSQL's SQL: ``%s`` marks, ``GREATEST``, row locks (claim and reap skip the rows
#: another worker holds), and name lists bound as one array.
DIALECT = Dialect(
    mark="%s",
    greatest="GREATEST",
    lock_rows=" FOR UPDATE SKIP LOCKED",
    lock_row=" FOR UPDATE",
    array_param=True,
)

_APPEND_ONE = (
    "WITH s AS (UPDATE taskfsm_seq SET seq = seq + 1"
    f" RETURNING seq, pg_notify({FEED_CHANNEL}, seq::text))"
    f" INSERT INTO taskfsm_history {_HISTORY_COLUMNS}"
    " SELECT s.seq, %s, %s, %s, %s, %s, %s, %s FROM s RETURNING seq"
)
_TAKE_SEQS = (
    f"UPDATE taskfsm_seq SET seq = seq + %s RETURNING seq, pg_notify({FEED_CHANNEL}, seq::text)"
)
_APPEND_MANY = (
    f"INSERT INTO taskfsm_history {_HISTORY_COLUMNS} VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
)


def _import_psycopg() -> Any:
    try:
        import psycopg
        import psycopg_pool
    except ImportError as exc:
        raise TaskFSMError(
            f"PostgreSQL stores need psycopg 3 and psycopg-pool ({exc}): "
            "pip install 'taskfsm[postgres]'"
        ) from None
    return psycopg, psycopg_pool


def setup(display: str) -> SqlSteps[None]:
    """Create the schema on first open; refuse a newer one. Run in one transaction."""
    yield Sql("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
    (exists,) = yield Sql("SELECT to_regclass('taskfsm_meta') IS NOT NULL", (), Fetch.ONE)
    if exists:
        found = yield Sql(
            "SELECT value FROM taskfsm_meta WHERE key = 'schema_version'", (), Fetch.ONE
        )
        version = None if found is None else found[0]
        if version != SCHEMA_VERSION:
            raise IncompatibleSchema(
                f"PostgreSQL database {display} has taskfsm schema version {version!r};"
                f" this taskfsm knows version {SCHEMA_VERSION} only (upgrade taskfsm)"
            )
        return
    for statement in _SCHEMA:
        yield Sql(statement)


class PostgresSql(SqlCompiler):
    """Maps each plan operation to PostgreSQL statements."""

    def __init__(self) -> None:
        super().__init__(DIALECT)

    def append_history(self, op: AppendHistory) -> SqlSteps[list[int]]:
        entries = op.entries
        if len(entries) == 1:
            # One round trip: take the next seq and insert the record with it. pg_notify
            # inside the transaction: followers are woken on commit, never for a rollback.
            (seq,) = yield Sql(_APPEND_ONE, history_params(entries[0]), Fetch.ONE)
            return [seq]
        (last, _) = yield Sql(_TAKE_SEQS, (len(entries),), Fetch.ONE)
        seqs = list(range(last - len(entries) + 1, last + 1))
        yield Sql(
            _APPEND_MANY,
            [(seq, *history_params(e)) for seq, e in zip(seqs, entries, strict=True)],
            many=True,
        )
        return seqs


def _message(exc: BaseException, url: str) -> str:
    """The error text, without the URL's password should libpq ever echo it."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    try:
        from urllib.parse import urlsplit

        password = urlsplit(url).password
    except ValueError:
        password = None
    return text.replace(password, "***") if password else text


def _run(conn: psycopg.Connection[Any], stmt: Sql) -> Any:
    if stmt.many:
        with conn.cursor() as cur:
            cur.executemany(stmt.query, stmt.params)
        return None
    cur = conn.execute(stmt.query, stmt.params)
    fetch = stmt.fetch
    if fetch is Fetch.ONE:
        return cur.fetchone()
    if fetch is Fetch.ALL:
        return cur.fetchall()
    if fetch is Fetch.ROWCOUNT:
        return cur.rowcount
    return None


async def _arun(conn: psycopg.AsyncConnection[Any], stmt: Sql) -> Any:
    if stmt.many:
        async with conn.cursor() as cur:
            await cur.executemany(stmt.query, stmt.params)
        return None
    cur = await conn.execute(stmt.query, stmt.params)
    fetch = stmt.fetch
    if fetch is Fetch.ONE:
        return await cur.fetchone()
    if fetch is Fetch.ALL:
        return await cur.fetchall()
    if fetch is Fetch.ROWCOUNT:
        return cur.rowcount
    return None


class _Errors:
    """Maps psycopg's errors to the store's: a lost race -> `Conflict` (rerun the plan),
    an unreachable server -> `StoreUnavailable` naming it."""

    def __init__(self, url: str) -> None:
        self.psycopg, self.pool = _import_psycopg()
        self.url = url
        self.display = redact(url)
        errors = self.psycopg.errors
        self.conflicts: tuple[type[BaseException], ...] = (
            errors.UniqueViolation,
            errors.TransactionRollback,  # serialization failure, deadlock
        )

    def unavailable(self, exc: BaseException) -> StoreUnavailable:
        return StoreUnavailable(
            f"PostgreSQL at {self.display} is unavailable: {_message(exc, self.url)}"
        )


class PostgresBackend:
    """A PostgreSQL database through a pool of psycopg connections; safe to share
    between threads.

    Raises:
        TaskFSMError: psycopg is not installed (names the ``taskfsm[postgres]`` extra).
        StoreUnavailable: The server cannot be reached (names the host, not the password).
        IncompatibleSchema: The database holds a newer taskfsm schema.
    """

    def __init__(self, url: str) -> None:
        self._errors = _Errors(url)
        self._sql = PostgresSql()
        psycopg = self._errors.psycopg
        try:
            conn = psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
            with conn, conn.transaction():
                drive(setup(self._errors.display), partial(_run, conn))
            self._pool = self._errors.pool.ConnectionPool(
                url,
                min_size=1,
                max_size=POOL_MAX_SIZE,
                kwargs={"autocommit": True},
                timeout=CONNECT_TIMEOUT,
                open=False,
                name="taskfsm",
            )
            self._pool.open(wait=True, timeout=CONNECT_TIMEOUT)
        except psycopg.OperationalError as exc:
            raise self._errors.unavailable(exc) from None

    @contextmanager
    def transaction(self, write: bool) -> Iterator[Execute]:
        errors = self._errors
        if self._pool.closed:
            raise StoreUnavailable(f"PostgreSQL store {errors.display} is closed")
        try:
            with self._pool.connection() as conn:
                if write:
                    with conn.transaction():
                        yield partial(self._execute, conn)
                else:
                    yield partial(self._execute, conn)
        except errors.conflicts as exc:
            raise Conflict(str(exc)) from exc
        except errors.psycopg.OperationalError as exc:
            raise errors.unavailable(exc) from exc

    def _execute(self, conn: psycopg.Connection[Any], op: Op) -> Any:
        return drive(self._sql.compile(op), partial(_run, conn))

    def listener(self) -> PgListener:
        """LISTEN for change-feed commits on a dedicated connection (`_feed.FeedSource`)."""
        from ._pg_feed import PgListener

        return PgListener(self._errors)

    def close(self) -> None:
        self._pool.close()


class AsyncPostgresRunner:
    """Runs plans on psycopg's async connections, from one `AsyncConnectionPool` that
    all coroutines of the store share.

    Each transaction runs in its own task, shielded from the caller's cancellation: a
    cancelled caller stops waiting, and the transaction still commits or rolls back
    as a whole (psycopg is never interrupted halfway through a statement).
    """

    def __init__(self, url: str) -> None:
        self._errors = _Errors(url)
        self._sql = PostgresSql()
        self._url = url
        self._pool: Any = None
        self._inflight: set[asyncio.Task[Any]] = set()

    async def open(self) -> None:
        if self._pool is not None:
            return
        errors = self._errors
        psycopg = errors.psycopg
        try:
            conn = await psycopg.AsyncConnection.connect(
                self._url, autocommit=True, connect_timeout=CONNECT_TIMEOUT
            )
            async with conn, conn.transaction():
                await adrive(setup(errors.display), partial(_arun, conn))
            pool = errors.pool.AsyncConnectionPool(
                self._url,
                min_size=1,
                max_size=POOL_MAX_SIZE,
                kwargs={"autocommit": True},
                timeout=CONNECT_TIMEOUT,
                open=False,
                name="taskfsm-async",
            )
            await pool.open(wait=True, timeout=CONNECT_TIMEOUT)
        except psycopg.OperationalError as exc:
            raise errors.unavailable(exc) from None
        self._pool = pool

    @asynccontextmanager
    async def transaction(self, write: bool) -> AsyncIterator[AsyncExecute]:
        errors = self._errors
        try:
            async with self._pool.connection() as conn:
                if write:
                    async with conn.transaction():
                        yield partial(self._execute, conn)
                else:
                    yield partial(self._execute, conn)
        except errors.conflicts as exc:
            raise Conflict(str(exc)) from exc
        except errors.psycopg.OperationalError as exc:
            raise errors.unavailable(exc) from exc

    async def _execute(self, conn: psycopg.AsyncConnection[Any], op: Op) -> Any:
        return await adrive(self._sql.compile(op), partial(_arun, conn))

    async def run(self, plan: Plan[T]) -> T:
        task = asyncio.ensure_future(run_async(self, plan))
        self._inflight.add(task)
        task.add_done_callback(self._finished)
        return await asyncio.shield(task)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._inflight.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a cancelled caller no longer awaits it

    async def alistener(self) -> AsyncPgListener:
        """LISTEN for change-feed commits on a dedicated connection (`_feed.AsyncFeedSource`)."""
        from ._pg_feed import AsyncPgListener

        return await AsyncPgListener.connect(self._errors)

    async def aclose(self) -> None:
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)
        if self._pool is not None:
            await self._pool.close()
