r"""Flux-form (conservative) layers: a scalar conservation law as one relaxation step.

.. math::
    z' = (1-ω) z + ω f(Z), \qquad
    Z_i = z_i - \sum_k \frac{F_k(z_i, z_{i+e_k}) - F_k(z_{i-e_k}, z_i)}{Δ_k}
              + D \sum_k \frac{(z_{i+e_k} - z_i) - (z_i - z_{i-e_k})}{Δ_k^2} - b_i

discretises :math:`z_t + ∇·g(z) = D Δz` with the numerical fluxes of
:mod:`npdegen.derive.flux` (the time step absorbed in ``g`` and ``D``). It is an ordinary step-IR
layer — a site expression of the accesses ``z[i ± e_k]`` whose Jacobians SymPy derives — so every
backend, the adjoint, training and inspection work as for :class:`~npdegen.NeuralPDE`.

Conservation: with the identity activation and no bias, ``Σ_i z_i`` is kept to round-off on
periodic axes and on ``neumann`` axes, which here are zero-flux walls: each face flux is multiplied
by a fixed mask that is 0 on wall faces (:func:`npdegen.grid.face_mask`; the network supplies it).
``dirichlet`` axes let mass leave through the boundary (ghost value 0). Coefficients must be the
same at every face (homogeneous or time-dependent): a per-site coefficient would give the two
sides of a face different fluxes and break the telescoping sum.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import sympy as sp

from .derive import flux as fluxes_
from .derive.flux import NUMERICAL_FLUXES, U, cfl_number, flux_function
from .ir.step import StepIR, build_step
from .layer import NeuralPDE
from .spec.spacing import spacing_symbols

__all__ = ["ConservationLaw", "conservation_law", "FluxCertificate"]


def _wall_name(side: int, coordinate) -> str:
    return f"wall_{'lo' if side < 0 else 'hi'}_{coordinate}"


def _as_flux(flux, field, dim: int) -> tuple:
    fluxes = tuple(flux) if isinstance(flux, (tuple, list)) else (flux,) * dim
    if len(fluxes) != dim:
        raise ValueError(f"flux must be one expression or one per axis ({dim}), got {len(fluxes)}")
    out = []
    for g in fluxes:
        if isinstance(g, (str, bytes)) or not isinstance(g, (sp.Expr, int, float)):
            raise TypeError(f"flux must be a SymPy expression of the field {field}, got {g!r}")
        g = sp.sympify(g)
        if g.has(sp.Derivative) or g.atoms(sp.Function) - {field}:
            raise ValueError(f"the flux g = {g} must be a function of the field {field} and parameters only "
                             "(no derivatives, no shifted values)")
        g = g.xreplace({field: U})
        if g.free_symbols & set(field.args):
            raise ValueError(f"the flux g = {g} must not depend on the coordinates {field.args}")
        out.append(g)
    return tuple(out)


class ConservationLaw(NeuralPDE):
    r"""A flux-form layer (module docstring): ``z_t + ∇·g(z) = D Δz`` in conservative form.

    Parameters
    ----------
    flux : SymPy expression of the field (``c*z**2/2`` for Burgers), or one per axis.
    field : the applied function, e.g. ``z(q)`` or ``z(x, y)``.
    diffusion : ``D``, an expression of parameters and numbers (0 for a pure conservation law).
    params : ``{symbol: "homogeneous" | "time-dependent"}`` for the symbols of ``flux`` and ``diffusion``.
    numerical_flux : ``"godunov"`` (default), ``"engquist_osher"``, ``"rusanov"`` or ``"central"``.
    activation, bias, name : as for :class:`~npdegen.NeuralPDE` (conservation needs the identity
        activation and no bias).
    """

    def __init__(self, flux, field, diffusion=0, params=None, numerical_flux="godunov", activation="identity",
                 bias=None, name="conservation_law"):
        if numerical_flux not in NUMERICAL_FLUXES:
            raise ValueError(f"numerical_flux must be one of {', '.join(NUMERICAL_FLUXES)}, got {numerical_flux!r}")
        if not isinstance(field, sp.core.function.AppliedUndef):
            raise TypeError(f"field must be an applied function such as z(q), got {field!r}")
        coords = field.args
        dim = len(coords)
        params = dict(params or {})
        self._args = dict(flux=flux, field=field, diffusion=diffusion, params=dict(params),
                          numerical_flux=numerical_flux, activation=activation, bias=bias, name=name)
        for key, family in params.items():
            if family == "heterogeneous":
                raise ValueError(f"parameter {key}: a flux-form layer needs the same coefficient on both sides of "
                                 "every face to conserve mass; use 'homogeneous' or 'time-dependent'")
        walls = [_wall_name(s, c) for c in coords for s in (-1, 1)]
        taken = sorted({str(getattr(k, "name", k)) for k in params} & set(walls))
        if taken:
            raise ValueError(f"parameter name(s) {taken} are reserved for the zero-flux wall masks")
        fluxes = _as_flux(flux, field, dim)
        self.flux_functions = tuple(flux_function(g) for g in fluxes)
        self.numerical_flux = numerical_flux
        self.diffusion = sp.sympify(diffusion)
        if isinstance(diffusion, (str, bytes)) or self.diffusion.has(field) or self.diffusion.has(sp.Derivative):
            raise ValueError(f"diffusion must be an expression of parameters and numbers, got {diffusion!r}")
        transform = field
        for k, (x, delta) in enumerate(zip(coords, spacing_symbols(coords))):
            lo, hi = field.subs(x, x - delta), field.subs(x, x + delta)
            m_lo, m_hi = sp.Symbol(_wall_name(-1, x)), sp.Symbol(_wall_name(1, x))
            F = self.flux_functions[k]
            right = fluxes_.numerical_flux(F, self.numerical_flux, field, hi)
            left = fluxes_.numerical_flux(F, self.numerical_flux, lo, field)
            transform += -(m_hi * right - m_lo * left) / delta
            if self.diffusion != 0:
                transform += self.diffusion * (m_hi * (hi - field) - m_lo * (field - lo)) / delta ** 2
            params.update({m_lo: "heterogeneous", m_hi: "heterogeneous"})
        self._walls = tuple(walls)
        args = self._args
        super().__init__(transform, field, activation=activation, params=params, bias=bias,
                         name=name)
        self._args = args
        if self._linear_1d:                # a flux layer is not a 1-D stencil layer: no 1-D kernel description
            self._linear_1d, self._stencil = False, None
            self.lowered

    # ------------------------------------------------------------------ IR
    @property
    def step_ir(self) -> StepIR:
        ir = self.__dict__.get("_step_ir")
        if ir is None:
            base = build_step(self.spec)
            params = tuple(replace(p, role="fixed") if p.name in self._walls else p for p in base.params)
            fixed = tuple((_wall_name(s, c), ("face", k, s)) for k, c in enumerate(self.spec.coordinates)
                          for s in (-1, 1))
            user = ", ".join(f"{p.name}: {p.family}" for p in params if p.role != "fixed") or "none"
            summary = tuple(f"params:     {user}; {', '.join(self._walls)}: fixed face masks (0 on zero-flux walls)"
                            if line.startswith("params:") else line for line in base.summary)
            summary += tuple(f"flux:       g(z) = {sp.sstr(F.g.xreplace({U: sp.Symbol('z')}))} ({F.kind}), "
                             f"numerical flux {self.numerical_flux}, diffusion D = {sp.sstr(self.diffusion)}"
                             for F in self.flux_functions[:1 if len(set(self.flux_functions)) == 1 else None])
            derivation = tuple(line for line in base.derivation if not line.startswith("dG/dp_wall_"))
            ir = self.__dict__["_step_ir"] = replace(base, params=params, fixed=fixed, summary=summary,
                                                     derivation=derivation)
        return ir

    def _user_weights(self) -> dict:
        """Interior weights (walls open) of a linear flux layer."""
        open_walls = {sp.Symbol(n): 1 for n in self._walls}
        weights = {o: sp.simplify(w.xreplace(open_walls)) for o, w in super()._user_weights().items()}
        return {o: w for o, w in weights.items() if w != 0}

    # ------------------------------------------------------------------ physics
    def explain(self, max_order=None) -> "FluxPhysics":
        """The conservation law this layer discretises: flux, wave speed, sonic point, the
        numerical viscosity of the chosen flux and the diffusion."""
        return FluxPhysics(self)

    def certificate(self, theta: dict, spacing, state_range=(-1.0, 1.0), omega: float = 1.0,
                    samples: int = 257) -> "FluxCertificate":
        r"""CFL certificate for states in ``state_range`` (a monotone layer keeps them there; also what
        ``npdegen.stability`` and the training monitor return for this layer, with the default range):
        ``ν = max|g'|·Σ 1/Δ_k + 2D·Σ 1/Δ_k² ≤ 1`` with ω ≤ 1 and the identity activation gives a
        positive, conservative, TVD (maximum-principle) layer."""
        spacing = (spacing,) * self.dim if np.isscalar(spacing) else tuple(spacing)
        lo, hi = map(float, state_range)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
            raise ValueError(f"state_range must be two finite numbers lo <= hi, got {state_range!r}")
        values = {}
        for s, fam in self.spec.params:
            if s.name in self._walls:
                continue
            v = np.asarray(theta[s.name], dtype=float)
            values[s] = v                     # time-dependent: the worst layer counts
        grid = np.linspace(lo, hi, samples)
        speeds, diff = [], []
        rows = max([v.shape[0] for v in values.values() if v.ndim] or [1])
        for t in range(rows):
            at = {s: (float(v[t]) if v.ndim else float(v)) for s, v in values.items()}
            for F in self.flux_functions:
                fn = sp.lambdify(U, F.speed.xreplace(at), "numpy")
                speeds.append(float(np.max(np.abs(np.broadcast_to(fn(grid), grid.shape)))))
            diff.append(float(self.diffusion.xreplace(at)))
        nu = max(cfl_number(max(speeds), max(diff), spacing), 0.0)
        monotone = self.numerical_flux != "central" and min(diff) >= 0
        ok = monotone and nu <= 1 + 1e-12 and 0 < omega <= 1 and self.spec.activation_name == "identity"
        return FluxCertificate(cfl=nu, monotone=monotone, conservative=self.spec.bias is None and
                               self.spec.activation_name == "identity", positive=ok, tvd=ok and self.dim == 1,
                               max_speed=max(speeds), diffusion=max(diff), omega=float(omega))

    def __repr__(self):
        return (f"ConservationLaw({self.spec.name!r}: z_t + div g(z) = D lap z, g = "
                f"{[sp.sstr(F.g) for F in self.flux_functions]}, D = {self.diffusion}, {self.numerical_flux})")


def conservation_law(flux, field, diffusion=0, params=None, numerical_flux="godunov", **kwargs) -> ConservationLaw:
    """A :class:`ConservationLaw` layer (same arguments)."""
    return ConservationLaw(flux, field, diffusion=diffusion, params=params, numerical_flux=numerical_flux, **kwargs)


@dataclass(frozen=True)
class FluxCertificate:
    """The CFL number ``cfl`` and what it guarantees (see :meth:`ConservationLaw.certificate`)."""
    cfl: float
    monotone: bool
    conservative: bool
    positive: bool
    tvd: bool
    max_speed: float
    diffusion: float
    omega: float = 1.0

    @property
    def stable(self) -> bool:
        """The same question the linear certificates answer (``npdegen.stability``)."""
        return self.positive

    @property
    def binding(self) -> str:
        return f"flux CFL number {self.cfl:.4g} (must be <= 1 with omega <= 1 and a monotone flux)"

    @property
    def omega_range(self) -> tuple:
        return (0.0, 1.0 if self.monotone and self.cfl <= 1 + 1e-12 else 0.0)

    def __str__(self):
        verdict = "certified: positive, maximum principle" + (", TVD" if self.tvd else "") if self.positive \
            else "NOT certified"
        return (f"flux CFL number {self.cfl:.4g} (max |g'| = {self.max_speed:.4g}, D = {self.diffusion:.4g}); "
                f"{verdict}; mass {'conserved' if self.conservative else 'not conserved (activation or bias)'}")


class FluxPhysics:
    """What a flux-form layer discretises (printable)."""

    def __init__(self, layer: ConservationLaw):
        self.layer = layer
        self.rows = []
        for k, F in enumerate(layer.flux_functions):
            axis = layer.spec.coordinates[k]
            self.rows.append((f"flux along {axis}", sp.sstr(F.g.xreplace({U: sp.Symbol("z")}))))
            self.rows.append((f"wave speed g'(z) along {axis}", sp.sstr(F.speed.xreplace({U: sp.Symbol("z")}))))
            self.rows.append((f"shape of g along {axis}", F.kind + (f", sonic point z* = {F.sonic}"
                                                                  if F.sonic is not None else "")))
        self.rows.append(("numerical flux", layer.numerical_flux + {
            "rusanov": " (numerical viscosity max|g'|·Δ/2)", "central": " (no numerical viscosity: not monotone)",
            "godunov": " (exact Riemann solver)", "engquist_osher": " (monotone, smooth at sonic points)"}[
            layer.numerical_flux]))
        self.rows.append(("diffusion D", sp.sstr(layer.diffusion)))

    def __str__(self):
        width = max(len(a) for a, _ in self.rows)
        return "\n".join(f"{a:<{width}}  {b}" for a, b in self.rows)
