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
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from types import ModuleType

import numpy as np

from ..codegen.render import KernelOptions
from ..derive.kernel import KernelIR
from .backends import Backend

__all__ = ["Network"]

_SHAPES = {"homogeneous": lambda n, L: (), "heterogeneous": lambda n, L: (n,),
           "time-dependent": lambda n, L: (L, n)}


@dataclass(eq=False)
class Network:
    """L layers of one generated kernel; create it with ``NeuralPDE.compile``."""
    ir: KernelIR
    options: KernelOptions
    backend: Backend
    kernel: ModuleType
    n: int
    spacing: float
    layers: int
    omega: float
    alpha: float = 0.0
    threads: int | None = None
    _work: dict = field(default_factory=dict, repr=False)

    #: Below this many grid values per layer (batch·n) one thread is faster than several.
    THREAD_MIN_SIZE = 1 << 15

    def __post_init__(self):
        self.dtype = np.dtype(self.options.dtype)
        self.xp = self.backend.xp          # numpy, or cupy for the GPU backend
        self.halo = self.ir.halo
        families = dict(self.ir.params)
        if self.ir.bias:
            families["b"] = self.ir.bias
        self.families = families
        self.shapes = {k: _SHAPES[fam](self.n, self.layers) for k, fam in families.items()}
        if self.options.train_omega:
            self.shapes["omega"] = ()
        if self.threads is None:
            self.threads = int(os.environ.get("NPDEGEN_NUM_THREADS", 0)) or os.cpu_count() or 1
        if not isinstance(self.threads, int) or self.threads < 1:
            raise ValueError(f"threads must be a positive integer, got {self.threads!r}")

    def _workspace(self, batch: int) -> dict:
        """Buffers and thread pool for a batch size, kept between calls (a Network is not thread-safe)."""
        if batch not in self._work:
            threads = self.threads if batch * self.n >= self.THREAD_MIN_SIZE else 1
            self._work.clear()
            self._work[batch] = self.kernel.workspace(batch, self.n, self.dtype, threads=threads)
        return self._work[batch]

    def _run_forward(self, x2d, theta):
        return self.kernel.forward(self._trajectory(x2d), theta, self.spacing, self._omega(theta), self.alpha,
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
            out[k] = arr.astype(self.dtype, order="C", copy=False)
        return out

    def _omega(self, theta) -> float:
        return float(theta["omega"]) if self.options.train_omega else self.omega

    # ------------------------------------------------------------------ arrays
    def _states(self, x, what="x"):
        arr = self.xp.asarray(x)
        if arr.dtype.kind not in "fiu":
            raise TypeError(f"{what} must be real numbers, got dtype {arr.dtype}")
        if arr.ndim not in (1, 2) or arr.shape[-1] != self.n:
            raise ValueError(f"{what} must have shape (batch, {self.n}) or ({self.n},), got {arr.shape}")
        if not bool(self.xp.all(self.xp.isfinite(arr))):
            raise ValueError(f"{what} contains NaN or inf")
        return arr.astype(self.dtype, copy=False).reshape(-1, self.n), arr.ndim == 1

    def _trajectory(self, x2d):
        traj = self.xp.zeros((self.layers + 1, x2d.shape[0], self.n + 2 * self.halo), self.dtype)
        traj[0, :, self.halo:self.halo + self.n] = x2d
        return traj

    def _interior(self, a):
        return a[..., self.halo:self.halo + self.n]

    # ------------------------------------------------------------------ public
    def forward(self, x, theta, trajectory: bool = False):
        """z_L for input ``x`` (shape ``(batch, n)`` or ``(n,)``); all of z_0…z_L if ``trajectory``."""
        x2d, single = self._states(x)
        theta = self.check_params(theta)
        traj = self._run_forward(x2d, theta)
        out = self._interior(traj) if trajectory else self._interior(traj[-1])
        out = self.xp.ascontiguousarray(out)
        return out[..., 0, :] if single else out

    def vjp(self, x, theta, cotangent):
        """Adjoint sweep: ``(dx, grads)`` with ``dx = Jᵀ·cotangent`` for the map x → z_L and
        ``grads[k] = ⟨cotangent, ∂z_L/∂θ_k⟩``."""
        x2d, single = self._states(x)
        lam, _ = self._states(cotangent, "cotangent")
        if lam.shape != x2d.shape:
            raise ValueError(f"cotangent has shape {np.shape(cotangent)}, x has {np.shape(x)}")
        theta = self.check_params(theta)
        traj = self._run_forward(x2d, theta)
        return self._adjoint(traj, lam.copy(), theta, single)

    def _adjoint(self, traj, lam, theta, single):
        grads = {k: self.xp.zeros(s, self.dtype) for k, s in self.shapes.items()}
        dx = self.kernel.adjoint(traj, lam, theta, self.spacing, self._omega(theta), self.alpha, grads,
                                 self._workspace(lam.shape[0]))
        return (dx[0] if single else dx), grads

    def loss_and_grad(self, x, y, theta, input_grad: bool = False):
        """``loss = 0.5 Σ (z_L − y)²`` and its gradient, a dict shaped like ``theta``
        (with ``"x"`` added if ``input_grad``)."""
        x2d, single = self._states(x)
        y2d, _ = self._states(y, "y")
        if y2d.shape != x2d.shape:
            raise ValueError(f"y has shape {np.shape(y)}, expected the shape of x, {np.shape(x)}")
        theta = self.check_params(theta)
        traj = self._run_forward(x2d, theta)
        lam = self._interior(traj[-1]) - y2d
        loss = 0.5 * float(self.xp.sum(self.xp.square(lam, dtype=np.float64)))
        dx, grads = self._adjoint(traj, lam, theta, single)
        if input_grad:
            grads["x"] = dx
        return loss, grads

    def layer_losses(self, x, y, theta) -> np.ndarray:
        """``0.5 Σ (z_t − y)²`` for t = 0 … L: how the loss falls with depth."""
        y2d, _ = self._states(y, "y")
        traj = self.forward(x, theta, trajectory=True).reshape(self.layers + 1, -1, self.n)
        return 0.5 * self.xp.sum(self.xp.square(traj - y2d, dtype=np.float64), axis=(1, 2))

    # ------------------------------------------------------------------ single layers
    def step(self, z, theta, layer: int):
        """One layer, ``z_{t+1}`` from ``z_t = z`` with the parameters of layer ``layer``."""
        z2d, single = self._states(z, "z")
        theta = self.check_params(theta)
        self._check_layer(layer)
        zp = self._trajectory(z2d)[0]
        self.kernel.fill_halo(zp)
        out = self.xp.empty_like(z2d)
        self.kernel.step(zp, out, theta, layer, self.spacing, self._omega(theta), self.alpha,
                         self._workspace(z2d.shape[0]))
        return out[0] if single else out

    def step_vjp(self, z, theta, cotangent, layer: int):
        """Adjoint of :meth:`step`: ``(Jᵀ·cotangent, grads)`` for the map z_t → z_{t+1}."""
        z2d, single = self._states(z, "z")
        lam, _ = self._states(cotangent, "cotangent")
        if lam.shape != z2d.shape:
            raise ValueError(f"cotangent has shape {np.shape(cotangent)}, z has {np.shape(z)}")
        theta = self.check_params(theta)
        self._check_layer(layer)
        zp = self._trajectory(z2d)[0]
        self.kernel.fill_halo(zp)
        grads = {k: self.xp.zeros(s, self.dtype) for k, s in self.shapes.items()}
        lam = lam.copy()
        self.kernel.step_adjoint(zp, lam, theta, layer, self.spacing, self._omega(theta), self.alpha, grads,
                                 self._workspace(z2d.shape[0]))
        return (lam[0] if single else lam), grads

    def _check_layer(self, layer):
        if not isinstance(layer, (int, np.integer)) or not 0 <= layer < self.layers:
            raise ValueError(f"layer must be an integer in [0, {self.layers}), got {layer!r}")

    def __repr__(self):
        return (f"Network({self.ir.name!r}, n={self.n}, layers={self.layers}, spacing={self.spacing}, "
                f"omega={self.omega}, boundary={self.options.boundary!r}, dtype={self.options.dtype!r}, "
                f"backend={self.backend.name!r})")
