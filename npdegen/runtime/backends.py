"""Backends: where rendered kernels are stored, loaded and run.

A backend turns a :class:`~npdegen.derive.kernel.KernelIR` and
:class:`~npdegen.codegen.render.KernelOptions` into a loaded kernel module, and names the array
module its arrays live in (``xp``). Every kernel module offers the same interface, which the
:class:`~npdegen.runtime.network.Network` calls:

``workspace(batch, n, dtype, threads)`` → work; ``fill_halo(zp)``;
``step(zp, out, theta, layer, Delta, omega, alpha, work)``;
``step_adjoint(zp, lam, theta, layer, Delta, omega, alpha, grads, work)``;
``forward(traj, theta, Delta, omega, alpha, work)``;
``adjoint(traj, lam, theta, Delta, omega, alpha, grads, work)``.

All backends share the one content-hash cache of :mod:`npdegen.runtime.cache`. A new backend is
a class here (or in its own module) added to :data:`BACKENDS`.
"""
from __future__ import annotations

from types import ModuleType

import numpy

from ..codegen.render import KernelOptions, render
from ..derive.kernel import KernelIR
from .cache import load_module, stamp

__all__ = ["Backend", "NumpyBackend", "BACKENDS", "BackendUnavailable", "get_backend", "kernel_filename"]


class BackendUnavailable(RuntimeError):
    """The backend's runtime (a package or a device) is missing on this machine."""


def kernel_filename(ir: KernelIR, options: KernelOptions, key: str | None = None) -> str:
    """``<layer>_<backend>_<boundary>_<dtype>[_<key>]`` (no suffix): readable, unique with a key."""
    parts = [ir.name, options.backend, options.boundary, options.dtype]
    if options.normalise:
        parts.append("normalised")
    if options.train_omega:
        parts.append("omega")
    if key:
        parts.append(key[:16])
    return "_".join(parts)


class Backend:
    """Renders with its code-generation target, caches, imports. Subclasses set ``name`` and ``xp``."""
    name = "numpy"
    xp: ModuleType = numpy

    def load(self, ir: KernelIR, options: KernelOptions) -> ModuleType:
        rendered = render(ir, options)
        stem = kernel_filename(ir, options, rendered.key)
        return load_module(rendered.key, stem, lambda: {s: stamp(t) for s, t in rendered.files.items()})


class NumpyBackend(Backend):
    name = "numpy"
    xp = numpy


#: Backend classes by name; instantiated on first use (a missing package raises BackendUnavailable).
BACKENDS: dict[str, type] = {"numpy": NumpyBackend}
_instances: dict[str, Backend] = {}


def get_backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; available: {', '.join(BACKENDS)}")
    if name not in _instances:
        _instances[name] = BACKENDS[name]()
    return _instances[name]
