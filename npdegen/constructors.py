r"""Transforms built from numbers: prescribed moments, and free stencils.

* :func:`moments_transform` — the layer whose stencil has exactly the given moments (no ``1/k!``,
  docs/theory.md §2). 1-D: ``Σ_k W_k/k! ∂^k z`` discretised on exactly the given offsets (Fornberg
  weights reproduce every moment below ``len(offsets)``). N-D: the weights of the box of per-axis
  offsets solve the tensor-product Vandermonde system
  ``Σ_o Π_k (o_k Δ_k)^{α_k} w_o = W_α`` for every ``α`` with ``α_k < len(offsets_k)``:
  ``w_o = Σ_α W_α/α! Π_k a^{(α_k)}_{o_k}/Δ_k^{α_k}`` with ``a^{(m)}`` the Fornberg weights of
  ``d^m`` on that axis's offsets; the layer reads them as shifted accesses ``z(x + oΔ)``.
* :func:`free_stencil_transform` — ``Σ_o w_o z(x + oΔ)`` with a parameter per weight.

No user value is ever given to ``sympify``: text is refused with a pointer to the whitelist parser.
"""
from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from itertools import product
from math import factorial

import sympy as sp

from .derive.discretise import access_name
from .derive.fornberg import stencil_weights
from .spec.spacing import spacing_symbols

__all__ = ["moments_transform", "free_stencil_transform", "as_expr"]


def as_expr(value, what: str) -> sp.Expr:
    """A number or SymPy expression; text is refused (parse it with npdegen.parse_expression)."""
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{what} is text ({value!r:.40}); pass a SymPy expression or a number "
                        "(npdegen.parse_expression turns text into one safely)")
    if isinstance(value, bool) or not isinstance(value, (numbers.Number, sp.Expr)):
        raise TypeError(f"{what} must be a SymPy expression or a number, got {type(value).__name__}")
    if isinstance(value, sp.Expr):
        return value
    return sp.nsimplify(value) if isinstance(value, numbers.Rational) else sp.Float(value)


def _items(moments) -> dict:
    if isinstance(moments, Mapping):
        return dict(moments)
    if isinstance(moments, Sequence) and not isinstance(moments, (str, bytes)):
        return dict(enumerate(moments))
    raise TypeError(f"moments must be a mapping {{k: W_k}} (N-D: {{alpha: W_alpha}}) or a sequence, "
                    f"got {type(moments).__name__}")


def _check_offsets(offsets, what="offsets") -> tuple:
    if isinstance(offsets, (str, bytes)) or not isinstance(offsets, Sequence) or not offsets:
        raise ValueError(f"from_moments needs the stencil {what} (a non-empty sequence of integers)")
    if not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets):
        raise TypeError(f"{what} must be integers (grid units), got {tuple(offsets)!r}")
    if len(set(offsets)) != len(offsets):
        raise ValueError(f"{what} must be distinct, got {tuple(offsets)!r}")
    return tuple(offsets)


def moments_transform(moments, offsets, field=None) -> tuple:
    """``(transform, field, layer keyword arguments)`` of the layer with the given moments."""
    items = _items(moments)
    nd = any(isinstance(k, tuple) for k in items)
    if not nd:
        offsets = _check_offsets(offsets)
        bad = [k for k in items if not isinstance(k, int) or isinstance(k, bool) or k < 0]
        if bad:
            raise ValueError(f"moment orders must be integers >= 0, got {bad}")
        if items and max(items) >= len(offsets):
            raise ValueError(f"{len(offsets)} offsets fix at most the moments W_0..W_{len(offsets) - 1}; "
                             f"got W_{max(items)}")
        if field is None:
            field = sp.Function("z")(sp.Symbol("q"))
        if len(getattr(field, "args", ())) > 1:
            raise ValueError("an N-D field needs multi-index moments {alpha: W_alpha}, e.g. {(2, 0): W}")
        q = field.args[0] if field.args else None
        transform = sum((as_expr(w, f"moment W_{k}") / factorial(k) * (field.diff(q, k) if k else field)
                         for k, w in sorted(items.items())), sp.Integer(0))
        return transform, field, {"offsets": offsets, "accuracy": None}
    if field is None or len(getattr(field, "args", ())) < 2:
        raise ValueError("multi-index moments need an N-D field, e.g. sympy.Function('z')(x, y)")
    dim = len(field.args)
    if not all(isinstance(k, tuple) and len(k) == dim and all(isinstance(a, int) and not isinstance(a, bool)
                                                               and a >= 0 for a in k) for k in items):
        raise ValueError(f"N-D moment keys must be multi-indices: tuples of {dim} integers >= 0, got {list(items)}")
    per_axis = offsets if offsets and isinstance(offsets[0], (tuple, list)) else (offsets,) * dim
    if len(per_axis) != dim:
        raise ValueError(f"offsets must be one tuple for every axis or {dim} tuples, got {offsets!r}")
    per_axis = tuple(_check_offsets(tuple(o), f"offsets of axis {k}") for k, o in enumerate(per_axis))
    for alpha in items:
        if any(a >= len(o) for a, o in zip(alpha, per_axis)):
            raise ValueError(f"moment {alpha}: {tuple(map(len, per_axis))} offsets per axis fix only the "
                             f"moments with alpha_k < that count")
    deltas = spacing_symbols(field.args)
    fornberg = [{m: stencil_weights(m, o) for m in range(len(o))} for o in per_axis]
    weights = {}
    for alpha, value in items.items():
        value = as_expr(value, f"moment W_{alpha}")
        scale = sp.Integer(1)
        for a, d in zip(alpha, deltas):
            scale *= factorial(a) * d ** a
        for box in product(*per_axis):
            a = sp.Integer(1)
            for k, o in enumerate(box):
                a *= fornberg[k][alpha[k]][o]
            if a != 0:
                weights[box] = weights.get(box, sp.Integer(0)) + value * a / scale
    transform = sum((w * field.func(*(c + o * d for c, o, d in zip(field.args, box, deltas)))
                     for box, w in sorted(weights.items()) if w != 0), sp.Integer(0))
    return transform, field, {}


def free_stencil_transform(offsets, field=None, family: str = "heterogeneous") -> tuple:
    """``(Σ_o w_o z(x + oΔ), field, {w_o: family})`` for the given offsets (ints in 1-D, tuples in N-D)."""
    if isinstance(offsets, (str, bytes)) or not isinstance(offsets, Sequence) or not offsets:
        raise TypeError(f"offsets must be a non-empty sequence of integers or offset tuples, got {offsets!r}")
    if field is None:
        field = sp.Function("z")(sp.Symbol("q"))
    dim = len(getattr(field, "args", ()))
    norm = []
    for o in offsets:
        o = (o,) if isinstance(o, int) and not isinstance(o, bool) else o
        if (not isinstance(o, tuple) or len(o) != dim
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in o)):
            raise ValueError(f"free_stencil: offset {o!r} must be {'an integer' if dim == 1 else f'a tuple of {dim} integers'}")
        norm.append(o)
    if len(set(norm)) != len(norm):
        raise ValueError(f"free_stencil: offsets must be distinct, got {list(offsets)!r}")
    deltas = spacing_symbols(field.args)
    weights = {o: sp.Symbol("w" + access_name(o)[1:]) for o in norm}
    transform = sum((w * field.func(*(c + k * d for c, k, d in zip(field.args, o, deltas))) for o, w in weights.items()),
                    sp.Integer(0))
    return transform, field, {w: family for w in weights.values()}
