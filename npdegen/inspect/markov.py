r"""What a Markov-chain layer (or any row-stochastic linear layer) is as a chain.

For the dense transition matrix ``P`` of the layer on a grid (``P[i, j]`` the probability of a
step from site ``i`` to site ``j``, :func:`~npdegen.inspect.matrix.step_matrix`):

* stochasticity: the smallest stencil weight ``min_o p_o(i)`` and ``max_i |Σ_j P_ij − 1|``;
* the stationary distribution ``π`` with ``π P = π`` (left eigenvector of eigenvalue 1,
  normalised to sum 1);
* mixing: the second largest eigenvalue modulus ``|λ₂|``, the spectral gap ``1 − |λ₂|`` and the
  relaxation time ``1/(1 − |λ₂|)`` layers;
* the drift–diffusion the chain approximates, per site: ``b_k = Σ_j (x_j − x_i)_k P_ij`` and
  ``a_kl = Σ_j (x_j − x_i)_k (x_j − x_i)_l P_ij`` per layer (the first two moments; displacements
  taken along the stencil offsets, so periodic wrap-around does not distort them).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .linearised import linearised_kernel
from .matrix import step_matrix

__all__ = ["ChainReport", "chain_report"]


@dataclass(frozen=True)
class ChainReport:
    transition: np.ndarray       # P, N x N
    min_weight: float            # smallest transition weight of the stencil
    row_sum_error: float
    stationary: np.ndarray       # π, shaped like the grid
    second_eigenvalue: float     # |λ₂|
    spectral_gap: float
    relaxation_time: float
    drift: np.ndarray            # (dim, *grid): b per layer
    second_moment: np.ndarray    # (dim, dim, *grid): a per layer

    def __str__(self):
        lines = [f"Markov chain on {self.stationary.size} sites: smallest transition weight {self.min_weight:.3g}, "
                 f"max |row sum - 1| = {self.row_sum_error:.2g}",
                 f"|lambda_2| = {self.second_eigenvalue:.6g}, spectral gap {self.spectral_gap:.4g}, "
                 f"relaxation time {self.relaxation_time:.4g} layers",
                 f"stationary distribution: min {self.stationary.min():.4g}, max {self.stationary.max():.4g}"]
        for k in range(self.drift.shape[0]):
            lines.append(f"drift b[{k}] per layer: mean {self.drift[k].mean():.4g}, range "
                         f"[{self.drift[k].min():.4g}, {self.drift[k].max():.4g}]")
            lines.append(f"second moment a[{k}{k}] per layer: mean {self.second_moment[k, k].mean():.4g}")
        return "\n".join(lines)


def chain_report(layer, theta: dict, n, spacing=1.0, boundary="periodic", layer_index: int = 0) -> ChainReport:
    """The :class:`ChainReport` of a linear layer with parameters ``theta`` on grid ``n``."""
    ir = layer.step_ir
    if not ir.linear:
        raise ValueError("chain_report needs a linear layer (a Markov chain's step is linear in the field)")
    grid = (int(n),) if np.ndim(n) == 0 else tuple(int(v) for v in n)
    spacings = (float(spacing),) * ir.dim if np.ndim(spacing) == 0 else tuple(float(v) for v in spacing)
    P = step_matrix(layer, theta, grid, spacing=spacings, boundary=boundary, layer_index=layer_index)
    values, vectors = np.linalg.eig(P.T)
    order = np.argsort(-np.abs(values))
    lead = vectors[:, order[0]].real
    stationary = (lead / lead.sum()).reshape(grid)
    second = float(np.abs(values[order[1]])) if len(values) > 1 else 0.0
    gap = 1.0 - second
    kernel = linearised_kernel(layer, np.zeros(grid), theta, spacing=spacings, boundary=boundary,
                               layer_index=layer_index)
    dim = ir.dim
    drift = np.zeros((dim, *grid))
    second_moment = np.zeros((dim, dim, *grid))
    for off, w in kernel.weights.items():
        w = np.broadcast_to(w, grid)
        step = np.array(off, float) * np.array(spacings)
        for k in range(dim):
            drift[k] += step[k] * w
            for m in range(dim):
                second_moment[k, m] += step[k] * step[m] * w
    return ChainReport(transition=P, min_weight=float(min(np.min(w) for w in kernel.weights.values())), row_sum_error=float(np.max(np.abs(P.sum(1) - 1))),
                       stationary=stationary, second_eigenvalue=second, spectral_gap=gap,
                       relaxation_time=float(np.inf if gap <= 0 else 1.0 / gap), drift=drift,
                       second_moment=second_moment)
