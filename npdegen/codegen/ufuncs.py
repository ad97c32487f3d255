"""Print an element-wise SymPy expression as a sequence of in-place NumPy ufunc calls.

``numpy.tanh(Z)**2`` printed the usual way allocates a temporary array per operation. On the hot
path of a kernel every operation should instead write into a preallocated buffer
(``numpy.tanh(Z, out=t0); numpy.square(t0, out=t0)``). :func:`ufunc_program` walks the
expression tree (after :func:`sympy.cse`) and returns the calls as data, ``UfuncCall(func,
args, out)``; the templates render them. Scalars are printed by the NumPy printer.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp
from sympy.codegen.cfunctions import log1p

from .printing import NumpyKernelPrinter

__all__ = ["UfuncCall", "UfuncProgram", "ufunc_program"]

_UNARY = {sp.tanh: "tanh", sp.exp: "exp", sp.log: "log", log1p: "log1p", sp.sin: "sin", sp.cos: "cos",
          sp.tan: "tan", sp.sinh: "sinh", sp.cosh: "cosh", sp.atan: "arctan", sp.asinh: "arcsinh",
          sp.Abs: "absolute", sp.sign: "sign"}


@dataclass(frozen=True)
class UfuncCall:
    func: str          # numpy ufunc name
    args: tuple        # argument code: buffer names, the input name, or scalar literals
    out: str           # buffer name


@dataclass(frozen=True)
class UfuncProgram:
    calls: tuple
    result: str        # the name holding the result (the input itself for f(x) = x)
    buffers: int       # temporaries t0 … t{buffers-1} needed besides ``out``


class _Emitter:
    def __init__(self, arg: sp.Symbol, arg_name: str, out: str):
        self.arg, self.arg_name, self.out = arg, arg_name, out
        self.calls: list[UfuncCall] = []
        self.free: list[str] = []
        self.count = 0
        self.printer = NumpyKernelPrinter()
        self.names: dict[sp.Symbol, str] = {}

    def buffer(self, target: str | None) -> str:
        if target:
            return target
        if self.free:
            return self.free.pop()
        self.count += 1
        return f"t{self.count - 1}"

    def release(self, name: str):
        if name.startswith("t") and name[1:].isdigit() and name not in self.free \
                and name not in self.names.values():
            self.free.append(name)

    def scalar(self, expr) -> str:
        return self.printer.doprint(expr)

    def is_array(self, expr) -> bool:
        return expr.has(self.arg) or any(expr.has(s) for s in self.names)

    def emit(self, expr, target: str | None = None) -> str:
        """Code name of an array holding ``expr`` (written into ``target`` if given)."""
        if expr == self.arg:
            return self._copy(self.arg_name, target)
        if expr in self.names:
            return self._copy(self.names[expr], target)
        if isinstance(expr, sp.Add):
            return self._add(expr, target)
        if isinstance(expr, sp.Mul):
            op = "multiply"
            arrays = [a for a in expr.args if self.is_array(a)]
            scalars = [a for a in expr.args if not self.is_array(a)]
            if isinstance(expr, sp.Mul) and any(isinstance(a, sp.Pow) and a.exp == -1 for a in arrays) \
                    and len(arrays) == 2:
                num, den = (arrays if arrays[1].is_Pow and arrays[1].exp == -1 else arrays[::-1])
                if den.is_Pow and den.exp == -1 and not (num.is_Pow and num.exp == -1):
                    return self._binary("divide", num, den.base, scalars, op, target)
            acc = self.emit(arrays[0])
            for other in arrays[1:]:
                name = self.emit(other)
                out = self._into(acc, target, final=False)
                self.calls.append(UfuncCall(op, (acc, name), out))
                self.release(name)
                acc = out
            if scalars:
                out = self._into(acc, target, final=True)
                self.calls.append(UfuncCall(op, (acc, self.scalar(expr.func(*scalars))), out))
                acc = out
            return self._copy(acc, target)
        if isinstance(expr, sp.Pow):
            base, exp = expr.args
            if not self.is_array(exp):
                special = {2: "square", -1: "reciprocal", sp.Rational(1, 2): "sqrt"}
                if exp in special:
                    return self._unary(special[exp], base, target)
                b = self.emit(base)
                out = self._into(b, target, final=True)
                self.calls.append(UfuncCall("power", (b, self.scalar(exp)), out))
                return out
            return self._binary("power", base, exp, [], None, target)
        if isinstance(expr, (sp.Max, sp.Min)):
            func = "maximum" if isinstance(expr, sp.Max) else "minimum"
            args = sorted(expr.args, key=sp.default_sort_key)
            arrays = [a for a in args if self.is_array(a)]
            scalars = [a for a in args if not self.is_array(a)]
            acc = self.emit(arrays[0])
            for other in [*arrays[1:], *scalars]:
                name = self.emit(other) if self.is_array(other) else self.scalar(other)
                out = self._into(acc, target, final=other is ([*arrays[1:], *scalars][-1]))
                self.calls.append(UfuncCall(func, (acc, name), out))
                self.release(name)
                acc = out
            return self._copy(acc, target)
        if isinstance(expr, sp.Heaviside):
            h0 = expr.args[1] if len(expr.args) > 1 else sp.Rational(1, 2)
            a = self.emit(expr.args[0])
            out = self._into(a, target, final=True)
            self.calls.append(UfuncCall("heaviside", (a, self.scalar(h0)), out))
            return out
        if expr.func in _UNARY and len(expr.args) == 1:
            return self._unary(_UNARY[expr.func], expr.args[0], target)
        raise NotImplementedError(f"no in-place ufunc form for {expr.func} in {expr}")

    def _add(self, expr, target):
        """a + b − c − d + k as add/subtract calls (no multiplications by −1)."""
        arrays = [a for a in expr.args if self.is_array(a)]
        scalar = sp.Add(*(a for a in expr.args if not self.is_array(a)))
        plus = [a for a in arrays if not a.could_extract_minus_sign()]
        minus = [-a for a in arrays if a.could_extract_minus_sign()]
        steps = [("add", a) for a in plus[1:]] + [("subtract", a) for a in minus[1 if not plus else 0:]]
        if plus:
            acc = self.emit(plus[0])
        else:                                   # k − a  or  −a
            a = self.emit(minus[0])
            out = self._into(a, target, final=not steps)
            if scalar != 0:
                self.calls.append(UfuncCall("subtract", (self.scalar(scalar), a), out))
                scalar = sp.Integer(0)
            else:
                self.calls.append(UfuncCall("negative", (a,), out))
            if out != a:
                self.release(a)
            acc = out
        for i, (op, term) in enumerate(steps):
            name = self.emit(term)
            out = self._into(acc, target, final=i == len(steps) - 1 and scalar == 0)
            self.calls.append(UfuncCall(op, (acc, name), out))
            self.release(name)
            acc = out
        if scalar != 0:
            out = self._into(acc, target, final=True)
            self.calls.append(UfuncCall("add", (acc, self.scalar(scalar)), out))
            acc = out
        return self._copy(acc, target)

    def _unary(self, func, arg, target):
        a = self.emit(arg)
        out = self._into(a, target, final=True)
        self.calls.append(UfuncCall(func, (a,), out))
        return out

    def _binary(self, func, left, right, scalars, op, target):
        a = self.emit(left) if self.is_array(left) else self.scalar(left)
        b = self.emit(right) if self.is_array(right) else self.scalar(right)
        out = self._into(a, target, final=not scalars)
        self.calls.append(UfuncCall(func, (a, b), out))
        self.release(b)
        if scalars:
            final = self._into(out, target, final=True)
            self.calls.append(UfuncCall(op, (out, self.scalar(sp.Mul(*scalars))), final))
            out = final
        return out

    def _into(self, current: str, target: str | None, final: bool) -> str:
        """Where an operation on ``current`` may write: in place if ``current`` is a temporary."""
        if final and target:
            return target
        if current.startswith("t") and current[1:].isdigit() and current not in self.names.values():
            return current
        if target and current != target and not final:
            return target
        return self.buffer(None)

    def _copy(self, name: str, target: str | None) -> str:
        if target and name != target:
            self.calls.append(UfuncCall("positive", (name,), target))
            self.release(name)
            return target
        return name


def ufunc_program(expr: sp.Expr, arg: sp.Symbol, arg_name: str = "Z", out: str = "out") -> UfuncProgram:
    """In-place ufunc calls computing ``expr(arg)`` into the buffer ``out``.

    The input array ``arg_name`` is never written. A constant fills ``out``; a function with no
    ufunc form falls back to the NumPy printer's expression copied into ``out`` (one temporary).
    """
    printer = NumpyKernelPrinter()
    if not expr.has(arg):
        return UfuncProgram((UfuncCall("multiply", (arg_name, "0"), out),
                             UfuncCall("add", (out, printer.doprint(expr)), out)), out, 0)
    try:
        return _program(expr, arg, arg_name, out)
    except NotImplementedError:
        code = printer.doprint(expr.subs(arg, sp.Symbol(arg_name, real=True)))
        return UfuncProgram((UfuncCall("positive", (code,), out),), out, 0)


def _program(expr, arg, arg_name, out) -> UfuncProgram:
    emitter = _Emitter(arg, arg_name, out)
    replacements, (reduced,) = sp.cse([expr], symbols=sp.numbered_symbols("s"), order="canonical")
    scalars = {}
    for sym, sub in replacements:
        sub = sub.xreplace(scalars)
        if not emitter.is_array(sub):          # constant subexpressions stay scalars
            scalars[sym] = sub
            continue
        name = emitter.buffer(None)
        emitter.emit(sub, target=name)
        emitter.names[sym] = name
    reduced = reduced.xreplace(scalars)
    result = emitter.emit(reduced, target=out if reduced != arg else None)
    return UfuncProgram(tuple(emitter.calls), result, emitter.count)
