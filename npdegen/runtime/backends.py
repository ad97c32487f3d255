"""Backends: where rendered kernels are stored, loaded and run.

A backend turns a :class:`~npdegen.derive.kernel.KernelIR` and
:class:`~npdegen.codegen.render.KernelOptions` into a loaded kernel module with the uniform
interface the :class:`~npdegen.runtime.network.Network` calls (``forward``, ``adjoint``,
``step``, ``step_adjoint``, ``fill_halo``), and names the array module it runs on.
Every backend shares the one content-hash cache of :mod:`npdegen.runtime.cache`.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import numpy

from ..codegen.render import KernelOptions, render
from ..derive.kernel import KernelIR
from .cache import load_module, stamp

__all__ = ["Backend", "get_backend", "kernel_filename"]


def kernel_filename(ir: KernelIR, options: KernelOptions, key: str | None = None, suffix: str = ".py") -> str:
    """``<layer>_<backend>_<boundary>_<dtype>[_<key>]<suffix>``: readable, and unique with a key."""
    parts = [ir.name, options.backend, options.boundary, options.dtype]
    if options.normalise:
        parts.append("normalised")
    if options.train_omega:
        parts.append("omega")
    if key:
        parts.append(key[:16])
    return "_".join(parts) + suffix


@dataclass(frozen=True)
class Backend:
    name: str
    xp: ModuleType            # the array module kernels run on

    def load(self, ir: KernelIR, options: KernelOptions) -> ModuleType:
        rendered = render(ir, options)
        filename = kernel_filename(ir, options, rendered.key, rendered.suffix)
        return load_module(rendered.key, filename, lambda: stamp(rendered.source))


_BACKENDS = {"numpy": Backend("numpy", numpy)}


def get_backend(name: str) -> Backend:
    try:
        return _BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; available: {', '.join(_BACKENDS)}") from None
