r"""Periodic cell-centre grids and the Fourier tools the task solvers share.

A periodic axis of length :math:`L` with :math:`n` cells has the cell centres

.. math::
    x_j = (j + \tfrac12)\,Δ, \qquad Δ = L/n, \qquad j = 0, \dots, n-1,

and a field sampled there is read as its trigonometric interpolant
:math:`u(x) = \sum_{|k| < n/2} c_k e^{i κ_k x} + a \sin(π n x / L)`, :math:`κ_k = 2πk/L`. The
last term is the Nyquist mode *as a cell-centre grid sees it*: :math:`\cos(π n x_j/L) = 0` at every
centre while :math:`\sin(π n x_j/L) = (-1)^j`, so the samples' alternating part is a sine.

Grids refined by an **odd** factor :math:`r` contain the coarse centres
(:math:`x_i = x^{f}_{ri + (r-1)/2}`), so restricting a fine solution to the coarse grid is plain
sub-sampling: the coarse values are the fine solution's point values, not a filtered version of it.
Fields are arrays ``(batch, *grid)``; the grid axes are the last ones. Only :mod:`scipy.fft` is used.
"""
from __future__ import annotations

import numbers

import numpy as np
import scipy.fft as sfft

__all__ = ["cell_centres", "wavenumbers", "as_fields", "check_positive", "check_odd_factor", "upsample",
           "restrict", "resample", "interpolation_matrix", "dealias_mask", "rfftn", "irfftn"]


def cell_centres(n: int, length: float = 1.0) -> np.ndarray:
    """The ``n`` cell centres ``(j + 1/2) L/n`` of the periodic interval ``(0, L)``."""
    return (np.arange(n) + 0.5) * (length / n)


def wavenumbers(shape, lengths) -> list:
    r"""Angular wavenumbers :math:`κ = 2π k / L` of :func:`rfftn` along each axis of a grid ``shape``.

    Returned as a list of arrays, one per axis, shaped to broadcast against the ``rfftn`` of a
    ``(batch, *shape)`` array (the last axis is the half spectrum ``0 … n/2``).
    """
    d = len(shape)
    out = []
    for a, (n, length) in enumerate(zip(shape, lengths)):
        k = sfft.rfftfreq(n, d=1.0 / n) if a == d - 1 else sfft.fftfreq(n, d=1.0 / n)
        view = [1] * (d + 1)
        view[a + 1] = k.size
        out.append((2 * np.pi / length) * k.reshape(view))
    return out


def rfftn(u: np.ndarray, dims: int) -> np.ndarray:
    """Real FFT over the last ``dims`` axes (all cores)."""
    return sfft.rfftn(u, axes=tuple(range(-dims, 0)), workers=-1)


def irfftn(v: np.ndarray, shape) -> np.ndarray:
    """Inverse of :func:`rfftn` onto a grid ``shape``."""
    return sfft.irfftn(v, s=tuple(shape), axes=tuple(range(-len(shape), 0)), workers=-1)


def dealias_mask(shape) -> np.ndarray:
    r"""Orszag's 2/3 rule on an ``rfftn`` spectrum: keep modes with :math:`|k_a| < n_a/3` on every axis."""
    d = len(shape)
    mask = np.ones((1,) * (d + 1), dtype=bool)
    for a, n in enumerate(shape):
        k = sfft.rfftfreq(n, d=1.0 / n) if a == d - 1 else sfft.fftfreq(n, d=1.0 / n)
        view = [1] * (d + 1)
        view[a + 1] = k.size
        mask = mask & (np.abs(k) < n / 3).reshape(view)
    return mask


def check_positive(name: str, value, allow_zero: bool = False) -> float:
    """``value`` as a float, or a ValueError naming ``name`` if it is not a finite (non-)negative number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value) \
            or value < 0 or (value == 0 and not allow_zero):
        kind = "a finite number >= 0" if allow_zero else "a positive finite number"
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    return float(value)


def check_odd_factor(name: str, value) -> int:
    """A refinement factor: an odd positive integer (odd so that fine grids contain the coarse centres)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1 or value % 2 == 0:
        raise ValueError(f"{name} must be an odd positive integer (an odd factor keeps the coarse cell "
                         f"centres on the fine grid), got {value!r}")
    return int(value)


def as_fields(u0, dims: int, name: str = "u0", min_points: int = 4) -> np.ndarray:
    """``u0`` as a float64 array ``(batch, *grid)`` with ``dims`` grid axes; a single field gains a batch axis.

    Raises a ValueError for other shapes, grids with fewer than ``min_points`` cells per axis, and
    non-finite values.
    """
    try:
        u = np.asarray(u0, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a real array shaped (batch, *grid), got {type(u0).__name__}") from exc
    if u.ndim == dims:
        u = u[None]
    if u.ndim != dims + 1 or u.shape[0] == 0:
        raise ValueError(f"{name} must be shaped (batch, *grid) with {dims} grid axis(es), got shape {u.shape}")
    if min(u.shape[1:]) < min_points:
        raise ValueError(f"{name} needs at least {min_points} cells per grid axis, got grid {u.shape[1:]}")
    if not np.all(np.isfinite(u)):
        raise ValueError(f"{name} holds non-finite values (NaN or inf)")
    return u


def _upsample_axis(u: np.ndarray, r: int, axis: int) -> np.ndarray:
    """Trigonometric interpolation of cell-centre samples onto the grid refined ``r`` times along ``axis``."""
    n = u.shape[axis]
    m = r * n
    spec = sfft.rfft(u, axis=axis, workers=-1)
    k = np.arange(spec.shape[axis])
    view = [1] * u.ndim
    view[axis] = k.size
    # c_k e^{iκ_k x_0}: moving the first centre from Δ/2 to Δ/(2r) multiplies by e^{iκ_k (Δ/(2r) − Δ/2)}
    phase = np.exp(2j * np.pi * k * (0.5 / m - 0.5 / n)).reshape(view)
    nyquist = None
    if n % 2 == 0:                                   # the alternating part: a sine at the cell centres
        nyquist = np.take(spec, [n // 2], axis=axis).real / n
        idx = [slice(None)] * u.ndim
        idx[axis] = n // 2
        spec[tuple(idx)] = 0.0
    fine = sfft.irfft(spec * phase * (m / n), n=m, axis=axis, workers=-1)
    if nyquist is not None:
        x = (np.arange(m) + 0.5) / m
        sine = np.sin(np.pi * n * x).reshape(view[:axis] + [m] + view[axis + 1:])
        fine = fine + nyquist * sine
    return fine


def upsample(u: np.ndarray, r: int, dims: int) -> np.ndarray:
    """The trigonometric interpolant of ``u`` (``(batch, *grid)``) on the grid refined ``r`` times per axis.

    ``r`` is odd, so :func:`restrict` of the result returns ``u`` exactly (up to rounding).
    """
    r = check_odd_factor("refine", r)
    for axis in range(u.ndim - dims, u.ndim):
        if r > 1:
            u = _upsample_axis(u, r, axis)
    return u


def restrict(u: np.ndarray, r: int, dims: int) -> np.ndarray:
    """Point values at the coarse cell centres of a field on the grid refined ``r`` (odd) times per axis."""
    r = check_odd_factor("refine", r)
    idx = (Ellipsis,) + tuple(slice((r - 1) // 2, None, r) for _ in range(dims))
    return np.ascontiguousarray(u[idx])


def interpolation_matrix(m: int, n: int) -> np.ndarray:
    r"""The ``(n, m)`` matrix taking values at ``m`` cell centres to their trigonometric interpolant at ``n`` centres.

    With :math:`θ = 2π(x_i - x^f_j)/L` and :math:`K = \lceil m/2 \rceil - 1` (the modes below Nyquist), the
    Dirichlet kernel gives
    :math:`F_{ij} = \frac1m\big[\sin((K + \tfrac12)θ)/\sin(θ/2) + [m\ \text{even}]\,(-1)^j \sin(π m x_i/L)\big]`,
    the second term being the cell-centre Nyquist sine (module docstring). For ``m = r n`` with odd
    ``r`` it is the sub-sampling of :func:`restrict`.
    """
    xc, xf = cell_centres(n), cell_centres(m)
    theta = 2 * np.pi * (xc[:, None] - xf[None, :])
    k = (m + 1) // 2 - 1
    half = np.sin(theta / 2)
    small = np.abs(half) < 1e-12
    kernel = np.where(small, 2 * k + 1.0, np.sin((k + 0.5) * theta) / np.where(small, 1.0, half))
    if m % 2 == 0:
        kernel = kernel + np.where(np.arange(m) % 2 == 0, 1.0, -1.0)[None, :] * np.sin(np.pi * m * xc)[:, None]
    return kernel / m


def resample(u: np.ndarray, n: int, dims: int) -> np.ndarray:
    """Values at ``n`` cell centres per axis of the trigonometric interpolant of ``u`` (``(batch, *grid)``)."""
    for axis in range(u.ndim - dims, u.ndim):
        m = u.shape[axis]
        if m != n:
            u = np.moveaxis(np.tensordot(u, interpolation_matrix(m, n), axes=([axis], [1])), -1, axis)
    return np.ascontiguousarray(u)
