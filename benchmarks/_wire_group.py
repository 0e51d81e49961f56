"""Group 3: the wire format, per status, against a hand-written minimal conversion.

The hand-written pair does the same checks as `TaskStatus.from_dict` (an object; phase one
of the values; updatedAt and retries whole non-negative numbers, integral floats allowed;
progress a number in [0, 1] or null; errorMessage a string or null; unknown keys ignored)
and writes the same dict as `TaskStatus.to_dict`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from _timing import Row, Settings, medians_per_op
from taskfsm import InvalidStatus, TaskPhase, TaskStatus
from taskfsm._status import trusted_status

GROUP_OUT = "3a. wire: us per to_dict"
GROUP_IN = "3b. wire: us per from_dict"
_PHASES = {p.value: p for p in TaskPhase}


def hand_to_dict(st: TaskStatus) -> dict[str, Any]:
    out: dict[str, Any] = {"phase": st.phase.value, "updatedAt": st.updated_at}
    if st.progress is not None:
        out["progress"] = st.progress
    if st.error_message is not None:
        out["errorMessage"] = st.error_message
    out["retries"] = st.retries
    return out


def _whole(value: Any, key: str) -> int:
    if type(value) is int and value >= 0:
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidStatus(f"{key} must be a non-negative integer, got {value!r}")
    if (isinstance(value, float) and not value.is_integer()) or value < 0:
        raise InvalidStatus(f"{key} must be a non-negative integer, got {value!r}")
    return int(value)


def hand_from_dict(data: Any) -> TaskStatus:
    if not isinstance(data, dict):
        raise InvalidStatus(f"a status must be a JSON object, got {type(data).__name__}")
    phase = _PHASES.get(data.get("phase"))  # type: ignore[arg-type]
    if phase is None:
        raise InvalidStatus(f"phase must be one of {', '.join(_PHASES)}, got {data.get('phase')!r}")
    if "updatedAt" not in data:
        raise InvalidStatus("updatedAt is required")
    updated_at = _whole(data["updatedAt"], "updatedAt")
    progress = data.get("progress")
    if progress is not None:
        if (
            isinstance(progress, bool)
            or not isinstance(progress, (int, float))
            or math.isnan(progress)
            or not 0.0 <= progress <= 1.0
        ):
            raise InvalidStatus(f"progress must be a number within [0, 1], got {progress!r}")
        progress = float(progress)
    error = data.get("errorMessage")
    if error is not None and not isinstance(error, str):
        raise InvalidStatus(f"errorMessage must be a string, got {error!r}")
    retries = data.get("retries")
    retries = 0 if retries is None else _whole(retries, "retries")
    return trusted_status(phase, updated_at, progress, error, retries)


def sample(n: int) -> list[TaskStatus]:
    """A mix of live and finished statuses, as a list endpoint returns them."""
    kinds = [
        lambda i: TaskStatus("pending", 1_764_000_000_000 + i),
        lambda i: TaskStatus("running", 1_764_000_000_000 + i, progress=(i % 100) / 100),
        lambda i: TaskStatus("waiting", 1_764_000_000_000 + i, error_message="timeout", retries=1),
        lambda i: TaskStatus("completed", 1_764_000_000_000 + i, progress=1.0),
    ]
    return [kinds[i % len(kinds)](i) for i in range(n)]


def _each(fn: Callable[[Any], Any], items: list[Any]) -> Callable[[], Callable[[], int]]:
    def prepare() -> Callable[[], int]:
        def run() -> int:
            for item in items:
                fn(item)
            return len(items)

        return run

    return prepare


def run(settings: Settings) -> list[Row]:
    statuses = sample(settings.size(5_000, 1_000))
    dicts = [st.to_dict() for st in statuses]
    # The hand-written pair must agree with ours, or the comparison means nothing.
    assert [hand_to_dict(st) for st in statuses] == dicts
    assert [hand_from_dict(d) for d in dicts] == [TaskStatus.from_dict(d) for d in dicts]
    note = f"{len(statuses):,} mixed statuses/run"
    cases: list[tuple[str, str, Callable[[Any], Any], list[Any], bool]] = [
        (GROUP_OUT, "hand-written dict", hand_to_dict, statuses, True),
        (GROUP_OUT, "TaskStatus.to_dict", TaskStatus.to_dict, statuses, False),
        (GROUP_IN, "hand-written validating conversion", hand_from_dict, dicts, True),
        (GROUP_IN, "TaskStatus.from_dict", TaskStatus.from_dict, dicts, False),
    ]
    values = medians_per_op(
        [_each(fn, items) for _, _, fn, items, _ in cases], settings.short_repeats
    )
    return [
        Row(group, name, value, "us", reference=ref, note=note)
        for (group, name, _, _, ref), value in zip(cases, values, strict=True)
    ]
