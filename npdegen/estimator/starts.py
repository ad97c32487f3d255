r"""A start from the data: the linear response of snapshot pairs on a periodic grid.

For a linear, translation-invariant map the Fourier modes do not mix: ``Ŷ(κ) = Ĝ(κ) X̂(κ)``, and the
least-squares transfer function over the samples is

.. math::
    Ĝ(κ) = \frac{\sum_s Ŷ_s(κ)\,\overline{X̂_s(κ)}}{\sum_s |X̂_s(κ)|^2}.

The advection–diffusion–reaction PDE ``z_t = r z − u·∇z + ∇·(C∇z)`` run for unit time has
``Ĝ(κ) = exp(r − i b·κ − κᵀCκ)`` (here ``b = u`` and everything is the total over the map). So
``log|Ĝ| = r − κᵀCκ`` (least squares over the modes that carry energy, weighted by the output's
amplitude ``|Ŷ| ∝ |Ĝ|·‖X̂‖``, to which rounding is relative) and the phase along
axis ``a`` is ``−b_a κ_a`` (unwrapped from the lowest mode up; a shift is known modulo the period).
The layer kinds turn these totals into per-layer starting values
(:meth:`~npdegen.estimator.recipes.LayerKind.data_start`); for nonlinear maps it is only a start.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SpectralEstimate", "spectral_estimate"]


@dataclass(frozen=True)
class SpectralEstimate:
    """Totals over the map: ``reaction`` r, ``velocity`` b (per axis, length units) and
    ``diffusion`` C (symmetric, length² units)."""
    reaction: float
    velocity: np.ndarray
    diffusion: np.ndarray


def _wavenumbers(grid, spacing):
    return [2 * np.pi * np.fft.fftfreq(n, d=h) for n, h in zip(grid, spacing)]


def spectral_estimate(X, Y, spacing, max_fraction: float = 0.25) -> SpectralEstimate | None:
    """The totals ``(r, b, C)`` of snapshot pairs ``X → Y`` shaped ``(samples, *grid)`` on a periodic
    grid of the given ``spacing`` (per axis), from the modes up to ``max_fraction`` of each axis's
    size; None when too few modes carry energy to fit them."""
    X, Y = np.asarray(X, np.float64), np.asarray(Y, np.float64)
    grid = X.shape[1:]
    dim = len(grid)
    axes = tuple(range(1, dim + 1))
    Xh, Yh = np.fft.fftn(X, axes=axes), np.fft.fftn(Y, axes=axes)
    energy = np.sum(np.abs(Xh) ** 2, axis=0)
    cross = np.sum(Yh * np.conj(Xh), axis=0)
    kappa = _wavenumbers(grid, spacing)
    index = np.meshgrid(*[np.fft.fftfreq(n) * n for n in grid], indexing="ij")
    low = np.all([np.abs(m) <= max(1, int(max_fraction * n)) for m, n in zip(index, grid)], axis=0)
    ok = low & (energy > 1e-10 * energy.max()) if energy.max() > 0 else np.zeros(grid, bool)
    G = np.where(ok, cross / np.where(ok, energy, 1.0), 0.0)
    if ok.any():                                   # modes damped down to rounding carry no phase
        ok &= np.abs(G) > 1e-8 * np.abs(G).max()
    velocity = np.zeros(dim)
    for a in range(dim):                        # phase along axis a: modes m e_a, m = 1, 2, …
        phases, ks, ws = [], [], []
        for m in range(1, max(2, int(max_fraction * grid[a]) + 1)):
            at = tuple(m if i == a else 0 for i in range(dim))
            if m >= grid[a] or not ok[at]:
                break
            phases.append(np.angle(G[at]))
            ks.append(kappa[a][m])
            ws.append(energy[at] * abs(G[at]) ** 2)
        if phases:
            phi = np.unwrap(np.concatenate([[0.0], phases]))[1:]
            ks, ws = np.asarray(ks), np.asarray(ws)
            velocity[a] = -float(np.sum(ws * ks * phi) / np.sum(ws * ks * ks))
    pairs = [(i, j) for i in range(dim) for j in range(i, dim)]
    if np.count_nonzero(ok) < 1 + len(pairs) + 1:
        return None
    K = np.meshgrid(*kappa, indexing="ij")
    rows = [np.ones(np.count_nonzero(ok))]
    for i, j in pairs:
        rows.append(-(1.0 if i == j else 2.0) * (K[i] * K[j])[ok])
    A = np.stack(rows, axis=1)
    w = np.sqrt(energy[ok]) * np.abs(G[ok])        # the output's amplitude: rounding is relative to it
    w = w / w.max()
    b = np.log(np.abs(G[ok]))
    coef, *_ = np.linalg.lstsq(A * w[:, None], b * w, rcond=None)
    if not np.all(np.isfinite(coef)):
        return None
    C = np.zeros((dim, dim))
    for (i, j), c in zip(pairs, coef[1:]):
        C[i, j] = C[j, i] = c
    return SpectralEstimate(float(coef[0]), velocity, C)
