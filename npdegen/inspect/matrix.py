"""A layer as numbers: its stencil weights for given parameter values, and its dense matrix ``W``.

Accepts a :class:`~npdegen.layer.NeuralPDE`, its :class:`~npdegen.derive.kernel.KernelIR` or a
compiled :class:`~npdegen.runtime.network.Network` (all reduce to the KernelIR). ``params`` maps
parameter names to values, shaped as in ``Network.init_params``: ``()`` homogeneous, ``(n,)``
heterogeneous, ``(L, n)`` time-dependent; the keys ``"b"`` (bias) and ``"omega"`` are allowed
and only :func:`layer_bias` reads ``"b"``. Rows follow the runtime's convention
``W[i, i+j] = w_j(θ_i)``, boundaries its semantics (periodic wraps, Dirichlet drops, Neumann
mirrors about the cell faces: ``z[−k] = z[k−1]``, ``z[n−1+k] = z[n−k]``).
"""
from __future__ import annotations

from functools import lru_cache
from numbers import Real

import numpy as np
import sympy as sp

from ..derive.kernel import KernelIR
from ..derive.stencil import SPACING
from ..grid import BOUNDARIES, normalise_boundaries, source

__all__ = ["as_kernel_ir", "layer_weights", "layer_matrix", "layer_bias", "step_matrix", "BOUNDARIES"]

_RUNTIME_KEYS = ("b", "omega")


def as_kernel_ir(layer) -> KernelIR:
    """The :class:`KernelIR` of a ``NeuralPDE``, a ``Network`` or a ``KernelIR``."""
    if isinstance(layer, KernelIR):
        return layer
    recipe = getattr(layer, "recipe", None)          # a Network: the layer it was compiled from
    source = recipe[0] if recipe is not None else layer
    if not getattr(source, "_linear_1d", False):
        raise TypeError(f"expected a 1-D linear NeuralPDE, a Network compiled from one or a KernelIR, "
                        f"got {type(layer).__name__}")
    return source.kernel_ir


def param_symbols(ir: KernelIR) -> tuple:
    """The parameter symbols as they appear in the weights, in the order of ``ir.params``."""
    present = {s.name: s for w in ir.weights for s in w.free_symbols}
    return tuple(present.get(name, sp.Symbol(name)) for name, _ in ir.params)


@lru_cache(maxsize=128)
def _weights_function(ir: KernelIR):
    args = (*param_symbols(ir), SPACING)
    return sp.lambdify(args, list(ir.weights), modules="numpy")


def _as_value(name, value):
    try:
        arr = np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"params[{name!r}] must be a number or an array of numbers") from exc
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"params[{name!r}] must be real numbers, got dtype {arr.dtype}")
    if arr.ndim > 2:
        raise ValueError(f"params[{name!r}] has shape {arr.shape}; expected (), (n,) or (L, n)")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"params[{name!r}] contains NaN or inf")
    return arr.astype(float)


def check_params(ir: KernelIR, params) -> dict:
    """Validated ``{name: float array}`` for every parameter of the layer (and ``"b"`` if given)."""
    if not isinstance(params, dict):
        raise TypeError(f"params must be a dict name -> value, got {type(params).__name__}")
    names = [name for name, _ in ir.params]
    missing = [k for k in names if k not in params]
    unknown = [k for k in params if k not in names and k not in _RUNTIME_KEYS]
    if missing or unknown:
        raise ValueError(f"params {sorted(params)} do not match the layer's {names}"
                         + (f"; missing {missing}" if missing else "")
                         + (f"; unknown {unknown}" if unknown else ""))
    return {k: _as_value(k, v) for k, v in params.items() if k != "omega"}


def _check_spacing(spacing) -> float:
    if not isinstance(spacing, Real) or isinstance(spacing, bool) or not np.isfinite(spacing) or spacing <= 0:
        raise ValueError(f"spacing must be a positive finite number, got {spacing!r}")
    return float(spacing)


def layer_weights(layer, params: dict, spacing: float = 1.0) -> tuple[tuple, np.ndarray]:
    """``(offsets, w)`` with ``w[..., k]`` the weight of ``offsets[k]``, broadcast over the
    parameters' shapes (``()``, ``(n,)`` or ``(L, n)``)."""
    ir = as_kernel_ir(layer)
    values = check_params(ir, params)
    args = [values[name] for name, _ in ir.params]
    try:
        shape = np.broadcast_shapes(*(a.shape for a in args)) if args else ()
    except ValueError:
        raise ValueError(f"parameter shapes {[a.shape for a in args]} do not broadcast together") from None
    with np.errstate(all="ignore"):
        raw = _weights_function(ir)(*args, _check_spacing(spacing))
    w = np.stack([np.broadcast_to(np.asarray(v, dtype=float), shape) for v in raw], axis=-1)
    if not np.all(np.isfinite(w)):
        raise ValueError("the stencil weights are not finite for these parameter values")
    return ir.offsets, w


def _site_weights(w: np.ndarray, n: int | None, layer_index: int | None) -> tuple[np.ndarray, int]:
    if w.ndim == 3:
        if layer_index is None:
            raise ValueError("time-dependent parameters: give layer_index to pick a layer")
        if not isinstance(layer_index, (int, np.integer)) or not 0 <= layer_index < w.shape[0]:
            raise ValueError(f"layer_index must be an integer in [0, {w.shape[0]}), got {layer_index!r}")
        w = w[layer_index]
    if w.ndim == 2:
        if n is not None and n != w.shape[0]:
            raise ValueError(f"n={n} but the parameters have {w.shape[0]} sites")
        return w, w.shape[0]
    if n is None:
        raise ValueError("homogeneous parameters: give the number of sites n")
    return np.broadcast_to(w, (n, w.shape[-1])), n


def layer_matrix(layer, params: dict, n: int | None = None, spacing: float = 1.0,
                 boundary: str = "periodic", layer_index: int | None = None) -> np.ndarray:
    """The dense ``n × n`` matrix ``W`` of ``Z = W z − b`` for these parameter values (``boundary``:
    a kind, or a 1-tuple as a compiled 1-D network's options carry it)."""
    boundary = normalise_boundaries(boundary, 1)[0]
    if n is not None and (not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1):
        raise ValueError(f"n must be a positive integer, got {n!r}")
    offsets, w = layer_weights(layer, params, spacing)
    w, n = _site_weights(w, n, layer_index)
    halo = max(abs(j) for j in offsets)
    if n <= 2 * halo:
        raise ValueError(f"n must be an integer > {2 * halo} (twice the stencil half-width), got {n}")
    W = np.zeros((n, n))
    rows = np.arange(n)
    for k, j in enumerate(offsets):
        cols = np.array([-1 if (c := source(int(i + j), n, boundary)) is None else c for i in rows])
        keep = cols >= 0
        np.add.at(W, (rows[keep], cols[keep]), w[keep, k])
    return W


def step_matrix(layer, params: dict, n, spacing=1.0, boundary="periodic", layer_index: int = 0,
                state=None) -> np.ndarray:
    """The dense ``N × N`` matrix (``N = Π n_k``, sites in C order) of an N-D or nonlinear layer:
    ``W[i, i+o] = ∂G/∂z[i+o]`` at site ``i`` — its stencil for a linear layer, the Jacobian of
    ``G`` at ``state`` (default zero) for a nonlinear one — with the per-axis boundary rules of
    :mod:`npdegen.grid` (several accesses reading the same site add up)."""
    from .linearised import linearised_kernel
    ir = layer.step_ir
    grid = (int(n),) if np.ndim(n) == 0 else tuple(int(v) for v in n)
    if len(grid) != ir.dim:
        raise ValueError(f"n must give {ir.dim} sizes (one per axis), got {n!r}")
    bounds = normalise_boundaries(boundary, ir.dim)
    u = np.zeros(grid) if state is None else np.asarray(state, dtype=float)
    theta = {k: v for k, v in params.items() if k not in _RUNTIME_KEYS}
    kernel = linearised_kernel(layer, u, theta, spacing=spacing, boundary=bounds, layer_index=layer_index)
    N = int(np.prod(grid))
    W = np.zeros((N, N))
    sites = np.indices(grid).reshape(ir.dim, -1).T
    for off, w in kernel.weights.items():
        w = w.reshape(-1)
        for r, site in enumerate(sites):
            target = [source(int(i + o), nk, b) for i, o, nk, b in zip(site, off, grid, bounds)]
            if None not in target:
                W[r, np.ravel_multi_index(tuple(target), grid)] += w[r]
    return W


def layer_bias(layer, params: dict, n: int, layer_index: int | None = None) -> np.ndarray:
    """The bias vector ``b`` (length n); zeros when the layer has none or ``"b"`` is not given."""
    ir = as_kernel_ir(layer)
    values = check_params(ir, params)
    if ir.bias is None or "b" not in values:
        return np.zeros(n)
    b = values["b"]
    if b.ndim == 2:
        if layer_index is None:
            raise ValueError("time-dependent bias: give layer_index to pick a layer")
        b = b[layer_index]
    if b.ndim == 1 and b.shape[0] != n:
        raise ValueError(f"params['b'] has {b.shape[0]} sites, expected n={n}")
    return np.broadcast_to(b, (n,)).astype(float)
