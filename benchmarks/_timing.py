"""Shared pieces of the benchmark suite: the row type, the timer, the run settings."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Settings:
    """How big and how often: ``quick`` is the CI smoke run, a few seconds in all."""

    quick: bool
    repeats: int

    def size(self, full: int, quick: int) -> int:
        return quick if self.quick else full

    @property
    def short_repeats(self) -> int:
        """Runs for groups whose runs take milliseconds: many short turns, so that a
        burst of load on a shared machine is one sample of many, for every row alike."""
        return self.repeats if self.quick else self.repeats * 3


@dataclass
class Row:
    """One line of the table: a median figure, and its ratio to its group's reference."""

    group: str
    name: str
    value: float
    unit: str
    reference: bool = False
    ratio: float | None = None
    target: str = ""
    met: bool | None = None
    note: str = ""
    extra: dict[str, float] = field(default_factory=dict)


Prepare = Callable[[], Callable[[], int]]


def _once(prepare: Prepare, scale: float) -> float:
    run = prepare()
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        ops = run()
        elapsed = time.perf_counter() - start
    finally:
        gc.enable()
    return elapsed / ops * scale


def medians_per_op(prepares: Sequence[Prepare], repeats: int, scale: float = 1e6) -> list[float]:
    """Median over *repeats* runs of (seconds per op) * *scale* (microseconds by default),
    for each of *prepares*.

    Each prepare builds one run untimed and returns it; the run returns how many ops it
    did. The rows take turns, run by run, so a burst of load on a shared machine lands on
    all of them alike and their ratios hold. The collector is off while a run is timed.
    """
    samples: list[list[float]] = [[] for _ in prepares]
    for _ in range(repeats):
        for runs, prepare in zip(samples, prepares, strict=True):
            runs.append(_once(prepare, scale))
    return [statistics.median(runs) for runs in samples]


def set_ratios(rows: list[Row]) -> None:
    """Fill each row's ratio to the reference row of its group (value / reference)."""
    refs = {row.group: row.value for row in rows if row.reference}
    for row in rows:
        ref = refs.get(row.group)
        if ref and row.value == row.value:  # NaN marks a skipped row
            row.ratio = row.value / ref
