"""The public gradient API of networks computed on the host in NumPy (the integral-operator and
point-cloud networks), written once.

A class that mixes in :class:`HostNetworkAPI` provides ``_states(x, what)`` (``(2-D batch, single)``),
``check_params(theta)``, ``_final(x2d, theta) -> (z_L, aux)`` (a forward pass that keeps what its
adjoint needs), ``_adjoint(aux, lam, theta) -> (dx, grads)``, ``_finite(what, **arrays)``,
``forward(x, theta, trajectory=False, keep=False)`` and ``layers``; it gets ``backward``, ``vjp``,
``loss_and_grad`` and ``layer_losses`` with the semantics of :class:`~npdegen.runtime.network.Network`
(``loss = 0.5 Σ (z_L − y)²``).
"""
from __future__ import annotations

import numpy as np

from .tape import Tape

__all__ = ["HostNetworkAPI"]


class HostNetworkAPI:
    def backward(self, tape, cotangent):
        """``(dx, grads)`` for a tape of ``forward(..., keep=True)`` and the cotangent of its output."""
        if not isinstance(tape, Tape) or tape.net is not self:
            raise ValueError("backward needs a tape made by this network's forward(..., keep=True)")
        lam, _ = self._states(cotangent, "cotangent")
        if lam.shape != tape.shape:
            raise ValueError(f"cotangent has shape {np.shape(cotangent)}, the tape's output {np.shape(tape.output)}")
        dx, grads = self._adjoint(tape.stored, lam.copy(), tape.theta)
        self._finite("backward", input_gradient=dx, gradients=grads)
        return (dx[0] if tape.single else dx), grads

    def vjp(self, x, theta, cotangent):
        """``(Jᵀ·cotangent, grads)`` of the map ``x → z_L``."""
        return self.backward(self.forward(x, theta, keep=True), cotangent)

    def loss_and_grad(self, x, y, theta, input_grad: bool = False):
        """``loss = 0.5 Σ (z_L − y)²`` and its gradient (``"x"`` added if ``input_grad``)."""
        x2d, single = self._states(x)
        y2d, _ = self._states(y, "y")
        if y2d.shape != x2d.shape:
            raise ValueError(f"y has shape {np.shape(y)}, expected the shape of x, {np.shape(x)}")
        theta = self.check_params(theta)
        last, aux = self._final(x2d, theta)
        lam = last - y2d
        loss = 0.5 * float(np.einsum("i,i->", lam.reshape(-1), lam.reshape(-1), dtype=np.float64))
        self._finite("loss_and_grad", output=last, loss=np.asarray(loss))
        dx, grads = self._adjoint(aux, lam, theta)
        self._finite("loss_and_grad", gradients=grads, **({"input_gradient": dx} if input_grad else {}))
        if input_grad:
            grads["x"] = dx[0] if single else dx
        return loss, grads

    def layer_losses(self, x, y, theta) -> np.ndarray:
        """``0.5 Σ (z_t − y)²`` for t = 0 … L."""
        y2d, _ = self._states(y, "y")
        traj = self.forward(x, theta, trajectory=True).reshape(self.layers + 1, *y2d.shape)
        return 0.5 * np.sum(np.square(traj - y2d, dtype=np.float64), axis=tuple(range(1, traj.ndim)))
