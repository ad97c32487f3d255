"""Row moments of a weight matrix, the noise floor of its far field, and the moment PDE of a row.

The numerical core of :mod:`npdegen.inspect.moments` (see its docstring for the definitions):
``W_k(i) = Σ_j r_ij^k W_ij`` by blocks of rows, optionally within a support ``d ≤ s``; the noise
floor read off the profile of mean squares against the index distance, with each moment's noise
uncertainty; and the stencil on the k + 1 nearest sites that matches the moments 0…k.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._checks import is_sparse

_BLOCK = 512          # rows per block for dense matrices: bounds the temporary N×block arrays
_STAND_OUT = 5.0      # a distance belongs to the support when its mean square exceeds the floor by this many standard errors
_FLAT = 4.0           # the far field is a floor when its two halves agree within this many standard errors
_WHITE = 0.5         # |correlation of row neighbours| up to which a far field counts as noise (smooth: ~1, oscillating: ~-1)
_MIN_FAR = 16         # entries each half of the far field needs before a floor is estimated
_MAX_FAR_SHARE = 0.9  # a "floor" holding more of sum W^2 than this is the matrix itself (non-local), not noise


def _wrap(r, period):
    return r if period is None else (r + period / 2) % period - period / 2


def _fold(n, period):
    """Index distance |i − j| (the shorter way round on a periodic domain)."""
    return (lambda d: np.minimum(d, n - d)) if period is not None else (lambda d: d)


def _row_moments(W, q, period, K, support=None):
    """Row moments; with ``support`` (an index distance) only the entries within it count."""
    n = W.shape[0]
    out = np.zeros((n, K + 1))
    fold = _fold(n, period)
    if is_sparse(W):
        coo = W.tocoo()
        rows, cols, data = coo.row, coo.col, coo.data
        if support is not None:
            keep = fold(np.abs(cols - rows)) <= support
            rows, cols, data = rows[keep], cols[keep], data[keep]
        r = _wrap(q[cols] - q[rows], period)
        p = data.copy()
        for k in range(K + 1):
            out[:, k] = np.bincount(rows, weights=p, minlength=n)
            p *= r
        return out
    cols = np.arange(n)
    for i0 in range(0, n, _BLOCK):
        r = _wrap(q[None, :] - q[i0:i0 + _BLOCK, None], period)
        p = W[i0:i0 + _BLOCK].copy()
        if support is not None:
            p[fold(np.abs(cols[None, :] - cols[i0:i0 + _BLOCK, None])) > support] = 0.0
        for k in range(K + 1):
            out[i0:i0 + _BLOCK, k] = p.sum(axis=1)
            p *= r
    return out


def _moment_noise(q, period, K, support, sigma):
    """Noise std of each row moment summed over ``d ≤ support``: σ (Σ_j r_ij^{2k})^{1/2}; and, per
    column j, the number of rows whose support holds it."""
    n = q.shape[0]
    idx = np.arange(n)[:, None] + np.arange(-support, support + 1)[None, :]
    valid = np.ones(idx.shape, bool) if period is not None else (idx >= 0) & (idx < n)
    idx = idx % n
    r = _wrap(q[idx] - q[:, None], period)
    out = np.empty((n, K + 1))
    p = valid.astype(float)
    for k in range(K + 1):
        out[:, k] = sigma * np.sqrt(np.sum(p, axis=1))
        p = p * r * r
    return out, np.bincount(idx[valid], minlength=n)


def _consistent_orders(q, period, moments, support, sigma):
    """``ok[k]``: the k-moment PDE's stencil (on the k+1 nearest sites) reproduces each measured
    higher moment ``W_j`` (k < j ≤ K) within the noise (:func:`_differs`). The
    deviation ``W_j − Σ_m c_m W_m`` (``c`` from the stencil) is a linear form in the row's entries
    within the support, so its noise std is ``σ ‖a‖`` with ``a_d = r_d^j − Σ_m c_m r_d^m``."""
    n, K1 = moments.shape
    idx = np.arange(n)[:, None] + np.arange(-support, support + 1)[None, :]
    valid = np.ones(idx.shape, bool) if period is not None else (idx >= 0) & (idx < n)
    R = _wrap(q[idx % n] - q[:, None], period)
    ok = np.ones(K1, bool)
    for k in range(K1 - 1):
        kk = min(k, n - 1)
        _, r = _nearest_sites(q, period, kk + 1)
        h = np.max(np.abs(R), axis=1, keepdims=True)
        h[h == 0] = 1.0
        powers = np.arange(kk + 1)
        V = (r / h)[:, None, :] ** powers[None, :, None]               # V[i, m, l] = (r_il/h_i)^m
        Wm = moments[:, :kk + 1] / h ** powers[None, :]
        rho = np.where(valid, R / h, 0.0)
        for j in range(k + 1, K1):
            c = np.linalg.solve(np.swapaxes(V, 1, 2), ((r / h) ** j)[..., None])[..., 0]   # Vᵀ c = ρ^j
            dev = moments[:, j] / h[:, 0] ** j - np.sum(c * Wm, axis=1)
            a = np.where(valid, rho**j - np.einsum("im,imd->id", c, rho[:, None, :] ** powers[None, :, None]), 0.0)
            std = sigma * np.sqrt(np.sum(a**2, axis=1))
            slack = 1e-9 * (np.abs(moments[:, j]) / h[:, 0] ** j + np.sum(np.abs(c * Wm), axis=1))
            if _differs(dev, std, slack):
                ok[k] = False
                break
    return ok


def _differs(x, std, slack):
    """Whether the row values ``x`` (noise of std ``std`` per row) differ from zero: by more than
    3 std (+ ``slack`` for round-off) in at least half of the rows. Row by row, not pooled: each
    row is its own kernel, and the noise of a trained matrix need not be independent across rows."""
    return bool(np.mean(np.abs(x) > 3 * std + slack) >= 0.5)


def _truncated(W, period, support):
    """``W`` with the entries beyond index distance ``support`` set to zero (same kind as ``W``)."""
    n = W.shape[0]
    fold = _fold(n, period)
    if is_sparse(W):
        coo = W.tocoo()
        keep = fold(np.abs(coo.col - coo.row)) <= support
        from scipy import sparse
        return sparse.csr_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=W.shape)
    i = np.arange(n)
    return np.where(fold(np.abs(i[None, :] - i[:, None])) <= support, W, 0.0)


def _distance_profile(W, period):
    """By index distance d = |i − j| (the shorter way round when periodic): Σ|W_ij|, Σ W_ij²,
    Σ W_ij, the number of entries, and Σ W_ij W_i,j+1 over the pairs of row neighbours whose
    nearer member is at distance d (with their number): what the noise-floor tests need."""
    n = W.shape[0]
    size = n // 2 + 1 if period is not None else n
    fold = _fold(n, period)
    i = np.arange(n)
    right = (i + 1) % n
    mass, square, total, lag = (np.zeros(size) for _ in range(4))
    lag_count = np.zeros(size)

    def add(rows, cols, data, nxt):
        d = fold(np.abs(cols - rows))
        mass[:] += np.bincount(d, weights=np.abs(data), minlength=size)
        square[:] += np.bincount(d, weights=data**2, minlength=size)
        total[:] += np.bincount(d, weights=data, minlength=size)
        ok = (cols + 1 < n) | (period is not None)
        key = np.minimum(d, fold(np.abs(right[cols] - rows)))[ok]
        lag[:] += np.bincount(key, weights=(data * nxt)[ok], minlength=size)

    if is_sparse(W):
        coo = W.tocoo()
        nxt = np.asarray(W[coo.row, right[coo.col]]).ravel()
        add(coo.row, coo.col, coo.data, nxt)
    else:
        for i0 in range(0, n, _BLOCK):
            block = W[i0:i0 + _BLOCK]
            rows = np.repeat(np.arange(i0, i0 + block.shape[0]), n)
            add(rows, np.tile(i, block.shape[0]), block.ravel(), block[:, right].ravel())
    ok_cols = i[(i + 1 < n) | (period is not None)]
    for i0 in range(0, n, _BLOCK):
        rows = i[i0:i0 + _BLOCK, None]
        keys = np.minimum(fold(np.abs(ok_cols[None, :] - rows)), fold(np.abs(right[ok_cols][None, :] - rows)))
        lag_count += np.bincount(keys.ravel(), minlength=size)
    count = _distance_counts(n, period, size)
    return mass, {"square": square, "total": total, "count": count, "lag": lag, "lag_count": lag_count}


def _distance_counts(n, period, size):
    d = np.arange(size)
    if period is None:
        return np.where(d == 0, n, 2 * (n - d)).astype(float)
    return np.where((d == 0) | (2 * d == n), n, 2 * n).astype(float)


def _distance_mass(mass):
    total = mass.sum()
    return mass / total if total > 0 else mass


@dataclass(frozen=True)
class NoiseFloor:
    """A flat far field read as noise: ``rms`` σ of the entries beyond ``support`` (an index
    distance; the kernel's estimated reach), ``share``: fraction of ``‖W S‖²`` on the smooth test
    signals that comes from those entries (the part no local PDE can explain)."""
    rms: float
    support: int
    share: float = 0.0
    #: expected share of the noise *within* the support in ``‖L S‖²`` (L: the entries within the
    #: support): explained fractions of the local part closer than this are not told apart
    share_within: float = 0.0


def _noise_floor(profile):
    """The noise floor of a distance profile, or None. The far half of the distances is a floor
    when it is flat (its two halves agree) and zero-mean, each within its sampling error, and row
    neighbours are at most weakly correlated (|ρ| ≤ 1/2; a smooth tail has ρ ≈ 1, a sign-alternating one ρ ≈ −1); the support is the largest distance in the near half whose
    mean square stands out of the floor. None also when nothing stands out (all floor)."""
    square, count = profile["square"], profile["count"]
    top = square.size - 1
    if top < 7:
        return None
    d0 = (top + 1) // 2
    mid = (d0 + top + 1) // 2
    na, nb = count[d0:mid].sum(), count[mid:].sum()
    if na < _MIN_FAR or nb < _MIN_FAR:
        return None
    ma, mb = square[d0:mid].sum() / na, square[mid:].sum() / nb
    if not (ma > 0 and mb > 0):
        return None                     # an exactly zero (or partly zero) far field: nothing to remove
    if abs(np.log(ma / mb)) > _FLAT * np.sqrt(2 / na + 2 / nb):
        return None                     # a decaying (or growing) tail is signal, not a floor
    nfar = count[d0:].sum()
    var = square[d0:].sum() / nfar
    if abs(profile["total"][d0:].sum()) / nfar > _FLAT * np.sqrt(var / nfar):
        return None                     # a far field with a mean (a mean-field coupling) is signal
    npairs = profile["lag_count"][d0:].sum()
    if npairs < _MIN_FAR or abs(profile["lag"][d0:].sum() / npairs) > max(_FLAT / np.sqrt(npairs), _WHITE) * var:
        return None                     # smooth or oscillating far fields are signal too
    near = square[:d0] / count[:d0]
    above = np.nonzero(near > var * (1 + _STAND_OUT * np.sqrt(2 / count[:d0])))[0]
    if above.size == 0:
        return None                     # nothing stands out of the floor: the matrix is all "floor"
    support = int(above.max())
    if square[support + 1:].sum() > _MAX_FAR_SHARE * square.sum():
        return None
    return NoiseFloor(float(np.sqrt(var)), support)


def _nearest_sites(q, period, m):
    """Indices (N, m) of the m sites nearest to each site, ordered by (|r|, r), and their r."""
    n = q.shape[0]
    d = np.arange(-(m - 1), m)
    idx = np.arange(n)[:, None] + d[None, :]
    if period is not None:
        valid = np.broadcast_to((d >= -((n - 1) // 2)) & (d <= n // 2), idx.shape)
        idx = idx % n
    else:
        valid = (idx >= 0) & (idx < n)
        idx = np.clip(idx, 0, n - 1)
    r = _wrap(q[idx] - q[:, None], period)
    key = np.where(valid, np.abs(r), np.inf)
    order = np.lexsort((r, key), axis=1)[:, :m]
    take = lambda a: np.take_along_axis(a, order, axis=1)
    return take(idx), take(r)


def _moment_pde(q, period, moments, k):
    """Row-wise stencils on the k+1 nearest sites matching the moments 0…k (Vandermonde solve)."""
    idx, r = _nearest_sites(q, period, k + 1)
    h = np.max(np.abs(r), axis=1, keepdims=True)
    h[h == 0] = 1.0
    powers = np.arange(k + 1)
    V = (r / h)[:, None, :] ** powers[None, :, None]            # V[i, k, l] = (r_il/h_i)^k
    rhs = moments[:, :k + 1] / h ** powers[None, :]
    return idx, np.linalg.solve(V, rhs[..., None])[..., 0]
