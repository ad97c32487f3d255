"""The numba backend: the step IR's generated loops (``templates/step_numba/``), compiled just in time, cached on disk.

numba is an optional extra (``pip install npdegen[fast]``). :func:`numba_or_numpy`, which
:data:`~npdegen.runtime.backends.BACKENDS` holds under ``"numba"``, returns a :class:`NumbaBackend`
when numba imports, else the NumPy backend after one log line.

Loading: the rendered module goes through the verified content-hash cache of
:mod:`npdegen.runtime.cache` like every kernel, so its functions' code objects carry the cached
file's real path. numba's ``cache=True`` keys its on-disk cache by that path, the function's name
and the file's modification time and size: a second process loading the same kernel finds the
machine code there instead of compiling (``benchmarks/bench_fast_cpu.py`` measures both). That
cache is always ``__pycache__`` beside the kernel, inside npdegen's checked private cache folder:
while the module runs its decorators, :mod:`npdegen.runtime.cache` sets ``$NUMBA_CACHE_DIR``
aside, because numba unpickles its index files unchecked and a shared numba folder would let
another user's files run here. numba compiles on a kernel's first call (10-20 s for a layer's
functions): when its machine code is not cached yet (the file was just written, or numba has no
index for it in ``__pycache__``), loading says so on one WARNING line of the ``"npdegen"`` logger,
``npdegen: compiling numba kernel <name> (first use, ~10-20 s; cached afterwards)`` — on stderr when
logging is not configured, so in notebooks too; a warm cache and a second load stay silent.

Threads: numba's pool (``NUMBA_NUM_THREADS``, default all cores) caps the ``threads`` a
:class:`~npdegen.runtime.network.Network` asks for; problems under the kernel's
``THREAD_MIN_SIZE`` values per layer run the serial loops. A layer is a few parallel loops, called
from a compiled layer loop, so the launch cost matters: numba's default OpenMP layer
launches in microseconds (its idle workers spin), ``workqueue`` or ``OMP_WAIT_POLICY=passive``
in ~0.1 ms. On a machine whose cores are busy with other processes, spinning workers can instead
stall a launch for a scheduler time slice: there, set ``OMP_WAIT_POLICY=passive`` (or
``NUMBA_THREADING_LAYER=workqueue``) or use one thread. Measurements: benchmarks/RESULTS.md.
"""
from __future__ import annotations

import logging

import numpy

from .backends import Backend

__all__ = ["NumbaBackend", "numba_or_numpy"]

log = logging.getLogger("npdegen")


class NumbaBackend(Backend):
    """Kernels from ``templates/step_numba/``; arrays are NumPy arrays."""
    name = "numba"
    xp = numpy

    def __init__(self):
        import numba  # noqa: F401  (numba_or_numpy handles its absence)


def numba_or_numpy() -> Backend:
    """A :class:`NumbaBackend`, or, without numba, the NumPy backend (logged once: the instance is kept)."""
    try:
        return NumbaBackend()
    except ImportError as exc:
        from .backends import get_backend
        log.warning("npdegen: numba is not installed (%s); backend 'numba' runs the NumPy backend "
                    "(pip install 'npdegen[fast]' for the compiled one)", exc)
        return get_backend("numpy")
