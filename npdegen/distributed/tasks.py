r"""The block tasks of domain decomposition (:mod:`npdegen.distributed.domain`): what a worker runs on
one extended block ``E_c``.

* :func:`_assemble` gathers ``x_c^{ext} = P_c x`` from the block's parts (its own chunk and the
  neighbours' strips), or with ``add=True`` sums cotangent parts into their owner (the fold ``P_c^T``);
* :func:`_forward_task` runs a round's ``B`` layers on ``E_c`` and keeps the interior ``I_c``;
* :func:`_adjoint_task` recomputes the round and returns ``(loss part, ∂/∂θ^{ext}, ∂/∂x^{ext})`` for a
  cotangent put on ``I_c`` (zero in the halo);
* :func:`_accumulate` sums one grid block's gradients over batch blocks and rounds in a fixed order.

The network of a task is compiled on the worker from :class:`_Recipe` (the layer and its compile
options) for the extended shape, and kept per worker thread. This module holds no graph logic: the
graph (which parts feed which task) is built in :mod:`.domain`.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from .arrays import array_module

__all__: list = []          # internal: the task functions of npdegen.distributed.domain

_COMPILE = threading.Lock()      # NeuralPDE.compile loads shared module caches
_LOCAL = threading.local()       # each worker thread's networks (see _Recipe)
_KEEP = 4                        # ... at most this many (2-D: the corner, edge and inner chunk shapes)


@dataclass(frozen=True)
class _Recipe:
    """The network as a task needs it: compiled for its extended block from the layer and options
    (one graph key, shipped once per worker, which compiles from its own kernel cache). Each worker
    thread keeps its last ``_KEEP`` such networks (``digest`` names the recipe), so that later
    chunks and calls reuse their buffers: touching fresh trajectory memory costs about as much as
    the layers (measured 2-3x the warm forward + adjoint of a 2080² chunk)."""
    layer: object
    options: dict
    threads: int
    digest: str

    def net(self, shape, layers):
        nets = _LOCAL.__dict__.setdefault("nets", OrderedDict())
        key = (self.digest, tuple(shape), layers)
        if key not in nets:
            n = shape[0] if len(shape) == 1 else tuple(shape)
            with _COMPILE:
                nets[key] = self.layer.compile(**{**self.options, "n": n, "layers": layers, "threads": self.threads})
            while len(nets) > _KEEP:
                nets.popitem(last=False)
        nets.move_to_end(key)
        return nets[key]


@dataclass(frozen=True)
class _Spec:
    """Static arguments of a block task: layers it runs, where its parts go (``pairs``: source
    slices, or None for a whole part, and destination slices), shape (batch first), dtype, and its
    own sites within the extended block (``inner``)."""
    layers: int
    pairs: tuple
    shape: tuple
    dtype: object
    inner: tuple = ()


def _take(block, index):
    return block[(slice(None), *index)]


def _assemble(parts, spec, add=False):
    """The extended block from its parts (the gather), or with ``add`` the sum of the parts (the
    fold), in the parts' array module."""
    xp = array_module(parts[0])
    out = (xp.zeros if add else xp.empty)(spec.shape, spec.dtype)
    for part, (src, dst) in zip(parts, spec.pairs):
        view, part = out[(slice(None), *dst)], part if src is None else part[(slice(None), *src)]
        if add:
            view += part
        else:
            view[...] = part
    return out


def _forward_task(recipe, spec, theta, parts):
    tape = recipe.net(spec.shape[1:], spec.layers).forward(_assemble(parts, spec), dict(theta), keep=True)
    return array_module(tape.output).ascontiguousarray(tape.output[(slice(None), *spec.inner)])      # (the tape's buffers: reused)


def _adjoint_task(recipe, spec, theta, parts, target, kind):
    """One round's ``(loss part, grads, input cotangent)`` on an extended block. ``kind``: "sum",
    "mean" (``target`` is y; the last round), "vjp" (``target`` is the output's cotangent) or "round"
    (an earlier round: its checkpoint's layers recomputed, ``target`` the next round's cotangent)."""
    local, inner, xp = recipe.net(spec.shape[1:], spec.layers), (slice(None), *spec.inner), array_module(target)
    if kind in ("sum", "mean") and not bool(xp.all(xp.isfinite(target))):
        raise ValueError("y contains NaN or inf")
    tape = local.forward(_assemble(parts, spec), dict(theta), keep=True)
    lam, loss = xp.zeros(spec.shape, spec.dtype), 0.0
    if kind in ("sum", "mean"):
        r = tape.output[inner] - target                    # a new C-contiguous array
        loss = float(xp.einsum("i,i->", r.reshape(-1), r.reshape(-1), dtype=np.float64))
        loss, lam[inner] = (0.5 * loss, r) if kind == "sum" else (loss, 2 * r)
    else:
        lam[inner] = target
    dx, grads = local.backward(tape, lam)
    return loss, grads, dx


def _accumulate(families, layers, rows, grads):
    """One grid block's extended gradients summed over batch blocks and rounds in a fixed order, in
    the network's dtype (as its kernels sum); time-dependent rows go to their layers
    ``rows[i] = (t0, t1)``. Task results are never modified in place."""
    acc = {}
    for (t0, t1), entry in zip(rows, grads):
        for k, g in entry.items():
            if families[k] == "time-dependent" and (t0, t1) != (0, layers):
                if k not in acc:
                    acc[k] = array_module(g).zeros((layers, *g.shape[1:]), g.dtype)
                acc[k][t0:t1] += g
            else:
                acc[k] = acc[k] + g if k in acc else g
    return acc
