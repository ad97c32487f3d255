"""The CUDA target: expressions printed for ``templates/cuda/`` (a ``.cu`` source and its CuPy wrapper).

Expressions come from SymPy's C99 printer after the same CSE as the NumPy target
(:func:`npdegen.codegen.printing.assignments`). The ``real`` type of the kernels is ``float`` or
``double``; float32 code calls the float intrinsics (``tanhf``, ``expf``, ...) and writes ``f``
literals, float64 code the double ones. This module also fixes the gradient layout the kernels
share (the per-site quantities they sum and how each gradient is made from them), so that the
templates only lay out code.
"""
from __future__ import annotations

import sympy as sp
from sympy.codegen.ast import float32, float64, real
from sympy.printing.c import C99CodePrinter
from sympy.printing.precedence import precedence

from ..derive.kernel import KernelIR
from ..spec.activations import ACTIVATION_SYMBOL
from .printing import assignments, code_weights
from .render import KernelOptions, Target

__all__ = ["CudaPrinter", "cuda_context", "TILE", "shared_bytes"]

#: Threads per block, one grid site each (the launch rule is in the template header).
TILE = 256
#: Blocks the launch rule aims for: about one wave on an H100/H200 (132 SMs x 8 blocks).
TARGET_BLOCKS = 1024
#: Static shared memory a block may use.
SHARED_LIMIT = 48 * 1024

#: The generated code applies the activation to the value named ``Z``.
Z = sp.Symbol("Z", real=True)


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


def shared_bytes(ir: KernelIR, itemsize: int) -> int:
    """Static shared memory of the adjoint kernel: z on TILE + 4 HALO positions, w_j * s on
    TILE + 2 HALO positions per offset, and the TILE doubles of a block reduction."""
    return ((TILE + 4 * ir.halo) + len(ir.offsets) * (TILE + 2 * ir.halo)) * itemsize + TILE * 8


def gradient_layout(ir: KernelIR, options: KernelOptions, jacobians, needed, both) -> dict:
    """Per-site quantities ``q`` (summed over the batch) and the gradients made from them.

    ``q`` holds ``sum_b s z[k+j]`` for every offset j some Jacobian needs, then ``sum_b s`` (bias),
    then ``sum_b lam (f(Z) - z)`` (omega). Each gradient is ``(target, family, code)`` with code a
    C expression in ``q[...]`` and the Jacobian values ``dw_[...]``.
    """
    quantities = [f"sum_batch s * z[k{j:+d}]" for j in needed]
    jac = []          # (param, offset, C code of dw_j/dparam)
    gradients = []
    for name, terms in jacobians:
        if not terms:
            continue
        parts = []
        for j, code in terms:
            parts.append(f"dw_[{len(jac)}] * q[{needed.index(j)}]")
            jac.append((name, j, code))
        gradients.append((name, dict(ir.params)[name], " + ".join(parts)))
    if ir.bias:
        gradients.append(("b", ir.bias, f"-q[{len(quantities)}]"))
        quantities.append("sum_batch s")
    if options.train_omega:
        gradients.append(("omega", "homogeneous", f"q[{len(quantities)}]"))
        quantities.append("sum_batch lam * (f(Z) - z)")
    homogeneous = [g for g in gradients if g[1] == "homogeneous"]
    return dict(quantities=quantities, jac=jac, gradients=gradients, homogeneous=homogeneous,
                gradient_targets=tuple((name, family) for name, family, _ in gradients),
                homogeneous_names=tuple(name for name, _, _ in homogeneous),
                jac_temps=both.temps, jac_weights=both.results[:len(ir.weights)])


def cuda_context(ir: KernelIR, options: KernelOptions) -> dict:
    from .numpy_target import jacobian_terms  # here: numpy_target may be the module being imported
    itemsize = 4 if options.dtype == "float32" else 8
    if 4 * ir.halo > TILE:
        raise ValueError(f"stencil too wide for the CUDA backend: halo {ir.halo} > {TILE // 4} (a quarter of a tile)")
    if shared_bytes(ir, itemsize) > SHARED_LIMIT:
        raise ValueError(f"stencil too wide for the CUDA backend: {len(ir.offsets)} offsets over a halo of "
                         f"{ir.halo} need {shared_bytes(ir, itemsize)} bytes of shared memory per block "
                         f"(limit {SHARED_LIMIT})")
    printer = CudaPrinter(options.dtype)
    ws, dws = code_weights(ir)
    weights = assignments(ws, printer, prefix="c")
    both = assignments([*ws, *(d for _, ds in dws for d in ds)], printer, prefix="c")
    jacobians, needed = jacobian_terms(ir, both.results[len(ir.weights):])
    f, fprime = (e.subs(ACTIVATION_SYMBOL, Z) for e in (ir.f, ir.fprime))
    theta_args = (*ir.params, *((("b", ir.bias),) if ir.bias else ()))
    return dict(
        real="float" if options.dtype == "float32" else "double",
        tile=TILE, target_blocks=TARGET_BLOCKS,
        families=dict(ir.params), theta_args=theta_args, weights=weights,
        f=assignments([f], printer, prefix="t"), fprime=assignments([fprime], printer, prefix="t"),
        f_both=assignments([f, fprime], printer, prefix="t"),
        shared=shared_bytes(ir, itemsize),
        **gradient_layout(ir, options, jacobians, needed, both),
        gradient_offsets=needed,
    )


TARGET = Target(folder="cuda", files=((".py", "wrapper.py.j2"), (".cu", "kernels.cu.j2")),
                         context=cuda_context)
