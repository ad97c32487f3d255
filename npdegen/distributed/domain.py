r"""Domain decomposition: a network's forward pass and gradients on a field chunked in space.

``x`` is a :class:`dask.array.Array` shaped ``(batch, *grid)`` (or ``grid``) with chunks along the
grid axes (and any along the batch). A layer reads ``z[i + o]`` with ``|o_a| ≤ r_a`` per axis
(``r = net.halos``), so ``B`` layers make site ``i`` depend on the box ``|j_a − i_a| ≤ B·r_a`` only.
Each chunk ``c`` therefore runs the network's own kernel on its *extended* block

.. math::
    E_c = I_c ⊕ [−H_a, H_a], \qquad H_a = B\,r_a,

read from its neighbours (wrapped on periodic axes, cut at the edges of the others), compiled for the
extended shape with the network's boundary per axis: an edge of ``E_c`` that is an edge of the grid
gets exactly the global boundary rule there, and what the boundary rule at an inner edge of ``E_c``
gets wrong travels ``r_a`` sites per layer, so after ``B`` layers it has not left the halo and the
interior ``I_c`` is exact. (Filling the outer halo with zeros or a mirror instead would be exact for
one layer only: halo cells then evolve like sites.)

Write ``P_c`` for this gather (a 0/1 matrix: ``x_c^{ext} = P_c x``; on a periodic axis a site may
appear in it more than once) and ``g_c`` for the local network cut to ``I_c``. Then
``z_{t+B}|_{I_c} = g_c(P_c z_t, P_c θ)`` for every input, not only this one, so the Jacobians agree
too: with the loss cotangent ``λ = z_L − y`` put on ``I_c`` and zero in the halo, the local adjoint
gives ``(∂g_c/∂x^{ext})^T λ`` and

.. math::
    \frac{∂\,\mathrm{loss}}{∂x} = \sum_c P_c^T\,(∂g_c/∂x^{ext})^T λ_c, \qquad
    \frac{∂\,\mathrm{loss}}{∂θ} = \sum_c P_c^T\,(∂g_c/∂θ^{ext})^T λ_c .

``P_c^T`` (the *fold*) adds each halo value to the chunk that owns its site: a per-site
(heterogeneous or time-dependent) parameter at a halo site of ``c`` moves ``c``'s interior loss, so
keeping interiors only would drop part of its gradient. Homogeneous parameters (and a trained ω) are
summed over chunks, in a fixed order.

Rounds: ``block=B`` layers per exchange, ``⌈L/B⌉`` rounds. With several rounds the chunks' states
after every round are kept (as dask chunks: the trajectory stays distributed) and the backward pass
runs the rounds in reverse: each recomputes its ``B`` layers from its checkpoint and folds its input
cotangent ``P_c^T(·)`` into the next one. Measured (``benchmarks/RESULTS.md``): an exchange costs
about ten layer steps of its chunk (copies, checks, the recomputation), so one deep halo is fastest
until the halo is about half a chunk deep — 4× the sites of a 2-D chunk. The default ``block=None``
is one round (``B = L``) unless ``r_a·L`` exceeds half the smallest chunk of a split axis; then the
fewest equal rounds that keep ``r_a·B`` within it.

GPU workers: CuPy chunks and a ``backend="cupy"`` network (the rules of
:mod:`~npdegen.distributed.arrays`) run each block's CUDA kernels on its worker's GPU; the gather,
the fold and the sums allocate with the chunk's module, so the halo strips travel as CuPy arrays
(staged by the transport) and the outputs are dask arrays of CuPy chunks, the gradients CuPy arrays.

Modules: the block tasks (the gather and fold ``P_c``, ``P_c^T``, a round forward, its adjoint, the
gradient sums) are in :mod:`.tasks`, the halo plan in :mod:`.halo`; this one checks the input, builds
the graph of a call and sums its results.

Not decomposable: soft normalisation (``alpha > 0``) couples all sites through ``‖z‖``.
"""
from __future__ import annotations

import hashlib
import pickle
import uuid
from operator import getitem

import numpy as np

from .arrays import host_params, require
from .halo import HaloPlan
from .tasks import _Recipe, _Spec, _accumulate, _adjoint_task, _assemble, _forward_task, _take
from .tasks import _KEEP, _LOCAL  # noqa: F401 - the per-thread network cache, also reached as domain._LOCAL

__all__ = ["forward_domain", "loss_and_grad_domain", "vjp_domain"]


# ---------------------------------------------------------------------------------- checks
def _default_block(layers, halos, chunks):
    """The fewest equal rounds whose halo ``r_a·B`` is at most half the smallest chunk of every
    split axis (measured: one deep halo is fastest up to about that depth, benchmarks/RESULTS.md)."""
    limit = min((min(c) // 2 // h for c, h in zip(chunks, halos) if len(c) > 1 and h), default=layers)
    rounds = -(-layers // max(limit, 1))
    return -(-layers // rounds)


def _setup(net, x, theta, block, threads):
    import dask.array as da
    from ..grid import normalise_boundaries
    from ..runtime.network import Network
    if not isinstance(net, Network):
        raise TypeError(f"net must be an npdegen Network (NeuralPDE.compile), got {type(net).__name__}")
    if net.recipe is None:
        raise TypeError("this Network was not made by NeuralPDE.compile: its chunks cannot be compiled")
    if net.alpha:
        raise ValueError("soft normalisation (alpha > 0) couples every site through the norm ‖z‖: a network "
                         "with it cannot be split into spatial chunks; compile it without alpha")
    if not isinstance(x, da.Array):
        raise TypeError(f"x must be a dask array chunked along the grid axes, got {type(x).__name__}; "
                        "use Network.forward for NumPy arrays")
    require(net, x=x)                          # CuPy chunks for a CuPy network, NumPy for NumPy
    d, grid = len(net.grid), tuple(net.grid)
    if x.ndim not in (d, d + 1) or tuple(x.shape[x.ndim - d:]) != grid:
        raise ValueError(f"x must have shape (batch, {', '.join(map(str, grid))}) or {grid}, got {x.shape}")
    if x.dtype.kind not in "fiu":
        raise TypeError(f"x must be real numbers, got dtype {x.dtype}")
    if any(np.isnan(c) or c == 0 for cs in x.chunks for c in cs):
        raise ValueError(f"x has chunks of unknown size or empty chunks {x.chunks}: call "
                         "x.compute_chunk_sizes() or rechunk it")
    layers = net.layers
    block = _default_block(layers, net.halos, x.chunks[x.ndim - d:]) if block is None else block
    for v, what, top in ((block, "block (layers per halo exchange)", layers), (threads, "threads", 1 << 16)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or not 1 <= v <= top:
            raise ValueError(f"{what} must be an integer in [1, {top}], got {v!r}")
    theta, single = host_params(net.check_params(theta)), x.ndim == d      # the graph holds host arrays
    x = x[None] if single else x
    plan = HaloPlan(x.chunks[1:], [int(block) * h for h in net.halos], normalise_boundaries(net.options.boundary, d))
    for idx in plan.blocks:
        ext = plan.ext_shape(idx)
        if any(e <= 2 * h for e, h in zip(ext, net.halos)):
            raise ValueError(f"chunk {idx} extends to {ext} sites, not more than twice the stencil reach "
                             f"{tuple(net.halos)} on every axis: use larger chunks (x.rechunk)")
    rounds = [(t0, min(t0 + int(block), layers)) for t0 in range(0, layers, int(block))]
    digest = hashlib.sha256(pickle.dumps((net.recipe, int(threads)), protocol=pickle.HIGHEST_PROTOCOL)).hexdigest()
    return x, single, theta, plan, rounds, _Recipe(net.recipe[0], dict(net.recipe[1]), int(threads), digest)


def _like_x(net, x, single, other, what):
    """``other`` (dask or in memory, of the network's module) as a dask array chunked like the batched ``x``."""
    import dask.array as da
    require(net, **{what: other})
    other = other if isinstance(other, da.Array) else da.from_array(other if net.xp is not np else np.asarray(other),
                                                                   chunks=-1)
    if other.dtype.kind not in "fiu":
        raise TypeError(f"{what} must be real numbers, got dtype {other.dtype}")
    other = other[None] if single and other.ndim == x.ndim - 1 else other
    if other.shape != x.shape:
        raise ValueError(f"{what} has shape {other.shape[1:] if single else other.shape}, expected the shape "
                         f"of x, {x.shape[1:] if single else x.shape}")
    return other.rechunk(x.chunks)


# ---------------------------------------------------------------------------------- the graph
class _Run:
    """The task graph of one call in dask's low-level format (tasks are tuples; block keys
    ``(name, batch block, *grid block)``); chunks enter as the keys of ``x``."""

    def __init__(self, net, x, theta, plan, recipe):
        self.net, self.plan, self.dtype, self.theta = net, plan, net.dtype, theta
        self.token = uuid.uuid4().hex
        self.recipe = f"npdegen-recipe-{self.token}"
        self.graph, self.deps, self._params, self._taken = {self.recipe: recipe}, [], {}, {}
        self.batches = x.chunks[0]
        self.keys = [(b, *idx) for b in range(len(self.batches)) for idx in plan.blocks]
        self.x = self.of(x)

    def of(self, arr):
        """The block keys of a dask array chunked like x, by ``(batch block, *grid block)``."""
        self.deps.append(arr)
        return {key: (arr.name, *key) for key in self.keys}

    def name(self, what):
        return f"npdegen-{what}-{len(self.graph)}-{self.token}"

    def params(self, idx, t0, t1):
        """A block's extended parameters for layers [t0, t1) as ``[name, value]`` pairs (a list:
        the graph resolves the keys in it; a heterogeneous extension is one key for all rounds)."""
        out = []
        for k, v in self.theta.items():
            fam = self.net.families.get(k, "homogeneous")
            tag = (k, idx) if fam == "heterogeneous" else (k, idx, t0, t1)
            if fam != "homogeneous" and tag not in self._params:
                key = self._params[tag] = self.name(f"param-{k}")
                self.graph[key] = self.plan.extend(v if fam == "heterogeneous" else v[t0:t1], idx)
            out.append([k, v if fam == "homogeneous" else self._params[tag]])
        return out

    def _parts(self, blocks, key, entries):
        """Graph keys and index pairs of ``entries`` ``(source block, its slices, destination
        slices)``: a neighbour's strip is cut by a task of its own (only the strip travels)."""
        parts, pairs = [], []
        for src, s_sl, d_sl in entries:
            own, tag = src == key[1:], (blocks[(key[0], *src)], repr(s_sl))
            if not own and tag not in self._taken:
                self._taken[tag] = self.name("halo")
                self.graph[self._taken[tag]] = (_take, tag[0], s_sl)
            parts.append(blocks[key] if own else self._taken[tag])
            pairs.append((s_sl if own else None, d_sl))
        return parts, tuple(pairs)

    def shape(self, key, ext=False):
        grid = self.plan.ext_shape(key[1:]) if ext else tuple(self.plan.chunks[a][j] for a, j in enumerate(key[1:]))
        return (self.batches[key[0]], *grid)

    def task(self, fn, blocks, key, t0, t1, *extra):
        """``fn`` on the extended block ``key`` gathered from ``blocks`` (``P_c``)."""
        parts, pairs = self._parts(blocks, key, self.plan.pieces(key[1:]))
        spec = _Spec(t1 - t0, pairs, self.shape(key, ext=True), self.dtype, self.plan.inner(key[1:]))
        out = (self.name(fn.__name__.strip("_")), *key)
        self.graph[out] = (fn, self.recipe, spec, self.params(key[1:], t0, t1), parts, *extra)
        return out

    def fold(self, ext_blocks):
        """``P^T ext``: each block's own extended block plus its sites in the neighbours' halos."""
        name, out = self.name("fold"), {}
        for key in self.keys:
            parts, pairs = self._parts(ext_blocks, key, self.plan.folds[key[1:]])
            out[key] = (name, *key)
            self.graph[out[key]] = (_assemble, parts, _Spec(0, pairs, self.shape(key), self.dtype), True)
        return out

    def items(self, key, n):
        """Keys of the ``n`` items of the tuple that task ``key`` returns."""
        out = [self.name(f"item{i}") for i in range(n)]
        self.graph.update({o: (getitem, key, i) for i, o in enumerate(out)})
        return out

    def forward(self, rounds, blocks):
        """The blocks before the first round and after each of ``rounds``."""
        states = [blocks]
        for t0, t1 in rounds:
            states.append({key: self.task(_forward_task, states[-1], key, t0, t1) for key in self.keys})
        return states

    def collection(self, blocks=None, single=False, key=None):
        """A dask array of ``blocks`` (chunked like x), or the Delayed of graph key ``key``."""
        import dask.array as da
        from dask.delayed import Delayed
        from dask.highlevelgraph import HighLevelGraph
        name = key or self.name("out")
        for k in ([] if key else self.keys):
            self.graph[(name, *k)] = blocks[k]
        graph = HighLevelGraph.from_collections(name, dict(self.graph), dependencies=self.deps)
        if key:
            return Delayed(key, graph)
        meta = self.net.xp.empty((0,) * (1 + len(self.plan.chunks)), self.dtype)     # chunks of the net's module
        arr = da.Array(graph, name, ((*self.batches,), *self.plan.chunks), meta=meta)
        return arr[0] if single else arr


def _gradients(net, x, target, theta, kind, want_dx, block, threads):
    """``(loss, grads, dx)``: the rounds forward to their checkpoints, then backward (module docstring)."""
    import dask
    x, single, theta, plan, rounds, recipe = _setup(net, x, theta, block, threads)
    target = _like_x(net, x, single, target, "cotangent" if kind == "vjp" else "y")
    run = _Run(net, x, theta, plan, recipe)
    states, targets = run.forward(rounds[:-1], run.x), run.of(target)
    losses, grads, rows, dz = [], {idx: [] for idx in plan.blocks}, [], None
    for k in range(len(rounds) - 1, -1, -1):   # the last round (loss or given cotangent) first
        lam = targets if dz is None else run.fold(dz)
        dz, rows = {}, rows + [rounds[k]] * len(run.batches)
        for key in run.keys:
            last = k == len(rounds) - 1
            loss, g, dz[key] = run.items(run.task(_adjoint_task, states[k], key, *rounds[k], lam[key],
                                                  kind if last else "round"), 3)
            losses += [loss] if last else []
            grads[key[1:]].append(g)
    families = {k: net.families.get(k, "homogeneous") for k in theta}
    acc = []
    for idx in plan.blocks:
        acc.append(run.name("gradient"))
        run.graph[acc[-1]] = (_accumulate, families, net.layers, rows, grads[idx])
    summary = run.name("summary")
    run.graph[summary] = (tuple, [losses, acc])
    if want_dx:
        # one graph, not optimised per collection: dask would fuse a chunk's adjoint into each user
        dx, result = dask.persist(run.collection(run.fold(dz), single), run.collection(key=summary),
                                  optimize_graph=False)
        parts, acc = result.compute()
    else:
        dx, (parts, acc) = None, run.collection(key=summary).compute()
    loss = 0.0
    for part in parts:                         # fixed order: batch blocks, then grid blocks (C order)
        loss += part
    out = {k: net.xp.zeros(net.shapes[k], np.float64 if families[k] == "homogeneous" else net.dtype) for k in theta}
    for idx, a in zip(plan.blocks, acc):       # fixed order; per-site gradients folded to their owners
        for k, g in out.items():
            if families[k] == "homogeneous":
                g += a[k]
            else:
                plan.fold_into(g, a[k], idx)
    if kind == "mean":
        count = float(np.prod(x.shape))
        loss, out = loss / count, {k: (g / count).astype(g.dtype, copy=False) for k, g in out.items()}
        dx = None if dx is None else dx / count
    if not (np.isfinite(loss) and all(bool(net.xp.all(net.xp.isfinite(g))) for g in out.values())):
        from ..runtime.network import NonFiniteError
        raise NonFiniteError("the loss or gradients of the chunked field are not finite: the scheme is unstable "
                             "for these parameters or the input is too large (npdegen.stability)")
    return loss, {k: g.astype(net.dtype, copy=False) for k, g in out.items()}, dx


# ---------------------------------------------------------------------------------- public
def forward_domain(net, x, theta, *, block: int | None = None, threads: int = 1):
    """``z_L`` for a dask array ``x`` chunked in space: a lazy dask array chunked like ``x``.

    Each chunk runs ``net``'s kernel on itself plus a halo of ``block·r`` sites per axis (``block``
    layers per halo exchange; ``None``: one exchange unless its halo would pass half a chunk, see
    the module docstring) with the network's boundary at the grid's edges; equal to
    ``net.forward(x.compute(), theta)``. ``threads``: kernel threads per chunk (dask runs the chunks
    in parallel).
    """
    x, single, theta, plan, rounds, recipe = _setup(net, x, theta, block, threads)
    run = _Run(net, x, theta, plan, recipe)
    return run.collection(run.forward(rounds, run.x)[-1], single)


def loss_and_grad_domain(net, x, y, theta, input_grad: bool = False, *, kind: str = "sum",
                         block: int | None = None, threads: int = 1):
    """The loss and its gradient for ``x`` chunked in space: ``kind="sum"``, ``0.5 Σ (z_L − y)²``,
    or ``"mean"``, ``Σ (z_L − y)² / count`` over values. Returns ``(loss, grads)``, grads arrays of
    the chunks' module (NumPy or CuPy) shaped like ``theta`` plus ``"x"`` if ``input_grad``: a dask
    array chunked like ``x``
    (computed and held: persisted). ``y``: dask or in memory, shaped like ``x``. Equal to
    ``net.loss_and_grad(x.compute(), y, theta)`` up to rounding (module docstring).
    """
    if kind not in ("sum", "mean"):
        raise ValueError(f"kind must be 'sum' or 'mean' for a field chunked in space, got {kind!r} ('relative' "
                         "needs every sample's norms before the adjoint: use one chunk per grid axis)")
    loss, grads, dx = _gradients(net, x, y, theta, kind, input_grad, block, threads)
    if input_grad:
        grads["x"] = dx
    return loss, grads


def vjp_domain(net, x, theta, cotangent, *, block: int | None = None, threads: int = 1):
    """``(dx, grads)`` with ``dx = Jᵀ·cotangent`` (a persisted dask array chunked like ``x``) and
    ``grads[k] = ⟨cotangent, ∂z_L/∂θ_k⟩`` (of the chunks' module), for ``x`` chunked in space; as ``net.vjp``."""
    _, grads, dx = _gradients(net, x, cotangent, theta, "vjp", True, block, threads)
    return dx, grads
