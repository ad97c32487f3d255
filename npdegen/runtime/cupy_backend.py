"""The CuPy backend: generated CUDA kernels run on an NVIDIA GPU.

A kernel is two files rendered by :mod:`npdegen.codegen.step_cuda`: the CUDA C++ source
(``.cu``) and its Python wrapper (``.py``), which offers the kernel-module interface of
:mod:`npdegen.runtime.backends` on CuPy arrays and compiles the source with ``cupy.RawModule``
on first use. Both go through the same content-hash cache as the NumPy kernels; CuPy keeps the
compiled binaries in its own cache, keyed by the source text, which carries the content hash.

CuPy is imported when the backend is first used: without CuPy or without a usable GPU,
:class:`CupyBackend` raises :class:`~npdegen.runtime.backends.BackendUnavailable` with the reason.
Rendering and ``NeuralPDE.generate(..., backend="cupy")`` need neither.
"""
from __future__ import annotations

from .backends import Backend, BackendUnavailable

__all__ = ["CupyBackend", "gpu_status"]


def gpu_status() -> tuple[object | None, str]:
    """``(cupy, description of device 0)`` if a GPU is usable, else ``(None, why not)``."""
    try:
        import cupy
    except ImportError as exc:
        return None, f"CuPy is not installed ({exc.msg}); install npdegen[cuda]"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
        if count == 0:
            return None, "CuPy found no CUDA device"
        props = cupy.cuda.runtime.getDeviceProperties(0)
    except Exception as exc:  # noqa: BLE001 - CUDARuntimeError, or a driver/library load failure
        return None, f"no usable CUDA device ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    return cupy, f"{name}, compute capability {props['major']}.{props['minor']}"


class CupyBackend(Backend):
    """Generated CUDA kernels through CuPy; ``xp`` is ``cupy``."""
    name = "cupy"

    def __init__(self):
        cupy, why = gpu_status()
        if cupy is None:
            raise BackendUnavailable(f"backend 'cupy' is unavailable: {why}")
        self.xp = cupy
        self.device = why
