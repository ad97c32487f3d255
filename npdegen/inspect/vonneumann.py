r"""Von Neumann analysis of the linearised relaxation step, derived with SymPy.

Linearising ``f`` at slope ``s`` (``s = f′(Z̄)`` at an operating point), a perturbation obeys
``z ← (1 − ω) z + ω s W z``. For a Fourier mode ``z_j = e^{ijθ}`` and frozen weights ``w_j``:

.. math::  G(θ) = 1 + ω\,g(θ), \quad
           g(θ) = s W_0 − 1 − 2s \sum_j w_j \sin^2(jθ/2) + i\,s \sum_j w_j \sin(jθ)

(written with ``sin²`` rather than ``cos − 1`` so that long waves lose no digits). For ADR with
``c = U/Δ``, ``d = D/Δ²``, ``r = R`` this is MODEL.md §5's
``1 + ω[(s(1+r) − 1) − 4sd sin²(θ/2) − i s c sin θ]``.

``|G|² ≤ 1 ⇔ ω (ω|g|² + 2 Re g) ≤ 0``, so each mode admits exactly ``0 < ω ≤ ω_max(θ) =
−2 Re g/|g|²`` (none if ``Re g ≥ 0`` and ``g ≠ 0``), and the scheme is stable for
``0 < ω ≤ ω_max = min_θ ω_max(θ)``. Named pieces of that minimum: θ = 0 (reaction,
``|1 + ω(sW_0 − 1)| ≤ 1``); θ → 0 when ``sW_0 = 1`` (long waves, ``ω s c² ≤ 2d`` with
``c = −Σ j w_j``, ``d = Σ j² w_j / 2`` in grid units); θ = π (grid scale, ``ω d ≤ 1/2`` for
ADR); otherwise an interior θ*.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import sympy as sp

__all__ = ["THETA", "OMEGA", "SLOPE", "amplification_factor", "ModeLimits", "mode_limits"]

THETA = sp.Symbol("theta", real=True)
OMEGA = sp.Symbol("omega", positive=True)
SLOPE = sp.Symbol("s", real=True)
THETA_POINTS = 2048
_GOLDEN = (np.sqrt(5) - 1) / 2


def _parts(offsets, weights, slope=SLOPE):
    """``(Re g, Im g)`` as SymPy expressions of the weights, θ and s."""
    w0 = sum(weights, sp.Integer(0))
    re = slope * w0 - 1 - 2 * slope * sum((w * sp.sin(j * THETA / 2) ** 2 for j, w in zip(offsets, weights)),
                                          sp.Integer(0))
    im = slope * sum((w * sp.sin(j * THETA) for j, w in zip(offsets, weights)), sp.Integer(0))
    return re, im


def amplification_factor(offsets, weights, omega=OMEGA, slope=SLOPE) -> sp.Expr:
    """The symbolic ``G(θ)`` of a stencil ``{offsets: weights}`` (weights may be expressions)."""
    re, im = _parts(offsets, weights, slope)
    trig = [sp.sin(j * THETA / 2) ** 2 for j in range(1, 1 + max(map(abs, offsets)))]
    trig += [sp.sin(j * THETA) for j in range(1, 1 + max(map(abs, offsets)))]
    inner = sp.collect(sp.expand(re), trig) + sp.I * sp.collect(sp.expand(im), trig)
    return 1 + omega * inner


@lru_cache(maxsize=64)
def _numeric(offsets: tuple):
    """``(re g, im g)`` lambdified from the SymPy derivation, in generic weight symbols."""
    w = sp.symbols(f"w0:{len(offsets)}", real=True)
    re, im = _parts(offsets, w)
    return sp.lambdify((w, THETA, SLOPE), [re, im], modules="numpy")


def _omega_limit(re, im):
    g2 = re * re + im * im
    with np.errstate(divide="ignore", invalid="ignore"):
        lim = np.where(re < 0, -2 * re / g2, 0.0)
    return np.where(g2 <= 1e-300, np.inf, lim)


def _evaluate(offsets, w, theta, slope):
    re, im = _numeric(tuple(offsets))(tuple(w[:, k, None] for k in range(w.shape[1])), theta[None, :], slope)
    shape = (w.shape[0], theta.shape[0])
    return np.broadcast_to(re, shape), np.broadcast_to(im, shape)


@dataclass(frozen=True)
class ModeLimits:
    """Per site: ``zero[i]`` (θ = 0 or the θ → 0 limit), ``pi[i]`` (θ = π), ``interior[i]`` (the
    minimum over 0 < θ < π, at ``theta_star[i]``); ``zero_kind[i]``: what sets ``zero[i]``."""
    zero: np.ndarray
    pi: np.ndarray
    interior: np.ndarray
    theta_star: np.ndarray
    zero_kind: np.ndarray
    theta: np.ndarray
    gain: np.ndarray            # |G(θ)| per site on ``theta`` (0 … π) at the given ω

    @property
    def omega_max(self) -> np.ndarray:
        return np.minimum(np.minimum(self.zero, self.pi), self.interior)


def _zero_limit(offsets, w, slope):
    """ω limit of θ = 0 (or of θ → 0 where ``sW_0 = 1``) per site, and which physics sets it:
    ``reaction``/``growth`` (|G(0)| ≠ 1), ``long-wave`` (ω s c² ≤ 2d), ``anti-diffusion``
    (s W_2 < 0) or ``no-diffusion`` (W_2 = 0 with advection: unstable for every ω)."""
    j = np.asarray(offsets, dtype=float)
    g0 = slope * w.sum(axis=1) - 1
    m1, m2 = w @ j, w @ j**2
    neutral = np.abs(g0) <= 1e-12 * np.maximum(1.0, np.abs(slope) * np.abs(w).sum(axis=1))
    flat = np.abs(m2) <= 1e-12 * (np.abs(w) @ j**2)
    with np.errstate(divide="ignore", invalid="ignore"):
        reaction = np.where(g0 < 0, -2 / g0, 0.0)
        longwave = np.where(flat | (slope * m2 < 0), 0.0, np.where(m1 == 0, np.inf, m2 / (slope * m1**2)))
    kind = np.where(neutral, np.where(flat & (m1 != 0), "no-diffusion",
                                      np.where(~flat & (slope * m2 < 0), "anti-diffusion", "long-wave")),
                    np.where(g0 < 0, "reaction", "growth"))
    longwave = np.where(flat & (m1 == 0), np.inf, longwave)
    return np.where(neutral, longwave, reaction), kind


def _refine(offsets, w, slope, lo, hi, iters=32):
    """Golden-section minimisation of ω_max(θ) on [lo, hi] per site (vectorised)."""
    f = lambda t: _omega_limit(*_evaluate_pointwise(offsets, w, t, slope))
    a, b = lo.copy(), hi.copy()
    c, d = b - _GOLDEN * (b - a), a + _GOLDEN * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(iters):
        left = fc < fd
        b = np.where(left, d, b)
        a = np.where(left, a, c)
        c, d = b - _GOLDEN * (b - a), a + _GOLDEN * (b - a)
        fc, fd = f(c), f(d)
    t = (a + b) / 2
    return f(t), t


def _evaluate_pointwise(offsets, w, t, slope):
    re, im = _numeric(tuple(offsets))(tuple(w[:, k] for k in range(w.shape[1])), t, slope)
    return np.broadcast_to(re, t.shape), np.broadcast_to(im, t.shape)


def mode_limits(offsets, w: np.ndarray, omega: float, slope: float = 1.0,
                points: int = THETA_POINTS) -> ModeLimits:
    """Admissible ω per site and mode family for weights ``w`` of shape (sites, len(offsets))."""
    theta = np.linspace(0.0, np.pi, points + 1)
    re, im = _evaluate(offsets, w, theta[1:], slope)
    lim = _omega_limit(re, im)                               # (sites, points): θ_1 … π
    zero, kind = _zero_limit(offsets, w, slope)
    k = np.argmin(lim[:, :-1], axis=1)                       # interior: θ_1 … θ_{points-1}
    lo, hi = theta[np.maximum(k, 1)], theta[np.minimum(k + 2, points)]
    refined, t = _refine(offsets, w, slope, lo, hi)
    interior = np.minimum(lim[np.arange(len(k)), k], refined)
    t = np.where(refined <= lim[np.arange(len(k)), k], t, theta[k + 1])
    re0 = slope * w.sum(axis=1) - 1
    g0 = np.abs(1 + omega * re0)[:, None]
    gain = np.concatenate([g0, np.sqrt((1 + omega * re) ** 2 + (omega * im) ** 2)], axis=1)
    return ModeLimits(zero=zero, pi=lim[:, -1], interior=interior, theta_star=t, zero_kind=kind,
                      theta=theta, gain=gain)
