"""The halo plan of a field chunked along its grid axes (domain decomposition, :mod:`.domain`).

Chunk ``c`` runs on its *extended* block: its own sites plus ``depth`` sites per side and axis,
wrapped on periodic axes and cut at the grid's edges on the others (where the chunk's own network
applies the boundary exactly). ``extend`` is the gather ``x_c^{ext} = P_c x`` (a 0/1 matrix; on a
periodic axis a site may be read more than once) and ``fold_into`` its transpose ``acc += P_cᵀ e``,
which returns the halo parts of per-site gradients to the chunks that own those sites. Both work
on the array's own module (NumPy or CuPy: :func:`~npdegen.distributed.arrays.array_module`).
"""
from __future__ import annotations

from bisect import bisect_right
from itertools import product

import numpy as np

from .arrays import array_module

__all__ = ["HaloPlan"]


class HaloPlan:
    """Chunk layout of the grid axes: per block, where its extended block comes from.

    ``pieces(idx)`` lists ``(source block, source slices, destination slices)`` that tile the
    extended block of grid block ``idx`` (the gather ``P_c``); ``folds`` is its transpose.
    """

    def __init__(self, chunks, depth, boundaries):
        self.chunks, self.depth = tuple(map(tuple, chunks)), tuple(depth)
        self.periodic = tuple(b == "periodic" for b in boundaries)
        self.starts = [np.concatenate([[0], np.cumsum(c)]).tolist() for c in self.chunks]
        self.n = [s[-1] for s in self.starts]
        self.axes = [[self._axis_block(a, j) for j in range(len(c))] for a, c in enumerate(self.chunks)]
        self.blocks = list(product(*(range(len(c)) for c in self.chunks)))
        #: ``folds[idx]``: ``(extended block, its slices, slices of idx)``, every place block idx was read
        self.folds = {idx: [] for idx in self.blocks}
        for src in self.blocks:
            for owner, s_sl, d_sl in self.pieces(src):
                self.folds[owner].append((src, d_sl, s_sl))

    def _axis_block(self, a, j):
        """``(lo, hi, pieces)`` of block ``j`` on axis ``a``: halo widths and the runs it reads,
        ``(source block, source start, source stop, destination start)``."""
        starts, n, depth = self.starts[a], self.n[a], self.depth[a]
        s, e = starts[j], starts[j + 1]
        if len(self.chunks[a]) == 1 or depth == 0:      # the whole axis: the local boundary is exact
            lo = hi = 0
        elif self.periodic[a]:
            lo = hi = depth
        else:                                           # cut at the grid's edges
            lo, hi = min(depth, s), min(depth, n - e)
        pieces, p = [], s - lo
        while p < e + hi:
            g = p % n
            b = bisect_right(starts, g) - 1
            take = min(starts[b + 1] - g, e + hi - p)
            pieces.append((b, g - starts[b], g - starts[b] + take, p - s + lo))
            p += take
        return lo, hi, pieces

    def ext_shape(self, idx) -> tuple:
        return tuple(self.chunks[a][j] + lo + hi for a, j in enumerate(idx)
                     for lo, hi, _ in [self.axes[a][j]])

    def inner(self, idx) -> tuple:
        """Slices of the block's own sites inside its extended block."""
        return tuple(slice(self.axes[a][j][0], self.axes[a][j][0] + self.chunks[a][j]) for a, j in enumerate(idx))

    def pieces(self, idx):
        for combo in product(*(self.axes[a][j][2] for a, j in enumerate(idx))):
            yield (tuple(c[0] for c in combo), tuple(slice(c[1], c[2]) for c in combo),
                   tuple(slice(c[3], c[3] + c[2] - c[1]) for c in combo))

    def _global(self, idx):
        for owner, s_sl, d_sl in self.pieces(idx):
            yield tuple(slice(self.starts[a][b] + s.start, self.starts[a][b] + s.stop)
                        for a, (b, s) in enumerate(zip(owner, s_sl))), d_sl

    def extend(self, arr, idx):
        """``P_c arr`` for an array (NumPy or CuPy) whose trailing axes are the grid."""
        out = array_module(arr).empty(arr.shape[:arr.ndim - len(idx)] + self.ext_shape(idx), arr.dtype)
        for g_sl, d_sl in self._global(idx):
            out[(Ellipsis, *d_sl)] = arr[(Ellipsis, *g_sl)]
        return out

    def fold_into(self, acc, ext, idx):
        """``acc += P_c^T ext`` (the adjoint of :meth:`extend`)."""
        for g_sl, d_sl in self._global(idx):
            acc[(Ellipsis, *g_sl)] += ext[(Ellipsis, *d_sl)]
