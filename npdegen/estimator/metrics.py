r"""The normalised error the estimator selects by and scores with.

.. math::
    \mathrm{nRMSE} = \frac{1}{S}\sum_{s=1}^{S} \frac{\lVert \hat y_s - y_s\rVert_2}{\lVert y_s\rVert_2}
    \quad\text{(mean over samples, as PDEBench)}, \qquad
    \mathrm{nRMSE}_{\text{pooled}} = \frac{\lVert \hat Y - Y\rVert_F}{\lVert Y\rVert_F}.

A sample whose target is identically zero is normalised by the root-mean-square norm of all the
targets instead, ``(1/S Σ_s ‖y_s‖²)^{1/2}``; targets that are all zero are refused.
"""
from __future__ import annotations

import numpy as np

__all__ = ["nrmse", "sample_norms"]


def sample_norms(Y) -> np.ndarray:
    """``‖y_s‖₂`` of each sample of ``Y`` shaped ``(samples, *grid)``, zeros replaced by the
    root-mean-square norm; ValueError if every target is zero."""
    Y = np.asarray(Y, np.float64)
    norms = np.sqrt(np.sum(Y.reshape(Y.shape[0], -1) ** 2, axis=1))
    rms = float(np.sqrt(np.mean(norms ** 2))) if norms.size else 0.0
    if rms == 0:
        raise ValueError("Y is identically zero: its normalised error (nRMSE) is undefined")
    return np.where(norms > 0, norms, rms)


def nrmse(pred, true, pooled: bool = False) -> float:
    """Mean per-sample nRMSE of ``pred`` against ``true`` (both ``(samples, *grid)``), or the pooled one."""
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    if pred.shape != true.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from the target's {true.shape}")
    err = (pred - true).reshape(true.shape[0], -1)
    if pooled:
        total = float(np.linalg.norm(true))
        if total == 0:
            raise ValueError("Y is identically zero: its normalised error (nRMSE) is undefined")
        return float(np.linalg.norm(err)) / total
    return float(np.mean(np.sqrt(np.sum(err ** 2, axis=1)) / sample_norms(true)))
