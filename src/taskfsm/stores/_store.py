"""`Store` and `AsyncStore`: the public faces of a backend. Each method checks its
arguments and builds a plan (`_plans.Planner`); a driver runs it in one transaction."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any, Protocol, TypeVar

from .._engine import TaskMachine
from .._phase import TaskPhase
from .._status import TaskStatus
from ._driver import SyncBackend, run_sync
from ._errors import StoreUnavailable
from ._feed import (
    AsyncFeedSource,
    AsyncListener,
    AsyncPollListener,
    AsyncWakerListener,
    FeedSource,
    Listener,
    PollListener,
    afollow,
    check_follow,
    follow,
)
from ._plans import Plan, Planner
from ._records import TransitionRecord

T = TypeVar("T")

# Aliases: inside the classes, ``list`` names the method.
Listing = list[tuple[str, TaskStatus]]
Records = list[TransitionRecord]
Ids = list[str]
Cursors = dict[str, int]

#: Seconds between reads of a follower nothing wakes (SQLite); elsewhere the safety net.
POLL_INTERVAL = 1.0


class Store:
    """A durable, atomic task store; made by `open_store`.

    A context manager (closes on exit); safe to share between the threads of a process.
    Every write runs in one transaction: the status, its history record and the change
    feed entry are written together or not at all.
    """

    def __init__(self, backend: SyncBackend, machine: TaskMachine, url: str) -> None:
        self._backend = backend
        self._plans = Planner(machine)
        self._url = url

    def __repr__(self) -> str:
        return f"<taskfsm Store {self._url}>"

    @property
    def machine(self) -> TaskMachine:
        """The engine that decides every transition (its clock stamps every time)."""
        return self._plans.machine

    def _run(self, plan: Plan[T]) -> T:
        return run_sync(self._backend, plan)

    def create(self, task_id: str) -> TaskStatus:
        """Create a task in the lifecycle's initial phase; its history starts with a
        ``"create"`` record.

        Raises:
            TaskExists: A task with that id exists.
            InvalidArgument: *task_id* is not a non-empty string.
        """
        return self._run(self._plans.create(task_id))

    def get(self, task_id: str) -> TaskStatus:
        """The current status of a task.

        Raises:
            TaskNotFound: No such task.
            InvalidStatus: The stored status is corrupt (the message names the task).
        """
        return self._run(self._plans.get(task_id))

    def apply(
        self, task_id: str, event: str, *, event_id: str | None = None, **kwargs: Any
    ) -> TaskStatus:
        """Apply *event* atomically: read, decide with the engine, compare-and-set.

        Args:
            task_id: The task.
            event: The event name, e.g. ``"start"`` or ``"fail"``.
            event_id: An idempotency key: the same key again returns the status that
                event stored and writes nothing.
            **kwargs: The event's arguments (``value`` for progress; ``error`` and
                ``retryable`` for fail).

        Returns:
            The new status (or, for a known *event_id*, the status it stored).

        Raises:
            TaskNotFound: No such task.
            IllegalTransition: The event is not allowed now (names the task).
            InvalidArgument: Bad arguments, or *event_id* was used by another event.
            InvalidStatus: The stored status is corrupt.
            TooManyConflicts: Concurrent writers won every compare-and-set attempt.
        """
        return self._run(self._plans.apply(task_id, event, event_id, kwargs))

    def history(self, task_id: str) -> Records:
        """Every accepted transition of the task, creation first.

        Raises:
            TaskNotFound: No such task.
        """
        return self._run(self._plans.history(task_id))

    def list(
        self, phase: TaskPhase | str | None = None, limit: int = 100, after: str | None = None
    ) -> Listing:
        """Up to *limit* tasks ordered by id, optionally only those in *phase*; pass the
        last id of a page as *after* to get the next page (keyset pagination).

        Raises:
            InvalidArgument: Unknown phase, or a negative limit.
        """
        return self._run(self._plans.list_tasks(phase, limit, after))

    def claim(self, limit: int, *, now: int | None = None) -> Listing:
        """Atomically start up to *limit* waiting tasks that are due at *now*, oldest due
        first. No task is ever handed to two callers.

        Args:
            limit: The most tasks to claim.
            now: Int ms since the epoch; None is the machine's clock.

        Returns:
            The claimed tasks with their new (running) status.
        """
        return self._run(self._plans.claim(limit, now))

    def reap_stale(self, timeout_s: float, *, now: int | None = None) -> Ids:
        """Fail every running task not updated for *timeout_s* seconds before *now*, as a
        retryable error ``"timed out after {timeout_s}s"`` (so the policy may retry it).

        Returns:
            The ids of the tasks failed.
        """
        return self._run(self._plans.reap_stale(timeout_s, now))

    def delete(self, task_id: str) -> None:
        """Remove a task, its status and its history.

        Raises:
            TaskNotFound: No such task.
        """
        self._run(self._plans.delete(task_id))

    def changes(self, after: int = 0, limit: int = 100) -> Records:
        """The change feed: up to *limit* records with ``seq > after``, in seq order.

        Seqs are strictly commit-ordered: once a record is read, no record with a smaller
        seq can appear later, so ``after = last.seq`` is a safe cursor.
        """
        return self._run(self._plans.changes(after, limit))

    def prune_changes(self, before: int) -> int:
        """Drop the records with ``seq < before`` from the change feed; the tasks'
        histories keep them. Returns how many records left the feed."""
        return self._run(self._plans.prune_changes(before))

    def follow(
        self,
        after: int = 0,
        *,
        poll_interval: float = POLL_INTERVAL,
        batch: int = 100,
        stop: threading.Event | None = None,
    ) -> Generator[TransitionRecord, None, None]:
        """Every change with ``seq > after``, in seq order, waiting for new ones.

        Between reads the follower waits: woken by ``LISTEN/NOTIFY`` on PostgreSQL (a
        dedicated connection, held until the iterator is closed) and by a condition
        variable in memory, with *poll_interval* as the safety net; SQLite polls every
        *poll_interval*. A wake-up only triggers ``changes(after=cursor)``, so no signal
        can carry or lose a change.

        Args:
            after: The cursor: the seq of the last change already handled.
            poll_interval: The longest wait between reads, in seconds.
            batch: Records read per ``changes()`` call.
            stop: Set it to end the iteration (checked between reads, so within about
                *poll_interval*); or just stop iterating and ``close()`` the iterator.

        Returns:
            An iterator; close it (or exhaust it) to release its listener.

        Raises:
            InvalidArgument: A negative *after*, a non-positive *poll_interval* or *batch*.
            StoreUnavailable: The database cannot be reached (while iterating).
        """
        check_follow(after, poll_interval, batch)
        return follow(self.changes, self._listener(stop), after, poll_interval, batch, stop)

    def _listener(self, stop: threading.Event | None) -> Callable[[], Listener]:
        backend = self._backend
        if isinstance(backend, FeedSource):
            return backend.listener
        return lambda: PollListener(stop)

    def get_cursor(self, name: str) -> int | None:
        """The committed change-feed cursor of consumer *name*, or None if it has none.

        Raises:
            InvalidArgument: *name* is not a non-empty string.
        """
        return self._run(self._plans.get_cursor(name))

    def set_cursor(self, name: str, seq: int) -> None:
        """Commit *seq* as consumer *name*'s cursor (durably, in this database): the
        consumer has handled every change up to and including *seq*.

        Raises:
            InvalidArgument: A bad name, or *seq* is not a non-negative int.
        """
        self._run(self._plans.set_cursor(name, seq))

    def cursors(self) -> Cursors:
        """Every named consumer's committed cursor: ``{name: seq}``."""
        return self._run(self._plans.cursors())

    def delete_cursor(self, name: str) -> bool:
        """Forget consumer *name* (so it no longer holds back `prune_consumed`).

        Returns:
            Whether it had a cursor.
        """
        return self._run(self._plans.delete_cursor(name))

    def prune_consumed(self, consumers: tuple[str, ...] | None = None) -> int:
        """Prune the change feed up to the smallest committed cursor of *consumers*
        (every consumer with a cursor when None), in one transaction: no named consumer
        ever misses a change. Prunes nothing while any of them has no cursor, or when no
        consumer has one.

        Returns:
            How many records left the feed.
        """
        names = None if consumers is None else tuple(consumers)
        return self._run(self._plans.prune_consumed(names))

    def close(self) -> None:
        """Release the store's connections; later calls raise `StoreUnavailable`."""
        self._backend.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncRunner(Protocol):
    """How an async store runs a plan without blocking the event loop."""

    async def open(self) -> None:
        """Connect and set up the schema (idempotent)."""
        ...

    async def run(self, plan: Plan[T]) -> T:
        """Run *plan* in one transaction. Cancelling the caller leaves the transaction
        either fully committed or not begun."""
        ...

    async def aclose(self) -> None:
        """Finish in-flight transactions and release connections."""
        ...


class InlineRunner:
    """Runs plans of a sync backend on the loop itself: for the memory backend, whose
    transactions never block on I/O and contain no await to be cancelled at."""

    def __init__(self, backend: SyncBackend) -> None:
        self._backend = backend

    async def open(self) -> None:
        return None

    async def run(self, plan: Plan[T]) -> T:
        return run_sync(self._backend, plan)

    async def alistener(self) -> AsyncListener:
        """A listener on the backend's commits (memory: its `Waker`), else polling."""
        waker = getattr(self._backend, "waker", None)
        if waker is None:
            return AsyncPollListener(None)
        return AsyncWakerListener(waker)

    async def aclose(self) -> None:
        self._backend.close()


class ThreadRunner:
    """Runs plans of a sync backend in one dedicated worker thread (SQLite); the backend
    is also made (connected, schema set up) in that thread.

    A cancelled caller stops waiting, but a transaction the thread has begun runs to its
    commit or rollback, so cancellation never leaves half a write.
    """

    def __init__(self, connect: Callable[[], SyncBackend]) -> None:
        self._connect = connect
        self._backend: SyncBackend | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="taskfsm-store")

    def _open(self) -> SyncBackend:
        if self._backend is None:
            self._backend = self._connect()
        return self._backend

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def open(self) -> None:
        await self._call(self._open)

    async def run(self, plan: Plan[T]) -> T:
        return await self._call(lambda: run_sync(self._open(), plan))

    async def aclose(self) -> None:
        if self._backend is not None:
            await self._call(self._backend.close)
        self._executor.shutdown(wait=False)


class AsyncStore:
    """The asyncio twin of `Store`: the same operations as coroutines; made by
    `open_async_store`. An async context manager (opens on enter, closes on exit); it
    also opens itself on first use. See `Store` for each operation's contract."""

    def __init__(self, runner: AsyncRunner, machine: TaskMachine, url: str) -> None:
        self._runner = runner
        self._plans = Planner(machine)
        self._url = url
        self._opened: asyncio.Future[None] | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"<taskfsm AsyncStore {self._url}>"

    @property
    def machine(self) -> TaskMachine:
        """The engine that decides every transition."""
        return self._plans.machine

    async def open(self) -> None:
        """Connect and create the schema if needed (idempotent).

        Raises:
            StoreUnavailable: The database cannot be reached.
            IncompatibleSchema: The database holds a newer taskfsm schema.
        """
        if self._closed:
            raise StoreUnavailable(f"store {self._url} is closed")
        if self._opened is None:
            self._opened = asyncio.ensure_future(self._runner.open())
        try:
            await asyncio.shield(self._opened)
        except Exception:
            self._opened = None
            raise

    async def _run(self, plan: Plan[T]) -> T:
        if self._closed or self._opened is None or not self._opened.done():
            await self.open()
        return await self._runner.run(plan)

    async def create(self, task_id: str) -> TaskStatus:
        """See `Store.create`."""
        return await self._run(self._plans.create(task_id))

    async def get(self, task_id: str) -> TaskStatus:
        """See `Store.get`."""
        return await self._run(self._plans.get(task_id))

    async def apply(
        self, task_id: str, event: str, *, event_id: str | None = None, **kwargs: Any
    ) -> TaskStatus:
        """See `Store.apply`."""
        return await self._run(self._plans.apply(task_id, event, event_id, kwargs))

    async def history(self, task_id: str) -> Records:
        """See `Store.history`."""
        return await self._run(self._plans.history(task_id))

    async def list(
        self, phase: TaskPhase | str | None = None, limit: int = 100, after: str | None = None
    ) -> Listing:
        """See `Store.list`."""
        return await self._run(self._plans.list_tasks(phase, limit, after))

    async def claim(self, limit: int, *, now: int | None = None) -> Listing:
        """See `Store.claim`."""
        return await self._run(self._plans.claim(limit, now))

    async def reap_stale(self, timeout_s: float, *, now: int | None = None) -> Ids:
        """See `Store.reap_stale`."""
        return await self._run(self._plans.reap_stale(timeout_s, now))

    async def delete(self, task_id: str) -> None:
        """See `Store.delete`."""
        await self._run(self._plans.delete(task_id))

    async def changes(self, after: int = 0, limit: int = 100) -> Records:
        """See `Store.changes`."""
        return await self._run(self._plans.changes(after, limit))

    async def prune_changes(self, before: int) -> int:
        """See `Store.prune_changes`."""
        return await self._run(self._plans.prune_changes(before))

    def follow(
        self,
        after: int = 0,
        *,
        poll_interval: float = POLL_INTERVAL,
        batch: int = 100,
        stop: asyncio.Event | None = None,
    ) -> AsyncGenerator[TransitionRecord, None]:
        """See `Store.follow`: an async iterator; never blocks the loop. Cancelling the
        consuming task also ends it; close it with ``aclose()`` (or
        ``contextlib.aclosing``) when you stop early, to release its listener."""
        check_follow(after, poll_interval, batch)
        return afollow(self.changes, self._listener(stop), after, poll_interval, batch, stop)

    def _listener(self, stop: asyncio.Event | None) -> Callable[[], Any]:
        async def listen() -> AsyncListener:
            await self.open()
            runner = self._runner
            if isinstance(runner, AsyncFeedSource):
                return await runner.alistener()
            return AsyncPollListener(stop)

        return listen

    async def get_cursor(self, name: str) -> int | None:
        """See `Store.get_cursor`."""
        return await self._run(self._plans.get_cursor(name))

    async def set_cursor(self, name: str, seq: int) -> None:
        """See `Store.set_cursor`."""
        await self._run(self._plans.set_cursor(name, seq))

    async def cursors(self) -> Cursors:
        """See `Store.cursors`."""
        return await self._run(self._plans.cursors())

    async def delete_cursor(self, name: str) -> bool:
        """See `Store.delete_cursor`."""
        return await self._run(self._plans.delete_cursor(name))

    async def prune_consumed(self, consumers: tuple[str, ...] | None = None) -> int:
        """See `Store.prune_consumed`."""
        names = None if consumers is None else tuple(consumers)
        return await self._run(self._plans.prune_consumed(names))

    async def close(self) -> None:
        """Wait for in-flight transactions, then release the connections."""
        if not self._closed:
            self._closed = True
            await self._runner.aclose()

    async def __aenter__(self) -> AsyncStore:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
