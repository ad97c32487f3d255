"""Safe whitelist parser: user text -> SymPy expression, never via eval/exec/sympify/parse_expr.

1. the raw text is screened: length, printable ASCII only, bracket depth, not empty;
2. ``ast.parse(text, mode="eval")`` builds a syntax tree (never compiled nor run) whose node
   count and depth are bounded;
3. :class:`_Checker` accepts only numbers, names, ``+ - * / **``, unary ``+``/``-`` and calls
   of whitelisted functions, and emits a tree of plain tuples: no SymPy code runs while
   hostile syntax is being refused;
4. :class:`_Builder` builds SymPy objects bottom-up and refuses anything that would make SymPy
   compute a huge number, or whose value is infinite, undefined or complex; every constant
   must fit a double, else SymPy's evalf would need astronomic precision (``sin(exp(exp(64)))``).  SymPy's
   assumption queries can still explode on small inputs (``abs(tanh((x+y)**64))`` expands a
   64th power into real and imaginary parts), so this phase runs under a budget of
   MAX_BUILD_STEPS Python calls and lines, counted with ``sys.settrace``.

Every refusal raises :class:`SpecSyntaxError` naming a 1-based ``line:column`` and the reason.
"""
from __future__ import annotations

import ast
import cmath
import contextlib
import math
import sys
import warnings
from collections.abc import Mapping
from fractions import Fraction

import sympy
from sympy.codegen.cfunctions import log1p
from sympy.core.function import AppliedUndef

from .names import validate_identifier

__all__ = ["SpecSyntaxError", "parse_expression", "FUNCTIONS", "CONSTANTS"]

MAX_INT_DIGITS = 30         # longest integer literal, in decimal digits
MAX_EXPONENT = 64           # largest |numerator| of a numeric exponent
MAX_DERIVATIVE_ORDER = 8
MAX_MINMAX_ARGS = 8         # SymPy's Max/Min cost grows quadratically with the arguments
MAX_NUMBER_BITS = 1100      # numerators/denominators built along the way (1e308 fits)
MAX_BUILD_STEPS = 2_000_000  # traced Python calls + lines SymPy may run while building (~2 s)

#: Whitelisted callees: name -> (SymPy constructor, fewest arguments, most arguments).
FUNCTIONS = {name: (function, 1, 1) for name, function in {
    "exp": sympy.exp, "log": sympy.log, "sqrt": sympy.sqrt, "sin": sympy.sin, "cos": sympy.cos,
    "tan": sympy.tan, "sinh": sympy.sinh, "cosh": sympy.cosh, "tanh": sympy.tanh,
    "atan": sympy.atan, "asinh": sympy.asinh, "abs": sympy.Abs, "Abs": sympy.Abs,
    "Heaviside": sympy.Heaviside, "sign": sympy.sign, "log1p": log1p}.items()}
FUNCTIONS.update({name: (function, 2, MAX_MINMAX_ARGS) for name, function in {
    "max": sympy.Max, "Max": sympy.Max, "min": sympy.Min, "Min": sympy.Min}.items()})
#: Whitelisted constants.
CONSTANTS = {"pi": sympy.pi, "E": sympy.E}

_BINOPS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div", ast.Pow: "pow"}
_REFUSED = {  # node, operator or literal type -> what the message calls it
    ast.Attribute: "attribute access is", ast.Subscript: "subscripting is", ast.Slice: "slicing is",
    ast.Lambda: "lambda is", ast.GeneratorExp: "generator expressions are",
    **dict.fromkeys((ast.ListComp, ast.SetComp, ast.DictComp), "comprehensions are"),
    **dict.fromkeys((ast.JoinedStr, ast.FormattedValue), "f-strings are"),
    ast.NamedExpr: "assignment expressions (:=) are", ast.Compare: "comparisons are",
    ast.BoolOp: "boolean operators are", ast.IfExp: "conditional expressions are",
    ast.Starred: "argument unpacking (*) is", ast.Tuple: "tuples are", ast.List: "lists are",
    ast.Dict: "dicts are", ast.Set: "sets are", ast.Await: "await is",
    **dict.fromkeys((ast.Yield, ast.YieldFrom), "yield is"), ast.MatMult: "matrix multiplication (@) is",
    ast.FloorDiv: "floor division (//) is", ast.Mod: "the modulo operator (%) is",
    **dict.fromkeys((ast.LShift, ast.RShift, ast.BitOr, ast.BitAnd), "bitwise operators are"),
    ast.BitXor: "bitwise operators are (use ** for powers)", ast.Not: "'not' is",
    ast.Invert: "bitwise inversion (~) is", bool: "booleans are", str: "strings are",
    bytes: "bytes are", complex: "complex numbers are", type(None): "None is",
    type(Ellipsis): "Ellipsis (...) is",
}
_OPERATORS = {"add": sympy.Add, "mul": sympy.Mul, "pow": sympy.Pow,
              "sub": lambda a, b: sympy.Add(a, sympy.Mul(sympy.S.NegativeOne, b)),
              "div": lambda a, b: sympy.Mul(a, sympy.Pow(b, sympy.S.NegativeOne))}
_APPROXIMATE = {  # double-precision stand-ins, used only to bound the size of constants
    sympy.exp: cmath.exp, sympy.log: cmath.log, sympy.sin: cmath.sin, sympy.cos: cmath.cos,
    sympy.tan: cmath.tan, sympy.sinh: cmath.sinh, sympy.cosh: cmath.cosh, sympy.tanh: cmath.tanh,
    sympy.atan: cmath.atan, sympy.asinh: cmath.asinh, log1p: lambda v: cmath.log(1 + v), sympy.Abs: abs,
    sympy.sign: lambda v: v / abs(v) if v else 0j, sympy.Heaviside: lambda v, h: (v.real > 0) + h * (v.real == 0),
    sympy.Max: lambda *vs: max(vs, key=lambda v: v.real), sympy.Min: lambda *vs: min(vs, key=lambda v: v.real),
}
_NOT_COUNTED = (ast.expr_context, ast.operator, ast.unaryop, ast.cmpop, ast.boolop)
_UNDEFINED = (sympy.S.ComplexInfinity, sympy.S.Infinity, sympy.S.NegativeInfinity, sympy.S.NaN)


class SpecSyntaxError(ValueError):
    """User text refused by :func:`parse_expression`; ``line`` and ``column`` are 1-based."""

    def __init__(self, line: int, column: int, reason: str):
        self.line, self.column, self.reason = line, column, reason
        super().__init__(f"position {line}:{column}: {reason}")


class _OverBudget(BaseException):
    """Raised inside SymPy when the build budget is spent (not an Exception: nothing swallows it)."""


@contextlib.contextmanager
def _step_budget(steps: int):
    """Count the Python calls and lines run in this thread; past *steps*, raise
    :class:`_OverBudget` on the next call or line (never while a generator is being closed,
    where it would be swallowed) and mark the yielded state as exceeded.  An active tracer
    (coverage, debugger) keeps receiving its events.  An aborted query may leave SymPy's
    per-object assumption cache at "unknown", which is sound."""
    previous, left, state = sys.gettrace(), steps, {"exceeded": False}

    def wrap(inner):
        def local(frame, event, arg):
            nonlocal left
            left -= 1
            if left < 0 and event in ("call", "line"):
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


def _line_col(text: str, index: int) -> tuple[int, int]:
    """1-based line and column of ``text[index]``."""
    head = text[:index].replace("\r\n", "\n").replace("\r", "\n")
    return head.count("\n") + 1, len(head) - head.rfind("\n")


def _show(name: str) -> str:
    return repr(name) if len(name) <= 40 else repr(name[:32]) + "..."


def _refused(kind) -> str:
    return f"{_REFUSED.get(kind, kind.__name__ + ' is')} not allowed"


class _Checker:
    """Phase 1: validate the Python AST and turn it into a tree of ``(kind, pos, ...)`` tuples.

    :meth:`check` returns the node and whether its subtree is purely numeric (no symbol,
    field or derivative).  Nothing from SymPy is called here.
    """

    def __init__(self, fields: dict, origin: tuple[int, int]):
        self.fields, self.origin = fields, origin
        self.coords = {c for _, coords in fields.values() for c in coords}

    def map(self, line: int, col: int) -> tuple[int, int]:
        """Position in the parsed (left-stripped) text -> position in the user's text."""
        return (self.origin[0], self.origin[1] + col - 1) if line == 1 else (self.origin[0] + line - 1, col)

    def pos(self, node: ast.AST) -> tuple[int, int]:
        return self.map(getattr(node, "lineno", 1), getattr(node, "col_offset", 0) + 1)

    def fail(self, node: ast.AST, reason: str):
        raise SpecSyntaxError(*self.pos(node), reason)

    def check(self, node: ast.AST):
        kind = type(node)
        if kind is ast.Expression:
            return self.check(node.body)
        if kind is ast.Constant:
            return self.constant(node), True
        if kind is ast.Name:
            return self.name(node)
        if kind is ast.UnaryOp:
            if type(node.op) not in (ast.USub, ast.UAdd):
                self.fail(node, _refused(type(node.op)))
            operand, numeric = self.check(node.operand)
            return (operand if type(node.op) is ast.UAdd else ("neg", self.pos(node), operand)), numeric
        if kind is ast.BinOp:
            return self.binop(node)
        if kind is ast.Call:
            return self.call(node)
        self.fail(node, _refused(kind))

    def constant(self, node: ast.Constant):
        value = node.value
        if type(value) is int:
            if abs(value) >= 10**MAX_INT_DIGITS:
                self.fail(node, f"integer literals with more than {MAX_INT_DIGITS} digits are not allowed")
            return ("num", self.pos(node), value)
        if type(value) is float:
            if not math.isfinite(value):
                self.fail(node, "infinite or NaN numbers are not allowed")
            return ("num", self.pos(node), Fraction(repr(value)))  # exact: 0.1 -> 1/10
        self.fail(node, _refused(type(value)))

    def name(self, node: ast.Name):
        name, pos = node.id, self.pos(node)
        if type(node.ctx) is not ast.Load:
            self.fail(node, "assignment is not allowed")
        if name in self.fields:
            return ("field", pos, name), False
        for key, (_, coords) in self.fields.items():
            suffix = name[len(key) + 1:]
            if suffix and name.startswith(key + "_"):
                for c in coords:
                    order, rest = divmod(len(suffix), len(c))
                    if rest == 0 and suffix == c * order:
                        return ("deriv", pos, key, c, self.order(node, order)), False
        if name in self.coords:
            self.fail(node, f"coordinate {_show(name)} may only appear inside diff(...)")
        if name in FUNCTIONS or name == "diff":
            self.fail(node, f"function {_show(name)} may only be called, as in {name}(...)")
        if name in CONSTANTS:
            return ("const", pos, name), True
        try:
            validate_identifier(name, "symbol name")
        except ValueError as err:
            self.fail(node, str(err))
        return ("sym", pos, name), False

    def order(self, node: ast.AST, k: int) -> int:
        if k > MAX_DERIVATIVE_ORDER:
            self.fail(node, f"derivative order {k} exceeds {MAX_DERIVATIVE_ORDER}")
        return k

    def binop(self, node: ast.BinOp):
        op = _BINOPS.get(type(node.op))
        if op is None:
            self.fail(node, _refused(type(node.op)))
        exponent = node.right
        while type(exponent) is ast.UnaryOp and type(exponent.op) in (ast.USub, ast.UAdd):
            exponent = exponent.operand
        literal = type(exponent) is ast.Constant and type(exponent.value) in (int, float)
        if op == "pow" and literal and abs(exponent.value) > MAX_EXPONENT:  # judged before anything is built
            self.fail(node, f"exponents larger than {MAX_EXPONENT} in magnitude are not allowed")
        left, left_numeric = self.check(node.left)
        right, right_numeric = self.check(node.right)
        if op == "pow" and left_numeric and right_numeric and not literal:
            self.fail(node, "a power of two constant expressions needs a plain numeric exponent "
                            "(exponents must be small literals, or the power must involve a symbol)")
        return (op, self.pos(node), left, right), left_numeric and right_numeric

    def call(self, node: ast.Call):
        func = node.func
        if type(func) is not ast.Name or (func.id not in FUNCTIONS and func.id != "diff"):
            shown = _show(func.id) if type(func) is ast.Name else "this expression"
            self.fail(node, f"calling {shown} is not allowed (allowed: diff, {', '.join(sorted(FUNCTIONS))})")
        if node.keywords:
            self.fail(node, "keyword arguments are not allowed")
        for arg in node.args:
            if type(arg) is ast.Starred:
                self.fail(arg, _refused(ast.Starred))
        if func.id == "diff":
            return self.diff(node), False
        _, low, high = FUNCTIONS[func.id]
        if not low <= len(node.args) <= high:
            want = f"{low} argument" if low == high == 1 else f"{low} to {high} arguments"
            self.fail(node, f"{func.id}() takes {want}, got {len(node.args)}")
        checked = [self.check(arg) for arg in node.args]
        return ("call", self.pos(node), func.id, tuple(a for a, _ in checked)), all(n for _, n in checked)

    def diff(self, node: ast.Call):
        args = node.args
        if len(args) not in (2, 3):
            self.fail(node, "diff() takes 2 or 3 arguments: diff(field, coordinate[, order])")
        field, coord = args[0], args[1]
        if type(field) is not ast.Name or field.id not in self.fields:
            self.fail(field, "the first argument of diff() must be a field name")
        if type(coord) is not ast.Name or coord.id not in self.fields[field.id][1]:
            self.fail(coord, f"the second argument of diff() must be a coordinate of field {field.id!r}")
        order = 1
        if len(args) == 3:
            k = args[2]
            if type(k) is not ast.Constant or type(k.value) is not int or k.value < 1:
                self.fail(k, "the derivative order must be a positive integer literal")
            order = self.order(k, k.value)
        return ("deriv", self.pos(node), field.id, coord.id, order)


class _Builder:
    """Phase 2: build SymPy objects from the checked tuple tree, bottom-up.

    Each built value is scanned (memoised, so linear overall): no number may exceed
    MAX_NUMBER_BITS, nothing may be infinite, undefined or complex.  SymPy rewrites
    ``exp(c*log(b))`` into ``b**c`` (even inside sums) and ``(2*x)**c`` into ``2**c * x**c``,
    so a log of a constant, or of a product with a constant factor, may not carry a
    coefficient above MAX_EXPONENT.
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
        except (ArithmeticError, TypeError, ValueError, NotImplementedError) as err:  # e.g. Max of non-real values
            raise SpecSyntaxError(*pos, f"SymPy cannot build this value ({type(err).__name__}: {str(err)[:80]})") from None
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
            return sympy.Integer(value) if type(value) is int else sympy.Rational(value.numerator, value.denominator)
        if kind == "deriv":
            function, coords = self.fields[rest[0]]
            return sympy.Derivative(function, (coords[rest[1]], rest[2]))
        return {"sym": sympy.Symbol, "const": CONSTANTS.get, "field": lambda k: self.fields[k][0]}[kind](rest[0])

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
        """Refuse unsafe values in *expr*; return whether it contains a log of a constant anywhere."""
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
        if expr.is_Mul:
            coefficient, rest = expr.as_coeff_Mul()
            if coefficient.is_Rational and abs(coefficient.p) > MAX_EXPONENT and (
                    found or any(_log_with_constant_factor(f) for f in sympy.Mul.make_args(rest))):
                raise SpecSyntaxError(*pos, "a logarithm of a constant, or of a product with a constant factor, "
                                            f"may not be multiplied by a number larger than {MAX_EXPONENT} "
                                            "in magnitude (SymPy turns exp(c*log(b)) into b**c)")
        if isinstance(expr, sympy.Expr) and not expr.free_symbols:
            try:
                self.approximate(expr)
            except (ArithmeticError, ValueError, TypeError, KeyError):
                raise SpecSyntaxError(*pos, "a constant in the expression is too large (beyond double "
                                            "precision range) or undefined") from None
        self.scanned[expr] = found
        return found

    def approximate(self, expr) -> complex:
        """Value of a constant in double precision, computed without SymPy's evalf."""
        value = self.values.get(expr)
        if value is None:
            if expr.is_Rational:
                value = expr.p / expr.q  # exact rounding; OverflowError beyond the double range
            elif expr is sympy.pi or expr is sympy.E:
                value = math.pi if expr is sympy.pi else math.e
            else:
                args = [self.approximate(arg) for arg in expr.args]
                value = (sum(args) if expr.is_Add else math.prod(args) if expr.is_Mul
                         else args[0] ** args[1] if expr.is_Pow else _APPROXIMATE[expr.func](*args))
            value = complex(value)
            if not cmath.isfinite(value):
                raise OverflowError
            self.values[expr] = value
        return value


def _log_with_constant_factor(factor) -> bool:
    """``log(b)`` where ``b`` is constant or has a constant factor: ``b**c`` would compute ``2**c``."""
    return isinstance(factor, sympy.log) and any(
        not f.free_symbols and f not in (sympy.S.One, sympy.S.NegativeOne) for f in sympy.Mul.make_args(factor.args[0]))


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
    clash = {c for _, cs in prepared.values() for c in cs} & (set(prepared) | set(FUNCTIONS) | set(CONSTANTS))
    if clash:
        raise ValueError(f"coordinate names clash with field or function names: {sorted(clash)}")
    return prepared


def _screen(text: str, max_length: int, max_depth: int) -> None:
    """Refuse over-long text, characters other than printable ASCII, and deep brackets."""
    if len(text) > max_length:
        raise SpecSyntaxError(*_line_col(text, max_length), f"the expression is longer than {max_length} characters")
    depth = 0
    for index, char in enumerate(text):
        if not (" " <= char <= "~" or char in "\t\n\r"):
            what = "null bytes are" if char == "\0" else f"the character {char!r} is"
            raise SpecSyntaxError(*_line_col(text, index), f"{what} not allowed (printable ASCII only)")
        depth += (char in "([{") - (char in ")]}")
        if depth > max_depth:
            raise SpecSyntaxError(*_line_col(text, index), f"brackets are nested deeper than {max_depth} levels")


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
    _screen(text, max_length, max_depth)
    body = text.lstrip(" \t\r\n")  # eval mode refuses leading indentation
    if not body.strip():
        raise SpecSyntaxError(1, 1, "the expression is empty")
    checker = _Checker(prepared, _line_col(text, len(text) - len(body)))
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
    while stack:  # iterative: bounds the recursion of the phases below
        node, depth = stack.pop()
        count += 1
        if count > max_nodes:
            checker.fail(node, f"the expression has more than {max_nodes} syntax nodes")
        if depth > max_depth:
            checker.fail(node, f"the expression is nested deeper than {max_depth} levels")
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node) if not isinstance(child, _NOT_COUNTED))
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
