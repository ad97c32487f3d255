"""Printing numbers and SymPy expressions for people: floats with a few significant digits
(``0.8``, not ``0.800000000000000``), integer-valued floats as integers, and round-off below a
relative tolerance shown as 0."""
from __future__ import annotations

import math

import sympy as sp
from sympy.printing.str import StrPrinter

__all__ = ["fmt_expr", "fmt_number", "chop"]


class _Printer(StrPrinter):
    def __init__(self, digits: int | None):
        super().__init__({"order": None})
        self.digits = digits

    def _print_Float(self, expr):
        return fmt_number(float(expr), self.digits)


def fmt_number(x, digits: int | None = 6, scale: float | None = None) -> str:
    """``x`` with ``digits`` significant digits (None: the shortest text that reads back the same
    float; ``nan``/``inf`` as they are); with ``scale``, a magnitude below ``1e-12 * scale`` is
    round-off and shown as ``0``."""
    x = float(x)
    if not math.isfinite(x):
        return str(x)
    if scale is not None and abs(x) <= 1e-12 * abs(scale):
        return "0"
    if x == int(x) and abs(x) < 1e15:
        return str(int(x))
    return repr(x) if digits is None else format(x, f".{digits}g")


def fmt_expr(expr, digits: int | None = 6) -> str:
    """A SymPy expression (or number) printed like ``sp.sstr`` with short floats."""
    if isinstance(expr, (int, float)) and not isinstance(expr, bool):
        return fmt_number(expr, digits)
    return _Printer(digits).doprint(sp.sympify(expr))


def chop(x: float, scale: float, rtol: float = 1e-12) -> float:
    """``x``, or 0.0 where it is round-off (``|x| <= rtol * scale``)."""
    return 0.0 if abs(x) <= rtol * abs(scale) else x
