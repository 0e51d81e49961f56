"""`Dispatcher` and `AsyncDispatcher`: event names, at-least-once delivery with the cursor
committed after each callback, retries with the policy's delays (a fake sleep), and a
cursor that never moves past a failed change."""

from __future__ import annotations

import pytest

from taskfsm import (
    TASK_COMPLETED,
    TASK_FAILED,
    TASK_UPDATED,
    AsyncDispatcher,
    Dispatcher,
    DispatchFailed,
    InvalidArgument,
    Notification,
    RetryPolicy,
    TaskMachine,
)
from taskfsm.stores import Store, open_async_store, open_store

POLICY = RetryPolicy(max_retries=3, initial_delay=2.0, multiplier=3.0, max_delay=10.0)


def _lifecycles(store: Store) -> None:
    """Task a completes; b fails for good; c fails and is retried (waiting)."""
    for task_id in "abc":
        store.create(task_id)
        store.apply(task_id, "schedule")
        store.apply(task_id, "start")
    store.apply("a", "complete")
    store.apply("b", "fail", error="disk full", retryable=False)
    store.apply("c", "fail", error="flaky", retryable=True)


def test_notifications_name_every_change_and_the_phase_entered(store_url: str) -> None:
    with open_store(store_url, machine=TaskMachine(policy=POLICY)) as store:
        _lifecycles(store)
        got: list[Notification] = []
        done = Dispatcher(store, "hooks", got.append).run(max_changes=12)
        assert done == 12
        assert [n.seq for n in got] == [r.seq for r in store.changes()]
        by_change = {(n.task_id, n.record.event): n for n in got}
        assert by_change[("a", "complete")].events == (TASK_UPDATED, TASK_COMPLETED)
        assert by_change[("b", "fail")].events == (TASK_UPDATED, TASK_FAILED)
        assert by_change[("c", "fail")].events == (TASK_UPDATED,)  # retried: waiting
        assert by_change[("a", "start")].events == (TASK_UPDATED,)
        failed = by_change[("b", "fail")]
        assert failed.status == store.get("b").to_dict()
        assert failed.status["phase"] == "failed"
        assert failed.status["errorMessage"] == "disk full"
        assert failed.to_dict() == {
            "events": ["task.updated", "task.failed"],
            "taskId": "b",
            "seq": failed.seq,
            "status": failed.status,
        }


def test_cursor_is_committed_after_each_callback_and_resumes(store_url: str) -> None:
    with open_store(store_url) as store:
        for i in range(5):
            store.create(f"t{i}")
        seen: list[int] = []

        def callback(note: Notification) -> None:
            # Committed up to the previous change, not this one, while it runs.
            assert store.get_cursor("hooks") == (seen[-1] if seen else None)
            seen.append(note.seq)

        assert Dispatcher(store, "hooks", callback).run(max_changes=3) == 3
        assert store.get_cursor("hooks") == 3
        assert Dispatcher(store, "hooks", callback).run(max_changes=2) == 2
        assert seen == [1, 2, 3, 4, 5]
        assert store.get_cursor("hooks") == 5
        # Another consumer has its own cursor; start_after applies to a new one only.
        other: list[int] = []
        Dispatcher(store, "audit", lambda n: other.append(n.seq), start_after=3).run(max_changes=2)
        assert other == [4, 5]


def test_failing_callback_is_retried_with_policy_delays(store_url: str) -> None:
    with open_store(store_url) as store:
        store.create("a")
        store.create("b")
        calls: list[int] = []
        slept: list[float] = []

        def flaky(note: Notification) -> None:
            calls.append(note.seq)
            if note.seq == 2 and calls.count(2) <= 3:
                raise ConnectionError("endpoint down")

        def fake_sleep(seconds: float) -> None:
            slept.append(seconds)
            assert store.get_cursor("hooks") == 1  # never past the failing change

        dispatcher = Dispatcher(store, "hooks", flaky, policy=POLICY, sleep=fake_sleep)
        assert dispatcher.run(max_changes=2) == 2
        assert calls == [1, 2, 2, 2, 2]
        assert slept == [POLICY.delay(1), POLICY.delay(2), POLICY.delay(3)] == [2.0, 6.0, 10.0]
        assert store.get_cursor("hooks") == 2


def test_gives_up_after_the_policy_and_keeps_the_cursor(store_url: str) -> None:
    with open_store(store_url) as store:
        store.create("a")
        store.create("b")
        slept: list[float] = []

        def broken(note: Notification) -> None:
            if note.seq == 2:
                raise ConnectionError("endpoint down")

        dispatcher = Dispatcher(store, "hooks", broken, policy=POLICY, sleep=slept.append)
        with pytest.raises(DispatchFailed) as info:
            dispatcher.run()
        err = info.value
        assert (err.consumer, err.seq, err.task_id, err.attempts) == ("hooks", 2, "b", 4)
        assert isinstance(err.__cause__, ConnectionError)
        assert "'hooks'" in str(err)
        assert "change 2" in str(err)
        assert slept == [2.0, 6.0, 10.0]
        assert store.get_cursor("hooks") == 1
        # Once the endpoint is back, a new run delivers the failed change first.
        again: list[int] = []
        Dispatcher(store, "hooks", lambda n: again.append(n.seq)).run(max_changes=1)
        assert again == [2]


def test_non_retryable_error_fails_at_once(store_url: str) -> None:
    with open_store(store_url) as store:
        store.create("a")
        policy = RetryPolicy(max_retries=None, initial_delay=1.0, non_retryable=(ValueError,))
        slept: list[float] = []

        def reject(note: Notification) -> None:
            raise ValueError("bad payload")

        with pytest.raises(DispatchFailed) as info:
            Dispatcher(store, "hooks", reject, policy=policy, sleep=slept.append).run()
        assert info.value.attempts == 1
        assert slept == []
        assert store.get_cursor("hooks") is None


def test_stop_ends_run_between_changes_and_during_a_retry_wait(store_url: str) -> None:
    with open_store(store_url) as store:
        for i in range(4):
            store.create(f"t{i}")
        seen: list[int] = []
        dispatcher: Dispatcher

        def callback(note: Notification) -> None:
            seen.append(note.seq)
            if note.seq == 2:
                dispatcher.stop()

        dispatcher = Dispatcher(store, "hooks", callback, poll_interval=0.01)
        assert dispatcher.run() == 2
        assert seen == [1, 2]
        assert dispatcher.run() == 0  # stopping is final

        def failing(note: Notification) -> None:
            raise ConnectionError("down")

        waiter = Dispatcher(store, "hooks", failing, sleep=lambda s: waiter.stop())
        assert waiter.run() == 0
        assert store.get_cursor("hooks") == 2
        assert Dispatcher(store, "hooks", callback).run(max_changes=0) == 0


def test_custom_cursor_store(store_url: str) -> None:
    class DictCursors:
        def __init__(self) -> None:
            self.saved: dict[str, int] = {"hooks": 1}

        def get_cursor(self, name: str) -> int | None:
            return self.saved.get(name)

        def set_cursor(self, name: str, seq: int) -> None:
            self.saved[name] = seq

    with open_store(store_url) as store:
        store.create("a")
        store.apply("a", "schedule")
        cursors = DictCursors()
        seen: list[int] = []
        Dispatcher(store, "hooks", lambda n: seen.append(n.seq), cursors=cursors).run(max_changes=1)
        assert seen == [2]
        assert cursors.saved == {"hooks": 2}
        assert store.get_cursor("hooks") is None


def test_bad_arguments(store_url: str) -> None:
    with open_store(store_url) as store:
        with pytest.raises(InvalidArgument, match="consumer name"):
            Dispatcher(store, "", print)
        with pytest.raises(InvalidArgument, match="start_after"):
            Dispatcher(store, "x", print, start_after=-1)
        with pytest.raises(InvalidArgument, match="max_changes"):
            Dispatcher(store, "x", print).run(max_changes=-1)


async def test_async_dispatcher_retries_and_commits(store_url: str) -> None:
    async with open_async_store(store_url, machine=TaskMachine(policy=POLICY)) as store:
        await store.create("a")
        await store.apply("a", "schedule")
        await store.apply("a", "start")
        await store.apply("a", "complete")
        calls: list[int] = []
        slept: list[float] = []

        async def flaky(note: Notification) -> None:
            calls.append(note.seq)
            if note.seq == 4 and calls.count(4) == 1:
                raise ConnectionError("down")
            assert await store.get_cursor("hooks") == (None if note.seq == 1 else note.seq - 1)

        async def fake_sleep(seconds: float) -> None:
            slept.append(seconds)

        dispatcher = AsyncDispatcher(store, "hooks", flaky, policy=POLICY, sleep=fake_sleep)
        assert await dispatcher.run(max_changes=4) == 4
        assert calls == [1, 2, 3, 4, 4]
        assert slept == [2.0]
        assert await store.get_cursor("hooks") == 4

        async def broken(note: Notification) -> None:
            raise ConnectionError("down")

        await store.create("b")
        with pytest.raises(DispatchFailed):
            await AsyncDispatcher(store, "hooks", broken, policy=POLICY, sleep=fake_sleep).run()
        assert await store.get_cursor("hooks") == 4


async def test_async_dispatcher_stop(store_url: str) -> None:
    async with open_async_store(store_url) as store:
        for i in range(3):
            await store.create(f"t{i}")
        seen: list[int] = []
        dispatcher: AsyncDispatcher

        async def callback(note: Notification) -> None:
            seen.append(note.seq)
            if note.seq == 2:
                dispatcher.stop()

        dispatcher = AsyncDispatcher(store, "hooks", callback, poll_interval=0.01)
        assert await dispatcher.run() == 2
        assert seen == [1, 2]
        assert await store.get_cursor("hooks") == 2
