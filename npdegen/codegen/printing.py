"""SymPy printers: expressions → code lines, with shared subexpressions.

The templates decide the code's shape; this module only turns SymPy expressions into
expression strings of the target language, after :func:`sympy.cse` has pulled out common
subexpressions. Each backend brings its printer; :func:`assignments` is shared.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp
from sympy.printing.numpy import NumPyPrinter

__all__ = ["NumpyKernelPrinter", "Assignments", "assignments", "code_weights"]


class NumpyKernelPrinter(NumPyPrinter):
    """NumPy printer with element-wise ``Max``/``Min``/``Heaviside`` for array arguments."""

    def __init__(self, settings=None):
        super().__init__({"fully_qualified_modules": True, "strict": True, **(settings or {})})

    def _nested(self, func: str, args) -> str:
        out = self._print(args[0])
        for a in args[1:]:
            out = f"numpy.{func}({out}, {self._print(a)})"
        return out

    def _print_Max(self, expr):
        return self._nested("maximum", sorted(expr.args, key=sp.default_sort_key))

    def _print_Min(self, expr):
        return self._nested("minimum", sorted(expr.args, key=sp.default_sort_key))

    def _print_Heaviside(self, expr):
        h0 = expr.args[1] if len(expr.args) > 1 else sp.Rational(1, 2)
        return f"numpy.heaviside({self._print(expr.args[0])}, {self._print(h0)})"


@dataclass(frozen=True)
class Assignments:
    """``temps`` are ``(name, code)`` lines to run first; ``results`` the final expressions."""
    temps: tuple
    results: tuple


def assignments(exprs, printer, prefix: str = "c") -> Assignments:
    """CSE ``exprs`` together and print them. Zero results print as ``None``-free ``0``."""
    exprs = list(exprs)
    names = sp.numbered_symbols(prefix)
    replacements, reduced = sp.cse(exprs, symbols=names, order="canonical")
    temps = tuple((str(sym), printer.doprint(e)) for sym, e in replacements)
    results = tuple(printer.doprint(e) for e in reduced)
    return Assignments(temps, results)


def code_weights(ir) -> tuple[tuple, tuple]:
    """``(weights, dweights)`` of a 1-D :class:`~npdegen.derive.kernel.KernelIR` with every
    parameter symbol renamed ``p_<name>``: user names live in their own namespace in generated
    code (templates define ``p_<name>`` for each parameter and never another name starting with
    ``p_``), so no parameter name can collide with a name of the templates."""
    names = {name for name, _ in ir.params}
    exprs = (*ir.weights, *(d for _, ds in ir.dweights for d in ds))
    free = set().union(*(e.free_symbols for e in exprs)) if exprs else set()
    rename = {s: sp.Symbol(f"p_{s.name}", real=True) for s in free if s.name in names}
    weights = tuple(w.xreplace(rename) for w in ir.weights)
    dweights = tuple((name, tuple(d.xreplace(rename) for d in ds)) for name, ds in ir.dweights)
    return weights, dweights
