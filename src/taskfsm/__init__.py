"""taskfsm: a finite-state-machine engine for task lifecycles.

Enforces legal phase changes of tasks and keeps an exact, immutable status snapshot of
each, with the Livepeer Studio ``TaskStatus`` as its wire format.
"""

from __future__ import annotations

from typing import Any

from ._dispatch import (
    TASK_COMPLETED,
    TASK_FAILED,
    TASK_UPDATED,
    AsyncCursorStore,
    AsyncDispatcher,
    CursorStore,
    Dispatcher,
    DispatchFailed,
    Notification,
)
from ._engine import Clock, Listener, TaskMachine, system_clock
from ._errors import (
    IllegalTransition,
    InvalidArgument,
    InvalidStatus,
    TaskExists,
    TaskFSMError,
    TaskNotFound,
)
from ._lifecycle import CAN_RETRY, DEFAULT_LIFECYCLE, Edge, Lifecycle
from ._phase import TaskPhase
from ._policy import RetryPolicy
from ._status import TaskStatus
from .stores import (
    AsyncStore,
    Store,
    StoreUnavailable,
    TransitionRecord,
    open_async_store,
    open_store,
)

__all__ = [
    "CAN_RETRY",
    "DEFAULT_LIFECYCLE",
    "TASK_COMPLETED",
    "TASK_FAILED",
    "TASK_UPDATED",
    "AsyncCursorStore",
    "AsyncDispatcher",
    "AsyncStore",
    "Clock",
    "CursorStore",
    "DispatchFailed",
    "Dispatcher",
    "Edge",
    "IllegalTransition",
    "InvalidArgument",
    "InvalidStatus",
    "Lifecycle",
    "Listener",
    "Notification",
    "RetryPolicy",
    "Store",
    "StoreUnavailable",
    "TaskExists",
    "TaskFSMError",
    "TaskMachine",
    "TaskNotFound",
    "TaskPhase",
    "TaskStatus",
    "TransitionRecord",
    "open_async_store",
    "open_store",
    "system_clock",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import version

        return version("taskfsm")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
