"""Shared fixtures: where the PostgreSQL test server is, or why its tests cannot run."""

from __future__ import annotations

import pytest

from pg_support import postgres_base


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The URL of the PostgreSQL server for tests (see `pg_support.postgres_base`)."""
    return postgres_base()
