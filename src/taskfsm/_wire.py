"""The wire format: Livepeer Studio ``TaskStatus`` JSON, converted with cattrs."""

from __future__ import annotations

import json
import math
from typing import Any

import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from ._errors import InvalidStatus
from ._phase import TaskPhase
from ._status import TaskStatus, trusted_status

# Wire key for each attribute, in the order the API writes them.
WIRE_KEYS = {
    "phase": "phase",
    "updated_at": "updatedAt",
    "progress": "progress",
    "error_message": "errorMessage",
    "retries": "retries",
}


def _whole(value: Any, key: str) -> int:
    # The SDKs type updatedAt and retries as float; servers write integers.
    if type(value) is int and value >= 0:  # the common case, first
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidStatus(f"{key} must be a non-negative integer, got {value!r}")
    if isinstance(value, float):
        if not value.is_integer():
            raise InvalidStatus(f"{key} must be a non-negative integer, got {value!r}")
        value = int(value)
    if value < 0:
        raise InvalidStatus(f"{key} must be a non-negative integer, got {value!r}")
    return int(value)


# A dict lookup: calling the enum class costs more than the rest of a conversion.
_PHASES = {phase.value: phase for phase in TaskPhase}


def _phase(value: Any, _: Any) -> TaskPhase:
    if isinstance(value, str):
        phase = _PHASES.get(value)
        if phase is not None:
            return phase
    allowed = ", ".join(p.value for p in TaskPhase)
    raise InvalidStatus(f"phase must be one of {allowed}, got {value!r}")


def _progress(value: Any, _: Any) -> float | None:
    if value is None:
        return None
    if type(value) is float and 0.0 <= value <= 1.0:  # NaN fails the comparison
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise InvalidStatus(f"progress must be a number within [0, 1], got {value!r}")
    if not 0.0 <= value <= 1.0:
        raise InvalidStatus(f"progress must be within [0, 1], got {value!r}")
    return float(value)


def _error_message(value: Any, _: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise InvalidStatus(f"errorMessage must be a string, got {value!r}")


def _updated_at(value: Any, _: Any) -> int:
    if type(value) is int and value >= 0:
        return value
    return _whole(value, "updatedAt")


def _retries(value: Any, _: Any) -> int:
    if type(value) is int and value >= 0:
        return value
    return 0 if value is None else _whole(value, "retries")


converter = cattrs.Converter(detailed_validation=True)
converter.register_unstructure_hook(
    TaskStatus,
    make_dict_unstructure_fn(
        TaskStatus,
        converter,
        phase=override(rename="phase", unstruct_hook=lambda p: p.value),
        updated_at=override(rename="updatedAt"),
        progress=override(omit_if_default=True),
        error_message=override(rename="errorMessage", omit_if_default=True),
    ),
)
converter.register_structure_hook(
    TaskStatus,
    make_dict_structure_fn(
        TaskStatus,
        converter,
        _cattrs_forbid_extra_keys=False,
        phase=override(struct_hook=_phase),
        updated_at=override(rename="updatedAt", struct_hook=_updated_at),
        progress=override(struct_hook=_progress),
        error_message=override(rename="errorMessage", struct_hook=_error_message),
        retries=override(struct_hook=_retries),
    ),
)


# The generated functions themselves: the converter's dispatch costs more than they do.
_unstructure_status = converter.get_unstructure_hook(TaskStatus)


def unstructure(status: TaskStatus) -> dict[str, Any]:
    """Return the wire dict of *status*."""
    result: dict[str, Any] = _unstructure_status(status)
    return result


def structure(data: object) -> TaskStatus:
    """Return the status in the wire dict *data*; raise `InvalidStatus` naming the field."""
    if not isinstance(data, dict):
        raise InvalidStatus(f"a status must be a JSON object, got {type(data).__name__}")
    try:
        # The converter's own field hooks, in its field order, so the first bad field is
        # the one reported either way. They validate fully, so the result needs no second
        # validation by TaskStatus.__init__.
        phase = _phase(data["phase"], None)
        updated_at = _updated_at(data["updatedAt"], None)
        progress = _progress(data.get("progress"), None)
        error_message = _error_message(data.get("errorMessage"), None)
        retries = _retries(data.get("retries"), None)
    except InvalidStatus:
        raise
    except Exception:  # a missing key or an unexpected failure: the detailed path names it
        return _structure_detailed(data)
    if error_message is not None and type(error_message) is not str:
        return _structure_detailed(data)  # TaskStatus rejects str subclasses; say so as it does
    return trusted_status(phase, updated_at, progress, error_message, retries)


def _structure_detailed(data: dict[Any, Any]) -> TaskStatus:
    try:
        return converter.structure(data, TaskStatus)
    except cattrs.ClassValidationError as exc:
        with_field, without_field = exc.group_exceptions()
        if not with_field:  # TaskStatus.__init__ itself refused, e.g. a str subclass
            first = without_field[0]
            if isinstance(first, InvalidStatus):
                raise first from None
            raise InvalidStatus(f"status is invalid: {first}") from None
        (first, note), *_ = with_field
        if isinstance(first, InvalidStatus):
            raise first from None
        key = WIRE_KEYS.get(note.name, note.name)
        if isinstance(first, KeyError):
            raise InvalidStatus(f"{key} is required") from None
        raise InvalidStatus(f"{key} is invalid: {first}") from None


def dumps(status: TaskStatus) -> str:
    """Return the compact wire JSON text of *status*."""
    return json.dumps(unstructure(status), separators=(",", ":"))


def loads(text: str | bytes) -> TaskStatus:
    """Parse wire JSON text into a status."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        raise InvalidStatus(f"status is not valid JSON: {exc}") from None
    return structure(data)
