r"""Vectorisable forms of the built-in activations, as SymPy expressions.

A compiled loop vectorises only if every operation in it has a SIMD form: ``+ − × ÷``, ``min``/``max``,
``abs``, ``sqrt`` and selects do; libm's ``tanh``, ``exp`` and ``log1p`` do not (numba calls them one
element at a time, ~10–25 ns each, where the whole rest of a layer costs ~1 ns per site). The forms
here use only the vectorisable operations. They are plain SymPy expressions: the code generator
prints them like any other expression, and SymPy differentiates *these* forms for the adjoint, so
the gradient is exact for the function the forward really computes.

:func:`fast_activation` rewrites an activation expression by the :data:`RULES`, wherever the
pattern occurs (``sigmoid = (1 + tanh(x/2))/2`` inherits the tanh form):

==========================  =============================================================
pattern                     fast form
==========================  =============================================================
``tanh(u)``                 ``y·P(y²)/Q(y²)``, ``y = min(max(u, −8), 8)``; ``P`` of degree 5 and
                            ``Q`` of degree 3 in ``y²`` (an 11/6 rational)
``log1p(exp(−|u|))``        ``P(a)/Q(a)``, ``a = min(|u|, 18)``; a 6/6 rational (the tail of
                            softplus, ``max(x, 0) + log1p(exp(−|x|))``)
==========================  =============================================================

Coefficients: minimax fits (Lawson's iteratively reweighted least squares on the linearised
rational problem, 4·10⁴ points, float64) of ``tanh(x)/x`` on ``[0, 8]`` and of ``log1p(exp(−a))``
on ``[0, 18]``. The clamps cost ``1 − tanh(8) = 2.3e-7`` and ``log1p(e^{−18}) = 1.5e-8``.

Maximum error against float64, ``|f_fast(x) − f(x)| / max(1, |f(x)|)`` (absolute wherever
``|f| ≤ 1``), measured on the code numba compiles (``tests/test_numba_activations.py``: every
float32 with ``2⁻¹² ≤ |x| ≤`` the clamp, exhaustively, plus a sweep of every 7th float32 bit pattern
over the whole range, both signs):

==========  ==================  ==============================
activation  float32             float64 (``activations="fast"``)
==========  ==================  ==============================
tanh        3.8e-7              2.1e-7 (the clamp)
sigmoid     1.9e-7              1.1e-7
softplus    1.5e-7              1.8e-8
==========  ==================  ==============================

In float32 most of it is rounding (one ulp of 1 is 6e-8). float64 keeps the exact libm forms
unless ``activations="fast"`` is asked for; ``activations="exact"`` uses them in float32 too.

The derivatives (what the adjoint computes for ``f′``):

* **tanh**: the identity of the true function, ``tanh′ = 1 − tanh²``, with the same fast form
  for ``tanh`` (:class:`FastTanh`, as :class:`~npdegen.codegen.vector_math.Tanh64` does in float64
  and as PyTorch evaluates tanh's gradient from its output). It costs the forward's rational and two
  operations, where the derivative of the rational itself (a degree-8 numerator over ``Q²``, times
  the clamps' selects) made pass A of the adjoint 1.4× slower (tanh-then-identity share on the
  1-D benchmark layer, one thread). It equals the exact ``tanh′`` to ``2|T − tanh| ≤ 7.6e-7`` in
  float32 (4.6e-7 in float64, the clamp's ``1 − tanh(8)²``: ``1 − T²`` does not drop to 0 beyond
  the clamp, the true derivative is below 4.5e-7 there) — closer than the derivative of the fast
  form, which differs from the exact one by up to 4.5e-7 and is exactly 0 beyond the clamp — and
  differs from the derivative of the computed function by the same amount (tests/test_numba_activations.py).
  ``sigmoid = (1 + tanh(x/2))/2`` inherits it.
* **softplus** tail: SymPy's derivative of the fast form (0 beyond the clamp); it differs from the
  exact one by at most 6.3e-7 in float64.
"""
from __future__ import annotations

import sympy as sp
from sympy.codegen.cfunctions import log1p

__all__ = ["TANH_CLAMP", "SOFTPLUS_CLAMP", "RULES", "RationalForm", "FastTanh", "fast_tanh", "fast_softplus_tail",
           "fast_activation", "expand_forms"]

#: tanh(u) is ±1 (to 2.3e-7) beyond |u| = 8.
TANH_CLAMP = 8
#: log1p(exp(−a)) is 0 (to 1.5e-8) beyond a = 18.
SOFTPLUS_CLAMP = 18

# tanh(y) ≈ y·P(y²)/Q(y²) on [0, 8]; coefficients of 1, y², y⁴, …
_TANH_P = (0.9999999129876436, 0.1297258689078879, 0.002978819057920335, 9.815607065604842e-06,
           -1.451727527335639e-08, 2.302667722326913e-11)
_TANH_Q = (1.0, 0.4630588454763829, 0.023998861590900727, 0.00023623911126421755)
# log1p(exp(−a)) ≈ P(a)/Q(a) on [0, 18]; coefficients of 1, a, a², …
_TAIL_P = (0.6931471839626653, -0.2181576220141514, 0.028641030410426295, -0.0019809079371420433,
           7.453026671456434e-05, -1.3907528945763467e-06, 9.134256610907293e-09)
_TAIL_Q = (1.0, 0.4066116822173537, 0.15430464025075943, 0.03506301770761113, 0.0052195408085150335,
           0.00032802452319715064, 8.24679440756143e-05)


def _horner(coefficients, t) -> sp.Expr:
    """c0 + t·(c1 + t·(c2 + …)), kept nested (SymPy does not distribute a symbol over a sum)."""
    expr = sp.Float(coefficients[-1])
    for c in reversed(coefficients[:-1]):
        expr = sp.Float(c) + t * expr
    return expr


class RationalForm(sp.Function):
    """A rational function of one argument that code generation expands (:func:`expand_forms`).

    Subclasses set ``explicit(y)``, the expression, and a derivative: :func:`_rational_form` makes
    it SymPy's derivative of that expression brought over one denominator, ``N(y)/Q(y)²`` with ``N``
    in Horner form (one division, fewer operations than the chain rule through the nested Horner
    form), as a second RationalForm; :class:`FastTanh` overrides ``fdiff``.
    """
    nargs = 1
    explicit = None          # y -> SymPy expression
    derivative = None        # the RationalForm class of the derivative

    @classmethod
    def eval(cls, arg):
        if arg.is_Number:
            return cls.explicit(arg)

    def fdiff(self, argindex=1):
        return type(self).derivative(self.args[0])


def _rational_form(name: str, explicit) -> type:
    """A RationalForm class for ``explicit(y)``, and the one of its derivative."""
    y = sp.Dummy("y", real=True)
    num, den = sp.fraction(sp.together(sp.diff(explicit(y), y)))
    num = sp.horner(sp.expand(num), wrt=y)
    prime_explicit = sp.Lambda(y, num / den)
    prime = type(f"{name}_prime", (RationalForm,), {"explicit": staticmethod(lambda a: prime_explicit(a)),
                                                    "derivative": None})
    prime.derivative = prime             # never used (the adjoint needs f' only); keeps fdiff defined
    return type(name, (RationalForm,), {"explicit": staticmethod(explicit), "derivative": prime})


def _tanh_explicit(u: sp.Expr) -> sp.Expr:
    """``y·P(y²)/Q(y²)``, ``y = min(max(u, −8), 8)``: the clamped rational tanh written out."""
    y = sp.Min(sp.Max(u, -TANH_CLAMP), TANH_CLAMP)
    return y * _horner(_TANH_P, y**2) / _horner(_TANH_Q, y**2)


class FastTanh(RationalForm):
    """The clamped 11/6 rational ``tanh`` (:func:`_tanh_explicit`); its derivative is the identity
    ``1 − tanh²`` of the true function with this form for ``tanh`` (module docstring)."""
    explicit = staticmethod(_tanh_explicit)

    def fdiff(self, argindex=1):
        return 1 - FastTanh(self.args[0]) ** 2


#: log1p(exp(-a)) on [0, 18]: P(a)/Q(a)
softplus_tail_rational = _rational_form("softplus_tail_rational",
                                        lambda a: _horner(_TAIL_P, a) / _horner(_TAIL_Q, a))


def fast_tanh(u: sp.Expr) -> sp.Expr:
    """Clamped 11/6 rational tanh of ``u``; see the module docstring for its error."""
    return FastTanh(u)


def fast_softplus_tail(a: sp.Expr) -> sp.Expr:
    """Clamped 6/6 rational ``log1p(exp(−a))`` for ``a ≥ 0``."""
    return softplus_tail_rational(sp.Min(a, SOFTPLUS_CLAMP))


_u = sp.Wild("u")
#: (pattern, replacement) pairs, applied in order by :func:`fast_activation`.
RULES = (
    (log1p(sp.exp(-sp.Abs(_u))), lambda u: fast_softplus_tail(sp.Abs(u))),
    (sp.tanh(_u), lambda u: fast_tanh(u)),
)


def fast_activation(expr: sp.Expr) -> sp.Expr:
    """``expr`` with every occurrence of a :data:`RULES` pattern replaced by its fast form."""
    for pattern, replacement in RULES:
        expr = expr.replace(pattern, replacement)
    return expr


def expand_forms(expr: sp.Expr) -> sp.Expr:
    """``expr`` with every :class:`RationalForm` written out, for printing."""
    return expr.replace(lambda e: isinstance(e, RationalForm), lambda e: type(e).explicit(e.args[0]))
