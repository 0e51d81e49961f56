"""`TransitionRecord`: one accepted transition of one task, as history and change feed."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs

from .._errors import InvalidStatus
from .._phase import TaskPhase
from .._status import TaskStatus


@attrs.frozen
class TransitionRecord:
    """One accepted transition (or the creation) of a task, as stored in its history.

    Args:
        seq: Global, strictly commit-ordered sequence number; the change-feed cursor.
        task_id: The task's id.
        event: The event name; ``"create"`` for the creation record.
        from_phase: The phase before the event; None for the creation record.
        to_phase: The phase after the event.
        status: The full status snapshot after the event.
        event_id: The caller's idempotency key, or None.
        args: The event's arguments as JSON values, for audit (e.g. ``error`` as text).
    """

    seq: int
    task_id: str
    event: str
    from_phase: TaskPhase | None
    to_phase: TaskPhase
    status: TaskStatus
    event_id: str | None = None
    args: Mapping[str, Any] = attrs.field(factory=dict, hash=False)

    def to_dict(self) -> dict[str, Any]:
        """Return this record as a JSON object (the status in its wire form)."""
        return {
            "seq": self.seq,
            "taskId": self.task_id,
            "event": self.event,
            "fromPhase": None if self.from_phase is None else self.from_phase.value,
            "toPhase": self.to_phase.value,
            "status": self.status.to_dict(),
            "eventId": self.event_id,
            "args": dict(self.args),
        }


def audit_args(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON-able form of an event's arguments: exceptions become their message."""
    out: dict[str, Any] = {}
    for key, value in kwargs.items():
        if value is None or isinstance(value, (bool, int, float, str)):
            out[key] = value
        elif isinstance(value, BaseException):
            out[key] = str(value) or type(value).__name__
        else:
            out[key] = repr(value)
    return out


# One compact encoder, built once (json.dumps with options builds one per call).
_ENCODE = json.JSONEncoder(separators=(",", ":")).encode


def args_json(args: Mapping[str, Any]) -> str:
    """The stored JSON text of a record's *args*."""
    return _ENCODE(args) if args else "{}"


# Wire texts this process wrote or read, with their (immutable) statuses: parsing is a
# pure function of the text, so the text a store just wrote decodes without re-parsing.
_DECODED: dict[str, TaskStatus] = {}
_DECODED_MAX = 4096
_last_encoded: tuple[TaskStatus | None, str] = (None, "")


def _remember(text: str, status: TaskStatus) -> None:
    if len(_DECODED) >= _DECODED_MAX:
        _DECODED.clear()
    _DECODED[text] = status


def encode_status(status: TaskStatus) -> str:
    """The wire JSON text of *status*, as stored; a status row and the history record
    written with it encode once."""
    global _last_encoded
    last = _last_encoded
    if last[0] is status:
        return last[1]
    text = _ENCODE(status.to_dict())  # the same text as status.to_json()
    _last_encoded = (status, text)
    _remember(text, status)
    return text


def decode_status(task_id: str, raw: str | TaskStatus) -> TaskStatus:
    """The stored status of *task_id*; raise `InvalidStatus` naming the task if corrupt."""
    if isinstance(raw, TaskStatus):
        return raw
    known = _DECODED.get(raw)
    if known is not None:
        return known
    try:
        status = TaskStatus.from_json(raw)
    except InvalidStatus as exc:
        raise InvalidStatus(f"stored status of task {task_id!r} is invalid: {exc}") from None
    _remember(raw, status)
    return status


def record_from_row(
    seq: int,
    task_id: str,
    event: str,
    from_phase: str | None,
    to_phase: str,
    status: str,
    event_id: str | None,
    args: str,
) -> TransitionRecord:
    """Rebuild a record from its stored columns; raise `InvalidStatus` if corrupt."""
    try:
        decoded_args = json.loads(args)
        return TransitionRecord(
            seq=seq,
            task_id=task_id,
            event=event,
            from_phase=None if from_phase is None else TaskPhase(from_phase),
            to_phase=TaskPhase(to_phase),
            status=decode_status(task_id, status),
            event_id=event_id,
            args=decoded_args if isinstance(decoded_args, dict) else {},
        )
    except (ValueError, InvalidStatus) as exc:
        raise InvalidStatus(
            f"stored history record {seq} of task {task_id!r} is invalid: {exc}"
        ) from None
