"""The change feed under concurrent writers: a consumer tailing ``changes(after=cursor)``
while writers commit never misses a record (seqs are handed out in commit order)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from _impl_support import fresh_url

from taskfsm.stores import Store, open_store

WRITERS = 4
EVENTS = 60


def write(store: Store, task_id: str, start: threading.Barrier) -> None:
    store.create(task_id)
    store.apply(task_id, "schedule")
    store.apply(task_id, "start")
    start.wait()
    for i in range(EVENTS):
        store.apply(task_id, "progress", value=i / EVENTS)


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_a_tailing_consumer_sees_every_record_once_in_seq_order(
    backend: str, tmp_path: Path
) -> None:
    with fresh_url(backend, tmp_path) as url, open_store(url) as store:
        start = threading.Barrier(WRITERS + 1)
        writers = [
            threading.Thread(target=write, args=(store, f"w{i}", start)) for i in range(WRITERS)
        ]
        for t in writers:
            t.start()
        start.wait()
        seen: list[int] = []
        cursor = 0
        while any(t.is_alive() for t in writers):
            for record in store.changes(after=cursor, limit=7):
                assert record.seq > cursor
                seen.append(record.seq)
                cursor = record.seq
        for t in writers:
            t.join()
        while batch := store.changes(after=cursor, limit=50):
            seen.extend(r.seq for r in batch)
            cursor = batch[-1].seq
        everything = [r.seq for r in store.changes(after=0, limit=1_000_000)]
        assert len(everything) == WRITERS * (3 + EVENTS)
        assert seen == everything  # none skipped, none twice, in order
        assert everything == sorted(set(everything))
