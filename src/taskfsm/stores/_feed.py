"""Following the change feed: wait for new changes, then read them with ``changes()``.

A follower never trusts a wake-up to carry data: every wake-up (or the poll interval
running out) only makes it read ``changes(after=cursor)``, so a lost or duplicated
signal costs a read, never a change. What wakes it depends on the backend:

- memory: a condition variable notified by every commit that added changes (`Waker`);
- PostgreSQL: ``LISTEN`` on a dedicated connection; each writing transaction issues
  ``pg_notify`` itself, so the signal is delivered on commit and never for a rollback;
- SQLite: nothing (other processes share the file): it polls every *poll_interval*.

The listener is set up before the first read, so a change committed between a read and
the wait that follows still wakes the wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from typing import Protocol, runtime_checkable

from .._errors import InvalidArgument
from ._records import TransitionRecord

Read = Callable[[int, int], list[TransitionRecord]]
AsyncRead = Callable[[int, int], Awaitable[list[TransitionRecord]]]


class Listener(Protocol):
    """What a sync follower waits on between reads."""

    def wait(self, timeout: float) -> None:
        """Return once a change may have been committed since the previous call (or
        since the listener was made), or after *timeout* seconds."""
        ...

    def close(self) -> None:
        """Release what the listener holds (a connection)."""
        ...


class AsyncListener(Protocol):
    """What an async follower awaits between reads."""

    async def wait(self, timeout: float) -> None:
        """As `Listener.wait`."""
        ...

    async def close(self) -> None:
        """As `Listener.close`."""
        ...


@runtime_checkable
class FeedSource(Protocol):
    """A sync backend that can wake followers (memory, PostgreSQL)."""

    def listener(self) -> Listener:
        """Start listening for commits; the caller closes the listener."""
        ...


@runtime_checkable
class AsyncFeedSource(Protocol):
    """An async runner that can wake followers (memory, PostgreSQL)."""

    async def alistener(self) -> AsyncListener:
        """Start listening for commits; the caller closes the listener."""
        ...


class Waker:
    """Counts the commits that added changes, and wakes the threads and coroutines
    waiting for the next one. The memory backend notifies it after each such commit."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._count = 0
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    @property
    def count(self) -> int:
        """How many commits have notified so far."""
        with self._cond:
            return self._count

    def notify(self) -> None:
        """A commit added changes: wake every waiter."""
        with self._cond:
            self._count += 1
            self._cond.notify_all()
            waiters = list(self._waiters)
        for loop, event in waiters:
            # RuntimeError: that loop is closed, and its waiter with it.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)

    def wait(self, seen: int, timeout: float) -> int:
        """Block until the count differs from *seen* or *timeout* passes; the count."""
        with self._cond:
            self._cond.wait_for(lambda: self._count != seen, timeout)
            return self._count

    async def await_change(self, seen: int, timeout: float) -> int:
        """`wait` for coroutines: never blocks the loop."""
        event = asyncio.Event()
        waiter = (asyncio.get_running_loop(), event)
        with self._cond:
            if self._count != seen:
                return self._count
            self._waiters.add(waiter)
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            with self._cond:
                self._waiters.discard(waiter)
        return self.count


class WakerListener:
    """A `Listener` (and `AsyncListener`-like via `AsyncWakerListener`) on a `Waker`."""

    def __init__(self, waker: Waker) -> None:
        self._waker = waker
        self._seen = waker.count

    def wait(self, timeout: float) -> None:
        self._seen = self._waker.wait(self._seen, timeout)

    def close(self) -> None:
        return None


class AsyncWakerListener:
    """An `AsyncListener` on a `Waker`."""

    def __init__(self, waker: Waker) -> None:
        self._waker = waker
        self._seen = waker.count

    async def wait(self, timeout: float) -> None:
        self._seen = await self._waker.await_change(self._seen, timeout)

    async def close(self) -> None:
        return None


class PollListener:
    """No signal at all: each wait lasts the whole timeout (ended early by *stop*)."""

    def __init__(self, stop: threading.Event | None) -> None:
        self._stop = stop

    def wait(self, timeout: float) -> None:
        if self._stop is not None:
            self._stop.wait(timeout)
        else:
            time.sleep(timeout)

    def close(self) -> None:
        return None


class AsyncPollListener:
    """`PollListener` for coroutines."""

    def __init__(self, stop: asyncio.Event | None) -> None:
        self._stop = stop

    async def wait(self, timeout: float) -> None:
        if self._stop is None:
            await asyncio.sleep(timeout)
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout)

    async def close(self) -> None:
        return None


def check_follow(after: object, poll_interval: object, batch: object) -> None:
    """Check `follow`'s arguments; raise `InvalidArgument` naming the bad one."""
    if type(after) is not int or after < 0:
        raise InvalidArgument(f"after must be a non-negative int (a seq), got {after!r}")
    if (
        isinstance(poll_interval, bool)
        or not isinstance(poll_interval, (int, float))
        or not math.isfinite(poll_interval)
        or poll_interval <= 0
    ):
        raise InvalidArgument(
            f"poll_interval must be a finite positive number of seconds, got {poll_interval!r}"
        )
    if type(batch) is not int or batch < 1:
        raise InvalidArgument(f"batch must be a positive int, got {batch!r}")


def follow(
    read: Read,
    listen: Callable[[], Listener],
    after: int,
    poll_interval: float,
    batch: int,
    stop: threading.Event | None,
) -> Generator[TransitionRecord, None, None]:
    """Yield every change with seq > *after*, in seq order, waiting for new ones, until
    *stop* is set (checked between reads; a wait lasts at most *poll_interval*)."""
    listener = listen()
    try:
        cursor = after
        while stop is None or not stop.is_set():
            records = read(cursor, batch)
            for record in records:
                cursor = record.seq
                yield record
            if len(records) < batch and (stop is None or not stop.is_set()):
                listener.wait(poll_interval)
    finally:
        listener.close()


async def afollow(
    read: AsyncRead,
    listen: Callable[[], Awaitable[AsyncListener]],
    after: int,
    poll_interval: float,
    batch: int,
    stop: asyncio.Event | None,
) -> AsyncGenerator[TransitionRecord, None]:
    """`follow` for coroutines."""
    listener = await listen()
    try:
        cursor = after
        while stop is None or not stop.is_set():
            records = await read(cursor, batch)
            for record in records:
                cursor = record.seq
                yield record
            if len(records) < batch and (stop is None or not stop.is_set()):
                await listener.wait(poll_interval)
    finally:
        await listener.close()
