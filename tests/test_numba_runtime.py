"""The numba backend's runtime: fallback without numba, the on-disk JIT cache, threads, the parallel
loops, float32 with the fast forms, code generation without numba, and checkpointing (which is
backend-independent: tested on the NumPy backend too)."""
import logging
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
import sympy as sp

import npdegen
from npdegen.codegen.step_render import StepOptions, render_step
from npdegen.runtime import backends
from npdegen.runtime.numba_backend import numba_or_numpy

try:
    import numba  # noqa: F401
    HAVE_NUMBA = True
except ImportError:
    HAVE_NUMBA = False
needs_numba = pytest.mark.skipif(not HAVE_NUMBA, reason="numba is not installed (pip install 'npdegen[fast]')")


def adr_layer(activation="tanh", families=("heterogeneous", "homogeneous", "time-dependent"), bias="heterogeneous",
              **layer_kw):
    q = sp.Symbol("q")
    z = sp.Function("z")(q)
    U, D, R = sp.symbols("U D R")
    return npdegen.NeuralPDE(z + R * z - U * z.diff(q) + D * z.diff(q, 2), z, activation=activation,
                             params=dict(zip((U, D, R), families)), bias=bias, **layer_kw)


def case_net(name, **kw):
    """A network of one of the kernels tests/test_numba_gradients.py compiles (shared in a session)."""
    from test_numba_gradients import build
    q = sp.Symbol("q")
    return build((q, sp.Function("z")(q), *sp.symbols("U D R")), name, **kw)[2]


def data(rng, batch, n, dtype=np.float64):
    return (rng.uniform(-1, 1, (batch, n)).astype(dtype), rng.uniform(-1, 1, (batch, n)).astype(dtype))


def params(net):
    return net.init_params(seed=2, scale=0.05, values={k: v for k, v in {"U": 0.3, "D": 0.15, "R": -0.1, "b": 0.1}.items()
                                                       if k in net.shapes})


# ---------------------------------------------------------------------------- without numba
def test_fallback_to_numpy_with_one_log_line(monkeypatch, caplog):
    """No numba: backend "numba" is the NumPy backend, said once, and compile() works on it."""
    monkeypatch.setitem(sys.modules, "numba", None)          # `import numba` now raises ImportError
    monkeypatch.setattr(backends, "_instances", {})
    with caplog.at_level(logging.WARNING, logger="npdegen"):
        assert numba_or_numpy().name == "numpy"
        caplog.clear()
        layer = adr_layer()
        nets = [layer.compile(n=9, layers=2, backend="numba", activations="fast") for _ in range(2)]
    assert len([r for r in caplog.records if "numba is not installed" in r.getMessage()]) == 1
    for net in nets:
        assert net.backend.name == "numpy" and net.options.backend == "numpy"
    x = np.linspace(-1, 1, 9)
    np.testing.assert_allclose(nets[0].forward(x, params(nets[0])),
                               layer.compile(n=9, layers=2).forward(x, params(nets[0])), rtol=0, atol=0)


@pytest.mark.parametrize("normalise", [False, True])
@pytest.mark.parametrize("train_omega", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("boundary", ["periodic", "dirichlet", "neumann"])
def test_every_option_renders_valid_python(boundary, dtype, train_omega, normalise):
    """Rendering needs no numba; every combination is valid Python with its header."""
    for families, bias in ((("heterogeneous", "homogeneous", "time-dependent"), "homogeneous"),
                           (("heterogeneous", "heterogeneous", "homogeneous"), "time-dependent")):
        low = adr_layer("softplus", families, bias).lowered
        for activations in ("auto", "exact"):
            rendered = render_step(low, StepOptions(backend="numba", boundary=(boundary,), dtype=dtype,
                                                    normalise=normalise, train_omega=train_omega,
                                                    activations=activations))
            compile(rendered.source, "<numba kernel>", "exec")
            assert f"content-hash: {rendered.key}" in rendered.source and "backend: numba" in rendered.source


def test_option_validation():
    layer = adr_layer()
    with pytest.raises(ValueError, match="activations"):
        layer.compile(n=9, backend="numba", activations="quick")
    for bad in (0, -2, 1.5, True, "8"):
        with pytest.raises(ValueError, match="checkpoint"):
            layer.compile(n=9, layers=4, checkpoint=bad)
    # the content key covers the code options the numba target adds
    low = layer.lowered
    assert (render_step(low, StepOptions(backend="numba")).key
            != render_step(low, StepOptions(backend="numba", activations="exact")).key)


def test_cli_generates_a_numba_kernel(tmp_path):
    out = subprocess.run([sys.executable, "-m", "npdegen.cli", "generate", "examples/adr.toml", "--backend", "numba",
                          "--out", str(tmp_path)], capture_output=True, text=True, cwd=str(pytest_root()))
    assert out.returncode == 0, out.stderr
    (path,) = tmp_path.glob("*.py")
    assert "numba" in path.name
    compile(path.read_text(), str(path), "exec")


def pytest_root():
    from pathlib import Path
    return Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------- checkpointing (any backend)
@pytest.mark.parametrize("backend", ["numpy", pytest.param("numba", marks=needs_numba)])
def test_checkpointing_gives_the_same_gradients(rng, backend):
    """Time-dependent parameters (and bias), soft normalisation, trained ω; segments of 1, of several
    layers, uneven, and longer than the network."""
    if backend == "numpy":       # time-dependent bias and D, one-sided stencil, Neumann
        layer = adr_layer("sigmoid", ("homogeneous", "time-dependent", "heterogeneous"), "time-dependent",
                          offsets=(0, 1, 2), accuracy=None)
        kw = dict(boundary="neumann", alpha=0.1, train_omega=True)
    else:                        # the kernel of the tanh case of test_numba_gradients.py (time-dependent U)
        layer = adr_layer("tanh", ("time-dependent", "heterogeneous", "homogeneous"), "heterogeneous")
        kw = dict(boundary="dirichlet", alpha=0.1, train_omega=True, activations="exact")
    x, y = data(rng, 3, 12)
    kw.update(n=12, spacing=0.8, omega=0.7, backend=backend)
    for L, k in ((7, 3), (8, 4), (5, 1), (6, 5), (4, 9)):
        plain = layer.compile(layers=L, **kw)
        ckpt = layer.compile(layers=L, checkpoint=k, **kw)
        theta = params(plain)
        loss0, g0 = plain.loss_and_grad(x, y, theta, input_grad=True)
        loss1, g1 = ckpt.loss_and_grad(x, y, theta, input_grad=True)
        assert loss1 == pytest.approx(loss0, rel=1e-14)
        for key in g0:
            np.testing.assert_allclose(g1[key], g0[key], rtol=1e-13, atol=1e-15)
        np.testing.assert_array_equal(ckpt.forward(x, theta), plain.forward(x, theta))
        dx1, v1 = ckpt.vjp(x, theta, y)
        dx0, v0 = plain.vjp(x, theta, y)
        np.testing.assert_allclose(dx1, dx0, rtol=1e-13, atol=1e-15)
        for key in v0:
            np.testing.assert_allclose(v1[key], v0[key], rtol=1e-13, atol=1e-15)
        assert "checkpoint=" in repr(ckpt)


def test_checkpointing_saves_memory(rng):
    """Peak memory of a first call (kept buffers included): L = 32 layers with k = 4 keeps
    8 checkpoints + a 5-state segment instead of 33 states."""
    layer = adr_layer("tanh", ("heterogeneous",) * 3)
    x, y = data(rng, 16, 2048)
    peaks = {}
    for k in (None, 4):
        net = layer.compile(n=2048, layers=32, omega=0.5, checkpoint=k)
        theta = params(net)
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        net.loss_and_grad(x, y, theta)
        peaks[k] = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
    state = 16 * 2050 * 8
    assert peaks[None] >= 33 * state, peaks[None] / state
    assert peaks[None] - peaks[4] >= (33 - 13 - 1) * state, {k: v / state for k, v in peaks.items()}


def test_returned_arrays_do_not_alias_kept_buffers(rng):
    """The trajectory buffer is reused between calls: nothing returned may be a view of it
    (halo 0 makes the interior the whole buffer)."""
    q = sp.Symbol("q")
    z = sp.Function("z")(q)
    R = sp.Symbol("R")
    net = npdegen.NeuralPDE(z + R * z, z, activation="tanh", params={R: "heterogeneous"}).compile(n=6, layers=3)
    assert net.halo == 0
    theta = params(net)
    x1, x2 = data(rng, 2, 6)
    a = net.forward(x1, theta)
    t = net.forward(x1, theta, trajectory=True)
    kept_a, kept_t = a.copy(), t.copy()
    net.forward(x2, theta)
    net.loss_and_grad(x2, x1, theta)
    np.testing.assert_array_equal(a, kept_a)
    np.testing.assert_array_equal(t, kept_t)


@pytest.mark.parametrize("backend", ["numpy", pytest.param("numba", marks=needs_numba)])
@pytest.mark.parametrize("checkpoint", [None, 2])
def test_kept_buffers_across_batch_sizes(rng, backend, checkpoint):
    """The state buffers keep their largest size and serve smaller batches from their start (no
    reallocation when a search alternates training and validation batches): the answers of one network
    over batches 5, 3, 7, 2, 5 equal fresh networks', on Dirichlet (zero ghosts over stale values) and
    Neumann edges, with time-dependent parameters; the buffer is allocated once, at the largest size."""
    layer = adr_layer("tanh", ("time-dependent", "heterogeneous", "homogeneous"), "heterogeneous")
    # numba: the kernel of test_checkpointing_gives_the_same_gradients (compiled once per session)
    for boundary in ("dirichlet",) if backend == "numba" else ("dirichlet", "neumann"):
        kw = dict(n=10, layers=5, omega=0.6, boundary=boundary, backend=backend, checkpoint=checkpoint)
        if backend == "numba":
            kw.update(alpha=0.1, train_omega=True, activations="exact")
        net = layer.compile(**kw)
        theta = params(net)
        sizes, buffers = (5, 3, 7, 2, 5), []
        for b in sizes:
            x, y = data(rng, b, 10)
            x[:, 0] = x[:, -1] = 1e3 if b == 7 else x[:, 0]     # stale values a wrong ghost would carry
            fresh = layer.compile(**kw)
            np.testing.assert_array_equal(net.forward(x, theta), fresh.forward(x, theta))
            (l1, g1), (l0, g0) = net.loss_and_grad(x, y, theta, input_grad=True), fresh.loss_and_grad(x, y, theta, True)
            assert l1 == l0
            for key in g0:
                np.testing.assert_array_equal(g1[key], g0[key])
            buffers.append({k: id(v) for k, v in net._buffers.items()})
        assert all(ids == buffers[2] for ids in buffers[3:]), "reallocated after the largest batch"


# ---------------------------------------------------------------------------- numba: cache, threads, float32
@needs_numba
def test_jit_cache_is_reused_by_a_fresh_module(rng):
    """numba's cache=True works on the kernels the content-hash cache loads: executing the cached
    file again (as a second process does) loads the machine code instead of compiling."""
    from npdegen.runtime.cache import verify
    net = case_net("tanh-dirichlet", n=10, layers=2)
    theta = params(net)
    x, y = data(rng, 2, 10)
    net.loss_and_grad(x, y, theta)
    path = net.kernel.__file__
    text = open(path, encoding="utf-8").read()
    assert verify(text)
    fresh = {"__name__": "npdegen_kernel_again", "__file__": path}
    exec(compile(text, path, "exec"), fresh)          # as npdegen.runtime.cache.load_module does
    fresh["forward"](net._trajectory(x), net.check_params(theta), (0.8,), 0.7, 0.1, fresh["workspace"](2, (10,), np.float64))
    driver = fresh["_forward_serial" if fresh["NORMALISE"] else "_forward_run_serial"]   # the layer loop's kernel
    stats = driver.stats
    assert sum(stats.cache_hits.values()) == 1 and sum(stats.cache_misses.values()) == 0


@needs_numba
def test_threads_follow_numba_num_threads():
    import numba
    layer = adr_layer("tanh")
    net = layer.compile(n=64, layers=2, backend="numba", threads=64)
    work = net.kernel.workspace(512, (4096,), np.float64, threads=64)
    assert work["threads"] == numba.config.NUMBA_NUM_THREADS
    assert net._workspace(1)["parallel"] is False      # tiny (batch·n under THREAD_MIN_SIZE): one thread
    assert net.kernel.workspace(512, (4096,), np.float64, threads=1)["parallel"] is False


@needs_numba
@pytest.mark.skipif(HAVE_NUMBA and numba.config.NUMBA_NUM_THREADS < 2, reason="one numba thread")
def test_parallel_loops_agree_with_serial(rng):
    """Many small chunks split across threads: the same numbers as one thread (sums in a fixed order)."""
    x, y = data(rng, 4, 40)
    serial = case_net("tanh-dirichlet", n=40, threads=1)      # per-layer weights
    par = case_net("tanh-dirichlet", n=40, threads=2)
    k = par.kernel
    saved = k.THREAD_MIN_SIZE, k.MIN_CHUNK, k.CHUNK
    try:
        k.THREAD_MIN_SIZE, k.MIN_CHUNK, k.CHUNK = 0, 3, 5
        theta = params(serial)
        loss, grads = par.loss_and_grad(x, y, theta, input_grad=True)
        assert par._workspace(4)["parallel"] and par._workspace(4)["chunk"] == 5
    finally:
        k.THREAD_MIN_SIZE, k.MIN_CHUNK, k.CHUNK = saved
        par._work.clear()
    loss0, grads0 = serial.loss_and_grad(x, y, theta, input_grad=True)
    assert loss == pytest.approx(loss0, rel=1e-14)
    for key in grads0:
        np.testing.assert_allclose(grads[key], grads0[key], rtol=1e-12, atol=1e-14)


@needs_numba
def test_float32_fast_forms_against_numpy(rng):
    """Default float32: the vectorisable forms; loss and gradients within 1e-4 of the NumPy backend,
    returned as float32; and the compiled loops are vectorised."""
    layer = adr_layer("tanh", ("heterogeneous",) * 3)
    kw = dict(n=300, spacing=1.0, layers=6, omega=0.5, dtype="float32")
    net, ref = layer.compile(backend="numba", **kw), layer.compile(backend="numpy", **kw)
    assert net.options.activations == "auto" and net.kernel.ACTIVATIONS == "fast"
    theta = params(ref)
    x, y = data(rng, 8, 300, np.float32)
    loss, grads = net.loss_and_grad(x, y, theta, input_grad=True)
    loss0, grads0 = ref.loss_and_grad(x, y, theta, input_grad=True)
    assert loss == pytest.approx(loss0, rel=1e-5)
    for key in grads0:
        assert grads[key].dtype == np.float32
        np.testing.assert_allclose(grads[key], grads0[key], rtol=1e-4, atol=1e-4 * np.max(np.abs(grads0[key])))
    for driver in (net.kernel._forward_serial, net.kernel._adjoint_a_serial):
        (llvm,) = driver.inspect_llvm().values()
        assert "vector.body" in llvm and "x float>" in llvm
