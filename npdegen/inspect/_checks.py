"""Input checks shared by the inspection functions: clear errors for bad matrices and coordinates."""
from __future__ import annotations

from numbers import Integral, Real

import numpy as np

__all__ = ["is_sparse", "check_matrix", "check_coords", "check_order"]


def is_sparse(W) -> bool:
    """True for a SciPy sparse matrix or array (SciPy is optional and never imported otherwise)."""
    try:
        from scipy import sparse
    except ImportError:  # pragma: no cover - without SciPy no sparse input can exist
        return False
    return sparse.issparse(W)


def check_matrix(W, what: str = "W"):
    """A square, finite, real N×N matrix: a float ndarray, or a SciPy sparse matrix in CSR form."""
    if is_sparse(W):
        if W.ndim != 2 or W.shape[0] != W.shape[1]:
            raise ValueError(f"{what} must be a square N×N matrix, got shape {W.shape}")
        if W.dtype.kind not in "fiu":
            raise TypeError(f"{what} must be real numbers, got dtype {W.dtype}")
        W = W.tocsr().astype(float)
        if not np.all(np.isfinite(W.data)):
            raise ValueError(f"{what} contains NaN or inf")
    else:
        if isinstance(W, (str, bytes, dict)) or W is None:
            raise TypeError(f"{what} must be a 2-D array of numbers, got {type(W).__name__}")
        try:
            W = np.asarray(W)
        except Exception as exc:
            raise TypeError(f"{what} must be a 2-D array of numbers: {exc}") from None
        if W.dtype.kind not in "fiu":
            raise TypeError(f"{what} must be real numbers, got dtype {W.dtype}")
        if W.ndim != 2 or W.shape[0] != W.shape[1]:
            raise ValueError(f"{what} must be a square N×N matrix, got shape {W.shape}")
        W = W.astype(float)
        if not np.all(np.isfinite(W)):
            raise ValueError(f"{what} contains NaN or inf")
    if W.shape[0] == 0:
        raise ValueError(f"{what} is empty")
    return W


def check_coords(coords, n: int, period=None) -> tuple[np.ndarray, float | None]:
    """Site coordinates: ``arange(n)`` by default, else n strictly increasing finite numbers."""
    if period is not None:
        if not isinstance(period, Real) or isinstance(period, bool) or not np.isfinite(period) or period <= 0:
            raise ValueError(f"period must be a positive finite number, got {period!r}")
        period = float(period)
    if coords is None:
        q = np.arange(n, dtype=float)
    else:
        q = np.asarray(coords)
        if q.dtype.kind not in "fiu":
            raise TypeError(f"coords must be real numbers, got dtype {q.dtype}")
        if q.ndim == 2 and q.shape[1] == 1:
            q = q[:, 0]
        if q.ndim != 1:
            raise ValueError(f"coords must be a 1-D array of site positions, got shape {q.shape}")
        if q.shape[0] != n:
            raise ValueError(f"coords has {q.shape[0]} entries, but W has N={n} rows")
        q = q.astype(float)
        if not np.all(np.isfinite(q)):
            raise ValueError("coords contains NaN or inf")
        if n > 1 and not np.all(np.diff(q) > 0):
            raise ValueError("coords must be strictly increasing (sites in order)")
    if period is not None and n > 1 and q[-1] - q[0] >= period:
        raise ValueError(f"period {period} must exceed the span of the coordinates, {q[-1] - q[0]}")
    return q, period


def check_order(max_order, what: str = "max_order") -> int:
    if isinstance(max_order, bool) or not isinstance(max_order, Integral):
        raise TypeError(f"{what} must be an integer, got {max_order!r}")
    if max_order < 0:
        raise ValueError(f"{what} must be >= 0, got {max_order}")
    return int(max_order)
