"""Learning-rate schedules and gradient clipping for the first-order optimizers.

A schedule is a multiplier of the base learning rate as a function of the number of updates
already taken (``factor(t)``, ``t = 0, 1, …``); any callable ``t -> float`` is one too.
:class:`ReduceOnPlateau` also observes a metric (the epoch's mean training loss, or the validation
loss when there is a validation set) at the end of each epoch; its state is saved in checkpoints.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["Constant", "Cosine", "StepDecay", "ReduceOnPlateau", "clip_by_global_norm", "clip_by_value"]


class Constant:
    """``factor(t) = 1``."""

    def __call__(self, t: int) -> float:
        return 1.0

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict):
        pass


class Cosine(Constant):
    """Cosine annealing from 1 to ``floor`` over ``total`` updates (then ``floor``), after a linear
    ``warmup`` from ``1/warmup``: ``floor + (1 − floor)·½(1 + cos(π t/total))``."""

    def __init__(self, total: int, floor: float = 0.0, warmup: int = 0):
        if not isinstance(total, int) or total < 1:
            raise ValueError(f"Cosine: total must be a positive integer, got {total!r}")
        self.total, self.floor, self.warmup = total, float(floor), int(warmup)

    def __call__(self, t: int) -> float:
        if t < self.warmup:
            return (t + 1) / self.warmup
        s = min(t - self.warmup, self.total) / self.total
        return self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * s))


class StepDecay(Constant):
    """``factor(t) = gamma ** (t // every)``: multiply the rate by ``gamma`` every ``every`` updates."""

    def __init__(self, every: int, gamma: float = 0.1):
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"StepDecay: every must be a positive integer, got {every!r}")
        self.every, self.gamma = every, float(gamma)

    def __call__(self, t: int) -> float:
        return self.gamma ** (t // self.every)


class ReduceOnPlateau(Constant):
    """Multiply the rate by ``factor`` when the observed metric has not improved by a relative
    ``threshold`` for ``patience`` epochs (down to ``floor``)."""

    def __init__(self, factor: float = 0.5, patience: int = 10, threshold: float = 1e-4, floor: float = 1e-6):
        if not 0 < factor < 1:
            raise ValueError(f"ReduceOnPlateau: factor must lie in (0, 1), got {factor!r}")
        self.factor, self.patience, self.threshold, self.floor = float(factor), int(patience), threshold, floor
        self.best, self.wait, self.current = math.inf, 0, 1.0

    def __call__(self, t: int) -> float:
        return self.current

    def observe(self, metric: float):
        if metric < self.best * (1 - self.threshold):
            self.best, self.wait = float(metric), 0
            return
        self.wait += 1
        if self.wait > self.patience:
            self.current, self.wait = max(self.current * self.factor, self.floor), 0

    def state_dict(self) -> dict:
        return {"best": np.asarray(self.best), "wait": np.asarray(self.wait), "current": np.asarray(self.current)}

    def load_state_dict(self, state: dict):
        self.best, self.wait, self.current = float(state["best"]), int(state["wait"]), float(state["current"])


def clip_by_global_norm(grads: dict, max_norm: float, keys) -> dict:
    """``grads`` scaled so that the 2-norm over all trained entries is at most ``max_norm``."""
    norm = math.sqrt(sum(float(np.sum(np.square(grads[k], dtype=np.float64))) for k in keys))
    if not norm > max_norm:
        return grads
    scale = max_norm / norm
    return {**grads, **{k: (grads[k] * scale).astype(grads[k].dtype, copy=False) for k in keys}}


def clip_by_value(grads: dict, limit: float, keys) -> dict:
    """``grads`` with every trained entry clipped to ``[−limit, limit]``."""
    return {**grads, **{k: np.clip(grads[k], -limit, limit) for k in keys}}
