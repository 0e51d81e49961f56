"""Async stores: cancellation mid-apply never leaves half a write; PostgreSQL coroutines
share a small connection pool; a closed store refuses work."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from _impl_support import fresh_url, postgres_schema

from taskfsm import IllegalTransition, TaskPhase
from taskfsm.stores import StoreUnavailable, open_async_store, open_store

PG = pytest.param("postgresql", marks=pytest.mark.postgres, id="postgresql")
TASKS = 24


@pytest.mark.parametrize("backend", ["memory", "sqlite", PG])
async def test_cancelling_applies_at_every_point_leaves_status_and_history_agreeing(
    backend: str, tmp_path: Path
) -> None:
    with fresh_url(backend, tmp_path) as url:
        store = open_async_store(url)
        async with store:
            for i in range(TASKS):
                await store.create(f"t{i}")
                await store.apply(f"t{i}", "schedule")
                await store.apply(f"t{i}", "start")
            applies = [
                asyncio.ensure_future(store.apply(f"t{i}", "progress", value=0.5))
                for i in range(TASKS)
            ]
            # Cancel task i after i turns of the loop: before, during and after its write.
            for turn in range(TASKS):
                applies[turn].cancel()
                await asyncio.sleep(0)
            outcomes = await asyncio.gather(*applies, return_exceptions=True)
            for i in range(TASKS):
                status = await store.get(f"t{i}")
                history = await store.history(f"t{i}")
                assert status == history[-1].status
                events = [r.event for r in history]
                assert events in (
                    ["create", "schedule", "start"],
                    ["create", "schedule", "start", "progress"],
                )
                if not isinstance(outcomes[i], BaseException):
                    assert events[-1] == "progress"
            seqs = [r.seq for r in await store.changes(limit=10_000)]
            assert seqs == sorted(set(seqs))
        if backend != "memory":  # what was committed is what a new process sees
            with open_store(url) as again:
                for i in range(TASKS):
                    assert again.get(f"t{i}") == again.history(f"t{i}")[-1].status


@pytest.mark.parametrize("backend", ["memory", "sqlite", PG])
async def test_racing_coroutines_start_a_task_exactly_once(backend: str, tmp_path: Path) -> None:
    with fresh_url(backend, tmp_path) as url:
        async with open_async_store(url) as store:
            await store.create("a")
            await store.apply("a", "schedule")
            results = await asyncio.gather(
                *(store.apply("a", "start") for _ in range(10)), return_exceptions=True
            )
            wins = [r for r in results if not isinstance(r, BaseException)]
            assert len(wins) == 1
            assert all(isinstance(r, IllegalTransition) for r in results if r not in wins)
            claims = await asyncio.gather(*(store.claim(5) for _ in range(5)))
            assert claims == [[]] * 5


@pytest.mark.postgres
async def test_postgres_coroutines_share_a_small_pool() -> None:
    with postgres_schema() as url:
        async with open_async_store(url) as store:
            await asyncio.gather(*(store.create(f"t{i}") for i in range(50)))
            await asyncio.gather(*(store.apply(f"t{i}", "schedule") for i in range(50)))
            claimed = await asyncio.gather(*(store.claim(3) for _ in range(25)))
            ids = [task_id for batch in claimed for task_id, _ in batch]
            assert sorted(ids) == sorted(f"t{i}" for i in range(50))  # each exactly once
            stats = store._runner._pool.get_stats()  # type: ignore[attr-defined]
            assert stats["pool_size"] <= 10
            listing = await store.list(phase=TaskPhase.RUNNING, limit=100)
            assert len(listing) == 50


@pytest.mark.parametrize("backend", ["memory", "sqlite", PG])
async def test_a_closed_async_store_is_unavailable(backend: str, tmp_path: Path) -> None:
    with fresh_url(backend, tmp_path) as url:
        store = open_async_store(url)
        await store.create("a")  # opens on first use
        await store.close()
        with pytest.raises(StoreUnavailable, match="closed"):
            await store.get("a")
