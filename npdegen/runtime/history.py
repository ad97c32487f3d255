"""What every training driver shares: :class:`TrainHistory`, :class:`TrainingDiverged` and the
monitor hook (used by :mod:`npdegen.runtime.train` and :mod:`npdegen.runtime.train_lbfgs`)."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

__all__ = ["TrainHistory", "TrainingDiverged", "run_monitor", "restore_best"]


class TrainingDiverged(FloatingPointError):
    """Training met a non-finite value. ``step`` and ``where`` say when; ``theta`` holds the last
    finite parameters (for a diagnosis, e.g. their stability certificate)."""

    def __init__(self, message: str, step: int, where: str, theta: dict | None):
        super().__init__(message)
        self.step, self.where, self.theta = step, where, theta


@dataclass
class TrainHistory:
    """``loss``: one value per optimizer step (for layerwise: the current layer's loss; for
    L-BFGS: per iteration, the first value at the start); ``layer_loss``: ``0.5 Σ (z_t − y)²``
    for t = 0 … L with the trained parameters (None for an iterable data source); ``val_loss``:
    the validation loss at the end of each epoch (L-BFGS: each iteration); ``backoffs``: the steps
    at which a divergence was backed off; ``stopped``: the step after which a callback stopped
    training; ``info``: optimizer details (L-BFGS: iterations, evaluations, overflows, message,
    levels); ``seconds``: wall time."""
    method: str
    loss: list = field(default_factory=list)
    layer_loss: np.ndarray | None = None
    seconds: float = 0.0
    val_loss: list = field(default_factory=list)
    backoffs: list = field(default_factory=list)
    stopped: int | None = None
    info: dict = field(default_factory=dict)

    @property
    def final_loss(self) -> float:
        """``0.5 Σ (z_L − y)²`` of the returned parameters (the last step's loss without ``layer_loss``)."""
        return float(self.layer_loss[-1]) if self.layer_loss is not None else float(self.loss[-1])


def run_monitor(monitor, theta):
    """Issue the message of ``monitor(theta)`` (if any) as a RuntimeWarning."""
    if monitor is not None:
        message = monitor(theta)
        if message:
            warnings.warn(message, RuntimeWarning, stacklevel=3)


def restore_best(callbacks, theta):
    """The best parameters an early-stopping callback (``restore_best``) kept, else ``theta``."""
    for cb in callbacks:
        if getattr(cb, "restore_best", False) and getattr(cb, "stopped_epoch", None) is not None and cb.best_theta:
            theta = cb.best_theta
    return theta
