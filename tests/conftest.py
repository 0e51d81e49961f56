"""Shared fixtures: where the PostgreSQL test server is, or why its tests cannot run."""

from __future__ import annotations

import os

import pytest

POSTGRES_URL_ENV = "TASKFSM_TEST_POSTGRES_URL"


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The URL of the PostgreSQL server for tests, from ``TASKFSM_TEST_POSTGRES_URL``.

    Skips the test when the variable is unset; under CI (``CI=true``) fails it instead, so a
    CI run can never pass without having run the PostgreSQL tests.
    """
    url = os.environ.get(POSTGRES_URL_ENV, "").strip()
    if url:
        return url
    reason = f"{POSTGRES_URL_ENV} is not set: no PostgreSQL server to test against"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true, so PostgreSQL tests must run)")
    pytest.skip(reason)
