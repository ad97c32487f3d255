r"""Vectorisable float64 transcendental functions for the numba kernels.

numba compiles ``math.tanh`` to a call of the C library per value: the loop around it is not
vectorised (PyPI's llvmlite has no vector math library), so a float64 layer with a tanh activation
ran ~3× slower on numba than on NumPy, whose ufuncs are vectorised. :class:`Tanh64` is ``tanh``
written with arithmetic, ``floor`` and selects only — what the compiler vectorises — to within
3 units in the last place of float64 (measured against ``math.tanh``; tests/test_vector_math.py
allows 4):

* ``a = min(|x|, 19)`` (``tanh`` is ``±1`` in float64 beyond ``a ≈ 18.7``; NaN passes through);
* ``a < 0.4``: ``tanh a = −m/(2 + m)`` with ``m = expm1(−2a)`` from its Taylor series (degree 17,
  ``|2a| ≤ 0.8``: truncation ``< 3e-18``), no cancellation;
* otherwise ``tanh a = (1 − e)/(1 + e)``, ``e = exp(−2a) = 2^{−k} exp(r)``: Cody–Waite reduction
  ``r = t − k ln 2`` (``|r| ≤ ln2/2``), ``exp(r)`` by its Taylor series (degree 13, ``< 5e-18``),
  ``2^{−k}`` (``0 ≤ k ≤ 55``) as a product of exact powers of two picked by the bits of ``k``;
* both branches are computed and one is selected (branch-free, so the loop vectorises).

Its derivative is ``1 − Tanh64(x)²`` (:meth:`Tanh64.fdiff`): the adjoint uses the identity of the
true tanh, exact to the same few ulp. The numba printers write ``_vtanh(x)``; :data:`VTANH_SOURCE`
is the ``@njit`` helper the templates define when a kernel uses it.
"""
from __future__ import annotations

from math import factorial

import sympy as sp

__all__ = ["Tanh64", "vector_activation", "VTANH_SOURCE", "uses_vector_math"]


class Tanh64(sp.Function):
    """``tanh`` computed by :data:`VTANH_SOURCE` in float64 numba kernels."""
    nargs = 1

    @classmethod
    def eval(cls, arg):
        if arg.is_Number:
            return sp.tanh(arg)

    def fdiff(self, argindex=1):
        return 1 - Tanh64(self.args[0]) ** 2


def vector_activation(expr: sp.Expr) -> sp.Expr:
    """``expr`` with every ``tanh`` replaced by :class:`Tanh64`."""
    return expr.replace(sp.tanh, Tanh64)


def uses_vector_math(*exprs) -> bool:
    return any(sp.sympify(e).has(Tanh64) for e in exprs)


def _horner(coefficients, var: str) -> str:
    out = repr(coefficients[-1])
    for c in reversed(coefficients[:-1]):
        out = f"{c!r} + {var} * ({out})"
    return out


_EXPM1 = [0.0] + [1.0 / factorial(n) for n in range(1, 18)]     # expm1(t) = sum t^n/n!, n = 1..17
_EXP = [1.0 / factorial(n) for n in range(0, 14)]              # exp(r), degree 13
#: ln 2 split for the Cody–Waite reduction: the high part has few bits, so k·LN2_HI is exact.
LN2_HI, LN2_LO = 0.693145751953125, 1.4286068203094172321e-06

VTANH_SOURCE = f'''
@numba.njit(inline="always", **_JIT)
def _vtanh(x):
    """tanh(x) in float64 with arithmetic, floor and selects only (npdegen.codegen.vector_math)."""
    a = -x if x < 0.0 else x
    a = 19.0 if a > 19.0 else a                  # NaN passes (NaN > 19 is False)
    t = -2.0 * a
    m = t * ({_horner(_EXPM1[1:], "t")})          # expm1(t), |t| <= 0.8 on this branch
    small = -m / (2.0 + m)
    k = math.floor(t * -1.4426950408889634 + 0.5)   # exp(t) = 2^-k exp(r), 0 <= k <= 55
    r = (t + k * {LN2_HI!r}) + k * {LN2_LO!r}
    e = {_horner(_EXP, "r")}
    for b in (1.0, 2.0, 4.0, 8.0, 16.0, 32.0):       # times 2^-k, bit by bit
        h = math.floor(k * 0.5)
        e = e * (2.0 ** -b if k - 2.0 * h > 0.5 else 1.0)
        k = h
    large = (1.0 - e) / (1.0 + e)
    y = small if a < 0.4 else large
    return -y if x < 0.0 else y
'''
