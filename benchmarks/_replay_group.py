"""Group 5: replay of a JSON-lines event log through the engine in memory, against only
parsing the same file.

The replay row runs the CLI's own code path (``taskfsm replay``: `replay_memory` over the
file read in the CLI's batches); the reference reads the same batches and only
``json.loads`` each line. Both read the file from the page cache inside the timing.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator

from _timing import Row, Settings, medians_per_op
from taskfsm import TaskMachine
from taskfsm.cli._replay import _BATCH_BYTES, replay_memory

GROUP = "5. replay: events/s"
PROGRESS = (0.2, 0.4, 0.6, 0.8, 1.0)
LIVE = 1_000  # tasks in flight at once: their events interleave in the log


def write_log(path: str, lines: int) -> None:
    """A log of whole task lifecycles (schedule, start, progress x5, complete), with
    LIVE tasks interleaved, round-robin, as many workers would write it."""
    cycle: list[dict[str, object]] = [
        {"event": "schedule"},
        {"event": "start"},
        *({"event": "progress", "value": v} for v in PROGRESS),
        {"event": "complete"},
    ]
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    with open(path, "w", encoding="utf-8") as out:
        written = 0
        first = 0
        while written < lines:
            for step in cycle:
                for t in range(first, first + LIVE):
                    if written == lines:
                        return
                    out.write(dumps({"task": f"task-{t:07d}", **step}) + "\n")
                    written += 1
            first += LIVE


def _batches(path: str) -> Iterator[list[str]]:
    with open(path, encoding="utf-8") as stream:
        while batch := stream.readlines(_BATCH_BYTES):
            yield batch


def _parse_only(path: str) -> Callable[[], Callable[[], int]]:
    def prepare() -> Callable[[], int]:
        def run() -> int:
            loads = json.loads
            n = 0
            for batch in _batches(path):
                for line in batch:
                    loads(line)
                n += len(batch)
            return n

        return run

    return prepare


def _replay(path: str) -> Callable[[], Callable[[], int]]:
    def prepare() -> Callable[[], int]:
        def run() -> int:
            result = replay_memory(_batches(path), TaskMachine(), _refuse)
            assert result.refused == result.malformed == 0, result.to_dict()
            return result.lines

        return run

    return prepare


def _refuse(lineno: int, message: str) -> bool:
    raise AssertionError(f"line {lineno}: {message}")


def run(settings: Settings) -> list[Row]:
    lines = settings.size(1_000_000, 20_000)
    folder = tempfile.mkdtemp(prefix="taskfsm-bench-")
    path = os.path.join(folder, "events.jsonl")
    try:
        write_log(path, lines)
        note = f"{lines:,}-line log, {os.path.getsize(path) / 1e6:.0f} MB"
        cases = (
            ("parse only: json.loads per line", _parse_only(path), True, ""),
            ("taskfsm replay (cli replay_memory)", _replay(path), False, ">= 0.5x"),
        )
        per_event = medians_per_op(
            [prepare for _, prepare, _, _ in cases], min(settings.repeats, 5), scale=1.0
        )
        return [
            Row(
                GROUP,
                name,
                1.0 / seconds,
                "events/s",
                reference=reference,
                target=target,
                note=note,
            )
            for (name, _, reference, target), seconds in zip(cases, per_event, strict=True)
        ]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
