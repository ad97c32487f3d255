r"""2-D incompressible flow in vorticity form, pseudo-spectral with ETDRK4 (the ``vorticity-2d`` task).

.. math::
    ω_t + \mathbf u\cdot\nabla ω = ν\,Δω,\qquad \mathbf u = (ψ_y, -ψ_x),\qquad -Δψ = ω,

periodic on :math:`(0, L)^2`. In Fourier space :math:`\hat ψ = \hat ω/|κ|^2` (the mean of
:math:`ω` is conserved and carries no velocity), the diffusion :math:`-ν|κ|^2` is integrated
exactly and the advection :math:`-\widehat{\mathbf u\cdot\nabla ω}` by ETDRK4
(:mod:`npdegen.tasks.etd`), dealiased by the 2/3 rule. The velocity is divergence-free by
construction. The other 2-D tasks reuse the N-D solvers: :func:`npdegen.tasks.advection`
(advection–diffusion, exact) and :func:`npdegen.tasks.fisher_kpp` (Strang).

Exact solutions used as checks: a vorticity built from modes of one shell :math:`|κ|^2 = c`
has :math:`ω = cψ`, so :math:`\mathbf u\cdot\nabla ω = c\,\mathbf u\cdot\nabla ψ = 0` and
:math:`ω(t) = e^{-νct}ω_0` (e.g. Taylor–Green). Time step. The advection is explicit: a mode with :math:`ν|κ|^2 h \lesssim 1` needs
:math:`U|κ|h \lesssim 2.8` (RK4's reach on the imaginary axis); the worst such mode is
:math:`\min(κ_c, 1/\sqrt{νh})` with :math:`κ_c` the largest dealiased wavenumber, so stability asks
for :math:`h \lesssim \max(2.8/(Uκ_c),\ 7.8ν/U^2)`; accuracy (fourth order) for
:math:`h \lesssim 0.004/U` (relative error ≈ 4e-7 at :math:`ν = 10^{-3}`, :math:`T = 1`). We take
:math:`h_{\max} = \min(\max(1/(Uκ_c), 4ν/U^2),\ 0.004/U,\ T/8)`,
:math:`U = \max|\mathbf u_0|`.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .etd import ETDRK4
from .fourier import (as_fields, check_odd_factor, check_positive, dealias_mask, irfftn, restrict, rfftn, upsample,
                      wavenumbers)

__all__ = ["vorticity", "vorticity_on_grid", "velocity", "vorticity_steps"]


def _lengths(length):
    lengths = (length,) * 2 if isinstance(length, numbers.Real) and not isinstance(length, bool) else tuple(length)
    if len(lengths) != 2:
        raise ValueError(f"length must be a number or 2 numbers, got {length!r}")
    return tuple(check_positive("length", v) for v in lengths)


def velocity(w: np.ndarray, length=1.0) -> tuple:
    r"""The velocity :math:`(u, v) = (ψ_y, -ψ_x)` of the vorticity fields ``w`` ``(batch, nx, ny)``."""
    w = as_fields(w, 2, "w")
    grid = w.shape[1:]
    kx, ky = wavenumbers(grid, _lengths(length))
    k2 = kx ** 2 + ky ** 2
    psi = np.where(k2 > 0, rfftn(w, 2) / np.where(k2 > 0, k2, 1.0), 0.0)
    return irfftn(1j * ky * psi, grid), irfftn(-1j * kx * psi, grid)


def vorticity_steps(T: float, nu: float, u_max: float, k_cut: float) -> int:
    """ETDRK4 steps to reach ``T`` (module docstring): ``h ≤ min(max(1/(U κ_c), 4ν/U²), 0.004/U, T/8)``."""
    u_max = max(u_max, 1e-12)
    h = min(max(1.0 / (u_max * k_cut), 4 * nu / u_max ** 2), 0.004 / u_max, T / 8)
    return max(1, math.ceil(T / h))


def vorticity_on_grid(w0, nu: float, T: float, length=1.0, steps: int | None = None) -> np.ndarray:
    """The vorticity equation on the grid of ``w0`` itself (``(batch, nx, ny)``; no refinement)."""
    w = as_fields(w0, 2, "w0")
    nu, T = check_positive("nu", nu), check_positive("T", T, allow_zero=True)
    lengths = _lengths(length)
    if T == 0:
        return w.copy()
    grid = w.shape[1:]
    kx, ky = wavenumbers(grid, lengths)
    k2 = kx ** 2 + ky ** 2
    inverse = np.where(k2 > 0, 1.0 / np.where(k2 > 0, k2, 1.0), 0.0)
    mask = dealias_mask(grid)
    if steps is None:
        u, v = velocity(w, lengths)
        k_cut = float(np.sqrt(np.where(mask, k2, 0.0).max()))
        steps = vorticity_steps(T, nu, float(np.sqrt(u ** 2 + v ** 2).max()), k_cut)
    elif isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")

    def nonlinear(wh):
        psi = wh * inverse
        u, v = irfftn(1j * ky * psi, grid), irfftn(-1j * kx * psi, grid)
        wx, wy = irfftn(1j * kx * wh, grid), irfftn(1j * ky * wh, grid)
        return np.where(mask, -rfftn(u * wx + v * wy, 2), 0.0)

    scheme = ETDRK4.build(-nu * k2, T / steps)
    return irfftn(scheme.run(rfftn(w, 2), nonlinear, int(steps)), grid)


def vorticity(w0, nu: float, T: float, length=1.0, refine: int = 3, steps: int | None = None) -> np.ndarray:
    r"""Incompressible 2-D flow: the vorticity at time ``T`` from ``w0`` ``(batch, nx, ny)`` at the cell centres.

    ``nu`` is the kinematic viscosity (Reynolds number :math:`UL/ν`), ``refine`` the odd factor of
    the solver grid (``w0`` is carried there by trigonometric interpolation), ``steps`` the
    ETDRK4 steps (default from the module docstring's rule).
    """
    w = as_fields(w0, 2, "w0")
    r = check_odd_factor("refine", refine)
    return restrict(vorticity_on_grid(upsample(w, r, 2), nu, T, length, steps), r, 2)
