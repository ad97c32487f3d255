"""The syntax half of the whitelist parser: text and AST checks, before any SymPy code runs.

1. The raw text is screened (:func:`screen`): length, printable ASCII only, bracket depth, not empty.
2. ``ast.parse(text, mode="eval")`` builds a syntax tree (never compiled nor run).
3. :class:`Checker` accepts only numbers, names, ``+ - * / **``, unary ``+``/``-`` and calls of
   whitelisted functions, and emits a tree of plain tuples for :mod:`npdegen.spec.parse` to build.

Every refusal raises :class:`SpecSyntaxError` naming a 1-based ``line:column`` and the reason.
"""
from __future__ import annotations

import ast
import math
from fractions import Fraction

import sympy
from sympy.codegen.cfunctions import log1p

from .names import validate_identifier

__all__ = ["SpecSyntaxError", "Checker", "screen", "FUNCTIONS", "CONSTANTS", "NOT_COUNTED",
           "MAX_INT_DIGITS", "MAX_EXPONENT", "MAX_DERIVATIVE_ORDER", "MAX_MINMAX_ARGS", "line_col"]

MAX_INT_DIGITS = 30           # longest integer literal, in decimal digits
MAX_EXPONENT = 64             # largest |numerator| of an exponent written by the user
MAX_DERIVATIVE_ORDER = 8
MAX_MINMAX_ARGS = 8           # SymPy's Max/Min cost grows quadratically with the arguments

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
    **dict.fromkeys((ast.Yield, ast.YieldFrom), "yield is"),
    ast.MatMult: "matrix multiplication (@) is", ast.FloorDiv: "floor division (//) is",
    ast.Mod: "the modulo operator (%) is",
    **dict.fromkeys((ast.LShift, ast.RShift, ast.BitOr, ast.BitAnd), "bitwise operators are"),
    ast.BitXor: "bitwise operators are (use ** for powers)", ast.Not: "'not' is",
    ast.Invert: "bitwise inversion (~) is", bool: "booleans are", str: "strings are",
    bytes: "bytes are", complex: "complex numbers are", type(None): "None is",
    type(Ellipsis): "Ellipsis (...) is",
}
NOT_COUNTED = (ast.expr_context, ast.operator, ast.unaryop, ast.cmpop, ast.boolop)


class SpecSyntaxError(ValueError):
    """User text refused by :func:`parse_expression`; ``line`` and ``column`` are 1-based."""

    def __init__(self, line: int, column: int, reason: str):
        self.line, self.column, self.reason = line, column, reason
        super().__init__(f"position {line}:{column}: {reason}")


def line_col(text: str, index: int) -> tuple[int, int]:
    """1-based line and column of ``text[index]``."""
    head = text[:index].replace("\r\n", "\n").replace("\r", "\n")
    return head.count("\n") + 1, len(head) - head.rfind("\n")


def _show(name: str) -> str:
    return repr(name) if len(name) <= 40 else repr(name[:32]) + "..."


def _refused(kind) -> str:
    return f"{_REFUSED.get(kind, kind.__name__ + ' is')} not allowed"


class Checker:
    """Phase 1: validate the Python AST and turn it into a tree of ``(kind, pos, ...)`` tuples.

    :meth:`check` returns the node and whether its subtree is purely numeric (no symbol,
    field or derivative).  Nothing from SymPy is called here.
    """

    def __init__(self, fields: dict, origin: tuple[int, int]):
        self.fields, self.origin = fields, origin
        self.coords = {c for _, coords in fields.values() for c in coords}

    def map(self, line: int, col: int) -> tuple[int, int]:
        """Position in the parsed (left-stripped) text -> position in the user's text."""
        if line == 1:
            return self.origin[0], self.origin[1] + col - 1
        return self.origin[0] + line - 1, col

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
        for key, (_, coords) in self.fields.items():  # z_q, z_qq, ...: derivatives of field z
            suffix = name[len(key) + 1:]
            if suffix and name.startswith(key + "_"):
                for c in coords:
                    order, rest = divmod(len(suffix), len(c))
                    if rest == 0 and suffix == c * order:
                        return ("deriv", pos, key, c, self.order(node, order)), False
                parts = _split_coordinates(suffix, tuple(coords))
                if parts is not None:      # z_xy, z_xxy: a mixed derivative, one name per order
                    counts = tuple((c, parts.count(c)) for c in dict.fromkeys(parts))
                    self.order(node, len(parts))
                    return ("mderiv", pos, key, counts), False
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
        if op == "pow" and literal and abs(exponent.value) > MAX_EXPONENT:
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
            allowed = ", ".join(["diff", *sorted(FUNCTIONS)])
            self.fail(node, f"calling {shown} is not allowed (allowed: {allowed})")
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
        numeric = all(n for _, n in checked)
        return ("call", self.pos(node), func.id, tuple(a for a, _ in checked)), numeric

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


def screen(text: str, max_length: int, max_depth: int) -> None:
    """Refuse over-long text, characters other than printable ASCII, and deep brackets."""
    if len(text) > max_length:
        raise SpecSyntaxError(*line_col(text, max_length),
                              f"the expression is longer than {max_length} characters")
    depth = 0
    for index, char in enumerate(text):
        if not (" " <= char <= "~" or char in "\t\n\r"):
            what = "null bytes are" if char == "\0" else f"the character {char!r} is"
            raise SpecSyntaxError(*line_col(text, index), f"{what} not allowed (printable ASCII only)")
        depth += (char in "([{") - (char in ")]}")
        if depth > max_depth:
            raise SpecSyntaxError(*line_col(text, index),
                                  f"brackets are nested deeper than {max_depth} levels")


def _split_coordinates(suffix: str, coords: tuple) -> list | None:
    """``suffix`` as a sequence of coordinate names (``"xxy"`` → ``[x, x, y]``) if exactly one
    reading exists, else ``None`` (unknown or ambiguous names stay plain symbols)."""
    readings: list[list] = []

    def walk(rest: str, parts: list):
        if len(readings) > 1 or len(parts) > MAX_DERIVATIVE_ORDER + 1:
            return
        if not rest:
            readings.append(parts)
            return
        for c in coords:
            if rest.startswith(c):
                walk(rest[len(c):], parts + [c])
    walk(suffix, [])
    return readings[0] if len(readings) == 1 else None
