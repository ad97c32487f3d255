"""npdegen on Dask: data-parallel training over a batch split across workers, and the route to
domain decomposition for fields split in space (issue 15). Needs ``pip install 'npdegen[dask]'``.

``Network.forward``, ``vjp`` and ``loss_and_grad`` hand a ``dask.array`` (or a ``dask.bag`` of
``(x, y)`` shards) to :func:`dispatch`, through the runtime's registry of foreign array types
(:data:`npdegen.runtime.network.FOREIGN`): the runtime never imports dask or this package. The route:

* chunks along the batch axis only → :mod:`~npdegen.distributed.data_parallel` (each worker its
  samples; the gradients summed in a fixed order, bit-identical for any workers and chunking);
* any chunking along a grid axis → ``npdegen.distributed.domain`` (``forward_domain``,
  ``loss_and_grad_domain``: halo exchange between the pieces of a field).

Chunks may be NumPy or CuPy arrays (GPU workers, e.g. dask-cuda's ``LocalCUDACluster``) and must be
of the network's array module (:mod:`~npdegen.distributed.arrays`: the rules and the result types).

The functions here take ``client=`` (a ``distributed.Client``; default the current one, else the
threaded scheduler) and ``block=`` (samples per canonical block) where the methods cannot.
"""
from __future__ import annotations

import importlib

try:
    import dask.array as _da
    import dask.bag as _db
except ImportError as exc:                     # pragma: no cover - the error users see without dask
    raise ImportError(f"npdegen.distributed needs dask: pip install 'npdegen[dask]' ({exc})") from None

from .data_parallel import DEFAULT_BLOCK, KINDS, forward, loss_and_grad, vjp
from .shipping import Shipped, ship

__all__ = ["dispatch", "loss_and_grad", "forward", "vjp", "ship", "Shipped", "DEFAULT_BLOCK", "KINDS",
           "grid_chunked"]

_DOMAIN = "npdegen.distributed.domain"


def grid_chunked(net, *arrays) -> bool:
    """Whether any of the dask ``arrays`` (shaped ``(batch, *grid)`` or ``grid``) has more than one
    chunk along a grid axis."""
    d = len(net.grid)
    return any(isinstance(a, _da.Array) and any(len(c) > 1 for c in a.chunks[a.ndim - d:]) for a in arrays)


def _domain():
    try:
        return importlib.import_module(_DOMAIN)
    except ModuleNotFoundError as exc:
        if exc.name != _DOMAIN:
            raise
        raise NotImplementedError("a field chunked along its grid axes needs domain decomposition "
                                  f"({_DOMAIN}), which this installation lacks; rechunk to one chunk per "
                                  "grid axis (x.rechunk({1: -1, ...})) for data-parallel runs") from None


def dispatch(net, method: str, *args, **kwargs):
    """Run ``net.<method>(*args, **kwargs)`` for dask inputs (see the module docstring).

    ``method``: ``"forward"`` ``(x, theta, trajectory=False, keep=False)``, ``"vjp"``
    ``(x, theta, cotangent)`` or ``"loss_and_grad"`` ``(x, y, theta, input_grad=False, kind="sum")``.
    """
    if method not in ("forward", "vjp", "loss_and_grad"):
        raise ValueError(f"dispatch: no dask route for Network.{method}")
    x = args[0]
    if isinstance(x, _db.Bag) and method == "vjp":
        raise TypeError("vjp takes x as a dask array (a bag has no per-sample cotangent)")
    others = {"forward": (), "vjp": args[2:3], "loss_and_grad": args[1:2]}[method]
    if not grid_chunked(net, x, *others):
        if method == "loss_and_grad" and len(args) > 1 and isinstance(args[1], _db.Bag):
            raise TypeError("y cannot be a bag: pass a bag of (x, y) shards as x with y=None")
        return {"forward": forward, "vjp": vjp, "loss_and_grad": loss_and_grad}[method](net, *args, **kwargs)
    domain = _domain()
    if method == "forward":
        if kwargs.get("trajectory") or kwargs.get("keep"):
            raise NotImplementedError("forward of a field chunked in space returns z_L only "
                                      "(trajectory=True and keep=True need one chunk per grid axis)")
        return domain.forward_domain(net, x, args[1])
    if method == "vjp":
        return domain.vjp_domain(net, x, args[1], args[2])
    kind = kwargs.get("kind", "sum")
    if kind not in ("sum", "mean"):
        raise NotImplementedError(f"a field chunked in space supports the losses 'sum' and 'mean', not {kind!r} "
                                  "(a relative loss needs every sample's norm before the adjoint)")
    x, y, theta = args[:3]
    return domain.loss_and_grad_domain(net, x, y, theta, input_grad=kwargs.get("input_grad", False), kind=kind)
