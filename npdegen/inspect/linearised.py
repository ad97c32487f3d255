r"""The weight physics of a nonlinear layer: the kernel of its linearisation at a state.

For a layer ``Z_i = G(z[i+o]…; θ_i) − b_i`` the linearisation at a state ``u`` is the local kernel

.. math::  w_o(i) = ∂G/∂z[i+o] \big|_{z = u},

one stencil per site. Its moments (no ``1/k!``, docs/theory.md §2 and §9),
``W_α(i) = Σ_o Π_k (o_k Δ_k)^{α_k} w_o(i)``, are the local physics: ``W_0 − 1`` the local reaction
rate, ``−W_{e_k}`` the local advection speed along axis ``k`` (per layer), ``W_{2e_k}/2`` the local
diffusivity. For the explicit Burgers step ``z − Δt z z_q + Δt ν z_qq`` the local advection speed
is ``Δt·u`` and the diffusivity ``Δt·ν``: the layer transports with the state's own velocity.
For a linear layer the linearised kernel is its stencil, the same at every state.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from itertools import product

import numpy as np
import sympy as sp

from ..grid import fill_halo, normalise_boundaries
from ..runtime.fixed import Shift, fixed_values

__all__ = ["LinearisedKernel", "linearised_kernel"]


@dataclass(frozen=True)
class LinearisedKernel:
    """Per-site weights ``weights[o]`` (arrays shaped like the grid) of a layer linearised at a state."""
    weights: dict
    spacing: tuple

    def moments(self, max_order: int = 2) -> dict:
        """``{α: W_α}`` per site (1-D: int keys) for every ``|α| ≤ max_order``."""
        dim = len(self.spacing)
        out = {}
        for alpha in product(range(max_order + 1), repeat=dim):
            if sum(alpha) > max_order:
                continue
            total = 0.0
            for o, w in self.weights.items():
                scale = 1.0
                for ok, dk, ak in zip(o, self.spacing, alpha):
                    scale *= (ok * dk) ** ak
                total = total + scale * w
            out[alpha[0] if dim == 1 else alpha] = np.asarray(total, dtype=float)
        return dict(sorted(out.items(), key=lambda kv: (np.sum(kv[0]), kv[0])))

    @property
    def reaction(self):
        """Local reaction rate per layer, ``W_0 − 1``, per site."""
        m = self.moments(0)
        return next(iter(m.values())) - 1.0

    @property
    def advection(self) -> tuple:
        """Local advection speed per layer along each axis, ``−W_{e_k}``, per site."""
        dim = len(self.spacing)
        m = self.moments(1)
        keys = [1] if dim == 1 else [tuple(int(j == k) for j in range(dim)) for k in range(dim)]
        return tuple(-m[k] for k in keys)

    @property
    def diffusion(self) -> tuple:
        """Local diffusivity per layer along each axis, ``W_{2e_k}/2``, per site."""
        dim = len(self.spacing)
        m = self.moments(2)
        keys = [2] if dim == 1 else [tuple(2 * int(j == k) for j in range(dim)) for k in range(dim)]
        return tuple(m[k] / 2 for k in keys)


def linearised_kernel(layer, state, theta: dict | None = None, spacing=1.0, boundary="periodic",
                      layer_index: int = 0) -> LinearisedKernel:
    """The kernel ``∂G/∂z[i+o]`` of ``layer`` at ``state`` (an array shaped like the grid).

    ``theta`` holds the transform's parameters as a network takes them (scalars, grid arrays or
    ``(L, *grid)`` arrays, of which row ``layer_index`` is used); ``spacing`` a number or one per
    axis; ``boundary`` decides what the accesses next to the edges read.
    """
    ir = layer.step_ir
    u = np.asarray(state, dtype=float)
    if u.ndim != ir.dim:
        raise ValueError(f"state must be an array with {ir.dim} axis(es) (the grid), got shape {u.shape}")
    if not np.all(np.isfinite(u)):
        raise ValueError("state contains NaN or inf")
    spacing = tuple(float(s) for s in (spacing if isinstance(spacing, (tuple, list)) else (spacing,) * ir.dim))
    if len(spacing) != ir.dim or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"spacing must be one positive number or {ir.dim} of them, got {spacing!r}")
    bounds = normalise_boundaries(boundary, ir.dim)
    for k, (n, h) in enumerate(zip(u.shape, ir.halo)):
        if n <= 2 * h:
            raise ValueError(f"state is too small along axis {k}: {n} sites for a stencil half-width {h}")
    theta = dict(theta or {})
    # fixed fields (a flux layer's wall masks) and derived ones (the lo-face values of face
    # coefficients) come from the grid, the boundaries and theta, as the runtime supplies them
    fixed = fixed_values(ir, u.shape, bounds, float, np) if ir.fixed else {}
    needed = [p for p in ir.params if p.role in ("transform", "fixed")]
    missing = sorted(p.name for p in needed if p.name not in theta and p.name not in fixed)
    if missing:
        raise ValueError(f"theta lacks the parameter(s) {', '.join(missing)}")
    values = []
    for p in needed:
        if p.name in fixed:
            v = fixed[p.name]
            if isinstance(v, Shift):
                v = v(theta)
        else:
            v = theta[p.name]
        v = np.asarray(v, dtype=float)
        if p.family == "time-dependent":         # a derived field has its source's family
            v = v[layer_index]
        if v.shape not in ((), u.shape):
            raise ValueError(f"theta[{p.name!r}] has shape {v.shape}; expected () or {u.shape} (the grid)")
        values.append(v)
    padded = np.zeros(tuple(n + 2 * h for n, h in zip(u.shape, ir.halo)))
    padded[tuple(slice(h, h + n) for h, n in zip(ir.halo, u.shape))] = u
    fill_halo(padded, bounds, ir.halo)
    views = [padded[tuple(slice(h + o, h + o + n) for h, o, n in zip(ir.halo, off, u.shape))]
             for off in ir.accesses]
    weights = {off: np.broadcast_to(np.asarray(f(*views, *values, *spacing), dtype=float), u.shape).copy()
               for off, f in _jacobian_functions(ir)}
    return LinearisedKernel(weights=weights, spacing=spacing)


@lru_cache(maxsize=64)
def _jacobian_functions(ir) -> tuple:
    """``((offset, ∂G/∂z[i+o] as a NumPy function), …)`` of the nonzero Jacobians, made once per IR
    (a training monitor certifies every step). Arguments: accesses, transform parameters, spacings;
    the expressions hold npdegen's own symbols only."""
    args = (*ir.access_symbols, *(p.symbol for p in ir.params if p.role in ("transform", "fixed")), *ir.spacing)
    return tuple((off, sp.lambdify(args, d, modules="numpy")) for off, d in zip(ir.accesses, ir.d_access) if d != 0)
