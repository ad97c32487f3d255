r"""Inspection of soft-min and min-plus stencil layers (:mod:`npdegen.softmin`).

At site ``i`` with scores ``s_j = z_{i+o_j} + c_j`` (``c_j = −ε log w_j``) the soft-min layer is
``Z_i = −ε log Σ_j e^{−s_j/ε}``; in the dense log-sum-exp notation of :mod:`npdegen.lse`,
``Z_i = −f(a)`` with ``f(a) = ε log Σ_j exp((W_j·a + b_j)/ε)`` on the local accesses
``a = (z_{i+o_1}, …, z_{i+o_K})``, ``W_j = −e_j`` (the selector of access ``j``) and ``b_j = −c_j``. So

* the **attribution weights** are the Jacobian, ``π_j = ∂Z_i/∂z_{i+o_j} = softmax_j(−s/ε)``
  (rows sum to 1), with **entropy** ``H_i = −Σ_j π_j log π_j ∈ [0, log K]``; for fixed costs
  ``∂Z_i/∂ε = −H_i`` (:func:`attribution`);
* the **Hessian** in the accesses is ``∂²Z_i/∂a_j∂a_k = −Cov_π(W)_{jk}/ε = −(diag π − ππᵀ)_{jk}/ε``
  (negative semi-definite: the soft-min is concave; :func:`site_hessian`);
* the **Cole–Hopf map** ``φ = e^{−u/ε}`` (:func:`cole_hopf`) and ``u = −ε log φ``
  (:func:`inverse_cole_hopf`) carry the positive linear step ``φ'_i = Σ_j w_j φ_{i+o_j}`` onto the
  layer exactly (boundary ghosts: see :mod:`npdegen.softmin`);
* with the moments ``W_α`` of the positive stencil the layer is one step of the **viscous
  Hamilton–Jacobi** equation (:func:`hamilton_jacobi`): for smooth ``z``,
  ``Z ≈ z − ε log W_0 + b·∇z + ½ A:∇²z − ∇zᵀA∇z/(2ε)`` with ``b_k = W_{e_k}/W_0`` and
  ``A_{kl} = W_{e_k+e_l}/W_0``: ``u_t + H(∇u) = ½ A:∇²u``, ``H(p) = ε log W_0 − b·p + pᵀAp/(2ε)``
  (``φ_t = ε φ_qq`` gives ``u_t + u_q² = ε u_qq``).

For a min-plus layer the attribution is the one-hot vector of the lowest-offset minimiser (entropy 0).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import sympy as sp

from ..derive.softmin_physics import hamilton_jacobi, hopf_lax_reading  # noqa: F401 - re-exported
from ..grid import fill_halo, normalise_boundaries, padded_shape

__all__ = ["SoftminTerms", "local_terms", "SoftminAttribution", "attribution", "site_hessian", "cole_hopf",
           "inverse_cole_hopf", "hamilton_jacobi", "hopf_lax_reading"]


def _is_minplus(layer) -> bool:
    from ..softmin import MinPlusLayer, SoftminLayer
    if isinstance(layer, MinPlusLayer):
        return True
    if isinstance(layer, SoftminLayer):
        return False
    raise TypeError(f"expected a SoftminLayer or MinPlusLayer, got {type(layer).__name__}")


def _spacing(layer, spacing) -> dict:
    symbols = layer.spacing_symbols
    values = spacing if isinstance(spacing, (tuple, list)) else (spacing,) * len(symbols)
    if len(values) != len(symbols) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                              and math.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"spacing must be a positive number or {len(symbols)} of them (one per axis), got {spacing!r}")
    return dict(zip(symbols, (float(v) for v in values)))


def _evaluate(expr: sp.Expr, layer, theta, spacing: dict, grid: tuple, layer_index: int, dtype) -> np.ndarray:
    """``expr`` (parameters, spacings) at ``theta``: a scalar or an array of the grid's shape."""
    expr = expr.xreplace(spacing)
    symbols = sorted(expr.free_symbols, key=lambda s: s.name)
    families = layer.spec.param_families
    args = []
    for s in symbols:
        if s.name not in theta:
            raise ValueError(f"theta has no value for parameter {s.name!r}")
        v = np.asarray(theta[s.name], dtype=np.float64)
        if families[s.name] == "time-dependent":
            v = v[layer_index]
        if v.shape not in ((), grid):
            raise ValueError(f"theta[{s.name!r}] has shape {v.shape} at this layer; expected () or {grid}")
        args.append(v)
    value = sp.lambdify(symbols, expr, "numpy")(*args) if symbols else float(expr)
    return np.broadcast_to(np.asarray(value, dtype=np.float64), grid).astype(dtype)


@dataclass(frozen=True)
class SoftminTerms:
    """The per-site quantities of one soft-min (or min-plus) step on a batch ``(batch, *grid)``.

    ``scores`` ``s_j`` and ``weights`` ``π_j`` have shape ``(batch, *grid, K)`` (offsets in ``offsets``
    order), ``value`` ``Z`` ``(batch, *grid)``, ``eps`` the temperature per site (``None`` for min-plus).
    """
    offsets: tuple
    scores: np.ndarray
    weights: np.ndarray
    value: np.ndarray
    eps: np.ndarray | None


def local_terms(layer, z, theta, spacing=1.0, boundary="periodic", layer_index: int = 0) -> SoftminTerms:
    """Scores, attribution weights and the value of one step of ``layer`` at the state ``z``
    ``(batch, *grid)`` (or ``grid``) with parameters ``theta`` (time-dependent ones at ``layer_index``)."""
    minplus = _is_minplus(layer)
    z = np.asarray(z)
    if z.dtype.kind != "f":
        z = z.astype(np.float64)
    dim = layer.dim
    single = z.ndim == dim
    z = z[None] if single else z
    if z.ndim != dim + 1 or not np.all(np.isfinite(z)):
        raise ValueError(f"z must be a finite array of shape (batch, *grid) with {dim} grid axes, got {z.shape}")
    grid = z.shape[1:]
    boundary = normalise_boundaries(boundary, dim)
    halo = tuple(max(abs(o[k]) for o in layer.offsets) for k in range(dim))
    if any(n <= 2 * h for n, h in zip(grid, halo)):
        raise ValueError(f"grid {grid} is too small for a stencil of half-width {halo}")
    padded = np.zeros((z.shape[0], *padded_shape(grid, halo)), dtype=z.dtype)
    inner = (slice(None),) + tuple(slice(h, h + n) for h, n in zip(halo, grid))
    padded[inner] = z
    fill_halo(padded, boundary, halo)
    space = _spacing(layer, spacing)
    costs = [_evaluate(c, layer, theta, space, grid, layer_index, z.dtype) for c in layer.costs.values()]
    scores = np.stack([padded[(slice(None),) + tuple(slice(h + o, h + o + n) for h, o, n in zip(halo, off, grid))]
                       + c for off, c in zip(layer.offsets, costs)], axis=-1)
    m = scores.min(axis=-1, keepdims=True)
    if minplus:
        first = np.argmax(scores == m, axis=-1)               # the lowest offset among the minimisers
        weights = (np.arange(len(layer.offsets)) == first[..., None]).astype(z.dtype)
        out = SoftminTerms(layer.offsets, scores, weights, m[..., 0], None)
    else:
        eps = _evaluate(layer.eps, layer, theta, space, grid, layer_index, z.dtype)
        with np.errstate(under="ignore"):
            e = np.exp(-(scores - m) / eps[..., None])
        total = e.sum(axis=-1, keepdims=True)
        out = SoftminTerms(layer.offsets, scores, e / total, (m - eps[..., None] * np.log(total))[..., 0], eps)
    if single:
        out = SoftminTerms(out.offsets, out.scores[0], out.weights[0], out.value[0], out.eps)
    return out


@dataclass(frozen=True)
class SoftminAttribution:
    """Attribution of each site's value to its stencil entries: ``weights`` ``π`` (``(…, K)``, summing to
    1 over the last axis, offsets in ``offsets`` order) and their Shannon ``entropy`` in nats (``(…)``)."""
    offsets: tuple
    weights: np.ndarray
    entropy: np.ndarray


def attribution(layer, z, theta, spacing=1.0, boundary="periodic", layer_index: int = 0) -> SoftminAttribution:
    r"""``π_j = softmax_j(−s/ε)`` per site and ``H = −Σ π_j log π_j`` (one-hot and 0 for min-plus)."""
    t = local_terms(layer, z, theta, spacing, boundary, layer_index)
    pi = t.weights
    if t.eps is None:
        return SoftminAttribution(t.offsets, pi, np.zeros(pi.shape[:-1], dtype=pi.dtype))
    m = t.scores.min(axis=-1, keepdims=True)
    eps = np.broadcast_to(t.eps, pi.shape[:-1])[..., None]
    log_pi = -(t.scores - m) / eps - np.log(np.exp(-(t.scores - m) / eps).sum(axis=-1, keepdims=True))
    entropy = -np.sum(np.where(pi > 0, pi * log_pi, 0), axis=-1)
    return SoftminAttribution(t.offsets, pi, entropy)


def site_hessian(layer, z, theta, spacing=1.0, boundary="periodic", layer_index: int = 0) -> np.ndarray:
    r"""``∂²Z_i/∂z_{i+o_j}∂z_{i+o_k} = −(diag π − ππᵀ)_{jk}/ε`` per site, shape ``(…, K, K)``
    (``= −Cov_π(W)/ε`` with the selectors ``W_j = e_j``; zero for min-plus away from ties)."""
    t = local_terms(layer, z, theta, spacing, boundary, layer_index)
    pi = t.weights
    cov = pi[..., :, None] * (np.eye(pi.shape[-1], dtype=pi.dtype) - pi[..., None, :])
    if t.eps is None:
        return np.zeros_like(cov)
    eps = np.broadcast_to(t.eps, pi.shape[:-1])[..., None, None]
    return -cov / eps


def _positive_eps(eps) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.floating, np.integer)) \
            or not math.isfinite(float(eps)) or eps <= 0:
        raise ValueError(f"eps must be a positive finite number, got {eps!r}")
    return float(eps)


def cole_hopf(u, eps) -> np.ndarray:
    r"""``φ = exp(−u/ε)``: the state of the positive linear step whose Cole–Hopf image is the soft-min layer.

    Raises ``ValueError`` where ``φ`` over- or underflows the dtype: shift ``u`` by a constant first
    (on periodic and neumann boundaries the soft-min layer commutes with ``u → u + C``)."""
    eps = _positive_eps(eps)
    u = np.asarray(u)
    u = u.astype(np.float64) if u.dtype.kind != "f" else u
    with np.errstate(over="ignore", under="ignore"):
        phi = np.exp(-u / u.dtype.type(eps))
    if not np.all(np.isfinite(phi)) or np.any(phi == 0):
        raise ValueError(f"exp(-u/eps) leaves the range of {u.dtype} (u/eps spans {np.min(u) / eps:.3g} .. "
                         f"{np.max(u) / eps:.3g}); shift u by a constant or raise eps")
    return phi


def inverse_cole_hopf(phi, eps) -> np.ndarray:
    r"""``u = −ε log φ`` for ``φ > 0`` (finite)."""
    eps = _positive_eps(eps)
    phi = np.asarray(phi)
    phi = phi.astype(np.float64) if phi.dtype.kind != "f" else phi
    if not np.all(np.isfinite(phi)) or np.any(phi <= 0):
        raise ValueError("phi must be finite and > 0 (the Cole-Hopf image of a real u)")
    return -phi.dtype.type(eps) * np.log(phi)

