"""JAX: a compiled npdegen network as a differentiable JAX function.

    from npdegen.jax import neural_pde
    apply = neural_pde(layer, n=256, layers=16, omega=0.8)       # compile options as layer.compile
    theta = apply.init_params(seed=0)                           # a dict of jax arrays (net.shapes)
    z_L = apply(theta, x)                                       # x: (batch, *grid) or grid
    loss = lambda theta: 0.5 * jnp.sum((apply(theta, x) - y) ** 2)
    jax.jit(jax.grad(loss))(theta)

``apply`` is a ``jax.custom_vjp`` whose forward and backward call the generated kernels through
``jax.pure_callback`` (on the host: NumPy or numba kernels; a CuPy network receives host arrays and
returns host arrays). It works under ``jax.jit``, ``jax.grad``, ``jax.value_and_grad`` and
``jax.vmap`` (sequentially per mapped element).

How the backward gets the trajectory: the differentiated forward runs ``net.forward(x, theta,
keep=True)`` and keeps the tape in a small host-side store, returning an integer token as a
residual; the backward callback takes the tape for that token (no second forward pass). If the tape
is not there (JAX may run a pure callback again, or a backward of an evicted or already used tape),
the backward recomputes with ``net.vjp(x, theta, cotangent)`` from the residuals ``x`` and ``theta``:
the same numbers, one more forward sweep. The store keeps at most ``max_tapes`` tapes (oldest
evicted), so forward passes whose backward never runs (``jax.vjp`` without calling the pullback)
cannot leak memory. ``apply.stats`` counts tape hits and recomputations.

dtype: arrays must have the network's dtype; a float64 network needs
``jax.config.update("jax_enable_x64", True)`` (a clear error otherwise).
"""
from __future__ import annotations

import itertools
import threading
from collections import OrderedDict

import jax
import jax.numpy as jnp
import numpy as np

from .runtime.network import Network

__all__ = ["neural_pde"]


def _host(a):
    """A NumPy array from a NumPy or CuPy result."""
    return np.asarray(a.get() if hasattr(a, "get") else a)


class _TapeStore:
    """Tapes of differentiated forward passes, keyed by an int32 token, at most ``size`` of them."""

    def __init__(self, size):
        self.size, self.tapes, self.lock = size, OrderedDict(), threading.Lock()
        self.counter = itertools.count(1)

    def put(self, tape) -> int:
        with self.lock:
            token = next(self.counter) % (2 ** 31 - 1) or next(self.counter)
            self.tapes[token] = tape
            while len(self.tapes) > self.size:
                self.tapes.popitem(last=False)
            return token

    def take(self, token):
        with self.lock:
            return self.tapes.pop(int(token), None)

    def __len__(self):
        return len(self.tapes)


def neural_pde(layer, *, max_tapes: int = 8, **compile_options):
    """``apply(theta, x)`` for a :class:`~npdegen.NeuralPDE` (compiled here with ``compile_options``)
    or an already compiled :class:`~npdegen.runtime.network.Network`; see the module docstring.

    The returned function has ``apply.net`` (the network), ``apply.init_params(...)`` (as
    ``net.init_params``, as JAX arrays) and ``apply.stats`` (``{"tape": …, "recomputed": …}``).
    """
    if isinstance(layer, Network):
        if compile_options:
            raise TypeError(f"neural_pde: compile options {sorted(compile_options)} given with an already "
                            "compiled network")
        net = layer
    else:
        net = layer.compile(**compile_options)
    dtype = np.dtype(net.dtype)
    grid = tuple(net.grid)
    names = tuple(net.shapes)
    store = _TapeStore(max_tapes)
    stats = {"tape": 0, "recomputed": 0}
    lock = threading.Lock()                  # a Network keeps workspaces between calls: one call at a time

    def check(theta, x):
        if dtype == np.float64 and not jax.config.jax_enable_x64:
            raise TypeError("neural_pde: this network computes in float64; enable it in JAX with "
                            "jax.config.update('jax_enable_x64', True) (or compile with dtype='float32')")
        if not isinstance(theta, dict) or set(theta) != set(names):
            raise ValueError(f"neural_pde: theta must be a dict with keys {sorted(names)}, got "
                             f"{sorted(theta) if isinstance(theta, dict) else type(theta).__name__}")
        x = jnp.asarray(x)
        for what, a in [("x", x), *((f"theta[{k!r}]", theta[k]) for k in names)]:
            if jnp.result_type(a) != dtype:
                raise TypeError(f"neural_pde: {what} is {jnp.result_type(a)}, the network computes in {dtype}; "
                                f"cast it (.astype(jnp.{dtype})) or compile with dtype='{jnp.result_type(a)}'")
        if x.ndim not in (len(grid), len(grid) + 1) or tuple(x.shape[x.ndim - len(grid):]) != grid:
            raise ValueError(f"neural_pde: x must have shape (batch, {', '.join(map(str, grid))}) or the grid's, "
                             f"got {x.shape}")
        return {k: jnp.asarray(theta[k]) for k in names}, x

    def out_spec(x):
        return jax.ShapeDtypeStruct(x.shape, dtype)

    def theta_spec():
        return {k: jax.ShapeDtypeStruct(s, dtype) for k, s in net.shapes.items()}

    # ---- host callbacks
    def _forward(theta, x):
        with lock:
            return _host(net.forward(np.asarray(x), dict(theta)))

    def _record(theta, x):
        with lock:
            tape = net.forward(np.asarray(x), dict(theta), keep=True)
        return _host(tape.output), np.int32(store.put(tape))

    def _backward(token, theta, x, ct):
        tape = store.take(token)
        with lock:
            if tape is not None:
                stats["tape"] += 1
                dx, grads = net.backward(tape, np.asarray(ct))
            else:
                stats["recomputed"] += 1
                dx, grads = net.vjp(np.asarray(x), dict(theta), np.asarray(ct))
        return {k: _host(grads[k]) for k in names}, _host(dx)

    # ---- the differentiable function
    @jax.custom_vjp
    def _apply(theta, x):
        return jax.pure_callback(_forward, out_spec(x), theta, x, vmap_method="sequential")

    def _fwd(theta, x):
        out, token = jax.pure_callback(_record, (out_spec(x), jax.ShapeDtypeStruct((), np.int32)), theta, x,
                                       vmap_method="sequential")
        return out, (token, theta, x)

    def _bwd(res, ct):
        token, theta, x = res
        grads, dx = jax.pure_callback(_backward, (theta_spec(), out_spec(x)), token, theta, x, ct,
                                      vmap_method="sequential")
        return grads, dx

    _apply.defvjp(_fwd, _bwd)

    def apply(theta, x):
        theta, x = check(theta, x)
        return _apply(theta, x)

    def init_params(seed=0, scale: float = 0.01, values: dict | None = None) -> dict:
        return {k: jnp.asarray(_host(v)) for k, v in net.init_params(seed=seed, scale=scale, values=values).items()}

    apply.net, apply.init_params, apply.stats, apply.store = net, init_params, stats, store
    apply.__doc__ = f"z_L = net(x; theta) for {net!r}, differentiable in JAX (npdegen.jax.neural_pde)."
    return apply
