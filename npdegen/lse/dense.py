r"""The dense log-sum-exp layer: a soft maximum of affine functions, the viscous Hamilton–Jacobi step.

.. math:: f(x) = \varepsilon\log\sum_{j=1}^m \exp\!\Big(\frac{s_j(x)}{\varepsilon}\Big),\qquad
          s_j(x) = W_j\cdot x + b_j,\qquad x\in\mathbb R^d,\ W\in\mathbb R^{m\times d},\ b\in\mathbb R^m.

Evaluated with a max-shift, :math:`f = s_{\max} + \varepsilon\log\sum_j e^{(s_j - s_{\max})/\varepsilon}`
(every exponent ≤ 0, the sum ≥ 1), so no overflow for any finite scores and any ε > 0.

Derivatives (all exact; :math:`\pi_j = \operatorname{softmax}_j(s/\varepsilon)` are the attribution weights):

* :math:`\nabla_x f = \sum_j \pi_j W_j`, :math:`\partial f/\partial W_j = \pi_j x`, :math:`\partial f/\partial b_j = \pi_j`;
* :math:`\partial f/\partial\varepsilon = \log\sum_j e^{s_j/\varepsilon} - \sum_j\pi_j s_j/\varepsilon
  = (f - \sum_j\pi_j s_j)/\varepsilon = H(\pi) = -\sum_j\pi_j\log\pi_j \ge 0`: the temperature derivative is
  the attribution entropy (computed as the entropy, from :math:`\log\pi` in log space);
* :math:`\nabla_x^2 f = \frac1\varepsilon\big(\sum_j\pi_j W_jW_j^\top - \bar W\bar W^\top\big)
  = \operatorname{Cov}_\pi(W)/\varepsilon`, :math:`\bar W = \sum_j\pi_jW_j` (positive semi-definite: f is convex).

Bounds: :math:`\max_j s_j \le f \le \max_j s_j + \varepsilon\log m`; with :math:`k` exact ties at the
maximum and the others at least :math:`\delta` below, :math:`0\le f - \max_j s_j - \varepsilon\log k \le
\varepsilon\frac{m-k}{k}e^{-\delta/\varepsilon}`. The ε → 0 limit is the max-plus layer
:class:`~npdegen.lse.MaxPlus` (:meth:`MaxPlus.limit_of`).

With anchors (:meth:`DenseLSE.from_anchors`) the layer is :math:`|x|^2/(4t)` minus the Hopf–Cole
solution of :math:`u_t + |\nabla u|^2 = \varepsilon\Delta u` (:mod:`npdegen.lse.hopf_cole`).
"""
from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np

from ._checks import check_x, common_dtype, positive_scalar, real_array
from .hopf_cole import anchor_weights

__all__ = ["DenseLSE", "Attribution", "affine_scores"]


class Attribution(NamedTuple):
    """Attribution of f(x) to the affine pieces: ``weights`` π (batch, m), rows summing to 1, and their
    Shannon ``entropy`` H(π) = −Σ π_j log π_j (batch,), in nats, between 0 and log m."""
    weights: np.ndarray
    entropy: np.ndarray


def affine_scores(x: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """s = x Wᵀ + b, shape (batch, m); a clear error where finite inputs give scores beyond the dtype."""
    with np.errstate(over="ignore", invalid="ignore"):
        s = x @ W.T + b
    if not np.all(np.isfinite(s)):
        raise ValueError(f"the scores W·x + b overflow {s.dtype} (|x| up to {np.max(np.abs(x)):.3g}); "
                         "rescale the inputs or compute in float64")
    return s


def _log_softmax(s: np.ndarray, eps: float):
    """Max-shifted log-sum-exp: returns f (batch,) and log π (batch, m), both finite-safe.

    (s − max)/ε ≤ 0 may underflow to −inf for far-off pieces (π = 0 there); the log of a sum ≥ 1 is finite.
    """
    smax = s.max(axis=1, keepdims=True)
    with np.errstate(over="ignore", under="ignore"):      # far-off pieces: exp → 0 on purpose
        z = (s - smax) / s.dtype.type(eps)
        lse = np.log(np.sum(np.exp(z), axis=1, keepdims=True))
    return smax[:, 0] + s.dtype.type(eps) * lse[:, 0], z - lse


def _entropy(logpi: np.ndarray) -> np.ndarray:
    with np.errstate(under="ignore"):
        pi = np.exp(logpi)
    return -np.sum(pi * np.where(pi > 0, logpi, 0), axis=1)


class DenseLSE:
    r"""Dense log-sum-exp layer :math:`f(x) = \varepsilon\log\sum_j\exp((W_j\cdot x + b_j)/\varepsilon)`.

    Parameters
    ----------
    W : array (m, d)
        Slopes of the m affine pieces.
    b : array (m,)
        Offsets.
    eps : float > 0
        Temperature ε (the viscosity of the Hamilton–Jacobi reading).

    The layer computes in float32 when W, b and the input x are all float32, else in float64.
    NaN or infinite parameters or inputs, ε ≤ 0 and shape mismatches raise ``ValueError``/``TypeError``.

    Examples
    --------
    >>> y, g = np.array([[0.0, 0.0], [1.0, 0.0]]), np.array([0.0, 0.5])   # anchors and data
    >>> layer = DenseLSE.from_anchors(y, g, t=0.5, eps=0.1)
    >>> x = np.array([[0.2, 0.1], [0.9, -0.3]])
    >>> layer(x).shape, sorted(layer.vjp(x, np.ones(2)))
    ((2,), ['W', 'b', 'eps', 'x'])
    """

    def __init__(self, W, b, eps):
        W = real_array("W", W, 2)
        b = real_array("b", b, 1)
        if b.shape[0] != W.shape[0]:
            raise ValueError(f"b must hold one offset per row of W: W has {W.shape[0]} rows, b has {b.shape[0]}")
        self.eps = positive_scalar("eps", eps)
        self.dtype = common_dtype(W, b)
        self.W, self.b = W.astype(self.dtype), b.astype(self.dtype)

    @classmethod
    def from_anchors(cls, y, g, t, eps) -> "DenseLSE":
        r"""The layer with :math:`W_j = y_j/(2t)`, :math:`b_j = -g_j - |y_j|^2/(4t)` for anchors ``y``
        (m, d), data ``g`` (m,) and time ``t`` > 0: then :math:`f(x) = |x|^2/(4t) - v_\varepsilon(x, t)`
        with :math:`v_\varepsilon` = ``hopf_cole_solution(x, t, y, g, eps, normalised=False)``."""
        W, b = anchor_weights(y, g, t)
        return cls(W, b, eps)

    # -- shapes and parameters -------------------------------------------------------------------
    @property
    def n_pieces(self) -> int:
        """m, the number of affine pieces."""
        return self.W.shape[0]

    @property
    def n_features(self) -> int:
        """d, the input width."""
        return self.W.shape[1]

    @property
    def params(self) -> dict:
        """``{"W", "b", "eps"}`` (copies), the dict that :meth:`vjp` returns gradients for."""
        return {"W": self.W.copy(), "b": self.b.copy(), "eps": self.eps}

    def __repr__(self):
        return f"DenseLSE(m={self.n_pieces}, d={self.n_features}, eps={self.eps:g}, dtype={np.dtype(self.dtype).name})"

    def _prepare(self, x):
        x = check_x(x, self.n_features, self.dtype)
        W, b = self.W.astype(x.dtype, copy=False), self.b.astype(x.dtype, copy=False)
        return x, W, b

    def _state(self, x):
        x, W, b = self._prepare(x)
        s = affine_scores(x, W, b)
        f, logpi = _log_softmax(s, self.eps)
        return x, W, s, f, logpi

    # -- values ----------------------------------------------------------------------------------
    def scores(self, x) -> np.ndarray:
        """The affine scores :math:`s_j(x) = W_j\\cdot x + b_j`, shape (batch, m)."""
        x, W, b = self._prepare(x)
        return affine_scores(x, W, b)

    def __call__(self, x) -> np.ndarray:
        """f(x), shape (batch,)."""
        return self._state(x)[3]

    forward = __call__

    def attribution(self, x) -> Attribution:
        r"""π_j = softmax_j(s/ε) per sample and its entropy H(π) (= ∂f/∂ε)."""
        logpi = self._state(x)[4]
        return Attribution(np.exp(logpi), _entropy(logpi))

    # -- derivatives -----------------------------------------------------------------------------
    def gradient(self, x) -> np.ndarray:
        r""":math:`\nabla_x f = \sum_j\pi_jW_j`, shape (batch, d)."""
        _, W, _, _, logpi = self._state(x)
        return np.exp(logpi) @ W

    def hessian(self, x) -> np.ndarray:
        r""":math:`\nabla_x^2 f = \operatorname{Cov}_\pi(W)/\varepsilon`, shape (batch, d, d), from the
        π-centred slopes (symmetric positive semi-definite by construction)."""
        _, W, _, _, logpi = self._state(x)
        pi = np.exp(logpi)
        centred = W[None, :, :] - (pi @ W)[:, None, :]
        return np.einsum("bm,bmi,bmj->bij", pi, centred, centred) / W.dtype.type(self.eps)

    def value_and_vjp(self, x, grad_out):
        r"""f(x) and the gradients of :math:`\sum_b \bar g_b f(x_b)` for the upstream ``grad_out`` ḡ (batch,):

        ``x``: :math:`\bar g_b\sum_j\pi_{bj}W_j` (batch, d); ``W``: :math:`\sum_b\bar g_b\pi_{bj}x_b` (m, d);
        ``b``: :math:`\sum_b\bar g_b\pi_{bj}` (m,); ``eps``: :math:`\sum_b\bar g_b H(\pi_b)` (float).
        """
        x, W, _, f, logpi = self._state(x)
        g = real_array("grad_out", grad_out, 1, dtype=x.dtype)
        if g.shape[0] != x.shape[0]:
            raise ValueError(f"grad_out must have shape ({x.shape[0]},) to match x, got {g.shape}")
        gpi = g[:, None] * np.exp(logpi)
        return f, {"x": gpi @ W, "W": gpi.T @ x, "b": gpi.sum(axis=0),
                   "eps": float(np.dot(g, _entropy(logpi)))}

    def vjp(self, x, grad_out) -> dict:
        """The gradients of :meth:`value_and_vjp` alone."""
        return self.value_and_vjp(x, grad_out)[1]

    def jvp(self, x, dx=None, dW=None, db=None, deps=0.0) -> np.ndarray:
        r"""Forward mode: the directional derivative of f along (dx, dW, db, dε), shape (batch,):

        .. math:: df = \sum_j \pi_j\,(W_j\cdot dx + dW_j\cdot x + db_j) + H(\pi)\,d\varepsilon.
        """
        x, W, _, _, logpi = self._state(x)
        ds = np.zeros((x.shape[0], self.n_pieces), dtype=x.dtype)
        if dx is not None:
            dx = real_array("dx", dx, 2, dtype=x.dtype)
            if dx.shape != x.shape:
                raise ValueError(f"dx must have the shape of x {x.shape}, got {dx.shape}")
            ds += dx @ W.T
        if dW is not None:
            dW = real_array("dW", dW, 2, dtype=x.dtype)
            if dW.shape != W.shape:
                raise ValueError(f"dW must have the shape of W {W.shape}, got {dW.shape}")
            ds += x @ dW.T
        if db is not None:
            db = real_array("db", db, 1, dtype=x.dtype)
            if db.shape != (self.n_pieces,):
                raise ValueError(f"db must have shape ({self.n_pieces},), got {db.shape}")
            ds += db
        if isinstance(deps, (bool, np.bool_)) or not isinstance(deps, numbers.Real) or not np.isfinite(deps):
            raise ValueError(f"deps must be a finite real number, got {deps!r}")
        return np.sum(np.exp(logpi) * ds, axis=1) + _entropy(logpi) * x.dtype.type(deps)
