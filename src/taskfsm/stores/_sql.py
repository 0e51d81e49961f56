"""SQL statements as values: a backend's SQL adapter turns each plan operation into a
generator of `Sql` steps (sans-I/O again), which a sync or async connection runs."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Generator, Sequence
from typing import Any, NamedTuple, TypeVar

T = TypeVar("T")


class Fetch(enum.Enum):
    """What a step wants back from its statement."""

    NOTHING = "nothing"
    ONE = "one"  # the first row or None
    ALL = "all"  # every row
    ROWCOUNT = "rowcount"  # rows the statement changed
    LASTROWID = "lastrowid"  # SQLite: the rowid of the row just inserted


class Sql(NamedTuple):
    """One statement with bound parameters (never interpolated values).

    Args:
        query: The SQL text with placeholders.
        params: The parameters; with *many*, a sequence of parameter tuples.
        fetch: What to return.
        many: Run the statement once per parameter tuple (executemany).
    """

    query: str
    params: Sequence[Any] = ()
    fetch: Fetch = Fetch.NOTHING
    many: bool = False


SqlSteps = Generator[Sql, Any, T]


def drive(steps: SqlSteps[T], run: Callable[[Sql], Any]) -> T:
    """Run the SQL *steps* with the sync *run*, feeding each result back."""
    result: Any = None
    try:
        while True:
            result = run(steps.send(result))
    except StopIteration as done:
        value: T = done.value
        return value


async def adrive(steps: SqlSteps[T], run: Callable[[Sql], Awaitable[Any]]) -> T:
    """Run the SQL *steps* with the async *run*, feeding each result back."""
    result: Any = None
    try:
        while True:
            result = await run(steps.send(result))
    except StopIteration as done:
        value: T = done.value
        return value
