"""The numba target of the step IR against the NumPy target: the same network to 1e-12 (float64).

Cases: 1-D nonlinear Burgers-like ``z + ν z_qq − z z_q``, 2-D anisotropic ADR with a cross term,
3-D small nonlinear ``z + ν Δz − z z_x``, an activation-parameter layer ``ρ X (1 − X)``; boundaries
per axis (mixed tuples too) and every family. Checked: the forward trajectory, ``loss_and_grad``
with the input gradient, ``step``, ``step_vjp``, trained ω, soft normalisation (α) and
checkpointing; float32 against float32 NumPy to ~1e-5 (numba computes tanh by its vectorisable
form there). numba compiles each kernel module once per process (and caches it on disk):
networks are shared between tests; the full matrix is marked slow.
"""
import numpy as np
import pytest
import sympy as sp

pytest.importorskip("numba")

import npdegen  # noqa: E402

q, x, y, w = sp.symbols("q x y w")
U, D, R, nu, rho = sp.symbols("U D R nu rho")
X = sp.Symbol("X")
z1 = sp.Function("z")(q)
z2 = sp.Function("z")(x, y)
z3 = sp.Function("z")(x, y, w)

FAMILIES = ("homogeneous", "heterogeneous", "time-dependent")
LAYERS = 3


def _layer(case, fam):
    """(NeuralPDE, compile kwargs, theta values) of a case; ``fam`` = (param family, bias family)."""
    pf, bf = fam
    if case == "burgers1d":
        layer = npdegen.NeuralPDE(z1 + nu * z1.diff(q, 2) - z1 * z1.diff(q), z1, activation="tanh",
                                  params={nu: pf}, bias=bf)
        return layer, dict(n=9, spacing=0.7), {"nu": 0.1}
    if case == "adr2d":
        layer = npdegen.NeuralPDE(z2 + R * z2 - U * z2.diff(x) + D * (z2.diff(x, 2) + z2.diff(y, 2)) + D * z2.diff(x, y),
                                  z2, activation="tanh", params={U: pf, D: "homogeneous", R: "time-dependent"}, bias=bf)
        return layer, dict(n=(6, 5), spacing=(1.0, 0.8)), {"D": 0.1, "U": 0.2}
    if case == "nl3d":
        layer = npdegen.NeuralPDE(z3 + nu * (z3.diff(x, 2) + z3.diff(y, 2) + z3.diff(w, 2)) - z3 * z3.diff(x), z3,
                                  activation="tanh", params={nu: pf}, bias=bf)
        return layer, dict(n=(4, 3, 5), spacing=(1.0, 0.9, 1.1)), {"nu": 0.08}
    if case == "act":
        layer = npdegen.NeuralPDE(z2 + D * (z2.diff(x, 2) + z2.diff(y, 2)), z2, activation=rho * X * (1 - X),
                                  params={D: "heterogeneous", rho: pf}, bias=bf)
        return layer, dict(n=(5, 6), spacing=(0.9, 1.0)), {"D": 0.1, "rho": 2.5}
    raise KeyError(case)


_NETS: dict = {}


def nets(case, fam, boundary, dtype="float64", alpha=None, train_omega=False, checkpoint=None, n=None):
    """(numba network, numpy network, theta), compiled once per process (``n``: another grid, the same kernels)."""
    key = (case, fam, boundary, dtype, alpha, train_omega, checkpoint, n)
    if key not in _NETS:
        layer, kw, values = _layer(case, fam)
        kw = kw if n is None else dict(kw, n=n)
        common = dict(layers=LAYERS, omega=0.7, boundary=boundary, dtype=dtype, alpha=alpha, train_omega=train_omega,
                      checkpoint=checkpoint, **kw)
        nb = layer.compile(backend="numba", **common)
        ref = layer.compile(backend="numpy", **common)
        assert nb.backend.name == "numba" and ref.backend.name == "numpy"
        theta = ref.init_params(seed=3, scale=0.05, values={k: v for k, v in values.items() if k in ref.shapes})
        _NETS[key] = nb, ref, theta
    return _NETS[key]


def close(a, b, rel, what):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, what
    scale = max(1.0, float(np.max(np.abs(b)))) if b.size else 1.0
    err = float(np.max(np.abs(a - b))) if b.size else 0.0
    assert err <= rel * scale, f"{what}: |numba - numpy| = {err:.3g} (scale {scale:.3g})"


def check(nb, ref, theta, rel=1e-12, seed=0, batch=3):
    rng = np.random.default_rng(seed)
    shape = (batch, *ref.grid)
    x0 = 0.5 * rng.standard_normal(shape)
    target = 0.5 * rng.standard_normal(shape)
    if nb.checkpoint is None:
        close(nb.forward(x0, theta, trajectory=True), ref.forward(x0, theta, trajectory=True), rel, "trajectory")
    close(nb.forward(x0, theta), ref.forward(x0, theta), rel, "forward")
    la, ga = nb.loss_and_grad(x0, target, theta, input_grad=True)
    lb, gb = ref.loss_and_grad(x0, target, theta, input_grad=True)
    assert abs(la - lb) <= rel * max(1.0, abs(lb))
    assert set(ga) == set(gb)
    for k in gb:
        close(ga[k], gb[k], rel, f"gradient {k}")
    if nb.checkpoint is None:
        for t in (0, LAYERS - 1):
            close(nb.step(x0, theta, layer=t), ref.step(x0, theta, layer=t), rel, f"step {t}")
            da, sa = nb.step_vjp(x0, theta, target, layer=t)
            db, sb = ref.step_vjp(x0, theta, target, layer=t)
            close(da, db, rel, f"step_vjp {t} dz")
            for k in sb:
                close(sa[k], sb[k], rel, f"step_vjp {t} {k}")
        # a single sample (no batch axis)
        close(nb.forward(x0[0], theta), ref.forward(x0[0], theta), rel, "single forward")


# ---------------------------------------------------------------------------- a modest default matrix
FAST = [
    ("burgers1d", ("homogeneous", "heterogeneous"), "periodic", {}),
    ("burgers1d", ("time-dependent", None), "neumann", {"train_omega": True}),
    ("adr2d", ("heterogeneous", "heterogeneous"), ("periodic", "neumann"), {}),
    ("adr2d", ("time-dependent", "homogeneous"), ("dirichlet", "periodic"), {"alpha": 0.1, "train_omega": True}),
    ("nl3d", ("homogeneous", "time-dependent"), ("neumann", "periodic", "dirichlet"), {}),
    ("act", ("heterogeneous", None), ("neumann", "dirichlet"), {}),
    # ~15-20 s of cold compiles; the activation-parameter case above, the time-dependent families of
    # burgers1d/adr2d/nl3d, the heterogeneous bias and the periodic boundary keep its paths in the default run
    pytest.param("act", ("time-dependent", "heterogeneous"), "periodic", {}, marks=pytest.mark.slow),
]


@pytest.mark.parametrize("case,fam,boundary,extra", FAST, ids=lambda v: str(v))
def test_numba_matches_numpy(case, fam, boundary, extra):
    nb, ref, theta = nets(case, fam, boundary, **extra)
    check(nb, ref, theta)


def test_checkpointing():
    nb, ref, theta = nets("adr2d", ("heterogeneous", "heterogeneous"), ("periodic", "neumann"), checkpoint=2)
    check(nb, ref, theta)
    full, _, _ = nets("adr2d", ("heterogeneous", "heterogeneous"), ("periodic", "neumann"))
    assert full.kernel is nb.kernel        # the same kernel module: checkpointing is the runtime's


#: float32 and thread-parallel loops: a float32 (or parallel) kernel is a cold compile of its own, 2-D ~2-3x a
#: 1-D one (adr2d float32 ~18 s, its parallel loops ~30-50 s); the 1-D case runs by default, the 2-D with --slow
#: (the loops' line/chunk split is the same code in the serial loops, which the 2-D cases above run)
DTYPE_CASES = [("burgers1d", ("heterogeneous", "heterogeneous"), "neumann"),
               pytest.param("adr2d", ("heterogeneous", "heterogeneous"), ("periodic", "neumann"),
                            marks=pytest.mark.slow)]
#: the 1-D grid is long enough for the loops to split it (3 chunks of the last axis, the batch in 2 groups; on
#: the 2-D grid the lines split). Pass B's items are the forward's (line, chunk) with the batch rows inside:
#: a row's ends are done by its first chunk and the soft normalisation's per-row terms inside the row loop
#: (the second case: normalised, omega trained, Neumann ends)
PARALLEL_CASES = [("burgers1d", ("homogeneous", "heterogeneous"), "periodic", 600, {}),
                  ("burgers1d", ("heterogeneous", "time-dependent"), "neumann", 600,
                   {"alpha": 0.05, "train_omega": True}),
                  pytest.param("adr2d", ("heterogeneous", "heterogeneous"), ("periodic", "neumann"), None, {},
                               marks=pytest.mark.slow)]


@pytest.mark.parametrize("case,fam,boundary", DTYPE_CASES, ids=lambda v: str(v))
def test_float32(case, fam, boundary):
    nb, ref, theta = nets(case, fam, boundary, dtype="float32")
    assert nb.kernel.ACTIVATIONS == "fast"
    check(nb, ref, theta, rel=2e-5)


@pytest.mark.parametrize("case,fam,boundary,n,extra", PARALLEL_CASES, ids=lambda v: str(v))
def test_parallel_loops(case, fam, boundary, n, extra):
    """Several threads (the prange loops, chunks and batch groups) give the serial result."""
    nb, ref, theta = nets(case, fam, boundary, n=n, **extra)
    layer, kw, _ = _layer(case, fam)
    kw = kw if n is None else dict(kw, n=n)
    par = layer.compile(backend="numba", layers=LAYERS, omega=0.7, boundary=boundary, threads=2, **kw, **extra)
    par.THREAD_MIN_SIZE = 0
    par.kernel = _Threshold(par.kernel)
    work = par._workspace(3)
    assert work["parallel"] or work["threads"] == 1
    lines = int(np.prod(work["grid"][:-1]))
    assert work["threads"] == 1 or lines * -(-work["grid"][-1] // work["chunk"]) > 1    # the grid splits
    check(par, ref, theta)


class _Threshold:
    """A kernel module whose THREAD_MIN_SIZE is 0 (forces the parallel loops on a small grid)."""

    def __init__(self, module):
        self._m = module
        self.THREAD_MIN_SIZE = 0

    def __getattr__(self, name):
        return getattr(self._m, name)


# ---------------------------------------------------------------------------- the full matrix
SLOW_BOUNDARIES = {
    "burgers1d": ["periodic", "dirichlet", "neumann"],
    "adr2d": ["periodic", "dirichlet", "neumann", ("neumann", "dirichlet")],
    "nl3d": ["periodic", ("dirichlet", "neumann", "periodic")],
    "act": ["dirichlet", ("periodic", "neumann")],
}
SLOW = [(case, (pf, bf), b) for case, bs in SLOW_BOUNDARIES.items() for b in bs
        for pf, bf in zip(FAMILIES, ("time-dependent", None, "homogeneous"))]


@pytest.mark.slow
@pytest.mark.parametrize("case,fam,boundary", SLOW, ids=lambda v: str(v))
def test_numba_matches_numpy_matrix(case, fam, boundary):
    nb, ref, theta = nets(case, fam, boundary)
    check(nb, ref, theta)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["burgers1d", "nl3d", "act"])
def test_float32_matrix(case):
    nb, ref, theta = nets(case, ("heterogeneous", "heterogeneous"), "neumann", dtype="float32")
    check(nb, ref, theta, rel=2e-5)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["burgers1d", "nl3d", "act"])
def test_normalise_train_omega_matrix(case):
    nb, ref, theta = nets(case, ("heterogeneous", "time-dependent"), "dirichlet", alpha=0.05, train_omega=True)
    check(nb, ref, theta)
