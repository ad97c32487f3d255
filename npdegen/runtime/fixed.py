r"""Fixed and derived per-site fields of a step IR, supplied to the kernel.

A **fixed** field (``("face", k, ±1)``: the face masks of flux-form layers) enters the site
expression like a heterogeneous parameter but is a function of the grid and its boundaries, not of
training: the user's ``theta`` never holds it and no gradient is computed for it.

A **derived** field (``("shift", k, source)``: the lo-face value of a face coefficient,
:mod:`npdegen.faces`) is ``S_k θ_source``, the source parameter shifted by one cell along grid axis
``k``: :math:`(S_k a)_i = a_{i-e_k}`, with :math:`(S_k a)_0 = a_{n-1}` on a periodic axis and
:math:`(S_k a)_0 = a_0` otherwise. The kernel computes the gradient ``g`` of the derived field like
any parameter's; the wrapper adds the exact adjoint :math:`S_k^T g` to the source's gradient,
:math:`(S_k^T g)_i = g_{i+e_k}` for ``i < n−1`` and :math:`(S_k^T g)_{n-1} = g_0` (periodic), or
:math:`(S_k^T g)_0 = g_0 + g_1` and :math:`(S_k^T g)_{n-1} = 0` otherwise (only the stored values
count: the derived gradient itself is never exposed). Grid axes are the last ``dim`` axes of an
array, so a time-dependent ``(L, *grid)`` value (or a segment of its layers) shifts along them only.

:class:`WithFixedFields` wraps a generated kernel module and adds the fields to every ``theta`` it
passes on (and folds the derived gradients back), so that the network, its checkpointing, its tape
and the torch/JAX wrappers stay unaware. The single-layer calls (``step``, ``step_adjoint``) shift
and fold only the row of their layer of a time-dependent value (the kernels read no other row).
"""
from __future__ import annotations

import importlib

import numpy as np

from ..grid import face_mask

__all__ = ["fixed_values", "WithFixedFields", "Shift", "shift", "shift_adjoint"]


def _axis(a, dim: int, axis: int) -> int:
    return a.ndim - dim + axis


def _cut(a, ax: int, s: slice):
    return a[(slice(None),) * ax + (s,)]


def shift(a, axis: int, dim: int, periodic: bool):
    """``S_k a``: ``a`` moved one cell up along grid axis ``axis`` (module docstring); a new array."""
    ax = _axis(a, dim, axis)
    out = a.copy()
    _cut(out, ax, slice(1, None))[...] = _cut(a, ax, slice(None, -1))
    _cut(out, ax, slice(0, 1))[...] = _cut(a, ax, slice(-1, None) if periodic else slice(0, 1))
    return out


def shift_adjoint(g, target, axis: int, dim: int, periodic: bool) -> None:
    """``target += S_kᵀ g`` (in place; ``target`` shaped like ``g``)."""
    ax = _axis(g, dim, axis)
    _cut(target, ax, slice(None, -1))[...] += _cut(g, ax, slice(1, None))
    _cut(target, ax, slice(-1, None) if periodic else slice(0, 1))[...] += _cut(g, ax, slice(0, 1))


def _module(a):
    """numpy, or the array library of ``a`` (cupy)."""
    return np if isinstance(a, np.ndarray) else importlib.import_module(type(a).__module__.partition(".")[0])


def _zeros_like(a, layer=None):
    """Zeros shaped like ``a`` on its device; with ``layer``, only row ``layer`` is set (the single-layer
    kernels ``step``/``step_adjoint`` touch no other row of a time-dependent array)."""
    out = _module(a).empty_like(a)
    (out if layer is None else out[layer])[...] = 0
    return out


class Shift:
    """The plan of one derived field: ``S_axis theta[source]``."""

    def __init__(self, source: str, axis: int, dim: int, periodic: bool):
        self.source, self.axis, self.dim, self.periodic = source, axis, dim, periodic

    def _row(self, a, layer):
        return layer is not None and a.ndim == self.dim + 1

    def __call__(self, theta, layer=None):
        a = theta[self.source]
        if not self._row(a, layer):
            return shift(a, self.axis, self.dim, self.periodic)
        out = _module(a).empty_like(a)          # one layer's row: O(grid), not O(L·grid)
        out[layer] = shift(a[layer], self.axis, self.dim, self.periodic)
        return out

    def zeros(self, grads, layer=None):
        g = grads[self.source]
        return _zeros_like(g, layer if self._row(g, layer) else None)

    def fold(self, g, grads, layer=None) -> None:
        target = grads[self.source]
        if self._row(target, layer):
            g, target = g[layer], target[layer]
        shift_adjoint(g, target, self.axis, self.dim, self.periodic)

    def __repr__(self):
        return f"Shift({self.source!r}, axis={self.axis}, {'periodic' if self.periodic else 'edge'})"


def fixed_values(ir, grid, boundaries, dtype, xp) -> dict:
    """``{name: array shaped grid}`` for the fixed fields of the step IR ``ir``, and ``{name: Shift}``
    for its derived fields."""
    out = {}
    dim = len(grid)
    for name, (kind, axis, arg) in ir.fixed:
        if kind == "face":
            out[name] = xp.asarray(face_mask(grid, boundaries, axis, arg, dtype))
        elif kind == "shift":
            out[name] = Shift(arg, axis, dim, boundaries[axis] == "periodic")
        else:
            raise ValueError(f"unknown fixed field kind {kind!r} of {name!r}")
    return out


class WithFixedFields:
    """A kernel module whose ``forward``/``adjoint``/``step``/``step_adjoint`` see ``theta`` plus
    the fixed and derived fields, and whose adjoints fold the derived fields' gradients into their
    sources; every other attribute is the module's."""

    def __init__(self, kernel, values: dict):
        self._kernel = kernel
        self._values = {k: v for k, v in values.items() if not isinstance(v, Shift)}
        self._derived = {k: v for k, v in values.items() if isinstance(v, Shift)}

    def __getattr__(self, name):
        return getattr(self._kernel, name)

    def _theta(self, theta, layer=None):
        return {**theta, **self._values, **{k: s(theta, layer) for k, s in self._derived.items()}}

    def _adjoint(self, fn, head, grads, tail, kwargs, layer=None):
        if not self._derived:
            return fn(*head, grads, *tail, **kwargs)
        extra = {k: s.zeros(grads, layer) for k, s in self._derived.items()}
        out = fn(*head, {**grads, **extra}, *tail, **kwargs)
        for k, s in self._derived.items():
            s.fold(extra[k], grads, layer)
        return out

    def forward(self, traj, theta, *args, **kwargs):
        return self._kernel.forward(traj, self._theta(theta), *args, **kwargs)

    def adjoint(self, traj, lam, theta, space, omega, alpha, grads, *args, **kwargs):
        return self._adjoint(self._kernel.adjoint, (traj, lam, self._theta(theta), space, omega, alpha), grads,
                             args, kwargs)

    def step(self, zp, out, theta, layer, *args, **kwargs):
        return self._kernel.step(zp, out, self._theta(theta, layer), layer, *args, **kwargs)

    def step_adjoint(self, zp, lam, theta, layer, space, omega, alpha, grads, *args, **kwargs):
        return self._adjoint(self._kernel.step_adjoint, (zp, lam, self._theta(theta, layer), layer, space, omega,
                                                         alpha), grads, args, kwargs, layer)
