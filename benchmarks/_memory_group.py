"""Group 2: memory per live task, measured with tracemalloc.

Each row holds N running statuses in a dict keyed by task id (distinct ``updated_at`` and
``progress`` values, as live tasks have). The figure is the traced growth while the dict
is filled, per task: the snapshot, its own int/float values and its dict slot. The ids are
made before measuring (the caller's, the same for every row) and are not counted.
"""

from __future__ import annotations

import gc
import statistics
import tracemalloc
from collections.abc import Callable
from typing import Any

from _engine_group import FloorStatus, _Model, _transitions_machine
from _timing import Row, Settings
from taskfsm import TaskPhase, TaskStatus

GROUP = "2. memory: bytes per live task"
BASE_MS = 1_764_000_000_000


def _traced_bytes_per_task(n: int, make: Callable[[int], Any]) -> float:
    ids = [f"task-{i:07d}" for i in range(n)]
    gc.collect()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        tasks = {task_id: make(i) for i, task_id in enumerate(ids)}
        used = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    assert len(tasks) == n
    del tasks
    gc.collect()
    return used / n


def _floor(i: int) -> FloorStatus:
    return FloorStatus(TaskPhase.RUNNING, BASE_MS + i, (i % 1000) / 1000)


def _status(i: int) -> TaskStatus:
    return TaskStatus(TaskPhase.RUNNING, BASE_MS + i, (i % 1000) / 1000)


def _transitions_row(n: int) -> Callable[[int], Any]:
    machine = _transitions_machine(None)

    def make(i: int) -> Any:
        model = _Model()
        model.updated_at, model.progress_value = BASE_MS + i, (i % 1000) / 1000
        machine.add_model(model, initial="running")
        return model

    return make


def run(settings: Settings) -> list[Row]:
    n = settings.size(1_000_000, 20_000)
    n_models = settings.size(10_000, 1_000)
    # tracemalloc counts are nearly deterministic: a few runs say as much as many.
    repeats = 1 if settings.quick else min(settings.repeats, 3)
    rows: list[Row] = []
    cases: list[tuple[str, int, Callable[[], Callable[[int], Any]], bool, str]] = [
        ("floor: frozen slotted attrs snapshot", n, lambda: _floor, True, ""),
        ("TaskStatus", n, lambda: _status, False, ""),
        (
            "transitions: a model per task (add_model)",
            n_models,
            lambda: _transitions_row(n_models),
            False,
            f"measured on {n_models:,} models, scaled per task",
        ),
    ]
    for name, count, factory, reference, note in cases:
        per_task = statistics.median(
            _traced_bytes_per_task(count, factory()) for _ in range(repeats)
        )
        extra = {"MB_per_million": per_task * 1_000_000 / 1e6}
        rows.append(
            Row(
                GROUP,
                name,
                per_task,
                "B",
                reference=reference,
                note=note or f"{count:,} live; {per_task * 1_000_000 / 1e6:.0f} MB per million",
                extra=extra,
            )
        )
    return rows
