"""First-order optimizers on dicts of arrays (functional: inputs are never mutated).

``SGD`` (momentum), ``Adam`` and ``AdamW`` (decoupled weight decay), each with an optional
learning-rate ``schedule`` (:mod:`npdegen.runtime.schedules`) and gradient clipping
(``clip_norm``: global 2-norm, ``clip_value``: per entry). ``scale`` multiplies the learning rate:
training halves it when it backs off from a divergence.

Each optimizer's state (``state_dict`` / ``load_state_dict``) is a flat dict of arrays, so that a
checkpoint can save it and a resumed run continues bit for bit: the moments per parameter
(``m/<k>``, ``v/<k>`` or ``velocity/<k>``), the update count ``t``, ``scale`` when it is not 1, and ``sched/<name>`` for a schedule
with state (reduce-on-plateau).
"""
from __future__ import annotations

import numpy as np

from .schedules import Constant, clip_by_global_norm, clip_by_value

__all__ = ["make_optimizer", "Optimizer", "Adam", "AdamW", "SGD", "OPTIMIZERS"]


def _positive(name, value, allow_zero=False):
    if (not isinstance(value, (int, float, np.floating)) or isinstance(value, bool) or not np.isfinite(value)
            or value < 0 or (value == 0 and not allow_zero)):
        raise ValueError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} finite number, "
                         f"got {value!r}")
    return value


class Optimizer:
    """Shared parts: learning rate, schedule, clipping, the backoff ``scale`` and the update count."""
    name = "optimizer"

    def __init__(self, lr: float, schedule=None, clip_norm: float | None = None, clip_value: float | None = None):
        if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not lr > 0 or not np.isfinite(lr):
            raise ValueError(f"learning rate must be a positive finite number, got {lr!r}")
        self.lr, self.schedule = lr, schedule if schedule is not None else Constant()
        self.clip_norm = None if clip_norm is None else _positive("clip_norm", clip_norm)
        self.clip_value = None if clip_value is None else _positive("clip_value", clip_value)
        self.scale, self.t = 1.0, 0

    def current_lr(self) -> float:
        """The learning rate of the next update."""
        return self.lr * self.scale * self.schedule(self.t)

    def _clipped(self, grads, keys):
        if self.clip_value is not None:
            grads = clip_by_value(grads, self.clip_value, keys)
        if self.clip_norm is not None:
            grads = clip_by_global_norm(grads, self.clip_norm, keys)
        return grads

    def update(self, theta: dict, grads: dict, keys) -> dict:
        lr = self.current_lr()
        new = self._update(theta, self._clipped(grads, keys), keys, lr)
        self.t += 1
        return new

    def observe(self, metric: float):
        """End of an epoch: hand the metric to a reduce-on-plateau schedule."""
        if hasattr(self.schedule, "observe"):
            self.schedule.observe(metric)

    def _common_state(self) -> dict:
        state = {f"sched/{k}": v for k, v in getattr(self.schedule, "state_dict", dict)().items()}
        if self.scale != 1.0:
            state["scale"] = np.asarray(self.scale)
        return state

    def _load_common(self, state: dict):
        self.scale = float(state.get("scale", 1.0))
        self.t = int(state.get("t", self.t))
        sched = {k[6:]: v for k, v in state.items() if k.startswith("sched/")}
        if sched:
            self.schedule.load_state_dict(sched)


class SGD(Optimizer):
    """θ ← θ − lr·v,  v ← μ v + g (+ ``weight_decay``·θ in g): plain gradient descent for μ = 0."""
    name = "sgd"

    def __init__(self, lr: float, momentum: float = 0.0, weight_decay: float = 0.0, **common):
        super().__init__(lr, **common)
        self.momentum, self.weight_decay, self.velocity = momentum, _positive("weight_decay", weight_decay, True), {}

    def _update(self, theta, grads, keys, lr):
        new = dict(theta)
        for k in keys:
            g = grads[k] + self.weight_decay * theta[k] if self.weight_decay else grads[k]
            v = self.momentum * self.velocity[k] + g if k in self.velocity else g
            self.velocity[k] = v
            new[k] = theta[k] - lr * v
        return new

    def state_dict(self) -> dict:
        return {"t": np.asarray(self.t), **{f"velocity/{k}": v for k, v in self.velocity.items()},
                **self._common_state()}

    def load_state_dict(self, state: dict):
        self.velocity = {k.split("/", 1)[1]: v for k, v in state.items() if k.startswith("velocity/")}
        self._load_common(state)


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015): bias-corrected first and second moment estimates; ``weight_decay``
    adds ``weight_decay·θ`` to the gradient (L2, coupled; see :class:`AdamW` for the decoupled form)."""
    name = "adam"

    def __init__(self, lr: float, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0, **common):
        super().__init__(lr, **common)
        (self.b1, self.b2), self.eps = betas, eps
        self.weight_decay = _positive("weight_decay", weight_decay, True)
        self.m, self.v = {}, {}

    def _moments(self, k, g):
        self.m[k] = self.b1 * self.m[k] + (1 - self.b1) * g if k in self.m else (1 - self.b1) * g
        self.v[k] = self.b2 * self.v[k] + (1 - self.b2) * g * g if k in self.v else (1 - self.b2) * g * g

    def _update(self, theta, grads, keys, lr):
        t = self.t + 1
        new = dict(theta)
        c1, c2 = 1 - self.b1**t, 1 - self.b2**t
        for k in keys:
            g = grads[k] + self.weight_decay * theta[k] if self.weight_decay and self.name == "adam" else grads[k]
            self._moments(k, g)
            step = lr * (self.m[k] / c1) / (np.sqrt(self.v[k] / c2) + self.eps)
            new[k] = (self._decayed(theta[k], lr) - step).astype(theta[k].dtype, copy=False)
        return new

    def _decayed(self, value, lr):
        return value

    def state_dict(self) -> dict:
        return {"t": np.asarray(self.t), **{f"m/{k}": v for k, v in self.m.items()},
                **{f"v/{k}": v for k, v in self.v.items()}, **self._common_state()}

    def load_state_dict(self, state: dict):
        self.m = {k[2:]: v for k, v in state.items() if k.startswith("m/")}
        self.v = {k[2:]: v for k, v in state.items() if k.startswith("v/")}
        self._load_common(state)


class AdamW(Adam):
    """AdamW (Loshchilov & Hutter 2019): Adam with decoupled weight decay,
    ``θ ← θ − lr·wd·θ − lr·m̂/(√v̂ + ε)`` (the decay follows the schedule, not the moments)."""
    name = "adamw"

    def __init__(self, lr: float, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 1e-2, **common):
        super().__init__(lr, betas=betas, eps=eps, weight_decay=weight_decay, **common)

    def _decayed(self, value, lr):
        return value - lr * self.weight_decay * value if self.weight_decay else value


OPTIMIZERS = {"adam": Adam, "adamw": AdamW, "sgd": SGD}


def make_optimizer(name, lr: float, **kwargs):
    """An optimizer from its name (``"adam"``, ``"adamw"``, ``"sgd"``) or an :class:`Optimizer` itself."""
    if isinstance(name, Optimizer):
        if kwargs:
            raise ValueError(f"optimizer options {sorted(kwargs)} given with an optimizer object; set them on it")
        return name
    if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not lr > 0 or not np.isfinite(lr):
        raise ValueError(f"learning rate must be a positive finite number, got {lr!r}")
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose 'adam', 'adamw', 'sgd' or 'lbfgs'")
    return OPTIMIZERS[name](lr, **kwargs)
