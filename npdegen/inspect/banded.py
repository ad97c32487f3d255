r"""Banded stencils ↔ matrices: the nearest banded stencil of a matrix, and stencils from moments.

*Nearest stencil* (least squares in the Frobenius norm). Homogeneous: one weight per offset j,
``w_j = mean_i W[i, i+j]`` (the mean of the j-th diagonal minimises ``Σ_i (W[i, i+j] − w_j)²``);
heterogeneous: one weight per row and offset, ``w_{ij} = W[i, i+j]``. The residual is
``‖W − B‖_F / ‖W‖_F`` with ``B`` the fitted banded matrix. On a periodic domain the diagonals
wrap around; otherwise rows near the ends have fewer entries.

*Stencil from moments.* The weights on ``offsets`` (grid units, spacing Δ) with
``Σ_j (jΔ)^k w_j = W_k`` for ``k = 0 … len(offsets) − 1`` (a Vandermonde solve; moments not
given are 0) — the numerical twin of ``NeuralPDE.from_moments``.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from numbers import Integral

import numpy as np

from ._checks import check_matrix, is_sparse

__all__ = ["BandedFit", "nearest_stencil", "stencil_from_moments", "banded_matrix"]


def _check_offsets(offsets, width):
    if offsets is None:
        if isinstance(width, bool) or not isinstance(width, Integral) or width < 1 or width % 2 == 0:
            raise ValueError(f"width must be an odd positive integer, got {width!r}")
        h = width // 2
        return tuple(range(-h, h + 1))
    offs = tuple(offsets)
    if not offs or not all(isinstance(j, Integral) and not isinstance(j, bool) for j in offs):
        raise TypeError(f"offsets must be a non-empty sequence of integers, got {offsets!r}")
    if len(set(offs)) != len(offs):
        raise ValueError(f"offsets must be distinct, got {offs!r}")
    return tuple(sorted(int(j) for j in offs))


def _columns(n, j, periodic):
    rows = np.arange(n)
    cols = rows + j
    if periodic:
        return rows, cols % n
    keep = (cols >= 0) & (cols < n)
    return rows[keep], cols[keep]


@dataclass(frozen=True)
class BandedFit:
    """``weights[..., k]`` belongs to ``offsets[k]``: shape ``(len(offsets),)`` for a homogeneous
    fit, ``(N, len(offsets))`` per row; ``residual`` is ``‖W − B‖_F / ‖W‖_F``."""
    offsets: tuple
    weights: np.ndarray
    residual: float
    periodic: bool
    n: int = field(repr=False)

    @property
    def stencil(self) -> dict:
        """``{offset: weight}`` (homogeneous fits only)."""
        if self.weights.ndim != 1:
            raise ValueError("a heterogeneous fit has one stencil per row; use .weights")
        return {j: float(w) for j, w in zip(self.offsets, self.weights)}

    def matrix(self) -> np.ndarray:
        """The fitted banded matrix ``B`` (dense)."""
        B = np.zeros((self.n, self.n))
        w = np.broadcast_to(self.weights, (self.n, len(self.offsets)))
        for k, j in enumerate(self.offsets):
            rows, cols = _columns(self.n, j, self.periodic)
            np.add.at(B, (rows, cols), w[rows, k])
        return B


def nearest_stencil(W, width: int = 3, offsets=None, homogeneous: bool = True,
                    periodic: bool = False) -> BandedFit:
    """Least-squares banded stencil of ``W`` on ``offsets`` (default ``−width//2 … width//2``)."""
    W = check_matrix(W)
    offs = _check_offsets(offsets, width)
    n = W.shape[0]
    if periodic and 2 * max(abs(j) for j in offs) >= n:
        raise ValueError(f"offsets {offs} wrap onto themselves on a periodic domain of {n} sites")
    diag = {j: _columns(n, j, periodic) for j in offs}
    entries = lambda rows, cols: np.asarray(W[rows, cols], dtype=float).ravel()
    if homogeneous:
        weights = np.array([entries(*diag[j]).mean() if diag[j][0].size else 0.0 for j in offs])
    else:
        weights = np.zeros((n, len(offs)))
        for k, j in enumerate(offs):
            rows, cols = diag[j]
            weights[rows, k] = entries(rows, cols)
    fit = BandedFit(offs, weights, 0.0, bool(periodic), n)
    return BandedFit(offs, weights, _relative_residual(W, fit, diag), bool(periodic), n)


def _relative_residual(W, fit, diag) -> float:
    """``‖W − B‖_F / ‖W‖_F`` without densifying a sparse ``W`` (B lives on the band, so the
    entries off the band contribute as they are)."""
    if is_sparse(W):
        coo = W.tocoo()
        step = (coo.col - coo.row) % fit.n if fit.periodic else coo.col - coo.row
        offs = np.array([j % fit.n if fit.periodic else j for j in fit.offsets])
        outside = float(np.sum(coo.data[~np.isin(step, offs)] ** 2))
        total = float(np.sum(coo.data**2))
    else:
        rest = W.copy()
        for rows, cols in diag.values():
            rest[rows, cols] = 0.0
        outside, total = float(np.sum(rest**2)), float(np.sum(W**2))
    if total == 0:
        return 0.0
    w = np.broadcast_to(fit.weights, (fit.n, len(fit.offsets)))
    inside = 0.0
    for k, j in enumerate(fit.offsets):
        rows, cols = diag[j]
        inside += float(np.sum((np.asarray(W[rows, cols], dtype=float).ravel() - w[rows, k]) ** 2))
    return float(np.sqrt((outside + inside) / total))


def stencil_from_moments(moments, offsets, spacing: float = 1.0) -> dict:
    """``{offset: w_j}`` whose moments ``Σ_j (jΔ)^k w_j`` are ``moments`` (``{k: W_k}`` or a list)."""
    items = dict(moments) if isinstance(moments, Mapping) else dict(enumerate(moments))
    offs = _check_offsets(offsets, None)
    bad = [k for k in items if isinstance(k, bool) or not isinstance(k, Integral) or k < 0]
    if bad:
        raise ValueError(f"moment orders must be integers >= 0, got {bad}")
    if items and max(items) >= len(offs):
        raise ValueError(f"{len(offs)} offsets fix at most W_0..W_{len(offs) - 1}; got W_{max(items)}")
    if not np.isfinite(spacing) or spacing <= 0:
        raise ValueError(f"spacing must be a positive finite number, got {spacing!r}")
    j = np.array(offs, dtype=float)
    h = max(np.max(np.abs(j)), 1.0)
    V = (j / h)[None, :] ** np.arange(len(offs))[:, None]
    rhs = np.array([float(items.get(k, 0.0)) / (h * spacing) ** k for k in range(len(offs))])
    return {j: float(w) for j, w in zip(offs, np.linalg.solve(V, rhs))}


def banded_matrix(stencil: Mapping, n: int, periodic: bool = True) -> np.ndarray:
    """The dense ``n × n`` matrix with ``W[i, i+j] = stencil[j]`` (wrapping when periodic)."""
    offs = _check_offsets(list(stencil), None)
    w = np.array([float(stencil[j]) for j in offs])
    return BandedFit(offs, w, 0.0, bool(periodic), int(n)).matrix()
