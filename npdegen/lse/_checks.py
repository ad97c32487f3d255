"""Argument checks shared by the dense log-sum-exp layers: clear errors at the API, never deep inside.

Arrays are real floating point (float32 or float64; integers are promoted to float64), finite, and
of the documented shapes; the temperature ``ε`` is a positive finite real scalar.
"""
from __future__ import annotations

import numbers

import numpy as np

__all__ = ["real_array", "positive_scalar", "common_dtype", "check_x"]


def real_array(name: str, value, ndim: int, dtype=None) -> np.ndarray:
    """``value`` as a finite real floating array with ``ndim`` dimensions (a copy-free view where possible).

    Raises
    ------
    TypeError
        complex, boolean, object or string data.
    ValueError
        the wrong number of dimensions, an empty axis, NaN or infinity.
    """
    arr = np.asarray(value)
    if arr.dtype == bool or arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be a real floating-point array, got dtype {arr.dtype}")
    if arr.dtype.kind in "iu":
        arr = arr.astype(np.float64)
    elif arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)                       # float16 / longdouble: compute in float64
    if dtype is not None:
        arr = arr.astype(dtype, copy=False)
    if arr.ndim != ndim:
        shape = {1: "(m,)", 2: "(rows, columns)"}[ndim]
        raise ValueError(f"{name} must have shape {shape} ({ndim}-D), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinity")
    return arr


def positive_scalar(name: str, value) -> float:
    """``value`` as a positive finite Python float (ε, t).

    Raises
    ------
    TypeError
        not a real number (a bool, a string, an array with more than one entry).
    ValueError
        zero, negative, NaN or infinity.
    """
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return value


def common_dtype(*arrays: np.ndarray):
    """float32 when every array is float32, float64 otherwise."""
    return np.float32 if all(a.dtype == np.float32 for a in arrays) else np.float64


def check_x(x, d: int, dtype) -> np.ndarray:
    """Inputs ``x`` of shape ``(batch, d)`` as finite ``dtype`` (the layer's dtype, or float64 when x is)."""
    x = real_array("x", x, 2)
    if x.shape[1] != d:
        raise ValueError(f"x must have shape (batch, {d}) to match W of width {d}, got {x.shape}")
    return x.astype(np.float64 if x.dtype == np.float64 else dtype, copy=False)
