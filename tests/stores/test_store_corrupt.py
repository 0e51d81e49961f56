"""A corrupt status row never starves claim or reap_stale: it is skipped, logged, untouched."""

from __future__ import annotations

import logging

import pytest
from test_store_ops import corrupt_status_row

from conftest import DURABLE, FakeClock
from taskfsm import TaskMachine, TaskPhase
from taskfsm.stores import open_store

BAD = '{"phase": "exploded", "updatedAt": 1}'


@pytest.mark.parametrize("backend", DURABLE)
@pytest.mark.parametrize("limit", [1, 3])
def test_claim_skips_a_corrupt_due_task_and_hands_out_the_rest(
    store_url: str, clock: FakeClock, limit: int, caplog: pytest.LogCaptureFixture
) -> None:
    fsm = TaskMachine(clock=clock)
    with open_store(store_url, machine=fsm) as store:
        for task_id in ("a-broken", "b", "c"):  # "a-broken" is due first
            store.create(task_id)
            waiting = store.apply(task_id, "schedule")
            clock.advance(10)
            if task_id == "a-broken":
                broken = waiting
    corrupt_status_row(store_url, "a-broken", broken, BAD)
    with open_store(store_url, machine=fsm) as store, caplog.at_level(logging.ERROR):
        first = store.claim(limit)
        assert [t for t, _ in first] == ["b", "c"][:limit]
        rest = store.claim(10)
        assert [t for t, _ in first + rest] == ["b", "c"]
        assert all(st.phase is TaskPhase.RUNNING for _, st in first + rest)
        assert "claim skipped task 'a-broken'" in caplog.text
        assert [r.event for r in store.history("a-broken")] == ["create", "schedule"]


@pytest.mark.parametrize("backend", DURABLE)
def test_reap_skips_a_corrupt_running_task(store_url: str, clock: FakeClock) -> None:
    fsm = TaskMachine(clock=clock)
    with open_store(store_url, machine=fsm) as store:
        running = {}
        for task_id in ("a-broken", "b"):
            store.create(task_id)
            store.apply(task_id, "schedule")
            running[task_id] = store.apply(task_id, "start")
    corrupt_status_row(store_url, "a-broken", running["a-broken"], BAD)
    with open_store(store_url, machine=fsm) as store:
        assert store.reap_stale(1, now=clock.advance(60_000)) == ["b"]
        assert store.get("b").phase is TaskPhase.WAITING
