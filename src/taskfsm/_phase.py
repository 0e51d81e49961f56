"""The phases of a task, exactly the Livepeer Studio ``TaskPhase`` values."""

from __future__ import annotations

import enum


class TaskPhase(str, enum.Enum):
    """Phase of a task.

    A ``str`` enum, so ``TaskPhase.RUNNING == "running"`` and it serialises as its value.
    """

    PENDING = "pending"
    WAITING = "waiting"
    RUNNING = "running"
    FAILED = "failed"
    COMPLETED = "completed"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value

    @property
    def is_terminal(self) -> bool:
        """True for the phases the automatic flow never leaves (failed, completed, cancelled)."""
        return self in _TERMINAL


_TERMINAL = frozenset({TaskPhase.FAILED, TaskPhase.COMPLETED, TaskPhase.CANCELLED})
