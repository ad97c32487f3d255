"""The data a search fits (:class:`Problem`) and a fitted recipe (:class:`Fit`), as
:mod:`npdegen.estimator.search` walks the recipe space."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .recipes import Recipe

__all__ = ["Problem", "Fit"]


@dataclass
class Problem:
    """The split data on a grid: ``(samples, *grid)`` arrays, spacing per axis, compile options."""
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    spacing: tuple
    boundary: object = "periodic"
    dtype: str = "float64"
    backend: str = "auto"
    estimate: object = None
    pooled: bool = False           # select by the pooled nRMSE (and train relative-loss kinds on the mean)

    @property
    def grid(self) -> tuple:
        return tuple(self.x_train.shape[1:])


@dataclass
class Fit:
    """A fitted recipe: its layer, compiled network, best parameters and errors."""
    recipe: Recipe
    layer: object
    net: object
    theta: dict
    train_nrmse: float             # on the pairs it trained on (a kind may train on fewer: ``samples``)
    val_nrmse: float
    seconds: float = 0.0
    iterations: int = 0
    kind: object = None            # the kind prepared for the data (its physics and bounds)
    certificate: object = None     # :class:`~npdegen.estimator.choice.Certificate`
    improving: bool = False        # its best start was cut short by time, not stopped on a plateau

    @property
    def n_params(self) -> int:
        return int(sum(np.size(v) for v in self.theta.values()))
