"""A compiled network: L relaxation layers on a grid of n sites, run by a generated kernel.

Semantics (the public API promises these):

* ``theta`` keys are the parameter names, plus ``"b"`` for the bias and ``"omega"`` when ω is
  trained. Shapes by family: homogeneous ``()``, heterogeneous ``(n,)``, time-dependent ``(L, n)``.
* Row convention: ``W[i, i+j] = w_j(θ_i)``; time-dependent values ``theta[p][t]`` act in the step
  from layer t to t + 1.
* One step: ``z_{t+1}[i] = (1 − ω) z_t[i] + ω f(Σ_j W[i, i+j] z_t[i+j] − b[i])``
  (``− α(‖z_t‖ − 1) z_t[i]`` added with soft normalisation, the norm taken over sites, per sample).
* Boundaries: periodic wraps; zero-Dirichlet reads 0 outside the grid; Neumann mirrors about the
  cell faces, ``z[−k] = z[k−1]`` and ``z[n−1+k] = z[n−k]`` (zero flux through the faces).
* ``loss = 0.5 Σ (z_L − y)²`` summed over batch and sites.

Memory: a gradient needs every state z_0 … z_{L−1}. By default the forward stores them all
(``(L + 1)·batch·n`` values). With ``checkpoint=k`` it stores only z at every k-th layer; the backward
then recomputes one segment of ≤ k layers at a time from its checkpoint into a (k + 1)-state buffer
and runs the adjoint over it, so memory is about ``(⌈L/k⌉ + k + 1)·batch·n`` for ``L − k − ⌈L/k⌉``
extra layer steps (the last segment is still in the buffer after the forward, and a segment's last
state is never needed). The recomputation only calls the kernel's ``forward`` and ``adjoint`` on
segments (time-dependent parameters and gradients passed as views of their layer rows), so every
backend gets it; it relies on ``adjoint(traj, …)`` reading ``traj[0 … len − 2]`` only.
"""
from __future__ import annotations

import functools
import importlib
import math
import os
from dataclasses import dataclass, field
from types import ModuleType

import numpy as np

from ..grid import normalise_grid
from .backends import Backend
from .checkpointing import Checkpointing
from .fixed import WithFixedFields, fixed_values
from .tape import record, replay

__all__ = ["Network", "NonFiniteError", "FOREIGN", "foreign_handler"]


class NonFiniteError(FloatingPointError):
    """A result would contain NaN or inf: the network never returns such values silently."""

#: Array types run elsewhere, by the full name of their class (or a base class): ``"module:function"``,
#: imported on first use, so that the runtime imports neither dask nor npdegen.distributed. The
#: handler is called as ``handler(net, method, *args, **kwargs)`` by forward, vjp and loss_and_grad.
FOREIGN = {"dask.array.core.Array": "npdegen.distributed:dispatch",
           "dask.bag.core.Bag": "npdegen.distributed:dispatch"}


@functools.lru_cache(maxsize=64)
def _foreign_target(cls: type):
    return next((FOREIGN[k] for k in (f"{c.__module__}.{c.__qualname__}" for c in cls.__mro__) if k in FOREIGN), None)


def foreign_handler(*arrays):
    """The handler (see :data:`FOREIGN`) of the first of ``arrays`` of a registered type, else None."""
    for a in arrays:
        target = _foreign_target(type(a))
        if target is not None:
            module, _, name = target.partition(":")
            return getattr(importlib.import_module(module), name)
    return None


_SHAPES = {"homogeneous": lambda grid, L: (), "heterogeneous": lambda grid, L: tuple(grid),
           "time-dependent": lambda grid, L: (L, *grid)}


@dataclass(eq=False)
class Network(Checkpointing):
    """L layers of one generated kernel; create it with ``NeuralPDE.compile``.

    ``ir`` is the lowered step IR the kernel was generated from (:class:`~npdegen.ir.lower.LoweredStep`,
    any layer on a 1–3-D grid); ``n`` is an int in 1-D, a tuple of sizes per axis in N-D.
    """
    ir: object
    options: object
    backend: Backend
    kernel: ModuleType
    n: object
    spacing: object
    layers: int
    omega: float
    alpha: float = 0.0
    threads: int | None = None
    checkpoint: int | None = None
    #: (layer, compile options) it was made from: a network pickles as these and compiles again on
    #: load, from the loading process's own kernel cache (e.g. on a Dask worker)
    recipe: tuple | None = field(default=None, repr=False)
    _work: dict = field(default_factory=dict, repr=False)
    _buffers: dict = field(default_factory=dict, repr=False)
    #: callables ``check(theta)`` raising ValueError for values outside the layer's range (a kernel's
    #: ``σ > 0``); run by :meth:`check_params` on every θ the network is given
    param_checks: tuple = field(default=(), repr=False)

    #: Below this many grid values per layer (batch·n) one thread is faster than several.
    THREAD_MIN_SIZE = 1 << 20

    def __post_init__(self):
        self.dtype = np.dtype(self.options.dtype)
        self.xp = self.backend.xp          # numpy, or cupy for the GPU backend
        step_ir = self.ir.ir                # the step IR of the lowered layer
        self.halos = tuple(step_ir.halo)    # grids of 1-3 axes, spacing per axis
        self.grid = normalise_grid(self.n, step_ir.dim, self.halos)
        families = step_ir.families
        self._size, self._space = self.grid, tuple(float(v) for v in np.atleast_1d(self.spacing))
        if step_ir.fixed:                   # grid fields of the site expression (flux-form face masks)
            values = fixed_values(step_ir, self.grid, self.options.boundary, self.dtype, self.xp)
            self.kernel = WithFixedFields(self.kernel, values)
        self.halo = self.halos[0] if len(self.halos) == 1 else self.halos
        self.families = families
        self.size = int(np.prod(self.grid))
        self.shapes = {k: _SHAPES[fam](self.grid, self.layers) for k, fam in families.items()}
        if self.options.train_omega:
            self.shapes["omega"] = ()
        if self.threads is None:
            self.threads = int(os.environ.get("NPDEGEN_NUM_THREADS", 0)) or os.cpu_count() or 1
        if not isinstance(self.threads, int) or self.threads < 1:
            raise ValueError(f"threads must be a positive integer, got {self.threads!r}")
        if self.checkpoint is not None and (not isinstance(self.checkpoint, (int, np.integer))
                                            or isinstance(self.checkpoint, bool) or self.checkpoint < 1):
            raise ValueError(f"checkpoint must be None or a positive integer (layers per segment), "
                             f"got {self.checkpoint!r}")

    def _workspace(self, batch: int) -> dict:
        """Buffers and thread pool for a batch size, kept between calls (a Network is not thread-safe)."""
        if batch not in self._work:
            # a kernel module may state its own crossover (the numba kernels do; measured)
            minimum = getattr(self.kernel, "THREAD_MIN_SIZE", self.THREAD_MIN_SIZE)
            threads = self.threads if batch * self.size >= minimum else 1
            self._work.clear()         # one batch size's workspace at a time: O(batch·grid), not the states
            self._work[batch] = self.kernel.workspace(batch, self._size, self.dtype, threads=threads)
        return self._work[batch]

    def _buffer(self, name: str, shape: tuple):
        """A state buffer kept between calls (like the workspace): allocating and first touching
        L·batch·n values costs about as much as a fast layer sweep — seconds for a deep network, and
        again at every change of batch size (a search alternating training and validation batches), so
        the buffer (not dropped with the workspace) keeps the largest size asked for and returns a
        C-ordered view of its start. Its values are left from earlier calls: the sweeps write every
        value they read (ghost cells included). Returned arrays never alias it."""
        size = math.prod(shape)
        flat = self._buffers.get(name)
        if flat is None or flat.size < size:
            self._buffers[name] = flat = self.xp.zeros(size, self.dtype)
        return flat[:size].reshape(shape)

    def _run_forward(self, x2d, theta):
        return self.kernel.forward(self._trajectory(x2d), theta, self._space, self._omega(theta), self.alpha,
                                   self._workspace(x2d.shape[0]))

    # ------------------------------------------------------------------ parameters
    def init_params(self, seed=0, scale: float = 0.01, values: dict | None = None) -> dict:
        """Random parameters ``values[k] + scale·N(0, 1)`` (``values`` default 0; ω: its compile value)."""
        rng = np.random.default_rng(seed)
        values = dict(values or {})
        unknown = set(values) - set(self.shapes)
        if unknown:
            raise ValueError(f"init_params: unknown parameter(s) {sorted(unknown)}; expected {sorted(self.shapes)}")
        theta = {}
        for k, shape in self.shapes.items():
            if k == "omega":
                theta[k] = np.asarray(values.get(k, self.omega), self.dtype)
                continue
            theta[k] = np.asarray(values.get(k, 0.0) + scale * rng.standard_normal(shape), self.dtype).reshape(shape)
        # drawn on the host so that every backend starts from the same numbers
        return self.check_params(theta)

    def check_params(self, theta) -> dict:
        """Validate ``theta`` (keys, shapes, finiteness) and return arrays of the network's dtype."""
        if not isinstance(theta, dict):
            raise TypeError(f"theta must be a dict of arrays, got {type(theta).__name__}")
        missing, extra = set(self.shapes) - set(theta), set(theta) - set(self.shapes)
        if missing or extra:
            raise ValueError(f"theta keys {sorted(theta)} do not match the network's {sorted(self.shapes)}"
                             + (f"; missing {sorted(missing)}" if missing else "")
                             + (f"; unexpected {sorted(extra)}" if extra else ""))
        out = {}
        for k, shape in self.shapes.items():
            arr = self.xp.asarray(theta[k])
            if arr.dtype.kind not in "fiu":
                raise TypeError(f"theta[{k!r}] must be real numbers, got dtype {arr.dtype}")
            if arr.shape != shape:
                fam = "omega" if k == "omega" else self.families[k]
                raise ValueError(f"theta[{k!r}] has shape {arr.shape}; a {fam} parameter needs {shape}")
            if not bool(self.xp.all(self.xp.isfinite(arr))):
                raise ValueError(f"theta[{k!r}] contains NaN or inf")
            out[k] = self._cast(arr, f"theta[{k!r}]", order="C")
        for check in self.param_checks:
            check(out)
        return out

    def _cast(self, arr, what: str, order="K"):
        """``arr`` in the network's dtype, checked finite AFTER the cast (1e39 is inf in float32)."""
        with np.errstate(over="ignore"):
            cast = arr.astype(self.dtype, order=order, copy=False)
        if cast is not arr and not bool(self.xp.all(self.xp.isfinite(cast))):
            raise ValueError(f"{what} overflows {self.dtype} (largest finite value "
                             f"{float(np.finfo(self.dtype).max):.3g})")
        return cast

    def _omega(self, theta) -> float:
        return float(theta["omega"]) if self.options.train_omega else self.omega

    # ------------------------------------------------------------------ arrays
    @property
    def _padded(self) -> tuple:
        return tuple(n + 2 * h for n, h in zip(self.grid, self.halos))

    def _states(self, x, what="x"):
        """``x`` shaped ``(batch, *grid)`` or ``grid`` as a ``(batch, *grid)`` array of the dtype."""
        arr = self.xp.asarray(x)
        if arr.dtype.kind not in "fiu":
            raise TypeError(f"{what} must be real numbers, got dtype {arr.dtype}")
        d, grid = len(self.grid), self.grid
        if arr.ndim not in (d, d + 1) or tuple(arr.shape[arr.ndim - d:]) != grid:
            shape = ", ".join(map(str, grid))
            raise ValueError(f"{what} must have shape (batch, {shape}) or ({shape}{',' if d == 1 else ''}), "
                             f"got {arr.shape}")
        if not bool(self.xp.all(self.xp.isfinite(arr))):
            raise ValueError(f"{what} contains NaN or inf")
        if arr.size == 0:
            raise ValueError(f"{what} has no samples (shape {arr.shape}): give at least one")
        return self._cast(arr, what).reshape(-1, *grid), arr.ndim == d

    def _trajectory(self, x2d, layers=None):
        self._workspace(x2d.shape[0])
        shape = ((self.layers if layers is None else layers) + 1, x2d.shape[0], *self._padded)
        traj = self._buffer("trajectory" if layers is None else "step", shape)
        self._interior(traj[0])[...] = x2d
        return traj

    def _interior(self, a):
        return a[(Ellipsis,) + tuple(slice(h, h + n) for h, n in zip(self.halos, self.grid))]

    # ------------------------------------------------------------------ guards
    def _finite(self, what: str, stored=None, **arrays):
        """Raise NonFiniteError if any array is not finite, naming the first layer that overflowed."""
        xp = self.xp
        bad = [name for name, a in arrays.items()
               if not all(bool(xp.all(xp.isfinite(v))) for v in (a.values() if isinstance(a, dict) else [a]))]
        if not bad:
            return
        where = ""
        if stored is not None and not self._checkpointed:
            finite = xp.all(xp.isfinite(stored.reshape(stored.shape[0], -1)), axis=1)
            first = int(xp.argmin(finite)) if not bool(xp.all(finite)) else None
            if first is not None:
                where = f"; the state first overflows at layer {first} of {self.layers}"
        raise NonFiniteError(
            f"{what}: non-finite values in {', '.join(bad)}{where}. The scheme is unstable for these "
            "parameters (check omega and the stencil weights: npdegen.stability) or the input is too large.")

    # ------------------------------------------------------------------ public
    def forward(self, x, theta, trajectory: bool = False, keep: bool = False):
        """z_L for input ``x`` (shape ``(batch, *grid)`` or ``grid``); all of z_0…z_L if
        ``trajectory``; with ``keep=True`` a :class:`~npdegen.runtime.tape.Tape` (``tape.output`` is
        z_L) that :meth:`backward` turns into gradients without a second forward pass."""
        if (handler := foreign_handler(x)) is not None:          # e.g. a dask array: npdegen.distributed
            return handler(self, "forward", x, theta, trajectory=trajectory, keep=keep)
        x2d, single = self._states(x)
        theta = self.check_params(theta)
        if keep:
            if trajectory:
                raise ValueError("keep=True returns a tape; ask for trajectory=True separately")
            return record(self, x2d, theta, single)
        if trajectory:
            stored = self._run_forward(x2d, theta)
            out = self._interior(stored)
        else:
            stored = self._forward_for_gradient(x2d, theta)
            out = self._final_state(stored)
        out = out.copy()          # C-contiguous, and never a view of the kept buffers
        self._finite("forward", stored if trajectory else None, output=out)
        return ((out[:, 0] if trajectory else out[0]) if single else out)

    def vjp(self, x, theta, cotangent):
        """Adjoint sweep: ``(dx, grads)`` with ``dx = Jᵀ·cotangent`` for the map x → z_L and
        ``grads[k] = ⟨cotangent, ∂z_L/∂θ_k⟩``."""
        if (handler := foreign_handler(x, cotangent)) is not None:
            return handler(self, "vjp", x, theta, cotangent)
        x2d, single = self._states(x)
        lam, _ = self._states(cotangent, "cotangent")
        if lam.shape != x2d.shape:
            raise ValueError(f"cotangent has shape {np.shape(cotangent)}, x has {np.shape(x)}")
        theta = self.check_params(theta)
        stored = self._forward_for_gradient(x2d, theta)
        dx, grads = self._adjoint(stored, lam.copy(), theta, single)
        self._finite("vjp", stored, input_gradient=dx, gradients=grads)
        return dx, grads

    def backward(self, tape, cotangent):
        """``(dx, grads)`` for the tape of ``forward(x, theta, keep=True)``: ``dx = Jᵀ·cotangent``,
        ``grads[k] = ⟨cotangent, ∂z_L/∂θ_k⟩`` (as :meth:`vjp`, without running the forward again)."""
        return replay(self, tape, cotangent)

    def _adjoint(self, traj, lam, theta, single):
        if self._checkpointed:
            return self._adjoint_checkpoints(traj, lam, theta, single)
        grads = {k: self.xp.zeros(s, self.dtype) for k, s in self.shapes.items()}
        dx = self.kernel.adjoint(traj, lam, theta, self._space, self._omega(theta), self.alpha, grads,
                                 self._workspace(lam.shape[0]))
        return (dx[0] if single else dx), grads

    def loss_and_grad(self, x, y, theta, input_grad: bool = False):
        """``loss = 0.5 Σ (z_L − y)²`` and its gradient, a dict shaped like ``theta``
        (with ``"x"`` added if ``input_grad``)."""
        if (handler := foreign_handler(x, y)) is not None:
            return handler(self, "loss_and_grad", x, y, theta, input_grad=input_grad)
        x2d, single = self._states(x)
        y2d, _ = self._states(y, "y")
        if y2d.shape != x2d.shape:
            raise ValueError(f"y has shape {np.shape(y)}, expected the shape of x, {np.shape(x)}")
        theta = self.check_params(theta)
        stored = self._forward_for_gradient(x2d, theta)
        lam = self._final_state(stored) - y2d
        # summed in float64 without a float64 copy of lam (that copy was 2·batch·n at the memory peak)
        flat = lam.reshape(lam.shape[0], -1)
        loss = 0.5 * float(self.xp.einsum("ij,ij->", flat, flat, dtype=np.float64))
        if not np.isfinite(loss):
            self._finite("loss_and_grad", stored, output=self._final_state(stored), loss=self.xp.asarray(loss))
        dx, grads = self._adjoint(stored, lam, theta, single)
        self._finite("loss_and_grad", stored, gradients=grads, **({"input_gradient": dx} if input_grad else {}))
        if input_grad:
            grads["x"] = dx
        return loss, grads

    def layer_losses(self, x, y, theta) -> np.ndarray:
        """``0.5 Σ (z_t − y)²`` for t = 0 … L: how the loss falls with depth."""
        y2d, _ = self._states(y, "y")
        traj = self.forward(x, theta, trajectory=True).reshape(self.layers + 1, -1, *self.grid)
        return 0.5 * self.xp.sum(self.xp.square(traj - y2d, dtype=np.float64), axis=tuple(range(1, traj.ndim)))

    # ------------------------------------------------------------------ single layers
    def step(self, z, theta, layer: int):
        """One layer, ``z_{t+1}`` from ``z_t = z`` with the parameters of layer ``layer``."""
        z2d, single = self._states(z, "z")
        theta = self.check_params(theta)
        self._check_layer(layer)
        zp = self._trajectory(z2d, layers=0)[0]
        self.kernel.fill_halo(zp)
        out = self.xp.empty_like(z2d)
        self.kernel.step(zp, out, theta, layer, self._space, self._omega(theta), self.alpha,
                         self._workspace(z2d.shape[0]))
        self._finite(f"step (layer {layer})", output=out)
        return out[0] if single else out

    def step_vjp(self, z, theta, cotangent, layer: int):
        """Adjoint of :meth:`step`: ``(Jᵀ·cotangent, grads)`` for the map z_t → z_{t+1}."""
        z2d, single = self._states(z, "z")
        lam, _ = self._states(cotangent, "cotangent")
        if lam.shape != z2d.shape:
            raise ValueError(f"cotangent has shape {np.shape(cotangent)}, z has {np.shape(z)}")
        theta = self.check_params(theta)
        self._check_layer(layer)
        zp = self._trajectory(z2d, layers=0)[0]
        self.kernel.fill_halo(zp)
        grads = {k: self.xp.zeros(s, self.dtype) for k, s in self.shapes.items()}
        lam = lam.copy()
        self.kernel.step_adjoint(zp, lam, theta, layer, self._space, self._omega(theta), self.alpha, grads,
                                 self._workspace(z2d.shape[0]))
        self._finite(f"step_vjp (layer {layer})", input_gradient=lam, gradients=grads)
        return (lam[0] if single else lam), grads

    def _check_layer(self, layer):
        if not isinstance(layer, (int, np.integer)) or isinstance(layer, bool) or not 0 <= layer < self.layers:
            raise ValueError(f"layer must be an integer in [0, {self.layers}), got {layer!r}")

    def __reduce__(self):
        if self.recipe is None:
            raise TypeError("this Network was not made by NeuralPDE.compile and cannot be pickled")
        return (_compile, self.recipe)

    def __repr__(self):
        name = getattr(self.ir, "name", None) or self.ir.ir.name
        return (f"Network({name!r}, n={self.n}, layers={self.layers}, spacing={self.spacing}, "
                f"omega={self.omega}, boundary={self.options.boundary!r}, dtype={self.options.dtype!r}, "
                f"backend={self.backend.name!r}" + (f", checkpoint={self.checkpoint}" if self.checkpoint else "") + ")")


def _compile(layer, options: dict) -> Network:
    """Unpickle a network: compile its layer again (a cache hit where the kernel was built before)."""
    return layer.compile(**options)
