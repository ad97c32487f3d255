r"""The max-plus (tropical) layer: the ε → 0 limit of the dense log-sum-exp layer.

.. math:: f_0(x) = \max_j\,(W_j\cdot x + b_j) = \lim_{\varepsilon\to 0}\ \varepsilon\log\sum_j e^{(W_j\cdot x+b_j)/\varepsilon}.

It is convex and piecewise affine (a ReLU network with one hidden max is of this form:
:math:`\max(0, w\cdot x + c)` has pieces ``(0, 0)`` and ``(w, c)``); for anchor weights it is
:math:`|x|^2/(4t)` minus the Hopf–Lax solution :math:`\min_j\{g_j + |x-y_j|^2/(4t)\}` of
:math:`u_t + |\nabla u|^2 = 0`.

Derivatives are sub-gradients: the winning piece :math:`j^*(x) = \operatorname{argmax}_j s_j(x)`, ties
broken deterministically by the **lowest index**, gives :math:`\partial f_0/\partial x = W_{j^*}`,
:math:`\partial f_0/\partial W_{j^*} = x`, :math:`\partial f_0/\partial b_{j^*} = 1` (zero for the other
pieces). :math:`W_{j^*}` lies in the sub-differential (the convex hull of the tied slopes); away from
ties it is the gradient. The attribution weights are the one-hot vector of :math:`j^*`, the ε → 0 limit
of the softmax off ties.
"""
from __future__ import annotations

import numpy as np

from ._checks import check_x, common_dtype, real_array
from .dense import Attribution, DenseLSE, affine_scores

__all__ = ["MaxPlus"]


class MaxPlus:
    r"""Max-plus layer :math:`f_0(x) = \max_j(W_j\cdot x + b_j)` with W (m, d), b (m,); inputs x (batch, d).

    Same checks, dtypes and gradient dict (``x``, ``W``, ``b``; no ``eps``) as :class:`DenseLSE`.
    """

    def __init__(self, W, b):
        W = real_array("W", W, 2)
        b = real_array("b", b, 1)
        if b.shape[0] != W.shape[0]:
            raise ValueError(f"b must hold one offset per row of W: W has {W.shape[0]} rows, b has {b.shape[0]}")
        self.dtype = common_dtype(W, b)
        self.W, self.b = W.astype(self.dtype), b.astype(self.dtype)

    @property
    def n_pieces(self) -> int:
        return self.W.shape[0]

    @property
    def n_features(self) -> int:
        return self.W.shape[1]

    def __repr__(self):
        return f"MaxPlus(m={self.n_pieces}, d={self.n_features}, dtype={np.dtype(self.dtype).name})"

    @classmethod
    def limit_of(cls, layer: DenseLSE) -> "MaxPlus":
        r"""The ε → 0 limit of a dense LSE layer: :math:`\max_j(W_j\cdot x + b_j)` with the same W, b."""
        if not isinstance(layer, DenseLSE):
            raise TypeError(f"limit_of takes a DenseLSE layer, got {type(layer).__name__}")
        return cls(layer.W, layer.b)

    def soften(self, eps) -> DenseLSE:
        """The dense log-sum-exp layer at temperature ε > 0 with the same pieces."""
        return DenseLSE(self.W, self.b, eps)

    def _state(self, x):
        x = check_x(x, self.n_features, self.dtype)
        W, b = self.W.astype(x.dtype, copy=False), self.b.astype(x.dtype, copy=False)
        s = affine_scores(x, W, b)
        return x, W, s, np.argmax(s, axis=1)             # argmax returns the first (lowest) index on ties

    def scores(self, x) -> np.ndarray:
        """s_j(x) = W_j·x + b_j, shape (batch, m)."""
        return self._state(x)[2]

    def __call__(self, x) -> np.ndarray:
        """max_j s_j(x), shape (batch,)."""
        _, _, s, j = self._state(x)
        return s[np.arange(s.shape[0]), j]

    forward = __call__

    def winners(self, x) -> np.ndarray:
        """j*(x), the lowest index among the maximal scores, shape (batch,) of int."""
        return self._state(x)[3]

    def ties(self, x) -> np.ndarray:
        """k(x), how many pieces reach the maximum exactly, shape (batch,) of int."""
        s = self._state(x)[2]
        return np.sum(s == s.max(axis=1, keepdims=True), axis=1)

    def gap(self, x) -> np.ndarray:
        r"""δ(x): the maximum minus the largest score strictly below it (``inf`` when all pieces tie),
        shape (batch,). With k = :meth:`ties` the soft layer obeys
        :math:`0 \le f_\varepsilon - f_0 - \varepsilon\log k \le \varepsilon\frac{m-k}{k}e^{-\delta/\varepsilon}`."""
        s = self._state(x)[2]
        top = s.max(axis=1, keepdims=True)
        below = np.where(s < top, s, -np.inf).max(axis=1)
        return top[:, 0] - below

    def attribution(self, x) -> Attribution:
        """One-hot weights at j*(x) and entropy 0 (the ε → 0 limit of :meth:`DenseLSE.attribution` off ties)."""
        _, _, s, j = self._state(x)
        weights = np.zeros_like(s)
        weights[np.arange(s.shape[0]), j] = 1
        return Attribution(weights, np.zeros(s.shape[0], dtype=s.dtype))

    def gradient(self, x) -> np.ndarray:
        """The sub-gradient W_{j*(x)}, shape (batch, d)."""
        _, W, _, j = self._state(x)
        return W[j]

    def value_and_vjp(self, x, grad_out):
        r"""f_0(x) and the sub-gradients of :math:`\sum_b\bar g_b f_0(x_b)`: ``x`` :math:`\bar g_bW_{j^*_b}`,
        ``W`` row :math:`j` gets :math:`\sum_{b: j^*_b=j}\bar g_bx_b`, ``b`` entry :math:`j` gets
        :math:`\sum_{b: j^*_b=j}\bar g_b`."""
        x, W, s, j = self._state(x)
        g = real_array("grad_out", grad_out, 1, dtype=x.dtype)
        if g.shape[0] != x.shape[0]:
            raise ValueError(f"grad_out must have shape ({x.shape[0]},) to match x, got {g.shape}")
        gW = np.zeros_like(W)
        np.add.at(gW, j, g[:, None] * x)
        gb = np.bincount(j, weights=g, minlength=self.n_pieces).astype(x.dtype)
        return s[np.arange(s.shape[0]), j], {"x": g[:, None] * W[j], "W": gW, "b": gb}

    def vjp(self, x, grad_out) -> dict:
        """The sub-gradients of :meth:`value_and_vjp` alone."""
        return self.value_and_vjp(x, grad_out)[1]
