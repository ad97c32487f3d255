"""The CUDA backend without a GPU.

1. Every 1-D linear layer's step-IR CUDA source compiles with NVRTC to PTX for compute_90 and
   compute_80 (``cupy_backends.cuda.libs.nvrtc``: createProgram / compileProgram / getPTX), so a
   syntax or type error in a template fails. Matrix: parameter families (3 rotations of U, D, R and
   the bias) × activations (6 built-in, 3 custom) × boundaries × dtypes, with (normalise,
   train_omega) cycling through its 4 values, plus halo 2 and 3 and one-sided stencils: 174
   sources, all compiled for compute_90 and every third for compute_80, with ``-G`` (no
   optimisation: the front end, which finds syntax and type errors, is the same, and it is 5x
   faster). Six sources, one per boundary × dtype, are also compiled with the options CuPy uses at
   run time for both architectures. NVRTC holds the GIL, and on the 2-core machine this was
   written on two processes were no faster than one, so the compiles run in turn (about 25 s).
2. The CPU emulator of generated CUDA: g++ compiles a source with a small CUDA shim (one Python
   thread per CUDA thread, ``__syncthreads`` a barrier) and the wrapper imports a NumPy stand-in for
   CuPy. ``test_step_cuda.py`` runs it inside a Network for every layer kind (1-D linear included)
   against the NumPy backend; the GPU itself is tested there and in ``test_cuda_gpu.py``.
3. The printer, ``generate(backend="cupy")`` without a GPU, the source's checks, backend selection.

Parts skip (one line saying why) without CuPy's NVRTC bindings or without a C++20 g++.
"""
import ctypes
import functools
import hashlib
import itertools
import logging
import re
import shutil
import subprocess
import sys
import threading
import types
from dataclasses import replace

import numpy as np
import pytest
import sympy as sp

import npdegen
from npdegen.codegen.cuda_printer import CudaPrinter
from npdegen.codegen.step_render import StepOptions, render_step
from npdegen.runtime import backends
from npdegen.runtime.cache import stamp

FAMILIES = ("homogeneous", "heterogeneous", "time-dependent")
BOUNDARIES = ("periodic", "dirichlet", "neumann")
DTYPES = ("float32", "float64")
FLAGS = ((False, False), (True, True), (False, True), (True, False))   # (normalise, train_omega)
_s = sp.Symbol("s")
ACTIVATIONS = ("identity", "tanh", "sigmoid", "relu", "softplus", "square",
               sp.sin(_s) + _s**3 / 10, _s / (1 + sp.Abs(_s)), sp.Lambda(_s, sp.atan(2 * _s)))
WIDE = (dict(accuracy=4), dict(accuracy=6), dict(offsets=(-2, -1, 0), accuracy=None),
        dict(offsets=(0, 1, 2), accuracy=None))
KERNELS = ("fill_halo", "forward_step", "adjoint_site", "reduce_partials", "adjoint_gather", "assemble",
           "finish_homogeneous")


def KernelOptions(backend="cupy", boundary="periodic", dtype="float64", normalise=False, train_omega=False):
    """The step options of a 1-D CUDA kernel."""
    return StepOptions(backend, (boundary,), dtype, normalise, train_omega)
ARCHS = ("90", "80")


def make_layer(rotation, activation, **kw):
    """The neural ADR layer with U, D, R in the families rotated by `rotation`, bias in FAMILIES[rotation]."""
    q = sp.Symbol("q")
    z = sp.Function("z")(q)
    U, D, R = sp.symbols("U D R")
    params = {sym: FAMILIES[(k + rotation) % 3] for k, sym in enumerate((U, D, R))}
    return npdegen.NeuralPDE(z + R * z - U * z.diff(q) + D * z.diff(q, 2), z, activation=activation,
                             params=params, bias=FAMILIES[rotation], **kw)


def matrix():
    """(layer factory arguments, KernelOptions) for every source of the NVRTC matrix."""
    cases = []
    for i, (rotation, act, boundary, dtype) in enumerate(itertools.product(range(3), range(len(ACTIVATIONS)),
                                                                           BOUNDARIES, DTYPES)):
        normalise, train_omega = FLAGS[i % 4]
        cases.append(((rotation, act, None), KernelOptions("cupy", boundary, dtype, normalise, train_omega)))
    for i, (wide, boundary) in enumerate(itertools.product(range(len(WIDE)), BOUNDARIES)):
        cases.append(((1, 1, wide), KernelOptions("cupy", boundary, DTYPES[i % 2], *FLAGS[i % 4])))
    return cases


_layers = {}


@functools.lru_cache(maxsize=None)
def source(args, options):
    if args not in _layers:
        rotation, act, wide = args
        _layers[args] = make_layer(rotation, ACTIVATIONS[act], **(WIDE[wide] if wide is not None else {}))
    return render_step(_layers[args].lowered, options)


# ---------------------------------------------------------------------------- 1. NVRTC
def _nvrtc():
    try:
        from cupy_backends.cuda.libs import nvrtc
        nvrtc.getVersion()
        return nvrtc, ""
    except Exception as exc:  # noqa: BLE001 - ImportError, or the NVRTC library missing
        why = (str(exc).splitlines() or [""])[0]
        return None, f"NVRTC unavailable ({type(exc).__name__}: {why}); pip install cupy-cuda13x nvidia-cuda-nvrtc"


NVRTC, NVRTC_MISSING = _nvrtc()


def compile_job(code, arch, fast):
    """(None, kernel entry names in the PTX) or (NVRTC's log, None), for compute_<arch>."""
    prog = NVRTC.createProgram(code, "kernels.cu", [], [])
    try:
        NVRTC.compileProgram(prog, [f"--gpu-architecture=compute_{arch}", "--std=c++17", *(["-G"] if fast else [])])
        text = NVRTC.getPTX(prog)
        text = text.decode() if isinstance(text, bytes) else text
        return None, sorted(set(re.findall(r"\.entry (\w+)\(", text)))
    except NVRTC.NVRTCError:
        return NVRTC.getProgramLog(prog), None
    finally:
        NVRTC.destroyProgram(prog)


needs_nvrtc = pytest.mark.skipif(NVRTC is None, reason=NVRTC_MISSING)


def check_compiles(case, arch, fast):
    args, options = case
    log, entries = compile_job(source(args, options).files[".cu"], arch, fast)
    assert log is None, f"NVRTC (compute_{arch}) rejected the source of {args} {options}:\n{log}"
    assert set(KERNELS) <= set(entries), (args, options, entries)
    assert ("row_partials" in entries) == options.normalise


@needs_nvrtc
@pytest.mark.slow
def test_every_source_compiles():
    """The whole matrix for compute_90, every third source for compute_80 (about 25 s)."""
    for i, case in enumerate(matrix()):
        check_compiles(case, "90", fast=True)
        if i % 3 == 0:
            check_compiles(case, "80", fast=True)


@needs_nvrtc
@pytest.mark.parametrize("arch", ARCHS)
def test_sources_compile_with_the_runtime_options(arch):
    for i, (boundary, dtype) in enumerate(itertools.product(BOUNDARIES, DTYPES)):
        check_compiles(((i % 3, i % len(ACTIVATIONS), None), KernelOptions("cupy", boundary, dtype, *FLAGS[i % 2])),
                       arch, fast=False)


# ---------------------------------------------------------------------------- 2. on the CPU
SHIM = r"""
#include <math.h>
#include <cmath>
#include <barrier>
#include <mutex>
struct emu_dim3 { unsigned x = 0, y = 0, z = 0; };
static emu_dim3 blockIdx, gridDim, blockDim;
static thread_local emu_dim3 threadIdx;
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)
static std::barrier<> emu_barrier(256);
#define __syncthreads() emu_barrier.arrive_and_wait()
static std::mutex emu_mutex;
template <class T> T atomicAdd(T* p, T v) { std::lock_guard<std::mutex> g(emu_mutex); T old = *p; *p += v; return old; }
extern "C" void emu_block(unsigned bx, unsigned by, unsigned gx, unsigned gy) {
    blockIdx.x = bx; blockIdx.y = by; gridDim.x = gx; gridDim.y = gy; blockDim.x = 256; }
extern "C" void emu_thread(unsigned t) { threadIdx.x = t; }
"""
_CTYPES = {np.int32: ctypes.c_int, np.int64: ctypes.c_longlong, np.float32: ctypes.c_float,
           np.float64: ctypes.c_double}


class Threads:
    """256 persistent threads: run(job) calls job(t) in thread t for every t and waits for them."""

    def __init__(self):
        self.start, self.done, self.job = threading.Barrier(257), threading.Barrier(257), None
        for t in range(256):
            threading.Thread(target=self._serve, args=(t,), daemon=True).start()

    def _serve(self, t):
        while True:
            self.start.wait()
            self.job(t)
            self.done.wait()

    def run(self, job):
        self.job = job
        self.start.wait()
        self.done.wait()


class EmulatedModule:
    """cupy.RawModule stand-in: the source built with g++ and the shim; a launch runs the blocks in
    turn, each on the 256 threads (ctypes releases the GIL, so they meet at the barrier)."""
    folder = threads = None

    def __init__(self, code, options=()):
        key = hashlib.sha256(code.encode()).hexdigest()[:24]
        lib = self.folder / f"{key}.so"
        if not lib.exists():
            (self.folder / f"{key}.cpp").write_text(SHIM + code)
            subprocess.run(["g++", "-std=c++20", "-O1", "-shared", "-fPIC", "-o", str(lib), str(self.folder / f"{key}.cpp")],
                           check=True, capture_output=True)
        self.lib = ctypes.CDLL(str(lib))

    def get_function(self, name):
        fn = getattr(self.lib, name)

        def launch(grid, block, args):
            assert tuple(block) == (256,)
            gx, gy = (*grid, 1)[:2]
            cargs = [ctypes.c_void_p(a.ctypes.data) if isinstance(a, np.ndarray) else _CTYPES[type(a)](a) for a in args]
            for by, bx in itertools.product(range(gy), range(gx)):
                self.lib.emu_block(bx, by, gx, gy)
                self.threads.run(lambda t: (self.lib.emu_thread(t), fn(*cargs)))
        return launch


def fake_cupy():
    cp = types.ModuleType("cupy")
    cp.ndarray, cp.empty, cp.asarray, cp.ascontiguousarray = np.ndarray, np.empty, np.asarray, np.ascontiguousarray
    cp.RawModule = EmulatedModule
    cp.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDevice=lambda: 0))
    return cp


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    if shutil.which("g++") is None:
        pytest.skip("no g++ to run the CUDA source on the CPU")
    folder = tmp_path_factory.mktemp("cuda-on-cpu")
    probe = folder / "probe.cpp"
    probe.write_text(SHIM)
    if subprocess.run(["g++", "-std=c++20", "-fsyntax-only", str(probe)], capture_output=True).returncode:
        pytest.skip("g++ lacks C++20 <barrier>: cannot run the CUDA source on the CPU")
    EmulatedModule.folder, EmulatedModule.threads = folder, EmulatedModule.threads or Threads()
    return folder


def load_wrapper(rendered, folder, stem="kernel", monkeypatch=None):
    """Write the stamped files as the cache does and import the wrapper with the NumPy stand-in for CuPy."""
    for suffix, text in rendered.files.items():
        (folder / f"{stem}{suffix}").write_text(stamp(text))
    module = types.ModuleType(f"emulated_{stem}")
    module.__file__ = str(folder / f"{stem}.py")
    saved = sys.modules.get("cupy")
    sys.modules["cupy"] = fake_cupy()
    try:
        exec(compile(rendered.files[".py"], module.__file__, "exec"), module.__dict__)  # noqa: S102
    finally:
        if saved is None:
            del sys.modules["cupy"]
        else:
            sys.modules["cupy"] = saved
    return module


# ---------------------------------------------------------------------------- 3. printer, files, backends
def test_printer_precision():
    x, D, Delta = sp.symbols("x D Delta")
    single, double = CudaPrinter("float32"), CudaPrinter("float64")
    assert single.doprint(sp.tanh(x) + sp.exp(-x) + sp.Rational(1, 2)) == "tanhf(x) + 1.0f/2.0f + expf(-x)"
    assert double.doprint(sp.tanh(x) + sp.exp(-x) + sp.Rational(1, 2)) == "tanh(x) + 1.0/2.0 + exp(-x)"
    assert single.doprint(D / Delta**2) == "D/(Delta*Delta)"
    assert single.doprint(sp.Heaviside(x)) == "((x) > 0 ? 1.0f : ((x) < 0 ? 0.0f : 0.5f))"
    assert double.doprint(sp.pi * x) == "3.1415926535897932*x"
    assert "M_" not in single.doprint(sp.sqrt(2) * sp.E * x)


def test_generate_writes_the_cuda_files_without_a_gpu(tmp_path):
    layer = make_layer(1, "softplus")
    paths = layer.generate(tmp_path, backend="cupy", boundary="neumann", dtype="float32", alpha=0.1)
    assert sorted(p.suffix for p in paths) == [".cu", ".py"]
    cu = next(p for p in paths if p.suffix == ".cu").read_text()
    py = next(p for p in paths if p.suffix == ".py").read_text()
    from npdegen.codegen.step_render import StepOptions, render_step
    key = render_step(layer.lowered, StepOptions("cupy", ("neumann",), "float32", True)).key
    for text in (cu, py):
        assert f"content-hash: {key}" in text
    assert "Derivation (SymPy" in cu and "typedef float real;" in cu and "log1pf(expf(-fabsf(" in cu
    for needle in ("def forward", "def adjoint", "def step_adjoint", "def workspace", "def fill_halo"):
        assert needle in py


def test_cache_key_changes_exactly_with_the_source():
    layer = make_layer(0, "tanh")
    a, b = (render_step(layer.lowered, KernelOptions("cupy", dtype=d)) for d in DTYPES)
    again = render_step(make_layer(0, "tanh").lowered, KernelOptions("cupy", dtype="float32"))
    assert a.files == again.files and a.key == again.key
    assert a.key != b.key and a.files[".cu"] != b.files[".cu"]
    assert f"content-hash: {a.key}" in a.files[".cu"]


def test_backend_selection_without_a_gpu(caplog):
    from npdegen.runtime.cupy_backend import gpu_status
    cupy, why = gpu_status()
    if cupy is not None:
        pytest.skip(f"a GPU is usable here ({why})")
    with pytest.raises(backends.BackendUnavailable, match="backend 'cupy' is unavailable") as info:
        backends.get_backend("cupy")
    assert "\n" not in str(info.value)
    backends._instances.pop("auto", None)
    with caplog.at_level(logging.INFO, logger="npdegen"):
        assert backends.get_backend("auto").name == "numpy"
    assert [r.getMessage() for r in caplog.records if "backend 'auto'" in r.getMessage()][0].startswith(
        "backend 'auto': using numpy")
