"""The callback that watches one recipe's L-BFGS runs: its deadline, validation checks, best parameters.

Every :data:`CHECK_EVERY` iterations the validation nRMSE is evaluated and the best parameters seen
(over all the recipe's starts) are kept; a start stops after :data:`PATIENCE` checks that did not
lower its own best by the relative :data:`GAIN` (when ``patience`` is not None), at its share of the
recipe's time (the time left split evenly over the starts left) — already when the next iteration,
expected to last as long as the longest so far, would end after it — or once the floor is reached.
"""
from __future__ import annotations

import math
import time

import numpy as np

from ..runtime.callbacks import Callback

__all__ = ["Monitor", "host", "CHECK_EVERY", "PATIENCE", "GAIN"]

#: Validation checks: every CHECK_EVERY L-BFGS iterations; a start stops after PATIENCE checks that
#: did not lower its validation nRMSE by the relative GAIN.
CHECK_EVERY, PATIENCE, GAIN = 5, 5, 1e-3


def host(a) -> np.ndarray:
    """A NumPy array (CuPy arrays are copied to the host)."""
    return a.get() if hasattr(a, "get") else np.asarray(a)


class Monitor(Callback):
    """Deadline per start, validation checks, best parameters across starts."""

    def __init__(self, evaluate, end: float, starts: int, floor: float = 0.0, patience: int | None = PATIENCE):
        self.evaluate, self.end, self.left, self.floor = evaluate, end, max(starts, 1), floor
        self.patience = patience
        self.stop_at = end
        self.best, self.best_theta, self.iterations = math.inf, None, 0

    def on_train_begin(self, info):
        now = time.perf_counter()
        self.stop_at = now + max(self.end - now, 0.0) / self.left
        self.left = max(self.left - 1, 1)
        self.own, self.waited = math.inf, 0
        self.last, self.longest = now, 0.0

    def consider(self, theta) -> float:
        value = self.evaluate(theta)
        if value < self.best:
            self.best, self.best_theta = value, {k: host(v).copy() for k, v in theta.items()}
        return value

    def on_step(self, step, loss, theta):
        self.iterations += 1
        if (step + 1) % CHECK_EVERY == 0:
            value = self.consider(theta)
            if value < self.own * (1 - GAIN):
                self.own, self.waited = value, 0
            else:
                self.waited += 1
                if self.patience is not None and self.waited >= self.patience:
                    return True
        now = time.perf_counter()
        self.longest, self.last = max(self.longest, now - self.last), now
        return self.best <= self.floor or now + self.longest >= self.stop_at
