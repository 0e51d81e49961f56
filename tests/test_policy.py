"""RetryPolicy: how many retries, how long between them, which errors retry."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskfsm import InvalidArgument, RetryPolicy


def test_defaults_are_livepeer_compatible() -> None:
    p = RetryPolicy()
    assert p.max_retries == 2
    assert (p.initial_delay, p.multiplier, p.max_delay) == (30.0, 2.0, 180.0)
    assert p.jitter is False
    assert p.non_retryable == ()


# -- allows ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("max_retries", "retries", "allowed"),
    [
        (None, 0, True),
        (None, 10**9, True),
        (0, 0, False),
        (0, 1, False),
        (2, 0, True),
        (2, 1, True),
        (2, 2, False),
        (2, 3, False),
    ],
)
def test_allows(max_retries: int | None, retries: int, allowed: bool) -> None:
    assert RetryPolicy(max_retries=max_retries).allows(retries) is allowed


# -- delay ----------------------------------------------------------------------------


def test_delay_default_schedule() -> None:
    p = RetryPolicy()
    assert [p.delay(n) for n in range(1, 7)] == [30.0, 60.0, 120.0, 180.0, 180.0, 180.0]


def test_delay_before_first_retry_is_zero() -> None:
    p = RetryPolicy()
    assert p.delay(0) == 0.0
    assert p.delay(-3) == 0.0


def test_delay_growth_and_cap() -> None:
    p = RetryPolicy(initial_delay=1.0, multiplier=3.0, max_delay=50.0)
    assert [p.delay(n) for n in range(1, 6)] == [1.0, 3.0, 9.0, 27.0, 50.0]


def test_delay_constant_when_multiplier_is_one() -> None:
    p = RetryPolicy(initial_delay=5.0, multiplier=1.0, max_delay=60.0)
    assert [p.delay(n) for n in (1, 2, 100, 10**6)] == [5.0] * 4


@pytest.mark.parametrize("n", [1030, 10**6, 10**12, 10**400])
@pytest.mark.parametrize("multiplier", [2.0, 2, 1.5])
def test_delay_is_overflow_safe_and_fast_for_huge_n(n: int, multiplier: float) -> None:
    # Bug fixed: an int multiplier computed multiplier ** (n - 1) as an exact integer,
    # which never finished for n = 10**12.
    p = RetryPolicy(initial_delay=30, multiplier=multiplier, max_delay=180)
    assert p.delay(n) == 180.0
    assert type(p.delay(n)) is float


@pytest.mark.parametrize("n", [1, 2, 1030, 10**12, 10**400])
def test_zero_initial_delay_stays_zero(n: int) -> None:
    # Bug fixed: past the float overflow the delay jumped to max_delay instead of 0.
    assert RetryPolicy(initial_delay=0, max_delay=10).delay(n) == 0.0


def test_multiplier_one_with_astronomical_n() -> None:
    # 1.0 ** (10**400) cannot be computed as a float; the delay is still initial_delay.
    assert RetryPolicy(initial_delay=5, multiplier=1, max_delay=60).delay(10**400) == 5.0


@settings(max_examples=200, deadline=None)
@given(
    initial=st.floats(min_value=0, max_value=1e6),
    multiplier=st.floats(min_value=1, max_value=10),
    extra=st.floats(min_value=0, max_value=1e6),
    n=st.integers(min_value=1, max_value=10**6),
)
def test_delay_formula(initial: float, multiplier: float, extra: float, n: int) -> None:
    p = RetryPolicy(initial_delay=initial, multiplier=multiplier, max_delay=initial + extra)
    d = p.delay(n)
    assert 0.0 <= d <= p.max_delay
    assert p.delay(1) == initial
    assert p.delay(n + 1) >= d  # never shrinks
    try:
        expected = min(p.max_delay, initial * multiplier ** (n - 1))
    except OverflowError:
        expected = p.max_delay if initial else 0.0
    assert d == pytest.approx(expected, rel=1e-9)


class _Draws:
    """An injected random source returning the given values in turn."""

    def __init__(self, *values: float) -> None:
        self.values = list(values)
        self.calls = 0

    def __call__(self) -> float:
        self.calls += 1
        return self.values.pop(0)


def test_jitter_scales_the_base_by_the_injected_draw() -> None:
    draws = _Draws(0.0, 0.5, 0.999999)
    p = RetryPolicy(jitter=True, random=draws)
    assert p.delay(1) == 0.0
    assert p.delay(2) == 30.0
    assert p.delay(3) == pytest.approx(120.0 * 0.999999)
    assert draws.calls == 3


def test_jitter_does_not_draw_before_first_retry() -> None:
    draws = _Draws()
    assert RetryPolicy(jitter=True, random=draws).delay(0) == 0.0
    assert draws.calls == 0


def test_no_jitter_never_draws() -> None:
    draws = _Draws()
    assert RetryPolicy(random=draws).delay(2) == 60.0
    assert draws.calls == 0


@settings(max_examples=200, deadline=None)
@given(n=st.integers(min_value=1, max_value=50), draw=st.floats(min_value=0, max_value=1))
def test_jitter_within_zero_and_base(n: int, draw: float) -> None:
    base = RetryPolicy().delay(n)
    d = RetryPolicy(jitter=True, random=lambda: draw).delay(n)
    assert 0.0 <= d <= base


def test_jitter_with_the_default_random_source_stays_in_range() -> None:
    p = RetryPolicy(jitter=True)
    assert all(0.0 <= p.delay(3) <= 120.0 for _ in range(200))


def test_random_source_is_not_part_of_equality() -> None:
    assert RetryPolicy(random=lambda: 0.5) == RetryPolicy()


# -- validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_retries": -1}, "max_retries must be None or a non-negative int, got -1"),
        ({"max_retries": 1.0}, "max_retries must be None or a non-negative int, got 1.0"),
        ({"max_retries": True}, "max_retries must be None or a non-negative int, got True"),
        ({"initial_delay": -1.0}, "initial_delay must not be negative, got -1.0"),
        ({"initial_delay": math.nan}, "initial_delay must be a finite number, got nan"),
        ({"initial_delay": "30"}, "initial_delay must be a finite number, got '30'"),
        ({"multiplier": 0.5}, "multiplier must be >= 1, got 0.5"),
        ({"multiplier": -2.0}, "multiplier must not be negative, got -2.0"),
        ({"multiplier": math.inf}, "multiplier must be a finite number, got inf"),
        ({"max_delay": 10.0}, r"max_delay must be >= initial_delay \(30.0\), got 10.0"),
        ({"max_delay": -1.0}, "max_delay must not be negative, got -1.0"),
        ({"max_delay": True}, "max_delay must be a finite number, got True"),
        ({"non_retryable": (ValueError, "KeyError")}, "non_retryable must hold exception types"),
        ({"non_retryable": int}, "non_retryable must hold exception types, got <class 'int'>"),
        ({"non_retryable": ValueError("x")}, "non_retryable must hold exception types"),
    ],
)
def test_validation(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message) as info:
        RetryPolicy(**kwargs)
    assert isinstance(info.value, ValueError)


def test_valid_edge_settings() -> None:
    p = RetryPolicy(max_retries=0, initial_delay=0, multiplier=1, max_delay=0)
    assert p.delay(5) == 0.0
    assert RetryPolicy(max_retries=None).allows(10**12)


# -- classification -------------------------------------------------------------------


class Unsupported(Exception):
    pass


class UnsupportedCodec(Unsupported):
    pass


def test_non_retryable_accepts_one_type_or_a_collection() -> None:
    assert RetryPolicy(non_retryable=Unsupported).non_retryable == (Unsupported,)
    assert RetryPolicy(non_retryable=[Unsupported, KeyError]).non_retryable == (
        Unsupported,
        KeyError,
    )


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        ("connection reset", True),  # a message string is retryable
        ("Unsupported", True),  # ... even when it spells a non-retryable type's name
        (TimeoutError("slow"), True),
        (Unsupported("codec"), False),
        (UnsupportedCodec("h265"), False),  # subclasses are matched too
        (KeyError("asset"), False),
    ],
)
def test_is_retryable_classifies_by_type(error: BaseException | str, retryable: bool) -> None:
    p = RetryPolicy(non_retryable=(Unsupported, KeyError))
    assert p.is_retryable(error) is retryable
    assert p.is_retryable(error, None) is retryable


@pytest.mark.parametrize(
    "error", ["boom", TimeoutError("slow"), Unsupported("codec"), UnsupportedCodec("x")]
)
def test_explicit_retryable_overrides_classification(error: BaseException | str) -> None:
    p = RetryPolicy(non_retryable=(Unsupported,))
    assert p.is_retryable(error, True) is True
    assert p.is_retryable(error, False) is False


def test_everything_retryable_without_non_retryable_types() -> None:
    assert RetryPolicy().is_retryable(ValueError("x")) is True
    assert RetryPolicy().is_retryable(KeyboardInterrupt()) is True
