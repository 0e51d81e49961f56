"""Helpers of the store implementation tests (test_impl_*.py): one fresh store per test."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pg_support import postgres_base, postgres_schema

__all__ = ["fresh_url", "postgres_base", "postgres_schema"]


@contextmanager
def fresh_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh, empty store of *backend* (memory, sqlite or postgresql)."""
    if backend == "memory":
        yield "memory://"
    elif backend == "sqlite":
        yield f"sqlite:///{tmp_path}/tasks.db"
    else:
        with postgres_schema("impl") as url:
            yield url
