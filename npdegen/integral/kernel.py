r"""Kernel functions ``W(r)`` (or ``W(q, r)``) of the nonlocal layer, written in SymPy (MODEL.md §1–2).

The layer's integral operator is ``Z(q) = ∫ W(q, r) z(q + r) dr − b(q)`` with the displacement
``r = q′ − q`` (a scalar in 1-D, a vector ``(r_x, r_y, …)`` in N-D). A :class:`Kernel` holds ``W``
as a SymPy expression of ``r``, optionally of the position ``q`` (a heterogeneous kernel) and of
parameters (``σ``, ``ℓ``, an amplitude, …), with the parameters' admissible ranges and, for a
compact kernel, its support ``|r_k| ≤ h`` (a box in N-D; ``W`` is the formula inside it, zero
outside).

Named kernels, each of unit mass (``W_0 = 1``; multiply by an amplitude for a reaction term):

=================  ====================================================  =====================
constructor        ``W(r)`` (1-D; separable products in N-D)             moments
=================  ====================================================  =====================
gaussian(σ, μ)     ``exp(−(r − μ)²/2σ²) / (√(2π) σ)``                    all: W_2 = σ² + μ²
exponential(ℓ)     ``exp(−|r|/ℓ) / (2ℓ)``                                all: W_2 = 2ℓ²
power_law(α, ℓ)    ``(α − 1)/(2ℓ) · (1 + |r|/ℓ)^{−α}``, α > 1             only k < α − 1
top_hat(h)         ``1/(2h)`` on ``|r| ≤ h``                             all: W_2 = h²/3
epanechnikov(h)    ``3/(4h) · (1 − r²/h²)`` on ``|r| ≤ h``               all: W_2 = h²/5
=================  ====================================================  =====================

Arguments are numbers, parameter symbols or expressions of them (``gaussian(sp.exp(s))`` keeps
``σ > 0`` for every ``s``). A number outside its range (``σ ≤ 0``) raises ``ValueError`` at once;
a symbol's range is checked on every parameter value the layer is run with. SymPy integrates
under these ranges: each bounded parameter is replaced by ``bound + d`` with a positive dummy
``d`` (the *template*), the integral is taken, and the result is mapped back.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass

import sympy as sp

from .moments import KernelMoments, explain_kernel, kernel_moments

__all__ = ["Kernel", "Constraint", "kernel", "gaussian", "exponential", "power_law", "top_hat", "epanechnikov"]

_AXES = ("x", "y", "z")
RESERVED_KEYS = ("b", "omega", "x")


@dataclass(frozen=True)
class Constraint:
    """``expr > lower`` (or ``expr < upper``): an admissible range, checked on parameter values."""
    expr: sp.Expr
    lower: object = None
    upper: object = None
    label: str = ""

    def __str__(self):
        what = self.label or sp.sstr(self.expr)
        return (f"{what} > {self.lower}" if self.lower is not None else "") + \
            (" and " if self.lower is not None and self.upper is not None else "") + \
            (f"{what} < {self.upper}" if self.upper is not None else "")


def _symbols(r, what: str) -> tuple:
    if isinstance(r, sp.Symbol):
        return (r,)
    if isinstance(r, (tuple, list)) and r and all(isinstance(v, sp.Symbol) for v in r):
        if len(set(r)) != len(r):
            raise ValueError(f"{what} symbols must be distinct, got {r}")
        return tuple(r)
    raise TypeError(f"{what} must be a SymPy Symbol or a tuple of Symbols (one per axis), got {r!r}")


def _expr(value, what: str) -> sp.Expr:
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{what} must be a SymPy expression or a number, not a string ({value!r}): "
                        "npdegen never parses user strings here")
    if isinstance(value, bool) or not isinstance(value, (numbers.Number, sp.Expr)):
        raise TypeError(f"{what} must be a SymPy expression or a number, got {type(value).__name__}")
    if isinstance(value, numbers.Number) and not isinstance(value, numbers.Real):
        raise TypeError(f"{what} must be real, got {value!r}")
    expr = sp.sympify(value)
    if expr.has(sp.nan, sp.zoo, sp.oo, -sp.oo):
        raise ValueError(f"{what} must be finite, got {expr}")
    if expr.atoms(sp.Derivative) or expr.atoms(sp.core.function.AppliedUndef):
        raise ValueError(f"{what} must be an explicit function (no derivatives or undefined functions): {expr}")
    return expr


class Kernel:
    """A kernel ``W(r)``; build one with :func:`kernel` or a named constructor.

    Attributes: ``r`` (displacement symbols), ``position`` (``q`` symbols of a heterogeneous
    kernel, or ``()``), ``params`` (its parameter symbols, by name), ``support`` (half-width ``h``
    of the box ``|r_k| ≤ h``, or ``None``), ``density`` (the formula inside the support, in the
    user's symbols), ``constraints`` (the parameters' ranges). ``template``/``back``: the same
    formula with every bounded parameter replaced by a positive dummy, and the map back.
    """

    def __init__(self, template, r, back, constraints=(), support=None, position=(), name="kernel"):
        self.r, self.position, self.name = tuple(r), tuple(position), name
        self.template, self.back = template, dict(back)
        self.template_support = support
        self.constraints = tuple(constraints)
        self.density = template.xreplace(self.back)
        self.support = None if support is None else support.xreplace(self.back)
        fixed = set(self.r) | set(self.position)
        free = set(self.density.free_symbols) | (self.support.free_symbols if self.support is not None else set())
        for c in self.constraints:
            free |= c.expr.free_symbols
        self.params = tuple(sorted(free - fixed, key=lambda s: s.name))
        for p in self.params:
            if p.name in RESERVED_KEYS:
                raise ValueError(f"kernel parameter name {p.name!r} is reserved ({', '.join(RESERVED_KEYS)} name "
                                 "the bias, omega and the input); rename it")
        if not self.density.has(*self.r) and self.support is None:
            raise ValueError(f"kernel {self.density} does not depend on r and has no compact support: it is not "
                             "integrable")
        self._moment_cache: dict = {}
        self._check_integrable()

    # ------------------------------------------------------------------ shape
    @property
    def dim(self) -> int:
        return len(self.r)

    @property
    def heterogeneous(self) -> bool:
        """Does ``W`` depend on the position ``q`` (not a convolution)?"""
        return bool(self.position) and self.density.has(*self.position)

    @property
    def W(self) -> sp.Expr:
        """``W`` in the user's symbols: the density, times the indicator of the support if compact."""
        if self.support is None:
            return self.density
        inside = sp.And(*[sp.Abs(rk) <= self.support for rk in self.r])
        return sp.Piecewise((self.density, inside), (0, True))

    def derivative(self, p: sp.Symbol) -> sp.Expr:
        """``∂W/∂p`` inside the support (the layer samples it for the kernel-parameter gradient)."""
        return sp.diff(self.density, p)

    # ------------------------------------------------------------------ physics
    def moments(self, max_order: int = 4) -> KernelMoments:
        """``W_k = ∫ r^k W dr`` for ``k ≤ max_order`` (N-D: ``W_α`` for ``|α| ≤ max_order``), closed
        forms from SymPy, with the divergent ones listed (:class:`~npdegen.integral.moments.KernelMoments`)."""
        return kernel_moments(self, max_order)

    def explain(self, max_order: int = 4, coordinates=None):
        """Physics table moment → process (reaction, advection, diffusion, …; docs/theory.md §2)."""
        if coordinates is None:      # r_x, r_y name the axes x, y
            coordinates = [sp.Symbol(rk.name[2:]) if rk.name.startswith("r_") else rk for rk in self.r]
        return explain_kernel(self, max_order, coordinates)

    def _check_integrable(self):
        m = kernel_moments(self, 0)
        key = 0 if self.dim == 1 else (0,) * self.dim
        if key in m.divergent:
            raise ValueError(f"kernel W = {self.W} is not integrable: ∫ W dr diverges (SymPy: "
                             f"{sp.sstr(m.all_values[key])}); a layer kernel needs a finite mass W_0")
        self.mass_condition = m.conditions.get(key, sp.true)

    # ------------------------------------------------------------------ algebra
    def _combine(self, template, back, constraints, name):
        return Kernel(template, self.r, back, constraints, self.template_support, self.position, name)

    def __mul__(self, c):
        c = _expr(c, "kernel factor")
        if c.has(*self.r):
            raise ValueError("a kernel factor must not depend on r; write the product into W instead")
        dummies = {p: sp.Dummy(p.name, real=True) for p in c.free_symbols - set(self.position)}
        template = c.xreplace(dummies) * self.template
        return self._combine(template, {**self.back, **{d: p for p, d in dummies.items()}}, self.constraints,
                             f"{c}*{self.name}")

    __rmul__ = __mul__

    def __neg__(self):
        return self * -1

    def __add__(self, other):
        if not isinstance(other, Kernel):
            return NotImplemented
        if other.r != self.r or other.position != self.position:
            raise ValueError("kernels added must use the same r (and position) symbols")
        if (self.support is None) != (other.support is None) or (
                self.support is not None and sp.simplify(self.support - other.support) != 0):
            raise ValueError("kernels added must have the same support (both unbounded, or the same half-width)")
        # both supports map back to the same half-width, so integrating the other term over this
        # template's support dummy is exact once the dummies are mapped back
        template = self.template + other.template
        return self._combine(template, {**other.back, **self.back}, self.constraints + other.constraints,
                             f"{self.name}+{other.name}")

    def __sub__(self, other):
        return self + (-other)

    def __repr__(self):
        where = f", support |r| <= {self.support}" if self.support is not None else ""
        return f"Kernel({self.name}: W = {self.density}{where}; params {', '.join(p.name for p in self.params) or '-'})"


# ---------------------------------------------------------------------- user kernels
def _bounds(p, spec):
    if spec is None:
        if p.is_positive or p.is_nonnegative:
            return 0, None
        if p.is_negative or p.is_nonpositive:
            return None, 0
        return None, None
    if not (isinstance(spec, (tuple, list)) and len(spec) == 2):
        raise TypeError(f"params[{p}] must be None or a (lower, upper) pair of bounds (None = unbounded), got {spec!r}")
    lo, hi = (None if v is None else _expr(v, f"bound of {p}") for v in spec)
    if lo is not None and hi is not None and not bool(lo < hi):
        raise ValueError(f"params[{p}]: lower bound {lo} is not below the upper bound {hi}")
    return lo, hi


def _template_for(p, lo, hi):
    """``(value in the template, dummy, back value)`` for a parameter with bounds (lo, hi)."""
    if lo is not None:
        d = sp.Dummy(f"{p.name}_", positive=True)
        return lo + d, d, p - lo
    if hi is not None:
        d = sp.Dummy(f"{p.name}_", positive=True)
        return hi - d, d, hi - p
    d = sp.Dummy(p.name, real=True)
    return d, d, p


def kernel(W, r, params=None, position=None, support=None, name="kernel") -> Kernel:
    """A kernel from a SymPy expression ``W`` of the displacement ``r``.

    Parameters
    ----------
    W : sympy.Expr — the kernel (inside its support if ``support`` is given).
    r : Symbol, or a tuple of Symbols in N-D (one per grid axis).
    params : every other free symbol of ``W`` (but ``position``): a sequence of symbols, or a dict
        ``{symbol: (lower, upper)}`` of strict bounds (``None`` = unbounded). Default: the free
        symbols, ranges from their assumptions (``Symbol("s", positive=True)`` means ``s > 0``).
    position : Symbol (tuple in N-D) ``q`` of a heterogeneous kernel ``W(q, r)``.
    support : half-width ``h`` of a compact kernel (``|r_k| ≤ h``; must be > 0).

    Raises ``ValueError`` for a kernel that is not integrable (``∫ W dr`` diverges), a symbol that
    is neither ``r``, a position nor a parameter, or a bad support.
    """
    r = _symbols(r, "r")
    W = _expr(W, "W")
    position = () if position is None else _symbols(position, "position")
    if position and len(position) != len(r):
        raise ValueError(f"position must have one symbol per axis ({len(r)}), got {position}")
    if set(position) & set(r):
        raise ValueError("position and r must be different symbols")
    support = None if support is None else _expr(support, "support")
    free = (W.free_symbols | (support.free_symbols if support is not None else set())) - set(r) - set(position)
    if support is not None and support.has(*r, *position):
        raise ValueError("the support half-width must not depend on r or the position")
    if params is None:
        params = {p: None for p in free}
    elif isinstance(params, dict):
        params = dict(params)
    else:
        params = {p: None for p in params}
    for p in params:
        if not isinstance(p, sp.Symbol):
            raise TypeError(f"kernel parameters must be SymPy Symbols, got {p!r}")
    stray = free - set(params)
    if stray:
        raise ValueError(f"symbol(s) {', '.join(sorted(s.name for s in stray))} in W are neither r, the position nor "
                         "listed in params")
    subs, back, constraints = {}, {}, []
    for p in sorted(params, key=lambda s: s.name):
        lo, hi = _bounds(p, params[p])
        value, d, inverse = _template_for(p, lo, hi)
        subs[p], back[d] = value, inverse
        if lo is not None or hi is not None:
            constraints.append(Constraint(p, lo, hi, p.name))
    for q in position:
        d = sp.Dummy(q.name, real=True)
        subs[q], back[d] = d, q
    template_support = None
    if support is not None:
        if support.is_positive is False:
            raise ValueError(f"support half-width must be > 0, got {support}")
        template_support = support.xreplace(subs)
        if template_support.is_positive is not True:
            constraints.append(Constraint(support, 0, None, "support"))
            d = sp.Dummy("h_", positive=True)
            back[d] = support
            template_support = d
    return Kernel(W.xreplace(subs), r, back, constraints, template_support, position, name)


# ---------------------------------------------------------------------- named kernels
def _argument(value, label: str, lower=None):
    """``(template value, back map, constraints)`` for a constructor argument with range ``> lower``."""
    expr = _expr(value, label)
    if expr.free_symbols == set():
        if lower is not None and not bool(expr > lower):
            raise ValueError(f"{label} must be > {lower}, got {expr}")
        return expr, {}, []
    if lower is None:
        d = sp.Dummy(label, real=True)
        return d, {d: expr}, []
    if (expr - lower).is_positive is False or (expr - lower).is_zero:
        raise ValueError(f"{label} = {expr} is never > {lower}")
    d = sp.Dummy(f"{label}_", positive=True)
    return lower + d, {d: expr - lower}, [Constraint(expr, sp.sympify(lower), None, label)]


def _displacement(r, dim):
    if r is not None:
        r = _symbols(r, "r")
        if dim is not None and dim != len(r):
            raise ValueError(f"dim = {dim} but r has {len(r)} symbols")
        return r
    dim = 1 if dim is None else dim
    if dim not in (1, 2, 3):
        raise ValueError(f"dim must be 1, 2 or 3, got {dim!r}")
    return (sp.Symbol("r", real=True),) if dim == 1 else tuple(sp.Symbol(f"r_{a}", real=True) for a in _AXES[:dim])


def _per_axis(value, dim, label):
    if isinstance(value, (tuple, list)):
        if len(value) != dim:
            raise ValueError(f"{label} needs one value per axis ({dim}), got {value!r}")
        return [(v, f"{label}_{_AXES[k]}") for k, v in enumerate(value)]
    return [(value, label)] * dim


def _named(name, dim_r, args, build, support_arg=None):
    """Assemble a separable named kernel: ``args`` = [(values per axis, label, lower)]; ``build(rk, *a)``
    is the 1-D factor for axis ``k``."""
    r = dim_r
    back, constraints, per_axis_values, cache = {}, [], [], {}
    for value, label, lower in args:
        axis_values = []
        for v, lab in _per_axis(value, len(r), label):
            key = (lab, sp.srepr(_expr(v, lab)) if not isinstance(v, (str, bytes)) else v)
            if key not in cache:
                t, b, c = _argument(v, lab, lower)
                cache[key] = t
                back.update(b)
                constraints += c
            axis_values.append(cache[key])
        per_axis_values.append(axis_values)
    template = sp.Integer(1)
    for k, rk in enumerate(r):
        template *= build(rk, *[vals[k] for vals in per_axis_values])
    support = None
    if support_arg is not None:
        support = per_axis_values[support_arg][0]
        if any(v != support for v in per_axis_values[support_arg]):
            raise ValueError(f"{name}: compact kernels take one half-width for every axis")
    return Kernel(template, r, back, constraints, support, (), name)


def gaussian(sigma, shift=0, r=None, dim=None) -> Kernel:
    """``W(r) = exp(−(r − μ)²/2σ²)/(√(2π) σ)`` (a product over axes in N-D; ``sigma`` and ``shift``
    may be one value per axis): ``W_0 = 1``, ``W_1 = μ`` (advection with velocity −μ), ``W_2 = σ² + μ²``."""
    r = _displacement(r, dim)
    return _named("gaussian", r, [(sigma, "sigma", 0), (shift, "mu", None)],
                  lambda rk, s, m: sp.exp(-(rk - m) ** 2 / (2 * s ** 2)) / (sp.sqrt(2 * sp.pi) * s))


def exponential(length, r=None, dim=None) -> Kernel:
    """``W(r) = exp(−|r|/ℓ)/(2ℓ)`` (Laplace; a product over axes in N-D): ``W_k = k! ℓ^k`` for even k."""
    r = _displacement(r, dim)
    return _named("exponential", r, [(length, "ell", 0)], lambda rk, l: sp.exp(-sp.Abs(rk) / l) / (2 * l))


def power_law(alpha, length=1, r=None, dim=None) -> Kernel:
    """``W(r) = (α − 1)/(2ℓ) (1 + |r|/ℓ)^{−α}`` with ``α > 1`` (a product over axes in N-D): only the
    moments ``k < α − 1`` converge — for ``α = 7/2``, ``W_0, W_1, W_2``."""
    r = _displacement(r, dim)
    return _named("power_law", r, [(alpha, "alpha", 1), (length, "ell", 0)],
                  lambda rk, a, l: (a - 1) / (2 * l) * (1 + sp.Abs(rk) / l) ** (-a))


def top_hat(h, r=None, dim=None) -> Kernel:
    """``W(r) = 1/(2h)`` on ``|r| ≤ h`` (a box of side ``2h`` in N-D): ``W_2 = h²/3``."""
    r = _displacement(r, dim)
    return _named("top_hat", r, [(h, "h", 0)], lambda rk, hk: 1 / (2 * hk), support_arg=0)


def epanechnikov(h, r=None, dim=None) -> Kernel:
    """``W(r) = 3/(4h) (1 − r²/h²)`` on ``|r| ≤ h`` (a product over axes in N-D): ``W_2 = h²/5``."""
    r = _displacement(r, dim)
    return _named("epanechnikov", r, [(h, "h", 0)], lambda rk, hk: 3 / (4 * hk) * (1 - rk ** 2 / hk ** 2),
                  support_arg=0)
