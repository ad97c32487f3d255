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

Rounds: ``block=B`` layers per exchange (``L/B`` rounds; ``B = L``, the default, is one deep halo).
With ``B < L`` the chunks' states after every round are kept (as dask chunks: the trajectory stays
distributed) and the backward pass runs the rounds in reverse: each recomputes its ``B`` layers from
its checkpoint and folds its input cotangent ``P_c^T(·)`` into the next one. Measured on a 2-core
machine (``benchmarks/RESULTS.md``): one deep halo is fastest whenever ``2 B r_a`` is small against
the chunk size, the usual case (a layer step costs about as much as the copies of one exchange).

Not decomposable: soft normalisation (``alpha > 0``) couples all sites through ``‖z‖``.
"""
from __future__ import annotations

import threading
import uuid
from bisect import bisect_right
from dataclasses import dataclass
from itertools import product
from operator import getitem

import numpy as np

__all__ = ["forward_domain", "loss_and_grad_domain"]

_COMPILE = threading.Lock()      # NeuralPDE.compile loads shared module caches


# ---------------------------------------------------------------------------------- the halo plan
class _Plan:
    """Chunk layout of the grid axes: per block, where its extended block comes from.

    ``pieces(idx)`` lists ``(source block, source slices, destination slices)`` that tile the
    extended block of grid block ``idx`` (the gather ``P_c``); :meth:`folds` is its transpose.
    """

    def __init__(self, chunks, depth, boundaries):
        self.chunks, self.depth = tuple(map(tuple, chunks)), tuple(depth)
        self.periodic = tuple(b == "periodic" for b in boundaries)
        self.starts = [np.concatenate([[0], np.cumsum(c)]).tolist() for c in self.chunks]
        self.n = [s[-1] for s in self.starts]
        self.axes = [[self._axis_block(a, j) for j in range(len(c))] for a, c in enumerate(self.chunks)]
        self.blocks = list(product(*(range(len(c)) for c in self.chunks)))
        self._folds = {idx: [] for idx in self.blocks}
        for src in self.blocks:
            for owner, s_sl, d_sl in self.pieces(src):
                self._folds[owner].append((src, d_sl, s_sl))

    def _axis_block(self, a, j):
        """``(lo, hi, pieces)`` of block ``j`` on axis ``a``: halo widths and the runs it reads,
        ``(source block, source start, source stop, destination start)``."""
        starts, n, depth = self.starts[a], self.n[a], self.depth[a]
        s, e = starts[j], starts[j + 1]
        if len(self.chunks[a]) == 1 or depth == 0:      # the whole axis: the local boundary is exact
            lo = hi = 0
        elif self.periodic[a]:
            lo = hi = depth
        else:                                           # cut at the grid's edges
            lo, hi = min(depth, s), min(depth, n - e)
        pieces, p = [], s - lo
        while p < e + hi:
            g = p % n
            b = bisect_right(starts, g) - 1
            take = min(starts[b + 1] - g, e + hi - p)
            pieces.append((b, g - starts[b], g - starts[b] + take, p - s + lo))
            p += take
        return lo, hi, pieces

    def ext_shape(self, idx) -> tuple:
        return tuple(self.chunks[a][j] + lo + hi for a, j in enumerate(idx)
                     for lo, hi, _ in [self.axes[a][j]])

    def inner(self, idx) -> tuple:
        """Slices of the block's own sites inside its extended block."""
        return tuple(slice(self.axes[a][j][0], self.axes[a][j][0] + self.chunks[a][j]) for a, j in enumerate(idx))

    def pieces(self, idx):
        for combo in product(*(self.axes[a][j][2] for a, j in enumerate(idx))):
            yield (tuple(c[0] for c in combo), tuple(slice(c[1], c[2]) for c in combo),
                   tuple(slice(c[3], c[3] + c[2] - c[1]) for c in combo))

    def folds(self, idx):
        """``(extended block, its slices, slices of block idx)``: every place block ``idx`` was read."""
        return self._folds[idx]

    def _global(self, idx):
        for owner, s_sl, d_sl in self.pieces(idx):
            yield tuple(slice(self.starts[a][b] + s.start, self.starts[a][b] + s.stop)
                        for a, (b, s) in enumerate(zip(owner, s_sl))), d_sl

    def extend(self, arr, idx):
        """``P_c arr`` for a NumPy array whose trailing axes are the grid."""
        out = np.empty(arr.shape[:arr.ndim - len(idx)] + self.ext_shape(idx), arr.dtype)
        for g_sl, d_sl in self._global(idx):
            out[(Ellipsis, *d_sl)] = arr[(Ellipsis, *g_sl)]
        return out

    def fold_into(self, acc, ext, idx):
        """``acc += P_c^T ext`` (the adjoint of :meth:`extend`)."""
        for g_sl, d_sl in self._global(idx):
            acc[(Ellipsis, *g_sl)] += ext[(Ellipsis, *d_sl)]


# ---------------------------------------------------------------------------------- tasks
@dataclass(frozen=True)
class _Recipe:
    """What a task needs to compile the network for its extended block (one graph key, shipped
    once per worker; a worker compiles from its own kernel cache)."""
    layer: object
    options: dict
    threads: int

    def net(self, shape, layers):
        n = shape[0] if len(shape) == 1 else tuple(shape)
        with _COMPILE:
            return self.layer.compile(**{**self.options, "n": n, "layers": layers, "threads": self.threads})


@dataclass(frozen=True)
class _Spec:
    """Static arguments of a block task (an opaque literal in the graph): the layers it runs, where
    its pieces go (``pairs``: ``(source slices or None for a whole part, destination slices)``),
    its shape (batch first), the dtype and its own sites in the extended block (``inner``)."""
    layers: int
    pairs: tuple
    shape: tuple
    dtype: object
    inner: tuple = ()


def _take(block, index):
    return block[(slice(None), *index)]


def _assemble(parts, spec, add=False):
    out = (np.zeros if add else np.empty)(spec.shape, spec.dtype)
    for part, (src, dst) in zip(parts, spec.pairs):
        part = part if src is None else part[(slice(None), *src)]
        if add:
            out[(slice(None), *dst)] += part
        else:
            out[(slice(None), *dst)] = part
    return out


def _fold_task(spec, parts):
    return _assemble(parts, spec, add=True)


def _forward_task(recipe, spec, theta, parts):
    theta = dict(theta)
    local = recipe.net(spec.shape[1:], spec.layers)
    z = local.forward(_assemble(parts, spec), theta)
    return np.ascontiguousarray(z[(slice(None), *spec.inner)])


def _loss_task(recipe, spec, theta, parts, y):
    """The last round: forward (kept on a tape), the chunk's loss, and the adjoint of its interior."""
    theta = dict(theta)
    local = recipe.net(spec.shape[1:], spec.layers)
    if not np.all(np.isfinite(y)):
        raise ValueError("y contains NaN or inf")
    tape = local.forward(_assemble(parts, spec), theta, keep=True)
    lam = np.zeros(spec.shape, tape.output.dtype)
    lam[(slice(None), *spec.inner)] = tape.output[(slice(None), *spec.inner)] - y
    flat = lam.reshape(-1)
    loss = 0.5 * float(np.einsum("i,i->", flat, flat, dtype=np.float64))
    dx, grads = local.backward(tape, lam)
    return loss, grads, dx


def _vjp_task(recipe, spec, theta, parts, lam_inner):
    """An earlier round: recompute its layers from the checkpoint and run their adjoint."""
    theta = dict(theta)
    local = recipe.net(spec.shape[1:], spec.layers)
    lam = np.zeros(spec.shape, spec.dtype)
    lam[(slice(None), *spec.inner)] = lam_inner
    dx, grads = local.vjp(_assemble(parts, spec), theta, lam)
    return None, grads, dx


def _accumulate(families, layers, rows, grads):
    """Sum one grid block's extended gradients over batch blocks and rounds (fixed order, float64);
    time-dependent rows go to their layers ``rows[i] = (t0, t1)``."""
    acc = {}
    for (t0, t1), entry in zip(rows, grads):
        for k, g in entry.items():
            g = np.asarray(g, np.float64)
            if families.get(k) == "time-dependent":
                if k not in acc:
                    acc[k] = np.zeros((layers, *g.shape[1:]))
                acc[k][t0:t1] += g
            else:
                acc[k] = acc[k] + g if k in acc else g.copy()
    return acc


def _summary(losses, accs):
    return losses, accs


# ---------------------------------------------------------------------------------- checks
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
    if net.xp is not np:
        raise ValueError(f"domain decomposition runs NumPy chunks (numpy and numba backends), "
                         f"not the {net.backend.name!r} backend")
    if not isinstance(x, da.Array):
        raise TypeError(f"x must be a dask array chunked along the grid axes, got {type(x).__name__}; "
                        "use Network.forward for NumPy arrays")
    d, grid = len(net.grid), tuple(net.grid)
    if x.ndim not in (d, d + 1) or tuple(x.shape[x.ndim - d:]) != grid:
        raise ValueError(f"x must have shape (batch, {', '.join(map(str, grid))}) or {grid}, got {x.shape}")
    if x.dtype.kind not in "fiu":
        raise TypeError(f"x must be real numbers, got dtype {x.dtype}")
    if any(np.isnan(c) for cs in x.chunks for c in cs):
        raise ValueError("x has chunks of unknown size: call x.compute_chunk_sizes() first")
    single = x.ndim == d
    if single:
        x = x[None]
    if any(c == 0 for cs in x.chunks for c in cs):
        raise ValueError(f"x has empty chunks {x.chunks}: rechunk it")
    layers = net.layers
    if block is None:
        block = layers
    if not isinstance(block, (int, np.integer)) or isinstance(block, bool) or not 1 <= block <= layers:
        raise ValueError(f"block must be None or an integer in [1, {layers}] (layers per halo exchange), "
                         f"got {block!r}")
    if not isinstance(threads, (int, np.integer)) or isinstance(threads, bool) or threads < 1:
        raise ValueError(f"threads must be a positive integer (kernel threads per chunk), got {threads!r}")
    theta = net.check_params(theta)
    boundaries = normalise_boundaries(net.options.boundary, d)
    plan = _Plan(x.chunks[1:], [int(block) * h for h in net.halos], boundaries)
    for idx in plan.blocks:
        ext = plan.ext_shape(idx)
        if any(e <= 2 * h for e, h in zip(ext, net.halos)):
            raise ValueError(f"chunk {idx} extends to {ext} sites, not more than twice the stencil reach "
                             f"{tuple(net.halos)} on every axis: use larger chunks (x.rechunk)")
    rounds = [(t0, min(t0 + int(block), layers)) for t0 in range(0, layers, int(block))]
    recipe = _Recipe(net.recipe[0], dict(net.recipe[1]), int(threads))
    return x, single, theta, plan, rounds, recipe


class _Run:
    """The task graph of one call (dask's low-level graph format: tasks are tuples, keys
    ``(name, batch block, *grid block)``); chunks enter as the keys of ``x``."""

    def __init__(self, net, x, theta, plan, recipe):
        self.net, self.plan, self.dtype, self.theta = net, plan, net.dtype, theta
        self.token = uuid.uuid4().hex
        self.recipe = f"npdegen-recipe-{self.token}"
        self.graph, self.deps, self._params, self._taken = {self.recipe: recipe}, [x], {}, {}
        self.batches = x.chunks[0]
        self.keys = [(b, *idx) for b in range(len(self.batches)) for idx in plan.blocks]
        self.x = self.of(x)

    def of(self, arr):
        """The block keys of a dask array chunked like x, by ``(batch block, *grid block)``."""
        if arr is not self.deps[0]:
            self.deps.append(arr)
        return {key: (arr.name, *key) for key in self.keys}

    def name(self, what):
        return f"npdegen-{what}-{len(self.graph)}-{self.token}"

    def params(self, idx, t0, t1):
        """The parameters of a grid block's extended block for layers [t0, t1) as ``[name, value]``
        pairs (a list, so that the graph resolves the per-site values, which are keys: a
        heterogeneous parameter's extension is made once and shared by every round)."""
        out = {}
        for k, v in self.theta.items():
            fam = self.net.families.get(k, "homogeneous")
            if fam == "homogeneous":
                out[k] = v
                continue
            tag = (k, idx) if fam == "heterogeneous" else (k, idx, t0, t1)
            if tag not in self._params:
                key = self._params[tag] = self.name(f"param-{k}")
                self.graph[key] = self.plan.extend(v if fam == "heterogeneous" else v[t0:t1], idx)
            out[k] = self._params[tag]
        return [[k, v] for k, v in out.items()]

    def take(self, block_key, index):
        """A halo strip of a block, cut by a task of its own (only the strip travels)."""
        tag = (block_key, repr(index))
        if tag not in self._taken:
            key = self._taken[tag] = self.name("halo")
            self.graph[key] = (_take, block_key, index)
        return self._taken[tag]

    def shape(self, key, ext=False):
        grid = self.plan.ext_shape(key[1:]) if ext else tuple(self.plan.chunks[a][j] for a, j in enumerate(key[1:]))
        return (self.batches[key[0]], *grid)

    def task(self, fn, blocks, key, t0, t1, *extra):
        """``fn`` on the extended block ``key`` gathered from ``blocks`` (the gather ``P_c``)."""
        parts, pairs = [], []
        for owner, s_sl, d_sl in self.plan.pieces(key[1:]):
            own = owner == key[1:]
            parts.append(blocks[key] if own else self.take(blocks[(key[0], *owner)], s_sl))
            pairs.append((s_sl if own else None, d_sl))
        spec = _Spec(t1 - t0, tuple(pairs), self.shape(key, ext=True), self.dtype, self.plan.inner(key[1:]))
        out = (self.name(fn.__name__.strip("_")), *key)
        self.graph[out] = (fn, self.recipe, spec, self.params(key[1:], t0, t1), parts, *extra)
        return out

    def fold(self, ext_blocks, what):
        """``P^T ext``: each block's own extended block plus its sites in the neighbours' halos."""
        name, out = self.name(what), {}
        for key in self.keys:
            parts, pairs = [], []
            for src, e_sl, d_sl in self.plan.folds(key[1:]):
                own = src == key[1:]
                parts.append(ext_blocks[(key[0], *src)] if own else self.take(ext_blocks[(key[0], *src)], e_sl))
                pairs.append((e_sl if own else None, d_sl))
            out[key] = (name, *key)
            self.graph[out[key]] = (_fold_task, _Spec(0, tuple(pairs), self.shape(key), self.dtype), parts)
        return out

    def item(self, key, i):
        out = self.name("item")
        self.graph[out] = (getitem, key, i)
        return out

    def forward(self, blocks, t0, t1):
        return {key: self.task(_forward_task, blocks, key, t0, t1) for key in self.keys}

    def hlg(self, name):
        """The graph as one layer called ``name`` (the output's name, as dask collections need)."""
        from dask.highlevelgraph import HighLevelGraph
        return HighLevelGraph.from_collections(name, dict(self.graph), dependencies=self.deps)

    def array(self, blocks, single):
        """The dask array of ``blocks`` (chunked like x): aliases ``(name, *key)`` of its keys."""
        import dask.array as da
        name = self.name("out")
        for key in self.keys:
            self.graph[(name, *key)] = blocks[key]
        arr = da.Array(self.hlg(name), name, ((*self.batches,), *self.plan.chunks), dtype=self.dtype)
        return arr[0] if single else arr


# ---------------------------------------------------------------------------------- public
def forward_domain(net, x, theta, *, block: int | None = None, threads: int = 1):
    """``z_L`` for a dask array ``x`` chunked in space: a lazy dask array chunked like ``x``.

    Each chunk runs ``net``'s kernel on itself plus a halo of ``block·r`` sites per axis
    (``block`` layers per halo exchange, default all ``L``: one exchange), the network's boundary
    at the grid's edges; the result equals ``net.forward(x.compute(), theta)`` (module docstring).
    ``threads``: kernel threads per chunk (dask runs the chunks in parallel).
    """
    x, single, theta, plan, rounds, recipe = _setup(net, x, theta, block, threads)
    run = _Run(net, x, theta, plan, recipe)
    blocks = run.x
    for t0, t1 in rounds:
        blocks = run.forward(blocks, t0, t1)
    return run.array(blocks, single)


def loss_and_grad_domain(net, x, y, theta, input_grad: bool = False, *, block: int | None = None,
                         threads: int = 1):
    """``loss = 0.5 Σ (z_L − y)²`` and its gradient (a dict of NumPy arrays shaped like ``theta``,
    with ``"x"`` a dask array chunked like ``x`` if ``input_grad``, computed and held: persisted),
    for ``x`` chunked in space.

    Equal to ``net.loss_and_grad(x.compute(), y, theta)`` to rounding: every chunk runs the local
    forward and adjoint on its extended block with the cotangent zero in the halo, and the halo
    parts of per-site gradients are folded back to the chunks owning those sites (module docstring).
    ``y``: a dask or NumPy array shaped like ``x`` (rechunked to ``x``'s chunks).
    """
    import dask
    import dask.array as da
    from dask.delayed import Delayed
    x, single, theta, plan, rounds, recipe = _setup(net, x, theta, block, threads)
    y = y if isinstance(y, da.Array) else da.asarray(np.asarray(y))
    if y.dtype.kind not in "fiu":
        raise TypeError(f"y must be real numbers, got dtype {y.dtype}")
    y = y[None] if single and y.ndim == x.ndim - 1 else y
    if y.shape != x.shape:
        raise ValueError(f"y has shape {y.shape[1:] if single else y.shape}, expected the shape of x, "
                         f"{x.shape[1:] if single else x.shape}")
    run = _Run(net, x, theta, plan, recipe)
    y_blocks = run.of(y.rechunk(x.chunks))
    states = [run.x]                           # the state before every round: checkpoints
    for t0, t1 in rounds[:-1]:
        states.append(run.forward(states[-1], t0, t1))
    losses, grads = [], {idx: [] for idx in plan.blocks}
    dz = None
    for k in range(len(rounds) - 1, -1, -1):   # the last round computes the loss; then backwards
        t0, t1 = rounds[k]
        lam = run.fold(dz, "cotangent") if dz is not None else None
        dz = {}
        for key in run.keys:
            out = (run.task(_loss_task, states[k], key, t0, t1, y_blocks[key]) if lam is None else
                   run.task(_vjp_task, states[k], key, t0, t1, lam[key]))
            if lam is None:
                losses.append(run.item(out, 0))
            grads[key[1:]].append(run.item(out, 1))
            dz[key] = run.item(out, 2)
    families = {k: net.families.get(k, "homogeneous") for k in theta}
    rows = [rounds[k] for k in range(len(rounds) - 1, -1, -1) for _ in range(len(run.batches))]
    acc = []
    for idx in plan.blocks:
        acc.append(run.name("gradient"))
        run.graph[acc[-1]] = (_accumulate, families, net.layers, rows, grads[idx])
    summary = run.name("summary")
    run.graph[summary] = (_summary, losses, acc)
    if input_grad:
        dx = run.array(run.fold(dz, "input-gradient"), single)
        dx, result = dask.persist(dx, Delayed(summary, run.hlg(summary)))
        parts, acc = result.compute()
    else:
        parts, acc = Delayed(summary, run.hlg(summary)).compute()
    total = 0.0
    for part in parts:                         # fixed order: batch blocks, then grid blocks (C order)
        total += part
    if not np.isfinite(total):
        from ..runtime.network import NonFiniteError
        raise NonFiniteError("loss_and_grad_domain: the loss is not finite (the scheme is unstable for these "
                             "parameters or the input is too large: npdegen.stability)")
    out = {}
    for k in theta:
        g = np.zeros(net.shapes[k])
        for idx, a in zip(plan.blocks, acc):
            if families[k] == "homogeneous":
                g += a[k]
            else:
                plan.fold_into(g, a[k], idx)
        out[k] = g.astype(net.dtype)
    if input_grad:
        out["x"] = dx
    return total, out
