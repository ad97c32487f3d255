"""The CUDA target of the step IR: per-site C code for ``templates/step_cuda/`` (a ``.cu`` source
and its CuPy wrapper).

One thread owns one grid site (the flattened index of a 1–3-D grid) and loops over the batch rows
of its block. This module prints
what runs at one site with :class:`~npdegen.codegen.cuda_printer.CudaPrinter` after a shared CSE,
and lists what each printed block loads at the site it is evaluated at:

* ``coefficients``: the ``w_m`` (parameters, spacings), written per site into ``W`` once per call
  (``low.static``) or once per layer;
* ``forward``: ``G`` in ``w_m``, accesses and parameters; ``activation``: ``f(Z)``;
* ``adjoint``: ``f'(Z)`` (and ``f(Z)`` when ω is trained), then the expressions of the per-site
  reductions (:attr:`~npdegen.ir.lower.LoweredStep.reductions`);
* ``jacobians``: ``J_o = ∂G/∂z[i+o]`` per access, evaluated at the neighbour site ``j = p − o``
  by the gathering thread of site ``k`` (``p`` every padded position that reads ``k``);
* ``gradients``: the coefficients ``κ`` of each gradient rule.

Printed names: parameters ``p_<name>``, accesses ``z_<offset>``, coefficients ``w<m>``, spacings
``Delta<k>``, the activation's argument ``Z``; CSE temporaries ``x<letter><n>``. The templates'
own locals never take one of these forms (kernel arguments are ``theta_<name>``/``grad_<name>``).
"""
from __future__ import annotations

import sympy as sp

from ..ir.lower import LoweredStep, coefficient_symbol
from .cuda_printer import TARGET_BLOCKS, TILE, CudaPrinter
from .printing import assignments
from .step_render import StepOptions, StepTarget

__all__ = ["TARGET", "cuda_step_context", "TILE", "TARGET_BLOCKS"]


def _free(exprs) -> set:
    out = set()
    for e in exprs:
        out |= sp.sympify(e).free_symbols
    return out


def _needs(low: LoweredStep, free: set) -> dict:
    """What a block reads at its site: access indices, coefficient indices, parameters."""
    ir = low.ir
    return dict(accesses=[i for i, a in enumerate(ir.access_symbols) if a in free],
                coefs=[m for m in range(len(low.coefficients)) if coefficient_symbol(m) in free],
                params=[p for p in ir.params if p.symbol in free])


def _block(low: LoweredStep, exprs, printer, prefix: str) -> dict:
    a = assignments(list(exprs), printer, prefix)
    return dict(temps=a.temps, results=a.results, **_needs(low, _free(exprs)))


def _union(low: LoweredStep, *blocks) -> dict:
    ir = low.ir
    acc = sorted(set().union(*(b["accesses"] for b in blocks)))
    coefs = sorted(set().union(*(b["coefs"] for b in blocks)))
    names = set().union(*({p.name for p in b["params"]} for b in blocks))
    return dict(accesses=acc, coefs=coefs, params=[p for p in ir.params if p.name in names])


def cuda_step_context(low: LoweredStep, options: StepOptions) -> dict:
    ir = low.ir
    if len(options.boundary) != ir.dim:
        raise ValueError(f"{len(options.boundary)} boundaries for a {ir.dim}-D layer")
    printer = CudaPrinter(options.dtype)
    coefficients = _block(low, low.coefficients, printer, "xw")
    forward = _block(low, [low.forward], printer, "xg")
    activation = _block(low, [ir.f], printer, "xf")
    adjoint_exprs = [ir.fprime] + ([ir.f] if options.train_omega else []) + [r.expr for r in low.reductions]
    adjoint = _block(low, adjoint_exprs, printer, "xa")
    first = 1 + options.train_omega
    reductions = [(r.weight, code) for r, code in zip(low.reductions, adjoint["results"][first:])]
    jacobians = []
    for i, (off, jac) in enumerate(zip(ir.accesses, low.access_jacobians)):
        if jac != 0:
            jacobians.append(dict(index=i, offset=off, block=_block(low, [jac], printer, "xj")))
    gradients = []
    for r in low.gradients:
        if not r.terms:
            continue
        body = _block(low, [k for _, k in r.terms], printer, "xk")
        gradients.append(dict(name=r.name, family=r.family, scale=r.scale, block=body,
                              terms=[(i, code) for (i, _), code in zip(r.terms, body["results"])]))
    nq = len(low.reductions)
    if options.train_omega:      # sum lam (f(Z) - z): one more per-site quantity, a homogeneous gradient
        gradients.append(dict(name="omega", family="homogeneous", scale="1",
                              block=dict(temps=(), results=("1",), accesses=[], coefs=[], params=[]),
                              terms=[(nq, "1")]))
        nq += 1
    homogeneous = [g["name"] for g in gradients if g["family"] == "homogeneous"]
    center = tuple([0] * ir.dim)
    theta_args = [(p.name, p.family) for p in ir.params]
    return dict(
        real="float" if options.dtype == "float32" else "double", tile=TILE, target_blocks=TARGET_BLOCKS,
        coefficients=coefficients, forward=forward, activation=activation, adjoint=adjoint,
        forward_loads=_union(low, forward, activation), adjoint_loads=_union(low, forward, adjoint),
        reductions=reductions, nreductions=len(low.reductions), quantities=nq,
        jacobians=jacobians, gradients=gradients, homogeneous=homogeneous,
        theta_args=theta_args, families=ir.families, center=center,
        gradient_targets=tuple((g["name"], g["family"]) for g in gradients),
        spacing=[s.name for s in ir.spacing], time_dependent="time-dependent" in ir.families.values(),
    )


TARGET = StepTarget(folder="step_cuda", files=((".py", "wrapper.py.j2"), (".cu", "kernels.cu.j2")),
                    context=cuda_step_context)
