r"""Stability certificate of a layer for given parameters (MODEL.md §5).

``stability(layer, params, spacing=…, omega=…, slope=1)`` linearises ``f`` at slope ``s`` and
checks, with frozen coefficients per site (and per layer for the time-dependent family):

* **von Neumann**: ``|G(θ)| ≤ 1`` for all θ, ``G`` derived with SymPy
  (:mod:`npdegen.inspect.vonneumann`); gives the admissible range ``0 < ω ≤ ω_max`` and names
  the binding constraint. For homogeneous ADR with r = 0, s = 1: ``ω c² ≤ 2d`` and ``ω d ≤ 1/2``.
  This decides ``.stable``.
* **positivity / Markov**: the step matrix ``(1 − ω)I + ωsW`` is non-negative (off-diagonal
  ``s w_j ≥ 0``, diagonal ``1 − ω + ωs w_0 ≥ 0``) — a monotone, maximum-principle scheme — and
  Markov (stochastic) when its rows also sum to 1 (``s W_0 = 1``).
* **cell Péclet** ``Pe = 2|Σ j w_j| / Σ j² w_j`` (= ``|U|Δ/D`` for ADR; ≤ 2 ⇔ A, B ≥ 0).
* **conservation**: ``Σ z`` is conserved iff every column of the step matrix sums to 1.

N-D and nonlinear layers get the numeric certificate of :mod:`.stability_nd`; nonlocal layers
(:class:`npdegen.NonlocalPDE` and its network) that of :mod:`.stability_nonlocal` (the kernel's
sampled DFT: the exact l2 gain per layer on periodic grids, a Schur bound otherwise).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from numbers import Real

import numpy as np
import sympy as sp

from ..derive.stencil import SPACING
from ..runtime.network import Network
from ._format import fmt_expr, fmt_number
from .stability_nd import step_stability
from .stability_nonlocal import is_nonlocal, nonlocal_stability
from .matrix import as_kernel_ir, layer_matrix, layer_weights, param_symbols
from .vonneumann import OMEGA, SLOPE, amplification_factor, mode_limits

__all__ = ["Constraint", "Stability", "stability", "activation_slope", "stability_monitor"]

_TOL = 1e-9


@dataclass(frozen=True)
class Constraint:
    """One named condition: admissible ``0 < ω ≤ omega_max``; ``site`` indexes the parameters."""
    name: str
    omega_max: float
    satisfied: bool
    site: tuple = ()


@dataclass(frozen=True)
class Stability:
    """The certificate; ``str()`` is a readable report, ``to_dict()`` JSON-ready."""
    stable: bool
    binding: str
    omega: float
    slope: float
    omega_range: tuple
    constraints: tuple
    theta: np.ndarray = field(repr=False)
    gain: np.ndarray = field(repr=False)          # max over sites of |G(θ)| on theta
    max_gain: float = 0.0
    positive: bool = False
    markov: bool = False
    omega_positive_max: float = 0.0
    peclet: float = 0.0
    conservative: bool = False
    column_sum_error: float = 0.0
    heterogeneous: bool = False
    _G_generic: sp.Expr = field(default=sp.S.Zero, repr=False)
    _G_subs: tuple = field(default=(), repr=False)

    @property
    def G(self) -> sp.Expr:
        """The SymPy amplification factor ``G(θ)`` at these values (parameters kept symbolic when
        they vary by site)."""
        return self._G_generic.subs(dict(self._G_subs))

    def __str__(self) -> str:
        lo, hi = self.omega_range
        lines = [f"{'STABLE' if self.stable else 'UNSTABLE'} at omega = {self.omega:g}, slope f' = {self.slope:g}"
                 + (" (frozen coefficients per site)" if self.heterogeneous else ""),
                 f"  binding constraint: {self.binding}",
                 f"  admissible omega: ({lo:g}, {hi:g}]   max |G| = {self.max_gain:.6g}",
                 f"  G(theta) = {fmt_expr(sp.N(self.G, 6))}"]
        for c in self.constraints:
            lines.append(f"  [{'ok' if c.satisfied else 'VIOLATED'}] {c.name}: omega <= {c.omega_max:.6g}"
                         + (f" (site {c.site})" if c.site else ""))
        pos = (f"holds for omega <= {self.omega_positive_max:.6g}" if self.omega_positive_max > 0
               else "never: some off-diagonal weight s*w_j < 0")
        lines += [f"  positivity (monotone, maximum principle): {'yes' if self.positive else 'no'}; {pos}"
                  + ("; Markov (stochastic rows)" if self.markov else ""),
                  f"  cell Peclet number: {fmt_number(self.peclet)} ({'<=' if self.peclet <= 2 else '>'} 2)",
                  f"  conserves sum(z): {'yes' if self.conservative else 'no'} "
                  f"(max |column sum - 1| = {fmt_number(self.column_sum_error, 3, scale=1.0)})"]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        num = lambda v: None if not np.isfinite(v) else float(v)
        return {"stable": self.stable, "binding": self.binding, "omega": self.omega, "slope": self.slope,
                "omega_range": [num(v) for v in self.omega_range], "max_gain": num(self.max_gain),
                "G": sp.sstr(self.G),
                "constraints": [{"name": c.name, "omega_max": num(c.omega_max), "satisfied": c.satisfied,
                                 "site": list(c.site)} for c in self.constraints],
                "positive": self.positive, "markov": self.markov,
                "omega_positive_max": num(self.omega_positive_max), "peclet": num(self.peclet),
                "conservative": self.conservative, "column_sum_error": num(self.column_sum_error),
                "frozen_coefficients": self.heterogeneous}


@lru_cache(maxsize=64)
def _generic_G(ir):
    return amplification_factor(ir.offsets, ir.weights)


def activation_slope(layer, operating_point: float = 0.0) -> float:
    """``f′(x0)``, by SymPy, of the layer's activation at the pre-activation value ``x0``."""
    ir = as_kernel_ir(layer)
    x = next(iter(ir.f.free_symbols))
    value = sp.lambdify(x, ir.fprime, modules="numpy")(float(operating_point))
    return float(value)


def _number(name, v, positive=True):
    if isinstance(v, sp.Basic) and v.is_number:
        v = float(v)
    if isinstance(v, np.ndarray) and v.shape == ():
        v = v.item()
    if not isinstance(v, Real) or isinstance(v, bool) or not np.isfinite(float(v)) or (positive and v <= 0):
        raise ValueError(f"{name} must be a {'positive ' if positive else ''}finite number, got {v!r}")
    return float(v)


def _names(ir, w):
    j = np.asarray(ir.offsets, dtype=float)
    return {"reaction": "reaction (theta = 0): |1 + omega(s*W0 - 1)| <= 1",
            "growth": "growth (theta = 0): s*W0 > 1 amplifies the mean for every omega",
            "long-wave": "long-wave advection vs diffusion (theta -> 0): omega*s*c^2 <= 2d",
            "anti-diffusion": "anti-diffusion (theta -> 0): s*W2 < 0 is unstable for every omega",
            "no-diffusion": "advection without diffusion (theta -> 0): W2 = 0 is unstable for every omega",
            "pi": "grid-scale checkerboard (theta = pi): |1 + omega(s*W(pi) - 1)| <= 1"
                  + (" (ADR: omega*d <= 1/2)" if np.array_equal(j, [-1, 0, 1]) else "")}


def _constraints(ir, lim, w, omega, shape):
    names = _names(ir, w)
    site = lambda i: tuple(int(v) for v in np.unravel_index(i, shape)) if shape else ()
    out = []
    i = int(np.argmin(lim.zero))
    limit = float(lim.zero[i])
    out.append(Constraint(names[str(lim.zero_kind[i])], limit, bool(omega <= limit * (1 + _TOL)), site(i)))
    i = int(np.argmin(lim.pi))
    out.append(Constraint(names["pi"], float(lim.pi[i]), bool(omega <= lim.pi[i] * (1 + _TOL)), site(i)))
    i = int(np.argmin(lim.interior))
    if lim.interior[i] < min(c.omega_max for c in out) * (1 - 1e-6):   # an interior mode binds
        t = float(lim.theta_star[i])
        name = f"interior mode theta* = {t:.4g} (wavelength {2 * np.pi / t:.4g} cells)"
        out.append(Constraint(name, float(lim.interior[i]), bool(omega <= lim.interior[i] * (1 + _TOL)), site(i)))
    return out


def stability(layer, params: dict, spacing: float | None = None, omega: float | None = None,
              slope: float = 1.0, operating_point: float | None = None, n: int | None = None,
              boundary: str | None = None) -> Stability:
    """Certify the layer's linearised step for these parameters (see the module docstring).

    ``layer``: a NeuralPDE, KernelIR or Network (a Network supplies spacing, ω, n, boundary
    defaults, and ``params["omega"]`` when ω is trained). ``slope`` is ``f′`` at the operating
    point; pass ``operating_point=x0`` to use ``f′(x0)`` of the layer's activation instead.
    A nonlocal layer (``NonlocalPDE`` with ``n=``, or its ``NonlocalNetwork``) gets a
    :class:`~.stability_nonlocal.NonlocalStability`.
    """
    if is_nonlocal(layer):
        return nonlocal_stability(layer, params, spacing=spacing, omega=omega, slope=slope,
                                  operating_point=operating_point, n=n, boundary=boundary)
    step_layer = _step_layer(layer)
    if step_layer is not None:          # N-D, nonlinear, ...: the numeric certificate of the step IR
        net = layer if isinstance(layer, Network) else None
        if omega is None:
            omega = float(params["omega"]) if "omega" in params else getattr(net, "omega", 1.0)
        if hasattr(step_layer, "certificate"):      # flux-form layers: their CFL certificate
            return step_layer.certificate({k: v for k, v in params.items() if k not in ("b", "omega")},
                                          spacing if spacing is not None else getattr(net, "spacing", 1.0),
                                          omega=omega)
        return step_stability(step_layer, {k: v for k, v in params.items() if k not in ("b", "omega")},
                              spacing=spacing if spacing is not None else getattr(net, "spacing", 1.0),
                              omega=omega, slope=slope,
                              boundary=boundary or (net.options.boundary if net is not None else "periodic"))
    ir = as_kernel_ir(layer)
    net = layer if isinstance(layer, Network) else None
    spacing = _number("spacing", spacing if spacing is not None else getattr(net, "spacing", 1.0))
    if omega is None:
        omega = np.asarray(params["omega"]) if isinstance(params, dict) and "omega" in params \
            else getattr(net, "omega", 1.0)
    omega = _number("omega", omega)
    s = activation_slope(ir, operating_point) if operating_point is not None else _number("slope", slope, False)
    offsets, w = layer_weights(ir, params, spacing)
    shape = w.shape[:-1]
    flat = w.reshape(-1, len(offsets))
    lim = mode_limits(offsets, flat, omega, s)
    constraints = _constraints(ir, lim, flat, omega, shape)
    binding = min(constraints, key=lambda c: c.omega_max)
    omega_max = binding.omega_max
    # positivity / Markov / Péclet
    j = np.asarray(offsets)
    off = s * flat[:, j != 0]
    diag = s * flat[:, j == 0].sum(axis=1)
    offdiag_ok = bool(np.all(off >= -_TOL)) if off.size else True
    with np.errstate(divide="ignore"):
        pos_max = float(np.min(np.where(diag < 1, 1 / (1 - diag), np.inf))) if offdiag_ok else 0.0
    row = s * flat.sum(axis=1)
    m1, m2 = flat @ j, flat @ j**2.0
    m1 = np.where(np.abs(m1) <= 1e-12 * (np.abs(flat) @ np.abs(j)), 0.0, m1)   # round-off of symmetric weights
    with np.errstate(divide="ignore", invalid="ignore"):
        pe = np.where(m2 > 0, 2 * np.abs(m1) / m2, np.where(m1 == 0, 0.0, np.inf))
    # conservation: column sums of the assembled step matrix
    n = n if n is not None else (shape[-1] if shape else max(32, 2 * max(abs(int(v)) for v in j) + 1))
    boundary = boundary or (net.options.boundary if net is not None else "periodic")
    layers = range(shape[0]) if len(shape) == 2 else [None]
    colsum = np.concatenate([layer_matrix(ir, params, n, spacing, boundary, t).sum(axis=0) for t in layers])
    col_err = float(np.max(np.abs(1 - omega + omega * s * colsum - 1)))
    subs = [(SLOPE, s), (OMEGA, omega), (SPACING, spacing)]
    if not shape:
        subs += [(sym, float(np.asarray(params[sym.name]))) for sym in param_symbols(ir)]
    return Stability(
        stable=bool(omega <= omega_max * (1 + _TOL)), binding=binding.name, omega=omega, slope=s,
        omega_range=(0.0, float(omega_max)), constraints=tuple(constraints), theta=lim.theta,
        gain=lim.gain.max(axis=0), max_gain=float(lim.gain.max()),
        positive=offdiag_ok and omega <= pos_max * (1 + _TOL), omega_positive_max=pos_max,
        markov=offdiag_ok and omega <= pos_max * (1 + _TOL) and bool(np.all(np.abs(row - 1) <= 1e-12)),
        peclet=float(pe.max()), conservative=col_err <= 1e-12, column_sum_error=col_err,
        heterogeneous=bool(shape), _G_generic=_generic_G(ir), _G_subs=tuple(subs))


def _step_layer(layer):
    """The NeuralPDE of an N-D, nonlinear, ... layer or network, else None (a 1-D linear layer: the
    1-D description of :mod:`.matrix` certifies it)."""
    if isinstance(layer, Network):
        if layer.recipe is None:
            raise TypeError("this Network was not made by NeuralPDE.compile: certify its layer instead")
        layer = layer.recipe[0]
    return layer if getattr(layer, "_linear_1d", True) is False else None


def stability_monitor(net, every: int = 1):
    """A callable ``monitor(theta) -> str | None`` for training: it returns a warning message the
    first time the parameters leave the stable region (checked every ``every`` calls), else None."""
    state = {"calls": 0, "warned": False}

    def monitor(theta):
        state["calls"] += 1
        if state["warned"] or (state["calls"] - 1) % every:
            return None
        cert = stability(net, {k: np.asarray(v) for k, v in theta.items()})
        if cert.stable:
            return None
        state["warned"] = True
        return (f"the parameters left the stable region after {state['calls']} updates: "
                f"{cert.binding} (admissible omega <= {cert.omega_range[1]:.4g}, omega = {cert.omega:g})")

    return monitor
