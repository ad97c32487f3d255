r"""Numerical fluxes of a scalar conservation law, derived by SymPy.

A flux-form layer discretises :math:`z_t + ∂_q g(z) = ∂_q(D ∂_q z)` in conservative form, one face
flux per cell face:

.. math::
    Z_i = z_i - \frac{F(z_i, z_{i+1}) - F(z_{i-1}, z_i)}{Δ}
              + D\,\frac{(z_{i+1} - z_i) - (z_i - z_{i-1})}{Δ^2}

(the time step is absorbed in ``g`` and ``D``, as in every npdegen layer). The sum over cells
telescopes, so ``Σ z`` is kept exactly on a periodic grid and behind zero-flux walls. The
numerical flux ``F(a, b)`` (``a`` left, ``b`` right of the face) is one of

==================  =====================================================================  =========
``central``         ``(g(a) + g(b))/2``                                                    any ``g``
``rusanov``         ``(g(a) + g(b))/2 − max(|g'(a)|, |g'(b)|)(b − a)/2`` (local Lax–Friedrichs) any ``g``
``engquist_osher``  ``g(max(a, u*)) + g(min(b, u*)) − g(u*)`` (convex; mirrored if concave)  convex/concave
``godunov``         ``max(g(max(a, u*)), g(min(b, u*)))`` (convex; ``min``/mirrored if concave) convex/concave
==================  =====================================================================  =========

with ``u*`` the sonic point ``g'(u*) = 0`` (solved by SymPy). For a linear flux ``g = c·u`` the
last two are the upwind flux ``max(c, 0)·a + min(c, 0)·b``; for a convex flux without sonic point
(``g' > 0`` everywhere) they are ``g(a)``. Godunov's exact Riemann flux for a flux that is neither
convex nor concave needs the minimum/maximum of ``g`` over ``[a, b]``, which has no closed form in
general: such fluxes are refused for ``godunov`` and ``engquist_osher`` (use ``rusanov``).
Convexity must be provable by SymPy from the symbols' assumptions: write ``c*z**2/2`` with
``c = Symbol("c", positive=True)`` or ``exp(a)*z**2/2``.

The monotone fluxes (all but ``central``) give a positive, row-stochastic linearisation when
``max|g'|·Σ_k 1/Δ_k + 2D·Σ_k 1/Δ_k² ≤ 1`` (the CFL bound of :func:`cfl_number`). With face
coefficients (:mod:`npdegen.faces`: ``g`` and ``D`` may differ from face to face) ``D`` is the
largest over faces, and for the upwind-type fluxes ``max|g'|`` becomes
``max_u [max_f g'(u; θ_f)^+ + max_f g'(u; θ_f)^-]``: a cell can lose mass through both faces at
once (:func:`npdegen.faces.speed_bound`).
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

__all__ = ["NUMERICAL_FLUXES", "FluxFunction", "flux_function", "numerical_flux", "cfl_number"]

NUMERICAL_FLUXES = ("central", "rusanov", "engquist_osher", "godunov")

#: the state variable of a flux function g(u)
U = sp.Symbol("u", real=True)


@dataclass(frozen=True)
class FluxFunction:
    """``g(u)`` with its derivatives and shape: ``kind`` is ``"linear"``, ``"convex"``,
    ``"concave"`` or ``"general"``; ``sonic`` the point ``g'(u*) = 0`` (or None)."""
    g: sp.Expr
    speed: sp.Expr            # g'(u)
    kind: str
    sonic: sp.Expr | None

    def __call__(self, value: sp.Expr) -> sp.Expr:
        return self.g.xreplace({U: value})

    def speed_at(self, value: sp.Expr) -> sp.Expr:
        return self.speed.xreplace({U: value})


def flux_function(g: sp.Expr) -> FluxFunction:
    """Classify ``g(u)`` (an expression in :data:`U`) for the numerical fluxes."""
    speed = sp.diff(g, U)
    curvature = sp.simplify(sp.diff(g, U, 2))
    if curvature == 0:
        return FluxFunction(g, speed, "linear", None)
    if curvature.is_nonnegative:
        kind = "convex"
    elif curvature.is_nonpositive:
        kind = "concave"
    else:
        return FluxFunction(g, speed, "general", None)
    roots = [r for r in sp.solve(sp.Eq(speed, 0), U) if r.is_real is not False]
    if len(roots) > 1:
        return FluxFunction(g, speed, "general", None)
    return FluxFunction(g, speed, kind, roots[0] if roots else None)


def _upwind_sign(flux: FluxFunction) -> int:
    """+1 if g' > 0 everywhere, −1 if g' < 0 everywhere (a convex flux without sonic point)."""
    if flux.speed.is_positive:
        return 1
    if flux.speed.is_negative:
        return -1
    raise ValueError(f"the flux g(u) = {flux.g} is {flux.kind} without a sonic point but SymPy cannot decide "
                     f"the sign of g'(u) = {flux.speed}; declare the parameters' signs (positive=True)")


def numerical_flux(flux: FluxFunction, method: str, a: sp.Expr, b: sp.Expr) -> sp.Expr:
    """``F(a, b)`` of ``method`` (see the module table) for the face between states ``a`` and ``b``."""
    if method not in NUMERICAL_FLUXES:
        raise ValueError(f"numerical_flux must be one of {', '.join(NUMERICAL_FLUXES)}, got {method!r}")
    g = flux
    if method == "central":
        return (g(a) + g(b)) / 2
    if method == "rusanov":
        return (g(a) + g(b)) / 2 - sp.Max(sp.Abs(g.speed_at(a)), sp.Abs(g.speed_at(b))) * (b - a) / 2
    if g.kind == "general":
        raise ValueError(
            f"numerical_flux={method!r} needs a flux that SymPy can prove convex or concave with at most one "
            f"sonic point; g(u) = {g.g} is not (g'' = {sp.diff(g.g, U, 2)}). The general Godunov flux has no "
            "closed form: use numerical_flux='rusanov', or declare the parameters' signs (positive=True)")
    if g.kind == "linear":              # upwind: both methods agree
        c = g.speed
        return sp.Max(c, 0) * a + sp.Min(c, 0) * b
    if g.sonic is None:
        return g(a) if _upwind_sign(g) > 0 else g(b)
    s = g.sonic
    if method == "engquist_osher":
        if g.kind == "convex":
            return g(sp.Max(a, s)) + g(sp.Min(b, s)) - g(s)
        return g(sp.Min(a, s)) + g(sp.Max(b, s)) - g(s)
    if g.kind == "convex":
        return sp.Max(g(sp.Max(a, s)), g(sp.Min(b, s)))
    return sp.Min(g(sp.Min(a, s)), g(sp.Max(b, s)))


def cfl_number(max_speed: float, diffusion: float, spacing) -> float:
    r"""``max|g'|·Σ_k 1/Δ_k + 2D·Σ_k 1/Δ_k²``: a monotone flux layer with identity activation and
    ω ≤ 1 is positive, conservative and total-variation diminishing when this is ≤ 1 (one
    coefficient for all faces; :meth:`npdegen.ConservationLaw.certificate` covers face coefficients)."""
    spacing = tuple(spacing)
    return float(max_speed * sum(1 / d for d in spacing) + 2 * diffusion * sum(1 / d ** 2 for d in spacing))
