"""`TaskStatus`: the immutable status snapshot of one task."""

from __future__ import annotations

import math
from typing import Any

import attrs

from ._errors import InvalidStatus
from ._phase import TaskPhase

# A dict lookup: calling the enum class costs as much as the rest of the constructor.
_PHASES = {phase.value: phase for phase in TaskPhase}


def _to_phase(value: object) -> TaskPhase:
    if isinstance(value, TaskPhase):
        return value
    if isinstance(value, str):
        phase = _PHASES.get(value)
        if phase is not None:
            return phase
    allowed = ", ".join(p.value for p in TaskPhase)
    raise InvalidStatus(f"phase must be one of {allowed}, got {value!r}")


def _to_updated_at(value: object) -> int:
    if type(value) is not int or value < 0:
        raise InvalidStatus(f"updated_at must be a non-negative int (ms), got {value!r}")
    return value


def _to_progress(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidStatus(f"progress must be a number within [0, 1], got {value!r}")
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise InvalidStatus(f"progress must be within [0, 1], got {value!r}")
    return float(value)


def _to_error_message(value: object) -> str | None:
    if value is None or type(value) is str:
        return value
    raise InvalidStatus(f"error_message must be a string or None, got {value!r}")


def _to_retries(value: object) -> int:
    if type(value) is not int or value < 0:
        raise InvalidStatus(f"retries must be a non-negative int, got {value!r}")
    return value


@attrs.frozen
class TaskStatus:
    """Status of a task: what the Livepeer Studio API calls ``TaskStatus``.

    Frozen and slotted; every field is validated on construction.

    Args:
        phase: The task's phase (a `TaskPhase` or its string value).
        updated_at: When the status last changed, in integer ms since the epoch.
        progress: Progress of the current attempt within [0, 1], or None.
        error_message: The last error, or None.
        retries: How many times the task was retried since its last restart.

    Raises:
        InvalidStatus: A field is malformed; the message names it.
    """

    phase: TaskPhase = attrs.field(converter=_to_phase)
    updated_at: int = attrs.field(converter=_to_updated_at)
    progress: float | None = attrs.field(default=None, converter=_to_progress)
    error_message: str | None = attrs.field(default=None, converter=_to_error_message)
    retries: int = attrs.field(default=0, converter=_to_retries)

    def to_dict(self) -> dict[str, Any]:
        """Return the wire JSON object: camelCase keys, absent fields left out."""
        return _wire.unstructure(self)

    @classmethod
    def from_dict(cls, data: object) -> TaskStatus:
        """Build a status from the wire JSON object the API and its SDKs send.

        Integral floats are accepted for ``updatedAt`` and ``retries``; unknown keys are
        ignored.

        Raises:
            InvalidStatus: *data* is not an object, or a field is missing or malformed.
        """
        return _wire.structure(data)

    def to_json(self) -> str:
        """Return the compact wire JSON text."""
        return _wire.dumps(self)

    @classmethod
    def from_json(cls, text: str | bytes) -> TaskStatus:
        """Parse wire JSON text; see `from_dict`.

        Raises:
            InvalidStatus: The text is not JSON, or not a valid status.
        """
        return _wire.loads(text)


_new = object.__new__
# The slots' own descriptors: setting through them skips the frozen __setattr__ and the
# per-call attribute lookup that object.__setattr__ does (about a third faster).
_set_phase, _set_updated_at, _set_progress, _set_error_message, _set_retries = (
    TaskStatus.__dict__[name].__set__
    for name in ("phase", "updated_at", "progress", "error_message", "retries")
)


def trusted_status(
    phase: TaskPhase,
    updated_at: int,
    progress: float | None,
    error_message: str | None,
    retries: int,
) -> TaskStatus:
    """Build a status without validation; only for values the engine derived itself."""
    st: TaskStatus = _new(TaskStatus)
    _set_phase(st, phase)
    _set_updated_at(st, updated_at)
    _set_progress(st, progress)
    _set_error_message(st, error_message)
    _set_retries(st, retries)
    return st


def is_valid_progress(value: object) -> bool:
    """True for a real number (not bool) within [0, 1]."""
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and not math.isnan(value)
        and 0.0 <= value <= 1.0
    )


# Last: _wire imports TaskStatus from here. A module-level reference, not an import in each
# method: an import statement costs more than the whole conversion.
from . import _wire  # noqa: E402
