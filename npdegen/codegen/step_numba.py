"""The numba target of the step IR: per-site scalar code for the loops of ``templates/step_numba/``.

The template writes the loops (grid lines × chunks of the last, unit-stride axis, batch rows inside,
``numba.prange`` over the outer items); this module prints what runs at one site, with
:class:`~npdegen.codegen.numba_printer.NumbaPrinter` (numbers typed ``_F``, integer powers as
products), after a shared CSE:

* *constant* coefficients ``w_m`` (homogeneous parameters and spacings only): scalars computed
  once per kernel call; *site* coefficients (a heterogeneous or time-dependent parameter enters):
  rows of an array ``W`` computed once per call (``low.static``) or once per layer;
* the pre-activation ``Z = G − b``, ``f``/``f'`` (the vectorisable forms of
  :mod:`npdegen.codegen.fast_forms` in float32, the exact libm forms in float64; ``f'`` and the
  activation-parameter derivatives are SymPy's derivatives of the form that is computed), the
  per-site reductions, the access Jacobians ``J_o`` and the gradient coefficients ``κ``;
* ``exp``/``log`` as the vectorisable ``_vexp``/``_vlog`` of :mod:`npdegen.codegen.vector_math`
  (unless ``activations="exact"``); Jacobians that call such functions (the soft-min layer's softmax
  weights) are computed in pass A with the reductions (one CSE: the same exps) and stored as
  ``s·J_o`` (rows of ``_J``), so that pass B gathers them instead of computing each ``K`` times.

Each body comes with what it loads at a site: the accesses (rows of the padded state, a column
offset per access), site coefficients, site parameters. Index expressions are printed here for the
layer's dimension; template-local names start with ``_`` (parameters are ``p_<name>``, accesses
``z_<offset>``: never defined by the template itself).
"""
from __future__ import annotations

import sympy as sp

from ..ir.lower import LoweredStep, coefficient_symbol
from ..ir.step import ARGUMENT
from .fast_forms import expand_forms
from .vector_math import vector_sources
from .numba_printer import NumbaPrinter, choose_forms, shared_assignments
from .step_render import StepOptions, StepTarget

__all__ = ["TARGET", "numba_step_context"]

#: The activation's argument as the loops name it.
_Z = sp.Symbol("_Z", real=True)


def _offset_name(o: int) -> str:
    return "0" if o == 0 else (f"p{o}" if o > 0 else f"m{-o}")


class _Site:
    """Index expressions of one kind of loop body for a ``dim``-D grid with ``halo``.

    The site's outer grid indices are ``_j0 … _j{d-2}``; the inner loop runs ``_ii`` (unsigned)
    from column base ``_c0`` (grid coordinate). Rows of padded arrays (batch row ``_r``) are
    views ``A[_r, _j0 + h0 + o0, …]``; rows of grid arrays ``A[_j0, …]``."""

    def __init__(self, dim: int, halo: tuple):
        self.dim, self.halo = dim, halo

    def padded_row(self, array: str, outer: tuple, batch: bool = True) -> str:
        idx = (["_r"] if batch else []) + [f"_j{k} + {self.halo[k] + o}" for k, o in enumerate(outer)]
        return f"{array}[{', '.join(idx)}]" if idx else array

    def grid_row(self, array: str, lead: str | None = None, shift: tuple = ()) -> str:
        """Row of a grid array at the site's line, or at the line ``shift`` (outer offsets) away."""
        shift = tuple(shift) or (0,) * (self.dim - 1)
        idx = ([lead] if lead is not None else []) + [f"_j{k}" + (f" + {o}" if o > 0 else f" - {-o}" if o else "")
                                                      for k, o in enumerate(shift)]
        return f"{array}[{', '.join(idx)}]" if idx else array


def _body(exprs, printer, prefix, site: _Site, low: LoweredStep, site_coefs: dict, site_params: dict,
          extra_symbols=()):
    """Printed ``exprs`` (CSE'd) and the loads they need at one site."""
    ir = low.ir
    a = shared_assignments(exprs, printer, prefix)
    free = set().union(*(sp.sympify(e).free_symbols for e in exprs)) if exprs else set()
    rows, cols, loads = {}, {}, []
    for off, sym in zip(ir.accesses, ir.access_symbols):
        if sym not in free:
            continue
        outer, last = off[:-1], off[-1]
        rname = "_zr" + "".join("_" + _offset_name(o) for o in outer)
        rows[rname] = site.padded_row("_zp", outer)
        col = ir.halo[-1] + last
        cname = f"_bz{col}"
        cols[cname] = col
        loads.append((sym.name, rname, cname))
    wloads = [(coefficient_symbol(m).name, k) for m, k in site_coefs.items() if coefficient_symbol(m) in free]
    ploads = [name for name, sym in site_params.items() if sym in free]
    return dict(temps=a.temps, results=a.results, zrows=sorted(rows.items()), zcols=sorted(cols.items()),
                zloads=loads, wloads=wloads, ploads=ploads)


def _gather_terms(low: LoweredStep, printer, site: _Site, site_coefs: dict, site_params: dict) -> list:
    """The adjoint's gather ``Σ_o s[j − o] J_o(j − o)`` at site ``j`` of an interior line: per access
    offset ``o``, the Jacobian printed with its own names (suffix ``__g<k>``: the same access or
    parameter at two source sites must not share a name, and no user name has a double underscore),
    and what it loads at the source site
    ``j − o``: rows of the source line, constant column bases (the loop index ``_ii`` runs over the
    columns ``HL … n − HL``, so the source column is ``HL − o_last + _ii``)."""
    ir = low.ir
    HL = ir.halo[-1]
    terms = []
    for k, (off, jac) in enumerate(zip(ir.accesses, low.access_jacobians)):
        if jac == 0:
            continue
        sfx, outer, ol = f"__g{k}", off[:-1], off[-1]     # "__": never in a user name (spec.names)
        free, sub, zrows, zloads, wloads, ploads = jac.free_symbols, {}, {}, [], [], []
        for a, sym in zip(ir.accesses, ir.access_symbols):
            if sym in free:
                new = sp.Symbol(printer.doprint(sym) + sfx)
                sub[sym] = new
                rel = tuple(x - y for x, y in zip(a[:-1], outer))
                rname = "_zr" + sfx + "".join("_" + _offset_name(o) for o in rel)
                zrows[rname] = site.padded_row("_zp", rel)
                zloads.append((new.name, rname, HL - ol + HL + a[-1]))
        for m, row in site_coefs.items():
            c = coefficient_symbol(m)
            if c in free:
                sub[c] = sp.Symbol(c.name + sfx)
                wloads.append((c.name + sfx, f"_Wr{row}{sfx}", site.grid_row("_W", str(row), tuple(-o for o in outer))))
        for name, sym in site_params.items():
            if sym in free:
                sub[sym] = sp.Symbol(printer.doprint(sym) + sfx)
                ploads.append((sub[sym].name, f"_ar_{name}{sfx}",
                               site.grid_row("_a_" + name, None, tuple(-o for o in outer))))
        a = shared_assignments([jac.xreplace(sub)], printer, f"_cg{k}_")
        terms.append(dict(k=k, zrows=sorted(zrows.items()), zloads=zloads, wloads=wloads, ploads=ploads,
                          srow=site.grid_row("_s", "_r", tuple(-o for o in outer)),
                          sbase=HL - ol, temps=a.temps, result=a.results[0]))
    return terms


def _costly(expr) -> bool:
    """Whether ``expr`` calls a transcendental function (exp, log, tanh, …): a Jacobian worth storing
    once per site rather than recomputing at each of its K gather terms."""
    cheap = (sp.Heaviside, sp.Min, sp.Max, sp.Abs, sp.sign, sp.Piecewise)
    return any(isinstance(a, sp.Function) and not isinstance(a, cheap) for a in sp.preorder_traversal(expr))


def numba_step_context(low: LoweredStep, options: StepOptions) -> dict:
    ir = low.ir
    printer = NumbaPrinter({"vector_math": options.activations != "exact"})   # exp, log: _vexp, _vlog
    site = _Site(ir.dim, ir.halo)
    params = {p.name: p for p in ir.params}
    site_params = {p.name: p.symbol for p in ir.params if p.family != "homogeneous"}
    site_syms = set(site_params.values())
    # coefficients: constant (scalars per call) or per site (rows of W)
    const_coefs, site_coefs = {}, {}
    for m, w in enumerate(low.coefficients):
        if w.free_symbols & site_syms:
            site_coefs[m] = len(site_coefs)
        else:
            const_coefs[m] = w
    const = shared_assignments(list(const_coefs.values()), printer, "_cc")
    const_lines = list(const.temps) + [(coefficient_symbol(m).name, code)
                                       for m, code in zip(const_coefs, const.results)]
    # one loop per row of W, per gradient and per zeroed row: loops storing into many rows are not
    # vectorised (too many runtime alias checks)
    coef_bodies = [(k, _body([low.coefficients[m]], printer, "_cw", site, low, {}, site_params))
                   for m, k in site_coefs.items()]
    # the activation as computed: fast forms in float32
    f, fprime = ir.f, ir.fprime
    d_act = dict(ir.d_activation)
    form, computed, _ = choose_forms(ir.f, ARGUMENT, options)
    if computed != ir.f:
        f, fprime = computed, sp.diff(computed, ARGUMENT)
        d_act = {p.name: sp.diff(computed, p.symbol) for p in ir.params if p.role == "activation"}
    to_loop = {ARGUMENT: _Z}

    def act(e):
        return expand_forms(sp.sympify(e)).xreplace(to_loop)
    reductions = list(low.reductions)
    for rule in low.gradients:
        if rule.scale == "omega":
            (r, _), = rule.terms
            reductions[r] = type(reductions[r])(d_act[rule.name], "lam")
    red_exprs = [act(r.expr) for r in reductions]
    pre = _body([low.forward], printer, "_cz", site, low, site_coefs, site_params)
    forward_act = _body([act(f)], printer, "_ca", site, low, site_coefs, site_params)
    # simple reductions (s times one access, or s): separate unit-stride loops after s, one store each
    # (a loop storing many rows is not vectorised: too many runtime alias checks)
    access_of = dict(zip(ir.access_symbols, ir.accesses))
    simple_ids = [i for i, r in enumerate(reductions)
                  if r.weight == "s" and (r.expr == 1 or r.expr in access_of)]
    general_ids = [i for i in range(len(reductions)) if i not in simple_ids]
    # costly Jacobians (exp/log: the soft-min layer) are computed once per site in pass A, sharing the
    # exps of its reductions, and stored times s (rows of _J) for pass B, which then only gathers
    nonzero = [jac for jac in low.access_jacobians if jac != 0]
    stored = nonzero if any(_costly(jac) for jac in nonzero) else []
    adjoint_exprs = [act(fprime)] + ([act(f)] if options.train_omega else []) + [red_exprs[i] for i in general_ids]
    adjoint_act = _body(adjoint_exprs + stored, printer, "_ca", site, low, site_coefs, site_params)
    reduction_info = [(i, reductions[i].weight, code) for i, code in
                      zip(general_ids, adjoint_act["results"][1 + options.train_omega:])]
    stored_jacobians = adjoint_act["results"][len(adjoint_exprs):]
    simple_body = _body([reductions[i].expr for i in simple_ids], printer, "_cr", site, low, site_coefs, site_params)
    loads = {name: (rname, cname) for name, rname, cname in simple_body["zloads"]}
    simple_reductions = [(i, *(loads[reductions[i].expr.name] if reductions[i].expr != 1 else (None, None)))
                         for i in simple_ids]
    # the access Jacobians, per access offset o: J_o at site j = p - o for padded position p
    jacobians = []
    for off, sym, jac in zip(ir.accesses, ir.access_symbols, low.access_jacobians):
        if jac == 0:
            continue
        body = _body([jac], printer, "_cj", site, low, site_coefs, site_params)
        jacobians.append(dict(offset=off, body=body, qcol=ir.halo[-1] + off[-1],
                              jrow=site.grid_row("_J", f"{len(jacobians)}, _r")))
    gather = _gather_terms(low, printer, site, site_coefs, site_params)
    for row, t in enumerate(gather):      # s J_o at the source site, when pass A stored it
        t["jrow"] = site.grid_row("_J", f"{row}, _r", tuple(-o for o in ir.accesses[t["k"]][:-1]))
    # gradient assembly: site = scale * sum_k kappa_k * S[r_k]
    rules = [r for r in low.gradients if r.terms]
    gradients = []
    for r in rules:
        body = _body([k for _, k in r.terms], printer, "_ck", site, low, site_coefs, site_params)
        gradients.append(dict(name=r.name, family=r.family, scale=r.scale, body=body,
                              terms=[(i, code) for (i, _), code in zip(r.terms, body["results"])]))
    homogeneous_rules = [g["name"] for g in gradients if g["family"] == "homogeneous"]
    hom_params = [p.name for p in ir.params if p.family == "homogeneous"]
    return dict(
        site=site, const_lines=const_lines, site_coefs=site_coefs, coef_bodies=coef_bodies,
        nsite=len(site_coefs), pre=pre, forward_act=forward_act, adjoint_act=adjoint_act,
        reduction_info=reduction_info, simple_reductions=simple_reductions, stored_jacobians=stored_jacobians,
        simple_body=simple_body, nreductions=len(reductions), jacobians=jacobians, gather=gather, gradients=gradients,
        homogeneous_rules=homogeneous_rules, hom_params=hom_params, site_params=list(site_params),
        params=params, families=ir.families, form=form, f=f, fprime=fprime,
        vtanh_source=vector_sources(printer.used, options.dtype),      # the helpers printed (tanh, exp, log)
        spacing=[s.name for s in ir.spacing],
        param_args=[f"_a_{p.name}" for p in ir.params] + (["_a_b"] if ir.bias else []),
        grad_args=[f"_g_{g['name']}" for g in gradients],
        boundaries=options.boundary)


TARGET = StepTarget(folder="step_numba", files=((".py", "module.py.j2"),), context=numba_step_context)
