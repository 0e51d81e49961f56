"""TaskPhase: the Livepeer Studio phase values, a str enum."""

from __future__ import annotations

import json

import pytest

from taskfsm import TaskPhase


def test_values_are_the_livepeer_phases() -> None:
    assert [p.value for p in TaskPhase] == [
        "pending",
        "waiting",
        "running",
        "failed",
        "completed",
        "cancelled",
    ]


@pytest.mark.parametrize("phase", list(TaskPhase))
def test_is_a_str_equal_to_its_value(phase: TaskPhase) -> None:
    assert isinstance(phase, str)
    assert phase == phase.value
    assert str(phase) == phase.value
    assert f"{phase}" == phase.value
    assert TaskPhase(phase.value) is phase
    assert json.dumps(phase) == f'"{phase.value}"'


@pytest.mark.parametrize(
    ("phase", "terminal"),
    [
        (TaskPhase.PENDING, False),
        (TaskPhase.WAITING, False),
        (TaskPhase.RUNNING, False),
        (TaskPhase.FAILED, True),
        (TaskPhase.COMPLETED, True),
        (TaskPhase.CANCELLED, True),
    ],
)
def test_is_terminal(phase: TaskPhase, terminal: bool) -> None:
    assert phase.is_terminal is terminal


def test_unknown_value_is_rejected() -> None:
    with pytest.raises(ValueError, match="'paused'"):
        TaskPhase("paused")
