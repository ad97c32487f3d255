"""Backends: where rendered kernels are stored, loaded and run.

A backend turns a lowered step IR (:class:`~npdegen.ir.lower.LoweredStep`) and
:class:`~npdegen.codegen.step_render.StepOptions` into a loaded kernel module, and names the array
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

import importlib
import logging
from types import ModuleType

import numpy

from .cache import load_module, stamp

__all__ = ["Backend", "NumpyBackend", "BACKENDS", "BackendUnavailable", "get_backend", "step_filename"]


class BackendUnavailable(RuntimeError):
    """The backend's runtime (a package or a device) is missing on this machine."""


def _filename(parts: list, options, key: str | None) -> str:
    """``parts`` + the option flags + 16 characters of the content key, joined by ``_``."""
    flags = [f for f, on in (("normalised", options.normalise), ("omega", options.train_omega)) if on]
    return "_".join([*parts, *flags, *([key[:16]] if key else [])])


class Backend:
    """Renders with its code-generation target, caches, imports. Subclasses set ``name`` and ``xp``."""
    name = "numpy"
    xp: ModuleType = numpy

    def load_step(self, lowered, options) -> ModuleType:
        """Load (rendering on a cache miss) the step-IR kernel of a lowered layer."""
        from ..codegen.step_render import render_step, step_content_key, step_target
        key = step_content_key(lowered, options)
        suffixes = [suffix for suffix, _ in step_target(options.backend).files]
        return load_module(key, step_filename(lowered, options, key),
                           lambda: {s: stamp(t, s) for s, t in render_step(lowered, options).files.items()}, suffixes)


def step_filename(lowered, options, key: str | None = None) -> str:
    """``<layer>_<backend>_<d>d_<boundaries>_<dtype>[_<key>]`` for step-IR kernels."""
    ir = lowered.ir
    bounds = options.boundary[0] if len(set(options.boundary)) == 1 else "-".join(options.boundary)
    return _filename([ir.name, options.backend, f"{ir.dim}d", bounds, options.dtype], options, key)


class NumpyBackend(Backend):
    name = "numpy"
    xp = numpy


#: Backends by name: a class, a factory, or ``"module:attribute"`` imported on first use (registered
#: lazily by module path, so this module imports no backend and no backend imports cycle back).
#: ``"numba"`` maps to a factory that falls back to the NumPy backend, with one log line, without numba.
BACKENDS: dict[str, object] = {"numpy": NumpyBackend,
                               "cupy": "npdegen.runtime.cupy_backend:CupyBackend",
                               "numba": "npdegen.runtime.numba_backend:numba_or_numpy"}
_instances: dict[str, Backend] = {}


def _factory(name: str):
    factory = BACKENDS[name]
    if isinstance(factory, str):
        module, attribute = factory.split(":")
        factory = BACKENDS[name] = getattr(importlib.import_module(module), attribute)
    return factory


def get_backend(name: str) -> Backend:
    """The backend ``name`` (one instance per process; a missing package raises BackendUnavailable)."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; available: {', '.join(BACKENDS)}")
    if name not in _instances:
        _instances[name] = _factory(name)()
    return _instances[name]


def _auto_backend() -> Backend:
    """``"auto"``: CuPy where a GPU is usable, NumPy otherwise; one log line says which."""
    try:
        backend = _factory("cupy")()
    except BackendUnavailable as exc:
        logging.getLogger("npdegen").info("backend 'auto': using numpy (%s)", exc)
        return NumpyBackend()
    logging.getLogger("npdegen").info("backend 'auto': using cupy on %s", backend.device)
    return backend


BACKENDS["auto"] = _auto_backend
