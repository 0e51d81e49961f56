"""What the global options chose, shared by every subcommand."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from .._engine import TaskMachine
from .._errors import InvalidArgument
from ._exit import CliError, ExitCode

if TYPE_CHECKING:
    from ..stores import Store


def open_db(url: str, machine: TaskMachine) -> Store:
    """Open the store at *url*; a malformed URL is a usage error.

    Raises:
        CliError: *url* is malformed or of an unknown scheme.
        StoreUnavailable: The database cannot be reached or opened.
    """
    from ..stores import open_store

    try:
        return open_store(url, machine=machine)
    except InvalidArgument as exc:
        raise CliError(f"--db: {exc}", ExitCode.USAGE) from None


class Env:
    """The store URL (--db, opened on first use) and the output mode (--json).

    Args:
        ctx: The root click context: the store is closed when it closes.
        db: The store URL.
        as_json: Print JSON lines instead of text.
    """

    def __init__(self, ctx: click.Context, db: str, as_json: bool) -> None:
        self.db = db
        self.as_json = as_json
        self._ctx = ctx
        self._store: Store | None = None

    def store(self) -> Store:
        """The store at --db, opened once and closed when the command ends.

        Raises:
            CliError: --db is malformed.
            StoreUnavailable: The database cannot be reached or opened.
        """
        if self._store is None:
            self._store = self._ctx.with_resource(open_db(self.db, TaskMachine()))
        return self._store


pass_env = click.make_pass_decorator(Env)
