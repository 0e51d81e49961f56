"""The thin sync and async drivers: run a plan inside one transaction, retrying on a
lost compare-and-set. Backends supply the transaction and the operation executor."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import Any, Generic, Protocol, TypeVar

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


class _Attempt(Generic[T]):
    """One run of a plan's generator: hands its operations out, keeps the history entries it
    appends, and reports them to the plan once the transaction has committed."""

    def __init__(self, plan: Plan[T]) -> None:
        self._plan = plan
        self._steps = plan.start()
        self._appended: list[Entry] = []
        self._value: T

    def send(self, result: Any) -> Op | None:
        """The next operation, given the previous one's result; None once the plan is done."""
        try:
            op = self._steps.send(result)
        except StopIteration as stop:
            self._value = stop.value
            return None
        if type(op) is AppendHistory:
            self._appended.extend(op.entries)
        return op

    def committed(self) -> T:
        """Tell the plan its entries are committed; return its result."""
        if self._appended and self._plan.committed is not None:
            self._plan.committed(self._appended)
        return self._value


def run_sync(backend: SyncBackend, plan: Plan[T], attempts: int = MAX_ATTEMPTS) -> T:
    """Run *plan* in a transaction of *backend*; on `Conflict` roll back and rerun it."""
    for _ in range(attempts):
        attempt = _Attempt(plan)
        try:
            with backend.transaction(plan.write) as execute:
                result: Any = None
                while (op := attempt.send(result)) is not None:
                    result = execute(op)
        except Conflict:
            continue
        return attempt.committed()
    raise _gave_up(plan, attempts)


async def run_async(backend: AsyncBackend, plan: Plan[T], attempts: int = MAX_ATTEMPTS) -> T:
    """`run_sync` for a backend with async I/O."""
    for _ in range(attempts):
        attempt = _Attempt(plan)
        try:
            async with backend.transaction(plan.write) as execute:
                result: Any = None
                while (op := attempt.send(result)) is not None:
                    result = await execute(op)
        except Conflict:
            continue
        return attempt.committed()
    raise _gave_up(plan, attempts)
