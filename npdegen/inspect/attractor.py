r"""Attractors and depth: the fixed point ``z* = f(W z* − b)``, the linear steady state, and the
per-layer loss profile of a trained network.

* :func:`fixed_point` solves ``F(z) = z − f(Wz − b) = 0`` by damped Newton with the Jacobian
  ``J = I − diag(f′(Wz − b)) W`` (``f′`` derived by SymPy, ``W`` from the SymPy stencil). A fixed
  point of the relaxation ``z ← (1 − ω)z + ω f(Wz − b)`` does not depend on ω; whether the
  layers converge to it does: ``.attracting(omega)`` checks the spectral radius of the step's
  Jacobian ``(1 − ω)I + ω diag(f′) W``.
* :func:`green_steady_state` is the linear case (f = id, MODEL.md §1): ``z* = (I − W)⁻¹(−b)``,
  the Green's function of the kernel applied to the source.
* :func:`loss_profile` reads ``0.5 Σ (z_t − y)²`` for t = 0 … L: how deep the network needs to be.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import sympy as sp

from ..runtime.network import Network
from .matrix import as_kernel_ir, layer_bias, layer_matrix

__all__ = ["FixedPointError", "FixedPoint", "fixed_point", "green_steady_state", "LossProfile", "loss_profile"]


class FixedPointError(RuntimeError):
    """Newton found no fixed point (singular Jacobian, stalled, or out of iterations)."""


@lru_cache(maxsize=64)
def _activation(ir):
    x = next(iter(ir.f.free_symbols))
    f = sp.lambdify(x, ir.f, modules="numpy")
    fp = sp.lambdify(x, ir.fprime, modules="numpy")
    return (lambda v: np.broadcast_to(f(v), v.shape)), (lambda v: np.broadcast_to(fp(v), v.shape))


def _setup(layer, params, n, spacing, boundary, layer_index):
    net = layer if isinstance(layer, Network) else None
    ir = as_kernel_ir(layer)
    n = n if n is not None else getattr(net, "n", None)
    spacing = spacing if spacing is not None else getattr(net, "spacing", 1.0)
    boundary = boundary or (net.options.boundary if net is not None else "periodic")
    W = layer_matrix(ir, params, n, spacing, boundary, layer_index)
    return ir, W, layer_bias(ir, params, W.shape[0], layer_index)


@dataclass(frozen=True)
class FixedPoint:
    """``z`` solves ``z = f(W z − b)`` to ``residual`` (max norm) after ``iterations`` Newton steps."""
    z: np.ndarray
    converged: bool
    iterations: int
    residual: float
    history: tuple
    slope: np.ndarray = field(repr=False)      # f′(W z* − b)
    W: np.ndarray = field(repr=False)

    def attracting(self, omega: float = 1.0) -> bool:
        """Do relaxation layers with this ω converge to ``z`` (spectral radius of the step < 1)?"""
        J = (1 - omega) * np.eye(len(self.z)) + omega * self.slope[:, None] * self.W
        return bool(np.max(np.abs(np.linalg.eigvals(J))) < 1)


def fixed_point(layer, params: dict, n: int | None = None, spacing: float | None = None,
                boundary: str | None = None, z0=None, tol: float = 1e-10, max_iter: int = 50,
                layer_index: int | None = None, raise_on_failure: bool = True) -> FixedPoint:
    """Newton's method for ``z* = f(W z* − b)``; raises :class:`FixedPointError` with the reason
    when it fails (or returns ``converged=False`` with ``raise_on_failure=False``)."""
    ir, W, b = _setup(layer, params, n, spacing, boundary, layer_index)
    f, fp = _activation(ir)
    N = W.shape[0]
    z = np.zeros(N) if z0 is None else np.array(z0, dtype=float).reshape(N)
    F = lambda v: v - f(W @ v - b)
    r = F(z)
    history = [float(np.max(np.abs(r)))]
    failure = None
    for it in range(1, max_iter + 1):
        if history[-1] <= tol:
            break
        J = np.eye(N) - fp(W @ z - b)[:, None] * W
        if np.linalg.cond(J) > 1e13:
            failure = (f"the Jacobian I - f'(Wz - b) W became singular at iteration {it} (residual "
                       f"{history[-1]:.3g}); for f = id this means (I - W) z = -b has no unique solution, "
                       "otherwise try another starting point z0")
            break
        step = np.linalg.solve(J, -r)
        alpha, norm = 1.0, np.linalg.norm(r)
        while alpha > 1e-6:                      # backtracking: accept a decrease of |F|
            trial = z + alpha * step
            rt = F(trial)
            if np.all(np.isfinite(rt)) and np.linalg.norm(rt) < (1 - 1e-4 * alpha) * norm:
                break
            alpha /= 2
        else:
            failure = (f"Newton stalled at residual {history[-1]:.3g}: |z - f(Wz - b)| cannot be reduced "
                       "near this iterate; z = f(Wz - b) appears to have no solution here")
            break
        z, r = trial, rt
        history.append(float(np.max(np.abs(r))))
    converged = history[-1] <= tol
    if not converged and failure is None:
        failure = (f"Newton did not converge in {max_iter} iterations (residual {history[-1]:.3g} > tol {tol:g}); "
                   "a fixed point may not exist")
    if not converged and raise_on_failure:
        raise FixedPointError(f"no fixed point z* = f(W z* - b) found for layer {ir.name!r}: {failure}")
    return FixedPoint(z=z, converged=converged, iterations=len(history) - 1, residual=history[-1],
                      history=tuple(history), slope=np.asarray(fp(W @ z - b), dtype=float), W=W)


def green_steady_state(layer, params: dict, n: int | None = None, spacing: float | None = None,
                       boundary: str | None = None, layer_index: int | None = None,
                       return_green: bool = False):
    """Linear steady state ``z* = (I − W)⁻¹(−b)`` (and the Green's function ``(I − W)⁻¹``)."""
    _, W, b = _setup(layer, params, n, spacing, boundary, layer_index)
    A = np.eye(W.shape[0]) - W
    if np.linalg.cond(A) > 1e13:
        raise FixedPointError("I - W is singular (W has the eigenvalue 1, e.g. a kernel whose rows sum to 1): "
                              "the linear steady state is not unique or does not exist")
    G = np.linalg.inv(A)
    z = G @ (-b)
    return (z, G) if return_green else z


@dataclass(frozen=True)
class LossProfile:
    """``losses[t] = 0.5 Σ (z_t − y)²`` for t = 0 … L; ``reduction[t]`` the fraction of the total
    reduction ``losses[0] − min`` reached by layer t."""
    losses: np.ndarray

    @property
    def reduction(self) -> np.ndarray:
        total = self.losses[0] - self.losses.min()
        return np.ones_like(self.losses) if total <= 0 else (self.losses[0] - self.losses) / total

    def depth(self, fraction: float = 0.95) -> int:
        """The first layer t that reaches ``fraction`` of the total loss reduction."""
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
        return int(np.argmax(self.reduction >= fraction * (1 - 1e-12)))

    def __str__(self) -> str:
        lines = [f"{'layer':>5}  {'loss':>12}  {'reduction':>9}"]
        lines += [f"{t:>5}  {v:>12.6g}  {r:>9.3f}" for t, (v, r) in enumerate(zip(self.losses, self.reduction))]
        lines.append(f"95% of the loss reduction is reached after {self.depth()} of {len(self.losses) - 1} layers")
        return "\n".join(lines)


def loss_profile(source, x=None, y=None, theta=None) -> LossProfile:
    """From a Network and ``(x, y, theta)`` (via ``Network.layer_losses``), a ``TrainHistory``, or
    an array of per-layer losses."""
    if hasattr(source, "layer_losses") and callable(source.layer_losses):
        if x is None or y is None or theta is None:
            raise ValueError("loss_profile(network, x, y, theta) needs x, y and theta")
        losses = source.layer_losses(x, y, theta)
    else:
        losses = getattr(source, "layer_loss", source)
    losses = np.asarray(losses, dtype=float)
    if losses.ndim != 1 or losses.size < 1 or not np.all(np.isfinite(losses)):
        raise ValueError(f"per-layer losses must be a finite 1-D array, got shape {losses.shape}")
    return LossProfile(losses)
