"""The thin sync and async drivers: run a plan inside one transaction, retrying on a
lost compare-and-set. Backends supply the transaction and the operation executor."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import Any, Protocol, TypeVar

from ._errors import TooManyConflicts
from ._plans import AppendHistory, Conflict, Entry, Op, Plan

T = TypeVar("T")

#: Attempts per plan before `TooManyConflicts`. Each lost attempt means another writer
#: committed, so the system as a whole made progress.
MAX_ATTEMPTS = 100

Execute = Callable[[Op], Any]
AsyncExecute = Callable[[Op], Awaitable[Any]]


class SyncBackend(Protocol):
    """A backend as the sync driver sees it."""

    def transaction(self, write: bool) -> AbstractContextManager[Execute]:
        """Open a transaction (taking the write lock up front when *write*); yield the
        executor of operations; commit on normal exit, roll back on an exception."""
        ...

    def close(self) -> None:
        """Release connections; later transactions raise `StoreUnavailable`."""
        ...


class AsyncBackend(Protocol):
    """A backend with native async I/O, as the async driver sees it."""

    def transaction(self, write: bool) -> AbstractAsyncContextManager[AsyncExecute]:
        """As `SyncBackend.transaction`, with an async executor."""
        ...


def _gave_up(plan: Plan[Any], attempts: int) -> TooManyConflicts:
    return TooManyConflicts(
        f"gave up on {plan.what} after {attempts} compare-and-set conflicts with "
        "concurrent writers; nothing was written"
    )


def run_sync(backend: SyncBackend, plan: Plan[T], attempts: int = MAX_ATTEMPTS) -> T:
    """Run *plan* in a transaction of *backend*; on `Conflict` roll back and rerun it."""
    for _ in range(attempts):
        appended: list[Entry] = []
        try:
            with backend.transaction(plan.write) as execute:
                steps = plan.start()
                result: Any = None
                try:
                    while True:
                        op = steps.send(result)
                        if type(op) is AppendHistory:
                            appended.extend(op.entries)
                        result = execute(op)
                except StopIteration as done:
                    value: T = done.value
        except Conflict:
            continue
        if appended and plan.committed is not None:
            plan.committed(appended)
        return value
    raise _gave_up(plan, attempts)


async def run_async(backend: AsyncBackend, plan: Plan[T], attempts: int = MAX_ATTEMPTS) -> T:
    """`run_sync` for a backend with async I/O."""
    for _ in range(attempts):
        appended: list[Entry] = []
        try:
            async with backend.transaction(plan.write) as execute:
                steps = plan.start()
                result: Any = None
                try:
                    while True:
                        op = steps.send(result)
                        if type(op) is AppendHistory:
                            appended.extend(op.entries)
                        result = await execute(op)
                except StopIteration as done:
                    value: T = done.value
        except Conflict:
            continue
        if appended and plan.committed is not None:
            plan.committed(appended)
        return value
    raise _gave_up(plan, attempts)
