"""Data-parallel forward and gradients on Dask: the batch split across workers, one sum in a fixed order.

For a batch ``x`` (a ``dask.array`` chunked along its first axis) the loss and its gradient are
sums over samples,

.. math::

    ℓ(θ) = \\sum_s ℓ_s(θ), \\qquad ∇_θ ℓ = \\sum_s ∇_θ ℓ_s,

and a worker can compute the part of both sums for the samples it holds with its own kernels. What
must not depend on the workers is the *order* of the floating-point additions.

Method (what is computed where)
-------------------------------
* **Canonical blocks.** The samples are cut into blocks of ``block`` samples (default 8), block
  ``b`` being the samples ``[b·B, (b+1)·B)``: fixed by the sample index alone. A block's
  contribution ``(ℓ_b, ∇ℓ_b, count)`` is one kernel call on exactly those samples by a serial copy of
  the network (:mod:`~npdegen.distributed.shipping`): it depends on the block's samples and nothing
  else. Chunks of ``x`` are first moved onto block boundaries (``rechunk``: each chunk boundary
  rounded to the nearest multiple of ``B``, so at most ``B/2`` samples move per boundary; nothing
  moves when the chunks are multiples of ``B`` already, e.g. ``x.rechunk({0: 64})``).
* **A fixed tree.** The block contributions are summed by the dyadic tree over blocks
  (:mod:`~npdegen.distributed.tree`): each chunk's task evaluates the nodes inside its block range,
  a pairwise tree of merge tasks evaluates the rest. Every node is the same addition of the same
  operands whoever computes it, so loss and gradients are **bit-identical for any number of workers,
  any scheduler and any chunking** (for a given ``block``). They equal the single-process
  ``net.loss_and_grad`` up to rounding (the batch summed in another order, ~1e-16 relative).

Why blocks and not per-sample gradients: per-sample gradients would also fix the order, but each
sample's gradient is a full parameter set (``4·n`` values for the heterogeneous ADR layer, ``L``
times more for time-dependent parameters), so a chunk would ship ``samples × |θ|`` values
(32 MB at batch 256, n 4096 in float64) and run one kernel call per sample. Measured on the ADR
layer at 256 × 4096 × 32, float64, one thread (benchmarks/RESULTS.md, a loaded machine): blocks of
8 cost +1 % over one call for the whole batch with the numba backend (blocks of 2: +6 %) and are
*faster* with the NumPy one (−14 %: cache-sized batches); a chunk ships at most ``2·log₂`` of its
block count parameter sets. Larger blocks fix fewer chunk boundaries; 8 keeps both costs small.

Losses (``kind``, as :mod:`npdegen.runtime.data`): ``"sum"`` ``0.5 Σ (z_L − y)²``; ``"mean"``
``Σ (z_L − y)² / count`` over values; ``"relative"`` ``Σ_s ‖r_s‖/‖y_s‖ / count`` over samples. A
block adds its unnormalised sums and their gradient (cotangent ``2r``, resp.
``r_s / (‖r_s‖·‖y_s‖)``); the division by the total count comes once, after the tree.

Shards: for a ``dask.bag`` (or a list) of ``(x, y)`` pairs, the tree's leaves are the shards in
order and a shard's value is its own block tree: bit-identical for any number of workers and any
partitioning of the bag, equal to the concatenated batch up to rounding.

The input gradient (``input_grad``, :func:`vjp`) has the size of ``x`` and is gathered to the
caller as one array; :func:`forward` stays lazy (a ``dask.array``). GPU workers: with CuPy chunks
(``x._meta`` a ``cupy.ndarray``) and a ``backend="cupy"`` network every block runs the CUDA kernels
on its worker's GPU; the tree adds CuPy arrays (the same IEEE additions in the same order, so the
bit-identity holds there too), the gradients and input gradient come back as CuPy arrays, the loss
as a float (:mod:`~npdegen.distributed.arrays`: the rules, and the error for a mismatch). Schedulers: ``client`` a
``distributed.Client``; default the current client if there is one, else Dask's threaded scheduler
(a scheduler name such as ``"sync"`` is passed on). Persist data that is read from storage
(``x = x.persist()``) before training on it, or every step reads it again.
"""
from __future__ import annotations

import numbers

import dask
import dask.array as da
import dask.bag as db
import numpy as np

from ..runtime.network import NonFiniteError
from .arrays import array_module, host_params, module_name, require
from .shipping import ship
from .tree import Tree

__all__ = ["loss_and_grad", "vjp", "forward", "DEFAULT_BLOCK", "KINDS"]

DEFAULT_BLOCK = 8
KINDS = ("sum", "mean", "relative")


# ---------------------------------------------------------------------------------------- worker side
def _add(a, b):
    """Sum of two contributions ``(loss, grads, count)``, left operand first."""
    return a[0] + b[0], {k: a[1][k] + b[1][k] for k in a[1]}, a[2] + b[2]


def _leaf(net, x, y, theta, kind, want_dx):
    """One block's ``(loss part, float64 grads, count)`` and its input gradient (or None), in the
    network's array module (``net.xp``, that of the chunk: :mod:`~npdegen.distributed.arrays`)."""
    xp = net.xp
    if kind == "vjp":                                     # y is the cotangent
        dx, grads = net.vjp(x, theta, y)
        loss, count = 0.0, len(x)
    elif kind == "sum":
        loss, grads = net.loss_and_grad(x, y, theta, input_grad=want_dx)
        dx, count = grads.pop("x", None), len(x)
    else:
        tape = net.forward(x, theta, keep=True)
        y2d, _ = net._states(y, "y")
        r = (tape.output.reshape(y2d.shape) - y2d).reshape(len(y2d), -1)
        if kind == "mean":
            loss, lam, count = float(xp.sum(xp.square(r, dtype=np.float64))), 2.0 * r, r.size
        else:
            norms_y = xp.sqrt(xp.sum(xp.square(y2d.reshape(r.shape), dtype=np.float64), axis=1))
            if bool(xp.any(norms_y == 0)):
                raise ValueError("loss='relative' needs targets with a non-zero norm in every sample")
            norms_r = xp.sqrt(xp.sum(xp.square(r, dtype=np.float64), axis=1))
            lam = r * (1.0 / (xp.where(norms_r > 0, norms_r, 1.0) * norms_y))[:, None]
            loss, count = float(xp.sum(norms_r / norms_y)), r.shape[0]
        dx, grads = net.backward(tape, lam.reshape(tape.output.shape).astype(net.dtype, copy=False))
    grads = {k: xp.asarray(v, dtype=np.float64) for k, v in grads.items()}
    return (float(loss), grads, count), (xp.array(dx) if want_dx else None)


def _chunk(shipped, theta, x, y, first, leaves, block, kind, want_dx):
    """The tree piece of one chunk (its blocks ``first, first + 1, …``) and its input gradient."""
    net, tree, piece, dxs = shipped.network(), Tree(leaves, _add), {}, []
    for i, s in enumerate(range(0, len(x), block)):
        value, dx = _leaf(net, x[s:s + block], y[s:s + block], theta, kind, want_dx)
        tree.insert(piece, (0, first + i), value)       # streaming: O(log) values held
        dxs.append(dx)
    return piece, (net.xp.concatenate(dxs) if want_dx else None)


def _shards(shipped, theta, part, block, kind):
    """The value of every ``(x, y)`` shard of a bag partition: each its own block tree."""
    net, roots = shipped.network(), []
    for pair in part:
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise ValueError(f"a bag of shards must hold (x, y) pairs, got {type(pair).__name__}")
        require(net, **{"a shard's x": pair[0], "a shard's y": pair[1]})   # before _states would convert
        xs, _ = net._states(pair[0])
        ys, _ = net._states(pair[1], "y")
        if ys.shape != xs.shape:
            raise ValueError(f"a shard's y has shape {np.shape(pair[1])}, its x {np.shape(pair[0])}")
        tree, piece = Tree(-(-len(xs) // block), _add), {}
        for i, s in enumerate(range(0, len(xs), block)):
            tree.insert(piece, (0, i), _leaf(net, xs[s:s + block], ys[s:s + block], theta, kind, False)[0])
        roots.append(tree.root(piece))
    return roots


def _place(roots, index, counts):
    """The tree piece of partition ``index``'s shard values (its first shard index from ``counts``)."""
    if sum(counts) == 0:
        raise ValueError("the bag holds no (x, y) shards")
    return Tree(sum(counts), _add).leaf_piece(sum(counts[:index]), roots)


def _merge(leaves, *pieces):
    return Tree(leaves, _add).merge(*pieces)


def _root(leaves, piece):
    return Tree(leaves, _add).root(piece)


def _forward_block(x, shipped, theta, trajectory):
    net = shipped.network()
    require(net, x=x)                                   # a bag's items are seen here first
    return net.forward(x, theta, trajectory=trajectory)


# ---------------------------------------------------------------------------------------- client side
def _scheduler(client):
    """What ``dask.compute`` runs on: ``client``, else the current client, else the threaded scheduler."""
    if client is not None:
        if not (isinstance(client, str) or callable(getattr(client, "get", None))):
            raise TypeError(f"client must be a distributed.Client or a scheduler name, got {type(client).__name__}")
        return client
    try:
        from distributed import default_client
        return default_client()
    except (ImportError, ValueError):
        return "threads"


def _check_block(block):
    if not isinstance(block, numbers.Integral) or isinstance(block, bool) or block < 1:
        raise ValueError(f"block must be a positive integer (samples per block), got {block!r}")
    return int(block)


def aligned(chunks, block: int) -> tuple:
    """Chunk sizes along the batch axis with every boundary moved to the nearest multiple of ``block``."""
    bounds = np.cumsum((0, *chunks))
    total = int(bounds[-1])
    cuts = {0, total} | {min(total, (int(b) + block // 2) // block * block) for b in bounds[1:-1]}
    return tuple(int(c) for c in np.diff(sorted(cuts)))


def batch_arrays(net, x, *others, names=("y",), block=None):
    """``x`` (a dask array, ``(batch, *grid)`` or ``grid``) and ``others`` (dask or in memory, the shape
    of ``x``) as ``(batch, *grid)`` dask arrays with one chunk along every grid axis and the same
    batch chunks (moved to multiples of ``block`` when given); and whether ``x`` was one sample."""
    if not isinstance(x, da.Array):
        raise TypeError(f"x must be a dask array, got {type(x).__name__}")
    d, grid = len(net.grid), tuple(net.grid)
    if x.dtype.kind not in "fiu":
        raise TypeError(f"x must be real numbers, got dtype {x.dtype}")
    if x.ndim not in (d, d + 1) or tuple(x.shape[x.ndim - d:]) != grid:
        raise ValueError(f"x must have shape (batch, {', '.join(map(str, grid))}) or {grid}, got {x.shape}")
    require(net, x=x, **dict(zip(names, others)))        # CuPy chunks for a CuPy network, NumPy for NumPy
    if any(np.isnan(c) for c in x.chunks[0]):
        raise ValueError("x has unknown chunk sizes: call x.compute_chunk_sizes() first")
    single = x.ndim == d
    shape = x.shape
    x = x[None] if single else x
    if x.shape[0] == 0:
        raise ValueError(f"x has no samples (shape {shape}): give at least one")
    batch = aligned(x.chunks[0], block) if block else x.chunks[0]
    x = x.rechunk((batch,) + tuple((n,) for n in grid))
    out = [x]
    for o, name in zip(others, names):
        if tuple(np.shape(o)) != shape:
            raise ValueError(f"{name} has shape {tuple(np.shape(o))}, expected the shape of x, {shape}")
        if not isinstance(o, da.Array):                  # in memory: one chunk of its own module
            o = da.from_array(o if module_name(o) == "cupy" else np.asarray(o), chunks=-1)
        if o.dtype.kind not in "fiu":
            raise TypeError(f"{name} must be real numbers, got dtype {o.dtype}")
        out.append((o[None] if single else o).rechunk(x.chunks))
    return out, single


def _tree_tasks(pieces, leaves):
    """A pairwise tree of merge tasks over the pieces (in order) and the root task."""
    while len(pieces) > 1:
        pieces = [dask.delayed(_merge, pure=True)(leaves, *pieces[i:i + 2]) for i in range(0, len(pieces), 2)]
    return dask.delayed(_root, pure=True)(leaves, pieces[0])


def _finish(net, kind, value, what):
    """Loss and gradients in the network's dtype, divided by the count for the averaged losses."""
    loss, grads, count = value
    scale = 1.0 if kind in ("sum", "vjp") else 1.0 / count
    if scale != 1.0:
        loss, grads = loss * scale, {k: g * scale for k, g in grads.items()}
    grads = {k: array_module(g).asarray(g, dtype=net.dtype) for k, g in grads.items()}   # 0-d arrays stay arrays
    if not (np.isfinite(loss) and all(bool(array_module(g).all(array_module(g).isfinite(g))) for g in grads.values())):
        raise NonFiniteError(f"{what}: the sum of the shards' gradients is not finite")
    return loss, grads


def _blocked(net, x, y, theta, kind, want_dx, client, block):
    """``(loss, grads, dx)`` of the batch ``x`` (dask arrays, aligned) by blocks and the fixed tree."""
    sizes = x.chunks[0]
    starts = np.cumsum((0, *sizes[:-1]))
    leaves = -(-int(sum(sizes)) // block)
    shipped, th = dask.delayed(ship(net), pure=True), dask.delayed(host_params(theta), pure=True)
    tasks = [dask.delayed(_chunk, nout=2, pure=True)(shipped, th, xc, yc, int(s) // block, leaves, block, kind,
                                                     want_dx)
             for s, xc, yc in zip(starts, x.to_delayed().ravel(), y.to_delayed().ravel())]
    root = _tree_tasks([t[0] for t in tasks], leaves)
    value, dxs = dask.compute(root, [t[1] for t in tasks] if want_dx else [], scheduler=_scheduler(client))
    loss, grads = _finish(net, kind, value, "loss_and_grad" if kind != "vjp" else "vjp")
    dx = array_module(dxs[0]).concatenate(dxs).astype(net.dtype, copy=False) if want_dx else None
    return loss, grads, dx


def loss_and_grad(net, x, y, theta, *, kind: str = "sum", input_grad: bool = False, client=None,
                  block: int = DEFAULT_BLOCK):
    """``(loss, grads)`` of the loss ``kind`` over a dask batch, computed on the workers (see the
    module docstring). ``x``: a dask array (batch along axis 0), or, with ``y=None``, a ``dask.bag``
    or a list of ``(x, y)`` shards. ``input_grad`` adds ``grads["x"]`` (arrays only)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    block = _check_block(block)
    theta = net.check_params(theta)
    if y is None and not isinstance(x, da.Array):
        if input_grad:
            raise ValueError("input_grad needs x as a dask array (one input gradient per sample)")
        return _shard_loss_and_grad(net, x, theta, kind, client, block)
    if isinstance(x, db.Bag):
        raise ValueError("a bag of (x, y) shards goes with y=None")
    (x2, y2), single = batch_arrays(net, x, y, block=block)
    loss, grads, dx = _blocked(net, x2, y2, theta, kind, input_grad, client, block)
    if input_grad:
        grads["x"] = dx[0] if single else dx
    return loss, grads


def vjp(net, x, theta, cotangent, *, client=None, block: int = DEFAULT_BLOCK):
    """``(dx, grads)`` as :meth:`Network.vjp <npdegen.runtime.network.Network.vjp>` for a dask batch:
    ``dx = Jᵀ·cotangent`` (gathered: one array of the chunks' module) and ``grads`` summed by the fixed tree."""
    block = _check_block(block)
    theta = net.check_params(theta)
    (x2, c2), single = batch_arrays(net, x, cotangent, names=("cotangent",), block=block)
    _, grads, dx = _blocked(net, x2, c2, theta, "vjp", True, client, block)
    return (dx[0] if single else dx), grads


def _shard_loss_and_grad(net, shards, theta, kind, client, block):
    if isinstance(shards, db.Bag):
        parts = shards.to_delayed()
    elif isinstance(shards, (str, bytes, dict, np.ndarray)) or not hasattr(shards, "__iter__"):
        raise TypeError(f"y is None: x must be a dask.bag or a list of (x, y) shards, got {type(shards).__name__}")
    else:
        parts = [[pair] for pair in shards]
    if not parts:
        raise ValueError("no (x, y) shards given")
    shipped, th = dask.delayed(ship(net), pure=True), dask.delayed(host_params(theta), pure=True)
    roots = [dask.delayed(_shards, pure=True)(shipped, th, part, block, kind) for part in parts]
    counts = [dask.delayed(len, pure=True)(r) for r in roots]
    leaves = dask.delayed(sum, pure=True)(counts)
    pieces = [dask.delayed(_place, pure=True)(r, i, counts) for i, r in enumerate(roots)]
    (value,) = dask.compute(_tree_tasks(pieces, leaves), scheduler=_scheduler(client))
    return _finish(net, kind, value, "loss_and_grad")


def forward(net, x, theta, trajectory: bool = False, keep: bool = False):
    """z_L of a dask batch (all of z_0 … z_L with ``trajectory``, shape ``(L + 1, batch, *grid)``),
    lazily: a dask array chunked like ``x`` along the batch; for a ``dask.bag`` of inputs, a bag."""
    if keep:
        raise ValueError("keep=True (a tape) needs the data in this process; for gradients of a dask batch "
                         "call loss_and_grad or vjp")
    theta = net.check_params(theta)
    shipped, th = dask.delayed(ship(net), pure=True), dask.delayed(host_params(theta), pure=True)
    if isinstance(x, db.Bag):
        return x.map(_forward_block, shipped, th, trajectory)
    (x2,), single = batch_arrays(net, x)
    xp = array_module(x2)                               # the result's chunks: the module of x's chunks
    if trajectory:
        out = x2.map_blocks(_forward_block, shipped, th, True, new_axis=0, dtype=net.dtype,
                            chunks=((net.layers + 1,), *x2.chunks), meta=xp.empty((0,) * (x2.ndim + 1), net.dtype))
        return out[:, 0] if single else out
    out = x2.map_blocks(_forward_block, shipped, th, False, dtype=net.dtype, meta=xp.empty((0,) * x2.ndim, net.dtype))
    return out[0] if single else out
