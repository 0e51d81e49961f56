"""How the command prints statuses and histories: aligned text, or JSON lines with --json."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import click

from .._status import TaskStatus

if TYPE_CHECKING:
    from ..stores import TransitionRecord

_COMPACT = (",", ":")


def emit_json(obj: object) -> None:
    """Print *obj* as one compact JSON line."""
    click.echo(json.dumps(obj, separators=_COMPACT))


def timestamp(ms: int) -> str:
    """*ms* since the epoch as an ISO 8601 UTC time with milliseconds."""
    moment = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """Print *rows* under *header* in left-aligned columns; nothing when there are no rows."""
    body = [list(r) for r in rows]
    if not body:
        return
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(header)]
    for row in [list(header), *body]:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _status_cells(st: TaskStatus) -> list[str]:
    progress = "-" if st.progress is None else f"{st.progress:.2f}"
    return [st.phase.value, progress, str(st.retries), timestamp(st.updated_at)]


_STATUS_HEADER = ["PHASE", "PROGRESS", "RETRIES", "UPDATED"]


def statuses(tasks: Iterable[tuple[str, TaskStatus]], as_json: bool) -> None:
    """Print tasks: a table, or one ``{"id": ..., "status": {wire}}`` object per line (the
    shape of a Livepeer Studio task)."""
    if as_json:
        for task_id, st in tasks:
            emit_json({"id": task_id, "status": st.to_dict()})
        return
    table(
        ["ID", *_STATUS_HEADER, "ERROR"],
        ([task_id, *_status_cells(st), st.error_message or ""] for task_id, st in tasks),
    )


def status(task_id: str, st: TaskStatus, as_json: bool) -> None:
    """Print one task's status: a one-row table, or its wire JSON (exactly ``TaskStatus``)."""
    if as_json:
        emit_json(st.to_dict())
    else:
        statuses([(task_id, st)], as_json=False)


def history(records: Sequence[TransitionRecord], as_json: bool) -> None:
    """Print a task's history, oldest first; JSON lines are `TransitionRecord.to_dict`."""
    if as_json:
        for rec in records:
            emit_json(rec.to_dict())
        return
    table(
        ["SEQ", "EVENT", "FROM", "TO", "PROGRESS", "RETRIES", "UPDATED", "EVENT ID", "ERROR"],
        (
            [
                str(rec.seq),
                rec.event,
                "-" if rec.from_phase is None else rec.from_phase.value,
                *_status_cells(rec.status),
                rec.event_id or "-",
                rec.status.error_message or "",
            ]
            for rec in records
        ),
    )
