r"""Multi-index moments of an N-D stencil (no ``1/α!``, docs/theory.md §2 and §8).

.. math::  W_α = Σ_o \prod_k (o_k Δ_k)^{α_k} w_o ,
           \qquad Σ_o w_o z(x + oΔ) ≈ Σ_α \frac{W_α}{α!} ∂^α z ,

so ``W_0`` is the amplitude (reaction ``W_0 − 1``), ``−W_{e_k}`` the advection velocity along
axis ``k`` and ``W_{e_k + e_l}/2`` the diffusion tensor ``D_{kl}``.
"""
from __future__ import annotations

from itertools import product

import sympy as sp

__all__ = ["multi_indices", "tensor_moments"]


def multi_indices(dim: int, max_order: int) -> list:
    """Multi-indices α with |α| ≤ max_order, by total order then lexicographically descending."""
    out = [a for a in product(range(max_order + 1), repeat=dim) if sum(a) <= max_order]
    return sorted(out, key=lambda a: (sum(a), [-v for v in a]))


def tensor_moments(weights: dict, deltas: tuple, max_order: int, subs: dict | None = None) -> dict:
    """``{α: W_α}`` of ``weights = {offset tuple: w_o}`` (1-D: int keys ``k``), spacings ``deltas``."""
    dim = len(deltas)
    out = {}
    for alpha in multi_indices(dim, max_order):
        total = sp.Integer(0)
        for o, w in weights.items():
            term = w
            for ok, dk, ak in zip(o, deltas, alpha):
                term *= (ok * dk) ** ak
            total += term
        out[alpha[0] if dim == 1 else alpha] = sp.expand(sp.expand(total).subs(subs or {}))
    return out
