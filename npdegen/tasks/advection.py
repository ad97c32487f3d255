r"""Advection (and advection–diffusion) solved exactly in Fourier space on a periodic box.

.. math::
    u_t + β\cdot\nabla u = κ\,Δu \quad\Longrightarrow\quad
    \hat u_k(T) = \hat u_k(0)\, e^{-(i\,κ_k\cdot β + κ|κ_k|^2)\,T},

so :math:`u(x, T) = (G_{κT} * u_0)(x - βT)`: a shift by :math:`βT` (and a heat-kernel smoothing
when :math:`κ > 0`). For data sampled at cell centres this is exact for the trigonometric
interpolant of the samples (:mod:`npdegen.tasks.fourier`); for even :math:`n` the cell-centre
Nyquist sine is shifted and sampled again, which multiplies it by :math:`\cos(πnβ_aT/L_a)` (so
on even grids shifts compose exactly only for data without a Nyquist component); for the benchmark tasks the exact pure-advection solution is the initial
*function* evaluated at :math:`x - βT`.
"""
from __future__ import annotations

import numbers

import numpy as np

from .fourier import as_fields, check_positive, irfftn, rfftn, wavenumbers

__all__ = ["advection"]


def _vector(name, value, dims):
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        value = (value,) * dims if dims == 1 else None
    try:
        vec = tuple(float(v) for v in value) if value is not None else ()
    except (TypeError, ValueError):
        vec = ()
    if len(vec) != dims or not all(np.isfinite(vec)):
        raise ValueError(f"{name} must be {'a finite number or ' if dims == 1 else ''}a tuple of {dims} finite "
                         f"numbers (one per axis), got {value!r}")
    return vec


def advection(u0, beta, T, kappa: float = 0.0, length=1.0, dims: int = 1) -> np.ndarray:
    r"""Exact solution of :math:`u_t + β\cdot\nabla u = κΔu` at time ``T`` on the periodic box.

    Parameters
    ----------
    u0 : array ``(batch, *grid)`` (or one field ``grid``) of values at the cell centres.
    beta : velocity, a number in 1-D or a tuple of ``dims`` numbers.
    T : time, ``>= 0``.
    kappa : diffusivity :math:`κ \ge 0` (default 0: pure advection, an exact shift).
    length : side length of the box (a number, or one per axis); the domain is :math:`(0, L)^d`.
    dims : number of grid axes (the last axes of ``u0``).

    Returns
    -------
    ndarray shaped like ``u0`` (with the batch axis).
    """
    if dims not in (1, 2, 3):
        raise ValueError(f"dims must be 1, 2 or 3, got {dims!r}")
    u = as_fields(u0, dims)
    beta = _vector("beta", beta, dims)
    T = check_positive("T", T, allow_zero=True)
    kappa = check_positive("kappa", kappa, allow_zero=True)
    lengths = (length,) * dims if isinstance(length, numbers.Real) and not isinstance(length, bool) else length
    lengths = tuple(check_positive("length", v) for v in _vector("length", lengths, dims))
    grid = u.shape[1:]
    ks = wavenumbers(grid, lengths)
    exponent = sum(-1j * k * b * T for k, b in zip(ks, beta))
    if kappa:
        exponent = exponent - kappa * T * sum(k ** 2 for k in ks)
    return irfftn(rfftn(u, dims) * np.exp(exponent), grid)
