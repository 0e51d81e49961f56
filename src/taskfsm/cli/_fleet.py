"""The worker processes of ``taskfsm simulate``: each opens the store itself, claims due
tasks, reports progress, completes or fails them. Run in "spawn" children, so everything
passed in is plain data and picklable."""

from __future__ import annotations

import os
import random
import sys
import time
from typing import TYPE_CHECKING, Any

import attrs

from .._engine import TaskMachine
from .._errors import IllegalTransition, InvalidArgument, TaskFSMError
from .._policy import RetryPolicy

if TYPE_CHECKING:
    from ..stores import Store

#: Progress reports per attempt: the Livepeer worker's buckets 0.25, 0.5, 0.75.
PROGRESS_STEPS = 3
#: Simulated seconds of work before each report, drawn uniformly from this range.
WORK_SECONDS = (1.0, 10.0)
#: Simulated seconds an idle worker waits before it asks for due tasks again.
POLL_SECONDS = 10.0
#: Share of failures that are not retryable (e.g. an unsupported codec).
NON_RETRYABLE_SHARE = 0.25

# Slots of each worker's counters in the shared array.
CLAIMED, LOST = 0, 1
COUNTERS = 2


def scaled_policy(time_scale: float) -> RetryPolicy:
    """The default retry policy with its delays multiplied by *time_scale*."""
    base = RetryPolicy()
    return attrs.evolve(
        base,
        initial_delay=base.initial_delay * time_scale,
        max_delay=base.max_delay * time_scale,
    )


@attrs.frozen
class WorkerConfig:
    """What one worker process needs, as plain data."""

    index: int
    url: str
    time_scale: float
    fail_rate: float
    seed: int
    doomed: bool


def work(config: WorkerConfig, ready: Any, go: Any, holding: Any, stop: Any, counters: Any) -> None:
    """A worker's life: claim a due task, work it, repeat until *stop* is set.

    Each worker releases *ready* once its store is open and starts at *go*. A *doomed*
    worker claims one task, sets *holding* and waits to be killed (the parent sends
    SIGKILL), leaving that task running for the reaper. *counters* is a shared int array:
    (claimed, lost) per worker.
    """
    from ..stores import open_store

    rng = random.Random(f"{config.seed}-{config.index}")
    poll = max(0.002, POLL_SECONDS * config.time_scale)
    base = config.index * COUNTERS
    try:
        machine = TaskMachine(policy=scaled_policy(config.time_scale))
        with open_store(config.url, machine=machine) as store:
            ready.release()
            go.wait()
            if config.doomed:
                while not stop.is_set():
                    if store.claim(1):
                        counters[base + CLAIMED] += 1
                        holding.set()
                        _await_kill()
                        return
                    stop.wait(poll)
                return
            while not stop.is_set():
                claimed = store.claim(1)
                if not claimed:
                    stop.wait(poll)
                    continue
                for task_id, _ in claimed:
                    counters[base + CLAIMED] += 1
                    if not _work_one(store, task_id, rng, config):
                        counters[base + LOST] += 1
    except TaskFSMError as exc:
        print(f"Error: worker {config.index}: {exc}", file=sys.stderr, flush=True)
        sys.exit(4)


def _await_kill() -> None:
    # Touch no shared primitive from here on: a process killed inside Event.wait leaves
    # the event's condition expecting it, and the next set() would block forever.
    parent = os.getppid()
    while os.getppid() == parent:  # until the kill, or the parent is gone
        time.sleep(0.05)


def _work_one(store: Store, task_id: str, rng: random.Random, config: WorkerConfig) -> bool:
    """Work one claimed task to its end; False when it was taken away meanwhile (reaped
    as stale and claimed by another worker)."""
    low, high = WORK_SECONDS
    try:
        for step in range(1, PROGRESS_STEPS + 1):
            time.sleep(rng.uniform(low, high) * config.time_scale)  # the simulated work
            store.apply(task_id, "progress", value=step / (PROGRESS_STEPS + 1))
        time.sleep(rng.uniform(low, high) * config.time_scale)
        if rng.random() < config.fail_rate:
            if rng.random() < NON_RETRYABLE_SHARE:
                store.apply(task_id, "fail", error="unsupported codec", retryable=False)
            else:
                store.apply(task_id, "fail", error="upstream timed out")
        else:
            store.apply(task_id, "complete")
    except (IllegalTransition, InvalidArgument):
        return False
    return True
