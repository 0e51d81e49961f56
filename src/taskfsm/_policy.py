"""`RetryPolicy`: how many retries a task gets, how long it waits, which errors retry."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import attrs

from ._errors import InvalidArgument


def _non_negative(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidArgument(f"{attribute.name} must be a finite number, got {value!r}")
    if value < 0:
        raise InvalidArgument(f"{attribute.name} must not be negative, got {value!r}")


def _max_retries(_: object, __: object, value: int | None) -> None:
    if value is not None and (type(value) is not int or value < 0):
        raise InvalidArgument(f"max_retries must be None or a non-negative int, got {value!r}")


def _exception_types(value: object) -> tuple[type[BaseException], ...]:
    types = tuple(value) if isinstance(value, (tuple, list, set, frozenset)) else (value,)
    for t in types:
        if not (isinstance(t, type) and issubclass(t, BaseException)):
            raise InvalidArgument(f"non_retryable must hold exception types, got {t!r}")
    return types


@attrs.frozen
class RetryPolicy:
    """When a failed task is retried, and after how long.

    Args:
        max_retries: Retries allowed before a failure is final; None is unlimited, 0 never
            retries. The default 2 is the Livepeer Studio server's.
        initial_delay: Seconds before the first retry.
        multiplier: Growth of the delay per retry (>= 1).
        max_delay: Cap on the delay in seconds (>= initial_delay).
        jitter: Draw each delay uniformly from [0, delay] ("full jitter").
        non_retryable: Exception types whose failures are never retried.
        random: The source of jitter draws, ``() -> float`` in [0, 1); injectable for tests.

    Raises:
        InvalidArgument: A setting is out of range.
    """

    max_retries: int | None = attrs.field(default=2, validator=_max_retries)
    initial_delay: float = attrs.field(default=30.0, validator=_non_negative)
    multiplier: float = attrs.field(default=2.0, validator=_non_negative)
    max_delay: float = attrs.field(default=180.0, validator=_non_negative)
    jitter: bool = False
    non_retryable: tuple[type[BaseException], ...] = attrs.field(
        default=(), converter=_exception_types
    )
    random: Callable[[], float] = attrs.field(default=random.random, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.multiplier < 1:
            raise InvalidArgument(f"multiplier must be >= 1, got {self.multiplier!r}")
        if self.max_delay < self.initial_delay:
            raise InvalidArgument(
                f"max_delay must be >= initial_delay ({self.initial_delay!r}), "
                f"got {self.max_delay!r}"
            )

    def allows(self, retries: int) -> bool:
        """May a task already retried *retries* times be retried again?"""
        return self.max_retries is None or retries < self.max_retries

    def delay(self, retry: int) -> float:
        """Seconds to wait before the *retry*-th retry (1-based); 0.0 for *retry* < 1."""
        if retry < 1:
            return 0.0
        if self.initial_delay == 0 or self.multiplier == 1:
            base = float(self.initial_delay)
        else:
            # Float power: an int multiplier with a huge retry would build a giant integer.
            try:
                growth = float(self.multiplier) ** (retry - 1)
            except OverflowError:  # multiplier > 1 here, so the delay is past any cap
                growth = math.inf
            base = float(min(self.max_delay, self.initial_delay * growth))
        return base * self.random() if self.jitter else base

    def is_retryable(self, error: BaseException | str, retryable: bool | None = None) -> bool:
        """Classify a failure: an explicit *retryable* wins; else an exception is retryable
        unless it is one of `non_retryable`, and a message string is retryable."""
        if retryable is not None:
            return retryable
        return not isinstance(error, self.non_retryable)
