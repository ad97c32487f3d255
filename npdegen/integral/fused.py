r"""Fused passes of the integral layers: numba loops when numba is installed, NumPy otherwise.

Each function computes the same thing on both paths (tests compare them); the NumPy versions are
also the reference definitions:

* :func:`relax` — ``out = a·z + c·f`` (the relaxation ``(1 − ω) z + ω f(Z)``, and the adjoint's
  ``λ ← (1 − ω) λ + Kᵀμ``), one pass instead of three;
* :func:`correlate_spectra` — ``Ĉ_f += Σ_b conj(μ̂_{b,f}) ẑ_{b,f}`` accumulated in complex128 (the
  half spectrum of the lag correlation that the kernel-parameter gradient contracts), then
  ``μ̂_{b,f} ← μ̂_{b,f} k̂_f`` (the adjoint's product), in one pass;
* :func:`correlate` / :func:`lag_sums` — the direct 1-D stencil: ``out_{b,i} = Σ_j w_j zp_{b,i+j}``
  over a halo-padded ``zp`` (``len(w) − 1`` more columns than ``out``), and
  ``C_j = Σ_{b,i} μ_{b,i} zp_{b,i+j}`` (numba: partial sums over blocks of ``BLOCK`` columns in the
  arrays' dtype, the blocks summed in float64; NumPy: float64 throughout).
"""
from __future__ import annotations

import numpy as np

try:                                       # numba is optional (the "fast" extra)
    import numba
except ImportError:                        # pragma: no cover - exercised where numba is absent
    numba = None

__all__ = ["HAVE_NUMBA", "relax", "correlate_spectra", "correlate", "lag_sums"]

HAVE_NUMBA = numba is not None
#: Columns of a block in the direct stencil loops: the block of ``out`` and of ``zp`` stays in L1/L2.
BLOCK = 2048


# ---------------------------------------------------------------------------- NumPy references
def _relax_np(out, z, f, a, c):
    np.multiply(z, a, out=out)
    out += c * f


def _spectra_np(acc, m, z, k):
    t = np.conjugate(m)
    t *= z
    acc += t.sum(axis=0, dtype=np.complex128)
    m *= k


def _correlate_np(zp, w, out):
    n = out.shape[1]
    out[...] = 0
    for j in range(len(w)):
        out += w[j] * zp[:, j:j + n]


def _lag_sums_np(mu, zp, out):
    n = mu.shape[1]
    for j in range(len(out)):
        out[j] = np.einsum("bi,bi->", mu, zp[:, j:j + n], dtype=np.float64)


# ---------------------------------------------------------------------------- numba
if HAVE_NUMBA:
    _jit = numba.njit(cache=True, nogil=True)

    @_jit
    def _relax_nb(out, z, f, a, c):
        for b in range(out.shape[0]):
            for i in range(out.shape[1]):
                out[b, i] = a * z[b, i] + c * f[b, i]

    @_jit
    def _spectra_nb(acc, m, z, k):
        for b in range(m.shape[0]):
            for f in range(m.shape[1]):
                v = m[b, f]
                acc[f] += v.conjugate() * z[b, f]
                m[b, f] = v * k[f]

    @numba.njit(cache=True, nogil=True, fastmath={"contract"})
    def _correlate_nb(zp, w, out):                 # per row, per block of columns, tap by tap (vectorises)
        n, taps = out.shape[1], w.shape[0]
        for b in range(out.shape[0]):
            o, zr = out[b], zp[b]
            for s in range(0, n, BLOCK):
                e = min(s + BLOCK, n)
                ob, zb, w0 = o[s:e], zr[s:e], w[0]
                for i in range(e - s):
                    ob[i] = w0 * zb[i]
                for j in range(1, taps):
                    zb, wj = zr[s + j:e + j], w[j]
                    for i in range(e - s):
                        ob[i] += wj * zb[i]

    @numba.njit(cache=True, nogil=True, fastmath={"reassoc"})
    def _lag_sums_nb(mu, zp, out):
        """Per block of BLOCK columns a partial sum in the arrays' dtype (reassociated so that it
        vectorises), the blocks summed in float64."""
        n, taps = mu.shape[1], out.shape[0]
        for b in range(mu.shape[0]):
            m, zr = mu[b], zp[b]
            for s in range(0, n, BLOCK):
                e = min(s + BLOCK, n)
                mb = m[s:e]
                for j in range(taps):
                    zb = zr[s + j:e + j]
                    part = mb[0] * zb[0]
                    for i in range(1, e - s):
                        part += mb[i] * zb[i]
                    out[j] += part


def _two_d(a):
    return a.reshape(a.shape[0], -1)


def relax(out, z, f, a: float, c: float, use_numba: bool = True) -> None:
    """``out = a·z + c·f`` (arrays of one shape, leading batch axis; ``out`` may be ``z``)."""
    if HAVE_NUMBA and use_numba and out.flags.c_contiguous and z.flags.c_contiguous and f.flags.c_contiguous \
            and out.dtype == z.dtype == f.dtype:
        t = out.dtype.type
        _relax_nb(_two_d(out), _two_d(z), _two_d(f), t(a), t(c))
    else:
        _relax_np(out, z, f, a, c)


def correlate_spectra(acc, m, z, k, use_numba: bool = True) -> None:
    """``acc += Σ_b conj(m_b) · z_b``, then ``m_b *= k`` (``acc`` complex128 and ``k`` of the spectrum's
    shape, ``m``, ``z`` with a leading batch axis)."""
    if HAVE_NUMBA and use_numba and m.flags.c_contiguous and z.flags.c_contiguous and acc.flags.c_contiguous \
            and k.flags.c_contiguous and k.dtype == m.dtype:
        _spectra_nb(acc.reshape(-1), _two_d(m), _two_d(z), k.reshape(-1))
    else:
        _spectra_np(acc, m, z, k)


def correlate(zp, w, out, use_numba: bool = True) -> None:
    """``out[b, i] = Σ_j w[j] zp[b, i + j]`` (2-D ``(batch, n)``; ``zp`` has ``len(w) − 1`` more columns)."""
    if HAVE_NUMBA and use_numba:
        _correlate_nb(zp, np.ascontiguousarray(w, out.dtype), out)
    else:
        _correlate_np(zp, np.asarray(w, out.dtype), out)


def lag_sums(mu, zp, count: int, use_numba: bool = True) -> np.ndarray:
    """``C[j] = Σ_{b,i} mu[b, i] zp[b, i + j]`` for ``j < count`` (float64)."""
    out = np.zeros(count, np.float64)
    if HAVE_NUMBA and use_numba:
        _lag_sums_nb(mu, zp, out)
    else:
        _lag_sums_np(mu, zp, out)
    return out
