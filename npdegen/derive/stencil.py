"""Discretise a layer's linear operator into a stencil, and take its moments.

For ``T[z] = Σ_k c_k ∂_q^k z`` and Fornberg weights ``a^{(k)}_j`` (grid units) the weight of
offset ``j`` is

.. math::  w_j = Σ_k c_k\\, a^{(k)}_j / Δ^k ,

so that ``Z_i = Σ_j w_j z_{i+j}``. Its moments (no ``1/k!``, docs/theory.md §2) are

.. math::  W_k = Σ_j (jΔ)^k w_j ,

and ``Σ_j w_j z_{i+j} ≈ W_0 z + W_1 z_q + W_2/2 z_qq + W_3/6 z_qqq + …``.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from ..spec.layerspec import LayerSpec
from ..spec.spacing import SPACING
from .fornberg import achieved_accuracy, central_offsets, stencil_weights

__all__ = ["SPACING", "Stencil", "discretise", "stencil_moments"]



@dataclass(frozen=True)
class Stencil:
    """A layer's stencil: ``weights[i]`` multiplies ``z[site + offsets[i]]``.

    ``fornberg`` keeps, per derivative order k, the grid-unit weights and their accuracy
    (for the derivation comments of generated code).
    """
    offsets: tuple
    weights: tuple            # SymPy expressions in the parameters and SPACING
    fornberg: tuple           # ((k, {offset: Rational}, accuracy), ...)

    def as_dict(self) -> dict:
        return dict(zip(self.offsets, self.weights))


def _term_weights(spec: LayerSpec, order: int) -> tuple[dict, int]:
    offsets = spec.offsets if spec.offsets is not None else central_offsets(order, spec.accuracy)
    try:
        weights = stencil_weights(order, offsets)
    except ValueError as exc:
        raise ValueError(f"stencil offsets {offsets} cannot discretise the order-{order} term: {exc}") from None
    got = achieved_accuracy(order, weights)
    if spec.accuracy is not None and got < spec.accuracy:
        raise ValueError(
            f"offsets {offsets} give accuracy {got} for the order-{order} derivative, "
            f"fewer than the accuracy={spec.accuracy} asked; add offsets or lower the accuracy")
    return weights, got


def discretise(spec: LayerSpec) -> Stencil:
    """Derive the stencil of ``spec`` with the spacing kept symbolic (:data:`SPACING`)."""
    total: dict[int, sp.Expr] = {}
    derivation = []
    for order, coeff in spec.terms:
        weights, accuracy = _term_weights(spec, order)
        derivation.append((order, weights, accuracy))
        for j, a in weights.items():
            total[j] = total.get(j, sp.Integer(0)) + coeff * a / SPACING**order
    offsets = tuple(sorted(set(total) | set(spec.offsets or ())))
    return Stencil(offsets=offsets,
                   weights=tuple(total.get(j, sp.Integer(0)) for j in offsets),
                   fornberg=tuple(derivation))


def stencil_moments(stencil: Stencil, max_order: int, spacing=SPACING) -> dict[int, sp.Expr]:
    """Moments ``W_k = Σ_j (jΔ)^k w_j`` for ``k = 0 … max_order`` (convention: no ``1/k!``)."""
    if not isinstance(max_order, int) or isinstance(max_order, bool) or max_order < 0:
        raise ValueError(f"max_order must be an integer >= 0, got {max_order!r}")
    out = {}
    for k in range(max_order + 1):
        w = sum(((j * SPACING) ** k * wj for j, wj in zip(stencil.offsets, stencil.weights)), sp.Integer(0))
        out[k] = sp.expand(sp.expand(w).subs(SPACING, spacing))
    return out
