r"""Moments → cumulants, and the effective PDE of repeated relaxation layers (MODEL.md §2).

Convention (as everywhere in npdegen): moments carry no ``1/k!``, ``W_k = Σ_j r_j^k w_j``. With
``Ŵ(k) = Σ_j w_j e^{i k r_j} = Σ_m W_m (ik)^m / m!`` the cumulants are

.. math::  \log Ŵ(k) = \sum_m κ_m \frac{(ik)^m}{m!}, \qquad κ_0 = \log W_0,

i.e. ``κ_m`` (m ≥ 1) are the cumulants of the normalised kernel ``w_j / W_0`` (κ1 its mean,
κ2 its variance). Cumulants add when kernels are composed, so L repeated layers approximate

.. math::  ∂_t z = \sum_m \frac{K_m}{m!} ∂_q^m z     (t in layers)

where ``K_m`` are the cumulants of one whole step ``(1 − ω) δ + ω s W`` (s = f′ at the operating
point): its moments are ``M_0 = 1 − ω + ω s W_0`` and ``M_k = ω s W_k``. For relaxed ADR with
f = id: ``K_0 = log(1 + ωR)``, ``K_2/2 = ωD − ω²U²/2`` at R = 0 (Warming & Hyett).

Every function here works on SymPy expressions and on NumPy arrays alike.
"""
from __future__ import annotations

from math import comb, factorial

import numpy as np
import sympy as sp

__all__ = ["cumulants_from_moments", "moments_from_cumulants", "step_moments", "TERMS", "term_name",
           "describe_term"]

#: name and the sign meaning of the coefficient c_m = K_m/m! of ∂^m z in ∂_t z = Σ c_m ∂^m z.
TERMS = {
    0: ("reaction", "growth rate: > 0 amplifies, < 0 damps"),
    1: ("advection", "c1 z_q transports with velocity -c1 (towards +q when c1 < 0)"),
    2: ("diffusion", "diffusivity: > 0 smooths, < 0 is ANTI-DIFFUSION (ill-posed, unstable)"),
    3: ("dispersion", "odd order: wave-number dependent speed, no damping"),
    4: ("hyper-diffusion", "coefficient of z_qqqq: < 0 damps short waves, > 0 is anti-hyper-diffusion (unstable)"),
}


def term_name(order: int) -> str:
    if order in TERMS:
        return TERMS[order][0]
    return "higher (generalised diffusion)" if order % 2 == 0 else "higher (generalised propagation)"


def describe_term(order: int, value=None) -> tuple[str, str]:
    """``(name, meaning)`` of the coefficient of ``∂^order z``; with a numeric ``value`` the
    meaning states the sign's consequence and flags destabilising terms."""
    name = term_name(order)
    if value is None or not np.isfinite(value):
        return name, TERMS.get(order, (name, "higher-order correction"))[1]
    v = float(value)
    if order == 0:
        return name, "growth" if v > 0 else ("decay" if v < 0 else "neutral")
    if order == 1:
        return name, f"transport towards {'+' if v < 0 else '-'}q at speed {abs(v):.4g}" if v else "no transport"
    if order % 4 == 2:   # (ik)^m = -k^2, k^6 ...: a positive coefficient damps
        return name, ("smoothing" if v > 0 else "ANTI-DIFFUSION: unstable" if v < 0 else "none")
    if order % 4 == 0:   # (ik)^m = +k^4, ...: a negative coefficient damps
        return name, ("damps short waves" if v < 0 else "ANTI-HYPER-DIFFUSION: unstable" if v > 0 else "none")
    return name, "dispersive (phase error, no damping)" if v else "none"


def _log(x):
    if isinstance(x, sp.Basic):
        return sp.log(x)
    x = np.asarray(x, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(x > 0, np.log(np.where(x > 0, x, 1.0)), np.nan)


def _div(a, b):
    if isinstance(a, sp.Basic) or isinstance(b, sp.Basic):
        return sp.sympify(a) / b
    b = np.asarray(b, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(b != 0, np.asarray(a, dtype=float) / np.where(b != 0, b, 1.0), np.nan)


def _tidy(x):
    return sp.together(x) if isinstance(x, sp.Basic) else x


def cumulants_from_moments(moments) -> list:
    """``[κ_0, …, κ_K]`` from ``[W_0, …, W_K]`` (no 1/k!). ``κ_0 = log W_0`` (NaN for W_0 ≤ 0 in
    NumPy); ``κ_m`` for m ≥ 1 are those of ``w / W_0`` (NaN where W_0 = 0).

    Recursion: ``κ_n = μ_n − Σ_{m=1}^{n−1} C(n−1, m−1) κ_m μ_{n−m}`` with ``μ_k = W_k / W_0``.
    """
    moments = list(moments)
    if not moments:
        raise ValueError("need at least the moment W_0")
    mu = [_div(m, moments[0]) for m in moments]
    kappa = [_log(moments[0])]
    for n in range(1, len(moments)):
        k = mu[n] - sum(comb(n - 1, m - 1) * kappa[m] * mu[n - m] for m in range(1, n))
        kappa.append(_tidy(k))
    return kappa


def moments_from_cumulants(cumulants) -> list:
    """Inverse of :func:`cumulants_from_moments`: ``W_n = W_0 Σ … `` with ``W_0 = exp κ_0``."""
    kappa = list(cumulants)
    exp = sp.exp if isinstance(kappa[0], sp.Basic) else np.exp
    mu = [1]
    for n in range(1, len(kappa)):
        mu.append(sum(comb(n - 1, m - 1) * kappa[m] * mu[n - m] for m in range(1, n + 1)))
    w0 = exp(kappa[0])
    return [_tidy(w0 * m) for m in mu]


def step_moments(moments, omega, slope=1) -> list:
    """Moments of one relaxed, linearised step ``(1 − ω) δ + ω s W``."""
    out = [1 - omega + omega * slope * moments[0]]
    out += [omega * slope * m for m in moments[1:]]
    return [sp.expand(m) if isinstance(m, sp.Basic) else m for m in out]


def coefficients(cumulants, dt=1) -> list:
    """PDE coefficients ``c_m = K_m / (m! dt)`` of ``∂_t z = Σ c_m ∂^m z``."""
    return [_tidy(k / (factorial(m) * dt)) if isinstance(k, sp.Basic) else k / (factorial(m) * dt)
            for m, k in enumerate(cumulants)]
