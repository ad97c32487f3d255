"""Coarse-to-fine parametrisations of the heterogeneous and time-dependent parameters.

At one level a parameter ``θ`` of shape ``(n_0, …, n_{d−1})`` (its grid axes, and the layer axis
of the time-dependent family) is written

    θ = base + (P_0 ⊗ P_1 ⊗ … ⊗ P_{d−1}) c,        c of shape (m_0, …, m_{d−1}),

with ``P_a`` the ``n_a × m_a`` linear interpolation from ``m_a`` knots along axis ``a``:

* periodic axes: knots at ``ξ_k = k n/m`` (k = 0 … m−1), ``P[i, k] = max(0, 1 − |i − ξ_k|_n / h)``
  with ``h = n/m`` and ``|·|_n`` the periodic distance (``m = 1``: a constant);
* other axes (Dirichlet or Neumann grid axes, the layer axis): knots at ``ξ_k = k (n−1)/(m−1)``
  including both ends (``m = 1``: a constant);
* ``m = n``: the identity (the full resolution).

Every row of ``P`` is non-negative and sums to one (a convex combination), so box bounds on ``c``
bound ``θ``. Knot counts grow by :func:`knots` (periodic ``1, 2, 4, …``; other axes
``1, 2, 3, 5, 9, … = 2^{j−1} + 1``), so each level's space contains the previous one: a coarse
optimum is exactly representable at the next level.

Why: fitted from flat starts, the heterogeneous ADR coefficients at n = 256, L = 128 run into a
valley of high-frequency parameter patterns whose outputs match the data to 1e-6 relative while the
coefficients are 30–100 % off (the outputs keep only ~30 of 128 Fourier modes of the input); fitting
the smooth part first keeps L-BFGS in the truth's basin (see tests/test_training_lbfgs.py).
"""
from __future__ import annotations

import functools
import math

import numpy as np

__all__ = ["interpolation", "restriction", "knots", "hierarchy", "budgets"]


def interpolation(n: int, m: int, periodic: bool) -> np.ndarray | None:
    """The ``n × m`` interpolation matrix ``P`` (module docstring); ``None`` for ``m == n`` (identity).
    Cached: the array is read-only."""
    if not (isinstance(n, int) and isinstance(m, int) and 1 <= m <= n):
        raise ValueError(f"interpolation needs integers 1 <= m <= n, got n={n!r}, m={m!r}")
    return None if m == n else _interpolation(n, m, bool(periodic))


def restriction(n: int, m: int, periodic: bool) -> np.ndarray | None:
    """``(PᵀP)⁻¹Pᵀ`` (``m × n``): the least-squares coarse values of a fine array (``PᵀP`` is the
    well-conditioned mass matrix of the hat functions); ``None`` for the identity. Cached, read-only."""
    return None if m == n else _restriction(n, m, bool(periodic))


@functools.lru_cache(maxsize=256)
def _restriction(n, m, periodic):
    P = _interpolation(n, m, periodic)
    R = np.linalg.solve(P.T @ P, P.T)
    R.flags.writeable = False
    return R


@functools.lru_cache(maxsize=256)
def _interpolation(n, m, periodic):
    if m == 1:
        P = np.ones((n, 1))
        P.flags.writeable = False
        return P
    i = np.arange(n, dtype=np.float64)[:, None]
    if periodic:
        h = n / m
        d = np.abs(i - np.arange(m) * h)
        d = np.minimum(d, n - d)
    else:
        h = (n - 1) / (m - 1)
        d = np.abs(i - np.arange(m) * h)
    P = np.maximum(0.0, 1.0 - d / h)
    P /= P.sum(axis=1, keepdims=True)              # exact partition of unity against rounding
    P.flags.writeable = False
    return P


def knots(n: int, level: int, periodic: bool) -> int:
    """Knots along an axis of ``n`` points at ``level`` (0: one knot), capped at ``n``."""
    if level == 0:
        return 1
    return min(n, 2 ** level if periodic else 2 ** (level - 1) + 1)


def hierarchy(shapes: dict, periodic: dict, tied=()) -> list[dict]:
    """Knot counts per level: a list of ``{key: (m_0, …)}``, coarsest first, the last at full
    resolution. ``shapes[key]``: the parameter's shape; ``periodic[key]``: one bool per axis (None:
    the parameter is not on the grid and keeps its full shape); ``tied`` keys keep one knot per axis
    at every level (their homogeneous restriction)."""
    def count(n, p):
        j = 0
        while knots(n, j, p) < n:
            j += 1
        return j + 1
    grid = {k: s for k, s in shapes.items() if k not in tied and periodic.get(k) is not None}
    depth = max([count(n, p) for k, s in grid.items() for n, p in zip(s, periodic[k])] or [1])
    return [{k: tuple(1 for _ in s) if k in tied else
             tuple(knots(n, j, p) for n, p in zip(s, periodic[k])) if k in grid else tuple(s)
             for k, s in shapes.items()} for j in range(depth)]


def budgets(total: int, sizes) -> list[int]:
    """Iterations per level: half of ``total`` shared evenly, half in proportion to the square
    root of the level's number of variables (finer levels are worse conditioned); the sum is
    ``total``. Iterations a level leaves unused (it converged) are added to the next one."""
    sizes = list(sizes)
    if not sizes:
        return []
    weights = [0.5 / len(sizes) + 0.5 * math.sqrt(s) / sum(math.sqrt(v) for v in sizes) for s in sizes]
    out = [int(total * w) for w in weights]
    out[-1] += total - sum(out)
    return out
