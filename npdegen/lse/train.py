r"""Training the dense log-sum-exp layer: a loss with its exact gradient, for npdegen.optim or SciPy.

The loss is the mean squared error :math:`L = \frac{1}{2B}\sum_b (f(x_b) - y_b)^2`; its gradient is the
layer's adjoint (:meth:`DenseLSE.value_and_vjp`) with the upstream :math:`\bar g_b = (f(x_b) - y_b)/B`.

Parameters are a dict of arrays: ``"W"`` (m, d), ``"b"`` (m,) and the temperature, either ``"eps"``
(ε itself, must stay > 0) or ``"log_eps"`` (ε = exp(log_eps), unconstrained:
:math:`\partial L/\partial\log\varepsilon = \varepsilon\,\partial L/\partial\varepsilon`). The gradients come back under
the same keys and dtypes, so that ``npdegen.optim.Adam(...).update(params, grads, keys)`` applies them::

    from npdegen.optim import Adam
    params = {"W": W0, "b": b0, "log_eps": np.log(0.5)}
    opt = Adam(lr=1e-2)
    for _ in range(500):
        loss, grads = loss_and_grad(params, x, y)
        params = opt.update(params, grads, list(params))

:func:`fit_lbfgs` runs SciPy's L-BFGS-B on the same loss (``log_eps`` inside).
"""
from __future__ import annotations

import numpy as np

from ._checks import real_array
from .dense import DenseLSE

__all__ = ["loss_and_grad", "layer_from_params", "fit_lbfgs"]


def layer_from_params(params: dict) -> DenseLSE:
    """The :class:`DenseLSE` of ``params`` (keys ``W``, ``b`` and exactly one of ``eps`` / ``log_eps``)."""
    if not isinstance(params, dict):
        raise TypeError(f"params must be a dict with keys 'W', 'b' and 'eps' or 'log_eps', got {type(params).__name__}")
    temps = [k for k in ("eps", "log_eps") if k in params]
    missing = [k for k in ("W", "b") if k not in params]
    unknown = sorted(set(params) - {"W", "b", "eps", "log_eps"})
    if missing or len(temps) != 1 or unknown:
        raise ValueError(f"params need 'W', 'b' and exactly one of 'eps', 'log_eps'; got keys {sorted(params)}")
    if temps[0] == "eps":
        eps = params["eps"]
    else:
        log_eps = real_array("log_eps", np.reshape(params["log_eps"], (1,)), 1)[0]
        eps = float(np.exp(np.float64(log_eps)))
    return DenseLSE(params["W"], params["b"], eps)


def loss_and_grad(params: dict, x, target):
    r"""The loss :math:`\frac{1}{2B}\sum_b (f(x_b) - y_b)^2` and its gradient dict (keys of ``params``).

    Parameters
    ----------
    params : dict
        ``W`` (m, d), ``b`` (m,), and ``eps`` > 0 or ``log_eps``.
    x : array (B, d)
    target : array (B,)

    Returns
    -------
    loss : float
    grads : dict
        Same keys, shapes and dtypes as ``params`` (a 0-d array for the temperature).
    """
    layer = layer_from_params(params)
    target = real_array("target", target, 1)
    f = layer(x)
    if target.shape != f.shape:
        raise ValueError(f"target must have shape (batch,) = {f.shape} to match x, got {target.shape}")
    r = f - target.astype(f.dtype, copy=False)
    _, g = layer.value_and_vjp(x, r / r.shape[0])
    grads = {"W": g["W"].astype(layer.dtype, copy=False), "b": g["b"].astype(layer.dtype, copy=False)}
    for k in ("eps", "log_eps"):
        if k in params:
            value = g["eps"] * (layer.eps if k == "log_eps" else 1.0)
            grads[k] = np.asarray(value, dtype=np.asarray(params[k]).dtype if np.asarray(params[k]).dtype.kind == "f"
                                  else np.float64)
    return float(0.5 * np.mean(r * r)), grads


def fit_lbfgs(layer: DenseLSE, x, target, maxiter: int = 200, train_eps: bool = True, tol: float = 1e-12):
    """Fit W, b (and ε, through log ε, if ``train_eps``) by SciPy's L-BFGS-B from ``layer``; returns
    ``(fitted layer, scipy OptimizeResult)``. Needs SciPy (``pip install 'npdegen[lbfgs]'``)."""
    try:
        from scipy.optimize import minimize
    except ImportError as exc:  # pragma: no cover - scipy is optional
        raise ImportError("fit_lbfgs needs SciPy: pip install 'npdegen[lbfgs]'") from exc
    if not isinstance(layer, DenseLSE):
        raise TypeError(f"layer must be a DenseLSE, got {type(layer).__name__}")
    if isinstance(maxiter, bool) or not isinstance(maxiter, (int, np.integer)) or maxiter < 1:
        raise ValueError(f"maxiter must be a positive integer, got {maxiter!r}")
    m, d = layer.W.shape

    def unpack(theta):
        p = {"W": theta[:m * d].reshape(m, d), "b": theta[m * d:m * d + m]}
        p["log_eps"] = np.asarray(theta[-1]) if train_eps else np.asarray(np.log(layer.eps))
        return p

    def fun(theta):
        p = unpack(theta)
        loss, g = loss_and_grad(p, x, target)
        parts = [g["W"].ravel(), g["b"]] + ([np.atleast_1d(g["log_eps"])] if train_eps else [])
        return loss, np.concatenate(parts).astype(np.float64)

    theta0 = np.concatenate([layer.W.ravel(), layer.b] + ([[np.log(layer.eps)]] if train_eps else [])).astype(np.float64)
    res = minimize(fun, theta0, jac=True, method="L-BFGS-B", options={"maxiter": int(maxiter), "ftol": tol, "gtol": tol})
    fitted = layer_from_params(unpack(res.x))
    return DenseLSE(fitted.W.astype(layer.dtype), fitted.b.astype(layer.dtype), fitted.eps), res
