"""Test helpers that watch real parts instead of replacing them: a clock moved by hand, and
the real engine with every call recorded."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


class ManualClock:
    """A monotonic clock that only moves when the test (or a watched engine) moves it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class WatchedEngine:
    """The real engine; each ``infer`` is recorded (its id count) and may advance a clock.

    Parameters
    ----------
    engine:
        The real ``VitsEngine`` (the model runs for every call).
    clock, cost:
        If given, each call advances ``clock`` by ``cost(len(ids))`` seconds: a deterministic
        stand-in for wall time, so deadline tests do not depend on the machine's load.
    gate:
        If given, each call waits for this event first (to hold the voice busy).
    """

    def __init__(self, engine: Any, *, clock: ManualClock | None = None,
                 cost: Callable[[int], float] | None = None,
                 gate: threading.Event | None = None) -> None:
        self._engine = engine
        self._clock = clock
        self._cost = cost
        self._gate = gate
        self.calls: list[int] = []
        self.entered = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def infer(self, ids: Sequence[int], **kwargs: Any) -> np.ndarray:
        self.entered.set()
        if self._gate is not None:
            self._gate.wait(timeout=30)
        self.calls.append(len(ids))
        audio = self._engine.infer(ids, **kwargs)
        if self._clock is not None and self._cost is not None:
            self._clock.advance(self._cost(len(ids)))
        return audio
