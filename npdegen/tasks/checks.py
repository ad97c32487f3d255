r"""Independent references for the task solvers, and the checks that ``python -m npdegen.tasks verify`` runs.

**Cole–Hopf.** For :math:`u_t + u u_x = ε u_{xx}` on the line, :math:`u = -2ε φ_x/φ` with
:math:`φ_t = ε φ_{xx}` and :math:`φ_0 = e^{-F/(2ε)}`, :math:`F(y) = \int_0^y u_0`. Solving the
heat equation with its kernel gives

.. math::
    u(x, t) = \frac{\int \frac{x-y}{t}\, e^{-G(x, y)/(2ε)}\,dy}{\int e^{-G(x, y)/(2ε)}\,dy},
    \qquad G(x, y) = F(y) + \frac{(x-y)^2}{2t},

a ratio of two integrals of the same positive weight. :func:`cole_hopf` evaluates it by the
trapezoidal rule on a uniform grid of :math:`y` around :math:`x` (the weight is negligible
beyond :math:`|x - y| > t\max|u_0| + 12\sqrt{εt}`), with the weights formed as a softmax in
log space, so it stays exact for the small :math:`ε` where :math:`e^{-F/(2ε)}` overflows. No
Fourier method is involved: it is independent of the spectral solver. A periodic :math:`u_0`
with mean :math:`\bar u` has :math:`F(y + m L) = F(y) + m L \bar u`.

**Fisher–KPP front.** :func:`front_position` is the rightmost crossing of :math:`u = 1/2`
(linear interpolation between cells). A front into :math:`u = 0` moves at
:math:`c^* = 2\sqrt{νρ}` with Bramson's delay: :math:`X(t) = c^* t - \tfrac{3}{2}\sqrt{ν/ρ}\,\ln t + O(1)`.
"""
from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from .fourier import check_positive

__all__ = ["cole_hopf", "front_position", "bramson_position"]


def cole_hopf(primitive, x, nu: float, t: float, length: float = 1.0, u_max: float | None = None,
              points: int = 2048) -> np.ndarray:
    r"""Burgers :math:`u_t + (u^2/2)_x = (ν/π) u_{xx}` at the points ``x`` and time ``t`` by Cole–Hopf quadrature.

    ``primitive(y)`` returns :math:`F(y) = \int_0^y u_0` for a 1-D array ``y`` as ``(samples, len(y))``
    (e.g. :meth:`npdegen.tasks.initial.SineSum.primitive`); ``u0`` has period ``length``. ``u_max``
    bounds :math:`|u_0|` (it sets the integration window; default: estimated from ``F``).
    ``points`` quadrature nodes per period. Returns ``(samples, len(x))``.
    """
    eps = check_positive("nu", nu) / np.pi
    t = check_positive("t", t)
    length = check_positive("length", length)
    x = np.asarray(x, dtype=np.float64)
    h = length / points
    period = (np.arange(points) + 0.5) * h
    f_period = np.atleast_2d(primitive(period))
    if u_max is None:
        u_max = float(np.abs(np.diff(f_period, axis=1)).max() / h)
    drift = (np.atleast_2d(primitive(np.array([length])))[:, 0] / length)[:, None]   # the mean of u0
    reach = t * u_max + 12 * np.sqrt(eps * t) + 2 * h
    images = np.arange(int(np.floor((x.min() - reach) / length)), int(np.floor((x.max() + reach) / length)) + 1)
    y = (images[:, None] * length + period[None, :]).ravel()
    f = (f_period[:, None, :] + drift[:, None, :] * (images[None, :, None] * length)).reshape(len(f_period), -1)
    out = np.empty((len(f_period), x.size))
    chunk = max(1, 2 ** 21 // (len(f_period) * y.size))                 # ≈ 16 MB of weights at a time
    for start in range(0, x.size, chunk):
        xs = x[start:start + chunk]
        dist = xs[:, None] - y[None, :]                                   # (chunk, nodes)
        near = np.abs(dist) <= reach
        log_w = -(f[:, None, :] + dist[None] ** 2 / (2 * t)) / (2 * eps)   # (samples, chunk, nodes)
        log_w = np.where(near[None], log_w, -np.inf)
        w = np.exp(log_w - logsumexp(log_w, axis=-1, keepdims=True))
        out[:, start:start + chunk] = np.einsum("scn,cn->sc", w, np.where(near, dist, 0.0)) / t
    return out


def front_position(u: np.ndarray, x: np.ndarray, level: float = 0.5) -> np.ndarray:
    """The rightmost point where each row of ``u`` crosses ``level`` downwards (linear interpolation)."""
    u = np.atleast_2d(u)
    above = u >= level
    out = np.full(u.shape[0], np.nan)
    for s in range(u.shape[0]):
        idx = np.flatnonzero(above[s, :-1] & ~above[s, 1:])
        if idx.size:
            i = idx[-1]
            out[s] = x[i] + (u[s, i] - level) / (u[s, i] - u[s, i + 1]) * (x[i + 1] - x[i])
    return out


def bramson_position(t, nu: float, rho: float) -> np.ndarray:
    r"""The front position's time dependence :math:`2\sqrt{νρ}\,t - \tfrac32\sqrt{ν/ρ}\ln(ρ t)` (up to a constant)."""
    t = np.asarray(t, dtype=np.float64)
    return 2 * np.sqrt(nu * rho) * t - 1.5 * np.sqrt(nu / rho) * np.log(rho * t)
