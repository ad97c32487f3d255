"""First-order optimizers on dicts of arrays (functional: inputs are never mutated).

Each optimizer's state (``state_dict`` / ``load_state_dict``) is a flat dict of arrays, so that a
checkpoint can save it and a resumed run continues bit for bit.
"""
from __future__ import annotations

import numpy as np

__all__ = ["make_optimizer", "Adam", "SGD"]


class SGD:
    """θ ← θ − lr·v,  v ← μ v + g  (plain gradient descent for μ = 0)."""

    def __init__(self, lr: float, momentum: float = 0.0):
        self.lr, self.momentum, self.velocity = lr, momentum, {}

    def update(self, theta: dict, grads: dict, keys) -> dict:
        new = dict(theta)
        for k in keys:
            v = self.momentum * self.velocity[k] + grads[k] if k in self.velocity else grads[k]
            self.velocity[k] = v
            new[k] = theta[k] - self.lr * v
        return new

    def state_dict(self) -> dict:
        return {f"velocity/{k}": v for k, v in self.velocity.items()}

    def load_state_dict(self, state: dict):
        self.velocity = {k.split("/", 1)[1]: v for k, v in state.items() if k.startswith("velocity/")}


class Adam:
    """Adam (Kingma & Ba 2015): bias-corrected first and second moment estimates."""

    def __init__(self, lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        self.lr, (self.b1, self.b2), self.eps = lr, betas, eps
        self.m, self.v, self.t = {}, {}, 0

    def update(self, theta: dict, grads: dict, keys) -> dict:
        self.t += 1
        new = dict(theta)
        c1, c2 = 1 - self.b1**self.t, 1 - self.b2**self.t
        for k in keys:
            g = grads[k]
            self.m[k] = self.b1 * self.m[k] + (1 - self.b1) * g if k in self.m else (1 - self.b1) * g
            self.v[k] = self.b2 * self.v[k] + (1 - self.b2) * g * g if k in self.v else (1 - self.b2) * g * g
            step = self.lr * (self.m[k] / c1) / (np.sqrt(self.v[k] / c2) + self.eps)
            new[k] = (theta[k] - step).astype(theta[k].dtype, copy=False)
        return new

    def state_dict(self) -> dict:
        return {"t": np.asarray(self.t), **{f"m/{k}": v for k, v in self.m.items()},
                **{f"v/{k}": v for k, v in self.v.items()}}

    def load_state_dict(self, state: dict):
        self.t = int(state["t"])
        self.m = {k[2:]: v for k, v in state.items() if k.startswith("m/")}
        self.v = {k[2:]: v for k, v in state.items() if k.startswith("v/")}


def make_optimizer(name: str, lr: float, **kwargs):
    if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not lr > 0 or not np.isfinite(lr):
        raise ValueError(f"learning rate must be a positive finite number, got {lr!r}")
    if name == "adam":
        return Adam(lr, **kwargs)
    if name == "sgd":
        return SGD(lr, **kwargs)
    raise ValueError(f"unknown optimizer {name!r}; choose 'adam' or 'sgd'")
