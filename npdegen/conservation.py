r"""Flux-form (conservative) layers: a scalar conservation law as one relaxation step.

.. math::
    z' = (1-ω) z + ω f(Z), \qquad
    Z_i = z_i - \sum_k \frac{F_k(z_i, z_{i+e_k}; θ_{i+½e_k}) - F_k(z_{i-e_k}, z_i; θ_{i-½e_k})}{Δ_k}
              + \sum_k \frac{D_{i+½e_k}(z_{i+e_k} - z_i) - D_{i-½e_k}(z_i - z_{i-e_k})}{Δ_k^2} - b_i

discretises :math:`z_t + ∇·g(z) = ∇·(D ∇z)` with the numerical fluxes of
:mod:`npdegen.derive.flux` (the time step absorbed in ``g`` and ``D``; ``θ`` the flux's
coefficients, all faces alike unless they are face coefficients, below). It is an ordinary step-IR
layer — a site expression of the accesses ``z[i ± e_k]`` whose Jacobians SymPy derives — so every
backend, the adjoint, training and inspection work as for :class:`~npdegen.NeuralPDE`.

Conservation: with the identity activation and no bias, ``Σ_i z_i`` is kept to round-off on
periodic axes and on ``neumann`` axes, which here are zero-flux walls: each face flux is multiplied
by a fixed mask that is 0 on wall faces (:func:`npdegen.grid.face_mask`; the network supplies it).
``dirichlet`` axes let mass leave through the boundary (ghost value 0).

Coefficients: ``homogeneous`` (one value), or ``heterogeneous`` / ``time-dependent`` (an array
shaped like the grid, ``(L, *grid)`` for the latter), which are **face** coefficients: the value
stored at site ``i`` belongs to the face between cell ``i`` and ``i + e_k`` (every axis ``k``), so
both cells of a face use the same flux and the sum still telescopes (:mod:`npdegen.faces`, which
also says what the boundary faces of non-periodic axes hold).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import sympy as sp

from .derive import flux as fluxes_
from .derive.flux import NUMERICAL_FLUXES, U, flux_function
from .faces import (FACE_FAMILIES, coefficient_max, coefficient_table, face_step_ir, lo_symbols,
                    speed_bound)
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
    params : ``{symbol: "homogeneous" | "heterogeneous" | "time-dependent"}`` for the symbols of ``flux``
        and ``diffusion``; the last two are face coefficients (module docstring).
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
        params = {(sp.Symbol(k) if isinstance(k, str) else k): v for k, v in params.items()}
        walls = [_wall_name(s, c) for c in coords for s in (-1, 1)]
        fluxes = _as_flux(flux, field, dim)
        self.flux_functions = tuple(flux_function(g) for g in fluxes)
        self.numerical_flux = numerical_flux
        self.diffusion = sp.sympify(diffusion)
        if isinstance(diffusion, (str, bytes)) or self.diffusion.has(field) or self.diffusion.has(sp.Derivative):
            raise ValueError(f"diffusion must be an expression of parameters and numbers, got {diffusion!r}")
        in_flux = set().union(*(F.g.free_symbols for F in self.flux_functions))
        #: the face coefficients (``{name: family}``: per-site symbols of a flux or D) and whether a flux has one
        faces = {s: fam for s, fam in params.items() if s in in_flux | self.diffusion.free_symbols}
        lo = {k: lo_symbols(faces, x) for k, x in enumerate(coords)}
        self.face_params = {s.name: fam for s, fam in faces.items() if fam in FACE_FAMILIES}
        self.face_flux = any(s.name in self.face_params for s in in_flux)
        taken = sorted({str(getattr(k, "name", k)) for k in params}
                       & (set(walls) | {v.name for m in lo.values() for v in m.values()}))
        if taken:
            raise ValueError(f"parameter name(s) {taken} are reserved for the zero-flux wall masks and the "
                             "lo-face values of face coefficients")
        transform, shifts = field, []
        for k, (x, delta) in enumerate(zip(coords, spacing_symbols(coords))):
            lo_face = lo[k]
            hi, low = field.subs(x, x + delta), field.subs(x, x - delta)
            m_lo, m_hi = sp.Symbol(_wall_name(-1, x)), sp.Symbol(_wall_name(1, x))
            F = self.flux_functions[k]
            right = fluxes_.numerical_flux(F, self.numerical_flux, field, hi)
            left = fluxes_.numerical_flux(F, self.numerical_flux, low, field).xreplace(lo_face)
            transform += -(m_hi * right - m_lo * left) / delta
            d_lo = self.diffusion.xreplace(lo_face)
            if d_lo != self.diffusion:       # a face D: the lo face has its own value
                transform += (self.diffusion * m_hi * (hi - field) - d_lo * m_lo * (field - low)) / delta ** 2
            elif self.diffusion != 0:        # (the expression of a layer without face coefficients unchanged)
                transform += self.diffusion * (m_hi * (hi - field) - m_lo * (field - low)) / delta ** 2
            params.update({m_lo: "heterogeneous", m_hi: "heterogeneous"})
            for s, s_lo in lo_face.items():
                if left.has(s_lo) or d_lo.has(s_lo):
                    params[s_lo] = params[s]
                    shifts.append((s_lo.name, ("shift", k, s.name)))
        self._shifts = tuple(shifts)
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
            derived = {name for name, _ in self._shifts}
            user = ", ".join(f"{p.name}: {p.family}" + (" (face)" if p.name in self.face_params else "")
                             for p in params if p.role != "fixed" and p.name not in derived) or "none"
            walls = f"{', '.join(self._walls)}: fixed face masks (0 on zero-flux walls)"
            if derived:
                walls += f"; {', '.join(sorted(derived))}: lo-face values (derived, npdegen.faces)"
            summary = tuple(f"params:     {user}; {walls}" if line.startswith("params:") else line
                            for line in base.summary)
            summary += tuple(f"flux:       g(z) = {sp.sstr(F.g.xreplace({U: sp.Symbol('z')}))} ({F.kind}), "
                             f"numerical flux {self.numerical_flux}, diffusion D = {sp.sstr(self.diffusion)}"
                             for F in self.flux_functions[:1 if len(set(self.flux_functions)) == 1 else None])
            derivation = tuple(line for line in base.derivation if not line.startswith("dG/dp_wall_"))
            changes = dict(params=params, fixed=fixed, summary=summary, derivation=derivation)
            ir = face_step_ir(base, self._shifts, **changes) if self._shifts else replace(base, **changes)
            self.__dict__["_step_ir"] = ir
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
        r"""CFL certificate for states in ``state_range`` (also what ``npdegen.stability`` and the
        training monitor return for this layer, with the default range). With ``a_k`` the speed bound
        of :func:`npdegen.faces.speed_bound` (``max|g'|`` when the flux has one coefficient for all
        faces) and ``D`` the largest diffusion over faces,

        .. math::  ν = \max_t \Big[\sum_k a_{k,t}/Δ_k + 2 \max_f D_{t,f} \sum_k 1/Δ_k^2\Big] ≤ 1,

        ω ≤ 1 and the identity activation certify, for a monotone numerical flux:

        * flux coefficients the same at every face (D may be a face coefficient): a positive,
          conservative layer with the maximum principle, ``‖z_{t+1}‖_∞ ≤ ‖z_t‖_∞`` (``max_gain`` 1
          in the l∞ norm), TVD in 1-D (Harten's incremental form);
        * face-heterogeneous flux coefficients (Godunov, Engquist–Osher or a linear flux only): an
          order-preserving conservative layer, hence an l1 contraction (Crandall–Tartar),
          ``‖z_{t+1} − w_{t+1}‖_1 ≤ ‖z_t − w_t‖_1`` (``max_gain`` 1 in the l1 norm). A coefficient
          that changes from face to face compresses or spreads mass, so there is no maximum principle
          and no TVD: the state range is certified for one layer, not kept."""
        spacing = (spacing,) * self.dim if np.isscalar(spacing) else tuple(spacing)
        lo, hi = map(float, state_range)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
            raise ValueError(f"state_range must be two finite numbers lo <= hi, got {state_range!r}")
        derived = {name for name, _ in self._shifts}
        user = {s: fam for s, fam in self.spec.params if s.name not in self._walls and s.name not in derived}
        table = coefficient_table(user, theta, self.dim)
        states = np.linspace(lo, hi, samples)
        speeds = [speed_bound(F.speed, table, states) for F in self.flux_functions]
        diff, dmin = coefficient_max(self.diffusion, table)
        nu_t = sum(a / d for a, d in zip(speeds, spacing)) + 2 * diff * sum(1 / d ** 2 for d in spacing)
        nu = max(float(nu_t.max()), 0.0)
        upwind = self.numerical_flux in ("godunov", "engquist_osher") or all(
            F.kind == "linear" for F in self.flux_functions)
        monotone = self.numerical_flux != "central" and dmin >= 0 and (upwind or not self.face_flux)
        ok = monotone and nu <= 1 + 1e-12 and 0 < omega <= 1 and self.spec.activation_name == "identity"
        # positivity needs T(0) = 0: g(0) the same at every face
        at_zero = not any({s.name for s in F(sp.Integer(0)).free_symbols} & set(self.face_params)
                          for F in self.flux_functions)
        plain = not self.face_flux
        return FluxCertificate(cfl=nu, monotone=monotone, conservative=self.spec.bias is None and
                               self.spec.activation_name == "identity", positive=ok and at_zero,
                               tvd=ok and plain and self.dim == 1, max_speed=float(max(a.max() for a in speeds)),
                               diffusion=float(diff.max()), omega=float(omega), certified=ok,
                               maximum_principle=ok and plain, max_gain=1.0 if ok else math.inf,
                               gain_norm="l-infinity" if plain else "l1", face_flux=self.face_flux)

    def __repr__(self):
        return (f"ConservationLaw({self.spec.name!r}: z_t + div g(z) = D lap z, g = "
                f"{[sp.sstr(F.g) for F in self.flux_functions]}, D = {self.diffusion}, {self.numerical_flux})")


def conservation_law(flux, field, diffusion=0, params=None, numerical_flux="godunov", **kwargs) -> ConservationLaw:
    """A :class:`ConservationLaw` layer (same arguments)."""
    return ConservationLaw(flux, field, diffusion=diffusion, params=params, numerical_flux=numerical_flux, **kwargs)


@dataclass(frozen=True)
class FluxCertificate:
    """The CFL number ``cfl`` and what it guarantees (see :meth:`ConservationLaw.certificate`).

    ``max_gain`` bounds the gain of one layer in the norm ``gain_norm``: 1 when ``certified`` (the
    l∞ norm of the state — maximum principle — for flux coefficients shared by all faces; the l1
    norm of the difference of two states — an l1 contraction — for face-heterogeneous flux
    coefficients), ``inf`` (no bound) otherwise."""
    cfl: float
    monotone: bool
    conservative: bool
    positive: bool
    tvd: bool
    max_speed: float
    diffusion: float
    omega: float = 1.0
    certified: bool = False
    maximum_principle: bool = False
    max_gain: float = math.inf
    gain_norm: str = "l-infinity"
    face_flux: bool = False

    @property
    def stable(self) -> bool:
        """The same question the linear certificates answer (``npdegen.stability``)."""
        return self.certified

    @property
    def binding(self) -> str:
        return f"flux CFL number {self.cfl:.4g} (must be <= 1 with omega <= 1 and a monotone flux)"

    @property
    def omega_range(self) -> tuple:
        return (0.0, 1.0 if self.monotone and self.cfl <= 1 + 1e-12 else 0.0)

    def __str__(self):
        if not self.certified:
            verdict = "NOT certified" + ("" if self.monotone else " (the numerical flux is not monotone here)")
        elif self.face_flux:
            verdict = ("certified: monotone, l1 contraction (gain <= 1 per layer in the l1 norm)"
                       + (", positive" if self.positive else "")
                       + "; face-heterogeneous flux: no maximum principle, no TVD")
        else:
            verdict = ("certified: positive, maximum principle (gain <= 1 per layer in the l-infinity norm)"
                       + (", TVD" if self.tvd else ""))
        return (f"flux CFL number {self.cfl:.4g} (speed bound {self.max_speed:.4g}, max D = {self.diffusion:.4g}); "
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
        if layer.face_params:
            self.rows.append(("face coefficients", ", ".join(f"{k} ({v})" for k, v in sorted(layer.face_params.items()))
                              + ": one value per face i+1/2, stored at site i (npdegen.faces)"))

    def __str__(self):
        width = max(len(a) for a, _ in self.rows)
        return "\n".join(f"{a:<{width}}  {b}" for a, b in self.rows)
