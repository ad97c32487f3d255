"""The numba target: scalar expressions printed for the fused loops of ``templates/numba/``.

The templates write the loops (one pass per layer, batch rows inside grid chunks, unit-stride
inner loops); this module prints what goes inside them: the stencil weights and their Jacobians at
one site, and the activation ``f`` and its derivative at one value, after a shared CSE. Every
number is printed as ``_F(…)`` (the kernel's dtype), integer powers as products and
``Heaviside``/``sign``/``min``/``max`` as selects, so that float32 loops stay float32 and vectorise.

Activation forms (:class:`NumbaOptions.activations`): ``"auto"`` (default) uses the vectorisable
forms of :mod:`npdegen.codegen.fast_forms` in float32 and the exact libm forms in float64;
``"fast"`` uses the fast forms in both; ``"exact"`` uses libm everywhere. ``f'`` is always
``sympy.diff`` of the form that is printed.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import sympy as sp
from sympy.printing.pycode import PythonCodePrinter

from ..derive.kernel import KernelIR
from ..spec.activations import ACTIVATION_SYMBOL
from .render import KernelOptions, Target
from .fast_forms import RationalForm, expand_forms, fast_activation  # noqa: I001
from .vector_math import VTANH_SOURCE, uses_vector_math, vector_activation
from .numpy_target import jacobian_terms
from .printing import Assignments, assignments, code_weights

__all__ = ["ACTIVATION_MODES", "NumbaOptions", "NumbaPrinter", "activation_forms", "numba_context",
           "scratch_layout", "shared_assignments"]

ACTIVATION_MODES = ("auto", "fast", "exact")
#: The generated loops apply the activation to the local variable ``_Z``.
Z = sp.Symbol("_Z", real=True)


def _sources_digest() -> str:
    """Hash of this printer and of the fast forms: part of every numba kernel's content key."""
    here = Path(__file__).resolve().parent
    sources = b"".join((here / name).read_bytes() for name in ("numba_target.py", "fast_forms.py", "vector_math.py"))
    return hashlib.sha256(sources).hexdigest()[:16]


@dataclass(frozen=True)
class NumbaOptions(KernelOptions):
    """:class:`KernelOptions` plus the activation forms; ``codegen`` (a hash of this module and of
    :mod:`~npdegen.codegen.fast_forms`) puts the printer and the forms' coefficients into the
    content key too."""
    activations: str = "auto"
    codegen: str = field(default_factory=_sources_digest)

    def __post_init__(self):
        super().__post_init__()
        if self.activations not in ACTIVATION_MODES:
            raise ValueError(f"activations must be one of {', '.join(ACTIVATION_MODES)}, got {self.activations!r}")


class NumbaPrinter(PythonCodePrinter):
    """Scalar Python for numba ``njit`` loops, typed in the kernel dtype ``_F``."""

    def __init__(self, settings=None):
        super().__init__({"fully_qualified_modules": True, "strict": True, **(settings or {})})

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
        return f"_vtanh({self._print(expr.args[0])})"

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
    derivative of a rational ``P/Q`` needs ``1/Q`` and ``1/Q²``)."""
    replacements, reduced = sp.cse(list(exprs), symbols=sp.numbered_symbols(prefix), order="canonical")
    reciprocals = {}

    def share(e):
        for base, name in reciprocals.items():
            e = e.replace(lambda a, b=base: a.is_Pow and a.base == b and a.exp.is_Integer and a.exp < -1,
                          lambda a, t=name: t ** (-a.exp))
        return e
    temps = []
    for sym, e in replacements:
        e = share(e)
        if e.is_Pow and e.exp == -1:
            reciprocals[e.base] = sym
        temps.append((str(sym), printer.doprint(e)))
    return Assignments(tuple(temps), tuple(printer.doprint(share(e)) for e in reduced))


def activation_forms(ir: KernelIR, options: KernelOptions) -> tuple[str, sp.Expr, sp.Expr]:
    """``(form, f, f')`` as the kernel computes them: form ``"fast"`` (float32-accurate rational
    forms), ``"vector"`` (float64 tanh by :mod:`~npdegen.codegen.vector_math`, a few ulp) or
    ``"exact"`` (libm)."""
    return choose_forms(ir.f, ACTIVATION_SYMBOL, options)


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


def scratch_layout(ir: KernelIR, options: KernelOptions, needed, static: bool) -> tuple[dict, dict]:
    """Rows of a thread's scratch array (chunk + 2·halo columns) and of the per-call accumulators
    (n columns) the template indexes, by name.

    Scratch: the weights of a layer (when they depend on it), then two rows each (the adjoint takes
    batch rows in pairs) of s, f(Z) and λ before the layer, and the per-layer gradient sums of
    time-dependent weights and bias. Accumulators: gradient sums over batch and layers, contracted
    or added up once at the end of a call (``g<j>`` weight sums of layer-independent weights, ``gb``
    bias, ``go`` ω, ``h<name>`` per-site terms of homogeneous parameters otherwise).
    """
    nw = len(ir.offsets)
    rows = {"s": nw, "fz": nw + 2}
    if not static:
        rows.update({f"g{j}": nw + 4 + k for k, j in enumerate(needed)})
    rows["gb"] = nw + 4 + len(needed)
    rows["lold"] = rows["gb"] + 1
    acc = [f"g{j}" for j in needed] if static else []
    if ir.bias and ir.bias != "time-dependent":
        acc.append("gb")
    if options.train_omega:
        acc.append("go")
    if not static:
        acc += [f"h{name}" for name, fam in ir.params if fam == "homogeneous"]
    return rows, {name: k for k, name in enumerate(acc)}


def numba_context(ir: KernelIR, options: KernelOptions) -> dict:
    printer = NumbaPrinter()
    ws, dws = code_weights(ir)
    weights = assignments(ws, printer, prefix="_cw")
    both = assignments([*ws, *(d for _, ds in dws for d in ds)], printer, prefix="_cw")
    jacobians, needed = jacobian_terms(ir, both.results[len(ir.weights):])
    form, f, fprime = activation_forms(ir, options)
    fz, dfz = (expand_forms(e).subs(ACTIVATION_SYMBOL, Z) for e in (f, fprime))
    act = {"f": shared_assignments([fz], printer, "_ca"), "df": shared_assignments([dfz], printer, "_ca"),
           "f_df": shared_assignments([fz, dfz], printer, "_ca")}
    # Weights that no time-dependent parameter enters are the same in every layer: computed once per
    # call, and their gradient sums accumulated over all layers before one contraction with dw/dθ.
    static = all(fam != "time-dependent" for _, fam in ir.params)
    rows, acc = scratch_layout(ir, options, needed, static)
    y = sp.Symbol("y", real=True)
    rationals = sorted({type(e) for e in (f + fprime).atoms(RationalForm)}, key=lambda c: c.__name__)
    return dict(families=dict(ir.params), weights=weights, weights_and_jacobians=both, jacobians=jacobians,
                gradient_offsets=needed, act=act, form=form, f=f, fprime=fprime,
                vtanh_source=VTANH_SOURCE if uses_vector_math(f, fprime) else "",
                forms=[(c.__name__, sp.sstr(c.explicit(y))) for c in rationals],
                activations=getattr(options, "activations", "auto"), static=static, rows=rows,
                nrows=rows["lold"] + 2, acc=acc)


TARGET = Target(folder="numba", files=((".py", "module.py.j2"),), context=numba_context)
