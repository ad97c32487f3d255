"""Grids and boundaries: defined once, used by every backend's runtime and by ``inspect``.

Arrays on a grid of shape ``(n_0, …, n_{d-1})`` are stored *padded*: ``halo[k]`` ghost cells on
each side of axis ``k``, the grid being ``a[..., h_0:h_0+n_0, …]``; the grid axes are the last
``d`` axes of the array (batch and layer axes come first). Each axis has its own boundary:

============  =========================================  ======================================
kind          ghost cell ``p`` (``p < 0`` or ``p ≥ n``)   adjoint (fold)
============  =========================================  ======================================
periodic      ``z[p mod n]``                              ghost value added to site ``p mod n``
dirichlet     ``0`` (zero Dirichlet)                      ghost value dropped
neumann       mirror about the cell faces:                ghost value added to its mirror site
              ``z[−k] = z[k−1]``, ``z[n−1+k] = z[n−k]``
============  =========================================  ======================================

:func:`fill_halo` sets the ghost cells axis by axis (axis 0 first, each over the whole padded
extent of the others, so corner cells compose the per-axis rules); :func:`fold_halo` is its exact
transpose: axis by axis in reverse order, ghost values are added to the sites they were read from
and cleared. :func:`source` is the same rule for one index (dense matrices in ``inspect``).
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

__all__ = ["BOUNDARIES", "normalise_boundaries", "normalise_grid", "source", "fill_halo", "fold_halo", "fold_views", "face_mask",
           "padded_shape", "interior"]

BOUNDARIES = ("periodic", "dirichlet", "neumann")


def normalise_boundaries(boundary, dim: int) -> tuple:
    """One boundary kind per axis: a kind applies to every axis, a tuple gives one per axis."""
    if isinstance(boundary, str):
        boundary = (boundary,) * dim
    if not isinstance(boundary, Sequence) or isinstance(boundary, bytes):
        raise TypeError(f"boundary must be one of {', '.join(BOUNDARIES)} or a tuple of them per axis, "
                        f"got {boundary!r}")
    boundary = tuple(boundary)
    if len(boundary) != dim:
        raise ValueError(f"boundary {boundary!r} has {len(boundary)} entries; the layer has {dim} axis(es)")
    for b in boundary:
        if b not in BOUNDARIES:
            raise ValueError(f"unknown boundary {b!r}; choose one of {', '.join(BOUNDARIES)}")
    return boundary


def normalise_grid(n, dim: int, halo: Sequence[int]) -> tuple:
    """The grid shape as a tuple of ints, checked against the stencil's reach per axis."""
    import numbers
    if isinstance(n, numbers.Integral) and not isinstance(n, bool):
        n = (int(n),) if dim == 1 else None          # an int is a 1-D grid only
    if n is None or isinstance(n, (str, bytes)) or not isinstance(n, Sequence):
        raise ValueError(f"n must be {'an integer or ' if dim == 1 else ''}a tuple of {dim} integers "
                         f"(one per axis), got {n!r}")
    if len(n) != dim or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in n):
        raise ValueError(f"n must be a tuple of {dim} integers (one per axis), got {n!r}")
    n = tuple(int(v) for v in n)
    for k, (v, h) in enumerate(zip(n, halo)):
        if v <= 2 * h:
            raise ValueError(f"n must be > {2 * h} (twice the stencil half-width) along axis {k}, got {v}")
    return n


def source(p: int, n: int, kind: str) -> int | None:
    """The grid index that padded position ``p`` (grid coordinates) reads, or ``None`` for a zero."""
    if 0 <= p < n:
        return p
    if kind == "periodic":
        return p % n
    if kind == "neumann":
        q = -p - 1 if p < 0 else 2 * n - 1 - p
        return q if 0 <= q < n else None
    return None


def padded_shape(grid: Sequence[int], halo: Sequence[int]) -> tuple:
    return tuple(n + 2 * h for n, h in zip(grid, halo))


def interior(a, halo: Sequence[int]):
    """The view of the grid inside a padded array (grid axes last)."""
    d = len(halo)
    index = (Ellipsis,) + tuple(slice(h, a.shape[a.ndim - d + k] - h) for k, h in enumerate(halo))
    return a[index]


@lru_cache(maxsize=256)
def _plan(shape: tuple, boundaries: tuple, halo: tuple) -> tuple:
    """``(fill, fold)``: the index operations of :func:`fill_halo` and :func:`fold_halo` on arrays
    whose grid axes (the last ``len(halo)``) are padded to ``shape`` — ``(destination, source)``
    pairs, a source of None meaning zero. Built once per shape: a layer's loop only indexes."""
    d = len(halo)

    def ax(k, start, stop, step=None):
        return (Ellipsis,) + tuple(slice(start, stop, step) if j == k else slice(None) for j in range(d))
    fill, fold = [], []
    for k, (kind, h) in enumerate(zip(boundaries, halo)):
        if h == 0:
            continue
        n = shape[k] - 2 * h
        lo, hi = ax(k, 0, h), ax(k, n + h, None)
        if kind == "periodic":
            src = ax(k, n, n + h), ax(k, h, 2 * h)
        elif kind == "neumann":
            src = ax(k, 2 * h - 1, h - 1, -1), ax(k, n + h - 1, n - 1, -1)
        else:
            src = None, None
        fill += [(lo, src[0]), (hi, src[1])]
        # the transpose, axes in reverse: ghost values added to the sites they read, then cleared
        fold = ([(src[0], lo), (src[1], hi)] if src[0] is not None else []) + [(lo, None), (hi, None)] + fold
    return tuple(fill), tuple(fold)


def fill_halo(a, boundaries: Sequence[str], halo: Sequence[int]) -> None:
    """Set the ghost cells of the padded array ``a`` from its grid (in place)."""
    d = len(halo)
    fill, _ = _plan(tuple(a.shape[a.ndim - d:]), tuple(boundaries), tuple(halo))
    for dst, src in fill:
        a[dst] = 0 if src is None else a[src]


def fold_halo(a, boundaries: Sequence[str], halo: Sequence[int]) -> None:
    """Transpose of :func:`fill_halo`: add every ghost value to the site it reads, clear the ghosts."""
    d = len(halo)
    _, fold = _plan(tuple(a.shape[a.ndim - d:]), tuple(boundaries), tuple(halo))
    for dst, src in fold:
        if src is None:
            a[dst] = 0
        else:
            a[dst] += a[src]


def fold_views(a, boundaries: Sequence[str], halo: Sequence[int]) -> list:
    """``[(site view, ghost view), …]`` of :func:`fold_halo` on the array ``a`` (ghosts not cleared):
    ``for d, g in fold_views(a, …): d += g`` folds it. For a buffer folded again and again (the views
    are made once)."""
    d = len(halo)
    _, fold = _plan(tuple(a.shape[a.ndim - d:]), tuple(boundaries), tuple(halo))
    return [(a[dst], a[src]) for dst, src in fold if src is not None]


def face_mask(grid: Sequence[int], boundaries: Sequence[str], axis: int, side: int, dtype=float) -> np.ndarray:
    """1 in every cell, except 0 in the cells whose face on ``side`` (−1: low, +1: high) of
    ``axis`` is a zero-flux (``neumann``) boundary face: a flux-form layer multiplies its face
    fluxes by these masks, so that no mass crosses a reflecting wall."""
    mask = np.ones(tuple(grid), dtype)
    if boundaries[axis] == "neumann":
        index = [slice(None)] * len(grid)
        index[axis] = 0 if side < 0 else -1
        mask[tuple(index)] = 0
    return mask
