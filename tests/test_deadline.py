"""voxproof.deadline: budgets on a monotonic clock, from seconds or a Lambda context."""

from __future__ import annotations

import math
import time

import pytest
from voxproof.deadline import Deadline
from watch import ManualClock


class LambdaContextStandIn:
    # The real context only exists inside the Lambda runtime; this has its one method used here.
    def __init__(self, remaining_ms: int) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def test_after_counts_down_on_its_clock_and_expires():
    clock = ManualClock()
    deadline = Deadline.after(2.0, clock=clock)
    assert deadline.remaining() == 2.0 and not deadline.expired()
    clock.now += 1.5
    assert deadline.remaining() == pytest.approx(0.5)
    clock.now += 0.5
    assert deadline.expired() and deadline.remaining() == 0.0
    clock.now += 10
    assert deadline.remaining() == 0.0  # never negative


def test_the_default_clock_is_monotonic_time():
    deadline = Deadline.after(5.0)
    assert deadline.clock is time.monotonic
    assert 4.0 < deadline.remaining() <= 5.0


@pytest.mark.parametrize("seconds", [-1.0, math.nan, math.inf, "5"])
def test_a_budget_must_be_finite_and_not_negative(seconds):
    with pytest.raises(ValueError):
        Deadline.after(seconds)


def test_from_lambda_context_keeps_a_margin():
    clock = ManualClock()
    deadline = Deadline.from_lambda_context(LambdaContextStandIn(29_000), 2.5, clock=clock)
    assert deadline.remaining() == pytest.approx(26.5)


def test_from_lambda_context_with_less_than_the_margin_left_is_already_over():
    deadline = Deadline.from_lambda_context(LambdaContextStandIn(800), 1.0, clock=ManualClock())
    assert deadline.remaining() == 0.0 and deadline.expired()


def test_from_lambda_context_refuses_a_negative_margin():
    with pytest.raises(ValueError):
        Deadline.from_lambda_context(LambdaContextStandIn(1000), -1.0)
