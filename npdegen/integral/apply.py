r"""Applying a sampled kernel on the grid, its adjoint, and the correlation its parameter gradients need.

Every method computes the same operator, for weights ``w_{i,o}`` on the offset box ``|o_k| ≤ K_k``:

.. math::  Z_i = \sum_o w_{i,o}\, \tilde z_{i+o}, \qquad
           \tilde z_p = \begin{cases} z_{p \bmod n} & \text{periodic}\\
                                       z_p\ (0 \text{ outside } [0, n)) & \text{zero Dirichlet}\\
                                       z_{m} \text{ or } z_{2n-1-m},\ m = p \bmod 2n & \text{Neumann}\end{cases}

per axis (Neumann: the even ``2n``-periodic extension, mirror about the cell faces; for
``|p − clamp| ≤ n`` it is the single mirror of :mod:`npdegen.grid`). Its adjoint is the correlation
with the same weights, ``(Kᵀλ)_m = Σ_{i,o: ĩ+o ↦ m} w_{i,o} λ_i``, and a kernel parameter's gradient
is ``Σ_{i,o} ∂w_{i,o}/∂θ · C_{i,o}`` with ``C_{i,o} = Σ_batch μ_i z̃_{i+o}``.

* ``StencilOperator`` — one shifted slice per offset, ``O(N·|box|)``; the halo is filled by
  :func:`npdegen.grid.fill_halo` and folded back by :func:`~npdegen.grid.fold_halo` (``K_k ≤ n_k``).
* ``FFTOperator`` — homogeneous weights only (a convolution), ``O(N log N)``: per axis the extended
  length ``P`` is ``n`` (periodic), ``2n`` (Neumann, even extension) or ``≥ n + K`` (Dirichlet, zero
  padding, so nothing wraps); the weights are wrapped onto the period, ``k_{o mod P} += w_o``. Then
  ``Z = (irfft(rfft(z̃)·conj k̂))_{[0,n)}`` (a correlation), the adjoint multiplies by ``k̂``
  and folds the extension back, and ``Ĉ = Σ_b conj(μ̂_b) ẑ_b`` gives every lag's correlation at once.
* ``DenseOperator`` — the matrix ``M_{i,m}`` of the operator (``N ≤ DENSE_LIMIT`` sites), any weights.
"""
from __future__ import annotations

import numpy as np
import scipy.fft as sfft
from scipy import ndimage

from ..grid import fill_halo, fold_halo, interior
from . import fused
from .sample import box_offsets

__all__ = ["StencilOperator", "FFTOperator", "DenseOperator", "source_index", "dot", "DENSE_LIMIT"]

#: Largest number of grid sites the dense method builds a matrix for.
DENSE_LIMIT = 4096


def source_index(p, n: int, kind: str):
    """The grid index that extended position ``p`` reads (vectorised), ``-1`` for a zero."""
    p = np.asarray(p)
    if kind == "periodic":
        return p % n
    if kind == "neumann":
        m = p % (2 * n)
        return np.where(m < n, m, 2 * n - 1 - m)
    return np.where((p >= 0) & (p < n), p, -1)


def rfftn(a, periods, workers):
    """The real FFT over the last ``len(periods)`` axes (zero-padded to ``periods``)."""
    d = len(periods)
    out = sfft.rfft(a, n=periods[-1], axis=-1, workers=workers)
    return out if d == 1 else sfft.fftn(out, s=periods[:-1], axes=tuple(range(-d, -1)), workers=workers,
                                        overwrite_x=True)


def irfftn(a, periods, workers):
    """Inverse of :func:`rfftn`, real output of shape ``periods`` (scipy's ``irfftn`` was measured several
    times slower than ``irfft`` on the same 1-D data)."""
    d = len(periods)
    if d > 1:
        a = sfft.ifftn(a, axes=tuple(range(-d, -1)), workers=workers)
    return sfft.irfft(a, n=periods[-1], axis=-1, workers=workers, overwrite_x=d > 1)


def dot(a, b) -> float:
    """``Σ a·b`` in float64 by einsum: no BLAS call (a threaded BLAS dot stalls on a busy machine)."""
    return float(np.einsum("i,i->", np.ravel(a), np.ravel(b), dtype=np.float64))


def _rows(a):
    """A 1-D grid's array as ``(rows, n)`` (a view of a C-ordered array)."""
    return a.reshape(-1, a.shape[-1])


def _dot_view(a, b) -> float:
    """``Σ a·b`` over arrays of one shape, ``b`` possibly a strided view (no copy, no BLAS)."""
    letters = "abcdefgh"[:a.ndim]
    return float(np.einsum(f"{letters},{letters}->", a, b, dtype=np.float64))


class _Operator:
    name = ""

    def __init__(self, grid, boundaries, reach, dtype, workers: int = 1):
        self.grid, self.boundaries = tuple(grid), tuple(boundaries)
        self.reach = tuple(int(k) for k in reach)
        self.offsets = box_offsets(self.reach)
        self.dtype, self.workers = np.dtype(dtype), workers
        self.d = len(self.grid)
        self.axes = tuple(range(-self.d, 0))

    @staticmethod
    def _site(w) -> bool:
        return np.ndim(w) > 1


class StencilOperator(_Operator):
    """``Z = Σ_o w_o · (shifted halo-padded z)``; weights ``(count,)`` or ``(*grid, count)``."""
    name = "stencil"

    def __init__(self, grid, boundaries, reach, dtype, workers=1):
        super().__init__(grid, boundaries, reach, dtype, workers)
        for n, k, b in zip(self.grid, self.reach, self.boundaries):
            if k > n:
                raise ValueError(f"the stencil method reaches at most n = {n} cells per axis, got a reach of {k} "
                                 f"({b}); use method='fft' or 'dense' for a wider kernel")
        self._slices = [(Ellipsis,) + tuple(slice(k + o, k + o + n) for k, o, n in zip(self.reach, off, self.grid))
                        for off in self.offsets]

    def prepare(self, w):
        return np.ascontiguousarray(w, self.dtype)

    def _pad(self, z):
        zp = np.zeros(z.shape[:-self.d] + tuple(n + 2 * k for n, k in zip(self.grid, self.reach)), self.dtype)
        interior(zp, self.reach)[...] = z
        fill_halo(zp, self.boundaries, self.reach)
        return zp

    #: scipy.ndimage's extension modes that are exactly this module's boundary rules (any reach)
    MODES = {"periodic": "wrap", "dirichlet": "constant", "neumann": "reflect"}

    def _direct(self, w) -> bool:
        """1-D, one kernel for every site, numba installed: the compiled loops of :mod:`.fused`."""
        return self.d == 1 and not self._site(w) and fused.HAVE_NUMBA

    def forward(self, w, z):
        if self._direct(w):
            out = np.empty(z.shape, self.dtype)
            fused.correlate(_rows(self._pad(z)), w, _rows(out))
            return out, None
        if self.d == 1 and not self._site(w):          # one compiled loop (scipy.ndimage)
            return ndimage.correlate1d(z, w.astype(np.float64), axis=-1, mode=self.MODES[self.boundaries[0]],
                                       output=self.dtype), None
        zp = self._pad(z)
        out = np.zeros(z.shape, self.dtype)
        tmp = np.empty(z.shape, self.dtype)
        for j, sl in enumerate(self._slices):
            np.multiply(zp[sl], w[..., j], out=tmp)
            out += tmp
        return out, None

    def backward(self, w, mu, z, saved, want: bool):
        """``(Kᵀ μ, C)``; ``C`` is ``(count,)`` (homogeneous weights) or ``(*grid, count)``, ``None``
        unless ``want``."""
        acc = np.zeros(mu.shape[:-self.d] + tuple(n + 2 * k for n, k in zip(self.grid, self.reach)), self.dtype)
        if self._direct(w):                            # scatter = correlation of the 2K-zero-padded μ, w reversed
            k = self.reach[0]
            mup = np.zeros(mu.shape[:-1] + (mu.shape[-1] + 4 * k,), self.dtype)
            mup[..., 2 * k:2 * k + mu.shape[-1]] = mu
            fused.correlate(_rows(mup), w[::-1], _rows(acc))
        elif self.d == 1 and not self._site(w):          # scatter = convolution of the zero-padded μ
            interior(acc, self.reach)[...] = mu
            acc = ndimage.convolve1d(acc, w.astype(np.float64), axis=-1, mode="constant", output=self.dtype)
        else:
            for j, sl in enumerate(self._slices):
                acc[sl] += mu * w[..., j]
        fold_halo(acc, self.boundaries, self.reach)
        dz = np.ascontiguousarray(interior(acc, self.reach))
        if not want:
            return dz, None
        zp = self._pad(z)
        batch = tuple(range(mu.ndim - self.d))
        if self._direct(w):
            corr = fused.lag_sums(_rows(mu), _rows(zp), len(self.offsets))
        elif self._site(w):
            corr = np.stack([np.sum(mu * zp[sl], axis=batch, dtype=np.float64) for sl in self._slices], axis=-1)
        else:
            corr = np.array([_dot_view(mu, zp[sl]) for sl in self._slices], np.float64)
        return dz, corr


class FFTOperator(_Operator):
    """The periodic / padded FFT correlation of homogeneous weights (module docstring)."""
    name = "fft"

    def __init__(self, grid, boundaries, reach, dtype, workers=1):
        super().__init__(grid, boundaries, reach, dtype, workers)
        self.periods = tuple(n if b == "periodic" else 2 * n if b == "neumann"
                             else sfft.next_fast_len(n + min(k, n - 1), real=True)
                             for n, b, k in zip(self.grid, self.boundaries, self.reach))
        self._wrapped = tuple((self.offsets[:, a] % p) for a, p in enumerate(self.periods))
        self._complex = np.result_type(self.dtype, np.complex64)

    def wrap(self, w) -> np.ndarray:
        """The weights on the period: ``k_{o mod P} += w_o`` (float64)."""
        if self._site(w):
            raise ValueError("the FFT method applies one kernel to every site (a convolution); kernels that vary "
                             "with the site need method='stencil' or 'dense'")
        k = np.zeros(self.periods, np.float64)
        np.add.at(k, self._wrapped, np.asarray(w, np.float64))
        return k

    def prepare(self, w):
        khat = rfftn(self.wrap(w), self.periods, self.workers).astype(self._complex)
        return khat, np.conj(khat)

    def _extend(self, z):
        for a, (n, b) in enumerate(zip(self.grid, self.boundaries)):
            if b == "neumann":
                z = np.concatenate([z, np.flip(z, axis=z.ndim - self.d + a)], axis=z.ndim - self.d + a)
        return z

    def _fold(self, u):
        """Adjoint of the extension followed by zero padding: fold the mirror half back, drop the pad."""
        for a, (n, b) in enumerate(zip(self.grid, self.boundaries)):
            ax = u.ndim - self.d + a
            head = [slice(None)] * u.ndim
            head[ax] = slice(0, n)
            if b == "neumann":
                tail = list(head)
                tail[ax] = slice(2 * n - 1, n - 1, -1)
                u = u[tuple(head)] + u[tuple(tail)]
            elif u.shape[ax] != n:
                u = u[tuple(head)]
        return u

    def _restrict(self, u):
        if u.shape[-self.d:] == self.grid:
            return u
        return u[(Ellipsis,) + tuple(slice(0, n) for n in self.grid)]

    def _scratch(self, shape, dtype):
        """A complex product buffer kept between calls (an irfft may overwrite it)."""
        buf = getattr(self, "_buf", None)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            self._buf = buf = np.empty(shape, dtype)
        return buf

    def forward(self, plan, z):
        """``(Z, ẑ)``: the spectrum of the extended ``z`` is kept for the parameter gradient."""
        khat, khat_conj = plan
        zhat = rfftn(self._extend(z), self.periods, self.workers)
        prod = np.multiply(zhat, khat_conj, out=self._scratch(zhat.shape, zhat.dtype))
        out = irfftn(prod, self.periods, self.workers)
        return self._restrict(out), zhat

    def parseval(self, dk, chat) -> float:
        """``Σ_r dk_r C_r`` from the wrapped weights ``dk`` and the half spectrum ``Ĉ`` of the
        correlation (Parseval for real arrays: weights 2 on the half spectrum, 1 at ``f = 0`` and at
        the Nyquist frequency of the last axis), so ``C`` is never transformed back."""
        last = self.periods[-1]
        c = np.full(last // 2 + 1, 2.0)
        c[0] = 1.0
        if last % 2 == 0:
            c[-1] = 1.0
        dkhat = rfftn(np.asarray(dk, np.float64), self.periods, self.workers)
        return float(np.sum(c * np.real(np.conj(dkhat) * chat))) / float(np.prod(self.periods))

    def backward(self, plan, mu, z, zhat, want: bool):
        """``(Kᵀ μ, Ĉ)`` with ``Ĉ = Σ_b conj(μ̂_b) ẑ_b`` the half spectrum of the lag correlation on
        the period (``None`` unless ``want``); :meth:`parseval` contracts it with ``∂k/∂θ``."""
        khat, _ = plan
        muhat = rfftn(mu, self.periods, self.workers)
        prod = np.multiply(muhat, khat, out=self._scratch(muhat.shape, muhat.dtype))
        dz = self._fold(irfftn(prod, self.periods, self.workers))
        if not want:
            return dz, None
        if zhat is None:
            zhat = rfftn(self._extend(z), self.periods, self.workers)
        np.conjugate(muhat, out=muhat)
        muhat *= zhat
        return dz, muhat.reshape(-1, *muhat.shape[muhat.ndim - self.d:]).sum(axis=0, dtype=np.complex128)


class DenseOperator(_Operator):
    """The operator as a matrix ``M`` (``Z = z Mᵀ``, adjoint ``μ M``): small grids, any weights."""
    name = "dense"

    def __init__(self, grid, boundaries, reach, dtype, workers=1):
        super().__init__(grid, boundaries, reach, dtype, workers)
        self.size = int(np.prod(self.grid))
        if self.size > DENSE_LIMIT:
            raise ValueError(f"method='dense' builds an N x N matrix; N = {self.size} sites is above "
                             f"DENSE_LIMIT = {DENSE_LIMIT}: use 'stencil' or 'fft'")
        sites = np.stack([a.ravel() for a in np.meshgrid(*[np.arange(n) for n in self.grid], indexing="ij")], axis=1)
        src = np.zeros((self.size, len(self.offsets)), np.int64)
        valid = np.ones(src.shape, bool)
        for a, (n, b) in enumerate(zip(self.grid, self.boundaries)):
            idx = source_index(sites[:, a, None] + self.offsets[None, :, a], n, b)
            valid &= idx >= 0
            src = src * n + np.where(idx >= 0, idx, 0)
        self.src, self.valid = src, valid

    def prepare(self, w):
        full = np.broadcast_to(np.asarray(w, np.float64).reshape(-1, len(self.offsets)) if self._site(w) else w,
                               self.src.shape)
        m = np.zeros((self.size, self.size), np.float64)
        rows = np.broadcast_to(np.arange(self.size)[:, None], self.src.shape)
        np.add.at(m, (rows[self.valid], self.src[self.valid]), full[self.valid])
        return m.astype(self.dtype)

    def forward(self, m, z):
        flat = z.reshape(-1, self.size)
        return (flat @ m.T).reshape(z.shape), None

    def backward(self, m, mu, z, saved, want: bool):
        flat = mu.reshape(-1, self.size)
        dz = (flat @ m).reshape(mu.shape)
        if not want:
            return dz, None
        zf = z.reshape(-1, self.size)
        gathered = np.where(self.valid, zf[:, self.src], 0)                   # (batch, N, count)
        corr = np.einsum("bi,bio->io", flat, gathered, dtype=np.float64)
        return dz, corr.reshape(*self.grid, len(self.offsets))
