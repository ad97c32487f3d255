"""The NumPy target: expressions printed for ``templates/numpy/``.

Coefficient code (arrays of shape ``(n,)``) is printed by :class:`NumpyKernelPrinter` after a
shared CSE; the activation and its derivative (arrays of shape ``(batch, n)``, on the hot path)
become in-place ufunc programs (:mod:`npdegen.codegen.ufuncs`).
"""
from __future__ import annotations

import sympy as sp

from ..derive.kernel import KernelIR
from ..spec.activations import ACTIVATION_SYMBOL
from .printing import NumpyKernelPrinter, assignments, code_weights
from .render import KernelOptions, Target
from .ufuncs import UfuncCall, UfuncProgram, ufunc_program

#: The generated code applies the activation to the array named ``Z``.
Z = sp.Symbol("Z", real=True)


def jacobian_terms(ir: KernelIR, results) -> tuple[list, list]:
    """``[(param, [(offset, code), ...]), ...]`` for the nonzero ``∂w_j/∂θ``, and the offsets used."""
    nw = len(ir.weights)
    jacobians = []
    for p, (name, ds) in enumerate(code_weights(ir)[1]):
        terms = [(j, results[p * nw + i]) for i, (j, d) in enumerate(zip(ir.offsets, ds)) if d != 0]
        jacobians.append((name, terms))
    needed = sorted({j for _, terms in jacobians for j, _ in terms})
    return jacobians, needed


def _template_program(program: UfuncProgram) -> UfuncProgram:
    """Temporaries t0, t1, … live in the list ``t`` of the generated functions."""
    rename = {f"t{i}": f"t[{i}]" for i in range(program.buffers)}
    calls = tuple(UfuncCall(c.func, tuple(rename.get(a, a) for a in c.args), rename.get(c.out, c.out))
                  for c in program.calls)
    return UfuncProgram(calls, rename.get(program.result, program.result), program.buffers)


def numpy_context(ir: KernelIR, options: KernelOptions) -> dict:
    printer = NumpyKernelPrinter()
    ws, dws = code_weights(ir)
    weights = assignments(ws, printer, prefix="c")
    both = assignments([*ws, *(d for _, ds in dws for d in ds)], printer, prefix="c")
    jacobians, needed = jacobian_terms(ir, both.results[len(ir.weights):])
    f, fprime = (_template_program(ufunc_program(e.subs(ACTIVATION_SYMBOL, Z), Z)) for e in (ir.f, ir.fprime))
    return dict(families=dict(ir.params), weights=weights, weights_and_jacobians=both,
                jacobians=jacobians, gradient_offsets=needed, f=f, fprime=fprime,
                temporaries=max(f.buffers, fprime.buffers),
                layer_dependent=any(fam == "time-dependent" for _, fam in ir.params) or ir.bias == "time-dependent")


TARGET = Target(folder="numpy", files=((".py", "module.py.j2"),), context=numpy_context)
