"""The validated description of a neural-PDE layer: what the user wrote, nothing derived.

A layer is the relaxation step (docs/theory.md §1)

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
from .spacing import spacing_symbols

__all__ = ["FAMILIES", "LayerSpec", "make_spec", "summary_lines", "MAX_PARAMS", "MAX_OFFSETS", "MAX_DERIVATIVE", "MAX_DIM",
           "MAX_ACCURACY"]

#: Parameter families: one value per layer stack, per site, or per site and layer.
FAMILIES = ("homogeneous", "heterogeneous", "time-dependent")
#: Resource bounds: they keep derivation and generated code small and fast to build.
MAX_PARAMS = 32
MAX_DERIVATIVE = 8
MAX_OFFSETS = 17
MAX_DIM = 3
#: Central stencils of this accuracy reach MAX_OFFSETS points for the highest derivative order.
MAX_ACCURACY = 16
#: theta keys the runtime reserves for itself.
_THETA_KEYS = ("b", "omega")


@dataclass(frozen=True)
class LayerSpec:
    """What a layer is, validated. Build it with :func:`make_spec`.

    ``site_form`` is the transform with the field and each of its derivatives replaced by a
    placeholder symbol: ``derivatives`` lists ``(α, placeholder)`` with ``α`` the multi-index of
    the derivative (``(0,…,0)`` for the field itself). For a transform linear in the field,
    ``terms`` maps a derivative order to its coefficient ``c(θ)`` (a SymPy expression of the
    parameter symbols only): an ``int`` k in 1-D, the multi-index ``α`` in N-D; for a nonlinear
    transform ``terms`` is ``None``. ``params`` is a tuple of ``(symbol, family)`` sorted by name;
    ``activation_params`` names those that enter the activation only.
    """
    name: str
    field: sp.Expr            # z(q) or z(x, y) or z(x, y, w)
    coordinates: tuple        # (q,) or (x, y) ...
    transform: sp.Expr        # as written by the user
    derivatives: tuple        # ((alpha, placeholder Dummy), ...) sorted by alpha
    site_form: sp.Expr        # transform in the placeholders
    terms: tuple | None       # linear: ((k or alpha, c), ...) sorted; nonlinear: None
    activation_name: str
    activation: sp.Expr       # f(x), x = ACTIVATION_SYMBOL, may contain activation parameters
    params: tuple             # ((Symbol, family), ...)
    bias: str | None
    accuracy: int | None      # None: the given offsets decide
    offsets: tuple | None     # None: central offsets for `accuracy`
    activation_params: tuple = ()
    shifts: tuple = ()        # ((offset, placeholder), ...): explicit accesses z(x + kΔ_x, ...)
    is_linear: bool = True    # the transform is linear in the field (derivatives and shifts)

    @property
    def coordinate(self) -> sp.Symbol:
        """The coordinate of a 1-D layer (the first one in N-D)."""
        return self.coordinates[0]

    @property
    def dim(self) -> int:
        return len(self.coordinates)

    @property
    def linear(self) -> bool:
        return self.is_linear

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


def _split_field(field) -> tuple[sp.Expr, tuple]:
    if not isinstance(field, AppliedUndef):
        raise TypeError(
            "field must be an undefined function applied to its coordinates, e.g. "
            f"sympy.Function('z')(sympy.Symbol('q')) or z(x, y); got {field!r}")
    if not 1 <= len(field.args) <= MAX_DIM or not all(isinstance(a, sp.Symbol) for a in field.args):
        raise ValueError(
            f"field {field} must depend on 1 to {MAX_DIM} coordinate symbols, e.g. z(x), z(x, y), z(x, y, w)")
    if len(set(field.args)) != len(field.args):
        raise ValueError(f"field {field}: coordinates must be distinct")
    validate_identifier(field.func.__name__, "field name")
    for c in field.args:
        validate_identifier(c.name, "coordinate name")
    return field, tuple(field.args)


def _placeholders(transform: sp.Expr, field: sp.Expr, coords: tuple) -> tuple[sp.Expr, dict]:
    """The transform with ``∂^α z`` replaced by placeholder symbols; returns ``(form, {α: symbol})``."""
    zero = (0,) * len(coords)
    dummy = {zero: sp.Dummy("d" + "".join(map(str, zero)))}
    replace: dict[sp.Expr, sp.Symbol] = {}
    for d in sorted(transform.atoms(sp.Derivative), key=sp.default_sort_key):
        if d.expr != field or not set(d.variables) <= set(coords):
            raise ValueError(f"transform: only derivatives of {field} in {', '.join(map(str, coords))} "
                             f"are allowed, found {d}")
        alpha = tuple(d.variables.count(c) for c in coords)
        if sum(alpha) > MAX_DERIVATIVE:
            raise ValueError(f"transform: derivative order {sum(alpha)} of {d} exceeds the limit {MAX_DERIVATIVE}")
        replace[d] = dummy.setdefault(alpha, sp.Dummy("d" + "".join(map(str, alpha))))
    shifts: dict[tuple, sp.Symbol] = {}
    for f in sorted(transform.atoms(AppliedUndef), key=sp.default_sort_key):
        if f == field:
            continue
        offset = _shift(f, field, coords)
        if offset is None:
            raise ValueError(f"transform: unknown function(s) {f}; the field is {field} (a non-local term "
                             "is not a local update; a shifted access is written z(q + k*Delta), "
                             "z(x + k*Delta_x, y + m*Delta_y) with integers k, m)")
        replace[f] = shifts.setdefault(offset, sp.Dummy("s" + "_".join(map(str, offset))))
    form = transform.xreplace(replace).xreplace({field: dummy[zero]})   # derivatives first: they contain z
    if form.atoms(AppliedUndef) or form.atoms(sp.Derivative):
        raise ValueError(f"transform: {transform} is not a local expression of {field} and its derivatives")
    explicit = sorted((c.name for c in coords if form.has(c)))
    if explicit:
        raise ValueError(f"transform: coefficients may not depend on the coordinate(s) {', '.join(explicit)} "
                         "explicitly; use a heterogeneous parameter instead")
    if not form.free_symbols & (set(dummy.values()) | set(shifts.values())):
        raise ValueError(f"transform {transform} does not contain the field {field}")
    return form, dummy, shifts


def _shift(f, field, coords) -> tuple | None:
    """The integer offset of a shifted access ``z(x + k Δ_x, …)`` of the field, else ``None``."""
    if f.func != field.func or len(f.args) != len(coords):
        return None
    offset = []
    for arg, c, delta in zip(f.args, coords, spacing_symbols(coords)):
        k = sp.simplify((arg - c) / delta)
        if not k.is_Integer or abs(int(k)) > MAX_OFFSETS // 2:
            return None
        offset.append(int(k))
    return tuple(offset)


def _linear_terms(form: sp.Expr, dummy: dict, transform, field) -> dict | None:
    """``{key: c}`` (``key`` a derivative multi-index or a shift's placeholder) if the transform is
    linear in the field, else ``None``; refuses field-free terms."""
    placeholders = set(dummy.values())
    free_terms = [t for t in sp.Add.make_args(sp.expand(form)) if not t.free_symbols & placeholders]
    if free_terms:
        raise ValueError(
            f"transform has a term without the field: {sp.Add(*free_terms)}; a source term belongs in the bias "
            "(bias='homogeneous' | 'heterogeneous' | 'time-dependent')")
    terms = {a: sp.diff(form, d) for a, d in dummy.items()}
    if any(c.free_symbols & placeholders for c in terms.values()):
        return None
    rest = sp.expand(form - sum(c * dummy[a] for a, c in terms.items()))
    if rest.free_symbols & placeholders:
        return None
    return {a: c for a, c in terms.items() if c != 0}


def _normalise_params(params, used: set[sp.Symbol], reserved=_THETA_KEYS) -> tuple:
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
        if name in reserved:
            raise ValueError(f"parameter name {name!r} is reserved for the runtime ({', '.join(reserved)})")
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
              accuracy=2, offsets=None, name="neural_pde", reserved=_THETA_KEYS) -> LayerSpec:
    """Validate the user's layer description and return a :class:`LayerSpec`. ``reserved``: the
    parameter names theta keeps for the runtime (a layer class built by npdegen itself may free
    ``"b"`` when it has no IR bias: the quadrature update's ``f(Z^k − b)``)."""
    field, coords = _split_field(field)
    if not isinstance(transform, sp.Expr):
        raise TypeError(f"transform must be a SymPy expression, got {type(transform).__name__}")
    validate_identifier(name, "layer name")
    form, dummy, shifts = _placeholders(transform, field, coords)
    linear = _linear_terms(form, {**dummy, **{("shift", o): p for o, p in shifts.items()}}, transform, field)
    if linear is not None and not linear:
        raise ValueError(f"transform {transform} does not contain the field {field}")
    # the spacing symbols (Delta, Delta_<coordinate>) may appear in coefficients: they are not parameters
    used = form.free_symbols - set(dummy.values()) - set(shifts.values()) - set(spacing_symbols(coords))
    act_symbols = _activation_parameters(activation, params)
    param_tuple = _normalise_params(params, used | act_symbols, reserved)
    both = sorted(s.name for s in used & act_symbols)
    if both:
        raise ValueError(f"parameter(s) {', '.join(both)} appear in both the transform and the activation; "
                         "use separate parameters")
    if bias is not None:
        _check_family(bias, "bias")
    act_name, act = resolve_activation(activation, act_symbols)
    if offsets is not None:
        if len(coords) > 1:
            raise ValueError("offsets are for 1-D layers; N-D layers use central stencils of the given accuracy")
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
    if accuracy is not None and accuracy > MAX_ACCURACY:
        raise ValueError(f"accuracy {accuracy} exceeds the limit {MAX_ACCURACY} (a {MAX_OFFSETS}-point stencil)")
    if accuracy is None and offsets is None:
        raise ValueError("accuracy=None needs explicit offsets")
    if linear is None or shifts:
        terms = None            # nonlinear, or with shifted accesses: the step IR, not a derivative form
    elif len(coords) == 1:
        terms = tuple(sorted((a[0], c) for a, c in linear.items()))
    else:
        terms = tuple(sorted(linear.items()))
    return LayerSpec(name=name, field=field, coordinates=coords, transform=transform,
                     derivatives=tuple(sorted(dummy.items())), site_form=form, terms=terms,
                     activation_name=act_name, activation=act, params=param_tuple, bias=bias,
                     accuracy=accuracy, offsets=offsets,
                     activation_params=tuple(sorted(s.name for s in act_symbols)),
                     shifts=tuple(sorted(shifts.items())), is_linear=linear is not None)


def _activation_parameters(activation, params) -> set:
    """Symbols of an activation expression that are listed in ``params`` (its trainable parameters)."""
    if not isinstance(activation, (sp.Expr, sp.Lambda)) or not isinstance(params, Mapping):
        return set()
    names = {k if isinstance(k, str) else getattr(k, "name", None) for k in params}
    expr = activation.expr if isinstance(activation, sp.Lambda) else activation
    return {s for s in expr.free_symbols if s.name in names}


def summary_lines(spec: LayerSpec) -> tuple:
    """The spec as written, as lines for the header of generated code."""
    params = ", ".join(f"{s.name}: {fam}" for s, fam in spec.params) or "none"
    return (
        f"layer:      {spec.name}",
        f"transform:  Z = {sp.sstr(spec.transform)}" + (" - b" if spec.bias else ""),
        f"field:      {sp.sstr(spec.field)}",
        f"activation: {spec.activation_name}, f(x) = {sp.sstr(spec.activation)}",
        f"params:     {params}",
        f"bias:       {spec.bias or 'none'}",
        f"accuracy:   {spec.accuracy if spec.accuracy is not None else 'set by offsets'}"
        + (f", offsets {spec.offsets}" if spec.offsets is not None else ", central"),
    )
