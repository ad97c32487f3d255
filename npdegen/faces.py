r"""Face coefficients of flux-form layers: a per-face value that both neighbours of the face share.

A flux-form layer (:mod:`npdegen.conservation`) with a ``heterogeneous`` (or ``time-dependent``)
coefficient ``D`` or flux coefficient ``c`` (``g = c z²/2``) uses it as a **face** value: the array
``D`` shaped like the grid holds at site ``i`` the value of the face ``i + ½e_k`` between cell ``i``
and cell ``i + e_k``, for every axis ``k``. Cell ``i`` uses ``D_{i+½}`` on its hi face and
``D_{i−½}`` on its lo face,

.. math::
    Z_i = z_i - \sum_k \frac{F_k(z_i, z_{i+e_k}; c_{i+½e_k}) - F_k(z_{i-e_k}, z_i; c_{i-½e_k})}{Δ_k}
          + \sum_k \frac{D_{i+½e_k}(z_{i+e_k} - z_i) - D_{i-½e_k}(z_i - z_{i-e_k})}{Δ_k^2},

so the flux through a face leaves one cell and enters the other with the same value, and the sum
over cells telescopes: mass is conserved exactly (periodic axes, zero-flux walls).

The lo-face value is a **derived field** ``D^{lo,k} = S_k D`` (``S_k`` the shift by one cell along
axis ``k``), which the site expression reads as one more per-site parameter named
:func:`lo_name` ``(D, x_k)``. It is not trained and not seen by the user: the runtime
(:mod:`npdegen.runtime.fixed`) builds it from ``D`` before every kernel call and adds ``S_kᵀ`` of
its gradient to ``D``'s gradient after every adjoint call.

``S_k`` along a **periodic** axis is the roll ``(S_k D)_i = D_{i−e_k}`` (the lo face of the first
cell is the hi face of the last). Along a **wall** (``neumann``) or **dirichlet** axis the lo face
of the first cell is the boundary face ``−½``, which no stored value owns: it holds the first
stored value, ``(S_k D)_0 = D_0`` (the face coefficient extended by a constant beyond the first
face, so a coefficient constant over the sites behaves exactly like a homogeneous one on every
boundary). On zero-flux walls that face is masked out anyway, and so is the hi wall face
``n − ½`` stored at the last site: there ``D_{n−1}`` never enters the layer and its gradient is 0.
A time-dependent array ``(L, *grid)`` is shifted along its grid axes only.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np
import sympy as sp

from .derive.flux import U
from .ir.step import StepIR

__all__ = ["FACE_FAMILIES", "lo_name", "FaceStepIR", "face_step_ir", "lo_symbols", "coefficient_table",
           "speed_bound", "coefficient_max"]

#: Families that make a flux-layer coefficient a face coefficient (one value per face, per layer
#: for ``time-dependent``).
FACE_FAMILIES = ("heterogeneous", "time-dependent")


def lo_name(name: str, coordinate) -> str:
    """The name of the derived lo-face field of parameter ``name`` along ``coordinate``."""
    return f"{name}_face_lo_{coordinate}"


def lo_symbols(params: dict, coordinate) -> dict:
    """``{symbol: lo symbol}`` for the face parameters among ``params`` (same assumptions, so that
    e.g. the convexity of ``c z²/2`` with ``c > 0`` is still provable on the lo face)."""
    return {s: sp.Symbol(lo_name(s.name, coordinate), **s.assumptions0)
            for s, family in params.items() if isinstance(s, sp.Symbol) and family in FACE_FAMILIES}


@dataclass(frozen=True)
class FaceStepIR(StepIR):
    """A step IR whose ``fixed`` fields include derived lo-face fields ``(name, ("shift", axis, source))``:
    transform parameters in the site expression (so the kernels compute their gradients) that are no
    trained values of their own (:attr:`families` leaves them out)."""

    @property
    def derived(self) -> dict:
        """``{lo name: (source name, axis)}``."""
        return {name: (spec[2], spec[1]) for name, spec in self.fixed if spec[0] == "shift"}

    @property
    def families(self) -> dict:
        derived = self.derived
        return {k: v for k, v in super().families.items() if k not in derived}


def face_step_ir(base: StepIR, shifts: tuple, **changes) -> FaceStepIR:
    """``base`` as a :class:`FaceStepIR` with the derived fields ``shifts`` (``((lo name, ("shift",
    axis, source)), ...)``) appended to its fixed fields, and other ``changes`` applied."""
    ir = FaceStepIR(**{f.name: getattr(base, f.name) for f in fields(StepIR)})
    changes["fixed"] = tuple(changes.get("fixed", base.fixed)) + tuple(shifts)
    return replace(ir, **changes)


# ---------------------------------------------------------------- the CFL number over faces
def coefficient_table(params: dict, theta: dict, dim: int) -> dict:
    """``{symbol: array (layers, faces)}``: the values of the user's coefficients ``params``
    (``{symbol: family}``) from ``theta``, broadcast together so that column ``f`` of row ``t`` is
    face ``f`` in layer ``t`` (homogeneous values repeated; a time-dependent value may be one per
    layer, ``(L,)``, or per layer and face, ``(L, *grid)``). Columns of values that are the same at
    every face are merged into one."""
    rows = {}
    for s, family in params.items():
        if s.name not in theta:
            raise ValueError(f"theta has no value for the parameter {s.name!r}")
        v = np.asarray(theta[s.name], dtype=float)
        if family == "homogeneous" and v.size == 1:
            rows[s] = v.reshape(1, 1)
        elif family == "heterogeneous" and v.ndim == dim:
            rows[s] = v.reshape(1, -1)
        elif family == "time-dependent" and v.ndim in (1, 1 + dim):
            rows[s] = v.reshape(v.shape[0], -1)
        else:
            want = {"homogeneous": "()", "heterogeneous": f"a {dim}-D grid array",
                    "time-dependent": f"(L,) or (L, *grid) with a {dim}-D grid"}[family]
            raise ValueError(f"theta[{s.name!r}] has shape {v.shape}; a {family} coefficient needs {want}")
        if not np.all(np.isfinite(v)):
            raise ValueError(f"theta[{s.name!r}] contains NaN or inf")
    try:
        arrays = np.broadcast_arrays(*rows.values()) if rows else []
    except ValueError:
        raise ValueError("the coefficients' shapes do not fit together: "
                         + ", ".join(f"{s.name} {tuple(a.shape)} (layers, faces)" for s, a in rows.items())) from None
    table = dict(zip(rows, arrays))
    if table and all(bool(np.all(a == a[:, :1])) for a in table.values()):
        table = {s: a[:, :1] for s, a in table.items()}
    return table


def speed_bound(speed: sp.Expr, table: dict, states: np.ndarray, chunk: int = 1 << 22) -> np.ndarray:
    r"""Per layer ``t``: :math:`a_t = \max_u [\max_f g'(u; θ_{t,f})^+ + \max_f g'(u; θ_{t,f})^-]` over the
    states ``u`` and faces ``f``. A cell's diagonal Jacobian entry loses ``∂_a F`` of its hi face and
    ``−∂_b F`` of its lo face; for the upwind-type fluxes (Godunov, Engquist–Osher, upwind) these are
    at most ``g'(z_i)^+`` and ``g'(z_i)^-`` with each face's own coefficients, so ``a_t/Δ`` bounds
    their sum. With one value for all faces it is ``max_u |g'(u)|``, the usual CFL speed."""
    symbols = sorted(table, key=lambda s: s.name)
    layers = max([a.shape[0] for a in table.values()] or [1])
    faces = max([a.shape[1] for a in table.values()] or [1])
    fn = sp.lambdify((U, *symbols), speed, "numpy")
    full = {s: np.broadcast_to(table[s], (layers, faces)) for s in symbols}
    out = np.empty(layers)
    step = max(1, chunk // (states.size * faces))
    u = states[:, None, None]
    for t0 in range(0, layers, step):
        rows = slice(t0, min(t0 + step, layers))
        v = np.broadcast_to(np.asarray(fn(u, *(full[s][None, rows] for s in symbols)), dtype=float),
                            (states.size, rows.stop - rows.start, faces))
        out[rows] = (np.maximum(v, 0).max(axis=2) + np.maximum(-v, 0).max(axis=2)).max(axis=0)
    return out


def coefficient_max(expr: sp.Expr, table: dict) -> tuple:
    """``(per-layer max, overall min)`` of ``expr`` (e.g. the diffusion) over the faces."""
    symbols = sorted(table, key=lambda s: s.name)
    layers = max([a.shape[0] for a in table.values()] or [1])
    faces = max([a.shape[1] for a in table.values()] or [1])
    v = np.broadcast_to(np.asarray(sp.lambdify(symbols, expr, "numpy")(*(table[s] for s in symbols)), dtype=float),
                        (layers, faces))
    return v.max(axis=1), float(v.min())
