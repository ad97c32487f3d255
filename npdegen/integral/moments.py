r"""Moments of a kernel function, in closed form where SymPy can integrate (MODEL.md §2).

.. math::  W_k = \int r^k\, W(r)\, dr, \qquad
           W_α = \int \prod_k r_k^{α_k}\, W(r)\, d^d r \quad (\text{N-D, multi-index } α),

over the kernel's support (the real line, or ``[−h, h]`` per axis for a compact kernel), with no
``1/k!`` (npdegen's convention: ``∫ W(r) z(q + r) dr ≈ Σ_k W_k/k! ∂^k z``).

How convergence is decided. Every integral is split into orthants: ``r_k = ±s_k`` with ``s_k > 0``,
so each piece ``∫_0^∞ s^k W(±s) ds`` has a sign-definite integrand wherever ``W`` keeps one sign
(every named kernel; the tails of any positive kernel). SymPy returns such a piece as a closed form
(convergent), ``∞`` (divergent) or a closed form valid under a condition on the parameters (e.g.
``α > k + 1`` for a power law with a symbolic exponent); a moment converges when every orthant
does. An oscillating integrand without a limit (``∫ sin``) counts as divergent; one SymPy cannot
integrate is reported as undecided and kept as an unevaluated ``Integral``. A power law
``W ∝ (1 + |r|/ℓ)^{−α}`` has exactly the moments ``k < α − 1``: "the finite number of convergent
moments".
"""
from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from itertools import product

import sympy as sp

from ..derive.moments import multi_indices
from ..derive.physics import PhysicsTable, explain_moments, explain_tensor_moments

__all__ = ["KernelMoments", "kernel_moments", "explain_kernel"]

_INFINITE = (sp.oo, -sp.oo, sp.zoo, sp.nan)


def _classify(value) -> str:
    """'divergent' | 'undecided' | 'ok' for one integration result."""
    if value in _INFINITE or any(value.has(v) for v in _INFINITE) or value.has(sp.AccumBounds):
        return "divergent"
    if value.has(sp.Integral):
        return "undecided"
    return "ok"


def _diverges(expr, s, upper) -> bool:
    """A quick proof of divergence before integrating (SymPy spends minutes on some divergent
    integrals): ``s·g(s)`` not tending to 0 at an end means ``|g| ≳ c/s`` there."""
    ends = [0] if upper is not sp.oo else [0, sp.oo]
    for end in ends:
        try:
            lim = sp.limit(s * expr, s, end, "+" if end == 0 else "-")
        except Exception:  # noqa: BLE001 - undecidable limits (symbolic exponents): let integrate decide
            continue
        if not lim.has(sp.AccumBounds) and lim.is_zero is False:
            return True
    return False


def _integrate(expr, s, upper):
    """``∫_0^upper expr ds`` → ``(value, condition)``."""
    if _diverges(expr, s, upper):
        return sp.oo, sp.true
    try:
        res = sp.integrate(expr, (s, 0, upper), conds="separate")
    except Exception:  # noqa: BLE001 - SymPy's integrators raise assorted internal errors: undecided
        return sp.Integral(expr, (s, 0, upper)), sp.true
    if isinstance(res, tuple):
        return res
    return res, sp.true


@dataclass
class KernelMoments(Mapping):
    """``{k: W_k}`` (1-D) or ``{α: W_α}`` (N-D) of the convergent moments, and which diverge.

    ``divergent``: the orders whose integral diverges; ``conditions``: ``{order: condition}`` for
    moments that SymPy found convergent only under a condition on the parameters (the value holds
    under it; e.g. ``alpha > 3``); ``undecided``: orders SymPy could not integrate (their value is
    the unevaluated ``Integral``). ``all_values`` also holds the divergent ones (``oo``, or ``nan``
    where the two tails cancel formally, ∞ − ∞).
    """
    dim: int
    max_order: int
    finite: dict
    divergent: tuple
    conditions: dict = field(default_factory=dict)
    undecided: tuple = ()
    all_values: dict = field(default_factory=dict, repr=False)

    def __getitem__(self, key):
        if key in self.divergent:
            raise KeyError(f"moment {key} of this kernel diverges (see .divergent)")
        return self.finite[key]

    def __iter__(self):
        return iter(self.finite)

    def __len__(self):
        return len(self.finite)

    @property
    def convergent(self) -> tuple:
        """The orders with a finite moment (unconditionally or under :attr:`conditions`)."""
        return tuple(k for k in self.finite if k not in self.undecided)

    def __str__(self) -> str:
        name = (lambda k: f"W_{k}") if self.dim == 1 else (lambda a: "W_(" + ",".join(map(str, a)) + ")")
        lines = [f"{name(k)} = {sp.sstr(v)}"
                 + (f"   (if {sp.sstr(self.conditions[k])})" if k in self.conditions else "")
                 + ("   (undecided: SymPy could not integrate)" if k in self.undecided else "")
                 for k, v in self.finite.items()]
        if self.divergent:
            lines.append("diverge: " + ", ".join(name(k) for k in self.divergent)
                         + f" — {len(self.convergent)} of the {len(self.all_values)} moments up to order "
                         f"{self.max_order} converge")
        return "\n".join(lines)


@functools.lru_cache(maxsize=256)
def _even_axes(template, r) -> tuple:
    """Per axis: is ``W`` even in ``r_k`` (then odd moments along it vanish and one half suffices)?"""
    return tuple(sp.simplify(template.xreplace({rk: -rk}) - template) == 0 for rk in r)


def _orthant_moment(template, r, s, upper, alpha, signs):
    """``∫_{orthant} Π (σ_k s_k)^{α_k} W(σ s) ds`` iterated over the axes → (value, condition, status)."""
    expr = template.xreplace({rk: sg * sk for rk, sg, sk in zip(r, signs, s)})
    for ak, sk in zip(alpha, s):
        expr = expr * sk ** ak
    sign = sp.Integer(1)
    for ak, sg in zip(alpha, signs):
        sign *= sp.Integer(sg) ** ak
    condition = sp.true
    for sk in s:
        expr, cond = _integrate(expr, sk, upper)
        condition = sp.And(condition, cond)
        status = _classify(expr)
        if status != "ok" or condition == sp.false:
            return sign * expr, condition, ("divergent" if condition == sp.false else status)
    return sign * expr, condition, "ok"


def _exact(expr):
    """Floats as rationals: SymPy's definite integrators stumble on float exponents (3.5 -> 7/2)."""
    return expr.xreplace({f: sp.nsimplify(f, rational=True) for f in expr.atoms(sp.Float)})


def _one_moment(template, r, upper, alpha: tuple, even: tuple):
    """``(value, condition, status)`` of ``W_α`` of ``template`` over the orthants, in template symbols."""
    s = tuple(sp.Dummy(f"s{k}", positive=True) for k in range(len(r)))
    total, condition, status = sp.Integer(0), sp.true, "ok"
    choices = [(1,) if ev else (1, -1) for ev in even]
    for signs in product(*choices):
        value, cond, st = _orthant_moment(template, r, s, upper, alpha, signs)
        factor = sp.Integer(1)
        for ak, ev in zip(alpha, even):
            if ev:
                factor *= 1 + sp.Integer(-1) ** ak
        total += factor * value if factor != 0 or st == "ok" else sp.nan
        condition = sp.And(condition, cond)
        if st == "divergent":
            status = "divergent"
        elif st == "undecided" and status == "ok":
            status = "undecided"
    return total, condition, status


def _canonical(*exprs):
    """Dummies renamed to symbols by (name, creation order): equal kernels built twice share a key."""
    dummies = sorted(set().union(*(e.atoms(sp.Dummy) for e in exprs)), key=lambda d: (d.name, d.dummy_index))
    forward = {d: sp.Symbol(f"{d.name}_{i}_", **d.assumptions0) for i, d in enumerate(dummies)}
    return forward, {v: k for k, v in forward.items()}


@functools.lru_cache(maxsize=1024)
def _shared_moment(template, r, upper, alpha, even):
    """:func:`_one_moment` cached across kernel instances (SymPy integration is the slow part)."""
    return _one_moment(template, r, upper, alpha, even)


def _separate(template, r):
    """``[f_0(r_0), …]`` with ``template = Π f_k`` if it factors over the axes, else ``None``."""
    factors = [sp.Integer(1)] * len(r)
    for arg in sp.Mul.make_args(template):
        axes = [k for k, rk in enumerate(r) if arg.has(rk)]
        if len(axes) > 1:
            return None
        factors[axes[0] if axes else 0] *= arg
    return factors


def _moment(kernel, cache, alpha):
    """``W_α`` in template symbols; a separable N-D kernel as the product of its 1-D factors' moments."""
    upper = _exact(sp.oo if kernel.template_support is None else kernel.template_support)
    if "factors" not in cache:
        template = _exact(kernel.template)
        factors = _separate(template, kernel.r) if kernel.dim > 1 else None
        cache["factors"] = factors or [template]
        rs = [(rk,) for rk in kernel.r] if factors else [kernel.r]
        cache["axes"] = rs
        cache["even"] = [_even_axes(f.xreplace(_canonical(f)[0]), rk) for f, rk in zip(cache["factors"], rs)]
    parts = [alpha] if len(cache["factors"]) == 1 else [(a,) for a in alpha]
    value, condition, status = sp.Integer(1), sp.true, "ok"
    for k, (f, rk, even, part) in enumerate(zip(cache["factors"], cache["axes"], cache["even"], parts)):
        key = ("factor", k, part)
        if key not in cache:
            forward, back = _canonical(f, upper)
            v, c, st = _shared_moment(f.xreplace(forward), rk, upper.xreplace(forward), part, even)
            cache[key] = (v.xreplace(back), c.xreplace(back) if c not in (True, False) else c, st)
        v, c, st = cache[key]
        value, condition = value * v, sp.And(condition, c)
        status = "divergent" if "divergent" in (status, st) else ("undecided" if "undecided" in (status, st) else "ok")
    return value, condition, status


def _clean(expr):
    try:
        return sp.simplify(sp.gammasimp(expr))
    except (TypeError, ValueError, NotImplementedError):   # pragma: no cover - SymPy corner cases
        return expr


def kernel_moments(kernel, max_order: int) -> KernelMoments:
    """The moments of ``kernel`` up to total order ``max_order`` (cached on the kernel)."""
    if not isinstance(max_order, int) or isinstance(max_order, bool) or max_order < 0:
        raise ValueError(f"max_order must be an integer >= 0, got {max_order!r}")
    cache = kernel._moment_cache
    orders = list(range(max_order + 1)) if kernel.dim == 1 else multi_indices(kernel.dim, max_order)
    values, divergent, conditions, undecided, everything = {}, [], {}, [], {}
    for order in orders:
        alpha = (order,) if kernel.dim == 1 else order
        if order not in cache:
            value, cond, status = _moment(kernel, cache, alpha)
            value = value.xreplace(kernel.back)
            cond = sp.simplify(cond.xreplace(kernel.back)) if cond not in (sp.true, True) else sp.true
            if cond == sp.false:
                status = "divergent"
            cache[order] = (_clean(value) if status == "ok" else value, cond, status)
        value, cond, status = cache[order]
        everything[order] = value
        if status == "divergent":
            divergent.append(order)
            continue
        values[order] = value
        if cond != sp.true:
            conditions[order] = cond
        if status == "undecided":
            undecided.append(order)
    return KernelMoments(kernel.dim, max_order, values, tuple(divergent), conditions, tuple(undecided), everything)


def explain_kernel(kernel, max_order: int, coordinates=None) -> PhysicsTable:
    """The physics table of :mod:`npdegen.derive.physics` for the kernel's moments; divergent
    moments stay in the table (value ``oo`` or ``nan``) with the process marked "(diverges)"."""
    m = kernel_moments(kernel, max_order)
    if kernel.dim == 1:
        table = explain_moments(m.all_values)
    else:
        table = explain_tensor_moments(m.all_values, coordinates or kernel.r)
    rows = []
    for row in table.rows:
        if row.order in m.divergent:
            row = replace(row, process=f"{row.process} (diverges)",
                          meaning="the moment diverges: the kernel's tail gives no PDE term of this order")
        elif row.order in m.conditions:
            row = replace(row, meaning=f"{row.meaning}; finite only if {sp.sstr(m.conditions[row.order])}")
        rows.append(row)
    return PhysicsTable(tuple(rows))
