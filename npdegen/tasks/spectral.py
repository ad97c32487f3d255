r"""Viscous Burgers' equation by a dealiased pseudo-spectral method with ETDRK4 on a finer grid.

.. math::
    u_t + \big(\tfrac12 u^2\big)_x = ε\, u_{xx}, \qquad ε = ν/π \quad\text{(PDEBench's convention)},

periodic on :math:`(0, L)`. In Fourier space
:math:`\hat u_t = -ε κ^2 \hat u - \tfrac{i κ}{2}\, P\,\widehat{u^2}`, where :math:`P` is Orszag's
2/3 rule; the stiff diffusion is integrated exactly and the flux by ETDRK4
(:mod:`npdegen.tasks.etd`), fourth order in time and spectrally accurate in space.

Resolution. A viscous shock between :math:`\pm U` is :math:`-U\tanh(U x/(2ε))`, whose Fourier
coefficients decay like :math:`e^{-π^2 (2ε/U) f}` at :math:`f` cycles per unit length; with
:math:`U = \max|u_0|` (Burgers obeys a maximum principle) the fine grid keeps modes up to
:math:`f \ge 0.91\,U/ε` (coefficients below :math:`\approx 10^{-8}`): :math:`M = r n` points,
:math:`r` the smallest odd factor ≥ 3 with :math:`M/(3L) \ge 0.91 U/ε`. Odd :math:`r` puts the
coarse cell centres on the fine grid, so the coarse output is the fine solution's point values.

Time step. The flux is explicit: modes with :math:`ε κ^2 h \lesssim 1` need
:math:`U κ h \lesssim 2`, i.e. :math:`h \lesssim ε/U^2` (stability); accuracy asks for
:math:`h \lesssim 0.002/U` (the fourth-order error is then :math:`\lesssim 10^{-8}` at
:math:`ν = 0.1`, measured against Cole–Hopf). We take :math:`h = T/\lceil T/h_{\max}\rceil`,
:math:`h_{\max} = \min(ε/U^2,\ 0.002/U,\ T/8)`.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .etd import ETDRK4
from .fourier import (as_fields, check_odd_factor, check_positive, dealias_mask, irfftn, restrict, rfftn, upsample,
                      wavenumbers)

__all__ = ["burgers", "burgers_on_grid", "burgers_refinement", "burgers_steps"]

#: Fine grid: keep modes up to RESOLUTION * U/ε cycles per unit length.
RESOLUTION = 0.91
#: Time step: h ≤ min(STEP * ε / U², ACCURACY / U, T / 8).
STEP = 1.0
ACCURACY = 0.002


def _epsilon(nu):
    return check_positive("nu", nu) / math.pi


def burgers_refinement(n: int, nu: float, u_max: float, length: float = 1.0) -> int:
    """The odd refinement factor ``r ≥ 3`` of the fine grid for ``n`` cells (module docstring)."""
    eps = _epsilon(nu)
    needed = 3 * RESOLUTION * max(u_max, 1e-12) * length / eps          # points M with M/(3L) ≥ 0.91 U/ε
    r = max(3, math.ceil(needed / n))
    return r + (r % 2 == 0)


def burgers_steps(T: float, nu: float, u_max: float) -> int:
    """Number of ETDRK4 steps to reach ``T``: ``h ≤ min(ε/U², 0.002/U, T/8)`` (module docstring)."""
    eps, u_max = _epsilon(nu), max(u_max, 1e-12)
    h = min(STEP * eps / u_max ** 2, ACCURACY / u_max, T / 8)
    return max(1, math.ceil(T / h))


def _check_steps(steps):
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    return int(steps)


def burgers_on_grid(u0, nu: float, T: float, length: float = 1.0, steps: int | None = None) -> np.ndarray:
    r"""Burgers' equation solved on the grid of ``u0`` itself (no refinement): ``(batch, M)`` → ``(batch, M)``.

    Pseudo-spectral, 2/3-dealiased, ETDRK4 with ``steps`` equal steps (default :func:`burgers_steps`).
    Use :func:`burgers` for coarse data; this is the fine-grid solver it calls.
    """
    u = as_fields(u0, 1)
    eps, T = _epsilon(nu), check_positive("T", T, allow_zero=True)
    length = check_positive("length", length)
    if T == 0:
        return u.copy()
    u_max = float(np.abs(u).max())
    steps = burgers_steps(T, nu, u_max) if steps is None else _check_steps(steps)
    grid = u.shape[1:]
    (k,) = wavenumbers(grid, (length,))
    mask = dealias_mask(grid)
    flux = -0.5j * k * mask

    def nonlinear(v):
        return flux * rfftn(irfftn(v, grid) ** 2, 1)

    scheme = ETDRK4.build(-eps * k ** 2, T / steps)
    return irfftn(scheme.run(rfftn(u, 1), nonlinear, steps), grid)


def burgers(u0, nu: float, T: float, length: float = 1.0, refine: int | None = None,
            steps: int | None = None) -> np.ndarray:
    r"""Viscous Burgers :math:`u_t + (u^2/2)_x = (ν/π) u_{xx}` at time ``T``, periodic on ``(0, length)``.

    Parameters
    ----------
    u0 : array ``(batch, n)`` (or ``(n,)``) of values at the cell centres ``(j + 1/2) L/n``.
    nu : PDEBench's viscosity parameter; the diffusivity is ``ν/π``.
    T : final time.
    length : the period :math:`L`.
    refine : odd factor of the fine solver grid (default :func:`burgers_refinement`).
    steps : ETDRK4 steps (default :func:`burgers_steps`).

    Returns
    -------
    ndarray ``(batch, n)``: the solution's values at the cell centres. ``u0`` is carried to the
    fine grid by trigonometric interpolation; where the initial condition is known as a function,
    evaluate it on the fine grid and call :func:`burgers_on_grid` (as the benchmark tasks do).
    """
    u = as_fields(u0, 1)
    n = u.shape[1]
    u_max = float(np.abs(u).max())
    r = burgers_refinement(n, nu, u_max, length) if refine is None else check_odd_factor("refine", refine)
    fine = burgers_on_grid(upsample(u, r, 1), nu, T, length=length, steps=steps)
    return restrict(fine, r, 1)
