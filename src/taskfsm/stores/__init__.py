"""Durable, atomic task stores: memory, SQLite (the embedded default) and PostgreSQL,
sync and async.

    with open_store("sqlite:///tasks.db") as store:
        store.create("job-1")
        store.apply("job-1", "schedule")
        for task_id, status in store.claim(10):
            ...

Every operation is written once as a backend-neutral plan (`_plans`); each backend maps
the plan's operations to its storage (`_memory`, `_sqlite`, `_postgres`), and thin
drivers (`_driver`) run a plan in one transaction, retrying on a lost compare-and-set.
"""

from __future__ import annotations

from .._engine import TaskMachine
from ._errors import IncompatibleSchema, StoreUnavailable, TooManyConflicts
from ._records import TransitionRecord
from ._store import AsyncStore, InlineRunner, Store, ThreadRunner
from ._url import parse

__all__ = [
    "AsyncStore",
    "IncompatibleSchema",
    "Store",
    "StoreUnavailable",
    "TooManyConflicts",
    "TransitionRecord",
    "open_async_store",
    "open_store",
]


def open_store(url: str, *, machine: TaskMachine | None = None) -> Store:
    """Open (and on first use create) a task store.

    Args:
        url: ``"memory://"``; ``"sqlite:///relative.db"``, ``"sqlite:////abs/path.db"``
            or ``"sqlite:///:memory:"`` (``?timeout=SECONDS``: how long a writer waits
            for another's lock, default 30); or a ``postgresql://`` libpq URL (needs the
            ``taskfsm[postgres]`` extra).
        machine: The engine deciding every transition (its policy and clock); a default
            `TaskMachine` when None.

    Returns:
        The store: a context manager, safe to share between threads.

    Raises:
        InvalidArgument: An unknown scheme (the message lists the known ones) or a
            malformed URL.
        StoreUnavailable: The database cannot be opened or reached.
        IncompatibleSchema: The database holds a newer taskfsm schema.
        TaskFSMError: A postgresql URL without psycopg installed.
    """
    target = parse(url)
    machine = machine if machine is not None else TaskMachine()
    if target.kind == "memory":
        from ._memory import MemoryBackend

        return Store(MemoryBackend(), machine, target.display)
    if target.kind == "sqlite":
        from ._sqlite import SqliteBackend

        return Store(SqliteBackend(target.location, target.timeout), machine, target.display)
    from ._postgres import PostgresBackend

    return Store(PostgresBackend(target.location), machine, target.display)


def open_async_store(url: str, *, machine: TaskMachine | None = None) -> AsyncStore:
    """The asyncio twin of `open_store`; connects on ``async with`` or first use.

    PostgreSQL uses psycopg's async connections from a small pool shared by all
    coroutines; SQLite runs in one worker thread per store; memory runs on the loop.

    Raises:
        InvalidArgument: An unknown scheme or a malformed URL.
        TaskFSMError: A postgresql URL without psycopg installed.
    """
    target = parse(url)
    machine = machine if machine is not None else TaskMachine()
    if target.kind == "memory":
        from ._memory import MemoryBackend

        return AsyncStore(InlineRunner(MemoryBackend()), machine, target.display)
    if target.kind == "sqlite":
        from ._sqlite import SqliteBackend

        def connect() -> SqliteBackend:
            return SqliteBackend(target.location, target.timeout)

        return AsyncStore(ThreadRunner(connect), machine, target.display)
    from ._postgres import AsyncPostgresRunner

    return AsyncStore(AsyncPostgresRunner(target.location), machine, target.display)
