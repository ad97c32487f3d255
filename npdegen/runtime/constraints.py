"""Constraints applied after each first-order update (``npdegen.train(..., bounds=…, constraint=…)``).

* :class:`Box` clips parameters to ``bounds={"D": (0, None)}`` (L-BFGS uses them as L-BFGS-B
  box constraints instead).
* :class:`StableRegion` keeps the parameters inside the certified stable region: when the
  update leaves it (its ``certify(theta)`` is False; npdegen.train passes
  ``npdegen.stability(net, theta).stable``), the update is shortened
  along its direction, by bisection, to the largest stable fraction (so ``θ_prev + s·Δθ`` with
  ``s ∈ [0, 1]``). Starting from a stable point, every iterate is then certified stable. A start
  outside the region is left alone (warned once).
A constraint is any callable ``(previous_theta, new_theta) -> theta``.
"""
from __future__ import annotations

import warnings

import numpy as np

__all__ = ["Box", "StableRegion", "compose"]


class Box:
    """Clip ``theta[k]`` to ``bounds[k] = (low, high)`` (``None``: unbounded)."""

    def __init__(self, bounds: dict, names):
        unknown = set(bounds) - set(names)
        if unknown:
            raise ValueError(f"bounds: unknown parameter(s) {sorted(unknown)}; the network has {sorted(names)}")
        for k, b in bounds.items():
            if not (isinstance(b, (tuple, list)) and len(b) == 2):
                raise ValueError(f"bounds[{k!r}] must be a pair (low, high) with None for no bound, got {b!r}")
            lo, hi = b
            if lo is not None and hi is not None and lo > hi:
                raise ValueError(f"bounds[{k!r}]: low {lo} > high {hi}")
        self.bounds = dict(bounds)

    def __call__(self, previous, theta):
        out = dict(theta)
        for k, (lo, hi) in self.bounds.items():
            out[k] = np.clip(theta[k], -np.inf if lo is None else lo, np.inf if hi is None else hi
                             ).astype(theta[k].dtype, copy=False)
        return out


class StableRegion:
    """Shorten an update that leaves the certified stable region (``bisections`` halvings).

    ``certify(theta) -> bool`` decides stability; ``npdegen.train(..., constraint="stable")`` passes
    the stability certificate of :mod:`npdegen.inspect` (the runtime does not import inspection)."""

    def __init__(self, certify, bisections: int = 12):
        self.certify, self.bisections, self.warned, self.shortened = certify, bisections, False, 0

    def stable(self, theta) -> bool:
        return bool(self.certify({k: np.asarray(v) for k, v in theta.items()}))

    def __call__(self, previous, theta):
        if self.stable(theta):
            return theta
        if not self.stable(previous):
            if not self.warned:
                warnings.warn("constraint='stable': the parameters are outside the certified stable region, "
                              "so updates are not projected (start from stable parameters)", RuntimeWarning,
                              stacklevel=4)
                self.warned = True
            return theta
        self.shortened += 1
        lo, hi = 0.0, 1.0                         # stable at lo, unstable at hi
        for _ in range(self.bisections):
            mid = 0.5 * (lo + hi)
            if self.stable(_along(previous, theta, mid)):
                lo = mid
            else:
                hi = mid
        return _along(previous, theta, lo)


def _along(a, b, s):
    return {k: (a[k] + s * (b[k] - a[k])).astype(b[k].dtype, copy=False) for k in b}


def compose(*constraints):
    """One constraint applying each of ``constraints`` (None entries skipped) in order."""
    live = [c for c in constraints if c is not None]
    if not live:
        return None

    def apply(previous, theta):
        for c in live:
            theta = c(previous, theta)
        return theta
    return apply
