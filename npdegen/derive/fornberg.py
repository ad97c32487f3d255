"""Exact finite-difference weights (Fornberg 1988), in grid units.

For offsets ``j_0 … j_{P-1}`` (integers or rationals, spacing 1) the weights ``w_j`` of the
``m``-th derivative at 0 are the unique solution of the moment (Vandermonde) system

.. math::  \\sum_j w_j\\, j^k = m!\\,\\delta_{km}, \\qquad k = 0, …, P-1,

computed here with Fornberg's recursion in exact rational arithmetic. The *accuracy* of a
stencil is the largest ``p`` such that the conditions also hold for ``k < m + p``: the
truncation error is then ``O(Δ^p)``. Central stencils gain one order by symmetry.

Reference: B. Fornberg, "Generation of finite difference formulas on arbitrarily spaced grids",
Math. Comp. 51 (1988) 699–706.
"""
from __future__ import annotations

from collections.abc import Sequence
import math
from math import factorial

import sympy as sp

__all__ = ["stencil_weights", "central_offsets", "achieved_accuracy"]


def _as_offsets(offsets: Sequence) -> tuple[sp.Rational, ...]:
    try:
        pts = tuple(sp.Rational(o) for o in offsets)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"offsets must be integers or rationals, got {offsets!r}") from exc
    if len(set(pts)) != len(pts):
        raise ValueError(f"offsets must be distinct, got {tuple(offsets)!r}")
    return pts


def stencil_weights(derivative: int, offsets: Sequence) -> dict:
    """Exact weights of ``d^m/dq^m`` at 0 on the given offsets (spacing 1).

    Returns ``{offset: sympy.Rational}`` in the order of ``offsets``. Example: the central
    second derivative ``stencil_weights(2, [-1, 0, 1]) == {-1: 1, 0: -2, 1: 1}``. For spacing
    ``Δ`` divide every weight by ``Δ**derivative``.

    Raises ``ValueError`` if there are not at least ``derivative + 1`` distinct offsets.
    """
    if not isinstance(derivative, int) or isinstance(derivative, bool) or derivative < 0:
        raise ValueError(f"derivative order must be an integer >= 0, got {derivative!r}")
    pts = _as_offsets(offsets)
    if len(pts) < derivative + 1:
        raise ValueError(
            f"a derivative of order {derivative} needs at least {derivative + 1} offsets, "
            f"got {len(pts)}: {tuple(offsets)!r}")
    m, n = derivative, len(pts) - 1
    # delta[k][i][v]: weight of point v for the k-th derivative using points 0..i.
    delta = [[[sp.Integer(0)] * (n + 1) for _ in range(n + 1)] for _ in range(m + 1)]
    delta[0][0][0] = sp.Integer(1)
    c1 = sp.Integer(1)
    for i in range(1, n + 1):
        c2 = sp.Integer(1)
        for v in range(i):
            c3 = pts[i] - pts[v]
            c2 *= c3
            for k in range(min(i, m) + 1):
                prev = delta[k - 1][i - 1][v] if k else 0
                delta[k][i][v] = (pts[i] * delta[k][i - 1][v] - k * prev) / c3
        for k in range(min(i, m) + 1):
            prev = delta[k - 1][i - 1][i - 1] if k else 0
            delta[k][i][i] = c1 / c2 * (k * prev - pts[i - 1] * delta[k][i - 1][i - 1])
        c1 = c2
    return {o: delta[m][n][v] for v, o in enumerate(offsets)}


def achieved_accuracy(derivative: int, weights: dict) -> float:
    """Order ``p`` of the truncation error ``O(Δ^p)`` of ``weights`` for ``d^m/dq^m``.

    Checks the moment conditions ``Σ_j w_j j^k = m! δ_km`` for growing ``k``; returns 0 if
    even the consistency conditions ``k ≤ m`` fail, and ``math.inf`` for an exact stencil
    (only ``w_0 = 1`` for ``m = 0``: ``P`` conditions beyond ``m`` force every other weight to 0).
    """
    m = derivative
    k = 0
    while True:
        target = factorial(m) if k == m else 0
        if sum(w * sp.Rational(j) ** k for j, w in weights.items()) != target:
            return max(k - m, 0)
        k += 1
        if k > m + len(weights):  # a Vandermonde argument: the stencil is exact
            return math.inf


def central_offsets(derivative: int, accuracy: int) -> tuple[int, ...]:
    """Smallest symmetric offsets giving a central stencil of the given even accuracy.

    ``2⌊(m+1)/2⌋ − 1 + p`` points: e.g. 3 points for ``m = 1, 2`` at ``p = 2``, 5 for ``m = 3, 4``.
    """
    if not isinstance(accuracy, int) or isinstance(accuracy, bool) or accuracy < 2 or accuracy % 2:
        raise ValueError(
            f"central stencils have even accuracy >= 2, got accuracy={accuracy!r}; "
            "pass explicit offsets for one-sided or odd-order stencils")
    if derivative == 0:
        return (0,)
    half = (2 * ((derivative + 1) // 2) - 1 + accuracy) // 2
    return tuple(range(-half, half + 1))
