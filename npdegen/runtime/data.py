"""Training data: minibatches from arrays, memory-mapped ``.npy`` files or any iterable, and the losses.

* :class:`Batches` holds ``x`` and ``y`` (arrays, or paths of ``.npy`` files opened with
  ``np.load(mmap_mode="r")`` so that only the rows of a batch are read) and yields batch ``j`` of
  epoch ``e``; with ``shuffle`` the order is a permutation drawn from ``seed`` and the epoch, so a
  resumed run sees the same batches.
* :class:`IterableBatches` wraps any iterable of ``(x, y)`` pairs (a list is re-iterated every
  epoch; a one-shot generator ends training when it is exhausted).
* :class:`DaskBatches` keeps a ``dask.array`` ``x``/``y`` (minibatches drawn as :class:`Batches`
  draws them, as lazy row selections) or a ``dask.bag`` of ``(x, y)`` shards (the whole bag every
  step) lazy: each step's loss and gradient then run on Dask (:mod:`npdegen.distributed`).
* :func:`loss_and_grad` computes ``"sum"`` (the network's ``0.5 Σ (z_L − y)²``), ``"mean"``
  (``mean((z_L − y)²)`` over batch and sites) or ``"relative"`` (nRMSE: ``‖z_L − y‖ / ‖y‖`` per
  sample, averaged over the batch) and its gradient, through ``net.forward(keep=True)`` and
  ``net.backward`` with the loss's cotangent.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .network import foreign_handler

__all__ = ["Batches", "IterableBatches", "DaskBatches", "as_batches", "loss_and_grad", "evaluate", "LOSSES"]

LOSSES = ("sum", "mean", "relative")


def _open(a):
    if isinstance(a, (str, os.PathLike)):
        path = Path(a)
        if path.suffix != ".npy":
            raise ValueError(f"{path}: data files must be .npy arrays (opened memory-mapped)")
        return np.load(path, mmap_mode="r", allow_pickle=False)
    return a


def _rows(samples: int, size: int, shuffle: bool, seed: int, epoch: int, j: int):
    """The sorted sample indices of batch ``j`` of ``epoch`` (a permutation from ``seed`` and ``epoch``)."""
    order = np.random.default_rng([seed, epoch]).permutation(samples) if shuffle else np.arange(samples)
    return np.sort(order[j * size:(j + 1) * size])     # sorted: sequential reads


class _Epochs:
    """``start(done)`` for a source with ``per_epoch`` and ``batch(epoch, j)``."""

    def start(self, done: int):
        """The batches from optimizer step ``done`` on: ``(epoch, j, (x, y))``."""
        epoch, j = divmod(done, self.per_epoch)
        while True:
            for jj in range(j, self.per_epoch):
                yield epoch, jj, self.batch(epoch, jj)
            epoch, j = epoch + 1, 0


class Batches(_Epochs):
    """Minibatches of ``batch_size`` samples of the arrays (or ``.npy`` paths) ``x`` and ``y``."""

    def __init__(self, x, y, batch_size: int | None = None, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = False):
        self.x, self.y = _open(x), _open(y)
        if np.shape(self.x)[:1] != np.shape(self.y)[:1] or np.ndim(self.x) < 2:
            raise ValueError(f"x and y must be (samples, *grid) arrays with the same number of samples, "
                             f"got shapes {np.shape(self.x)} and {np.shape(self.y)}")
        self.samples = int(np.shape(self.x)[0])
        self.batch_size = self.samples if batch_size is None else batch_size
        if not isinstance(self.batch_size, int) or isinstance(self.batch_size, bool) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        full, rest = divmod(self.samples, self.batch_size)
        self.per_epoch = full if (drop_last and full) else full + bool(rest)

    @property
    def full_batch(self) -> bool:
        return self.per_epoch == 1 and self.batch_size >= self.samples

    def batch(self, epoch: int, j: int):
        """Batch ``j`` of epoch ``epoch`` as in-memory arrays ``(x, y)``."""
        if self.full_batch:
            return np.asarray(self.x), np.asarray(self.y)
        rows = _rows(self.samples, self.batch_size, self.shuffle, self.seed, epoch, j)
        return np.asarray(self.x[rows]), np.asarray(self.y[rows])

    def __iter__(self):
        for epoch in range(1 << 62):
            for j in range(self.per_epoch):
                yield epoch, j, self.batch(epoch, j)


class IterableBatches:
    """Batches from an iterable of ``(x, y)`` pairs; an epoch is one pass over it."""

    def __init__(self, source):
        self.source = source
        self.reiterable = iter(source) is not source
        self.per_epoch = len(source) if hasattr(source, "__len__") else None
        self.full_batch = False

    def start(self, done: int):
        epoch, seen = 0, 0
        while True:
            count = 0
            for j, pair in enumerate(self.source):
                count += 1
                if seen < done:
                    seen += 1
                    continue
                if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
                    raise ValueError("an iterable of batches must yield (x, y) pairs")
                yield epoch, j, (np.asarray(pair[0]), np.asarray(pair[1]))
            if not self.reiterable or count == 0:
                return
            epoch += 1


class DaskBatches(_Epochs):
    """Lazy batches of a ``dask.array`` ``x`` and ``y`` (``batch_size`` rows drawn as :class:`Batches`
    draws them, so a run sees the same minibatches as with NumPy arrays), or, with ``y=None``, a
    ``dask.bag`` of ``(x, y)`` shards used whole at every step. No data comes to this process: the
    steps' gradients run where the chunks are (persist data read from storage first). ``train``
    gives no ``layer_loss`` for them (it would gather the data set)."""
    full_batch = False

    def __init__(self, x, y, batch_size: int | None = None, shuffle: bool = True, seed: int = 0):
        self.x, self.y, self.shuffle, self.seed = x, y, shuffle, seed
        if y is None:
            if batch_size is not None:
                raise ValueError("a bag of (x, y) shards is used whole at every step: give no batch_size "
                                 "(or a dask array x and y for minibatches)")
            self.rows, self.per_epoch = None, 1
            return
        if np.ndim(x) < 2 or np.shape(x)[:1] != np.shape(y)[:1]:
            raise ValueError(f"x and y must be (samples, *grid) arrays with the same number of samples, "
                             f"got shapes {np.shape(x)} and {np.shape(y)}")
        self.rows = int(np.shape(x)[0])
        if batch_size is not None and (not isinstance(batch_size, int) or isinstance(batch_size, bool)
                                       or batch_size < 1):
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.batch_size = batch_size
        self.per_epoch = 1 if batch_size is None else -(-self.rows // batch_size)

    def batch(self, epoch: int, j: int):
        """Batch ``j`` of epoch ``epoch``: lazy ``(x, y)``."""
        if self.rows is None or self.batch_size is None or self.batch_size >= self.rows:
            return self.x, self.y
        rows = _rows(self.rows, self.batch_size, self.shuffle, self.seed, epoch, j)
        return self.x[rows], self.y[rows]


def as_batches(x, y, batch_size=None, shuffle=True, seed=0):
    """``Batches``/``IterableBatches``/``DaskBatches`` for what :func:`npdegen.train` was given as
    ``x`` and ``y``."""
    if isinstance(x, (Batches, IterableBatches, DaskBatches)):
        return x
    if foreign_handler(x) is not None or (y is not None and foreign_handler(y) is not None):
        return DaskBatches(x, y, batch_size, shuffle=shuffle, seed=seed)
    if y is None:
        if isinstance(x, (np.ndarray, str, os.PathLike)):
            raise ValueError("y is None: give targets, or x as an iterable of (x, y) batches")
        return IterableBatches(x)
    return Batches(x, y, batch_size, shuffle=shuffle, seed=seed)


def _cotangent(kind: str, out, y):
    """``(loss, ∂loss/∂z_L)`` of the loss ``kind`` for the output ``out`` and target ``y`` (2-D views)."""
    r = (out - y).reshape(out.shape[0], -1)
    if kind == "mean":
        return float(np.mean(np.square(r, dtype=np.float64))), (2.0 / r.size) * r
    norms_y = np.sqrt(np.sum(np.square(y.reshape(r.shape), dtype=np.float64), axis=1))
    if np.any(norms_y == 0):
        raise ValueError("loss='relative' needs targets with a non-zero norm in every sample")
    norms_r = np.sqrt(np.sum(np.square(r, dtype=np.float64), axis=1))
    safe = np.where(norms_r > 0, norms_r, 1.0)
    lam = r * (1.0 / (safe * norms_y * r.shape[0]))[:, None]
    return float(np.mean(norms_r / norms_y)), lam


def loss_and_grad(net, x, y, theta, kind: str = "sum"):
    """``(loss, grads)`` for the loss ``kind`` (see the module docstring)."""
    handler = foreign_handler(x, y)
    if handler is not None:                     # dask data: npdegen.distributed
        return handler(net, "loss_and_grad", x, y, theta, kind=kind)
    if kind == "sum":
        return net.loss_and_grad(x, y, theta)
    if kind not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {kind!r}")
    y2d, _ = net._states(y, "y")
    tape = net.forward(x, theta, keep=True)
    out = tape.output.reshape(y2d.shape)
    if out.shape != y2d.shape:
        raise ValueError(f"y has shape {np.shape(y)}, expected the shape of x, {np.shape(x)}")
    loss, lam = _cotangent(kind, out, y2d)
    _, grads = net.backward(tape, lam.reshape(np.shape(tape.output)).astype(net.dtype, copy=False))
    return loss, grads


def evaluate(net, x, y, theta, kind: str = "sum", batch_size: int | None = None) -> float:
    """The loss ``kind`` of ``theta`` on ``(x, y)`` (forward passes only, ``batch_size`` samples at a time)."""
    x, y = _open(x), _open(y)
    total, count = 0.0, 0
    samples = int(np.shape(x)[0])
    size = batch_size or samples
    for s in range(0, samples, size):
        xb, yb = np.asarray(x[s:s + size]), np.asarray(y[s:s + size])
        out = net.forward(xb, theta)
        if kind == "sum":
            total += 0.5 * float(np.sum(np.square(out - yb, dtype=np.float64)))
        else:
            loss, _ = _cotangent(kind, out.reshape(yb.shape), yb) if kind in LOSSES[1:] else (None, None)
            if loss is None:
                raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {kind!r}")
            total += loss * (yb.size if kind == "mean" else yb.shape[0])
        count += yb.size if kind == "mean" else yb.shape[0]
    return total if kind == "sum" else total / count
