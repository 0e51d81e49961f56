"""Exit codes of the ``taskfsm`` command, and the one place errors are mapped to them."""

from __future__ import annotations

import enum

from .._errors import (
    IllegalTransition,
    InvalidArgument,
    InvalidStatus,
    TaskExists,
    TaskFSMError,
    TaskNotFound,
)


class ExitCode(enum.IntEnum):
    """What the ``taskfsm`` command's exit status means."""

    OK = 0
    #: The engine refused an event: illegal transition or bad event arguments.
    REFUSED = 1
    #: Bad command line (click's own usage errors).
    USAGE = 2
    #: No task with that id.
    NOT_FOUND = 3
    #: The database cannot be used: unreachable, unopenable, a newer schema, or writes
    #: losing their compare-and-set too often.
    STORE_UNAVAILABLE = 4
    #: Invalid data: a corrupt stored status, a malformed log line, an unreadable file.
    INVALID_DATA = 5
    #: ``create`` of an id that already exists (so scripts can treat it as done).
    EXISTS = 6
    #: An optional tool is missing: Graphviz's ``dot`` program or the ``graphviz`` package.
    MISSING_TOOL = 7
    #: ``simulate`` found a broken invariant (an illegal history, an unfinished task).
    CHECK_FAILED = 8


class CliError(Exception):
    """A problem the command reports in one line and exits with *code* for."""

    def __init__(self, message: str, code: ExitCode) -> None:
        super().__init__(message)
        self.code = code


def exit_code(exc: TaskFSMError) -> ExitCode:
    """The exit code for a taskfsm error; the only mapping of error types to codes."""
    from ..stores import IncompatibleSchema, StoreUnavailable, TooManyConflicts

    if isinstance(exc, (IllegalTransition, InvalidArgument)):
        return ExitCode.REFUSED
    if isinstance(exc, TaskNotFound):
        return ExitCode.NOT_FOUND
    if isinstance(exc, TaskExists):
        return ExitCode.EXISTS
    if isinstance(exc, (StoreUnavailable, IncompatibleSchema, TooManyConflicts)):
        return ExitCode.STORE_UNAVAILABLE
    if isinstance(exc, InvalidStatus):
        return ExitCode.INVALID_DATA
    return ExitCode.REFUSED
