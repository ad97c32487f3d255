r"""A kernel sampled on the grid: the quadrature of ``∫ W(q, r) z(q + r) dr`` (MODEL.md §4, delta basis).

With spacings ``Δ_k`` and integer offsets ``o`` (a box ``|o_k| ≤ K_k``, the *reach*), site ``i`` at
``q_i = i·Δ`` (origin 0, per axis) gets the weights

.. math::  w_{i,o} = \Big(\prod_k Δ_k\Big)\, W(q_i,\, oΔ;\, θ_i)\; [\,|o_kΔ_k| ≤ h\ \forall k\,],

so that ``Σ_o w_{i,o} z_{i+o}`` is the rectangle (= trapezoid, for a kernel that vanishes at the
ends) rule for the integral; the bracket is the support of a compact kernel. ``W``, ``∂W/∂θ`` and
the support ``h(θ)`` are lambdified once per kernel and evaluated in float64.

**The reach.** A compact kernel needs ``K_k = ⌊h/Δ_k⌋ + 1`` (the indicator removes the rest);
any other kernel is sampled out to the largest reach the boundary allows and cut where every
dropped weight is below ``tol · max|w|`` (``tol`` the dtype's machine epsilon): the operator then
differs from the untruncated sum by less than the rounding of one weight. The truncation error of
the sampled stencil against the continuous integral is what :func:`sampled_moments` states: the
sampled moments ``Σ_o (oΔ)^α w_o`` next to the exact ``W_α`` (sampling and truncation together).
"""
from __future__ import annotations

import numpy as np
import sympy as sp

__all__ = ["KernelSampler", "box_offsets", "max_reach", "sampled_moments"]


def box_offsets(reach) -> np.ndarray:
    """All offsets ``o`` with ``|o_k| ≤ reach[k]``, shape ``(count, d)``, C order (last axis fastest)."""
    axes = [np.arange(-k, k + 1) for k in reach]
    return np.stack([a.ravel() for a in np.meshgrid(*axes, indexing="ij")], axis=1)


def max_reach(n: int, boundary: str) -> int:
    """The farthest offset a kernel is sampled to by default: half the period (periodic, the
    minimal image; ``±n/2`` both kept for even ``n``), ``n − 1`` (Dirichlet: beyond it only zeros
    are read), ``n`` (Neumann: the single mirror image, as :func:`npdegen.grid.source`)."""
    return {"periodic": n // 2, "dirichlet": n - 1, "neumann": n}[boundary]


def _lambdify(args, expr):
    return sp.lambdify(args, expr, modules="numpy", cse=True)


class KernelSampler:
    """``W`` and ``∂W/∂θ`` of a :class:`~npdegen.integral.kernel.Kernel`, lambdified once."""

    def __init__(self, kernel):
        self.kernel = kernel
        self.names = tuple(p.name for p in kernel.params)
        args = (*kernel.r, *kernel.position, *kernel.params)
        self._w = _lambdify(args, kernel.density)
        self._dw = {p.name: _lambdify(args, kernel.derivative(p)) for p in kernel.params}
        self._h = None if kernel.support is None else _lambdify(kernel.params, kernel.support)
        self._checks = [(c, _lambdify(kernel.params, c.expr)) for c in kernel.constraints]
        mass = kernel.mass_condition       # checked on values when it involves the parameters only
        self._mass = None if mass == sp.true or not mass.free_symbols <= set(kernel.params) else \
            (mass, _lambdify(kernel.params, mass))

    # ------------------------------------------------------------------ parameter values
    def check(self, values: dict) -> None:
        """Raise ``ValueError`` if parameter values leave a kernel range (``σ ≤ 0``, ``α ≤ 1``, …)."""
        args = [values[n] for n in self.names]
        for c, fn in self._checks:
            v = np.asarray(fn(*args), np.float64)
            ok = np.ones(np.shape(v), bool)
            if c.lower is not None:
                ok &= v > float(c.lower)
            if c.upper is not None:
                ok &= v < float(c.upper)
            if not np.all(ok):
                worst = float(np.ravel(v)[np.argmin(np.ravel(ok))])
                raise ValueError(
                    f"kernel {self.kernel.name}: {c} is violated ({c.label or 'value'} = {worst:g}"
                    + (f", {sp.sstr(c.expr)}" if c.label != sp.sstr(c.expr) else "") + "); train with "
                    "bounds={name: (lower, None)} on npdegen.train, or write the parameter as exp(log_p)")
        if self._mass is not None:
            ok = np.asarray(self._mass[1](*args))
            if not np.all(ok):
                raise ValueError(f"kernel {self.kernel.name} is not integrable for these parameter values: "
                                 f"∫ W dr converges only if {sp.sstr(self._mass[0])}")

    # ------------------------------------------------------------------ sampling
    def _arguments(self, offsets, spacing, values, sites, positions):
        """``(r arrays, q arrays, θ arrays)`` broadcast as ``(*sites, count)`` or ``(count,)``."""
        d = len(spacing)
        site = sites is not None
        lead = (1,) * d if site else ()
        r = [(offsets[:, k] * spacing[k]).astype(np.float64).reshape(*lead, -1) for k in range(d)]
        q = []
        if self.kernel.position:
            if site and positions is None:
                raise ValueError("a kernel W(q, r) needs the grid positions")
            q = [p[..., None] for p in positions] if site else [0.0] * d
        theta = [np.asarray(values[n], np.float64) for n in self.names]
        theta = [t[..., None] if t.ndim else t for t in theta]
        return r, q, theta

    def _inside(self, offsets, spacing, values, shape):
        if self._h is None:
            return None
        h = np.asarray(self._h(*[values[n] for n in self.names]), np.float64)
        h = h[..., None] if h.ndim else h
        inside = np.ones(shape, bool)
        for k, dk in enumerate(spacing):
            inside &= np.abs(offsets[:, k] * dk) <= h
        return inside

    def _evaluate(self, fn, offsets, spacing, values, sites, positions, shape):
        r, q, theta = self._arguments(offsets, spacing, values, sites, positions)
        with np.errstate(all="ignore"):
            out = np.broadcast_to(np.asarray(fn(*r, *q, *theta), np.float64), shape)
        cell = float(np.prod(spacing))
        inside = self._inside(offsets, spacing, values, shape)
        out = out * cell if inside is None else np.where(inside, out * cell, 0.0)
        if not np.all(np.isfinite(out)):
            raise ValueError(f"kernel {self.kernel.name} is not finite on the grid (e.g. singular at r = 0); "
                             "sample a regularised kernel")
        return out

    def weights(self, offsets, spacing, values, sites=None, positions=None) -> np.ndarray:
        """``w`` (float64): shape ``(count,)`` for a homogeneous kernel, ``(*sites, count)`` when the
        kernel or a parameter varies with the site (``positions``: the ``q`` arrays of the grid)."""
        shape = (len(offsets),) if sites is None else (*sites, len(offsets))
        return self._evaluate(self._w, offsets, spacing, values, sites, positions, shape)

    def dweights(self, offsets, spacing, values, sites=None, positions=None) -> dict:
        """``{name: ∂w/∂θ}`` shaped like :meth:`weights` (the support's edge does not move with θ
        in the sampled operator: the indicator is locally constant)."""
        shape = (len(offsets),) if sites is None else (*sites, len(offsets))
        return {n: self._evaluate(fn, offsets, spacing, values, sites, positions, shape) for n, fn in self._dw.items()}

    # ------------------------------------------------------------------ reach
    def reach(self, spacing, values, limits, tol: float, sites=None, positions=None) -> tuple:
        """The reach ``K_k`` per axis (module docstring), at most ``limits[k]``."""
        d = len(spacing)
        if self._h is not None:
            h = float(np.max(self._h(*[values[n] for n in self.names])))
            return tuple(min(int(np.floor(h / dk)) + 1, lim) for dk, lim in zip(spacing, limits))
        if sites is None:                      # one kernel: sample the whole admissible box
            offsets = box_offsets(limits)
            w = np.abs(self.weights(offsets, spacing, values))
            return self._cut(offsets, w, tol, d)
        size = 4                               # site-dependent: widen the box until its rim is negligible
        while True:
            reach = tuple(min(size, lim) for lim in limits)
            offsets = box_offsets(reach)
            w = np.abs(self.weights(offsets, spacing, values, sites, positions)).reshape(-1, len(offsets)).max(axis=0)
            rim = np.any(np.abs(offsets) == np.asarray(reach), axis=1) & np.any(np.abs(offsets) > 0, axis=1)
            if reach == tuple(limits) or not np.any(w[rim] > tol * w.max()):
                return self._cut(offsets, w, tol, d)
            size *= 2

    @staticmethod
    def _cut(offsets, w, tol, d) -> tuple:
        top = w.max()
        if not top > 0:
            raise ValueError("the kernel is zero at every grid offset: its support is below the grid spacing")
        keep = offsets[w > tol * top]
        return tuple(int(np.max(np.abs(keep[:, k]))) for k in range(d))


def sampled_moments(weights, offsets, spacing, max_order: int) -> dict:
    """``Σ_o Π_k (o_kΔ_k)^{α_k} w_o`` of homogeneous weights: the moments the sampled stencil applies
    (1-D keys ``k``, N-D multi-indices), to compare with the exact :meth:`Kernel.moments`."""
    from ..derive.moments import multi_indices
    d = len(spacing)
    r = offsets * np.asarray(spacing, np.float64)
    out = {}
    for alpha in (multi_indices(d, max_order) if d > 1 else [(k,) for k in range(max_order + 1)]):
        factor = np.ones(len(offsets))
        for k, a in enumerate(alpha):
            factor = factor * r[:, k] ** a
        out[alpha if d > 1 else alpha[0]] = float(np.einsum("i,i->", factor, weights))
    return out

