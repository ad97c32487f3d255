"""Printing for the numba target: per-site scalar Python that numba compiles into vectorised loops.

The step-IR templates (``templates/step_numba/``) write the loops; :mod:`npdegen.codegen.step_numba`
prints what runs at one site with :class:`NumbaPrinter`: every number as ``_F(…)`` (the kernel's
dtype), integer powers as products and ``Heaviside``/``sign``/``min``/``max`` as selects, so that
float32 loops stay float32 and vectorise.

Activation forms (:func:`choose_forms`, the ``activations`` option): ``"auto"`` (default) uses the
vectorisable forms of :mod:`npdegen.codegen.fast_forms` in float32 and the vectorisable float64
``tanh`` of :mod:`npdegen.codegen.vector_math`; ``"fast"`` uses the fast forms in both; ``"exact"``
uses libm everywhere. Outside ``"exact"``, ``exp`` and ``log`` anywhere in a kernel (the soft-min
layer's sites) are the vectorisable ``_vexp``/``_vlog`` of :mod:`npdegen.codegen.vector_math`.
``f'`` is always ``sympy.diff`` of the form that is printed.
"""
from __future__ import annotations

import sympy as sp
from sympy.printing.pycode import PythonCodePrinter

from .fast_forms import fast_activation
from .printing import Assignments
from .vector_math import vector_activation

__all__ = ["ACTIVATION_MODES", "NumbaPrinter", "choose_forms", "shared_assignments"]

ACTIVATION_MODES = ("auto", "fast", "exact")


class NumbaPrinter(PythonCodePrinter):
    """Scalar Python for numba ``njit`` loops, typed in the kernel dtype ``_F``.

    With ``vector_math=True`` every ``exp``/``log`` is printed as the vectorisable ``_vexp``/``_vlog``
    of :mod:`npdegen.codegen.vector_math`; :attr:`used` collects the helpers printed (``"tanh"``,
    ``"exp"``, ``"log"``), whose sources the kernel must define (:func:`~.vector_math.vector_sources`)."""

    _default_settings = {**PythonCodePrinter._default_settings, "vector_math": False}

    def __init__(self, settings=None):
        super().__init__({"fully_qualified_modules": True, "strict": True, **(settings or {})})
        self.used = set()

    def _number(self, value) -> str:
        return f"_F({float(value)!r})"

    def _print_Integer(self, expr):
        return self._number(expr)

    _print_Rational = _print_Integer
    _print_Float = _print_Integer
    _print_NumberSymbol = _print_Integer

    def _print_Pow(self, expr, rational=False):
        base, exp = expr.args
        b = self.parenthesize(base, sp.printing.precedence.PRECEDENCE["Atom"])
        if exp.is_Integer and 0 < abs(exp) <= 8:
            product = "*".join([b] * int(abs(exp)))
            return f"({product})" if exp > 0 else f"(_F(1.0)/({product}))"
        if exp == sp.Rational(1, 2):
            return f"math.sqrt({self._print(base)})"
        if exp == -sp.Rational(1, 2):
            return f"(_F(1.0)/math.sqrt({self._print(base)}))"
        return f"({b}**{self._print(exp)})"

    def _select(self, cases, default) -> str:
        out = default
        for cond, value in reversed(cases):
            out = f"({value} if {cond} else {out})"
        return out

    def _print_Heaviside(self, expr):
        a = self._print(expr.args[0])
        h0 = expr.args[1] if len(expr.args) > 1 else sp.Rational(1, 2)
        return self._select([(f"{a} > _F(0.0)", "_F(1.0)"), (f"{a} < _F(0.0)", "_F(0.0)")], self._number(h0))

    def _print_sign(self, expr):
        a = self._print(expr.args[0])
        return self._select([(f"{a} > _F(0.0)", "_F(1.0)"), (f"{a} < _F(0.0)", "_F(-1.0)")], "_F(0.0)")

    def _nested(self, op, args):
        """max/min as selects that propagate NaN (Python's and numba's ``max(nan, c)`` return ``c``:
        a clamp ``min(max(u, -8), 8)`` would turn an overflowed NaN into a finite ±tanh(8))."""
        args = sorted(args, key=lambda a: (not a.is_Number, sp.default_sort_key(a)))
        out, literal = self._print(args[0]), args[0].is_Number
        for a in args[1:]:
            code = self._print(a)
            if literal or a.is_Number:     # a literal is never NaN: one comparison
                const, var = (code, out) if a.is_Number else (out, code)
                out = f"({const} if {const} {op} {var} else {var})"
            else:
                out = f"({code} if ({code} {op} {out} or {code} != {code}) else {out})"
            literal = False
        return out

    def _print_Max(self, expr):
        return self._nested(">", expr.args)

    def _print_Min(self, expr):
        return self._nested("<", expr.args)

    def _print_Tanh64(self, expr):
        self.used.add("tanh")
        return f"_vtanh({self._print(expr.args[0])})"

    def _vector_call(self, name, expr):
        if not self._settings["vector_math"]:
            return getattr(super(), f"_print_{name}")(expr)
        self.used.add(name)
        return f"_v{name}({self._print(expr.args[0])})"

    def _print_exp(self, expr):
        return self._vector_call("exp", expr)

    def _print_log(self, expr):
        if len(expr.args) > 1:
            raise NotImplementedError(f"log with a base: {expr}")
        return self._vector_call("log", expr)

    def _print_Abs(self, expr):
        return f"abs({self._print(expr.args[0])})"

    def _print_Piecewise(self, expr):
        *cases, last = expr.args
        if last.cond != sp.true:
            raise NotImplementedError(f"Piecewise without a default branch: {expr}")
        return self._select([(self._print(c), self._print(e)) for e, c in cases], self._print(last.expr))


def shared_assignments(exprs, printer, prefix: str) -> Assignments:
    """:func:`~npdegen.codegen.printing.assignments` with reciprocals shared: once CSE has named
    ``t = 1/q``, later ``q**-k`` are printed as ``t**k`` (products, no second division; the
    derivative of a rational ``P/Q`` needs ``1/Q`` and ``1/Q²``); and the compound base of a
    small power named first (``P**2`` is ``_t = P`` then ``_t*_t``, not ``P`` printed twice:
    ``tanh' = 1 − T²`` with ``T`` the rational tanh)."""
    replacements, reduced = sp.cse(list(exprs), symbols=sp.numbered_symbols(prefix), order="canonical")
    reciprocals = {}
    bases = {}
    names = sp.numbered_symbols(prefix + "b")
    temps = []

    def share(e):
        for base, name in reciprocals.items():
            e = e.replace(lambda a, b=base: a.is_Pow and a.base == b and a.exp.is_Integer and a.exp < -1,
                          lambda a, t=name: t ** (-a.exp))
        return e

    def hoist(e):
        def named(a):
            if a.base not in bases:
                bases[a.base] = next(names)
                temps.append((str(bases[a.base]), printer.doprint(a.base)))
            return bases[a.base] ** a.exp
        return e.replace(lambda a: a.is_Pow and a.exp.is_Integer and 2 <= abs(a.exp) <= 8 and not a.base.is_Atom,
                         named)
    for sym, e in replacements:
        e = hoist(share(e))
        if e.is_Pow and e.exp == -1:
            reciprocals[e.base] = sym
        temps.append((str(sym), printer.doprint(e)))
    results = tuple(printer.doprint(hoist(share(e))) for e in reduced)
    return Assignments(tuple(temps), results)


def choose_forms(f: sp.Expr, x: sp.Symbol, options) -> tuple[str, sp.Expr, sp.Expr]:
    """The activation ``f(x)`` as a numba kernel computes it for ``options`` (see activation_forms)."""
    mode = getattr(options, "activations", "auto")
    if mode == "fast" or (mode == "auto" and options.dtype == "float32"):
        form, g = "fast", fast_activation(f)
    elif mode == "auto":
        form, g = "vector", vector_activation(f)
    else:
        form, g = "exact", f
    if g == f:
        return "exact", f, sp.diff(f, x)
    return form, g, sp.diff(g, x)
