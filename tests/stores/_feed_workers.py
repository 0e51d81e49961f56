"""Process workers of the change-feed tests (run in "spawn" children, plain-data arguments):
feed consumers that a test kills with SIGKILL, and writers that race on shared tasks."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from taskfsm import Dispatcher, IllegalTransition, Notification, RetryPolicy, TaskMachine
from taskfsm.stores import open_store

NO_RETRY_DELAY = RetryPolicy(max_retries=None, initial_delay=0.0, max_delay=0.0)


def consume(
    url: str,
    name: str,
    log: str,
    final_seq: int,
    ready: Any = None,
    report_after: int | None = None,
    block: bool = False,
) -> None:
    """Dispatch the feed to a callback appending ``seq task_id`` lines to *log*, until
    the consumer's cursor reaches *final_seq*.

    With *report_after* = N: set *ready* once N changes are handled (callback done and
    cursor committed); with *block*, then hang inside the next callback, before it
    writes anything, so a SIGKILL lands at a known point.
    """
    handled = 0
    with open_store(url) as store, open(log, "a", buffering=1) as out:

        def callback(note: Notification) -> None:
            nonlocal handled
            if report_after is not None and handled == report_after:
                ready.set()
                if block:
                    threading.Event().wait()  # until the parent kills this process
            out.write(f"{note.seq} {note.task_id}\n")
            out.flush()
            handled += 1

        start = store.get_cursor(name) or 0
        Dispatcher(store, name, callback, policy=NO_RETRY_DELAY, poll_interval=0.05).run(
            max_changes=final_seq - start
        )


def follow_all(url: str, name: str, total: int, out: str, barrier: Any) -> None:
    """Consume *total* changes with a `Dispatcher` (NOTIFY on PostgreSQL), started
    before the writers; write ``[[seq, task_id, event], ...]`` to *out*."""
    seen: list[list[Any]] = []
    with open_store(url) as store:
        dispatcher = Dispatcher(
            store,
            name,
            lambda n: seen.append([n.seq, n.task_id, n.record.event]),
            policy=NO_RETRY_DELAY,
            poll_interval=5.0,  # the safety net only: NOTIFY wakes it
        )
        barrier.wait()
        dispatcher.run(max_changes=total)
    Path(out).write_text(json.dumps(seen))


def write_tasks(
    url: str, writer: int, tasks: int, shared: list[str], out: str, barrier: Any
) -> None:
    """Run *tasks* own tasks through a whole lifecycle and race for ``start`` on every
    *shared* task; write the accepted ``[task_id, event]`` pairs to *out*."""
    accepted: list[list[str]] = []
    with open_store(url, machine=TaskMachine()) as store:
        barrier.wait()
        for i in range(tasks):
            task_id = f"w{writer}-{i}"
            store.create(task_id)
            accepted.append([task_id, "create"])
            for event, kwargs in (
                ("schedule", {}),
                ("start", {}),
                ("progress", {"value": 0.5}),
                ("complete", {}) if i % 2 else ("fail", {"error": "x", "retryable": False}),
            ):
                store.apply(task_id, event, **kwargs)
                accepted.append([task_id, event])
            if i < len(shared):
                try:
                    store.apply(shared[i], "start")
                    accepted.append([shared[i], "start"])
                except IllegalTransition:
                    pass
    Path(out).write_text(json.dumps(accepted))
