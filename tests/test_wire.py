"""The wire format: Livepeer Studio TaskStatus JSON, both directions."""

from __future__ import annotations

import contextlib
import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskfsm import InvalidStatus, TaskPhase, TaskStatus

statuses = st.builds(
    TaskStatus,
    phase=st.sampled_from(TaskPhase),
    updated_at=st.integers(min_value=0, max_value=2**63),
    progress=st.none() | st.floats(min_value=0.0, max_value=1.0),
    error_message=st.none() | st.text(),
    retries=st.integers(min_value=0, max_value=2**63),
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=10)
    | st.sampled_from([p.value for p in TaskPhase]),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)
WIRE_KEYS = ["phase", "updatedAt", "progress", "errorMessage", "retries"]

# -- to_dict / to_json --------------------------------------------------------------


def test_to_dict_full() -> None:
    status = TaskStatus("running", 1587667174725, 0.5, "boom", 1)
    assert status.to_dict() == {
        "phase": "running",
        "updatedAt": 1587667174725,
        "progress": 0.5,
        "errorMessage": "boom",
        "retries": 1,
    }


def test_to_dict_leaves_out_absent_fields() -> None:
    # retries is written even when 0, as the server does on schedule ("retries: 0").
    assert TaskStatus("pending", 7).to_dict() == {"phase": "pending", "updatedAt": 7, "retries": 0}


def test_to_dict_keeps_zero_progress_and_empty_error() -> None:
    assert TaskStatus("running", 7, progress=0.0, error_message="").to_dict() == {
        "phase": "running",
        "updatedAt": 7,
        "progress": 0.0,
        "errorMessage": "",
        "retries": 0,
    }


def test_to_dict_types_are_plain_json() -> None:
    d = TaskStatus(TaskPhase.COMPLETED, 9, progress=1.0).to_dict()
    assert type(d["phase"]) is str
    assert type(d["updatedAt"]) is int
    assert type(d["progress"]) is float


def test_to_json_is_compact() -> None:
    text = TaskStatus("failed", 12, None, 'no "codec"', 2).to_json()
    assert json.loads(text) == {
        "phase": "failed",
        "updatedAt": 12,
        "errorMessage": 'no "codec"',
        "retries": 2,
    }
    assert text == json.dumps(json.loads(text), separators=(",", ":"))
    assert TaskStatus("running", 3, 0.25).to_json().startswith('{"phase":"running","updatedAt":3,')


# -- from_dict: what the API and its SDKs send ---------------------------------------


def test_from_dict_full() -> None:
    data = {
        "phase": "waiting",
        "updatedAt": 1587667174725,
        "progress": 0.25,
        "errorMessage": "timeout",
        "retries": 1,
    }
    assert TaskStatus.from_dict(data) == TaskStatus("waiting", 1587667174725, 0.25, "timeout", 1)


def test_from_dict_minimal() -> None:
    assert TaskStatus.from_dict({"phase": "pending", "updatedAt": 1}) == TaskStatus("pending", 1)


def test_from_dict_accepts_sdk_floats() -> None:
    # The SDKs type updatedAt and retries as float.
    st_ = TaskStatus.from_dict({"phase": "running", "updatedAt": 1587667174725.0, "retries": 2.0})
    assert st_ == TaskStatus("running", 1587667174725, retries=2)
    assert type(st_.updated_at) is int
    assert type(st_.retries) is int


def test_from_dict_accepts_int_progress() -> None:
    st_ = TaskStatus.from_dict({"phase": "completed", "updatedAt": 1, "progress": 1})
    assert st_.progress == 1.0
    assert type(st_.progress) is float


def test_from_dict_ignores_unknown_keys() -> None:
    data = {"phase": "running", "updatedAt": 5, "step": "transcode", "id": "x", "progress": 0.5}
    assert TaskStatus.from_dict(data) == TaskStatus("running", 5, progress=0.5)


def test_from_dict_accepts_null_optional_fields() -> None:
    data = {"phase": "running", "updatedAt": 5, "progress": None, "errorMessage": None}
    assert TaskStatus.from_dict({**data, "retries": None}) == TaskStatus("running", 5)


def test_from_dict_does_not_modify_its_input() -> None:
    data = {"phase": "running", "updatedAt": 5.0, "retries": 1.0}
    TaskStatus.from_dict(data)
    assert data == {"phase": "running", "updatedAt": 5.0, "retries": 1.0}


# -- from_dict: everything else is rejected, naming the wire field --------------------

VALID: dict[str, Any] = {"phase": "running", "updatedAt": 5}


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"updatedAt": 5}, "phase"),
        ({**VALID, "phase": "paused"}, "phase"),
        ({**VALID, "phase": "RUNNING"}, "phase"),
        ({**VALID, "phase": None}, "phase"),
        ({**VALID, "phase": 2}, "phase"),
        ({"phase": "running"}, "updatedAt"),
        ({**VALID, "updatedAt": -1}, "updatedAt"),
        ({**VALID, "updatedAt": -1.0}, "updatedAt"),
        ({**VALID, "updatedAt": 1.5}, "updatedAt"),
        ({**VALID, "updatedAt": True}, "updatedAt"),
        ({**VALID, "updatedAt": False}, "updatedAt"),
        ({**VALID, "updatedAt": "1587667174725"}, "updatedAt"),
        ({**VALID, "updatedAt": None}, "updatedAt"),
        ({**VALID, "updatedAt": math.inf}, "updatedAt"),
        ({**VALID, "updatedAt": math.nan}, "updatedAt"),
        ({**VALID, "updatedAt": [1]}, "updatedAt"),
        ({**VALID, "progress": -0.01}, "progress"),
        ({**VALID, "progress": 1.01}, "progress"),
        ({**VALID, "progress": 2}, "progress"),
        ({**VALID, "progress": math.nan}, "progress"),
        ({**VALID, "progress": math.inf}, "progress"),
        ({**VALID, "progress": True}, "progress"),
        ({**VALID, "progress": False}, "progress"),
        ({**VALID, "progress": "0.5"}, "progress"),
        ({**VALID, "progress": {}}, "progress"),
        ({**VALID, "retries": -1}, "retries"),
        ({**VALID, "retries": 0.5}, "retries"),
        ({**VALID, "retries": True}, "retries"),
        ({**VALID, "retries": "1"}, "retries"),
        ({**VALID, "retries": math.nan}, "retries"),
        ({**VALID, "errorMessage": 3}, "errorMessage"),
        ({**VALID, "errorMessage": False}, "errorMessage"),
        ({**VALID, "errorMessage": ["boom"]}, "errorMessage"),
        ({**VALID, "errorMessage": {"message": "boom"}}, "errorMessage"),
    ],
)
def test_from_dict_rejects_malformed_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidStatus, match=rf"^{field}\b"):
        TaskStatus.from_dict(data)
    # The same through the JSON text, where the value is representable in JSON.
    try:
        text = json.dumps(data, allow_nan=False)
    except ValueError:
        return
    with pytest.raises(InvalidStatus, match=rf"^{field}\b"):
        TaskStatus.from_json(text)


def test_malformed_message_names_the_value() -> None:
    with pytest.raises(InvalidStatus) as info:
        TaskStatus.from_dict({**VALID, "progress": 1.5})
    assert str(info.value) == "progress must be within [0, 1], got 1.5"


@pytest.mark.parametrize("data", [None, [], [VALID], "running", 5, 1.5, True])
def test_from_dict_rejects_non_objects(data: object) -> None:
    with pytest.raises(InvalidStatus, match="must be a JSON object, got"):
        TaskStatus.from_dict(data)


@pytest.mark.parametrize("text", ["null", "[]", '"running"', "5", "true"])
def test_from_json_rejects_non_objects(text: str) -> None:
    with pytest.raises(InvalidStatus, match="must be a JSON object"):
        TaskStatus.from_json(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{",
        "{'phase': 'running', 'updatedAt': 5}",
        '{"phase": "running", "updatedAt": 5,}',
        '{"phase": "running"} trailing',
        b"\xff\xfe\xfa",
        # Nesting deeper than the JSON decoder's recursion limit.
        "[" * 100_000 + "]" * 100_000,
        '{"phase": "running", "updatedAt": 5, "step": ' + "[" * 100_000 + "]" * 100_000 + "}",
    ],
)
def test_from_json_rejects_invalid_json(text: str | bytes) -> None:
    with pytest.raises(InvalidStatus, match="not valid JSON"):
        TaskStatus.from_json(text)


def test_from_json_accepts_bytes_and_nan_free_sdk_text() -> None:
    text = b'{"phase":"running","updatedAt":1.0e3,"retries":1.0,"progress":0.5,"step":null}'
    assert TaskStatus.from_json(text) == TaskStatus("running", 1000, 0.5, retries=1)


# -- properties -----------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(statuses)
def test_dict_round_trip(status: TaskStatus) -> None:
    assert TaskStatus.from_dict(status.to_dict()) == status


@settings(max_examples=300, deadline=None)
@given(statuses)
def test_json_round_trip(status: TaskStatus) -> None:
    text = status.to_json()
    assert TaskStatus.from_json(text) == status
    assert TaskStatus.from_json(text.encode()) == status
    assert json.loads(text) == status.to_dict()


@settings(max_examples=300, deadline=None)
@given(statuses)
def test_to_dict_keys(status: TaskStatus) -> None:
    expected = {"phase", "updatedAt", "retries"}
    expected |= {"progress"} if status.progress is not None else set()
    expected |= {"errorMessage"} if status.error_message is not None else set()
    assert set(status.to_dict()) == expected


@settings(max_examples=200, deadline=None)
@given(
    st.fixed_dictionaries({}, optional=dict.fromkeys(WIRE_KEYS, json_values))
    | st.dictionaries(st.sampled_from(WIRE_KEYS) | st.text(max_size=3), json_values)
    | json_values
)
def test_from_dict_raises_only_invalid_status(data: object) -> None:
    # Whatever arrives, the answer is a valid status or InvalidStatus; nothing else escapes.
    try:
        status = TaskStatus.from_dict(data)
    except InvalidStatus:
        return
    assert TaskStatus.from_dict(status.to_dict()) == status


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40) | st.binary(max_size=40))
def test_from_json_raises_only_invalid_status(text: str | bytes) -> None:
    with contextlib.suppress(InvalidStatus):
        TaskStatus.from_json(text)
