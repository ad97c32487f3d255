"""Discretise a local expression of a field on a 1–3-D grid: each derivative by its own stencil.

A derivative ``∂^α z`` (multi-index ``α``) at site ``i`` becomes the tensor product of 1-D
Fornberg stencils (:mod:`npdegen.derive.fornberg`), one per axis:

.. math::  ∂^α z(i) ≈ Σ_o \\Big(\\prod_k a^{(α_k)}_{o_k}\\Big) z[i + o] \\Big/ \\prod_k Δ_k^{α_k},

where ``a^{(m)}`` are the central weights of the requested accuracy ``p`` (or the given 1-D
offsets). The product of stencils of accuracy ``p_k`` per axis has accuracy ``min_k p_k``: the
error of each factor is ``O(Δ_k^{p_k})`` and cross terms are of higher order. The layer's site
expression ``G`` is the user's transform with every derivative replaced by its stencil sum, so a
nonlinear transform (``z·z_q``, ``sin(z)·z_qq``) forms its products per site.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import product

import sympy as sp

from ..spec.layerspec import MAX_OFFSETS, LayerSpec
from .fornberg import achieved_accuracy, central_offsets, stencil_weights
from ..spec.spacing import spacing_symbols

__all__ = ["DerivativeStencil", "derivative_stencil", "spacing_symbols", "access_name", "Discretised",
           "discretise_site"]


@dataclass(frozen=True)
class DerivativeStencil:
    """Grid-unit weights ``{offset tuple: Rational}`` of ``∂^α`` and their accuracy."""
    alpha: tuple
    weights: dict
    accuracy: float
    per_axis: tuple           # ((offsets, {offset: Rational}), ...) per axis

    def describe(self, coordinates) -> str:
        name = "z" if not any(self.alpha) else "d^{}/{}".format(
            sum(self.alpha), "".join(f"d{c}^{a}" if a > 1 else f"d{c}" for c, a in zip(coordinates, self.alpha) if a))
        axes = "  x  ".join("{" + ", ".join(f"{j}: {sp.sstr(w)}" for j, w in ws.items()) + "}"
                            for _, ws in self.per_axis)
        acc = "exact" if self.accuracy == math.inf else self.accuracy
        return f"{name} ~ {axes}   (accuracy {acc})"


def derivative_stencil(alpha: tuple, accuracy: int | None, offsets: tuple | None = None) -> DerivativeStencil:
    """The tensor-product stencil of ``∂^α`` (grid units: divide by ``Π Δ_k^{α_k}``)."""
    per_axis, accuracies = [], []
    for order in alpha:
        axis_offsets = offsets if offsets is not None else central_offsets(order, accuracy)
        if len(axis_offsets) > MAX_OFFSETS:
            raise ValueError(f"the order-{order} derivative at accuracy {accuracy} needs {len(axis_offsets)} "
                             f"points per axis, more than the limit {MAX_OFFSETS}; lower the accuracy")
        try:
            ws = stencil_weights(order, axis_offsets)
        except ValueError as exc:
            raise ValueError(f"stencil offsets {axis_offsets} cannot discretise the order-{order} term: {exc}") from None
        got = achieved_accuracy(order, ws)
        if accuracy is not None and got < accuracy:
            raise ValueError(
                f"offsets {axis_offsets} give accuracy {got} for the order-{order} derivative, "
                f"fewer than the accuracy={accuracy} asked; add offsets or lower the accuracy")
        ws = {j: w for j, w in ws.items() if w != 0} if offsets is None else ws
        per_axis.append((tuple(axis_offsets), ws))
        if order:
            accuracies.append(got)
    weights = {}
    for combo in product(*(ws.items() for _, ws in per_axis)):
        w = sp.Integer(1)
        for _, a in combo:
            w *= a
        if w != 0:
            weights[tuple(j for j, _ in combo)] = w
    return DerivativeStencil(tuple(alpha), weights, min(accuracies) if accuracies else math.inf, tuple(per_axis))


def access_name(offset: tuple) -> str:
    """Readable code name of the access ``z[i + offset]``: ``z_m1``, ``z_0``, ``z_p1_m2``."""
    return "z_" + "_".join("0" if o == 0 else (f"p{o}" if o > 0 else f"m{-o}") for o in offset)


@dataclass(frozen=True)
class Discretised:
    """The site expression ``G`` of a layer in access symbols.

    ``accesses``: offset tuples, sorted; ``symbols``: one real symbol per access
    (:func:`access_name`); ``site``: ``G`` in those, the parameter symbols and ``spacing``;
    ``stencils``: the :class:`DerivativeStencil` of every derivative used."""
    accesses: tuple
    symbols: tuple
    site: sp.Expr
    spacing: tuple
    stencils: tuple


def discretise_site(spec: LayerSpec) -> Discretised:
    """Replace every derivative placeholder of ``spec.site_form`` by its stencil sum."""
    spacing = spacing_symbols(spec.coordinates)
    offsets = None
    if spec.offsets is not None:
        offsets = spec.offsets
    symbols: dict[tuple, sp.Symbol] = {}
    replace, stencils = {}, []
    for alpha, placeholder in spec.derivatives:
        st = derivative_stencil(alpha, spec.accuracy, offsets)
        stencils.append(st)
        scale = sp.Integer(1)
        for d, a in zip(spacing, alpha):
            scale *= d ** a
        total = sp.Integer(0)
        for o, w in st.weights.items():
            sym = symbols.setdefault(o, sp.Symbol(access_name(o), real=True))
            total += w * sym
        replace[placeholder] = total / scale
    for o, placeholder in spec.shifts:      # explicit accesses z(x + kΔ, ...)
        replace[placeholder] = symbols.setdefault(o, sp.Symbol(access_name(o), real=True))
    if offsets is not None:        # explicit 1-D offsets: every offset is an access (as the 1-D stencil)
        for o in offsets:
            symbols.setdefault((o,), sp.Symbol(access_name((o,)), real=True))
    accesses = tuple(sorted(symbols))
    return Discretised(accesses=accesses, symbols=tuple(symbols[o] for o in accesses),
                       site=spec.site_form.xreplace(replace), spacing=spacing, stencils=tuple(stencils))
