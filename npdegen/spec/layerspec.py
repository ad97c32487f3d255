"""The validated description of a neural-PDE layer: what the user wrote, nothing derived.

A layer is the relaxation step (MODEL.md §1)

.. math::  z_{t+1} = (1-ω)\\,z_t + ω\\,f(Z_t), \\qquad Z_t = T[z_t] - b,

with ``T`` a linear differential operator ``T[z] = Σ_k c_k(θ) ∂_q^k z`` whose coefficients are
expressions of parameter symbols θ. :func:`make_spec` checks the user's input and splits ``T``
into its terms ``{k: c_k}``; everything else (stencils, moments, Jacobians) is derived later.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import sympy as sp
from sympy.core.function import AppliedUndef

from .activations import resolve_activation
from .names import validate_identifier

__all__ = ["FAMILIES", "LayerSpec", "make_spec", "MAX_PARAMS", "MAX_OFFSETS", "MAX_DERIVATIVE"]

#: Parameter families: one value per layer stack, per site, or per site and layer.
FAMILIES = ("homogeneous", "heterogeneous", "time-dependent")
#: Resource bounds: they keep derivation and generated code small and fast to build.
MAX_PARAMS = 32
MAX_DERIVATIVE = 8
MAX_OFFSETS = 17
#: theta keys the runtime reserves for itself.
_THETA_KEYS = ("b", "omega")


@dataclass(frozen=True)
class LayerSpec:
    """What a layer is, validated. Build it with :func:`make_spec`.

    ``terms`` maps a derivative order k to its coefficient c_k(θ) (a SymPy expression of the
    parameter symbols only); ``params`` is a tuple of ``(symbol, family)`` sorted by name.
    """
    name: str
    field: sp.Expr            # z(q)
    coordinate: sp.Symbol     # q
    transform: sp.Expr        # as written by the user
    terms: tuple              # ((k, c_k), ...) sorted by k
    activation_name: str
    activation: sp.Expr       # f(x), x = ACTIVATION_SYMBOL
    params: tuple             # ((Symbol, family), ...)
    bias: str | None
    accuracy: int | None      # None: the given offsets decide
    offsets: tuple | None     # None: central offsets for `accuracy`

    @property
    def field_name(self) -> str:
        return self.field.func.__name__

    @property
    def param_families(self) -> dict:
        return {s.name: fam for s, fam in self.params}


def _check_family(family, what: str) -> str:
    if family not in FAMILIES:
        raise ValueError(f"{what}: family must be one of {', '.join(FAMILIES)}, got {family!r}")
    return family


def _split_field(field) -> tuple[sp.Expr, sp.Symbol]:
    if not isinstance(field, AppliedUndef):
        raise TypeError(
            "field must be an undefined function applied to a coordinate, e.g. "
            f"sympy.Function('z')(sympy.Symbol('q')); got {field!r}")
    if len(field.args) != 1 or not isinstance(field.args[0], sp.Symbol):
        raise ValueError(
            f"field {field} must depend on exactly one coordinate symbol (1-D layers); "
            "N-D layers are not supported yet")
    validate_identifier(field.func.__name__, "field name")
    validate_identifier(field.args[0].name, "coordinate name")
    return field, field.args[0]


def _split_terms(transform: sp.Expr, field: sp.Expr, q: sp.Symbol) -> dict[int, sp.Expr]:
    """Split ``T = Σ_k c_k ∂^k z`` into ``{k: c_k}``, refusing anything not of that form."""
    dummy = {0: sp.Dummy("d0")}          # derivative order -> placeholder symbol
    replace: dict[sp.Expr, sp.Symbol] = {}
    for d in sorted(transform.atoms(sp.Derivative), key=sp.default_sort_key):
        if d.expr != field or set(d.variables) != {q}:
            raise ValueError(f"transform: only derivatives of {field} in {q} are allowed, found {d}")
        order = len(d.variables)
        if order > MAX_DERIVATIVE:
            raise ValueError(f"transform: derivative order {order} exceeds the limit {MAX_DERIVATIVE}")
        replace[d] = dummy.setdefault(order, sp.Dummy(f"d{order}"))
    other = [f for f in transform.atoms(AppliedUndef) if f != field]
    if other:
        raise ValueError(f"transform: unknown function(s) {other}; the field is {field}")
    expr = transform.subs(replace).subs(field, dummy[0])  # derivatives first: they contain z
    if expr.has(q):
        raise ValueError(f"transform: coefficients may not depend on the coordinate {q} explicitly; "
                         "use a heterogeneous parameter instead")
    placeholders = set(dummy.values())
    terms = {k: sp.diff(expr, d) for k, d in dummy.items()}
    if any(c.free_symbols & placeholders for c in terms.values()):
        raise ValueError(f"transform is nonlinear in the field {field}: {transform}")
    rest = sp.expand(expr - sum(c * dummy[k] for k, c in terms.items()))
    if rest.free_symbols & placeholders:
        raise ValueError(f"transform is nonlinear in the field {field}: {transform}")
    if rest != 0:
        raise ValueError(
            f"transform has a term without the field: {rest}; a source term belongs in the bias "
            "(bias='homogeneous' | 'heterogeneous' | 'time-dependent')")
    terms = {k: c for k, c in terms.items() if c != 0}
    if not terms:
        raise ValueError(f"transform {transform} does not contain the field {field}")
    return terms


def _normalise_params(params, used: set[sp.Symbol]) -> tuple:
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a mapping symbol -> family, got {type(params).__name__}")
    if len(params) > MAX_PARAMS:
        raise ValueError(f"too many parameters ({len(params)}); the limit is {MAX_PARAMS}")
    out: dict[str, tuple[sp.Symbol, str]] = {}
    for key, family in params.items():
        sym = sp.Symbol(key) if isinstance(key, str) else key
        if not isinstance(sym, sp.Symbol):
            raise TypeError(f"params keys must be SymPy symbols or names, got {key!r}")
        name = validate_identifier(sym.name, "parameter name")
        if name in _THETA_KEYS:
            raise ValueError(f"parameter name {name!r} is reserved for the runtime ({', '.join(_THETA_KEYS)})")
        if name in out:
            raise ValueError(f"parameter {name!r} is given twice")
        out[name] = (sym, _check_family(family, f"parameter {name!r}"))
    by_name = {s.name: s for s in used}
    for name, sym in sorted(by_name.items()):
        if name not in out:
            raise ValueError(
                f"parameter {name!r} appears in the transform but has no family; add it to params "
                f"with one of {', '.join(FAMILIES)}")
        if out[name][0] != sym:
            raise ValueError(f"parameter {name!r}: the symbol in params differs from the one in the "
                             f"transform (assumptions differ: {out[name][0].assumptions0} vs {sym.assumptions0})")
    unused = sorted(set(out) - set(by_name))
    if unused:
        raise ValueError(f"parameter(s) {', '.join(unused)} do not appear in the transform")
    return tuple(out[name] for name in sorted(out))


def make_spec(transform, field, *, activation="identity", params=None, bias=None,
              accuracy=2, offsets=None, name="neural_pde") -> LayerSpec:
    """Validate the user's layer description and return a :class:`LayerSpec`."""
    field, q = _split_field(field)
    if not isinstance(transform, sp.Expr):
        raise TypeError(f"transform must be a SymPy expression, got {type(transform).__name__}")
    validate_identifier(name, "layer name")
    terms = _split_terms(transform, field, q)
    used = set().union(*(c.free_symbols for c in terms.values()))
    param_tuple = _normalise_params(params, used)
    if bias is not None:
        _check_family(bias, "bias")
    act_name, act = resolve_activation(activation)
    if offsets is not None:
        if isinstance(offsets, (str, bytes)) or not isinstance(offsets, Sequence):
            raise TypeError(f"offsets must be a sequence of integers, got {offsets!r}")
        if not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets):
            raise TypeError(f"offsets must be integers (grid units), got {tuple(offsets)!r}")
        if len(set(offsets)) != len(offsets) or not offsets:
            raise ValueError(f"offsets must be distinct and non-empty, got {tuple(offsets)!r}")
        if len(offsets) > MAX_OFFSETS:
            raise ValueError(f"stencil too wide: {len(offsets)} offsets, the limit is {MAX_OFFSETS}")
        offsets = tuple(sorted(offsets))
    if accuracy is not None and (not isinstance(accuracy, int) or isinstance(accuracy, bool) or accuracy < 1):
        raise ValueError(f"accuracy must be a positive integer or None, got {accuracy!r}")
    if accuracy is None and offsets is None:
        raise ValueError("accuracy=None needs explicit offsets")
    return LayerSpec(name=name, field=field, coordinate=q, transform=transform,
                     terms=tuple(sorted(terms.items())), activation_name=act_name,
                     activation=act, params=param_tuple, bias=bias, accuracy=accuracy,
                     offsets=offsets)
