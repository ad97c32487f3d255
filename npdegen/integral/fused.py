r"""Fused passes of the integral layers: numba loops when numba is installed, NumPy otherwise.

Each function computes the same thing on both paths (tests compare them); the NumPy versions are
also the reference definitions:

* :func:`relax` — ``out = a·z + c·f`` (the relaxation ``(1 − ω) z + ω f(Z)``, and the adjoint's
  ``λ ← (1 − ω) λ + Kᵀμ``), one pass instead of three;
* :func:`relax_slope` — the same and ``s = g_k(f)``, the slope written in the activation's value
  (``k = 1``: ``1 − f²``, tanh; ``k = 2``: ``f(1 − f)``, the sigmoid; :data:`.layer.VALUE_SLOPES`),
  and :func:`product` — ``out = c·a·b`` (the adjoint's ``μ = ω λ f′``);
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

__all__ = ["HAVE_NUMBA", "relax", "relax_slope", "product", "correlate_spectra", "correlate", "lag_sums"]

HAVE_NUMBA = numba is not None
#: Columns of a block in the direct stencil loops: the block of ``out`` and of ``zp`` stays in L1/L2.
BLOCK = 2048


# ---------------------------------------------------------------------------- NumPy references
def _relax_np(out, z, f, a, c):
    np.multiply(z, a, out=out)
    out += c * f


def _relax_slope_np(out, z, f, s, a, c, kind):
    _relax_np(out, z, f, a, c)
    if kind == 1:
        np.multiply(f, f, out=s)
        np.subtract(1, s, out=s)
    else:
        np.subtract(1, f, out=s)
        s *= f


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
    def _relax_slope_nb(out, z, f, s, a, c, one, kind):      # one: 1 in the arrays' dtype
        for b in range(out.shape[0]):
            if kind == 1:
                for i in range(out.shape[1]):
                    v = f[b, i]
                    out[b, i] = a * z[b, i] + c * v
                    s[b, i] = one - v * v
            else:
                for i in range(out.shape[1]):
                    v = f[b, i]
                    out[b, i] = a * z[b, i] + c * v
                    s[b, i] = v * (one - v)

    @_jit
    def _product_nb(out, x, y, c):
        for b in range(out.shape[0]):
            for i in range(out.shape[1]):
                out[b, i] = c * x[b, i] * y[b, i]

    @_jit
    def _spectra_nb(acc, m, z, k):
        for b in range(m.shape[0]):
            for f in range(m.shape[1]):
                v = m[b, f]
                acc[f] += v.conjugate() * z[b, f]
                m[b, f] = v * k[f]

    @numba.njit(cache=True, nogil=True, fastmath={"contract"})
    def _correlate_nb(zp, w, out):
        """Per row and block of BLOCK columns, four taps per pass over the block (vectorises; the block
        of ``out`` is read and written once per four taps)."""
        n, taps = out.shape[1], w.shape[0]
        for b in range(out.shape[0]):
            o, zr = out[b], zp[b]
            for s in range(0, n, BLOCK):
                e = min(s + BLOCK, n)
                ob = o[s:e]
                ob[:] = 0
                j = 0
                while j + 4 <= taps:
                    z0, z1, z2, z3 = zr[s + j:e + j], zr[s + j + 1:e + j + 1], zr[s + j + 2:e + j + 2], \
                        zr[s + j + 3:e + j + 3]
                    w0, w1, w2, w3 = w[j], w[j + 1], w[j + 2], w[j + 3]
                    for i in range(e - s):
                        ob[i] += (w0 * z0[i] + w1 * z1[i]) + (w2 * z2[i] + w3 * z3[i])
                    j += 4
                while j < taps:
                    z0, w0 = zr[s + j:e + j], w[j]
                    for i in range(e - s):
                        ob[i] += w0 * z0[i]
                    j += 1

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


def _fusable(*arrays) -> bool:
    return all(a.flags.c_contiguous and a.dtype == arrays[0].dtype for a in arrays)


def relax_slope(out, z, f, s, a: float, c: float, kind: int, use_numba: bool = True) -> None:
    """``out = a·z + c·f`` and ``s = g_kind(f)`` (``kind`` 1: ``1 − f²``, 2: ``f(1 − f)``)."""
    if kind not in (1, 2):
        raise ValueError(f"relax_slope: kind must be 1 or 2, got {kind!r}")
    if HAVE_NUMBA and use_numba and _fusable(out, z, f, s):
        t = out.dtype.type
        _relax_slope_nb(_two_d(out), _two_d(z), _two_d(f), _two_d(s), t(a), t(c), t(1), kind)
    else:
        _relax_slope_np(out, z, f, s, a, c, kind)


def product(out, x, y, c: float, use_numba: bool = True) -> None:
    """``out = c·x·y`` (arrays of one shape; ``out`` may be ``x``)."""
    if HAVE_NUMBA and use_numba and _fusable(out, x, y):
        _product_nb(_two_d(out), _two_d(x), _two_d(y), out.dtype.type(c))
    else:
        np.multiply(x, c, out=out)
        out *= y


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
