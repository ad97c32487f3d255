"""Fixed per-site fields of a step IR (e.g. the face masks of flux-form layers), supplied to the kernel.

A fixed field enters the site expression like a heterogeneous parameter but is a function of the
grid and its boundaries, not of training: the user's ``theta`` never holds it and no gradient is
computed for it. :class:`WithFixedFields` wraps a generated kernel module and adds the fields to
every ``theta`` it passes on, so that the network, its checkpointing and its tape stay unaware.
"""
from __future__ import annotations

from ..grid import face_mask

__all__ = ["fixed_values", "WithFixedFields"]

_KINDS = {"face": face_mask}


def fixed_values(ir, grid, boundaries, dtype, xp) -> dict:
    """``{name: array shaped grid}`` for the fixed fields of the step IR ``ir``."""
    out = {}
    for name, (kind, axis, side) in ir.fixed:
        out[name] = xp.asarray(_KINDS[kind](grid, boundaries, axis, side, dtype))
    return out


class WithFixedFields:
    """A kernel module whose ``forward``/``adjoint``/``step``/``step_adjoint`` see ``theta`` plus
    the fixed fields; every other attribute is the module's."""

    def __init__(self, kernel, values: dict):
        self._kernel, self._values = kernel, values

    def __getattr__(self, name):
        return getattr(self._kernel, name)

    def _theta(self, theta):
        return {**theta, **self._values}

    def forward(self, traj, theta, *args, **kwargs):
        return self._kernel.forward(traj, self._theta(theta), *args, **kwargs)

    def adjoint(self, traj, lam, theta, *args, **kwargs):
        return self._kernel.adjoint(traj, lam, self._theta(theta), *args, **kwargs)

    def step(self, zp, out, theta, *args, **kwargs):
        return self._kernel.step(zp, out, self._theta(theta), *args, **kwargs)

    def step_adjoint(self, zp, lam, theta, *args, **kwargs):
        return self._kernel.step_adjoint(zp, lam, self._theta(theta), *args, **kwargs)
