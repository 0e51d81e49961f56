"""The exceptions taskfsm raises. Every one derives from `TaskFSMError`."""

from __future__ import annotations

from collections.abc import Iterable


class TaskFSMError(Exception):
    """Base class of every error taskfsm raises on purpose."""


class IllegalTransition(TaskFSMError):
    """An event is not allowed from the task's current phase; nothing was changed.

    Attributes:
        event: The event that was refused.
        phase: The phase the task is in (its value, e.g. ``"pending"``).
        allowed: The events the lifecycle allows from that phase.
        task_id: The task's id when a store refused the event, else None.
    """

    def __init__(
        self,
        event: str,
        phase: str,
        allowed: Iterable[str],
        task_id: str | None = None,
    ) -> None:
        self.event = event
        self.phase = str(phase)
        self.allowed = frozenset(allowed)
        self.task_id = task_id
        super().__init__(event, self.phase, self.allowed, task_id)

    def __str__(self) -> str:
        task = "task" if self.task_id is None else f"task {self.task_id!r}"
        allowed = ", ".join(sorted(self.allowed)) or "none"
        return f"cannot {self.event} {task}: phase is {self.phase}; allowed: {allowed}"

    def with_task(self, task_id: str) -> IllegalTransition:
        """Return a copy of this error that names *task_id*."""
        return IllegalTransition(self.event, self.phase, self.allowed, task_id)


class InvalidStatus(TaskFSMError, ValueError):
    """A status value or its wire form is malformed; the message names the field."""


class InvalidArgument(TaskFSMError, ValueError):
    """An event's arguments are wrong (e.g. progress out of range or decreasing)."""


class TaskNotFound(TaskFSMError, KeyError):
    """No task with that id exists in the store."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        super().__init__(task_id)

    def __str__(self) -> str:
        return f"task {self.task_id!r} not found"


class TaskExists(TaskFSMError):
    """A task with that id already exists in the store."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        super().__init__(task_id)

    def __str__(self) -> str:
        return f"task {self.task_id!r} already exists"
