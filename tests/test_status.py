"""TaskStatus: a frozen, slotted value, validated on construction."""

from __future__ import annotations

import math
from typing import Any

import attrs
import pytest

from taskfsm import InvalidStatus, TaskFSMError, TaskPhase, TaskStatus


def test_defaults() -> None:
    st = TaskStatus(TaskPhase.PENDING, 5)
    assert st.phase is TaskPhase.PENDING
    assert st.updated_at == 5
    assert st.progress is None
    assert st.error_message is None
    assert st.retries == 0


def test_phase_string_is_converted() -> None:
    assert TaskStatus("running", 1).phase is TaskPhase.RUNNING


def test_int_progress_becomes_float() -> None:
    st = TaskStatus("running", 1, progress=1)
    assert st.progress == 1.0
    assert type(st.progress) is float


def test_frozen_and_slotted() -> None:
    st = TaskStatus("running", 1, progress=0.5)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        st.progress = 0.7  # type: ignore[misc]
    assert not hasattr(st, "__dict__")


def test_equality_and_hash_by_value() -> None:
    a = TaskStatus("failed", 7, None, "boom", 2)
    b = TaskStatus(TaskPhase.FAILED, 7, error_message="boom", retries=2)
    assert a == b
    assert hash(a) == hash(b)
    assert a != attrs.evolve(b, retries=1)


def test_evolve_validates() -> None:
    st = TaskStatus("running", 1)
    with pytest.raises(InvalidStatus, match="progress"):
        attrs.evolve(st, progress=2.0)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"phase": "paused"}, "phase"),
        ({"phase": None}, "phase"),
        ({"phase": 1}, "phase"),
        ({"updated_at": -1}, "updated_at"),
        ({"updated_at": 1.0}, "updated_at"),
        ({"updated_at": 1.5}, "updated_at"),
        ({"updated_at": True}, "updated_at"),
        ({"updated_at": "1"}, "updated_at"),
        ({"updated_at": None}, "updated_at"),
        ({"progress": -0.1}, "progress"),
        ({"progress": 1.0000001}, "progress"),
        ({"progress": math.nan}, "progress"),
        ({"progress": math.inf}, "progress"),
        ({"progress": True}, "progress"),
        ({"progress": "0.5"}, "progress"),
        ({"error_message": 3}, "error_message"),
        ({"error_message": b"boom"}, "error_message"),
        ({"error_message": ValueError("boom")}, "error_message"),
        ({"retries": -1}, "retries"),
        ({"retries": 1.0}, "retries"),
        ({"retries": False}, "retries"),
        ({"retries": None}, "retries"),
    ],
)
def test_constructor_rejects_malformed_fields(kwargs: dict[str, Any], field: str) -> None:
    args: dict[str, Any] = {"phase": "running", "updated_at": 1, **kwargs}
    with pytest.raises(InvalidStatus, match=field) as info:
        TaskStatus(**args)
    # InvalidStatus is both the library's error and a ValueError.
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, TaskFSMError)
    # The message names the value too.
    assert repr(next(iter(kwargs.values()))) in str(info.value)


@pytest.mark.parametrize("progress", [0, 0.0, 0.25, 1, 1.0])
def test_progress_bounds_are_inclusive(progress: float) -> None:
    assert TaskStatus("running", 0, progress=progress).progress == progress


def test_large_values_are_accepted() -> None:
    st = TaskStatus("waiting", 2**63, retries=2**40, error_message="")
    assert st.updated_at == 2**63
    assert st.retries == 2**40
    assert st.error_message == ""
