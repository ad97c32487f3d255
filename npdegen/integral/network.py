r"""A compiled nonlocal network: L relaxation layers whose kernel is an integral operator on the grid.

One step (MODEL.md §1, the convention of :class:`npdegen.runtime.network.Network`):

.. math::  z_{t+1} = (1 − ω)\, z_t + ω\, f(Z_t), \qquad
           Z_t[i] = \sum_o w_{i,o}(θ_t)\, \tilde z_t[i + o] − b[i],

with ``w_{i,o} = (Π_k Δ_k) W(q_i, oΔ; θ)`` the kernel sampled on the grid (:mod:`.sample`) and
``z̃`` the boundary extension (:mod:`.apply`): the rectangle rule for ``∫ W(q, r) z(q + r) dr``.
``loss = 0.5 Σ (z_L − y)²``. The backward sweep, with ``μ_t = ω f′(Z_t) λ_{t+1}``:

.. math::  λ_t = (1 − ω) λ_{t+1} + Kᵀ μ_t,
           \quad ∂/∂θ = Σ_t Σ_{i,o} ∂w_{i,o}/∂θ\, Σ_b μ_t[i]\, z̃_t[i+o],
           \quad ∂/∂b = −Σ μ_t, \quad ∂/∂ω = Σ_t ⟨λ_{t+1}, f(Z_t) − z_t⟩,
           \quad ∂/∂ρ = Σ_t ω λ_{t+1} ∂f/∂ρ(Z_t)  \ (\text{activation parameters}).

A linear network (``f`` the identity) with a homogeneous kernel on a periodic grid runs all layers in
Fourier space instead (:mod:`.spectral`): the same operator, four FFTs of the batch instead of ``4L``.
Any other network with one homogeneous kernel applied by FFT, or (1-D, numba installed) by a stencil,
runs its layers in :mod:`.fastsweep` (transforms and compiled loops into kept work arrays; a network
must not run two ``loss_and_grad`` calls at once); the rest layer by layer in :mod:`.sweeps`.

Parameter families as for npdegen's layers: ``homogeneous`` ``()``, ``heterogeneous`` ``grid``,
``time-dependent`` ``(L, *grid)`` (row ``t`` acts in the step ``t → t + 1``). A kernel whose
parameters vary with the site, or that depends on ``q``, is not a convolution: it runs as a stencil
or a dense matrix, never by FFT. The reach and (for ``method="auto"``) the method are decided per
call from the parameter values (:mod:`.sample`); forward and backward of one call share them.
"""
from __future__ import annotations

import os

import numpy as np

from ..runtime.host_api import HostNetworkAPI
from . import fused
from .apply import DENSE_LIMIT, DenseOperator, FFTOperator, StencilOperator
from .sample import box_offsets, max_reach, sampled_moments
from .sweeps import Sweeps

__all__ = ["NonlocalNetwork"]

_OPERATORS = {"stencil": StencilOperator, "fft": FFTOperator, "dense": DenseOperator}
_SHAPES = {"homogeneous": lambda grid, L: (), "heterogeneous": lambda grid, L: tuple(grid),
           "time-dependent": lambda grid, L: (L, *grid)}


class NonlocalNetwork(HostNetworkAPI, Sweeps):
    """Made by :meth:`NonlocalPDE.compile <npdegen.integral.layer.NonlocalPDE.compile>`; the surface of
    :class:`npdegen.runtime.network.Network` that training uses (``init_params``, ``check_params``,
    ``forward``, ``vjp``, ``backward``, ``loss_and_grad``, ``layer_losses``, ``step``, ``step_vjp``)."""
    UNSTABLE = "omega, the kernel's mass W_0"

    #: ``method="auto"`` samples a stencil while its offsets per site are at most this many times
    #: ``log2 N``, else uses the FFT (a kernel whose weights beyond reach K are below the dtype's
    #: resolution *is* a stencil of reach K, so this is a choice of speed only). Measured (1-D, float32,
    #: tanh, batch 8, L 16, one thread; ``benchmarks/bench_nonlocal.py --crossover``, RESULTS.md): with
    #: numba's direct loops (:mod:`.fastsweep`) stencil and FFT cost the same at ~37 offsets for
    #: N = 1,024, ~53 for N = 8,192 and ~57 for N = 65,536 (3.6-4.1 log2 N); the NumPy/SciPy stencil
    #: (no numba, or N-D) at 5 offsets for N = 1,024 and 7 for N = 65,536. ``method=`` overrides.
    STENCIL_PER_LOG2 = 0.5
    STENCIL_PER_LOG2_NUMBA = 3.5

    def __init__(self, layer, grid, spacing, layers, omega, boundaries, dtype, method, reach, train_omega,
                 threads):
        self.layer, self.grid, self.spacing = layer, tuple(grid), tuple(spacing)
        self.n = self.grid[0] if len(self.grid) == 1 else self.grid
        self.layers, self.omega, self.boundaries = layers, float(omega), tuple(boundaries)
        self.dtype, self.method, self.fixed_reach = np.dtype(dtype), method, reach
        self.train_omega = train_omega
        self.threads = threads or int(os.environ.get("NPDEGEN_NUM_THREADS", 0)) or os.cpu_count() or 1
        self.size = int(np.prod(self.grid))
        self.families = dict(layer.families)
        self.shapes = {k: _SHAPES[f](self.grid, layers) for k, f in self.families.items()}
        if train_omega:
            self.shapes["omega"] = ()
        self.kernel_names = tuple(p.name for p in layer.kernel.params)
        self.activation_names = layer.activation.names
        self._site = layer.kernel.heterogeneous or any(self.families[k] != "homogeneous" for k in self.kernel_names)
        self._time = any(self.families[k] == "time-dependent" for k in self.kernel_names)
        self._positions = None
        if layer.kernel.position:
            axes = [np.arange(n) * dk for n, dk in zip(self.grid, self.spacing)]
            self._positions = np.meshgrid(*axes, indexing="ij")
        self._operators: dict = {}
        self.recipe = None                 # compile options, set by NonlocalPDE.compile (pickling)
        self.tolerance = float(np.finfo(self.dtype).eps)

    # ------------------------------------------------------------------ parameters
    def init_params(self, seed=0, scale: float = 0.01, values: dict | None = None) -> dict:
        """``values[k] + scale·N(0, 1)`` (``values`` default 0; ω: its compile value). Give values for
        kernel parameters with a range that excludes 0 (``σ > 0``)."""
        rng = np.random.default_rng(seed)
        values = dict(values or {})
        unknown = set(values) - set(self.shapes)
        if unknown:
            raise ValueError(f"init_params: unknown parameter(s) {sorted(unknown)}; expected {sorted(self.shapes)}")
        missing = [k for k in self.kernel_names if k not in values]
        try:
            self.layer.sampler.check({k: np.asarray(values.get(k, 0.0), np.float64) for k in self.kernel_names})
        except ValueError as exc:
            if missing:
                raise ValueError(f"init_params: the default 0 is outside a kernel parameter's range ({exc}); pass "
                                 f"values= for {', '.join(missing)}") from None
        theta = {}
        for k, shape in self.shapes.items():
            if k == "omega":
                theta[k] = np.asarray(values.get(k, self.omega), self.dtype)
                continue
            theta[k] = np.asarray(values.get(k, 0.0) + scale * rng.standard_normal(shape), self.dtype).reshape(shape)
        return self.check_params(theta)

    def _check_kernel(self, values) -> None:
        self.layer.sampler.check(values)

    def _omega(self, theta) -> float:
        return float(theta["omega"]) if self.train_omega else self.omega

    def _values(self, theta, t) -> dict:
        """Kernel parameter values (float64) acting in step ``t``."""
        return {k: np.asarray(theta[k][t] if self.families[k] == "time-dependent" else theta[k], np.float64)
                for k in self.kernel_names}

    # ------------------------------------------------------------------ operator per call
    def _limits(self):
        return tuple(max_reach(n, b) for n, b in zip(self.grid, self.boundaries))

    def _reach(self, theta) -> tuple:
        if self.fixed_reach is not None:
            return tuple(min(k, n - 1) if b == "dirichlet" else k
                         for k, n, b in zip(self.fixed_reach, self.grid, self.boundaries))
        sites = self.grid if self._site else None
        rows = range(self.layers) if self._time else (0,)
        reach = [self.layer.sampler.reach(self.spacing, self._values(theta, t), self._limits(), self.tolerance,
                                          sites, self._positions) for t in rows]
        return tuple(max(r[k] for r in reach) for k in range(len(self.grid)))

    def _choose(self, reach) -> str:
        if self.method != "auto":
            return self.method
        wide = any(k > n for k, n in zip(reach, self.grid))
        if self._site:
            return "dense" if wide and self.size <= DENSE_LIMIT else "stencil"
        count = int(np.prod([2 * k + 1 for k in reach]))
        per_log2 = self.STENCIL_PER_LOG2_NUMBA if len(self.grid) == 1 and fused.HAVE_NUMBA else self.STENCIL_PER_LOG2
        return "fft" if wide or count > per_log2 * np.log2(max(self.size, 2)) else "stencil"

    def _operator(self, method, reach):
        key = (method, reach)
        if key not in self._operators:
            if method == "fft" and self._site:
                raise ValueError("method='fft' applies one kernel to every site (a convolution); this kernel varies "
                                 "with the site (heterogeneous/time-dependent parameters or W(q, r)): use "
                                 "method='stencil' or 'dense'")
            self._operators[key] = _OPERATORS[method](self.grid, self.boundaries, reach, self.dtype, self.threads)
        return self._operators[key]

    def plan(self, theta) -> "_Plan":
        """The operator, weights and weight derivatives of one call (per layer when time-dependent)."""
        reach = self._reach(theta)
        op = self._operator(self._choose(reach), reach)
        sites = self.grid if self._site else None
        layers = []
        for t in (range(self.layers) if self._time else (0,)):
            values = self._values(theta, t)
            w = self.layer.sampler.weights(op.offsets, self.spacing, values, sites, self._positions)
            dw = self.layer.sampler.dweights(op.offsets, self.spacing, values, sites, self._positions)
            if op.name == "fft":
                dw = {k: op.wrap(v) for k, v in dw.items()}
            layers.append((op.prepare(w), dw))
        return _Plan(op, layers)

    # ------------------------------------------------------------------ arrays
    def _bias(self, theta, t):
        if "b" not in self.families:
            return None
        return theta["b"][t] if self.families["b"] == "time-dependent" else theta["b"]

    # ------------------------------------------------------------------ public
    def _final(self, x2d, theta):
        last, _, aux = self._run(x2d, theta, transient=True)
        return last, aux

    def step(self, z, theta, layer: int):
        """One layer ``z_{t+1}`` from ``z_t = z`` with the parameters of layer ``layer``."""
        z2d, single = self._states(z, "z")
        theta = self.check_params(theta)
        self._check_layer(layer)
        out, _, _ = self._step(self.plan(theta), layer, z2d, theta, self._omega(theta), False)
        self._finite(f"step (layer {layer})", output=out)
        return out[0] if single else out

    def step_vjp(self, z, theta, cotangent, layer: int):
        """Adjoint of :meth:`step`: ``(Jᵀ·cotangent, grads)`` (grads of layer ``layer`` only)."""
        z2d, single = self._states(z, "z")
        lam, _ = self._states(cotangent, "cotangent")
        if lam.shape != z2d.shape:
            raise ValueError(f"cotangent has shape {np.shape(cotangent)}, z has {np.shape(z)}")
        theta = self.check_params(theta)
        self._check_layer(layer)
        plan, omega = self.plan(theta), self._omega(theta)
        nxt, saved, pre = self._step(plan, layer, z2d, theta, omega, True)
        dx, grads = self._layer_adjoint(plan, np.stack([z2d, nxt]), [saved], [pre], lam.copy(), theta, first=layer)
        self._finite(f"step_vjp (layer {layer})", input_gradient=dx, gradients=grads)
        return (dx[0] if single else dx), grads

    def _check_layer(self, layer):
        if not isinstance(layer, (int, np.integer)) or isinstance(layer, bool) or not 0 <= layer < self.layers:
            raise ValueError(f"layer must be an integer in [0, {self.layers}), got {layer!r}")

    # ------------------------------------------------------------------ inspection
    def truncation(self, theta, max_order: int = 4) -> dict:
        """The sampled stencil's moments next to the kernel's exact ones at these parameter values:
        ``{order: (exact, sampled, sampled − exact)}`` (homogeneous kernels; divergent orders omitted).
        The difference is the truncation and quadrature error of the sampled operator."""
        if self._site:
            raise ValueError("truncation() compares one kernel's moments: this kernel varies with the site")
        theta = self.check_params(theta)
        values = self._values(theta, 0)
        reach = self._reach(theta)
        offsets = box_offsets(reach)
        w = self.layer.sampler.weights(offsets, self.spacing, values)
        sampled = sampled_moments(w, offsets, self.spacing, max_order)
        exact = self.layer.kernel.moments(max_order)
        subs = {p: float(values[p.name]) for p in self.layer.kernel.params}
        out = {}
        for order, value in exact.items():
            e = float(value.subs(subs)) if order not in exact.undecided else float("nan")
            out[order] = (e, sampled[order], sampled[order] - e)
        return out

    def sampled_weights(self, theta, layer: int = 0) -> tuple:
        """``(offsets, w)``: the weights ``w_{i,o}`` that step ``layer`` applies (the call's reach, as
        :meth:`plan` samples them), float64, shaped ``(count,)`` for one kernel or ``(*grid, count)``
        when it varies with the site; ``offsets`` ``(count, d)``. For :func:`npdegen.stability`."""
        theta = self.check_params(theta)
        self._check_layer(layer)
        offsets = box_offsets(self._reach(theta))
        sites = self.grid if self._site else None
        values = self._values(theta, layer if self._time else 0)
        return offsets, self.layer.sampler.weights(offsets, self.spacing, values, sites, self._positions)

    def moments(self, max_order: int = 4):
        """The kernel's exact moments (:meth:`NonlocalPDE.moments`); :meth:`truncation` compares the sampled ones."""
        return self.layer.moments(max_order)

    def explain(self, max_order: int = 4):
        """The physics table of the kernel (:meth:`NonlocalPDE.explain`)."""
        return self.layer.explain(max_order)

    def __reduce__(self):
        """Pickles as (layer, compile options): compiled again on load (e.g. on a Dask worker)."""
        if self.recipe is None:
            raise TypeError("this NonlocalNetwork was not made by NonlocalPDE.compile and cannot be pickled")
        return (_compile, (self.layer, self.recipe))

    def __repr__(self):
        return (f"NonlocalNetwork({self.layer.name!r}, n={self.n}, layers={self.layers}, spacing={self.spacing}, "
                f"omega={self.omega}, boundary={self.boundaries}, dtype={self.dtype.name!r}, method={self.method!r})")


def _compile(layer, options):
    return layer.compile(**options)


class _Plan:
    """One call's operator and per-layer ``(prepared weights, {name: ∂w/∂θ})``."""

    def __init__(self, op, layers):
        self.op, self.layers = op, layers

    def layer(self, t):
        return self.layers[t] if len(self.layers) > 1 else self.layers[0]
