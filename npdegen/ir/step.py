r"""The step IR: what one layer does at one grid site, with every Jacobian its adjoint needs.

A layer step at site ``i`` (a multi-index on a 1–3-D grid) is

.. math::
    z'_i = (1-ω)\,z_i + ω\,f(Z_i; φ), \qquad Z_i = G(z[i+o_1], …, z[i+o_K]; θ_i, Δ) - b_i,

with ``G`` any SymPy expression of a finite set of *accesses* ``z[i+o]`` (integer offset tuples),
parameters and the spacings — linear or not. SymPy derives, once, ``∂G/∂z[i+o]`` (a function of
the accesses when ``G`` is nonlinear), ``∂G/∂θ_p``, ``f'`` and ``∂f/∂φ_p``. The adjoint is then
generic (``λ'`` the cotangent of ``z'``):

.. math::
    s = ω f'(Z) λ', \qquad λ_j = (1-ω) λ'_j + Σ_o s_{j-o}\, ∂G/∂z[j]\big|_{\text{site } j-o},

and each parameter's gradient is a reduction of ``s·∂G/∂θ_p`` (``ω λ'·∂f/∂φ_p`` for an
activation parameter, ``−s`` for the bias) over the batch, and over sites for homogeneous ones.

Names live in their own namespaces, so that no user name can collide with a name of generated
code: parameters are the symbols ``p_<name>``, spacings ``Delta0, Delta1, …``, accesses
``z_m1, z_0, z_p1_m1, …`` (:func:`~npdegen.derive.discretise.access_name`), the activation's
argument ``Z``. Templates never define a name starting with ``p_`` or ``z_``.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import sympy as sp

from ..derive.discretise import discretise_site
from ..spec.activations import ACTIVATION_SYMBOL
from ..spec.layerspec import LayerSpec, summary_lines

__all__ = ["Parameter", "StepIR", "build_step", "ARGUMENT", "param_symbol"]

#: The activation's argument in the IR.
ARGUMENT = sp.Symbol("Z", real=True)


def param_symbol(name: str) -> sp.Symbol:
    """The IR symbol of the user's parameter ``name``: ``p_<name>``, a real number."""
    return sp.Symbol(f"p_{name}", real=True)


@dataclass(frozen=True)
class Parameter:
    """A parameter: the user's ``name`` (its key in ``theta``), its ``family``, its IR ``symbol``
    and where it enters: ``"transform"`` (``G``) or ``"activation"`` (``f``); or ``"fixed"``: a
    per-site field of ``G`` that the network supplies from the grid and boundaries (the face masks
    of a flux-form layer, :data:`StepIR.fixed`) and that is never trained."""
    name: str
    family: str
    symbol: sp.Symbol
    role: str


@dataclass(frozen=True)
class StepIR:
    """The frozen description of one layer step (see the module docstring)."""
    name: str
    dim: int
    summary: tuple            # lines: the spec as written
    derivation: tuple         # lines: stencils of each derivative, G, f, the Jacobians
    accesses: tuple           # offset tuples, sorted
    access_symbols: tuple     # one symbol per access
    site: sp.Expr             # G in access symbols, parameter symbols and spacing
    linear: bool              # G linear in the accesses
    params: tuple             # Parameter, sorted by name
    bias: str | None
    spacing: tuple            # Delta0, Delta1, ... (positive symbols)
    activation_name: str
    f: sp.Expr                # in ARGUMENT and activation parameter symbols
    halo: tuple               # ghost cells per axis (max |o_k|)
    d_access: tuple           # ∂G/∂z[i+o], in access order
    d_params: tuple           # ((name, ∂G/∂θ)), transform parameters
    fprime: sp.Expr           # ∂f/∂Z
    d_activation: tuple       # ((name, ∂f/∂φ)), activation parameters
    #: fixed per-site fields ``((name, (kind, axis, side)), ...)``: ``("face", k, ±1)`` is 0 in the
    #: cells whose face on side ±1 of axis k is a zero-flux boundary, 1 elsewhere (grid.face_mask)
    fixed: tuple = ()

    @property
    def families(self) -> dict:
        """``{theta key: family}`` of the trained values (fixed fields excluded)."""
        fam = {p.name: p.family for p in self.params if p.role != "fixed"}
        if self.bias:
            fam["b"] = self.bias
        return fam

    def param(self, name: str) -> Parameter:
        return next(p for p in self.params if p.name == name)

    def fingerprint(self) -> str:
        """A hash of everything here that changes generated code."""
        parts = [self.name, str(self.dim), repr(self.accesses), repr(self.halo), repr(self.bias),
                 repr([(p.name, p.family, p.role) for p in self.params]), repr(self.fixed), self.activation_name,
                 *map(sp.srepr, (self.site, self.f)), *self.summary, *self.derivation]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()




def _diff_real(expr: sp.Expr, symbol: sp.Symbol) -> sp.Expr:
    d = sp.diff(expr, symbol)
    if d.atoms(sp.Derivative) or d.has(sp.DiracDelta, sp.nan, sp.zoo):
        raise ValueError(f"the derivative d/d{symbol} of {expr} cannot be evaluated pointwise; use "
                         "expressions that are differentiable in the field and the parameters")
    return d


def build_step(spec: LayerSpec) -> StepIR:
    """Derive the :class:`StepIR` of a validated layer spec (all Jacobians by SymPy)."""
    disc = discretise_site(spec)
    internal = {s: param_symbol(s.name) for s, _ in spec.params}
    spacing = tuple(sp.Symbol(f"Delta{k}", positive=True) for k in range(spec.dim))
    to_ir = {**internal, **dict(zip(disc.spacing, spacing))}
    site = sp.expand(disc.site.xreplace(to_ir)) if spec.linear else disc.site.xreplace(to_ir)
    activation = spec.activation.xreplace(internal).xreplace({ACTIVATION_SYMBOL: ARGUMENT})
    used = site.free_symbols
    keep = [(o, a) for o, a in zip(disc.accesses, disc.symbols) if a in used or spec.offsets is not None]
    if not any(a in used for _, a in keep):
        raise ValueError(f"the discretised transform of {spec.transform} is identically zero")
    accesses, symbols = tuple(o for o, _ in keep), tuple(a for _, a in keep)
    act_names = set(spec.activation_params)
    params = tuple(Parameter(s.name, fam, internal[s], "activation" if s.name in act_names else "transform")
                   for s, fam in spec.params)
    d_access = tuple(_diff_real(site, a) for a in symbols)
    d_params = tuple((p.name, _diff_real(site, p.symbol)) for p in params if p.role == "transform")
    fprime = _diff_real(activation, ARGUMENT)
    d_activation = tuple((p.name, _diff_real(activation, p.symbol)) for p in params if p.role == "activation")
    halo = tuple(max(abs(o[k]) for o in accesses) for k in range(spec.dim))
    linear = all(not (d.free_symbols & set(symbols)) for d in d_access)
    derivation = [st.describe(spec.coordinates) for st in disc.stencils]
    derivation.append(f"G = {sp.sstr(site)}")
    derivation += [f"dG/d{a} = {sp.sstr(d)}" for a, d in zip(symbols, d_access)]
    derivation += [f"dG/d{p.symbol} = {sp.sstr(d)}" for p, (_, d) in
                   zip([p for p in params if p.role == "transform"], d_params)]
    derivation.append(f"f(Z) = {sp.sstr(activation)},  f'(Z) = {sp.sstr(fprime)}")
    derivation += [f"df/d{param_symbol(n)} = {sp.sstr(d)}" for n, d in d_activation]
    return StepIR(name=spec.name, dim=spec.dim, summary=summary_lines(spec), derivation=tuple(derivation),
                  accesses=accesses, access_symbols=symbols, site=site, linear=linear, params=params,
                  bias=spec.bias, spacing=spacing, activation_name=spec.activation_name, f=activation,
                  halo=halo, d_access=d_access, d_params=d_params, fprime=fprime, d_activation=d_activation)
