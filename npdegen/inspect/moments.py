r"""Moments of any weight matrix: which PDE does a dense (or sparse) ``W`` approximate?

For sites ``q_i`` (``0, 1, …, N−1`` by default) and ``r_{ij} = q_j − q_i`` (wrapped into
``[−P/2, P/2)`` on a periodic domain of length P), row i of ``W`` has the moments

.. math::  W_k(i) = \sum_j r_{ij}^k\, W_{ij}    \qquad\text{(no 1/k!, as in npdegen's stencils)}

so that ``(W z)_i ≈ Σ_k W_k(i)/k! ∂^k z(q_i)``. :func:`kernel_moments` returns them with the
cumulants of each normalised row, the fraction of ``W``'s action on smooth test signals that the
truncated moment PDE reproduces, the nearest banded stencil and a locality profile.

*Explained fraction.* The k-moment PDE of row i, discretised as npdegen discretises PDEs
(``NeuralPDE.from_moments``), is the stencil on the k + 1 sites nearest to ``q_i`` whose moments
``0 … k`` equal ``W_0(i) … W_k(i)``. On smooth test signals ``S`` (a constant and the Fourier
modes of wavelength ≥ 8 spacings) the explained fraction is ``1 − ‖(W − P_k)S‖²/‖WS‖²``, clipped
to [0, 1]. A banded stencil of width ≤ k + 1 is reproduced exactly; a non-local matrix is not.

*Far-field noise.* A small amount of noise on every entry (a trained dense layer, a measured
matrix) ruins the raw moments: ``W_k`` sums ``r^k`` times the noise over all N columns, so its
noise grows like ``σ N^{k+1/2}`` (1 % noise on 64 sites gives W_3 ≈ ±2000). :func:`kernel_moments`
therefore looks at the profile of the mean square of ``W_ij`` against the index distance
``d = |i − j|``. When the far half of that profile is flat (the two halves agree within their
sampling error, so it is a floor, not a decaying tail), has zero mean and at most weakly
correlated row neighbours (a mean-field coupling or a smooth or alternating tail is signal) it is read as noise of rms ``σ``; the
kernel's *support* ``s`` is the largest distance whose mean square stands out of the floor
(5 standard errors), and the moments are summed over ``d ≤ s`` only. Each moment then carries the
noise uncertainty ``σ (Σ_{d(i,j) ≤ s} r_ij^{2k})^{1/2}`` (:attr:`KernelMoments.uncertainty`); the
truncation's own bias (signal hidden below the floor beyond ``s``) is not included. A matrix whose
far field is exactly zero, decays, or holds most of the weight (a non-local matrix) is left as it
is: its moments are the plain sums above.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._checks import check_coords, check_matrix, check_order
from .rowmoments import (NoiseFloor, _consistent_orders, _differs, _distance_mass, _distance_profile,
                         _moment_noise, _moment_pde, _noise_floor, _row_moments, _truncated)
from .banded import BandedFit, nearest_stencil
from .cumulants import cumulants_from_moments, term_name

__all__ = ["KernelMoments", "NoiseFloor", "kernel_moments"]

WELL, FAIR = 0.99, 0.9


def _test_signals(q, period):
    n = q.shape[0]
    span = period if period is not None else (q[-1] - q[0]) * n / max(n - 1, 1) if n > 1 else 1.0
    modes = int(np.clip(n // 8, 1, 16))
    x = 2 * np.pi * (q - q[0]) / span
    cols = [np.ones(n)]
    for m in range(1, modes + 1):
        cols += [np.cos(m * x), np.sin(m * x)]
    return np.stack(cols, axis=1)


def _fraction(err, ref):
    if ref <= 0:
        return 1.0 if err <= 0 else 0.0
    return float(np.clip(1.0 - err / ref, 0.0, 1.0))


@dataclass(frozen=True)
class KernelMoments:
    """Moments and their diagnostics for the rows of an N×N weight matrix.

    ``moments[i, k] = W_k(i)`` (summed within the kernel's support when a noise floor was found,
    see ``noise``), ``cumulants[i, k] = κ_k(i)`` (κ_0 = log W_0, NaN where W_0 ≤ 0),
    ``explained[k]``: fraction of ``W`` explained by the k-moment PDE (k = 0 … max_order; higher
    orders can explain less: far-away weights dominate high moments, the expansion is asymptotic;
    :attr:`notes` says so when it happens), ``explained_local[i]``: the same per row at
    ``max_order``, ``locality[d]``: fraction of ``Σ|W|`` at index distance d. ``noise``: the
    far-field :class:`NoiseFloor` (None for a clean, decaying or non-local far field);
    ``uncertainty[i, k]``: the noise standard deviation of ``W_k(i)`` (zeros without a floor);
    ``explained_signal[k]``: the explained fraction of the local part (the entries within the
    support) — the verdict's measure; equal to ``explained`` without a floor. ``consistent[k]``
    (with a floor): the k-moment PDE's stencil reproduces every measured higher moment within its
    noise — the verdict's order is the lowest consistent one.
    """
    moments: np.ndarray
    cumulants: np.ndarray
    explained: np.ndarray
    explained_local: np.ndarray
    locality: np.ndarray
    coords: np.ndarray
    period: float | None
    matrix: object = field(repr=False)
    noise: NoiseFloor | None = None
    uncertainty: np.ndarray | None = field(default=None, repr=False)
    explained_signal: np.ndarray | None = None
    consistent: np.ndarray | None = None

    @property
    def max_order(self) -> int:
        return self.moments.shape[1] - 1

    @property
    def _scored(self) -> np.ndarray:
        return self.explained if self.explained_signal is None else self.explained_signal

    @property
    def resolved(self) -> np.ndarray:
        """``resolved[k]``: W_k stands out of its noise (beyond 3 std in at least half of the rows);
        all True without a noise floor. An unresolved moment is zero within the noise."""
        if self.uncertainty is None or not np.any(self.uncertainty > 0):
            return np.ones(self.max_order + 1, bool)
        slack = np.zeros(self.moments.shape[0])
        return np.array([_differs(self.moments[:, k], self.uncertainty[:, k], slack)
                         for k in range(self.max_order + 1)])

    def locality_radius(self, fraction: float = 0.99) -> int:
        """Smallest index distance d holding ``fraction`` of the weight mass ``Σ|W|``."""
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
        return int(np.searchsorted(np.cumsum(self.locality), fraction * (1 - 1e-12)))

    def nearest_stencil(self, width: int = 3, offsets=None, homogeneous: bool = True) -> BandedFit:
        """Least-squares banded stencil (see :func:`npdegen.inspect.banded.nearest_stencil`)."""
        return nearest_stencil(self.matrix, width=width, offsets=offsets, homogeneous=homogeneous,
                               periodic=self.period is not None)

    @property
    def best_order(self) -> int:
        """The order k whose moment PDE explains ``W`` best (the lowest one among ties). With a noise
        floor: the lowest order whose stencil agrees with all the higher measured moments within
        their noise (explained fractions that close cannot be told apart; the moments can)."""
        if self.noise is not None and self.consistent is not None:
            return int(np.argmax(self.consistent)) if np.any(self.consistent) else self.max_order
        e = self._scored
        return int(np.argmax(e >= e.max() - 1e-12))

    @property
    def verdict(self) -> str:
        k = self.best_order
        e = float(self._scored[k])
        if self.noise is None:
            shown, tail = f"explained fraction {e:.6f}" if e >= WELL else f"explained fraction {e:.4f}", ""
        else:
            nz = self.noise
            shown = (f"explained fraction {float(self.explained[k]):.4f}; of its part within distance "
                     f"{nz.support}: {e:.6f}")
            tail = (f"; beyond distance {nz.support} W is noise of rms {nz.rms:.3g} "
                    f"({100 * nz.share:.2g}% of its action, excluded from the moments)")
        if e >= WELL:
            return f"well explained by a {k}-moment PDE ({shown}){tail}"
        if e >= FAIR:
            return f"mostly explained by a {k}-moment PDE ({shown}){tail}"
        return (f"poorly explained by any moment PDE up to order {self.max_order} (best: order {k}, "
                f"{shown}): not a local operator; 99% of the weight mass lies within distance "
                f"{self.locality_radius()}{tail}")

    @property
    def notes(self) -> list[str]:
        """Plain-language remarks: the noise floor, unresolved moments and why the explained
        fraction falls with the order (when it does)."""
        out = []
        if self.noise is not None:
            out.append(f"noise floor: entries beyond distance {self.noise.support} look like noise of rms "
                       f"{self.noise.rms:.3g} (flat far field); moments summed within distance "
                       f"{self.noise.support}, +- their noise")
            bad = [k for k, ok in enumerate(self.resolved) if not ok]
            if bad:
                out.append("not resolved (zero within the noise): " + ", ".join(f"W_{k}" for k in bad))
        e = self.explained
        drops = [k for k in range(1, e.size) if e[k] < np.max(e[:k]) - 1e-6]
        if drops:
            k0 = int(np.argmax(e[:drops[0]]))
            reach = (k0 + 1) // 2
            beyond = 1.0 - float(np.sum(self.locality[:reach + 1]))
            unresolved = [k for k in range(k0 + 1, drops[-1] + 1) if not self.resolved[k]]
            if self.noise is not None and (unresolved or e[k0] - e[drops[-1]] <= self.noise.share_within):
                out.append(f"explained fraction falls after order {k0} ({e[k0]:.4f} -> {e[drops[-1]]:.4f} at "
                           f"order {drops[-1]}): within the noise ("
                           + (", ".join(f"W_{k}" for k in unresolved) + " not resolved; " if unresolved else "")
                           + f"noise share within the support {self.noise.share_within:.2g}), matching the "
                           f"higher moments fits their noise")
            else:
                    out.append(f"explained fraction falls after order {k0} ({e[k0]:.4f} -> {e[drops[-1]]:.4f} at "
                           f"order {drops[-1]}): the k-moment PDE puts W_0..W_k on the k+1 nearest sites, and W's higher "
                       f"moments carry its weights beyond distance {reach} ({100 * beyond:.2g}% of sum|W|), "
                           f"which those stencils cannot represent (the moment expansion of a kernel with a "
                           f"tail is asymptotic, not convergent)")
        return out

    def __str__(self) -> str:
        noisy = self.noise is not None
        lines = [f"W: {self.moments.shape[0]} sites, moments W_k = sum_j r^k W_ij (no 1/k!)",
                 f"{'k':>2}  {'process':<32} {'mean W_k':>12} {'min':>12} {'max':>12} {'explained':>10}"
                 + (f" {'+- noise':>10}" if noisy else "")]
        for k in range(self.max_order + 1):
            col = self.moments[:, k]
            lines.append(f"{k:>2}  {term_name(k):<32} {col.mean():>12.5g} {col.min():>12.5g} "
                         f"{col.max():>12.5g} {self.explained[k]:>10.6f}"
                         + (f" {float(np.median(self.uncertainty[:, k])):>10.3g}" if noisy else ""))
        lines += [f"note: {note}" for note in self.notes]
        lines.append(f"verdict: {self.verdict}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        nan = lambda a: [None if not np.isfinite(v) else float(v) for v in np.ravel(a)]
        unc = np.zeros_like(self.moments) if self.uncertainty is None else self.uncertainty
        noise = None if self.noise is None else {"rms": self.noise.rms, "support": self.noise.support,
                                                 "share": self.noise.share,
                                                 "share_within": self.noise.share_within}
        return {"n": int(self.moments.shape[0]), "max_order": self.max_order,
                "moments": [nan(row) for row in self.moments],
                "uncertainty": [nan(row) for row in unc],
                "resolved": [bool(v) for v in self.resolved],
                "cumulants": [nan(row) for row in self.cumulants],
                "explained": nan(self.explained), "explained_signal": nan(self._scored),
                "explained_local": nan(self.explained_local),
                "consistent": None if self.consistent is None else [bool(v) for v in self.consistent],
                "locality": nan(self.locality), "locality_radius_99": self.locality_radius(),
                "noise": noise, "notes": self.notes,
                "best_order": self.best_order, "verdict": self.verdict}


def kernel_moments(W, coords=None, max_order: int = 4, period: float | None = None) -> KernelMoments:
    """Per-row moments ``W_k(i) = Σ_j (q_j − q_i)^k W_ij`` of a dense or SciPy-sparse N×N matrix.

    ``coords``: site positions (strictly increasing, length N), default ``0 … N−1``;
    ``period``: length of a periodic domain (offsets wrap), default none. A flat far field is read
    as noise and left out of the moments (see the module's docstring; ``result.noise``,
    ``result.uncertainty``). Raises ``TypeError`` for non-numeric input and ``ValueError`` for a
    non-square or non-finite ``W``, coordinates of the wrong length and ``max_order < 0``.
    """
    W = check_matrix(W)
    K = check_order(max_order)
    n = W.shape[0]
    q, period = check_coords(coords, n, period)
    mass, profile = _distance_profile(W, period)
    noise = _noise_floor(profile)
    support = None if noise is None else noise.support
    moments = _row_moments(W, q, period, K, support)
    cumulants = np.stack(cumulants_from_moments(list(moments.T)), axis=1)
    S = _test_signals(q, period)
    WS = np.asarray(W @ S)
    ref = np.sum(WS**2)
    LS = WS if noise is None else np.asarray(_truncated(W, period, support) @ S)
    ref_local = np.sum(LS**2)
    explained, signal, local = np.zeros(K + 1), np.zeros(K + 1), np.zeros(n)
    for k in range(K + 1):
        kk = min(k, n - 1)
        idx, p = _moment_pde(q, period, moments, kk)
        PS = np.einsum("il,ils->is", p, S[idx])
        err = WS - PS
        explained[k] = _fraction(np.sum(err**2), ref)
        if noise is not None:
            signal[k] = _fraction(np.sum((LS - PS) ** 2), ref_local)
        if k == K:
            row_err, row_ref = np.sum(err**2, axis=1), np.sum(WS**2, axis=1)
            local = np.array([_fraction(e, r) for e, r in zip(row_err, row_ref)])
    uncertainty, consistent = np.zeros_like(moments), None
    if noise is not None:
        consistent = _consistent_orders(q, period, moments, support, noise.rms)
        uncertainty, hits = _moment_noise(q, period, K, support, noise.rms)
        within = noise.rms**2 * float(np.sum(hits * np.sum(S**2, axis=1)))
        noise = NoiseFloor(noise.rms, support, float(np.sum((WS - LS) ** 2) / ref) if ref > 0 else 0.0,
                           float(within / ref_local) if ref_local > 0 else 0.0)
    return KernelMoments(moments=moments, cumulants=cumulants, explained=explained,
                         explained_local=local, locality=_distance_mass(mass), coords=q,
                         period=period, matrix=W, noise=noise, uncertainty=uncertainty,
                         explained_signal=None if noise is None else signal, consistent=consistent)
