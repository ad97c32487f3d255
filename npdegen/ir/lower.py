r"""Lowering: decide, once for every target, what a kernel computes per site and what it reduces.

The site expression is split into *terms* ``G = Σ_m w_m(θ, Δ)·φ_m(z) + M(z, θ)``: coefficients
``w_m`` that depend on parameters and spacings only (evaluated once per site and layer, shared by
the whole batch), state factors ``φ_m`` that depend on the accesses only, and a *mixed* rest ``M``
for terms that cannot be split (``exp(θ z)``). For a linear layer the ``φ_m`` are the accesses and
the ``w_m`` are the stencil weights. Then

* forward:  ``Z = Σ_m w_m φ_m + M − b``;
* access Jacobians: ``J_o = ∂G/∂z[i+o] = Σ_m w_m ∂φ_m/∂z[i+o] + ∂M/∂z[i+o]`` (state-free for a
  linear layer: the adjoint is the transposed stencil);
* reductions: per-site sums over the batch ``S_r = Σ_batch weight·R_r`` with ``weight = s`` for
  ``R_r = φ_m`` (or ``∂M/∂θ_p``), ``weight = λ'`` for ``R_r = ∂f/∂φ_p`` (activation
  parameters), plus ``Σ s`` for the bias and ``Σ λ'(f(Z) − z)`` for ω;
* gradients: ``∂L/∂θ_p(i) = Σ_r κ_{p,r}(i) S_r(i)`` with ``κ_{p,r} = ∂w_m/∂θ_p`` (or 1), then
  summed over sites for homogeneous parameters, kept per site for heterogeneous ones and per layer
  row for time-dependent ones (the family decides; :data:`FAMILY_LAYOUT`).

Layer invariance: when no parameter is time-dependent, the coefficients are the same in every layer
and the sums ``S_r`` accumulate over all layers before one assembly (``accumulate``).
The ω convention: ``s`` carries ω (``s = ω f'(Z) λ'``); activation sums are multiplied by ω at
assembly.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from .step import StepIR

__all__ = ["LoweredStep", "Reduction", "GradientRule", "lower", "FAMILY_LAYOUT", "coefficient_symbol"]

#: How each family lays out values and gradients: shape of theta[p] for a grid ``g`` and L layers.
FAMILY_LAYOUT = {"homogeneous": lambda grid, L: (), "heterogeneous": lambda grid, L: tuple(grid),
                 "time-dependent": lambda grid, L: (L, *grid)}


def coefficient_symbol(m: int) -> sp.Symbol:
    return sp.Symbol(f"w{m}", real=True)


@dataclass(frozen=True)
class Reduction:
    """``S(i) = Σ_batch weight(i)·expr(i)``: weight ``"s"`` (= ω f'(Z) λ') or ``"lam"`` (λ')."""
    expr: sp.Expr
    weight: str


@dataclass(frozen=True)
class GradientRule:
    """``∂L/∂θ(i) = scale·Σ_k kappa_k(i)·S_{index_k}(i)``, reduced by ``family``."""
    name: str
    family: str
    terms: tuple              # ((reduction index, kappa expression), ...)
    scale: str                # "1", "-1" (bias) or "omega" (activation parameters)


@dataclass(frozen=True)
class LoweredStep:
    ir: StepIR
    coefficients: tuple       # w_m expressions (parameters, spacing)
    factors: tuple            # φ_m expressions (accesses)
    mixed: sp.Expr            # M (accesses and parameters), 0 when G splits
    forward: sp.Expr          # G in coefficient symbols w_m, accesses, parameters
    access_jacobians: tuple   # J_o in w_m, accesses, parameters; access order
    reductions: tuple         # Reduction
    gradients: tuple          # GradientRule (parameters, then the bias)
    static: bool              # coefficients the same in every layer
    accumulate: bool          # reductions may be summed over layers before one assembly

    @property
    def linear(self) -> bool:
        return self.ir.linear and self.mixed == 0

    @property
    def coefficient_symbols(self) -> tuple:
        return tuple(coefficient_symbol(m) for m in range(len(self.coefficients)))

    @property
    def state_jacobians(self) -> bool:
        """Whether some J_o depends on the state (then the adjoint needs it per batch row)."""
        acc = set(self.ir.access_symbols)
        return any(j.free_symbols & acc for j in self.access_jacobians)


def _split(site: sp.Expr, accesses: set, params: set) -> tuple[dict, sp.Expr]:
    """``{φ: w}`` and the mixed rest of ``site``."""
    terms: dict[sp.Expr, sp.Expr] = {}
    mixed = sp.Integer(0)
    for term in sp.Add.make_args(sp.expand(site)):
        coeff, factor, bad = [], [], False
        for f in sp.Mul.make_args(term):
            fs = f.free_symbols
            if fs & accesses and fs & params:
                bad = True
                break
            (factor if fs & accesses else coeff).append(f)
        if bad or not factor:
            mixed += term
            continue
        phi = sp.Mul(*factor)
        terms[phi] = terms.get(phi, sp.Integer(0)) + sp.Mul(*coeff)
    return {phi: w for phi, w in terms.items() if w != 0}, mixed


def lower(ir: StepIR) -> LoweredStep:
    accesses = set(ir.access_symbols)
    params = {p.symbol for p in ir.params}
    split, mixed = _split(ir.site, accesses, params)
    order = sorted(split, key=lambda phi: (len(phi.free_symbols) > 1 or not phi.is_Symbol,
                                           [ir.access_symbols.index(a) for a in sorted(
                                               phi.free_symbols & accesses, key=ir.access_symbols.index)],
                                           sp.default_sort_key(phi)))
    factors = tuple(order)
    coefficients = tuple(split[phi] for phi in factors)
    wsyms = [coefficient_symbol(m) for m in range(len(factors))]
    forward = sum((w * phi for w, phi in zip(wsyms, factors)), sp.Integer(0)) + mixed
    jac = tuple(sp.diff(forward, a) for a in ir.access_symbols)
    reductions: list[Reduction] = []

    def reduction(expr, weight) -> int:
        r = Reduction(expr, weight)
        if r not in reductions:
            reductions.append(r)
        return reductions.index(r)

    rules = []
    time_dependent = any(p.family == "time-dependent" for p in ir.params)
    for p in ir.params:
        if p.role == "fixed":          # supplied by the network, never trained
            continue
        terms = []
        if p.role == "transform":
            for m, (phi, w) in enumerate(zip(factors, coefficients)):
                kappa = sp.diff(w, p.symbol)
                if kappa != 0:
                    terms.append((reduction(phi, "s"), kappa))
            dm = sp.diff(mixed, p.symbol)
            if dm != 0:
                terms.append((reduction(dm, "s"), sp.Integer(1)))
            scale = "1"
        else:
            d = dict(ir.d_activation)[p.name]
            terms.append((reduction(d, "lam"), sp.Integer(1)))
            scale = "omega"
        rules.append(GradientRule(p.name, p.family, tuple(terms), scale))
    if ir.bias:
        rules.append(GradientRule("b", ir.bias, ((reduction(sp.Integer(1), "s"), sp.Integer(1)),), "-1"))
    static = not any(p.family == "time-dependent" and p.role == "transform" for p in ir.params)
    accumulate = not time_dependent and ir.bias != "time-dependent"
    return LoweredStep(ir=ir, coefficients=coefficients, factors=factors, mixed=mixed, forward=forward,
                       access_jacobians=jac, reductions=tuple(reductions), gradients=tuple(rules),
                       static=static, accumulate=accumulate)
