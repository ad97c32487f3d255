"""Safe whitelist parser: user text -> SymPy expression.

The text (from a TOML spec file or the string API) is never given to
``eval``, ``exec``, ``sympify`` or ``parse_expr``.  Instead:

1. the raw text is screened (type, length, printable ASCII only, not empty);
2. ``ast.parse(text, mode="eval")`` builds a Python syntax tree, which is
   never compiled or executed, and its size and depth are bounded;
3. a checker walks the tree and accepts only numbers, names, ``+ - * / **``,
   unary ``+``/``-`` and calls of whitelisted functions, producing a small
   intermediate tree of plain tuples; nothing from SymPy runs in this phase;
4. a builder turns that tuple tree into SymPy objects bottom-up, refusing
   anything that would make SymPy compute a huge number or a value that is
   infinite, undefined or complex.

Every refusal raises :class:`SpecSyntaxError` with a ``line:column``
position (1-based) and a reason.
"""

from __future__ import annotations

import ast
import math
import warnings
from collections.abc import Mapping
from fractions import Fraction

import sympy
from sympy.codegen.cfunctions import log1p
from sympy.core.function import AppliedUndef

from .names import validate_identifier

__all__ = ["SpecSyntaxError", "parse_expression", "FUNCTIONS", "CONSTANTS"]

MAX_INT_DIGITS = 30  # longest integer literal, in decimal digits
MAX_EXPONENT = 64  # largest |numerator| of a numeric exponent
MAX_DERIVATIVE_ORDER = 8
MAX_MINMAX_ARGS = 8  # SymPy's Max/Min cost grows quadratically
MAX_NUMBER_BITS = 1100  # numerators/denominators built along the way (1e308 fits)

#: Callable names: name -> (SymPy constructor, fewest args, most args).
FUNCTIONS = {
    "exp": (sympy.exp, 1, 1), "log": (sympy.log, 1, 1), "sqrt": (sympy.sqrt, 1, 1),
    "sin": (sympy.sin, 1, 1), "cos": (sympy.cos, 1, 1), "tan": (sympy.tan, 1, 1),
    "sinh": (sympy.sinh, 1, 1), "cosh": (sympy.cosh, 1, 1), "tanh": (sympy.tanh, 1, 1),
    "atan": (sympy.atan, 1, 1), "asinh": (sympy.asinh, 1, 1),
    "abs": (sympy.Abs, 1, 1), "Abs": (sympy.Abs, 1, 1),
    "max": (sympy.Max, 2, MAX_MINMAX_ARGS), "Max": (sympy.Max, 2, MAX_MINMAX_ARGS),
    "min": (sympy.Min, 2, MAX_MINMAX_ARGS), "Min": (sympy.Min, 2, MAX_MINMAX_ARGS),
    "Heaviside": (sympy.Heaviside, 1, 1), "sign": (sympy.sign, 1, 1), "log1p": (log1p, 1, 1),
}
#: Constant names.
CONSTANTS = {"pi": sympy.pi, "E": sympy.E}

_BINOPS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div", ast.Pow: "pow"}
_REFUSED_OPS = {
    ast.MatMult: "matrix multiplication (@)", ast.FloorDiv: "floor division (//)",
    ast.Mod: "the modulo operator (%)", ast.LShift: "bit shifts", ast.RShift: "bit shifts",
    ast.BitOr: "bitwise operators", ast.BitXor: "bitwise operators (use ** for powers)",
    ast.BitAnd: "bitwise operators", ast.Not: "'not'", ast.Invert: "bitwise inversion (~)",
}
_REFUSED_NODES = {
    ast.Attribute: "attribute access", ast.Subscript: "subscripting", ast.Slice: "slicing",
    ast.Lambda: "lambda", ast.ListComp: "comprehensions", ast.SetComp: "comprehensions",
    ast.DictComp: "comprehensions", ast.GeneratorExp: "generator expressions",
    ast.JoinedStr: "f-strings", ast.FormattedValue: "f-strings",
    ast.NamedExpr: "assignment expressions (:=)", ast.Compare: "comparisons",
    ast.BoolOp: "boolean operators", ast.IfExp: "conditional expressions",
    ast.Starred: "argument unpacking (*)", ast.Tuple: "tuples", ast.List: "lists",
    ast.Dict: "dicts", ast.Set: "sets", ast.Await: "await", ast.Yield: "yield",
    ast.YieldFrom: "yield",
}
_NOT_COUNTED = (ast.expr_context, ast.operator, ast.unaryop, ast.cmpop, ast.boolop)
_UNDEFINED = (sympy.S.ComplexInfinity, sympy.S.Infinity, sympy.S.NegativeInfinity, sympy.S.NaN)


class SpecSyntaxError(ValueError):
    """User text refused by :func:`parse_expression`; ``line``/``column`` are 1-based."""

    def __init__(self, line: int, column: int, reason: str):
        self.line, self.column, self.reason = line, column, reason
        super().__init__(f"position {line}:{column}: {reason}")


def _line_col(text: str, index: int) -> tuple[int, int]:
    """1-based line and column of ``text[index]``."""
    head = text[:index].replace("\r\n", "\n").replace("\r", "\n")
    return head.count("\n") + 1, len(head) - head.rfind("\n")


def _show(name: str) -> str:
    return repr(name) if len(name) <= 40 else repr(name[:32]) + "..."


def _strip_unary(node: ast.AST) -> ast.AST:
    while type(node) is ast.UnaryOp and type(node.op) in (ast.USub, ast.UAdd):
        node = node.operand
    return node


class _Checker:
    """Phase 1: validate the Python AST and turn it into a tuple tree.

    Node shapes: ``(kind, pos, ...)`` with kind one of num, sym, const, field,
    deriv, neg, add, sub, mul, div, pow, call.  ``check`` returns the node and
    whether its subtree is purely numeric (no symbol, field or derivative).
    """

    def __init__(self, fields: dict, origin: tuple[int, int]):
        self.fields = fields
        self.coords = {c for _, cs in fields.values() for c in cs}
        self.origin = origin

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
                self.fail(node, f"{_REFUSED_OPS.get(type(node.op), 'this operator')} is not allowed")
            operand, numeric = self.check(node.operand)
            return (operand if type(node.op) is ast.UAdd else ("neg", self.pos(node), operand)), numeric
        if kind is ast.BinOp:
            return self.binop(node)
        if kind is ast.Call:
            return self.call(node)
        self.fail(node, f"{_REFUSED_NODES.get(kind, kind.__name__ + ' syntax')} is not allowed")

    def constant(self, node: ast.Constant):
        value = node.value
        if type(value) is int:
            if abs(value) >= 10**MAX_INT_DIGITS:
                self.fail(node, f"integer literal with more than {MAX_INT_DIGITS} digits is not allowed")
            return ("num", self.pos(node), value)
        if type(value) is float:
            if not math.isfinite(value):
                self.fail(node, "infinite or NaN number is not allowed")
            return ("num", self.pos(node), Fraction(repr(value)))
        what = {bool: "booleans", str: "strings", bytes: "bytes", complex: "complex numbers"}
        self.fail(node, f"{what.get(type(value), repr(value))} is not allowed")

    def name(self, node: ast.Name):
        name, pos = node.id, self.pos(node)
        if type(node.ctx) is not ast.Load:
            self.fail(node, "assignment is not allowed")
        if name in self.fields:
            return ("field", pos, name), False
        for key, (_, coords) in self.fields.items():
            suffix = name[len(key) + 1:]
            if name.startswith(key + "_") and suffix:
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
            self.fail(node, f"{_REFUSED_OPS.get(type(node.op), 'this operator')} is not allowed")
        if op == "pow":  # judge the exponent before anything is built
            exponent = _strip_unary(node.right)
            if type(exponent) is ast.Constant and type(exponent.value) in (int, float):
                if abs(exponent.value) > MAX_EXPONENT:
                    self.fail(node, f"exponent larger than {MAX_EXPONENT} in magnitude is not allowed")
        left, left_numeric = self.check(node.left)
        right, right_numeric = self.check(node.right)
        if op == "pow" and left_numeric and right_numeric and type(exponent) is not ast.Constant:
            self.fail(node, "a power of two constant expressions needs a plain numeric exponent "
                            "(exponents must be small literals, or the power must involve a symbol)")
        return (op, self.pos(node), left, right), left_numeric and right_numeric

    def call(self, node: ast.Call):
        func = node.func
        if type(func) is not ast.Name or (func.id not in FUNCTIONS and func.id != "diff"):
            shown = _show(func.id) if type(func) is ast.Name else "this expression"
            self.fail(node, f"calling {shown} is not allowed (allowed: diff, {', '.join(sorted(FUNCTIONS))})")
        name = func.id
        if node.keywords:
            self.fail(node, "keyword arguments are not allowed")
        for arg in node.args:
            if type(arg) is ast.Starred:
                self.fail(arg, "argument unpacking (*) is not allowed")
        if name == "diff":
            return self.diff(node), False
        _, low, high = FUNCTIONS[name]
        if not low <= len(node.args) <= high:
            want = str(low) if low == high else f"{low} to {high}"
            self.fail(node, f"{name}() takes {want} arguments, got {len(node.args)}")
        checked = [self.check(arg) for arg in node.args]
        return ("call", self.pos(node), name, tuple(a for a, _ in checked)), all(n for _, n in checked)

    def diff(self, node: ast.Call):
        args = node.args
        if len(args) not in (2, 3):
            self.fail(node, "diff() takes 2 or 3 arguments: diff(field, coordinate[, order])")
        field, coord = args[0], args[1]
        if type(field) is not ast.Name or field.id not in self.fields:
            self.fail(field, "first argument of diff() must be a field name")
        if type(coord) is not ast.Name or coord.id not in self.fields[field.id][1]:
            self.fail(coord, f"second argument of diff() must be a coordinate of field {field.id!r}")
        order = 1
        if len(args) == 3:
            k = args[2]
            if type(k) is not ast.Constant or type(k.value) is not int or k.value < 1:
                self.fail(k, "derivative order must be a positive integer literal")
            order = self.order(k, k.value)
        return ("deriv", self.pos(node), field.id, coord.id, order)


class _Builder:
    """Phase 2: build SymPy objects from the checked tuple tree, bottom-up.

    Every built value is scanned (memoised) so that no number grows beyond
    MAX_NUMBER_BITS and nothing infinite, undefined or complex slips
    through.  SymPy rewrites ``exp(c*log(2))`` into ``2**c``, so a logarithm
    of a constant may not carry a coefficient larger than MAX_EXPONENT.
    """

    def __init__(self, fields: dict):
        self.fields = fields
        self.scanned: dict = {}

    def build(self, node) -> sympy.Expr:
        kind, pos = node[0], node[1]
        if kind == "num":
            value = node[2]
            result = sympy.Integer(value) if type(value) is int else sympy.Rational(value.numerator, value.denominator)
        elif kind == "sym":
            result = sympy.Symbol(node[2])
        elif kind == "const":
            result = CONSTANTS[node[2]]
        elif kind == "field":
            result = self.fields[node[2]][0]
        elif kind == "deriv":
            function, coords = self.fields[node[2]]
            result = sympy.Derivative(function, (coords[node[3]], node[4]))
        elif kind == "neg":
            result = sympy.Mul(sympy.S.NegativeOne, self.build(node[2]))
        elif kind == "call":
            result = self.call(pos, node[2], [self.build(arg) for arg in node[3]])
        else:
            left, right = self.build(node[2]), self.build(node[3])
            if kind == "add":
                result = sympy.Add(left, right)
            elif kind == "sub":
                result = sympy.Add(left, sympy.Mul(sympy.S.NegativeOne, right))
            elif kind == "mul":
                result = sympy.Mul(left, right)
            elif kind == "div":
                result = sympy.Mul(left, sympy.Pow(right, sympy.S.NegativeOne))
            else:
                result = self.power(pos, left, right)
        self.scan(result, pos)
        return result

    def power(self, pos, base, exponent):
        if exponent.is_Rational:
            if abs(exponent.p) > MAX_EXPONENT:
                raise SpecSyntaxError(*pos, f"exponent {exponent} is larger than {MAX_EXPONENT} in magnitude")
        elif not exponent.free_symbols and not base.free_symbols:
            raise SpecSyntaxError(*pos, "a power of two constant expressions needs a rational exponent")
        return sympy.Pow(base, exponent)

    def call(self, pos, name, args):
        function = FUNCTIONS[name][0]
        if function in (sympy.Max, sympy.Min):
            count = sum(len(a.args) if isinstance(a, function) else 1 for a in args)
            if count > MAX_MINMAX_ARGS:
                raise SpecSyntaxError(*pos, f"{name}() would have more than {MAX_MINMAX_ARGS} arguments")
        return function(*args)

    def scan(self, expr, pos) -> bool:
        """Refuse unsafe values in *expr*; return whether it holds a numeric log."""
        known = self.scanned.get(expr)
        if known is not None:
            return known
        if expr.is_Rational:
            if max(abs(expr.p).bit_length(), expr.q.bit_length()) > MAX_NUMBER_BITS:
                raise SpecSyntaxError(*pos, f"number larger than {MAX_NUMBER_BITS} bits")
            found = False
        elif any(expr is u for u in _UNDEFINED):
            raise SpecSyntaxError(*pos, "value is infinite or undefined (e.g. division by zero)")
        elif expr is sympy.S.ImaginaryUnit:
            raise SpecSyntaxError(*pos, "value is complex (e.g. square root of a negative number)")
        else:
            found = False
            for arg in expr.args:
                found = self.scan(arg, pos) or found
            found = found or (isinstance(expr, sympy.log) and not expr.args[0].free_symbols)
            if found and expr.is_Mul:
                coefficient = expr.as_coeff_Mul()[0]
                if coefficient.is_Rational and abs(coefficient.p) > MAX_EXPONENT:
                    raise SpecSyntaxError(*pos, "the logarithm of a constant may not be multiplied by "
                                                f"a number larger than {MAX_EXPONENT} in magnitude")
        self.scanned[expr] = found
        return found


def _prepare_fields(fields) -> dict:
    """Validate *fields*; return name -> (applied function, {coord name: Symbol})."""
    if fields is None:
        return {}
    if not isinstance(fields, Mapping):
        raise TypeError("fields must be a mapping from names to applied functions such as z(q)")
    prepared = {}
    for key, function in fields.items():
        validate_identifier(key, "field name")
        if not isinstance(function, AppliedUndef) or not function.args or not all(
            isinstance(a, sympy.Symbol) for a in function.args
        ):
            raise TypeError(f"field {key!r} must be an applied function of symbols, such as z(q)")
        coords = {a.name: a for a in function.args}
        if len(coords) != len(function.args):
            raise ValueError(f"field {key!r} repeats a coordinate")
        prepared[key] = (function, coords)
    clash = {c for _, cs in prepared.values() for c in cs} & (set(prepared) | set(FUNCTIONS) | set(CONSTANTS))
    if clash:
        raise ValueError(f"coordinate names clash with field or function names: {sorted(clash)}")
    return prepared


def parse_expression(text: str, *, fields=None, max_length: int = 4000, max_nodes: int = 500,
                     max_depth: int = 40) -> sympy.Expr:
    """Parse user *text* into a SymPy expression without evaluating any code.

    *fields* maps a field name to an applied function such as ``z(q)``: in
    the text, ``z`` is that field, ``z_q``/``z_qq``/... and ``diff(z, q[, k])``
    its derivatives (order at most 8); ``q`` may only appear inside diff.
    Other names become plain ``Symbol``s after :func:`validate_identifier`,
    except the function names of :data:`FUNCTIONS` (callees only) and the
    constants ``pi`` and ``E``.  Refusals raise :class:`SpecSyntaxError`
    (a ``ValueError``); a non-``str`` *text* raises ``TypeError``.
    """
    if not isinstance(text, str):
        raise TypeError(f"expression must be a str, not {type(text).__name__}")
    prepared = _prepare_fields(fields)
    if len(text) > max_length:
        raise SpecSyntaxError(*_line_col(text, max_length), f"expression longer than {max_length} characters")
    for index, char in enumerate(text):
        if char == "\0":
            raise SpecSyntaxError(*_line_col(text, index), "null byte is not allowed")
        if not (" " <= char <= "~" or char in "\t\n\r"):
            raise SpecSyntaxError(*_line_col(text, index), f"character {char!r} is not allowed (printable ASCII only)")
    body = text.lstrip(" \t\r\n")
    if not body.strip():
        raise SpecSyntaxError(1, 1, "empty expression")
    checker = _Checker(prepared, _line_col(text, len(text) - len(body)))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(body, mode="eval")
    except SyntaxError as err:
        line, col = checker.map(err.lineno or 1, max(err.offset or 1, 1))
        raise SpecSyntaxError(line, col, f"invalid syntax: {err.msg}") from None
    except (RecursionError, MemoryError, OverflowError, ValueError):
        raise SpecSyntaxError(*checker.origin, "expression is too deeply nested or too large to parse") from None
    stack, count = [(tree, 0)], 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > max_nodes:
            checker.fail(node, f"expression has more than {max_nodes} syntax nodes")
        if depth > max_depth:
            checker.fail(node, f"expression is nested deeper than {max_depth} levels")
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node) if not isinstance(child, _NOT_COUNTED))
    try:
        checked, _ = checker.check(tree)
        return _Builder(prepared).build(checked)
    except RecursionError:
        raise SpecSyntaxError(*checker.origin, "expression is too deeply nested") from None
