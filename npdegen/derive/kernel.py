"""The frozen kernel description handed to code generation.

Everything a backend needs, derived by SymPy from a :class:`~npdegen.spec.layerspec.LayerSpec`:

* the stencil offsets ``j`` and weights ``w_j(θ, Δ)`` (zero weights dropped),
* the Jacobians ``∂w_j/∂θ_p`` of every weight with respect to every parameter,
* the activation ``f(x)`` and its derivative ``f'(x)``,
* the parameter layout (name, family) and the bias family,
* the derivation, as text lines for the generated code's comments.

No backend derives anything itself, and nothing in npdegen differentiates by hand.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import sympy as sp

from ..spec.activations import ACTIVATION_SYMBOL
from ..spec.layerspec import LayerSpec, summary_lines
from .stencil import Stencil, discretise, stencil_moments

__all__ = ["KernelIR", "build_kernel"]


@dataclass(frozen=True)
class KernelIR:
    name: str
    summary: tuple            # lines describing the spec as written
    derivation: tuple         # lines: Fornberg weights, stencil, moments
    offsets: tuple            # offsets with a nonzero weight
    halo: int                 # ghost cells needed on each side
    weights: tuple            # w_j for each offset, in parameter symbols and SPACING
    dweights: tuple           # ((param name, (∂w_j/∂θ for each offset)), ...)
    params: tuple             # ((name, family), ...), sorted by name
    bias: str | None
    activation_name: str
    f: sp.Expr                # in ACTIVATION_SYMBOL
    fprime: sp.Expr

    def fingerprint(self) -> str:
        """A hash of everything here that changes generated code."""
        parts = [self.name, repr(self.offsets), str(self.halo), repr(self.params), repr(self.bias),
                 self.activation_name, *map(sp.srepr, (*self.weights, self.f, self.fprime)),
                 *(p + ":" + ",".join(map(sp.srepr, d)) for p, d in self.dweights),
                 *self.summary, *self.derivation]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _derivation(spec: LayerSpec, stencil: Stencil) -> tuple:
    lines = []
    for order, weights, acc in stencil.fornberg:
        ws = ", ".join(f"{j}: {sp.sstr(a)}" for j, a in weights.items())
        lines.append(f"d^{order}/d{spec.coordinate.name}^{order} ~ {{{ws}}} / Delta^{order}   (accuracy {'exact' if acc == float('inf') else acc})")
    for j, w in zip(stencil.offsets, stencil.weights):
        lines.append(f"w[{j:+d}] = {sp.sstr(w)}")
    for k, m in stencil_moments(stencil, min(len(stencil.offsets), 4)).items():
        lines.append(f"W{k} = sum_j (j*Delta)^{k} w_j = {sp.sstr(m)}")
    return tuple(lines)


def build_kernel(spec: LayerSpec) -> KernelIR:
    """Derive the :class:`KernelIR` of a validated layer spec."""
    stencil = discretise(spec)
    live = [(j, w) for j, w in zip(stencil.offsets, stencil.weights) if w != 0]
    if not live:
        raise ValueError(f"the stencil of {spec.transform} is identically zero")
    offsets = tuple(j for j, _ in live)
    # Parameters are real numbers: say so before differentiating (d|A|/dA = sign(A), not re/im parts).
    real = {sym: sp.Symbol(sym.name, real=True) for sym, _ in spec.params}
    back = {r: sym for sym, r in real.items()}
    weights = tuple(w for _, w in live)
    dweights = tuple((sym.name, tuple(sp.diff(w.xreplace(real), real[sym]).xreplace(back) for w in weights))
                     for sym, _ in spec.params)
    for name, ds in dweights:
        for d in ds:
            if d.atoms(sp.Derivative) or d.has(sp.DiracDelta, sp.nan, sp.zoo):
                raise ValueError(f"the stencil weight derivative d/d{name} = {d} cannot be evaluated "
                                 "pointwise; use coefficients that are differentiable in the parameters")
    x = ACTIVATION_SYMBOL
    return KernelIR(
        name=spec.name,
        summary=summary_lines(spec),
        derivation=_derivation(spec, stencil),
        offsets=offsets,
        halo=max(abs(j) for j in stencil.offsets),
        weights=weights,
        dweights=dweights,
        params=tuple((s.name, fam) for s, fam in spec.params),
        bias=spec.bias,
        activation_name=spec.activation_name,
        f=spec.activation,
        fprime=sp.diff(spec.activation, x),
    )
