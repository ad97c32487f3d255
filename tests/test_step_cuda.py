"""The CUDA target of the step IR (templates/step_cuda) without and with a GPU.

1. NVRTC: every generated source of a matrix compiles to PTX (compute_90, ``-G``: the front end
   that finds syntax and type errors) and defines every kernel the wrapper launches: 1-D nonlinear
   Burgers-like ``z − 0.01 z z_q + ν z_qq``, 2-D anisotropic ADR with a cross term, 3-D small
   nonlinear, an activation-parameter layer ``ρ X (1 − X)``; × float32/float64 × boundaries (per-axis
   tuples too) × (normalise, train_omega). The whole matrix is marked slow; a sample runs always.
2. On the CPU: the generated CUDA runs through the emulator of tests/test_cuda_compile.py (g++ with
   a CUDA shim, one Python thread per CUDA thread, the wrapper importing a NumPy stand-in for CuPy)
   inside a :class:`~npdegen.runtime.network.Network`, and forward, loss_and_grad (with the input
   gradient), step and step_vjp equal the NumPy step backend to 1e-12 (float64) on small grids,
   with every work buffer poisoned with NaN first, in both reduction modes (one chunk; several
   chunks with the second pass).
3. On a GPU (marked ``gpu``, skipped without one): the same comparison through
   ``compile(backend="cupy")``.

Parts skip (one line saying why) without CuPy's NVRTC bindings or without a C++20 g++.
"""
import itertools
import types

import numpy as np
import pytest
import sympy as sp

import npdegen
from npdegen.codegen.step_render import StepOptions, render_step
from npdegen.runtime.network import Network
from test_cuda_compile import NVRTC, NVRTC_MISSING, compile_job, emulator, load_wrapper  # noqa: F401

q, x, y, w = sp.symbols("q x y w")
U, V, D, R, nu, rho = sp.symbols("U V D R nu rho")
X = sp.Symbol("X")
z1 = sp.Function("z")(q)
z2 = sp.Function("z")(x, y)
z3 = sp.Function("z")(x, y, w)
KERNELS = {"fill_halo", "coefficients", "forward_step", "adjoint_site", "reduce_partials", "adjoint_gather",
           "assemble", "finish_homogeneous"}
FLAGS = ((False, False), (True, True), (False, True), (True, False))   # (normalise, train_omega)


def make(case, pf="heterogeneous", bf="homogeneous"):
    """(NeuralPDE, grid, spacing, parameter values) of a case; pf the family of the varied parameter."""
    if case == "burgers1d":
        layer = npdegen.NeuralPDE(z1 - sp.Rational(1, 100) * z1 * z1.diff(q) + nu * z1.diff(q, 2), z1,
                                  activation="tanh", params={nu: pf}, bias=bf)
        return layer, (9,), (0.7,), {"nu": 0.1}
    if case == "adr2d":
        layer = npdegen.NeuralPDE(z2 + R * z2 - U * z2.diff(x) - V * z2.diff(y) + D * (z2.diff(x, 2) + z2.diff(y, 2))
                                  + D * z2.diff(x, y), z2, activation="tanh",
                                  params={U: pf, V: "homogeneous", D: "homogeneous", R: "time-dependent"}, bias=bf)
        return layer, (6, 5), (1.0, 0.8), {"D": 0.1, "U": 0.2, "V": -0.1}
    if case == "nl3d":
        layer = npdegen.NeuralPDE(z3 + nu * (z3.diff(x, 2) + z3.diff(y, 2) + z3.diff(w, 2)) - z3 * z3.diff(x), z3,
                                  activation="tanh", params={nu: pf}, bias=bf)
        return layer, (4, 3, 5), (1.0, 0.9, 1.1), {"nu": 0.08}
    if case == "act":
        layer = npdegen.NeuralPDE(z2 + D * (z2.diff(x, 2) + z2.diff(y, 2)), z2, activation=rho * X * (1 - X),
                                  params={D: "heterogeneous", rho: pf}, bias=bf)
        return layer, (5, 6), (0.9, 1.0), {"D": 0.1, "rho": 2.5}
    if case == "mixed2d":      # a parameter inside a function of the field: a mixed term, state Jacobians
        layer = npdegen.NeuralPDE(z2 + D * (z2.diff(x, 2) + z2.diff(y, 2)) - sp.cos(U * z2) * z2.diff(x), z2,
                                  activation="tanh", params={U: pf, D: "homogeneous"}, bias=bf)
        return layer, (5, 4), (1.0, 0.9), {"D": 0.1, "U": 0.7}
    if case == "adr1d":        # the 1-D linear layers (formerly their own CUDA template)
        layer = npdegen.NeuralPDE(z1 + R * z1 - U * z1.diff(q) + D * z1.diff(q, 2), z1, activation="softplus",
                                  params={U: pf, D: "homogeneous", R: "time-dependent"}, bias=bf)
        return layer, (11,), (0.8,), {"U": 0.3, "D": 0.15, "R": -0.1}
    if case == "wide1d":       # halo 2 (accuracy 4) and a custom activation
        layer = npdegen.NeuralPDE(z1 - U * z1.diff(q) + D * z1.diff(q, 2), z1, activation=sp.sin(X) + X**3 / 10,
                                  params={U: pf, D: "homogeneous"}, bias=bf, accuracy=4)
        return layer, (13,), (0.9,), {"U": 0.3, "D": 0.15}
    raise KeyError(case)


_LAYERS = {}


def layer_of(case, pf="heterogeneous", bf="homogeneous"):
    if (case, pf, bf) not in _LAYERS:
        _LAYERS[case, pf, bf] = make(case, pf, bf)
    return _LAYERS[case, pf, bf]


# ---------------------------------------------------------------------------- 1. NVRTC
BOUNDARY_SETS = {1: ("periodic", "dirichlet", "neumann"),
                 2: (("periodic", "neumann"), ("dirichlet", "periodic"), "neumann"),
                 3: (("neumann", "periodic", "dirichlet"), "periodic", ("dirichlet", "neumann", "periodic"))}
CASES = {"burgers1d": 1, "adr2d": 2, "nl3d": 3, "act": 2, "mixed2d": 2, "adr1d": 1, "wide1d": 1}
FAMILIES = ("homogeneous", "heterogeneous", "time-dependent")


def matrix():
    out = []
    for i, (case, dtype) in enumerate(itertools.product(CASES, ("float32", "float64"))):
        for j, boundary in enumerate(BOUNDARY_SETS[CASES[case]]):
            fam = FAMILIES[(i + j) % 3], FAMILIES[(i + 2 * j) % 3]
            out.append(((case, *fam), StepOptions("cupy", boundary if isinstance(boundary, tuple) else
                                                  (boundary,) * CASES[case], dtype, *FLAGS[(i + j) % 4])))
    return out


def check_compiles(case, options):
    layer = layer_of(*case)[0]
    code = render_step(layer.lowered, options).files[".cu"]
    log, entries = compile_job(code, "90", True)
    assert log is None, f"NVRTC rejected the source of {case} {options}:\n{log}"
    assert KERNELS <= set(entries), (case, options, sorted(entries))
    assert ("row_partials" in entries) == options.normalise


needs_nvrtc = pytest.mark.skipif(NVRTC is None, reason=NVRTC_MISSING)


@needs_nvrtc
@pytest.mark.parametrize("k", range(len(CASES)))
def test_sources_compile(k):
    """A sample of the matrix: one source per case (6 per case: 2 dtypes x 3 boundary sets)."""
    check_compiles(*matrix()[6 * k + k % 6])


@needs_nvrtc
@pytest.mark.slow
def test_every_source_compiles():
    for case, options in matrix():
        check_compiles(case, options)


# ---------------------------------------------------------------------------- 2. on the CPU
def emulated_network(layer, options, n, spacing, folder, stem, target_blocks=1024, **kw):
    """A Network running the emulated CUDA wrapper (the NumPy stand-in for CuPy)."""
    module = load_wrapper(render_step(layer.lowered, options), folder, stem=stem)
    kernel = types.SimpleNamespace(**{k: getattr(module, k) for k in ("fill_halo", "step", "step_adjoint", "forward",
                                                                      "adjoint")})
    state = {}

    def workspace(batch, grid, dtype, threads=1):
        work = module.workspace(batch, grid, dtype, threads, target_blocks=target_blocks)
        state["work"] = work
        return work
    kernel.workspace = workspace
    kernel.module = module
    backend = types.SimpleNamespace(name="cupy", xp=np)
    net = Network(ir=layer.lowered, options=options, backend=backend, kernel=kernel, n=n, spacing=spacing,
                  **kw)
    return net, state


def poisoned(net, state):
    """Fill every float work buffer with NaN before each kernel call (an element not written shows)."""
    kernel = net.kernel
    originals = {k: getattr(kernel, k) for k in ("step", "step_adjoint", "forward", "adjoint")}

    def wrap(fn):
        def call(*args):
            for v in state["work"].values():
                if isinstance(v, np.ndarray) and v.dtype.kind == "f":
                    v[...] = np.nan
            return fn(*args)
        return call
    for k, fn in originals.items():
        setattr(kernel, k, wrap(fn))
    return net


def close(a, b, rel, what):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, what
    assert np.all(np.isfinite(a)), f"{what}: non-finite values"
    scale = max(1.0, float(np.max(np.abs(b)))) if b.size else 1.0
    err = float(np.max(np.abs(a - b))) if b.size else 0.0
    assert err <= rel * scale, f"{what}: |cuda - numpy| = {err:.3g} (scale {scale:.3g})"


def compare(cu, ref, theta, layers, rel=1e-12, batch=3, seed=0):
    rng = np.random.default_rng(seed)
    shape = (batch, *ref.grid)
    x0 = 0.5 * rng.standard_normal(shape)
    target = 0.5 * rng.standard_normal(shape)
    close(cu.forward(x0, theta, trajectory=True), ref.forward(x0, theta, trajectory=True), rel, "trajectory")
    close(cu.forward(x0, theta), ref.forward(x0, theta), rel, "forward")
    la, ga = cu.loss_and_grad(x0, target, theta, input_grad=True)
    lb, gb = ref.loss_and_grad(x0, target, theta, input_grad=True)
    assert abs(la - lb) <= rel * max(1.0, abs(lb))
    assert set(ga) == set(gb)
    for k in gb:
        close(ga[k], gb[k], rel, f"gradient {k}")
    for t in sorted({0, layers - 1}):
        close(cu.step(x0, theta, layer=t), ref.step(x0, theta, layer=t), rel, f"step {t}")
        da, sa = cu.step_vjp(x0, theta, target, layer=t)
        db, sb = ref.step_vjp(x0, theta, target, layer=t)
        close(da, db, rel, f"step_vjp {t} dz")
        for k in sb:
            close(sa[k], sb[k], rel, f"step_vjp {t} {k}")


# (case, (param family, bias family), boundary, options): normalise, train_omega, target_blocks
# (1024: a chunk per row; 1: one chunk; 2 with batch 5: two chunks of 3 and 2 rows), batch, n,
# checkpoint, dtype
CPU_CASES = [
    ("burgers1d", ("time-dependent", "heterogeneous"), ("neumann",), dict(train_omega=True)),
    ("adr2d", ("heterogeneous", "heterogeneous"), ("periodic", "neumann"),
     dict(normalise=True, train_omega=True, target_blocks=1)),
    ("nl3d", ("homogeneous", "time-dependent"), ("neumann", "periodic", "dirichlet"), dict(checkpoint=1)),
    ("act", ("time-dependent", None), ("dirichlet", "neumann"), dict(normalise=True, batch=5, target_blocks=2)),
    ("mixed2d", ("heterogeneous", "time-dependent"), ("periodic", "dirichlet"),
     dict(train_omega=True, batch=5, target_blocks=2)),
    ("burgers1d", ("homogeneous", "homogeneous"), ("periodic",), dict(n=(300,), batch=2)),   # two tiles
    ("adr2d", ("time-dependent", "heterogeneous"), ("dirichlet", "periodic"), dict(dtype="float32")),
    ("adr1d", ("heterogeneous", "time-dependent"), ("neumann",), dict(normalise=True, train_omega=True)),
    ("adr1d", ("time-dependent", "heterogeneous"), ("dirichlet",), dict(n=(300,), batch=5)),
    ("wide1d", ("heterogeneous", "homogeneous"), ("periodic",), dict(dtype="float32", target_blocks=1)),
]


def _id(c):
    return f"{c[0]}-{'-'.join(c[2])}-" + "-".join(f"{k}{v}" for k, v in c[3].items())


@pytest.mark.parametrize("case", CPU_CASES, ids=_id)
def test_cuda_step_on_the_cpu_matches_numpy(emulator, case):  # noqa: F811
    name, fam, boundary, extra = case
    layer, grid, spacing, values = layer_of(name, *fam)
    normalise, train_omega = extra.get("normalise", False), extra.get("train_omega", False)
    target_blocks, batch, dtype = extra.get("target_blocks", 1024), extra.get("batch", 3), extra.get("dtype", "float64")
    layers, alpha = 2, (0.1 if normalise else None)
    options = StepOptions("cupy", boundary, dtype, normalise, train_omega)
    common = dict(n=extra.get("n", grid), spacing=spacing, layers=layers, omega=0.7, checkpoint=extra.get("checkpoint"))
    cu, state = emulated_network(layer, options, folder=emulator, stem=f"step{CPU_CASES.index(case)}",
                                 target_blocks=target_blocks, alpha=float(alpha or 0.0), **common)
    poisoned(cu, state)
    ref = layer.compile(backend="numpy", boundary=boundary, alpha=alpha, train_omega=train_omega, dtype=dtype, **common)
    theta = ref.init_params(seed=3, scale=0.05, values={k: v for k, v in values.items() if k in ref.shapes})
    compare(cu, ref, theta, layers, rel=1e-12 if dtype == "float64" else 2e-5, batch=batch)
    work = state["work"]
    tiles = -(-int(np.prod(common["n"])) // 256)
    assert (work["tiles"], work["chunks"]) == (tiles, {1024: batch, 1: 1, 2: 2}[target_blocks]), work
    # a single sample (no batch axis)
    x0 = np.random.default_rng(5).standard_normal(ref.grid)
    close(cu.forward(x0, theta), ref.forward(x0, theta), 1e-12 if dtype == "float64" else 2e-5, "single forward")


def test_wrapper_interface_and_launch_shape(emulator, tmp_path):  # noqa: F811
    layer = layer_of("adr2d")[0]
    rendered = render_step(layer.lowered, StepOptions("cupy", ("periodic", "neumann")))
    module = load_wrapper(rendered, tmp_path)
    for name in ("workspace", "fill_halo", "step", "step_adjoint", "forward", "adjoint"):
        assert callable(getattr(module, name))
    assert module.DIM == 2 and module.HALO == (1, 1) and module.BOUNDARIES == ("periodic", "neumann")
    assert module.launch_shape(64, 1 << 18) == (1024, 1, 64)
    assert module.launch_shape(8, 30) == (1, 8, 1)
    work = module.workspace(4, (6, 5), np.float64)
    assert work["sites"] == 30 and work["s"].shape == (4, 30)
    with pytest.raises(TypeError, match="float64"):
        module.workspace(4, (6, 5), np.float32)
    # fill_halo equals the NumPy rule (npdegen.grid.fill_halo) on every ghost cell, corners included
    from npdegen.grid import fill_halo
    zp = np.random.default_rng(1).standard_normal((2, 3, 8, 7))
    want = zp.copy()
    fill_halo(want, ("periodic", "neumann"), (1, 1))
    module.fill_halo(zp)
    assert np.array_equal(zp, want)
    boundary = ("dirichlet", "neumann", "periodic")
    module = load_wrapper(render_step(layer_of("nl3d")[0].lowered, StepOptions("cupy", boundary)), tmp_path, "k3")
    zp = np.random.default_rng(2).standard_normal((2, 6, 5, 7))
    want = zp.copy()
    fill_halo(want, boundary, module.HALO)
    module.fill_halo(zp)
    assert np.array_equal(zp, want)


def test_generate_writes_the_cuda_step_files_without_a_gpu(tmp_path):
    layer = layer_of("adr2d")[0]
    paths = layer.generate(tmp_path, backend="cupy", boundary=("periodic", "neumann"), dtype="float32", alpha=0.1)
    assert sorted(p.suffix for p in paths) == [".cu", ".py"]
    cu = next(p for p in paths if p.suffix == ".cu").read_text()
    py = next(p for p in paths if p.suffix == ".py").read_text()
    key = render_step(layer.lowered, StepOptions("cupy", ("periodic", "neumann"), "float32", True)).key
    for text in (cu, py):
        assert f"content-hash: {key}" in text
    assert "typedef float real;" in cu and "tanhf(Z)" in cu
    for needle in ("def forward", "def adjoint", "def step_adjoint", "def step(", "def workspace", "def fill_halo"):
        assert needle in py


def test_generated_names_stay_in_their_namespaces():
    """Template locals never start with p_ or z_: every such name in the source is a parameter or
    an access of the layer."""
    import re
    layer = layer_of("act", "time-dependent", "heterogeneous")[0]
    ir = layer.lowered.ir
    allowed = {str(p.symbol) for p in ir.params} | {str(a) for a in ir.access_symbols}
    for normalise, train_omega in FLAGS:
        code = render_step(layer.lowered, StepOptions("cupy", ("neumann", "dirichlet"), "float32", normalise,
                                                      train_omega)).files[".cu"]
        body = code.split("// ====", 2)[-1]
        names = set(re.findall(r"\b[pz]_\w+", body))
        assert names <= allowed, names - allowed
        assert "float" in code and "double" in code       # float32 values, double sums


# ---------------------------------------------------------------------------- 3. on a GPU
@pytest.mark.gpu
@pytest.mark.parametrize("case", CPU_CASES, ids=_id)
def test_cuda_step_on_the_gpu_matches_numpy(case):
    from npdegen.runtime.cupy_backend import gpu_status
    cupy, why = gpu_status()
    if cupy is None:
        pytest.skip(why)
    name, fam, boundary, extra = case
    layer, grid, spacing, values = layer_of(name, *fam)
    dtype = extra.get("dtype", "float64")
    layers, alpha = 3, (0.1 if extra.get("normalise") else None)
    common = dict(n=extra.get("n", grid), spacing=spacing, layers=layers, omega=0.7, boundary=boundary, alpha=alpha,
                  train_omega=extra.get("train_omega", False), checkpoint=extra.get("checkpoint"), dtype=dtype)
    cu = layer.compile(backend="cupy", **common)
    ref = layer.compile(backend="numpy", **common)
    theta = ref.init_params(seed=3, scale=0.05, values={k: v for k, v in values.items() if k in ref.shapes})

    class Host:
        """The GPU network with NumPy in and out (compare() works on host arrays)."""

        def __init__(self, net):
            self.net, self.grid = net, net.grid

        def _call(self, fn, *args, **kw):
            out = fn(*(cupy.asarray(a) if isinstance(a, np.ndarray) else a for a in args),
                     **kw)
            return _host(out)

        def forward(self, x, th, trajectory=False):
            return self._call(self.net.forward, x, th, trajectory=trajectory)

        def loss_and_grad(self, x, t, th, input_grad=False):
            return self._call(self.net.loss_and_grad, x, t, th, input_grad=input_grad)

        def step(self, x, th, layer):
            return self._call(self.net.step, x, th, layer=layer)

        def step_vjp(self, x, th, t, layer):
            return self._call(self.net.step_vjp, x, th, t, layer=layer)

    def _host(v):
        if isinstance(v, tuple):
            return tuple(_host(u) for u in v)
        if isinstance(v, dict):
            return {k: _host(u) for k, u in v.items()}
        return cupy.asnumpy(v) if isinstance(v, cupy.ndarray) else v
    rel = 1e-12 if dtype == "float64" else 2e-5
    compare(Host(cu), ref, theta, layers, rel=rel)
    compare(Host(cu), ref, theta, layers, rel=rel, batch=300, seed=1)      # several rows per chunk
