"""Safe whitelist parser: user text -> SymPy expression, never via eval/exec/sympify/parse_expr.

The syntax is checked first (:mod:`npdegen.spec.syntax`: screening, ``ast.parse``, a whitelist
of node kinds, bounded size and depth), so no SymPy code runs while hostile syntax is refused.
:class:`_Builder` then builds SymPy objects bottom-up and refuses what would make SymPy compute
huge numbers: big exponents (``(2*x)**n`` computes ``2**n``), ``exp(c*log(b))`` with a big ``c``
(SymPy makes it ``b**c``), constants beyond the double range (``sin(exp(exp(64)))`` would need
astronomic precision), and values that are infinite, undefined or complex. SymPy's assumption
queries can still explode on small inputs (``abs(tanh((x+y)**64))`` expands a 64th power into
real and imaginary parts), so this phase runs under a budget of MAX_BUILD_STEPS Python calls and
lines, counted with ``sys.settrace``.
"""
from __future__ import annotations

import ast
import cmath
import contextlib
import inspect
import math
import sys
import warnings
from collections.abc import Mapping

import sympy
from sympy.codegen.cfunctions import log1p
from sympy.core.function import AppliedUndef

from .names import validate_identifier
from .syntax import (CONSTANTS, FUNCTIONS, MAX_DERIVATIVE_ORDER, MAX_EXPONENT, MAX_INT_DIGITS,  # noqa: F401
                     MAX_MINMAX_ARGS, NOT_COUNTED, Checker, SpecSyntaxError, line_col, screen)

__all__ = ["SpecSyntaxError", "parse_expression", "FUNCTIONS", "CONSTANTS"]

MAX_BUILT_EXPONENT = 1024     # largest |numerator| inside any exponent once SymPy combines powers
MAX_NUMBER_BITS = 1100        # numerators and denominators of built numbers (1e308 fits)
MAX_BUILD_STEPS = 2_000_000   # Python calls + lines SymPy may run while building (~1-2 s)

_OPERATORS = {"add": sympy.Add, "mul": sympy.Mul, "pow": sympy.Pow,
              "sub": lambda a, b: sympy.Add(a, sympy.Mul(sympy.S.NegativeOne, b)),
              "div": lambda a, b: sympy.Mul(a, sympy.Pow(b, sympy.S.NegativeOne))}
_APPROXIMATE = {  # double-precision stand-ins, used only to bound the size of constants
    sympy.exp: cmath.exp, sympy.log: cmath.log, sympy.sin: cmath.sin, sympy.cos: cmath.cos,
    sympy.tan: cmath.tan, sympy.sinh: cmath.sinh, sympy.cosh: cmath.cosh, sympy.tanh: cmath.tanh,
    sympy.atan: cmath.atan, sympy.asinh: cmath.asinh, log1p: lambda v: cmath.log(1 + v),
    sympy.Abs: abs, sympy.sign: lambda v: v / abs(v) if v else 0j,
    sympy.Heaviside: lambda v, h0: (v.real > 0) + h0 * (v.real == 0),
    sympy.Max: lambda *vs: max(vs, key=lambda v: v.real),
    sympy.Min: lambda *vs: min(vs, key=lambda v: v.real),
}
_SUSPENDABLE = inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR
_UNDEFINED = (sympy.S.ComplexInfinity, sympy.S.Infinity, sympy.S.NegativeInfinity, sympy.S.NaN)


class _OverBudget(BaseException):
    """Raised inside SymPy when the build budget is spent (a BaseException: not swallowed)."""


@contextlib.contextmanager
def _step_budget(steps: int):
    """Count the Python calls and lines run in this thread and, past *steps*, raise
    :class:`_OverBudget` at the next call or line of an ordinary function (not in a generator,
    which may be running its finaliser: that would swallow the exception and stop tracing).

    An active tracer (coverage, debugger) keeps receiving its events.  An aborted assumption
    query may leave SymPy's per-object cache at "unknown", which is sound (never wrong).
    """
    previous, left, state = sys.gettrace(), steps, {"exceeded": False}

    def wrap(inner):
        def local(frame, event, arg):
            nonlocal left
            left -= 1
            if left < 0 and event in ("call", "line") and not frame.f_code.co_flags & _SUSPENDABLE:
                state["exceeded"] = True
                raise _OverBudget
            if inner is None:
                return local
            following = inner(frame, event, arg)
            return local if following is inner else wrap(following)
        return local

    sys.settrace(wrap(previous))
    try:
        yield state
    finally:
        sys.settrace(previous)


def _log_with_constant_factor(factor) -> bool:
    """``log(b)`` where ``b`` is constant or has a constant factor (``b**c`` computes ``2**c``)."""
    return isinstance(factor, sympy.log) and any(
        not f.free_symbols and f not in (sympy.S.One, sympy.S.NegativeOne)
        for f in sympy.Mul.make_args(factor.args[0]))


class _Builder:
    """Phase 2: build SymPy objects from the checked tuple tree, bottom-up.

    Every built value is scanned (memoised, so linear overall) for the limits listed in the
    module docstring; ``self.at`` is the position of the node being built.
    """

    def __init__(self, fields: dict):
        self.fields, self.scanned, self.values, self.at = fields, {}, {}, (1, 1)

    def build(self, node) -> sympy.Expr:
        kind, pos, *rest = node
        children = rest[1] if kind == "call" else rest if kind in _OPERATORS or kind == "neg" else ()
        args = [self.build(child) for child in children]
        self.at = pos
        try:
            result = self.construct(kind, pos, rest, args)
        except SpecSyntaxError:
            raise
        except Exception as err:  # noqa: BLE001 - e.g. Max of non-real values, or a SymPy bug
            reason = f"SymPy cannot build this value ({type(err).__name__}: {str(err)[:80]})"
            raise SpecSyntaxError(*pos, reason) from None
        self.scan(result, pos)
        return result

    def construct(self, kind, pos, rest, args):
        if kind in _OPERATORS:
            return self.power(pos, *args) if kind == "pow" else _OPERATORS[kind](*args)
        if kind == "neg":
            return sympy.Mul(sympy.S.NegativeOne, args[0])
        if kind == "call":
            return self.call(pos, rest[0], args)
        if kind == "num":
            value = rest[0]
            if type(value) is int:
                return sympy.Integer(value)
            return sympy.Rational(value.numerator, value.denominator)
        if kind == "deriv":
            function, coords = self.fields[rest[0]]
            return sympy.Derivative(function, (coords[rest[1]], rest[2]))
        if kind == "mderiv":
            function, coords = self.fields[rest[0]]
            return sympy.Derivative(function, *((coords[c], k) for c, k in rest[1]))
        if kind == "field":
            return self.fields[rest[0]][0]
        return sympy.Symbol(rest[0]) if kind == "sym" else CONSTANTS[rest[0]]

    @staticmethod
    def power(pos, base, exponent):
        if exponent.is_Rational:
            if abs(exponent.p) > MAX_EXPONENT:
                raise SpecSyntaxError(*pos, f"exponent {exponent} is larger than {MAX_EXPONENT} in magnitude")
        elif not exponent.free_symbols and not base.free_symbols:
            raise SpecSyntaxError(*pos, "a power of two constant expressions needs a rational exponent")
        return sympy.Pow(base, exponent)

    @staticmethod
    def call(pos, name, args):
        function = FUNCTIONS[name][0]
        if function in (sympy.Max, sympy.Min):  # nested Max/Min flatten into one
            if sum(len(a.args) if isinstance(a, function) else 1 for a in args) > MAX_MINMAX_ARGS:
                raise SpecSyntaxError(*pos, f"{name}() would have more than {MAX_MINMAX_ARGS} arguments")
        return function(*args)

    def scan(self, expr, pos) -> bool:
        """Refuse unsafe values in *expr*; return whether it holds a log of a constant anywhere."""
        found = self.scanned.get(expr)
        if found is not None:
            return found
        if expr.is_Rational:
            if max(abs(expr.p).bit_length(), expr.q.bit_length()) > MAX_NUMBER_BITS:
                raise SpecSyntaxError(*pos, f"numbers larger than {MAX_NUMBER_BITS} bits are not allowed")
        elif any(expr is u for u in _UNDEFINED):
            raise SpecSyntaxError(*pos, "the value is infinite or undefined (e.g. a division by zero)")
        elif expr is sympy.S.ImaginaryUnit:
            raise SpecSyntaxError(*pos, "the value is complex (e.g. the square root of a negative number)")
        found = False
        for arg in expr.args:
            found = self.scan(arg, pos) or found
        found = found or (isinstance(expr, sympy.log) and not expr.args[0].free_symbols)
        if expr.is_Pow and any(abs(r.p) > MAX_BUILT_EXPONENT for r in expr.exp.atoms(sympy.Rational)):
            raise SpecSyntaxError(*pos, f"numbers larger than {MAX_BUILT_EXPONENT} inside an exponent are "
                                        "not allowed (SymPy splits b**(n + x) into b**n * b**x)")
        if expr.is_Mul:
            coefficient, rest = expr.as_coeff_Mul()
            if coefficient.is_Rational and abs(coefficient.p) > MAX_EXPONENT and (
                    found or any(_log_with_constant_factor(f) for f in sympy.Mul.make_args(rest))):
                raise SpecSyntaxError(*pos, "a logarithm of a constant, or of a product with a constant "
                                            f"factor, may not be multiplied by a number larger than "
                                            f"{MAX_EXPONENT} in magnitude (SymPy makes exp(c*log(b)) b**c)")
        if isinstance(expr, sympy.Expr) and not expr.free_symbols:
            try:
                self.approximate(expr)
            except (ArithmeticError, ValueError, TypeError, KeyError):
                raise SpecSyntaxError(*pos, "a constant in the expression is beyond the double precision "
                                            "range, or undefined") from None
        self.scanned[expr] = found
        return found

    def approximate(self, expr) -> complex:
        """Value of a constant in double precision, computed without SymPy's evalf."""
        value = self.values.get(expr)
        if value is None:
            if expr.is_Rational:
                value = expr.p / expr.q  # correctly rounded; OverflowError beyond the double range
            elif expr is sympy.pi or expr is sympy.E:
                value = math.pi if expr is sympy.pi else math.e
            else:
                args = [self.approximate(arg) for arg in expr.args]
                if expr.is_Add:
                    value = sum(args)
                elif expr.is_Mul:
                    value = math.prod(args)
                else:
                    value = args[0] ** args[1] if expr.is_Pow else _APPROXIMATE[expr.func](*args)
            value = complex(value)
            if not cmath.isfinite(value):
                raise OverflowError
            self.values[expr] = value
        return value


def _prepare_fields(fields) -> dict:
    """Validate *fields*; return ``{name: (applied function, {coordinate name: Symbol})}``."""
    if fields is None:
        return {}
    if not isinstance(fields, Mapping):
        raise TypeError("fields must be a mapping from names to applied functions such as z(q)")
    prepared = {}
    for key, function in fields.items():
        validate_identifier(key, "field name")
        if not (isinstance(function, AppliedUndef) and function.args
                and all(isinstance(a, sympy.Symbol) for a in function.args)):
            raise TypeError(f"field {key!r} must be an applied function of symbols, such as z(q)")
        coords = {a.name: a for a in function.args}
        if len(coords) != len(function.args):
            raise ValueError(f"field {key!r} repeats a coordinate")
        prepared[key] = (function, coords)
    coordinates = {c for _, coords in prepared.values() for c in coords}
    clash = coordinates & (set(prepared) | set(FUNCTIONS) | set(CONSTANTS) | {"diff"})
    if clash:
        raise ValueError(f"coordinate names clash with field or function names: {sorted(clash)}")
    return prepared


def parse_expression(text: str, *, fields=None, max_length: int = 4000, max_nodes: int = 500,
                     max_depth: int = 40) -> sympy.Expr:
    """Parse user *text* into a SymPy expression without evaluating any code.

    *fields* maps a field name to an applied function such as ``z(q)``: in the text, ``z`` is
    that field, ``z_q``, ``z_qq``, ... and ``diff(z, q[, k])`` its derivatives (order <= 8), and
    ``q`` may only appear inside diff.  Other names become plain ``Symbol`` objects after
    :func:`~npdegen.spec.names.validate_identifier`, except :data:`FUNCTIONS` (callees only)
    and :data:`CONSTANTS`.  Raises ``TypeError`` if *text* is not a ``str`` (or *fields* is
    malformed) and :class:`SpecSyntaxError` for every refused text.
    """
    if not isinstance(text, str):
        raise TypeError(f"expression must be a str, not {type(text).__name__}")
    prepared = _prepare_fields(fields)
    screen(text, max_length, max_depth)
    body = text.lstrip(" \t\r\n")  # eval mode refuses leading indentation
    if not body.strip():
        raise SpecSyntaxError(1, 1, "the expression is empty")
    checker = Checker(prepared, line_col(text, len(text) - len(body)))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(body, mode="eval")
    except SyntaxError as err:
        line, col = checker.map(err.lineno or 1, max(err.offset or 1, 1))
        raise SpecSyntaxError(line, col, f"invalid syntax: {err.msg}") from None
    except (RecursionError, MemoryError, OverflowError, ValueError):
        raise SpecSyntaxError(*checker.origin, "the expression is too deeply nested or too large") from None
    stack, count = [(tree, 0)], 0
    while stack:  # iterative, and it bounds the recursion of the phases below
        node, depth = stack.pop()
        count += 1
        if count > max_nodes:
            checker.fail(node, f"the expression has more than {max_nodes} syntax nodes")
        if depth > max_depth:
            checker.fail(node, f"the expression is nested deeper than {max_depth} levels")
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node)
                     if not isinstance(child, NOT_COUNTED))
    try:
        checked, _ = checker.check(tree)
    except RecursionError:
        raise SpecSyntaxError(*checker.origin, "the expression is too deeply nested") from None
    builder = _Builder(prepared)
    try:
        with _step_budget(MAX_BUILD_STEPS) as budget:
            result = builder.build(checked)
        if budget["exceeded"]:  # the abort was swallowed somewhere inside SymPy
            raise _OverBudget
        return result
    except _OverBudget:
        raise SpecSyntaxError(*builder.at, "the expression is too expensive for SymPy to build") from None
    except (RecursionError, MemoryError):
        raise SpecSyntaxError(*builder.at, "the expression is too deeply nested or too large") from None
