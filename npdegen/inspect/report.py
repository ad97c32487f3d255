r"""Physics report of a layer: moments, cumulants and the effective PDE of L repeated layers.

For a layer with stencil ``w_j`` (MODEL.md §2):

* moments ``W_k = Σ_j (jΔ)^k w_j`` (no 1/k!) describe **one application** of the kernel;
* cumulants ``κ_k`` of the normalised kernel ``w/W_0`` (κ_0 = log W_0) describe **repeated**
  applications: they add from layer to layer;
* the **effective PDE** ``∂_t z = Σ_m c_m ∂_q^m z`` that L relaxed layers approximate uses the
  cumulants ``K_m`` of the whole linearised step ``(1 − ω)δ + ω s W`` (s = f′ at the operating
  point): ``c_m = K_m / (m! dt)`` per unit time, with dt the time step of one layer. For relaxed
  ADR with f = id: ``c_0 = log(1 + ωR)``, ``c_1 = −ωU/(1 + ωR)`` (velocity ``ωU/(1 + ωR)``) and
  ``c_2 = ωD − ω²U²/2`` at R = 0: the forward-Euler anti-diffusion of Warming & Hyett (1974).

Each term is named (reaction, advection, diffusion, dispersion, hyper-diffusion, higher) with the
meaning of its sign; with numeric parameters, destabilising signs (anti-diffusion,
anti-hyper-diffusion) are flagged.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from math import factorial
from numbers import Real

import numpy as np
import sympy as sp

from ..derive.stencil import SPACING, Stencil, stencil_moments
from .cumulants import coefficients, cumulants_from_moments, describe_term, step_moments, term_name
from .matrix import as_kernel_ir, check_params, param_symbols
from ._checks import check_order
from ._format import fmt_expr, fmt_number
from .vonneumann import OMEGA, SLOPE

__all__ = ["PhysicsReport", "TermRow", "physics_report"]


@dataclass(frozen=True)
class TermRow:
    """One order m: symbolic moment, cumulant and effective coefficient; numeric values per site."""
    order: int
    process: str
    meaning: str
    moment: sp.Expr
    cumulant: sp.Expr
    coefficient: sp.Expr
    values: np.ndarray | None = None      # effective coefficient per site (numeric parameters)
    moments: np.ndarray | None = None     # W_m per site
    flag: str = ""


@dataclass(frozen=True)
class PhysicsReport:
    layer: str
    layers: int
    dt: object
    omega: object
    slope: object
    rows: tuple

    def __iter__(self):
        return iter(self.rows)

    def __getitem__(self, m) -> TermRow:
        return self.rows[m]

    @property
    def flags(self) -> list[str]:
        return [f"{r.process}: {r.flag}" for r in self.rows if r.flag]

    def pde(self, max_order: int | None = None, digits: int | None = 6) -> str:
        """The effective PDE up to ``max_order``, e.g. ``dz/dt = (c0)*z + (c1)*d^1 z/dq^1 + …``
        (floats with ``digits`` significant digits; None: in full)."""
        parts = [f"({fmt_expr(r.coefficient, digits)})*{'z' if r.order == 0 else 'd^%d z/dq^%d' % (r.order, r.order)}"
                 for r in self.rows if r.coefficient != 0 and (max_order is None or r.order <= max_order)]
        return "dz/dt = " + (" + ".join(parts) if parts else "0")

    def __str__(self) -> str:
        lines = [f"Physics of layer {self.layer!r}: omega = {fmt_expr(self.omega)}, f' = {fmt_expr(self.slope)}, "
                 f"dt = {fmt_expr(self.dt)} per layer, L = {self.layers} layers "
                 "(moments W_k = sum_j (j*Delta)^k w_j, no 1/k!)",
                 f"effective PDE (leading orders): {self.pde(2)}"]
        for r in self.rows:
            lines.append(f"  {r.order}  {r.process}")
            lines.append(f"       moment W_{r.order} = {fmt_expr(r.moment)}")
            lines.append(f"       cumulant kappa_{r.order} (normalised kernel) = {fmt_expr(r.cumulant)}")
            lines.append(f"       effective coefficient c_{r.order} = {fmt_expr(r.coefficient)}")
            if r.values is not None:
                lines.append("       " + self._value_line(r))
            lines.append(f"       meaning: {r.meaning}" + (f"   <-- {r.flag}" if r.flag else ""))
        return "\n".join(lines)

    def _value_line(self, r: TermRow) -> str:
        v = r.values
        bad = ~np.isfinite(v)
        if bad.all():
            return f"value: undefined ({_undefined(r.order)})"
        good = v[~bad]
        scale = float(np.max(np.abs(good))) if good.size else 0.0
        span = (f"{fmt_number(good.min(), scale=scale)} .. {fmt_number(good.max(), scale=scale)}"
                if v.size > 1 else fmt_number(good[0]))
        total = self.layers * factorial(r.order) * good.mean() * _num(self.dt)     # L·K_m
        note = f"; undefined at {int(bad.sum())} of {v.size} sites ({_undefined(r.order)})" if bad.any() else ""
        return (f"value: {span}; after L layers: {fmt_number(total, scale=self.layers * scale)} "
                f"({'log amplitude' if r.order == 0 else 'cumulant'}){note}")

    def to_dict(self) -> dict:
        num = lambda a: None if a is None else [None if not np.isfinite(x) else float(x) for x in np.ravel(a)]
        return {"layer": self.layer, "layers": self.layers, "dt": fmt_expr(self.dt, None),
                "omega": fmt_expr(self.omega, None), "slope": fmt_expr(self.slope, None), "pde": self.pde(digits=None), "flags": self.flags,
                "terms": [{"order": r.order, "process": r.process, "meaning": r.meaning,
                           "moment": sp.sstr(r.moment), "cumulant": sp.sstr(r.cumulant),
                           "coefficient": sp.sstr(r.coefficient), "values": num(r.values),
                           "moments": num(r.moments), "flag": r.flag} for r in self.rows]}


def _undefined(order: int) -> str:
    if order == 0:
        return ("the linearised step multiplies the mean by a factor <= 0, so z flips sign every layer "
                "and has no real growth rate; lower omega or change the reaction term")
    return "the mean of the step is <= 0, so its cumulants are not defined"


def _num(v):
    try:
        return float(v)
    except TypeError:
        return float("nan")


def _value(name, v, default):
    if v is None:
        return default
    if isinstance(v, sp.Basic):
        return v
    if not isinstance(v, Real) or isinstance(v, bool) or not np.isfinite(v):
        raise ValueError(f"{name} must be a finite number or a SymPy expression, got {v!r}")
    return sp.nsimplify(v, rational=True) if float(v).is_integer() else sp.Float(v)


def _flag(order, values):
    if values is None:
        return ""
    if order == 0 and not np.all(np.isfinite(values)):
        return f"SIGN FLIP every layer at {int(np.sum(~np.isfinite(values)))} of {values.size} sites"
    bad = (values < 0) if order % 4 == 2 else (values > 0) if order % 4 == 0 and order else np.zeros(1, bool)
    if not np.any(bad):
        return ""
    kind = "ANTI-DIFFUSION" if order == 2 else "ANTI-HYPER-DIFFUSION" if order == 4 else "destabilising sign"
    return f"{kind} at {int(np.sum(bad))} of {bad.size} sites"


_DT = sp.Symbol("dt", positive=True)


@lru_cache(maxsize=64)
def _derive(ir, K):
    """Moments, cumulants and effective coefficients with Δ, ω, s and dt kept symbolic (cached)."""
    stencil = Stencil(offsets=ir.offsets, weights=ir.weights, fornberg=())
    W = [stencil_moments(stencil, K, SPACING)[k] for k in range(K + 1)]
    kappa = cumulants_from_moments(W)
    coeff = coefficients(cumulants_from_moments(step_moments(W, OMEGA, SLOPE)), _DT)
    args = (*param_symbols(ir), SPACING, OMEGA, SLOPE, _DT)
    evaluate = sp.lambdify(args, [*W, *coeff], modules="numpy")
    return W, kappa, coeff, evaluate


def physics_report(layer, params: dict | None = None, *, spacing=None, omega=None, slope=None,
                   operating_point: float = 0.0, layers: int = 1, dt=1, max_order: int = 4) -> PhysicsReport:
    """The report (see the module docstring). Symbols stay symbolic unless given: ``spacing``
    (Δ), ``omega`` (ω), ``slope`` (default ``f′(operating_point)`` of the activation, by SymPy),
    ``dt``; numeric ``params`` (as for :func:`npdegen.inspect.layer_matrix`) add values per site."""
    ir = as_kernel_ir(layer)
    K = check_order(max_order)
    if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
        raise ValueError(f"layers must be a positive integer, got {layers!r}")
    spacing = _value("spacing", spacing, SPACING)
    omega = _value("omega", omega, OMEGA)
    dt = _value("dt", dt, sp.Integer(1))
    x = next(iter(ir.f.free_symbols))
    s = _value("slope", slope, None)
    if s is None:
        s = sp.simplify(ir.fprime.subs(x, sp.nsimplify(operating_point)))
    W, kappa, coeff, evaluate = _derive(ir, K)
    subs = {SPACING: spacing, OMEGA: omega, SLOPE: s, _DT: dt}
    W = [m.subs(SPACING, spacing) for m in W]
    kappa = [k.subs(SPACING, spacing) for k in kappa]
    coeff = [c.subs(subs) for c in coeff]
    values = moments = None
    if params is not None:
        check_params(ir, params)
        free = {e.name for e in (spacing, omega, s, dt) if isinstance(e, sp.Symbol)}
        free |= {e.name for v in (spacing, omega, s, dt) for e in sp.sympify(v).free_symbols}
        if free:
            raise ValueError("numeric parameters need numeric spacing, omega, slope and dt; "
                             f"still symbolic: {sorted(free)}")
        args = [np.asarray(params[p.name], dtype=float) for p in param_symbols(ir)]
        shape = np.broadcast_shapes(*(a.shape for a in args)) if args else ()
        with np.errstate(all="ignore"):
            out = evaluate(*args, float(spacing), float(omega), float(s), float(dt))
        out = np.stack([np.broadcast_to(np.asarray(v, dtype=float), shape) for v in out], -1).reshape(-1, 2 * (K + 1))
        moments, values = out[:, :K + 1], out[:, K + 1:]
    rows = []
    for m in range(K + 1):
        v = None if values is None else values[:, m]
        name, meaning = describe_term(m, None if v is None or v.size != 1 else v[0])
        rows.append(TermRow(order=m, process=term_name(m), meaning=meaning, moment=W[m], cumulant=kappa[m],
                            coefficient=coeff[m], values=v, moments=None if moments is None else moments[:, m],
                            flag=_flag(m, v)))
    return PhysicsReport(layer=ir.name, layers=layers, dt=dt, omega=omega, slope=s, rows=tuple(rows))
