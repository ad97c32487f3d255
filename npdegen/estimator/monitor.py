"""The callback that watches one recipe's L-BFGS runs: its deadline, validation checks, best parameters.

Every :data:`CHECK_EVERY` iterations the validation nRMSE is evaluated and the best parameters seen
(over all the recipe's starts) are kept; a start stops after :data:`PATIENCE` checks that did not
lower its own best by the relative :data:`GAIN` or :data:`FLAT` iterations that did not lower its
training loss (both when ``patience`` is not None), at its share of the
recipe's time (the time left split evenly over the starts left) — already when the next iteration,
expected to last as long as the longest so far, would end after it — or once the floor is reached.
The first iteration of a start is not a measure of the next: it also holds L-BFGS's set-up (the
start's loss and the Gauss–Newton probes, ~13 loss evaluations; on burgers-nu0.1's 6,000-layer flux
layer 14 s against ~1 s per later iteration, so counting it stopped every start after its first
step, at validation 0.10, where 8 more iterations reach 8e-4): after it the start stops only once its
share is spent, and the later iterations set the expected length.

:attr:`Monitor.improving` says whether the start that found the best parameters was still improving
when it stopped (the search's refine rounds train such fits on).

With a ``certify(theta) -> bool`` callable it also keeps the best **certified** parameters seen
(:mod:`npdegen.estimator.choice`): each new best is certified while certifying has taken at most
:data:`CERTIFY_SHARE` of the time since the monitor began (a candidate not checked is not
certified); :meth:`Monitor.result` returns the best certified parameters when their validation nRMSE
is within ``CERTIFIED_WITHIN`` of the best, else the best (a per-site fit that drifts into local
growth late in its run keeps its last stable checkpoint).

:func:`levels` and :func:`affordable` size a recipe's L-BFGS run to its time (coarse-to-fine fits);
:func:`worth_starting` says whether a further start's set-up and first iterations fit in the time left.
"""
from __future__ import annotations

import math
import time

import numpy as np

from ..runtime.callbacks import Callback
from ..runtime.multilevel import hierarchy
from ..runtime.train_lbfgs import _periodic

__all__ = ["Monitor", "host", "levels", "affordable", "worth_starting", "FLOOR", "CHECK_EVERY", "PATIENCE", "GAIN"]

#: Validation nRMSE at which a recipe stops: the data are matched to the dtype's rounding.
FLOOR = {"float64": 1e-12, "float32": 1e-5}
#: Validation checks: every CHECK_EVERY L-BFGS iterations; a start stops after PATIENCE checks that
#: did not lower its validation nRMSE by the relative GAIN.
CHECK_EVERY, PATIENCE, GAIN = 5, 5, 1e-3
#: A start (with patience) also stops after FLAT iterations in a row that lowered its training loss by
#: less than the relative LEVEL: L-BFGS is at its rounding floor, where a line search can spend
#: tens of evaluations failing (the 6,000-layer flux fit: one such iteration took 24 s, 20 times the others).
FLAT, LEVEL = 2, 1e-10
#: At most this share of a recipe's time goes to certifying its checkpoints.
CERTIFY_SHARE = 0.1


def host(a) -> np.ndarray:
    """A NumPy array (CuPy arrays are copied to the host)."""
    return a.get() if hasattr(a, "get") else np.asarray(a)


class Monitor(Callback):
    """Deadline per start, validation checks, best parameters across starts."""

    def __init__(self, evaluate, end: float, starts: int, floor: float = 0.0, patience: int | None = PATIENCE,
                 certify=None):
        self.evaluate, self.end, self.left, self.floor = evaluate, end, max(starts, 1), floor
        self.patience, self.certify = patience, certify
        self.stop_at = end
        self.best, self.best_theta, self.iterations = math.inf, None, 0
        self.stable, self.stable_theta = math.inf, None          # the best certified checkpoint
        self.began, self.certifying = time.perf_counter(), 0.0
        self.start, self.best_start, self.settled = -1, -1, set()  # starts stopped on a plateau

    def on_train_begin(self, info):
        now = time.perf_counter()
        self.start += 1
        self.stop_at = now + max(self.end - now, 0.0) / self.left
        self.left = max(self.left - 1, 1)
        self.own, self.waited = math.inf, 0
        self.last, self.longest, self.steps = now, 0.0, 0     # steps: iterations of this start
        self.loss, self.flat = math.inf, 0

    def consider(self, theta) -> float:
        value = self.evaluate(theta)
        if value < self.best:
            self.best, self.best_theta = value, {k: host(v).copy() for k, v in theta.items()}
            self.best_start = self.start
        if (self.certify is not None and value < self.stable
                and self.certifying <= CERTIFY_SHARE * (time.perf_counter() - self.began)):
            t0 = time.perf_counter()
            ok = self.certify(theta)
            self.certifying += time.perf_counter() - t0
            if ok:
                self.stable, self.stable_theta = value, {k: host(v).copy() for k, v in theta.items()}
        return value

    @property
    def improving(self) -> bool:
        """Whether the start that found the best parameters was still improving when it stopped: trained,
        not stopped on a plateau (patience or a flat loss), above the floor."""
        return self.best_start >= 0 and self.best_start not in self.settled and self.best > self.floor

    def result(self, certified_within: float) -> tuple:
        """``(validation nRMSE, parameters)``: the best certified checkpoint when it is within the
        factor ``certified_within`` of the best, else the best."""
        if self.stable_theta is not None and self.stable <= certified_within * self.best + 1e-12:
            return self.stable, self.stable_theta
        return self.best, self.best_theta

    def on_step(self, step, loss, theta):
        self.iterations += 1
        self.flat = self.flat + 1 if loss >= self.loss * (1 - LEVEL) else 0
        self.loss = min(self.loss, loss)
        if self.patience is not None and self.flat >= FLAT:
            self.settled.add(self.start)
            return True
        if (step + 1) % CHECK_EVERY == 0:
            value = self.consider(theta)
            if value < self.own * (1 - GAIN):
                self.own, self.waited = value, 0
            else:
                self.waited += 1
                if self.patience is not None and self.waited >= self.patience:
                    self.settled.add(self.start)
                    return True
        now = time.perf_counter()
        interval, self.last, self.steps = now - self.last, now, self.steps + 1
        if self.steps == 1:                       # the set-up and the first iteration (module docstring)
            return self.best <= self.floor or now >= self.stop_at
        self.longest = max(self.longest, interval)
        return self.best <= self.floor or now + self.longest >= self.stop_at


#: Cost model of a coarse-to-fine L-BFGS fit (see :func:`affordable`).
EVALUATIONS_PER_ITERATION, PROBES = 1.5, 8


def levels(net) -> int:
    """The coarse-to-fine levels ``npdegen.train``'s L-BFGS runs for ``net`` (1: one level)."""
    return len(hierarchy(dict(net.shapes), _periodic(net, list(net.shapes))))


def affordable(levels: int, seconds: float, evaluation: float, most: int) -> int:
    """L-BFGS iterations that fit in ``seconds`` for a coarse-to-fine fit of ``levels`` levels
    (``npdegen.train`` splits its iterations over the levels, so they must be sized to the time, or
    the time ends on a coarse level): about :data:`EVALUATIONS_PER_ITERATION` loss evaluations per
    iteration, plus :data:`PROBES` Gauss–Newton probes per level."""
    evaluations = seconds / max(evaluation, 1e-9) - levels * PROBES - 2
    return int(min(most, max(5 * levels, evaluations / EVALUATIONS_PER_ITERATION)))


#: A start of a recipe needs time for its set-up and this many iterations (:func:`worth_starting`).
FIRST_ITERATIONS = 10


def worth_starting(levels: int, seconds: float, evaluation: float) -> bool:
    """Whether ``seconds`` afford a start's set-up (the start's loss and :data:`PROBES` Gauss–Newton
    probes per level) and :data:`FIRST_ITERATIONS` iterations, at ``evaluation`` seconds per loss
    evaluation (:func:`affordable`'s model). The search trains a recipe from as many of its
    best-screened starts as its time affords so (at least one), and begins no further start without
    it: the set-up cannot be interrupted, and on burgers-nu0.1's 6,000-layer flux layer (~1.2 s per
    evaluation, set-up ~15 s) two starts sharing 32 s each stopped after a few iterations, at
    validation 4.3e-3, where one start reaches 8e-4 in 26 s."""
    needed = levels * PROBES + 2 + FIRST_ITERATIONS * EVALUATIONS_PER_ITERATION
    return seconds >= needed * max(evaluation, 0.0)
