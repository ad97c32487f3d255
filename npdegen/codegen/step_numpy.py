"""The NumPy target of the step IR: expressions printed for ``templates/step_numpy/``.

Arrays: accesses are shifted views of the padded state (``(batch, *grid)``), coefficients and
parameters scalars or grid arrays (broadcast over the batch). Linear terms become in-place
``multiply``/``add`` calls; other state expressions are printed by :class:`NumpyKernelPrinter`
(one temporary per operation); the activation and its derivatives become in-place ufunc programs.
"""
from __future__ import annotations

import re

import sympy as sp

from ..ir.lower import LoweredStep
from ..ir.step import ARGUMENT
from .printing import NumpyKernelPrinter, assignments
from .step_render import StepOptions, StepTarget
from .ufuncs import UfuncCall, UfuncProgram, ufunc_program

__all__ = ["TARGET", "numpy_step_context"]


def _template_program(program: UfuncProgram, out: str) -> UfuncProgram:
    """Temporaries t0, t1, … live in the list ``t`` of the generated functions; the result in ``out``."""
    rename = {f"t{i}": f"t[{i}]" for i in range(program.buffers)} | {"out": out}
    calls = tuple(UfuncCall(c.func, tuple(rename.get(a, a) for a in c.args), rename.get(c.out, c.out))
                  for c in program.calls)
    return UfuncProgram(calls, rename.get(program.result, program.result), program.buffers)


def _linear_terms(expr: sp.Expr, symbols) -> list | None:
    """``[(access name, coefficient code)]`` if ``expr`` is a sum of ``w_m * access``, else None."""
    printer = NumpyKernelPrinter()
    out = []
    for term in sp.Add.make_args(expr):
        access = [a for a in symbols if term.has(a)]
        if len(access) != 1:
            return None
        coeff = sp.simplify(term / access[0])
        if coeff.free_symbols & set(symbols):
            return None
        out.append((access[0].name, printer.doprint(coeff)))
    return out


def numpy_step_context(low: LoweredStep, options: StepOptions) -> dict:
    ir = low.ir
    printer = NumpyKernelPrinter()
    syms = ir.access_symbols
    coefficients = assignments(low.coefficients, printer, prefix="c")
    rules = [r for r in low.gradients if r.terms]
    kappa_exprs = [k for r in rules for _, k in r.terms]
    kappas = assignments(kappa_exprs, printer, prefix="c")
    codes = iter(kappas.results)
    gradients = [(r.name, r.family, r.scale, [(i, next(codes)) for i, _ in r.terms]) for r in rules]
    forward_linear = _linear_terms(low.forward, syms)
    # nonlinear forward: common subexpressions once per block (temporaries _f0, _f1, ...)
    forward = assignments([low.forward], printer, prefix="_f")
    # the adjoint's state expressions (reductions and state-dependent Jacobians, e.g. a flux's
    # max/Heaviside terms that several accesses share): CSE'd together (temporaries _x0, _x1, ...)
    acc = set(syms)
    plain = [(r.expr.is_Symbol and r.expr in acc) or r.expr == 1 for r in low.reductions]
    state_jac = [j != 0 and bool(j.free_symbols & acc) for j in low.access_jacobians]
    shared = [r.expr.subs(ARGUMENT, sp.Symbol("Z", real=True)) for r, p in zip(low.reductions, plain) if not p]
    shared += [j for j, st in zip(low.access_jacobians, state_jac) if st]
    adjoint = assignments(shared, printer, prefix="_x")
    codes = iter(adjoint.results)
    reductions = [(printer.doprint(r.expr) if p else next(codes), r.weight, r.expr.is_Symbol and r.expr in acc,
                   r.expr == 1) for r, p in zip(low.reductions, plain)]
    jacobians = []
    for a, j, st in zip(syms, low.access_jacobians, state_jac):
        if j != 0:
            jacobians.append((ir.accesses[syms.index(a)], next(codes) if st else printer.doprint(j), st))
    f_prog = ufunc_program(ir.f, ARGUMENT)
    f = _template_program(f_prog, "blk.F")
    # the forward may overwrite Z with f(Z) when only the program's last call writes its result
    in_place = bool(f_prog.calls) and all(c.out != "out" for c in f_prog.calls[:-1]) and f_prog.calls[-1].out == "out"
    f_fwd = _template_program(f_prog, "Z" if in_place else "blk.F")
    fprime = _template_program(ufunc_program(ir.fprime, ARGUMENT), "s")
    fprime_const = printer.doprint(ir.fprime) if ir.fprime.is_Number else None
    # whole-sample blocks gather the state-independent Jacobians (weights precomputed per call)
    gather = [(ir.accesses.index(off), code) for off, code, state in jacobians if not state]
    act_params = [p for p in ir.params if p.role == "activation"]
    need_f = options.train_omega
    def load(params):
        return [f'{p.symbol} = theta["{p.name}"]' + ("[layer]" if p.family == "time-dependent" else "")
                + f"  # {p.family}" for p in params]
    def load_blk(params):        # the block's grid rows of grid-shaped values
        return [f'{p.symbol} = _cut(theta["{p.name}"]' + ("[layer]" if p.family == "time-dependent" else "")
                + f", blk)  # {p.family}" for p in params]
    def used(params, *codes):        # the parameters a body reads (a load costs a call per block)
        words = set(re.findall(r"[A-Za-z_]\w*", " ".join(str(c) for c in codes)))
        return [p for p in params if str(p.symbol) in words]
    transform = [p for p in ir.params if p.role in ("transform", "fixed")]
    f_args = [a for c in f.calls for a in c.args]
    adjoint_codes = [c for _, c in adjoint.temps] + [r[0] for r in reductions] + \
                    [c for _, c, st in jacobians if st] + [a for c in fprime.calls for a in c.args]
    loads = {"transform": load(transform), "transform_blk": load_blk(transform),
             "activation_blk": load_blk(used(act_params, *f_args)),
             "adjoint_blk": load_blk(used(ir.params, *adjoint_codes,
                                          *(f_args if need_f else []))),
             "gather": load(used(transform, *[c for _, c in gather]))}
    return dict(loads=loads, coefficients=coefficients, kappas=kappas, gradients=gradients, forward_linear=forward_linear,
                forward_code=forward.results[0], forward_temps=forward.temps, adjoint_temps=adjoint.temps,
                jacobians=jacobians, reductions=reductions,
                f=f, f_fwd=f_fwd, fprime=fprime, fprime_const=fprime_const, gather=gather,
                s_reductions=[i for i, r in enumerate(low.reductions) if r.weight == "s"], temporaries=max(f.buffers, fprime.buffers), need_f=need_f,
                act_params=act_params, access_names=[a.name for a in syms],
                coef_names=[f"w{m}" for m in range(len(low.coefficients))],
                transform_params=[p for p in ir.params if p.role == "transform"],
                families=ir.families, boundaries=options.boundary)


TARGET = StepTarget(folder="step_numpy", files=((".py", "module.py.j2"),), context=numpy_step_context)
