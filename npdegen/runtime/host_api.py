"""The public gradient API of networks computed on the host in NumPy (the integral-operator and
point-cloud networks), written once.

A class that mixes in :class:`HostNetworkAPI` provides ``grid``, ``shapes``, ``families``, ``dtype``,
``train_omega``, ``kernel_names``, ``_check_kernel(values)``, ``_final(x2d, theta) -> (z_L, aux)`` (a
forward pass that keeps what its adjoint needs), ``_adjoint(aux, lam, theta) -> (dx, grads)``,
``_run(x2d, theta, keep, trajectory) -> (z_L, trajectory or None, aux)`` (or its own ``forward``),
``layers`` and ``UNSTABLE`` (what makes its step blow up, for the error message); it gets ``_states``,
``forward``, ``check_params``, ``backward``, ``vjp``, ``loss_and_grad``, ``layer_losses`` and ``_finite``
with the semantics of :class:`~npdegen.runtime.network.Network` (``loss = 0.5 Σ (z_L − y)²``).
"""
from __future__ import annotations

import numpy as np

from .network import NonFiniteError
from .tape import Tape

__all__ = ["HostNetworkAPI"]


class HostNetworkAPI:
    #: What makes the layer's step blow up (ends the non-finite error's message).
    UNSTABLE = "the parameters"
    #: Said after the expected shapes when an input's shape is wrong.
    SHAPE_NOTE = ""

    def _states(self, x, what="x"):
        """``(C-ordered (batch, *grid) array of the network's dtype, single)``: real, of the grid's shape with
        or without a batch axis, not empty, finite (``single``: the input had no batch axis)."""
        arr = np.asarray(x)
        if arr.dtype.kind not in "fiu":
            raise TypeError(f"{what} must be real numbers, got dtype {arr.dtype}")
        d = len(self.grid)
        if arr.ndim not in (d, d + 1) or tuple(arr.shape[arr.ndim - d:]) != tuple(self.grid):
            shape = ", ".join(map(str, self.grid))
            raise ValueError(f"{what} must have shape (batch, {shape}) or ({shape}{',' if d == 1 else ''})"
                             f"{self.SHAPE_NOTE}, got {arr.shape}")
        if arr.size == 0:
            raise ValueError(f"{what} has no samples (shape {arr.shape})")
        with np.errstate(over="ignore"):
            cast = np.ascontiguousarray(arr, self.dtype)
        if not np.all(np.isfinite(cast)):
            raise ValueError(f"{what} contains NaN or inf (or overflows {self.dtype})")
        return cast.reshape(-1, *self.grid), arr.ndim == d

    def _finite(self, what, **arrays):
        """Raise :class:`~npdegen.runtime.network.NonFiniteError` naming the arrays (or dicts of arrays)
        that hold a NaN or inf."""
        bad = [k for k, a in arrays.items()
               if not all(np.all(np.isfinite(v)) for v in (a.values() if isinstance(a, dict) else [a]))]
        if bad:
            raise NonFiniteError(f"{what}: non-finite values in {', '.join(bad)}; the layer is unstable for these "
                                 f"parameters ({self.UNSTABLE}) or the input is too large")

    def forward(self, x, theta, trajectory: bool = False, keep: bool = False):
        """``z_L`` (or ``z_0 … z_L`` with ``trajectory``); ``keep=True`` returns a tape for :meth:`backward`."""
        x2d, single = self._states(x)
        theta = self.check_params(theta)
        if keep and trajectory:
            raise ValueError("keep=True returns a tape; ask for trajectory=True separately")
        last, traj, aux = self._run(x2d, theta, keep=keep, trajectory=trajectory)
        self._finite("forward", output=last)
        if keep:
            return Tape(net=self, output=last[0] if single else last.copy(), stored=aux,
                        theta=theta, single=single, shape=tuple(x2d.shape))
        if trajectory:
            return traj[:, 0] if single else traj
        return last[0] if single else last

    def check_params(self, theta) -> dict:
        """Keys, shapes, finiteness, ω > 0 when trained, the kernel's parameter ranges
        (``_check_kernel``); arrays of the network's dtype (C order)."""
        if not isinstance(theta, dict):
            raise TypeError(f"theta must be a dict of arrays, got {type(theta).__name__}")
        missing, extra = set(self.shapes) - set(theta), set(theta) - set(self.shapes)
        if missing or extra:
            raise ValueError(f"theta keys {sorted(theta)} do not match the network's {sorted(self.shapes)}"
                             + (f"; missing {sorted(missing)}" if missing else "")
                             + (f"; unexpected {sorted(extra)}" if extra else ""))
        out = {}
        for k, shape in self.shapes.items():
            arr = np.asarray(theta[k])
            if arr.dtype.kind not in "fiu":
                raise TypeError(f"theta[{k!r}] must be real numbers, got dtype {arr.dtype}")
            if arr.shape != shape:
                what = "omega" if k == "omega" else f"a {self.families[k]}"
                raise ValueError(f"theta[{k!r}] has shape {arr.shape}; {what} parameter needs {shape}")
            with np.errstate(over="ignore"):
                cast = arr.astype(self.dtype, order="C", copy=False)
            if not np.all(np.isfinite(cast)):
                raise ValueError(f"theta[{k!r}] contains NaN or inf (or overflows {self.dtype})")
            out[k] = cast
        if self.train_omega and not 0 < float(out["omega"]):
            raise ValueError(f"theta['omega'] must be > 0, got {float(out['omega'])}")
        self._check_kernel({k: np.asarray(out[k], np.float64) for k in self.kernel_names})
        return out

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
