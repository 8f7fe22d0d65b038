"""Time budgets: the moment on a monotonic clock by which a request must be answered.

A ``Deadline`` is a point on a clock (``time.monotonic`` unless a test gives its own), so wall
clock jumps never stretch or shrink a budget. Entry points make one (the CLI from
``--deadline-s``, a Lambda handler from its context minus a margin) and hand it down; the voice
uses it to refuse work it cannot finish and to stop between sentences
(:class:`~voxproof.errors.DeadlineTooShort`, :class:`~voxproof.errors.DeadlineExceeded`).

Example:
    >>> d = Deadline.after(2.0)
    >>> 1.9 < d.remaining() <= 2.0
    True
    >>> ticks = iter([10.0, 10.5])          # a clock a test controls
    >>> d = Deadline.after(1.0, clock=lambda: next(ticks))
    >>> d.remaining()
    0.5
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

Clock = Callable[[], float]
"""Seconds on a monotonic clock."""


class LambdaContext(Protocol):
    """The one thing a Lambda context must offer here."""

    def get_remaining_time_in_millis(self) -> int: ...


@dataclass(frozen=True)
class Deadline:
    """Work must be done by ``at`` seconds on ``clock``."""

    at: float
    """The deadline, in ``clock`` seconds."""
    clock: Clock = field(default=time.monotonic, repr=False, compare=False)
    """Where time is read (``time.monotonic``; tests pass a clock they advance)."""

    @classmethod
    def after(cls, seconds: float, *, clock: Clock = time.monotonic) -> Deadline:
        """A deadline ``seconds`` from now (``seconds`` finite and >= 0)."""
        if not isinstance(seconds, int | float) or not math.isfinite(seconds) or seconds < 0:
            raise ValueError("a time budget is a finite number of seconds >= 0")
        return cls(clock() + float(seconds), clock)

    @classmethod
    def from_lambda_context(
        cls, context: LambdaContext, margin_s: float, *, clock: Clock = time.monotonic
    ) -> Deadline:
        """The invocation's remaining time minus ``margin_s`` (kept for answering and cleanup).

        Parameters
        ----------
        context:
            The Lambda context object (``get_remaining_time_in_millis()``).
        margin_s:
            Seconds held back for work after synthesis (marking, storing, the response).
        """
        if not math.isfinite(margin_s) or margin_s < 0:
            raise ValueError("margin_s is a finite number of seconds >= 0")
        remaining = context.get_remaining_time_in_millis() / 1000.0
        return cls.after(max(0.0, remaining - margin_s), clock=clock)

    def now(self) -> float:
        """The current time on this deadline's clock."""
        return self.clock()

    def remaining(self) -> float:
        """Seconds left (0.0 once passed)."""
        return max(0.0, self.at - self.clock())

    def expired(self) -> bool:
        """True once the deadline has passed."""
        return self.clock() >= self.at
