r"""Tensor operators for writing N-D transforms term by term: ``z + R z − u·∇z + K:∇∇z``.

Each helper returns an ordinary SymPy expression of the field's derivatives, so the layer's
stencil, moments and Jacobians follow as for any transform::

    x, y = sp.symbols("x y"); z = sp.Function("z")(x, y)
    Kxx, Kxy, Kyy, U, V = sp.symbols("Kxx Kxy Kyy U V")
    T = z - ops.advection((U, V), z) + ops.diffusion([[Kxx, Kxy], [Kxy, Kyy]], z)

``diffusion(K, z) = K:∇∇z = Σ_kl K_kl ∂_k∂_l z`` equals ``∇·(K∇z)`` when ``K`` is the same at every
site (homogeneous parameters); for a heterogeneous ``K`` the conservative form ``∇·(K∇z)`` needs
face values of ``K`` (flux-form layers), which ``K:∇∇z`` does not provide.
"""
from __future__ import annotations

from collections.abc import Sequence

import sympy as sp
from sympy.core.function import AppliedUndef

__all__ = ["gradient", "laplacian", "advection", "diffusion"]


def _coords(z) -> tuple:
    if not isinstance(z, AppliedUndef) or not z.args:
        raise TypeError(f"the field must be an applied function such as z(x, y), got {z!r}")
    return tuple(z.args)


def gradient(z) -> tuple:
    """``(∂_1 z, …, ∂_d z)``."""
    return tuple(z.diff(c) for c in _coords(z))


def laplacian(z) -> sp.Expr:
    """``Σ_k ∂_k² z``."""
    return sp.Add(*(z.diff(c, 2) for c in _coords(z)))


def advection(velocity: Sequence, z) -> sp.Expr:
    """``u·∇z = Σ_k u_k ∂_k z`` (write ``− advection(u, z)`` for transport towards ``+u``)."""
    coords = _coords(z)
    if isinstance(velocity, (str, bytes)) or len(velocity) != len(coords):
        raise ValueError(f"velocity must have {len(coords)} components (one per axis), got {velocity!r}")
    return sp.Add(*(u * z.diff(c) for u, c in zip(velocity, coords)))


def diffusion(K, z) -> sp.Expr:
    """``K:∇∇z = Σ_kl K_kl ∂_k ∂_l z`` for a symmetric ``d×d`` tensor ``K`` (nested sequences or a
    SymPy Matrix); a scalar ``K`` means ``K`` times the identity."""
    coords = _coords(z)
    d = len(coords)
    if isinstance(K, sp.Expr) or isinstance(K, (int, float)):
        return K * laplacian(z)
    K = sp.Matrix(K) if not isinstance(K, sp.MatrixBase) else K
    if K.shape != (d, d):
        raise ValueError(f"the diffusion tensor must be {d}x{d} for a {d}-D field, got shape {K.shape}")
    if K != K.T:
        raise ValueError(f"the diffusion tensor must be symmetric, got {K.tolist()}")
    return sp.Add(*(K[k, l] * z.diff(coords[k], coords[l]) for k in range(d) for l in range(d)))
