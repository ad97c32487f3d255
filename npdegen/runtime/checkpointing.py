"""Checkpointed sweeps of a :class:`~npdegen.runtime.network.Network` (``compile(checkpoint=k)``).

The forward stores z only at the first layer of every segment of ``k`` layers; the backward
recomputes one segment at a time from its checkpoint into a ``(k + 1)``-state buffer and runs the
adjoint over it: memory ``(⌈L/k⌉ + k + 1)·batch·n`` instead of ``(L + 1)·batch·n``, for
``L − k − ⌈L/k⌉`` extra layer steps (the last segment is still in the buffer after the forward).
Only the kernel's ``forward`` and ``adjoint`` run on segments (time-dependent parameters and
gradients passed as views of their layer rows), so every backend gets it.
"""
from __future__ import annotations

__all__ = ["Checkpointing"]


class Checkpointing:
    """Mixed into :class:`~npdegen.runtime.network.Network`: the segment-wise forward and adjoint."""

    @property
    def _checkpointed(self) -> bool:
        return self.checkpoint is not None and self.checkpoint < self.layers

    def _segments(self) -> list:
        k = self.checkpoint
        return [(t0, min(t0 + k, self.layers)) for t0 in range(0, self.layers, k)]

    def _rows(self, values: dict, t0: int, t1: int) -> dict:
        """``values`` (parameters or gradients) with time-dependent entries cut to layers [t0, t1): views."""
        return {k: v[t0:t1] if self.families.get(k) == "time-dependent" else v for k, v in values.items()}

    def _forward_checkpoints(self, x2d, theta):
        """Forward storing z at the first layer of each segment; returns ``(states, buffer)`` with the
        last segment's trajectory still in ``buffer``."""
        segments = self._segments()
        work, omega = self._workspace(x2d.shape[0]), self._omega(theta)
        shape = (x2d.shape[0], *self._padded)
        states = self._buffer("checkpoints", (len(segments), *shape))
        buffer = self._buffer("segment", (self.checkpoint + 1, *shape))
        self._interior(buffer[0])[...] = x2d
        for i, (t0, t1) in enumerate(segments):
            if i:
                buffer[0] = buffer[segments[i - 1][1] - segments[i - 1][0]]
            self.kernel.forward(buffer[:t1 - t0 + 1], self._rows(theta, t0, t1), self._space, omega, self.alpha, work)
            states[i] = buffer[0]
        return states, buffer

    def _adjoint_checkpoints(self, stored, lam, theta, single):
        states, buffer = stored
        grads = {k: self.xp.zeros(s, self.dtype) for k, s in self.shapes.items()}
        work, omega = self._workspace(lam.shape[0]), self._omega(theta)
        segments = self._segments()
        for i in reversed(range(len(segments))):
            t0, t1 = segments[i]
            rows = self._rows(theta, t0, t1)
            if i < len(segments) - 1:         # recompute z_t0 … z_{t1-1} from the checkpoint
                buffer[0] = states[i]
                self.kernel.forward(buffer[:t1 - t0], rows, self._space, omega, self.alpha, work)
            lam = self.kernel.adjoint(buffer[:t1 - t0 + 1], lam, rows, self._space, omega, self.alpha,
                                      self._rows(grads, t0, t1), work)
        return (lam[0] if single else lam), grads

    def _final_state(self, stored):
        if self._checkpointed:
            last = self._segments()[-1]
            return self._interior(stored[1][last[1] - last[0]])
        return self._interior(stored[-1])

    def _forward_for_gradient(self, x2d, theta):
        return self._forward_checkpoints(x2d, theta) if self._checkpointed else self._run_forward(x2d, theta)
