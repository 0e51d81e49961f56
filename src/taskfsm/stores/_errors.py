"""The errors only stores raise. Every one derives from `taskfsm.TaskFSMError`."""

from __future__ import annotations

from .._errors import TaskFSMError


class StoreUnavailable(TaskFSMError):
    """The database cannot be reached or opened (or the store is closed).

    The message names the database (host, port and database name; never the password).
    """


class IncompatibleSchema(TaskFSMError):
    """The database holds a taskfsm schema this version does not know (a newer one)."""


class TooManyConflicts(TaskFSMError):
    """A write lost its compare-and-set more times than the store retries; nothing written."""
