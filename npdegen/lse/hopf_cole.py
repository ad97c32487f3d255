r"""The viscous Hamilton–Jacobi equation behind the dense log-sum-exp layer (Hopf–Cole, Hopf–Lax).

For anchors :math:`y_j\in\mathbb R^d`, data :math:`g_j` and a time :math:`t > 0`, the dense layer
:class:`~npdegen.lse.DenseLSE` with

.. math:: W_j = \frac{y_j}{2t},\qquad b_j = -g_j - \frac{|y_j|^2}{4t}

is the Hopf–Cole solution read backwards. Completing the square,
:math:`\tfrac{|x|^2}{4t} - (W_j\cdot x + b_j) = g_j + \tfrac{|x-y_j|^2}{4t} =: q_j(x, t)`, so

.. math:: f(x) = \varepsilon\log\sum_j e^{(W_j\cdot x+b_j)/\varepsilon}
          = \frac{|x|^2}{4t} - v_\varepsilon(x, t),\qquad
          v_\varepsilon = -\varepsilon\log\sum_j e^{-q_j(x,t)/\varepsilon}

exactly, with no constant.

**Which constant solves the PDE.** With :math:`u = -\varepsilon\log\varphi`,

.. math:: u_t + |\nabla u|^2 - \varepsilon\Delta u = -\varepsilon\,\frac{\varphi_t - \varepsilon\Delta\varphi}{\varphi},

so :math:`u` solves :math:`u_t + |\nabla u|^2 = \varepsilon\Delta u` iff :math:`\varphi` solves the heat
equation :math:`\varphi_t = \varepsilon\Delta\varphi`. The solution from the discrete initial measure
:math:`\varphi(\cdot, 0) = \sum_j e^{-g_j/\varepsilon}\,\delta_{y_j}` (``u(·, 0) = g_j`` at the anchors,
``+∞`` elsewhere) is the *normalised* heat kernel sum

.. math:: \varphi(x, t) = (4\pi\varepsilon t)^{-d/2}\sum_j e^{-g_j/\varepsilon}\,e^{-|x-y_j|^2/(4\varepsilon t)},
          \qquad u_\varepsilon = v_\varepsilon + \tfrac{\varepsilon d}{2}\log(4\pi\varepsilon t).

The unnormalised :math:`v_\varepsilon` alone (the form written in MODEL.md §6) satisfies
:math:`v_t + |\nabla v|^2 = \varepsilon\Delta v - \varepsilon d/(2t)`: it misses the PDE by the
spatially constant :math:`\varepsilon d/(2t)`, and only the offset :func:`heat_offset`
:math:`c_\varepsilon(t) = \tfrac{\varepsilon d}{2}\log(4\pi\varepsilon t)` separates the two. Hence, exactly,

.. math:: f(x) = \frac{|x|^2}{4t} - u_\varepsilon(x, t) + c_\varepsilon(t)
          \quad(\text{normalised}),\qquad
          f(x) = \frac{|x|^2}{4t} - v_\varepsilon(x, t)\quad(\text{unnormalised}).

Both tend to the Hopf–Lax formula :math:`\min_j q_j(x, t)` as ε → 0 (:math:`c_\varepsilon\to 0`
since :math:`\varepsilon\log\varepsilon\to 0`), the viscosity solution of :math:`u_t + |\nabla u|^2 = 0`
(Hamiltonian :math:`|p|^2`, Lagrangian :math:`|q|^2/4`).

Everything here is computed directly from :math:`|x - y_j|^2` (not through ``W`` and ``b``), so the
identity is checked against an independent computation.
"""
from __future__ import annotations

import numpy as np

from ._checks import common_dtype, positive_scalar, real_array

__all__ = ["anchor_weights", "hopf_cole_solution", "hopf_lax", "heat_offset"]


def _anchors(y, g):
    y = real_array("y", y, 2)
    g = real_array("g", g, 1)
    if g.shape[0] != y.shape[0]:
        raise ValueError(f"g must hold one value per anchor: y has {y.shape[0]} anchors, g has {g.shape[0]}")
    return y, g


def anchor_weights(y, g, t):
    r"""Weights of the dense LSE layer for anchors ``y`` (m, d), data ``g`` (m,), time ``t`` > 0.

    Returns
    -------
    W : ndarray (m, d)
        :math:`W_j = y_j / (2t)`.
    b : ndarray (m,)
        :math:`b_j = -g_j - |y_j|^2/(4t)`.
    """
    y, g = _anchors(y, g)
    t = positive_scalar("t", t)
    dtype = common_dtype(y, g)
    y, g = y.astype(dtype, copy=False), g.astype(dtype, copy=False)
    return y / (2 * t), -g - np.sum(y * y, axis=1) / (4 * t)


def _costs(x, t, y, g):
    """q_j(x, t) = g_j + |x − y_j|²/(4t), shape (batch, m), from the differences x − y_j."""
    y, g = _anchors(y, g)
    x = real_array("x", x, 2)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x must have shape (batch, {y.shape[1]}) to match anchors y of dimension "
                         f"{y.shape[1]}, got {x.shape}")
    t = positive_scalar("t", t)
    dtype = common_dtype(x, y, g)
    diff = x.astype(dtype, copy=False)[:, None, :] - y.astype(dtype, copy=False)[None, :, :]
    return g.astype(dtype, copy=False)[None, :] + np.sum(diff * diff, axis=2) / (4 * t), t, x.shape[1]


def heat_offset(t, eps, d: int) -> float:
    r""":math:`c_\varepsilon(t) = \tfrac{\varepsilon d}{2}\log(4\pi\varepsilon t)`: the normalised minus
    the unnormalised Hopf–Cole solution (the log of the heat kernel's normalisation)."""
    t, eps = positive_scalar("t", t), positive_scalar("eps", eps)
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
        raise ValueError(f"d must be a positive integer dimension, got {d!r}")
    return 0.5 * eps * int(d) * np.log(4 * np.pi * eps * t)


def hopf_cole_solution(x, t, y, g, eps, normalised: bool = True) -> np.ndarray:
    r"""The Hopf–Cole solution of :math:`u_t + |\nabla u|^2 = \varepsilon\Delta u` at points ``x``.

    .. math:: u_\varepsilon(x, t) = -\varepsilon\log\sum_j \exp\!\Big(-\frac{g_j + |x-y_j|^2/(4t)}{\varepsilon}\Big)
              \;+\; \tfrac{\varepsilon d}{2}\log(4\pi\varepsilon t)\ [\text{if normalised}]

    computed with a min-shift (no overflow or underflow to ``-log 0``).

    Parameters
    ----------
    x : array (batch, d)
    t : float > 0
    y : array (m, d)
        Anchors: the atoms of the initial measure :math:`\sum_j e^{-g_j/\varepsilon}\delta_{y_j}`.
    g : array (m,)
        Initial data at the anchors.
    eps : float > 0
        Viscosity ε.
    normalised : bool
        ``True`` (default): the heat kernel with its factor :math:`(4\pi\varepsilon t)^{-d/2}` — the exact
        PDE solution from the discrete initial measure. ``False``: without it — the form for which
        ``DenseLSE.from_anchors(y, g, t, eps)(x) == |x|²/(4t) − u`` holds with no constant, and which
        solves the PDE up to the source ``−εd/(2t)`` (module docstring).

    Returns
    -------
    ndarray (batch,)
    """
    if not isinstance(normalised, (bool, np.bool_)):
        raise TypeError(f"normalised must be True or False, got {normalised!r}")
    eps = positive_scalar("eps", eps)
    q, t, d = _costs(x, t, y, g)
    qmin = q.min(axis=1, keepdims=True)
    v = qmin[:, 0] - eps * np.log(np.sum(np.exp(-(q - qmin) / eps), axis=1))
    return v + heat_offset(t, eps, d) if normalised else v


def hopf_lax(x, t, y, g) -> np.ndarray:
    r"""The inviscid (ε → 0) limit: the Hopf–Lax formula :math:`\min_j \{g_j + |x-y_j|^2/(4t)\}`, shape (batch,)."""
    q, _, _ = _costs(x, t, y, g)
    return q.min(axis=1)
