r"""Values per layer: a time-dependent network whose parameters are constant over the sites.

npdegen's ``time-dependent`` family gives each layer and site its own value, ``θ_k`` shaped
``(L, *grid)``. A flux-form layer must use the same coefficient on both sides of every face to
conserve mass, so its time-dependent family here is a function of the layer only, piecewise
linear in ``t`` with ``m`` knots ``φ_k`` (``P`` the ``L × m`` interpolation matrix of
:func:`npdegen.runtime.multilevel.interpolation`, rows of convex weights; ``m = L``: one value
per layer, ``P = I``):

.. math:: θ_k[t, i] = (Pφ_k)[t] \quad\Longrightarrow\quad
          \frac{∂\,\mathrm{loss}}{∂φ_k} = P^{\mathsf T} \sum_i \frac{∂\,\mathrm{loss}}{∂θ_k[\cdot, i]}

(the broadcast and its adjoint, the sum over the sites). Box bounds on ``φ`` hold for every
layer (convex weights). :class:`PerLayer` wraps a compiled
time-dependent network and exposes what training, the search and ``predict`` use (``shapes``,
``check_params``, ``forward``, ``backward``, ``vjp``, ``loss_and_grad``, ``layer_losses``, ``_states``).
"""
from __future__ import annotations

import numpy as np

__all__ = ["PerLayer"]


class PerLayer:
    """``net`` (time-dependent, compiled) with the parameters ``names`` as ``knots`` values each
    (default one per layer)."""

    def __init__(self, net, names, knots: int | None = None):
        from ..runtime.multilevel import interpolation
        self.net = net
        self.names = tuple(names)
        L, grid = net.layers, tuple(net.grid)
        bad = [k for k in self.names if tuple(net.shapes.get(k, ())) != (L, *grid)]
        if bad:
            raise ValueError(f"PerLayer needs time-dependent parameters shaped {(L, *grid)}; {bad} are not")
        m = L if knots is None else int(knots)
        if not 1 <= m <= L:
            raise ValueError(f"knots must be between 1 and the depth {L}, got {knots!r}")
        self.knots = m
        self.P = interpolation(L, m, False) if m < L else None
        self.shapes = {k: ((m,) if k in self.names else tuple(s)) for k, s in net.shapes.items()}
        self.layers, self.dtype, self.grid = net.layers, net.dtype, grid
        self._sites = tuple(range(1, 1 + len(grid)))

    # ------------------------------------------------------------------ the map φ -> θ and its adjoint
    def expand(self, theta: dict) -> dict:
        """``θ`` of the wrapped network: ``Pφ`` per layer, broadcast over the sites."""
        out = dict(theta)
        for k in self.names:
            v = self.per_layer(theta[k])
            out[k] = np.ascontiguousarray(np.broadcast_to(v.reshape(v.shape + (1,) * len(self.grid)),
                                                          (self.layers, *self.grid)))
        return out

    def per_layer(self, value) -> np.ndarray:
        """``Pφ``: the value of each layer (shape ``(L,)``) from the knots ``φ``."""
        v = np.asarray(value)
        return v if self.P is None else (self.P @ v.astype(np.float64)).astype(v.dtype)

    def reduce(self, grads: dict) -> dict:
        """Gradients by ``φ``: ``Pᵀ`` of the wrapped network's, summed over the sites."""
        out = {}
        for k, g in grads.items():
            if k in self.names:
                g = np.asarray(g).sum(axis=self._sites)
                g = g if self.P is None else (self.P.T @ g.astype(np.float64)).astype(g.dtype)
            out[k] = g
        return out

    def check_params(self, theta) -> dict:
        """Keys, shapes (``(L,)`` for the per-layer names) and finiteness, as the network's dtype."""
        if not isinstance(theta, dict):
            raise TypeError(f"theta must be a dict of arrays, got {type(theta).__name__}")
        if set(theta) != set(self.shapes):
            raise ValueError(f"theta keys {sorted(theta)} do not match the network's {sorted(self.shapes)}")
        out = {}
        for k, shape in self.shapes.items():
            v = np.asarray(theta[k])
            if v.shape != shape:
                raise ValueError(f"theta[{k!r}] has shape {v.shape}; it needs {shape}")
            out[k] = v.astype(self.dtype)
        self.net.check_params(self.expand(out))          # finiteness and the wrapped network's checks
        return out

    # ------------------------------------------------------------------ the network surface
    def _states(self, x, what="x"):
        return self.net._states(x, what)

    def forward(self, x, theta, trajectory: bool = False, keep: bool = False):
        return self.net.forward(x, self.expand(self.check_params(theta)), trajectory=trajectory, keep=keep)

    def backward(self, tape, cotangent):
        dx, grads = self.net.backward(tape, cotangent)
        return dx, self.reduce(grads)

    def vjp(self, x, theta, cotangent):
        dx, grads = self.net.vjp(x, self.expand(self.check_params(theta)), cotangent)
        return dx, self.reduce(grads)

    def loss_and_grad(self, x, y, theta, input_grad: bool = False):
        loss, grads = self.net.loss_and_grad(x, y, self.expand(self.check_params(theta)), input_grad=input_grad)
        return loss, self.reduce(grads)

    def layer_losses(self, x, y, theta, chunk: int = 16):
        """``0.5 Σ (z_t − y)²`` for t = 0 … L, summed over chunks of ``chunk`` samples (a trajectory of
        thousands of layers is ``(L + 1)·batch·n`` values: chunks keep its memory small)."""
        full = self.expand(self.check_params(theta))
        x2d, _ = self.net._states(x)
        y2d, _ = self.net._states(y, "y")
        return sum(self.net.layer_losses(x2d[s:s + chunk], y2d[s:s + chunk], full) for s in range(0, len(x2d), chunk))

    def init_params(self, scale: float = 0.0, seed: int = 0) -> dict:
        rng = np.random.default_rng(seed)
        return {k: (scale * rng.standard_normal(s)).astype(self.dtype) for k, s in self.shapes.items()}

    def __repr__(self):
        return f"PerLayer({self.net!r}, {', '.join(self.names)} with {self.knots} knots over {self.layers} layers)"
