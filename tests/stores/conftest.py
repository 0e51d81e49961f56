"""Fixtures of the shared store suite: one fresh store URL per backend, and a fake clock.

Every behavioural test takes `new_url` (a factory of fresh, empty store URLs) or `store_url`
(one such URL) and so runs against memory://, SQLite and PostgreSQL. Tests that need
durability or several processes parametrise ``backend`` over `DURABLE` instead.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from pg_support import postgres_schema

# Process workers live in _workers.py; put its folder on sys.path so the test modules and
# "spawn" children (which inherit the parent's sys.path) import it by the same name.
sys.path.insert(0, str(Path(__file__).parent))

PG = pytest.param("postgresql", marks=pytest.mark.postgres, id="postgresql")
ALL = ["memory", "sqlite", PG]
DURABLE = ["sqlite", PG]

UrlFactory = Callable[[], str]


class FakeClock:
    """A settable clock in int ms, for `TaskMachine(clock=...)`."""

    def __init__(self, now: int = 1_700_000_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> int:
        self.now += ms
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=ALL)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def new_url(backend: str, tmp_path: Path) -> Iterator[UrlFactory]:
    """A factory of URLs of fresh, empty stores of *backend* (a new SQLite file, a new
    PostgreSQL schema, or memory:// which is empty on every open)."""
    if backend == "memory":
        yield lambda: "memory://"
        return
    if backend == "sqlite":
        counter = iter(range(1_000_000))
        yield lambda: f"sqlite:///{tmp_path}/tasks-{next(counter)}.db"
        return
    with ExitStack() as schemas:
        yield lambda: schemas.enter_context(postgres_schema())


@pytest.fixture
def store_url(new_url: UrlFactory) -> str:
    """The URL of one fresh, empty store."""
    return new_url()
