r"""Site expressions of the soft-min (log-sum-exp) stencil layer and of its ε → 0 min-plus limit.

A soft-min layer with a positive stencil ``{o_j: w_j}`` and temperature ``ε > 0`` is, at site ``i``,

.. math::
    Z_i = -ε \log \sum_j w_j\, e^{-z_{i+o_j}/ε}
        = m_i - ε \log \sum_j e^{-(s_j - m_i)/ε},\qquad s_j = z_{i+o_j} + c_j,\quad c_j = -ε\log w_j,

for *any* shift ``m_i`` (it cancels). The layer uses ``m_i = min_j s_j``: every exponent is ≤ 0 and
the sum lies in ``[1, K]``, so no overflow or underflow to ``log 0`` for any finite state, any
weights (however far from 1) and any ε > 0 — the shift includes the costs ``c_j`` and not only the
accesses, because weights ``e^{-c/ε}`` of a fixed cost underflow as ε → 0.

The min-plus layer is ``Z_i = min_j (z_{i+o_j} + c_j)``; with ``c_j`` held fixed,
``min_j s_j − ε log K ≤ Z^ε_i ≤ min_j s_j`` (and ``Z^ε − min = −ε log k + O(ε e^{−δ/ε})`` with ``k``
exact ties and gap ``δ``), so the soft-min layer converges to it at rate ε.

Three SymPy nodes make the derivatives the step IR takes (:mod:`npdegen.ir.step`) exact and keep the
lowering (which expands the site, :mod:`npdegen.ir.lower`) from rewriting the safe form. All three
print as their first argument in parentheses (NumPy, numba, CUDA, lambdify and ``sstr`` alike), so
every backend computes exactly the expression shown:

* :class:`Shift` — the value of its argument with derivative 0. Exact for ``m``: ``Z`` does not
  depend on the shift, so ``∂Z/∂z_{i+o_k} = π_k = e^{-(s_k - m)/ε}/Σ_j e^{-(s_j - m)/ε}`` (the softmax
  weights) with no ``Heaviside`` terms. (Differentiating ``Min`` instead gives
  ``π_k + ∂m/∂z_k (1 − Σ_j π_j)``: exact up to round-off, but with ``Heaviside(0) = 1/2`` splits at
  ties and a select per access and Jacobian.)
* :class:`Gap` — its argument, derivative of its argument, but opaque to ``expand``: the gap
  ``s_j − m`` is computed as one difference (``expand`` would write ``exp(-(s-m)/ε)`` as
  ``exp(-s/ε)·exp(m/ε)``, which overflows).
* :class:`FirstMin` — ``min_j s_j`` whose derivative is the deterministic one-hot sub-gradient:
  the winner is the lowest-index (lowest offset) ``k`` with ``s_k = min``,
  ``∂/∂s_k = Π_{j<k} [s_j > s_k] · Π_{j>k} [s_j ≥ s_k]`` (``Heaviside(·, 0)`` and ``Heaviside(·, 1)``),
  the comparisons made on the same computed values ``s_j``. (SymPy's ``Min`` derivative gives ``1/2``
  to each of two tied entries.)
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import sympy as sp
from sympy.core.expr import Expr

from .discretise import access_name
from ..spec.spacing import spacing_symbols

__all__ = ["Gap", "Shift", "FirstMin", "first_min", "normalise_offsets", "as_number", "positive_weight", "temperature",
           "real_cost", "cost_of_weight", "softmin_site", "minplus_site", "shifted_access", "log_weight_symbol",
           "cost_symbol"]


class Parenthesised:
    """Mixin: a node printed as its first argument, in parentheses, by every printer."""

    def _parenthesised(self, printer, *args, **kwargs):
        return f"({printer._print(self.args[0])})"

    _sympystr = _pythoncode = _numpycode = _lambdacode = _mpmathcode = _ccode = _cxxcode = _parenthesised


class _Opaque(Parenthesised, sp.UnevaluatedExpr):
    """An expression node printed as its first argument, in parentheses, by every printer.

    (SymPy prints an ``UnevaluatedExpr`` as its argument, but an ``Add`` that has one as a term
    strips a leading ``-`` from the printed argument and negates the parenthesised rest:
    ``a + Gap(-b + c)`` would print ``a - (b + c)``. The print methods return ``(…)``.)"""

    def __new__(cls, *args, **kwargs):
        args = tuple(sp.sympify(a) for a in args)
        if args[0].is_Number:
            return args[0]
        return Expr.__new__(cls, *args)

    def doit(self, **hints):
        return self


class Gap(_Opaque):
    """``x`` itself, derivative ``dx``; ``expand`` keeps it one node (see the module docstring)."""

    def _eval_derivative(self, s):
        return sp.diff(self.args[0], s)


class Shift(_Opaque):
    """``x`` itself with derivative 0: a shift that cancels from the expression it appears in."""

    def _eval_derivative(self, s):
        return sp.Integer(0)


class FirstMin(_Opaque):
    """``min_j s_j`` (printed: its first argument ``Min(s_1, …)``) with the lowest-index one-hot
    derivative. Arguments: ``(Min(s_1, …, s_K), s_1, …, s_K)``; build it with :func:`first_min`."""

    def __new__(cls, value, *terms, **kwargs):
        value, terms = sp.sympify(value), tuple(sp.sympify(t) for t in terms)
        if value.is_Number or len(terms) < 2:
            return value
        return Expr.__new__(cls, value, *terms)

    @property
    def terms(self) -> tuple:
        return self.args[1:]

    def one_hot(self, k: int) -> sp.Expr:
        """``1`` if ``s_k`` is the lowest-index minimum, else ``0``."""
        s = self.terms
        out = sp.Integer(1)
        for j, sj in enumerate(s):
            if j != k:
                out *= sp.Heaviside(Gap(sj) - Gap(s[k]), 0 if j < k else 1)
        return out

    def _eval_derivative(self, x):
        return sp.Add(*(self.one_hot(k) * sp.diff(sk, x) for k, sk in enumerate(self.terms)))


def first_min(*terms) -> sp.Expr:
    """``min`` of ``terms`` (in this order) with the lowest-index one-hot derivative."""
    return FirstMin(sp.Min(*terms), *terms)


# ---------------------------------------------------------------------------------------------- input
def normalise_offsets(offsets, dim: int) -> tuple:
    """Offsets as sorted integer tuples of length ``dim`` (1-D: ints accepted), distinct, non-empty,
    within ±8 grid cells per axis (the shifted accesses of :mod:`npdegen.spec.layerspec`)."""
    if isinstance(offsets, (str, bytes)) or not isinstance(offsets, Sequence) or not offsets:
        raise TypeError(f"the stencil needs a non-empty sequence of offsets, got {offsets!r}")
    out = []
    for o in offsets:
        o = (o,) if isinstance(o, numbers.Integral) and not isinstance(o, bool) else o
        if (not isinstance(o, tuple) or len(o) != dim
                or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in o)):
            raise ValueError(f"offset {o!r} must be {'an integer' if dim == 1 else f'a tuple of {dim} integers'} "
                             f"for a {dim}-D field")
        if any(abs(int(v)) > 8 for v in o):
            raise ValueError(f"offset {o!r} reaches beyond 8 grid cells along an axis (the limit of a stencil)")
        out.append(tuple(int(v) for v in o))
    if len(set(out)) != len(out):
        raise ValueError(f"offsets must be distinct, got {list(offsets)!r}")
    return tuple(sorted(out))


def as_number(value, what: str) -> sp.Expr:
    """A finite real Python number as an exact or floating SymPy number (no text)."""
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{what} is text ({value!r:.40}); pass a number or a SymPy expression "
                        "(npdegen.parse_expression turns text into one safely)")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what} must be a real number or a SymPy expression, got {type(value).__name__}")
    if not math.isfinite(float(value)):
        raise ValueError(f"{what} must be finite, got {value!r}")
    return sp.Integer(int(value)) if isinstance(value, numbers.Integral) else sp.nsimplify(value) \
        if isinstance(value, numbers.Rational) else sp.Float(float(value))


def _real_version(expr: sp.Expr, spacing: set) -> sp.Expr:
    """``expr`` with every symbol but the (positive) spacings replaced by a real dummy: what a
    parameter is at run time, whatever assumptions the user's symbol carries."""
    return expr.xreplace({s: sp.Dummy(s.name, real=True) for s in expr.free_symbols if s.name not in spacing})


def _expression(value, what: str, names: set, spacing: set) -> sp.Expr:
    """A finite number, or an expression of the parameters ``names`` and the spacings ``spacing``."""
    if isinstance(value, sp.Basic) and not isinstance(value, sp.Expr):
        raise TypeError(f"{what} must be a SymPy expression, got {type(value).__name__}")
    if not isinstance(value, sp.Expr):
        return as_number(value, what)
    if value.atoms(sp.core.function.AppliedUndef):
        raise ValueError(f"{what} = {value} contains a function of the field; it must be an expression of "
                         "parameters, spacings and numbers")
    unknown = sorted(s.name for s in value.free_symbols if s.name not in names | spacing)
    if unknown:
        raise ValueError(f"{what} = {value} uses symbol(s) {unknown} that are not parameters; list them in "
                         "params={symbol: family}")
    if value.is_number and not (value.is_real and value.is_finite):
        raise ValueError(f"{what} must be a finite real number, got {value}")
    return value


def _positive(value, what: str, names: set, spacing: set, hint: str) -> sp.Expr:
    expr = _expression(value, what, names, spacing)
    if expr.is_number:                    # exact: exp(-1000/1e-5) is a positive SymPy number
        if expr.is_positive is not True:
            raise ValueError(f"{what} must be > 0, got {value!r}{hint}")
        return expr
    if _real_version(expr, spacing).is_positive is not True:
        raise ValueError(f"{what} = {expr} is not positive for every real value of its parameters; use a positive "
                         "parametrisation such as exp(s), or numbers")
    return expr


def positive_weight(value, what: str, names: set, spacing: set) -> sp.Expr:
    """A stencil weight: a number > 0, or an expression of the parameters ``names`` (and the
    spacings) that SymPy proves positive for every real parameter value (``exp(s)``, ``1 + s**2``)."""
    return _positive(value, what, names, spacing, ": a soft-min layer needs a positive stencil (its Cole-Hopf "
                     "partner is a positive linear step)")


def temperature(value, names: set, spacing: set) -> sp.Expr:
    """ε: a number > 0, or an expression positive for every real parameter value (train ``eps = exp(s)``)."""
    return _positive(value, "the temperature eps", names, spacing, "")


def real_cost(value, what: str, names: set, spacing: set) -> sp.Expr:
    """A min-plus cost ``c_j``: any finite real number or expression of the parameters."""
    return _expression(value, what, names, spacing)


def cost_of_weight(weight: sp.Expr, eps: sp.Expr) -> sp.Expr:
    """``c = −ε log w`` (``−ε u`` for ``w = exp(u)``, so log-weights stay linear)."""
    if isinstance(weight, sp.exp):
        return -eps * weight.args[0]
    return -eps * sp.log(weight)


def log_weight_symbol(offset: tuple) -> sp.Symbol:
    """The trainable log-weight of an offset: ``lw_m1``, ``lw_0``, ``lw_p1_m2``."""
    return sp.Symbol("lw" + access_name(offset)[1:])


def cost_symbol(offset: tuple) -> sp.Symbol:
    """The trainable cost of an offset: ``c_m1``, ``c_0``, ``c_p1_m2``."""
    return sp.Symbol("c" + access_name(offset)[1:])


# ---------------------------------------------------------------------------------------------- sites
def shifted_access(field: sp.Expr, offset: tuple) -> sp.Expr:
    """``z(x + o_x Δ_x, …)`` (the field itself for the zero offset)."""
    deltas = spacing_symbols(field.args)
    return field.func(*(c + o * d for c, o, d in zip(field.args, offset, deltas)))


def _with_linear_term(value: sp.Expr, anchor: sp.Expr) -> sp.Expr:
    """``anchor + Gap(value − anchor)``: the same value and derivatives, plus a term linear in an
    access with a parameter-free coefficient. The step IR's NumPy template needs at least one such
    term (a site made only of parameter-dependent terms renders ``, = coef``); ``value − anchor``
    is one difference, exact when the two are within a factor 2 (Sterbenz)."""
    return anchor + Gap(value - anchor)


def softmin_site(field: sp.Expr, offsets: tuple, costs: tuple, eps: sp.Expr) -> sp.Expr:
    r"""``m − ε log Σ_j exp(−(s_j − m)/ε)``, ``s_j = z(x + o_j Δ) + c_j``, ``m = Shift(min_j s_j)``."""
    s = [shifted_access(field, o) + c for o, c in zip(offsets, costs)]
    m = Shift(sp.Min(*s)) if len(s) > 1 else Shift(s[0])
    lead = _with_linear_term(m, shifted_access(field, offsets[0])) if _parametrised(m, field) else m
    return lead - eps * sp.log(sp.Add(*(sp.exp(-Gap(sj - m) / eps) for sj in s)))


def minplus_site(field: sp.Expr, offsets: tuple, costs: tuple) -> sp.Expr:
    r"""``min_j (z(x + o_j Δ) + c_j)`` with the lowest-offset one-hot derivative (:class:`FirstMin`)."""
    s = [shifted_access(field, o) + c for o, c in zip(offsets, costs)]
    site = first_min(*s) if len(s) > 1 else s[0]
    if _parametrised(site, field):
        site = _with_linear_term(site, shifted_access(field, offsets[0]))
    return site


def _parametrised(expr: sp.Expr, field: sp.Expr) -> bool:
    """Whether ``expr`` holds a symbol other than coordinates and spacings (a parameter)."""
    skip = set(field.args) | set(spacing_symbols(field.args))
    return bool(expr.free_symbols - skip)
