r"""A start from the data: the linear response of snapshot pairs on a periodic grid.

For a linear, translation-invariant map the Fourier modes do not mix: ``Ŷ(κ) = Ĝ(κ) X̂(κ)``, and the
least-squares transfer function over the samples is

.. math::
    Ĝ(κ) = \frac{\sum_s Ŷ_s(κ)\,\overline{X̂_s(κ)}}{\sum_s |X̂_s(κ)|^2}.

The advection–diffusion–reaction PDE ``z_t = r z − u·∇z + ∇·(C∇z)`` run for unit time has
``Ĝ(κ) = exp(r − i b·κ − κᵀCκ)`` (here ``b = u`` and everything is the total over the map). So
``log|Ĝ| = r − κᵀCκ`` (least squares over the modes that carry energy, weighted by the output's
amplitude ``|Ŷ| ∝ |Ĝ|·‖X̂‖``, to which rounding is relative) and the phase is ``−b·κ``: in 1-D
unwrapped from the lowest mode up, on N-D grids from the peak of the cross-correlation and a least
squares fit of the remaining sub-cell shift over all modes (a shift is known modulo the period).
The layer kinds turn these totals into per-layer starting values
(:meth:`~npdegen.estimator.recipes.LayerKind.data_start`); for nonlinear maps it is only a start.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SpectralEstimate", "spectral_estimate", "FrameEstimate", "frame_estimate"]


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
    velocity = _velocity_nd(G, ok, energy, kappa, spacing) if dim > 1 else np.zeros(dim)
    for a in range(dim if dim == 1 else 0):     # 1-D: phase along the axis, modes m = 1, 2, …
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


def _velocity_nd(G, ok, energy, kappa, spacing) -> np.ndarray:
    r"""N-D shift ``b`` of the transfer function ``Ĝ(κ) ∝ e^{−iκ·b}``: random N-D data need not carry
    axis-aligned modes (sine sums with every wave-vector component ≠ 0), so the shift is found on all
    modes at once. The whole cells of ``b`` are the peak of the cross-correlation
    ``c(x_j) = Σ_κ Ĝ(κ)|X̂(κ)|² e^{iκ·x_j}`` (the modes ``ok``), the rest ``δ`` (``|δ_a| ≤ Δ_a/2``) by
    weighted least squares on the phases of ``Ĝ(κ) e^{iκ·b₀}``, which lie within ``±π/4`` on modes
    below a quarter of each axis, so they need no unwrapping."""
    grid = G.shape
    cross = np.where(ok, G * energy, 0.0)
    corr = np.real(np.fft.ifftn(cross))
    peak = np.unravel_index(int(np.argmax(corr)), grid)
    b0 = np.array([(((j + n // 2) % n) - n // 2) * h for j, n, h in zip(peak, grid, spacing)], np.float64)
    K = np.meshgrid(*kappa, indexing="ij")
    phase = np.angle(G * np.exp(1j * sum(k * b for k, b in zip(K, b0))))
    w = energy * np.abs(G) ** 2
    use = ok & (w > 0)
    if np.count_nonzero(use) < len(grid):
        return b0
    A = np.stack([k[use] for k in K], axis=1) * np.sqrt(w[use])[:, None]
    delta, *_ = np.linalg.lstsq(A, -phase[use] * np.sqrt(w[use]), rcond=None)
    return b0 + (delta if np.all(np.isfinite(delta)) else 0.0)


@dataclass(frozen=True)
class FrameEstimate:
    r"""The Galilean frame of snapshot pairs of a 1-D conservation law ``z_t + (k z²/2 + a z)_q = …``:
    ``flux_time`` ``K = kT``, ``shift`` ``A = aT`` (length units), ``diffusion`` ``νT`` measured in
    the moving frame, and ``spread``: whether the samples' means vary enough to tell ``K`` (else 0)."""
    flux_time: float
    shift: float
    diffusion: float
    spread: bool


def frame_estimate(X, Y, spacing: float, modes: int = 4, grid_points: int = 2001) -> FrameEstimate:
    r"""``K``, ``A`` and ``νT`` of 1-D periodic pairs ``X → Y`` (module docstring of :class:`FrameEstimate`).

    With ``z = m + v`` (``m`` the sample's mean, kept by a conservation law) the law becomes
    ``v_t + (k m + a) v_q + k v v_q = ν v_qq``: the sample translates with the speed ``k m + a`` and
    ``v`` evolves about a fixed frame. So ``Y_s ≈ X_s`` shifted by ``b_s = K m_s + A``, and ``(K, A)``
    maximise the aligned correlation of the lowest ``modes`` Fourier modes

    .. math:: S(K, A) = \mathrm{Re} \sum_s \sum_{m=1}^{M} Ŷ_s(κ_m)\, \overline{X̂_s(κ_m)}\, e^{iκ_m (K m_s + A)}

    (scanned over ``K ∈ [0, 4P/max|m_s|]`` and ``A`` over one period ``P``, then refined by
    Nelder–Mead). ``νT`` is :func:`spectral_estimate`'s diffusion of the pairs with each ``Y_s``
    shifted back by ``b_s`` (an upper estimate: shocks dissipate too). When the means spread by less
    than ``10⁻³ max|X|`` the data cannot tell ``K``: it is 0 and ``spread`` is False."""
    from scipy.optimize import minimize
    X, Y = np.asarray(X, np.float64), np.asarray(Y, np.float64)
    n = X.shape[1]
    period = n * spacing
    means = X.mean(axis=1)
    kappa = 2 * np.pi * np.fft.rfftfreq(n, d=spacing)
    M = max(1, min(modes, n // 2))
    cross = (np.fft.rfft(Y, axis=1) * np.conj(np.fft.rfft(X, axis=1)))[:, 1:M + 1]
    k = kappa[1:M + 1]
    norm = max(float(np.sum(np.abs(cross))), 1e-300)
    spread = bool(np.ptp(means) > 1e-3 * max(float(np.abs(X).max()), 1e-300))
    shifts = np.linspace(-period / 2, period / 2, 8 * n, endpoint=False)
    if spread:
        flux = np.linspace(0.0, 4 * period / float(np.abs(means).max()), grid_points)
        Q = np.stack([np.sum(cross * np.exp(1j * k * K * means[:, None]), axis=0) for K in flux])
    else:
        flux, Q = np.zeros(1), np.sum(cross, axis=0)[None]
    S = np.real(Q @ np.exp(1j * k[:, None] * shifts[None, :]))
    i, j = np.unravel_index(int(np.argmax(S)), S.shape)

    def score(p):
        K = p[0] if spread else 0.0
        return -float(np.real(np.sum(cross * np.exp(1j * k * (K * means[:, None] + p[-1]))))) / norm
    start = np.array([flux[i], shifts[j]] if spread else [shifts[j]])
    best = minimize(score, start, method="Nelder-Mead", options={"xatol": 1e-10 * period, "fatol": 1e-14})
    p = best.x if best.fun <= score(start) else start
    K = max(float(p[0]), 0.0) if spread else 0.0
    A = float((p[-1] + period / 2) % period - period / 2)
    b = K * means + A
    aligned = np.fft.irfft(np.fft.rfft(Y, axis=1) * np.exp(1j * kappa[None, :] * b[:, None]), n, axis=1)
    est = spectral_estimate(X, aligned, (spacing,))
    nu = max(float(est.diffusion[0, 0]), 0.0) if est is not None else 0.0
    return FrameEstimate(K, A, nu, spread)
