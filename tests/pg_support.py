"""Where the PostgreSQL test server is, and fresh schemas on it: one place for every test.

``TASKFSM_TEST_POSTGRES_URL`` names the server. Without it PostgreSQL tests skip, except
under ``CI=true``, where they fail: a CI run can never pass without having run them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

POSTGRES_URL_ENV = "TASKFSM_TEST_POSTGRES_URL"


def postgres_base() -> str:
    """The test server's URL; skip (or fail under CI=true) when it is not configured."""
    url = os.environ.get(POSTGRES_URL_ENV, "").strip()
    if url:
        return url
    reason = f"{POSTGRES_URL_ENV} is not set: no PostgreSQL server to test against"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true, so PostgreSQL tests must run)")
    pytest.skip(reason)


@contextmanager
def postgres_schema(prefix: str = "t") -> Iterator[str]:
    """A URL whose search_path is a fresh schema, dropped afterwards."""
    import psycopg

    base = postgres_base()
    schema = f"{prefix}_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            # A failed test may leave a connection open; do not hang teardown on its locks.
            conn.execute("SET lock_timeout = '10s'")
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
