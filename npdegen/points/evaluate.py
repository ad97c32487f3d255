r"""A kernel ``W(q, r; θ)`` and its parameter derivatives ``∂W/∂θ`` evaluated on displacements between points.

The displacement is ``r = q′ − q`` (from the point ``q`` whose integral is taken to the point
``q′`` that is summed over), as in :class:`~npdegen.integral.kernel.Kernel`, so
``Z_i = Σ_j W(q_i, q_j − q_i; θ) w_j z_j``. A compact kernel is zero outside its box
``|r_k| ≤ h(θ)``; its support's edge does not move with ``θ`` in the gradient (the indicator is
locally constant), as on the grid. ``W`` and every ``∂W/∂θ`` come from the kernel's SymPy
expressions (exponentials merged by ``powsimp`` and common factors pulled out by ``factor_terms``:
exact rewrites that halve the work of a Gaussian in 8-D), lambdified once and evaluated in float64
in chunks of :data:`CHUNK` values; the displacements of the parcel matrix are computed once.
"""
from __future__ import annotations

import numpy as np
import sympy as sp

from ..integral.sample import KernelSampler

__all__ = ["PointKernel", "CHUNK"]

#: Values evaluated per chunk (bounds the temporary memory of one evaluation).
CHUNK = 1 << 18
#: The parcel matrix's displacements are kept between calls up to this many values (64 MiB).
CACHE_VALUES = 1 << 23


def _lambdify(args, exprs):
    return sp.lambdify(args, [sp.factor_terms(sp.powsimp(e, combine="exp")) for e in exprs], modules="numpy",
                       cse=True)


def _full(value, shape) -> np.ndarray:
    """``value`` as a float64 array of ``shape`` (a fresh array when it had to be broadcast)."""
    arr = np.asarray(value, np.float64)
    return arr if arr.shape == shape else np.broadcast_to(arr, shape).copy()


class PointKernel:
    """``W`` and ``∂W/∂θ`` of a :class:`~npdegen.integral.kernel.Kernel` at given displacements."""

    def __init__(self, kernel):
        self.kernel = kernel
        self.names = tuple(p.name for p in kernel.params)
        self.sampler = KernelSampler(kernel)          # parameter ranges (check)
        args = (*kernel.r, *kernel.position, *kernel.params)
        self._w = _lambdify(args, [kernel.density])
        self._all = _lambdify(args, [kernel.density, *(kernel.derivative(p) for p in kernel.params)])
        self._h = None if kernel.support is None else sp.lambdify(kernel.params, kernel.support, modules="numpy")

    @property
    def compact(self) -> bool:
        return self._h is not None

    def check(self, values: dict) -> None:
        """``ValueError`` when parameter values leave the kernel's ranges (``σ ≤ 0``, …)."""
        self.sampler.check(values)

    def support(self, values: dict) -> np.ndarray:
        """The half-width ``h(θ)`` (shaped like the parameter values; ``inf`` for an unbounded kernel)."""
        if self._h is None:
            return np.asarray(np.inf)
        return np.asarray(self._h(*[np.asarray(values[n], np.float64) for n in self.names]), np.float64)

    def evaluate(self, r, q, theta, grad: bool):
        """``(W, {name: ∂W/∂θ} or None)`` for displacement arrays ``r`` (one per axis), positions ``q``
        (one per axis; only for a kernel ``W(q, r)``) and parameter arrays ``theta`` (by name), all
        broadcast together; zero outside a compact kernel's support."""
        shape = np.broadcast_shapes(*(np.shape(a) for a in (*r, *q, *theta.values())))
        args = [*r, *(q if self.kernel.position else ()), *(theta[n] for n in self.names)]
        with np.errstate(all="ignore"):
            out = [_full(v, shape) for v in (self._all if grad else self._w)(*args)]
        if self._h is not None:
            h = np.asarray(self._h(*[theta[n] for n in self.names]), np.float64)
            inside = np.ones(shape, bool)
            for rk in r:
                inside &= np.abs(rk) <= h
            out = [np.where(inside, v, 0.0) for v in out]
        for v in out:
            if not np.all(np.isfinite(v)):
                raise ValueError(f"kernel {self.kernel.name} is not finite at some displacement between the points "
                                 "(e.g. singular at r = 0, or duplicate points): use a regularised kernel")
        return out[0], (dict(zip(self.names, out[1:])) if grad else None)

    def on_pairs(self, points, rows, cols, theta_of, grad: bool):
        """``W`` at the pairs ``(rows[p], cols[p])``: ``r = q_cols − q_rows``, position ``q_rows``;
        ``theta_of(index)`` gives the parameter arrays for a slice of pairs. Chunked."""
        total = len(rows)
        w = np.empty(total)
        dw = {n: np.empty(total) for n in self.names} if grad else None
        for start in range(0, total, CHUNK):
            s = slice(start, min(start + CHUNK, total))
            i, j = rows[s], cols[s]
            r = [points[j, k] - points[i, k] for k in range(points.shape[1])]
            q = [points[i, k] for k in range(points.shape[1])] if self.kernel.position else []
            w[s], d = self.evaluate(r, q, theta_of(s), grad)
            if grad:
                for n in self.names:
                    dw[n][s] = d[n]
        return w, dw

    def on_grid(self, rows_at, cols_at, theta_rows, grad: bool, skip_diagonal: bool = False, cache=None):
        """``K[a, v] = W(q = rows_at[a], r = cols_at[v] − rows_at[a]; θ_a)`` for every row and column
        (``theta_rows``: per-row parameter arrays of shape ``(U,)`` or scalars). Chunked by rows;
        ``cache`` (a dict kept by the caller) holds the displacements of every chunk when it fits."""
        u, d = rows_at.shape
        v = cols_at.shape[0]
        k = np.empty((u, v))
        dk = {n: np.empty((u, v)) for n in self.names} if grad else None
        step = max(1, CHUNK // max(v, 1))
        keep = cache is not None and u * v * d <= CACHE_VALUES
        for start in range(0, u, step):
            s = slice(start, min(start + step, u))
            r = cache.get(start) if keep else None
            if r is None:
                r = [cols_at[None, :, m] - rows_at[s, m, None] for m in range(d)]
                if keep:
                    cache[start] = r
            q = [rows_at[s, m, None] for m in range(d)] if self.kernel.position else []
            theta = {n: (t[s, None] if np.ndim(t) else t) for n, t in theta_rows.items()}
            k[s], dd = self.evaluate(r, q, theta, grad)
            if grad:
                for n in self.names:
                    dk[n][s] = dd[n]
        if skip_diagonal:
            np.fill_diagonal(k, 0.0)
            for arr in (dk or {}).values():
                np.fill_diagonal(arr, 0.0)
        return k, dk
