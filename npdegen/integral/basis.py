r"""Basis functions ``φ`` and the Q-point rules of the quadrature-generalised update (MODEL.md §4).

Everything here is in *cell units*: a site ``q_i`` owns the cell ``q_i + Δ·[−½, ½]`` (per axis), a
rule places its nodes at ``q_i + x_k Δ`` with ``x_k ∈ [−½, ½]`` and weights ``p_k`` that sum to 1
(the physical weights are ``p_k Δ``), and a basis function is ``φ_i(q) = φ((q − q_i)/Δ)``.

Rules (``Q`` = 1, 2, 3 nodes per axis):

==============  ===============================  ==============================================
rule            nodes ``x_k``                     weights ``p_k``
==============  ===============================  ==============================================
gauss           Gauss–Legendre on ``[−½, ½]``     ``numpy.polynomial.legendre.leggauss`` / 2
newton-cotes    ``Q = 1``: 0 (midpoint);          ``scipy.integrate.newton_cotes``
                ``Q ≥ 2``: ``−½ + k/(Q − 1)``     (trapezoid, Simpson)
==============  ===============================  ==============================================

Bases (SymPy expressions of ``x``, each a partition of unity or close to it, ``∫ φ dx`` exact):
``hat`` ``max(0, 1 − |x|)``; ``bspline(p)`` the centred cardinal B-spline of degree ``p``
(:func:`sympy.bspline_basis`, knots ``−(p+1)/2 … (p+1)/2``; ``p = 1`` is the hat); ``gaussian(s)``
``exp(−x²/2s²)`` with width ``s > 0`` cells.

In ``d`` dimensions the nodes are the tensor product (``Q^d`` of them) and ``φ`` the product of
the 1-D factors. :class:`NodeSet` holds what the update needs: the nodes, the raw values
``p_k φ(x_k)`` (``Φ^k`` of eq. 24 divided by the cell volume), their normalised form
``ŵ_k = p_k φ(x_k) / Σ_m p_m φ(x_m)`` (the lumped-mass weights, ``Σ ŵ_k = 1``), the mass factor
``ν = Σ_m p_m φ(x_m)`` and the variance ``Var_ŵ(x)`` per axis, which sets the smoothing the
update adds (:mod:`.quadrature`).
"""
from __future__ import annotations

import itertools
import math
import numbers
from dataclasses import dataclass

import numpy as np
import sympy as sp
from scipy.integrate import newton_cotes

__all__ = ["Basis", "NodeSet", "RULES", "BASES", "rule", "node_set"]

RULES = ("gauss", "newton-cotes")
BASES = ("hat", "bspline", "gaussian")
#: The number of nodes per axis the update accepts (MODEL.md §4: "small Q").
Q_RANGE = (1, 2, 3)

X = sp.Symbol("x", real=True)


def rule(Q: int, kind: str = "gauss") -> tuple[np.ndarray, np.ndarray]:
    """``(nodes, weights)`` of the ``Q``-point rule on the cell ``[−½, ½]`` (weights sum to 1)."""
    if not isinstance(Q, numbers.Integral) or isinstance(Q, bool) or Q not in Q_RANGE:
        raise ValueError(f"Q must be 1, 2 or 3 quadrature nodes per axis, got {Q!r}")
    if kind not in RULES:
        raise ValueError(f"rule must be one of {', '.join(RULES)}, got {kind!r}")
    Q = int(Q)
    if kind == "gauss":
        x, w = np.polynomial.legendre.leggauss(Q)
        return x / 2, w / 2
    if Q == 1:                                    # the one-point (open) Newton–Cotes rule: the midpoint
        return np.zeros(1), np.ones(1)
    an, _ = newton_cotes(Q - 1, 1)
    return -0.5 + np.arange(Q) / (Q - 1), np.asarray(an, np.float64) / (Q - 1)


class Basis:
    """A 1-D basis function ``φ(x)`` in cell units, a SymPy expression lambdified once.

    Build one with :meth:`hat`, :meth:`bspline` or :meth:`gaussian` (or :meth:`named`)."""

    def __init__(self, name: str, expr: sp.Expr):
        self.name, self.expr = name, expr
        self._f = sp.lambdify(X, expr, modules="numpy")

    @classmethod
    def hat(cls) -> "Basis":
        return cls("hat", sp.Piecewise((1 - sp.Abs(X), sp.Abs(X) <= 1), (0, True)))

    @classmethod
    def bspline(cls, degree: int = 3) -> "Basis":
        if not isinstance(degree, numbers.Integral) or isinstance(degree, bool) or not 1 <= degree <= 5:
            raise ValueError(f"bspline degree must be an integer from 1 to 5, got {degree!r}")
        knots = [sp.Rational(2 * k - degree - 1, 2) for k in range(degree + 2)]
        return cls(f"bspline{degree}", sp.bspline_basis(int(degree), tuple(knots), 0, X))

    @classmethod
    def gaussian(cls, width=0.5) -> "Basis":
        if (not isinstance(width, numbers.Real) or isinstance(width, bool) or not math.isfinite(width)
                or width <= 0):
            raise ValueError(f"the gaussian basis needs a width (sigma, in cells) > 0, got {width!r}")
        s = sp.nsimplify(width) if float(width) == float(sp.nsimplify(width)) else sp.Float(width)
        return cls(f"gaussian(width={width:g})", sp.exp(-X ** 2 / (2 * s ** 2)))

    @classmethod
    def named(cls, basis) -> "Basis":
        """A :class:`Basis` passed through, or one of :data:`BASES` by name (bspline: cubic; gaussian:
        width ½ cell)."""
        if isinstance(basis, Basis):
            return basis
        if basis == "hat":
            return cls.hat()
        if basis == "bspline":
            return cls.bspline(3)
        if basis == "gaussian":
            return cls.gaussian(0.5)
        raise ValueError(f"basis must be one of {', '.join(BASES)} or an npdegen.integral.basis.Basis, got {basis!r}")

    def __call__(self, x) -> np.ndarray:
        """``φ(x)`` (float64, vectorised)."""
        x = np.asarray(x, np.float64)
        return np.broadcast_to(np.asarray(self._f(x), np.float64), x.shape).copy()

    def integral(self) -> sp.Expr:
        """``∫ φ dx`` (exact; 1 for the hat and every B-spline, ``√(2π) s`` for the Gaussian)."""
        return sp.simplify(sp.integrate(self.expr, (X, -sp.oo, sp.oo)))

    def __reduce__(self):
        return (Basis, (self.name, self.expr))

    def __repr__(self):
        return f"Basis({self.name}: {self.expr})"


@dataclass(frozen=True)
class NodeSet:
    """The ``Q^d`` nodes of one site and their weights (module docstring).

    ``nodes`` ``(count, d)`` in cell units; ``raw`` ``p_k φ(x_k)`` (products over axes); ``weights``
    ``ŵ_k = raw_k / Σ raw``; ``mass`` ``ν = Σ raw``; ``variance`` ``Var_ŵ(x)`` per axis (cell units²).
    """
    Q: int
    rule: str
    basis: Basis
    nodes: np.ndarray
    raw: np.ndarray
    weights: np.ndarray
    mass: float
    variance: tuple

    @property
    def count(self) -> int:
        return len(self.nodes)

    def differences(self):
        """``(k, l, x_l − x_k)`` for every ordered pair of nodes."""
        for k, l in itertools.product(range(self.count), repeat=2):
            yield k, l, self.nodes[l] - self.nodes[k]


def node_set(Q: int, kind: str, basis, dim: int) -> NodeSet:
    """The tensor-product :class:`NodeSet` of the ``Q``-point ``kind`` rule and ``basis`` in ``dim`` axes."""
    x, p = rule(Q, kind)
    basis = Basis.named(basis)
    phi = basis(x)
    if not np.all(np.isfinite(phi)):
        raise ValueError(f"basis {basis.name} is not finite at the nodes {x}")
    raw1 = p * phi
    if not np.sum(raw1) > 0:
        raise ValueError(f"basis {basis.name} gives the nodes {x} no weight (Σ p_k φ(x_k) = {np.sum(raw1):g})")
    w1 = raw1 / np.sum(raw1)
    mean = float(np.sum(w1 * x))
    var = float(np.sum(w1 * (x - mean) ** 2))
    index = list(itertools.product(range(len(x)), repeat=dim))
    nodes = np.array([[x[i] for i in idx] for idx in index], np.float64).reshape(len(index), dim)
    raw = np.array([np.prod([raw1[i] for i in idx]) for idx in index], np.float64)
    weights = np.array([np.prod([w1[i] for i in idx]) for idx in index], np.float64)
    return NodeSet(int(Q), kind, basis, nodes, raw, weights, float(np.sum(raw1)) ** dim, (var,) * dim)
