"""Webhook-style dispatch of the change feed: one callback call per change, at least once.

    def post(note: Notification) -> None:
        for name in note.events:                 # "task.updated", maybe "task.completed"
            requests.post(url, json={"event": name, "taskId": note.task_id,
                                     "status": note.status})

    Dispatcher(store, "webhooks", post).run()

The cursor of each named consumer is committed (durably, in the store's own database by
default) only after its callback returned, so a consumer killed at any point resumes
from the last change it finished: a change is never lost, and at most the one change in
flight at the kill is delivered again. A failing callback is retried with the
`RetryPolicy` delays; the cursor never moves past a change whose callback failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import attrs

from ._errors import InvalidArgument, TaskFSMError
from ._phase import TaskPhase
from ._policy import RetryPolicy
from .stores import AsyncStore, Store, TransitionRecord

TASK_UPDATED = "task.updated"
TASK_COMPLETED = "task.completed"
TASK_FAILED = "task.failed"

#: Events named on entering a phase, besides `TASK_UPDATED` (every change).
_ENTERED = {TaskPhase.COMPLETED: TASK_COMPLETED, TaskPhase.FAILED: TASK_FAILED}


def default_policy() -> RetryPolicy:
    """The dispatchers' default: retry forever, 1 s doubling up to 60 s (an endpoint
    that is down must not make a consumer skip changes)."""
    return RetryPolicy(max_retries=None, initial_delay=1.0, multiplier=2.0, max_delay=60.0)


@attrs.frozen
class Notification:
    """What a dispatcher hands its callback: one accepted change of one task.

    One callback call per change, with every event name that change raises in *events*:
    always ``"task.updated"``, then ``"task.completed"`` or ``"task.failed"`` when the
    change entered that phase.

    Args:
        events: The event names, ``"task.updated"`` first.
        task_id: The task.
        seq: The change's position in the feed.
        status: The status after the change, as wire JSON (``TaskStatus.to_dict()``).
        record: The full transition record (event, phases, arguments).
    """

    events: tuple[str, ...]
    task_id: str
    seq: int
    status: dict[str, Any] = attrs.field(hash=False)
    record: TransitionRecord

    @classmethod
    def from_record(cls, record: TransitionRecord) -> Notification:
        """The notification of *record*."""
        events = [TASK_UPDATED]
        entered = _ENTERED.get(record.to_phase)
        if entered is not None and record.from_phase is not record.to_phase:
            events.append(entered)
        return cls(tuple(events), record.task_id, record.seq, record.status.to_dict(), record)

    def to_dict(self) -> dict[str, Any]:
        """The notification as a JSON object: ``events``, ``taskId``, ``seq``, ``status``."""
        return {
            "events": list(self.events),
            "taskId": self.task_id,
            "seq": self.seq,
            "status": dict(self.status),
        }


class DispatchFailed(TaskFSMError):
    """A callback kept failing (a non-retryable error, or the policy's retries ran out);
    the consumer's cursor stays before the change. The callback's last error is the
    ``__cause__``.

    Attributes:
        consumer: The consumer's name.
        seq: The change that could not be delivered.
        task_id: Its task.
        attempts: How many times the callback was called for it.
    """

    def __init__(self, consumer: str, seq: int, task_id: str, attempts: int) -> None:
        self.consumer = consumer
        self.seq = seq
        self.task_id = task_id
        self.attempts = attempts
        super().__init__(consumer, seq, task_id, attempts)

    def __str__(self) -> str:
        return (
            f"consumer {self.consumer!r} gave up on change {self.seq} of task "
            f"{self.task_id!r} after {self.attempts} failed callback attempt(s); "
            f"its cursor stays at {self.seq - 1} or before"
        )


class CursorStore(Protocol):
    """Where a consumer's cursor lives; `Store` is one (table ``taskfsm_feed_cursors``)."""

    def get_cursor(self, name: str) -> int | None:
        """The committed cursor of consumer *name*, or None for a new consumer."""
        ...

    def set_cursor(self, name: str, seq: int) -> None:
        """Durably commit *seq* as consumer *name*'s cursor."""
        ...


class AsyncCursorStore(Protocol):
    """`CursorStore` for coroutines; `AsyncStore` is one."""

    async def get_cursor(self, name: str) -> int | None:
        """See `CursorStore.get_cursor`."""
        ...

    async def set_cursor(self, name: str, seq: int) -> None:
        """See `CursorStore.set_cursor`."""
        ...


def _check(name: object, start_after: object, max_changes: object = None) -> None:
    if not isinstance(name, str) or not name:
        raise InvalidArgument(f"consumer name must be a non-empty string, got {name!r}")
    if type(start_after) is not int or start_after < 0:
        raise InvalidArgument(f"start_after must be a non-negative int, got {start_after!r}")
    if max_changes is not None and (type(max_changes) is not int or max_changes < 0):
        raise InvalidArgument(
            f"max_changes must be None or a non-negative int, got {max_changes!r}"
        )


def _retry_delay(
    policy: RetryPolicy, consumer: str, note: Notification, failures: int, exc: Exception
) -> float:
    """Seconds before calling again after the *failures*-th failure, or raise."""
    if not policy.is_retryable(exc) or not policy.allows(failures - 1):
        raise DispatchFailed(consumer, note.seq, note.task_id, failures) from exc
    return policy.delay(failures)


class Dispatcher:
    """Reads the change feed of a `Store` and calls *callback* once per change, in seq
    order, committing the consumer's cursor after each successful call.

    Args:
        store: The store whose feed to follow.
        name: The consumer's name: its cursor's key (one cursor per name).
        callback: Called with each `Notification`; an exception means "not delivered".
        policy: Delays between attempts and when to give up (`default_policy`: never).
            Errors of its ``non_retryable`` types are not retried.
        cursors: Where the cursor lives; the store itself (durable) when None.
        start_after: Where a consumer without a cursor starts (0: the whole feed).
        poll_interval: See `Store.follow`.
        batch: See `Store.follow`.
        sleep: Waits between attempts, ``(seconds) -> None``; injectable for tests.
            The default wait ends early on `stop`.

    Raises:
        InvalidArgument: A bad name or *start_after*.
    """

    def __init__(
        self,
        store: Store,
        name: str,
        callback: Callable[[Notification], object],
        *,
        policy: RetryPolicy | None = None,
        cursors: CursorStore | None = None,
        start_after: int = 0,
        poll_interval: float = 1.0,
        batch: int = 100,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        _check(name, start_after)
        self.store = store
        self.name = name
        self.callback = callback
        self.policy = policy if policy is not None else default_policy()
        self.cursors: CursorStore = cursors if cursors is not None else store
        self.start_after = start_after
        self.poll_interval = poll_interval
        self.batch = batch
        self._stop = threading.Event()
        self._sleep = sleep if sleep is not None else self._stop.wait

    def stop(self) -> None:
        """Ask `run` to return: after the current callback, or within about
        *poll_interval* while waiting for changes. Safe from any thread. Final: a
        stopped dispatcher's `run` returns at once (make a new one to resume)."""
        self._stop.set()

    def run(self, *, max_changes: int | None = None) -> int:
        """Dispatch changes until `stop` (or after *max_changes* changes).

        Returns:
            How many changes were delivered (and their cursor committed).

        Raises:
            DispatchFailed: A callback failed for good; the cursor is before that change.
            StoreUnavailable: The database cannot be reached.
        """
        _check(self.name, self.start_after, max_changes)
        if max_changes == 0:
            return 0
        stored = self.cursors.get_cursor(self.name)
        after = self.start_after if stored is None else stored
        done = 0
        feed = self.store.follow(
            after, poll_interval=self.poll_interval, batch=self.batch, stop=self._stop
        )
        with contextlib.closing(feed):
            for record in feed:
                if self._stop.is_set() or not self._deliver(Notification.from_record(record)):
                    break
                self.cursors.set_cursor(self.name, record.seq)
                done += 1
                if done == max_changes:
                    break
        return done

    def _deliver(self, note: Notification) -> bool:
        """Call back until it succeeds (True) or `stop` interrupts a retry wait (False)."""
        failures = 0
        while True:
            try:
                self.callback(note)
            except Exception as exc:
                failures += 1
                self._sleep(_retry_delay(self.policy, self.name, note, failures, exc))
                if self._stop.is_set():
                    return False
            else:
                return True


class AsyncDispatcher:
    """`Dispatcher` for an `AsyncStore` and a coroutine *callback*; never blocks the
    loop. Cancelling the task running `run` stops it too (the cursor stays at the last
    delivered change).

    Args:
        store: The async store whose feed to follow.
        name: The consumer's name.
        callback: ``async (Notification) -> object``.
        policy: See `Dispatcher`.
        cursors: An `AsyncCursorStore`; the store itself when None.
        start_after: See `Dispatcher`.
        poll_interval: See `Store.follow`.
        batch: See `Store.follow`.
        sleep: ``async (seconds) -> None`` between attempts; the default ends early on
            `stop`.

    Raises:
        InvalidArgument: A bad name or *start_after*.
    """

    def __init__(
        self,
        store: AsyncStore,
        name: str,
        callback: Callable[[Notification], Awaitable[object]],
        *,
        policy: RetryPolicy | None = None,
        cursors: AsyncCursorStore | None = None,
        start_after: int = 0,
        poll_interval: float = 1.0,
        batch: int = 100,
        sleep: Callable[[float], Awaitable[object]] | None = None,
    ) -> None:
        _check(name, start_after)
        self.store = store
        self.name = name
        self.callback = callback
        self.policy = policy if policy is not None else default_policy()
        self.cursors: AsyncCursorStore = cursors if cursors is not None else store
        self.start_after = start_after
        self.poll_interval = poll_interval
        self.batch = batch
        self._stop: asyncio.Event | None = None
        self._sleep = sleep if sleep is not None else self._wait_stop

    def _stop_event(self) -> asyncio.Event:
        if self._stop is None:
            self._stop = asyncio.Event()
        return self._stop

    async def _wait_stop(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stop_event().wait(), seconds)

    def stop(self) -> None:
        """Ask `run` to return (call it from the loop's thread); final, as
        `Dispatcher.stop`."""
        self._stop_event().set()

    async def run(self, *, max_changes: int | None = None) -> int:
        """See `Dispatcher.run`."""
        _check(self.name, self.start_after, max_changes)
        stop = self._stop_event()
        if max_changes == 0:
            return 0
        stored = await self.cursors.get_cursor(self.name)
        after = self.start_after if stored is None else stored
        done = 0
        feed = self.store.follow(
            after, poll_interval=self.poll_interval, batch=self.batch, stop=stop
        )
        async with contextlib.aclosing(feed):
            async for record in feed:
                if stop.is_set() or not await self._deliver(Notification.from_record(record)):
                    break
                await self.cursors.set_cursor(self.name, record.seq)
                done += 1
                if done == max_changes:
                    break
        return done

    async def _deliver(self, note: Notification) -> bool:
        failures = 0
        stop = self._stop_event()
        while True:
            try:
                await self.callback(note)
            except Exception as exc:
                failures += 1
                await self._sleep(_retry_delay(self.policy, self.name, note, failures, exc))
                if stop.is_set():
                    return False
            else:
                return True
