"""Which array module a task computes with: the module of its chunk, checked against the network's.

A network runs its kernels on one array module, ``net.xp``: ``numpy`` for the numpy and numba
backends, ``cupy`` for ``backend="cupy"`` (a GPU). A dask array names the type of its chunks by its
``_meta``, an empty array of that type (``da.from_array(cupy_array)`` or
``x.map_blocks(cupy.asarray)`` give CuPy chunks). The rules:

* **Chunks and network agree.** Each task hands its chunk to the network's kernels as it is, and
  allocates what it adds (the extended block of a halo gather ``P_c x``, the fold ``P_cᵀ e``, the
  cotangent, the float64 gradient sums) with the chunk's own module, :func:`array_module`: CuPy
  chunks stay on the GPU inside the loop. A mismatch is a :class:`TypeError` naming both, never a
  silent conversion (that would copy every chunk between host and device at every call, hidden in
  the graph). Convert explicitly, once, and persist: ``x.map_blocks(cupy.asarray).persist()`` for a
  CuPy network, ``x.map_blocks(cupy.asnumpy).persist()`` for a NumPy one; or compile the layer for
  the chunks' module (``backend="cupy"`` or ``"numpy"``/``"numba"``).
* **Results keep the chunks' type.** Gradients come back as arrays of the chunks' module (CuPy
  arrays on the caller's current device for CuPy chunks, as ``net.loss_and_grad`` of a CuPy
  network returns them); forward outputs and input gradients that stay distributed are dask arrays
  with chunks of that module. The loss is a Python float: each block brings its partial loss to the
  host with one explicit ``float()`` (a scalar), and the finiteness checks read one bool per array.
* **Parameters travel as NumPy.** ``theta`` (NumPy or CuPy, as ``net.check_params`` takes it) is
  put into the task graph as host arrays (:func:`host_params`, one explicit copy per call): the
  scheduler of a GPU cluster often has no GPU and must be able to unpickle the graph. Each task's
  network copies its (small) parameters to its device once per task, never per layer.

The module is told by the class of the array (or of the dask array's ``_meta``): its top-level
package, ``numpy`` or ``cupy``. Host sequences and scalars count as NumPy; anything else is refused.
"""
from __future__ import annotations

import importlib

import numpy as np

__all__ = ["module_name", "network_module", "array_module", "require", "host_params"]

#: The array modules npdegen runs, by top-level package name (CuPy is imported on first use).
MODULES: dict = {"numpy": np}
_HOST = ("builtins",)                    # lists, tuples, Python scalars: host data, as np.asarray reads them


def _meta(a):
    """The dask array's ``_meta`` (an empty array of its chunks' type), else ``a`` itself."""
    return a._meta if type(a).__module__.startswith("dask.") and hasattr(a, "_meta") else a


def module_name(a) -> str:
    """``"numpy"`` or ``"cupy"``: the module of array ``a``, or of the chunks of dask array ``a``."""
    root = type(_meta(a)).__module__.partition(".")[0]
    if root in _HOST:
        return "numpy"
    if root not in ("numpy", "cupy"):
        raise TypeError(f"arrays of type {type(_meta(a)).__module__}.{type(_meta(a)).__qualname__}: npdegen runs "
                        "NumPy or CuPy arrays (dask chunks of either)")
    return root


def network_module(net) -> str:
    """The array module of the network's kernels, ``net.xp``: ``"numpy"`` or ``"cupy"``."""
    return net.xp.__name__.partition(".")[0]


def array_module(a):
    """The module (``numpy`` or ``cupy``) that makes arrays like ``a``: what a task allocates with."""
    name = module_name(a)
    module = MODULES.get(name)
    if module is None:
        module = MODULES[name] = importlib.import_module(name)
    return module


_FIX = {("cupy", "numpy"): "compile the layer with backend='cupy', or move the chunks to the host once: "
                           "x = x.map_blocks(cupy.asnumpy).persist()",
        ("numpy", "cupy"): "move the chunks to the GPU once: x = x.map_blocks(cupy.asarray).persist() "
                           "(da.from_array(cupy.asarray(a)) for an array in memory), or compile the layer with "
                           "backend='numpy' or 'numba'"}


def require(net, **arrays) -> str:
    """The network's module name, after checking that every given array (dask or in memory; None is
    skipped) is of it: a TypeError naming both and the explicit conversion otherwise."""
    want = network_module(net)
    for what, a in arrays.items():
        if a is None:
            continue
        have = module_name(a)
        if have != want:
            kind = "chunks" if a is not _meta(a) else "arrays"
            raise TypeError(f"{what} has {'CuPy' if have == 'cupy' else 'NumPy'} {kind} ({have}) but the network "
                            f"runs {'CuPy' if want == 'cupy' else 'NumPy'} kernels (backend {net.backend.name!r}, "
                            f"module {want}): npdegen does not convert between host and GPU silently; "
                            + _FIX.get((have, want), "use arrays of the network's module"))
    return want


def host_params(theta: dict) -> dict:
    """``theta`` with every CuPy array copied to the host (``.get()``); NumPy arrays as they are."""
    return {k: v.get() if module_name(v) == "cupy" else v for k, v in theta.items()}
