"""Printing for the CUDA target: SymPy's C99 printer for CUDA C++ of one precision.

The ``real`` type of the kernels is ``float`` or ``double``; float32 code calls the float intrinsics
(``tanhf``, ``expf``, ...) and writes ``f`` literals, float64 code the double ones. The step-IR
CUDA target (:mod:`npdegen.codegen.step_cuda`) prints with it; the launch constants live here too.
"""
from __future__ import annotations

import sympy as sp
from sympy.codegen.ast import float32, float64, real
from sympy.printing.c import C99CodePrinter
from sympy.printing.precedence import precedence

__all__ = ["CudaPrinter", "TILE", "TARGET_BLOCKS"]

#: Threads per block, one grid site each (the launch rule is in the template header).
TILE = 256
#: Blocks the launch rule aims for: about one wave on an H100/H200 (132 SMs x 8 blocks).
TARGET_BLOCKS = 1024


class CudaPrinter(C99CodePrinter):
    """C99 printer for CUDA C++ kernels of one precision.

    Differences from SymPy's C99 printer: lowercase ``f`` literal suffix; no ``M_PI``-style macros
    (NVRTC has no ``math.h``), constants print as literals; small integer powers of symbols as
    products; ``Heaviside`` and ``Piecewise`` as one-line conditional expressions.
    """
    type_literal_suffixes = {**C99CodePrinter.type_literal_suffixes, float32: "f"}

    def __init__(self, dtype: str):
        super().__init__({"type_aliases": {real: float32 if dtype == "float32" else float64}})
        self.math_macros = {}

    def _literal(self, value) -> str:
        return self._print_Float(sp.Float(value))

    def _print_NumberSymbol(self, expr):
        return self._literal(expr.evalf(20))

    _print_Pi = _print_Exp1 = _print_EulerGamma = _print_GoldenRatio = _print_Catalan = _print_NumberSymbol

    def _print_Pow(self, expr):
        base, exp = expr.as_base_exp()
        if exp.is_Integer and 2 <= abs(exp) <= 4 and (base.is_Symbol or base.is_Number):
            product = "*".join([self.parenthesize(base, precedence(expr))] * abs(int(exp)))
            return f"({product})" if exp > 0 else f"({self._literal(1)}/({product}))"
        return super()._print_Pow(expr)

    def _print_Heaviside(self, expr):
        x = self._print(expr.args[0])
        h0 = expr.args[1] if len(expr.args) > 1 else sp.Rational(1, 2)
        return f"(({x}) > 0 ? {self._literal(1)} : (({x}) < 0 ? {self._literal(0)} : {self._print(sp.Float(h0))}))"

    def _print_Piecewise(self, expr):
        if expr.args[-1].cond != sp.true:
            return super()._print_Piecewise(expr)
        code = f"({self._print(expr.args[-1].expr)})"
        for e, c in reversed(expr.args[:-1]):
            code = f"(({self._print(c)}) ? ({self._print(e)}) : {code})"
        return code
