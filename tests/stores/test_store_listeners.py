"""Engine listeners on a store hear each transition once, after its commit."""

from __future__ import annotations

from typing import Any

import pytest

from taskfsm import IllegalTransition, TaskMachine, TaskPhase, TaskStatus
from taskfsm.stores import open_store

Heard = list[tuple[TaskStatus, TaskStatus, str]]


@pytest.fixture(params=["memory", "sqlite"])
def store_and_heard(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    heard: Heard = []
    machine = TaskMachine(listeners=[lambda *t: heard.append(t)])
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 't.db'}"
    with open_store(url, machine=machine) as store:
        yield store, heard


def test_apply_claim_and_reap_are_heard_once_each(store_and_heard: Any) -> None:
    store, heard = store_and_heard
    store.create("a")
    assert heard == []  # creation is not a transition
    waiting = store.apply("a", "schedule")
    ((old, new, event),) = heard
    assert (old.phase, new, event) == (TaskPhase.PENDING, waiting, "schedule")
    heard.clear()
    ((_, running),) = store.claim(5)
    assert heard == [(waiting, running, "start")]
    heard.clear()
    (reaped,) = store.reap_stale(0, now=running.updated_at + 1)
    assert reaped == "a"
    assert [(o.phase, n.phase, e) for o, n, e in heard] == [
        (TaskPhase.RUNNING, TaskPhase.WAITING, "fail")
    ]


def test_refused_and_redelivered_events_are_not_heard(store_and_heard: Any) -> None:
    store, heard = store_and_heard
    store.create("a")
    with pytest.raises(IllegalTransition):
        store.apply("a", "complete")
    store.apply("a", "schedule", event_id="k")
    store.apply("a", "schedule", event_id="k")  # redelivered: the stored result, no change
    assert [e for _, _, e in heard] == ["schedule"]


def test_a_raising_listener_does_not_undo_the_write(tmp_path: Any) -> None:
    def boom(old: TaskStatus, new: TaskStatus, event: str) -> None:
        raise RuntimeError("listener down")

    with open_store(
        f"sqlite:///{tmp_path / 't.db'}", machine=TaskMachine(listeners=[boom])
    ) as store:
        store.create("a")
        st = store.apply("a", "schedule")
        assert store.get("a") == st
        assert [r.event for r in store.history("a")] == ["create", "schedule"]
