"""The CuPy backend on a GPU, checked against the NumPy backend (itself tested against independent
references in test_gradients.py and test_reference.py). Marked ``gpu``; without CuPy or a usable
device the module is skipped with one line saying why.

1. CuPy ≡ NumPy for the 1-D linear matrix of test_cuda_compile.py (families × activations ×
   boundaries × dtypes, normalise and train_omega cycling, wide stencils) on random inputs, through
   the Network API: the trajectory, the vjp (dLoss/dz0 and every gradient) and the single-layer
   vjp. float64: 1e-12 relative to the largest entry; float32: as accurate as the NumPy float32
   kernel up to 1e-5 relative, both measured against NumPy float64. Sizes: a few sites (one tile),
   300 (two tiles), and n = 2^18. (Work buffers poisoned with NaN: test_step_cuda.py.)
2. Finite-difference gradients (central, ε = 1e-6, error < 1e-6 as in test_gradients.py) and
   dot-product tests of the step (⟨J v, w⟩ = ⟨v, Jᵀ w⟩; 1e-12 for affine layers, 1e-7 against
   central differences otherwise) through the Network API on the GPU.
3. Determinism: two runs give bit-identical losses and gradients in the default mode (one chunk and
   several chunks); the atomics mode agrees to 1e-12.
"""
import itertools

import numpy as np
import pytest
import sympy as sp

cupy = pytest.importorskip("cupy", reason="CuPy is not installed (pip install 'npdegen[cuda]')")

import npdegen  # noqa: E402
from npdegen.codegen.step_render import StepOptions  # noqa: E402
from npdegen.runtime import backends  # noqa: E402
from npdegen.runtime.cupy_backend import gpu_status  # noqa: E402

_cupy, _WHY = gpu_status()
if _cupy is None:
    pytest.skip(_WHY, allow_module_level=True)

pytestmark = pytest.mark.gpu

FAMILIES = ("homogeneous", "heterogeneous", "time-dependent")
BOUNDARIES = ("periodic", "dirichlet", "neumann")
DTYPES = ("float32", "float64")
FLAGS = ((False, False), (True, True), (False, True), (True, False))   # (normalise, train_omega)
_s = sp.Symbol("s")
ACTIVATIONS = ("identity", "tanh", "sigmoid", "relu", "softplus", "square",
               sp.sin(_s) + _s**3 / 10, _s / (1 + sp.Abs(_s)), sp.Lambda(_s, sp.atan(2 * _s)))
RELU = 3
WIDE = (dict(accuracy=4), dict(accuracy=6), dict(offsets=(-2, -1, 0), accuracy=None),
        dict(offsets=(0, 1, 2), accuracy=None))
#: (n, batch, target_blocks, atomics): chunks > 1 with a second pass; one chunk over 2 tiles; atomics
SHAPES = ((37, 3, 1024, False), (300, 2, 1, False), (70, 4, 1024, True))
OMEGA, ALPHA, SPACING, LAYERS = 0.7, 0.1, 0.8, 3


def KernelOptions(backend="cupy", boundary="periodic", dtype="float64", normalise=False, train_omega=False):
    """The step options of a 1-D CUDA kernel."""
    return StepOptions(backend, (boundary,), dtype, normalise, train_omega)


def make_layer(rotation, activation, **kw):
    q = sp.Symbol("q")
    z = sp.Function("z")(q)
    U, D, R = sp.symbols("U D R")
    params = {sym: FAMILIES[(k + rotation) % 3] for k, sym in enumerate((U, D, R))}
    return npdegen.NeuralPDE(z + R * z - U * z.diff(q) + D * z.diff(q, 2), z, activation=activation,
                             params=params, bias=FAMILIES[rotation], **kw)


def matrix():
    cases = []
    for i, (rotation, act, boundary, dtype) in enumerate(itertools.product(range(3), range(len(ACTIVATIONS)),
                                                                           BOUNDARIES, DTYPES)):
        cases.append(((rotation, act, None), KernelOptions("cupy", boundary, dtype, *FLAGS[i % 4]), SHAPES[i % 3]))
    for i, (wide, boundary) in enumerate(itertools.product(range(len(WIDE)), BOUNDARIES)):
        cases.append(((1, 1, wide), KernelOptions("cupy", boundary, DTYPES[i % 2], *FLAGS[i % 4]), SHAPES[i % 3]))
    cases.append(((0, 4, None), KernelOptions("cupy", "neumann", "float64", True, True), (1 << 18, 2, 1024, False)))
    return cases


def make_theta(layer, n, layers, real, rng, relu=False):
    shapes = {"homogeneous": (), "heterogeneous": (n,), "time-dependent": (layers, n)}
    values = {"U": 0.3, "D": 0.15, "R": -0.1, "b": -0.3 if relu else 0.1}
    families = dict(layer.kernel_ir.params) | ({"b": layer.kernel_ir.bias} if layer.kernel_ir.bias else {})
    return {k: np.asarray(values[k] + 0.05 * rng.standard_normal(shapes[f]), real) for k, f in families.items()}


def assert_matches(got, want, exact, dtype):
    """float64: |got - want| <= 1e-12 max|want|; float32: |got - exact| <= 1e-5 max|exact| + 2 |want - exact|."""
    for what, g in got.items():
        assert np.all(np.isfinite(g)), f"{what}: non-finite values (an element was not written)"
        scale = max(float(np.max(np.abs(exact[what]))), 1e-30)
        if dtype == "float64":
            assert float(np.max(np.abs(g - want[what]))) <= 1e-12 * scale, (what, float(np.max(np.abs(g - want[what]))) / scale)
        else:
            err = np.abs(g.astype(np.float64) - exact[what])
            bound = 1e-5 * scale + 2 * np.abs(want[what].astype(np.float64) - exact[what])
            assert np.all(err <= bound), (what, float(np.max(err - bound)) / scale)


def outputs(net, theta, x, lam):
    """Trajectory, vjp (dLoss/dz0 and gradients) and the vjp of layer 1 alone, as NumPy float64 arrays."""
    xp, dt = net.xp, net.dtype
    th = {k: xp.asarray(np.asarray(v, dt)) for k, v in theta.items()}
    xx, ll = xp.asarray(x.astype(dt)), xp.asarray(lam.astype(dt))
    host = (lambda a: np.asarray(cupy.asnumpy(a), np.float64)) if xp is cupy else (lambda a: np.asarray(a, np.float64))
    out = {"trajectory": host(net.forward(xx, th, trajectory=True))}
    dz0, grads = net.vjp(xx, th, ll)
    out["dz0"] = host(dz0)
    out.update({f"grad {k}": host(v) for k, v in grads.items()})
    dz1, step_grads = net.step_vjp(xx, th, ll, 1)
    out["step dz"] = host(dz1)
    out.update({f"step grad {k}": host(v) for k, v in step_grads.items()})
    return out


_layers = {}


@pytest.mark.parametrize("case", matrix(), ids=lambda c: f"{c[0]}-{c[1].boundary}-{c[1].dtype}-{int(c[1].normalise)}"
                                                       f"{int(c[1].train_omega)}-n{c[2][0]}")
def test_cupy_matches_numpy(case):
    (rotation, act, wide), options, (n, batch, target_blocks, atomics) = case
    if (rotation, act, wide) not in _layers:
        _layers[rotation, act, wide] = make_layer(rotation, ACTIVATIONS[act], **(WIDE[wide] if wide is not None else {}))
    layer = _layers[rotation, act, wide]
    rng = np.random.default_rng(11)
    real = np.dtype(options.dtype)
    theta = make_theta(layer, n, LAYERS, real, rng, relu=act == RELU)
    if options.train_omega:
        theta["omega"] = np.asarray(OMEGA, real)
    x = rng.uniform(0.5 if act == RELU else -1, 1, (batch, n)).astype(real)
    lam = rng.standard_normal((batch, n)).astype(real)
    alpha = ALPHA if options.normalise else None
    common = dict(n=n, spacing=SPACING, layers=LAYERS, omega=OMEGA, boundary=options.boundary, alpha=alpha,
                  train_omega=options.train_omega)
    got = outputs(layer.compile(backend="cupy", dtype=options.dtype, **common), theta, x, lam)
    refs = [outputs(layer.compile(backend="numpy", dtype=dtype, **common), theta, x, lam)
            for dtype in (options.dtype, "float64")]
    assert_matches(got, *refs, options.dtype)


# ---------------------------------------------------------------------------- the Network API
def network(rotation, activation, boundary, n=9, dtype="float64", alpha=ALPHA, train_omega=True, **kw):
    net = make_layer(rotation, activation, **kw).compile(n=n, spacing=SPACING, layers=LAYERS, omega=OMEGA,
                                                         boundary=boundary, backend="cupy", dtype=dtype,
                                                         alpha=alpha, train_omega=train_omega)
    values = {"U": 0.3, "D": 0.15, "R": -0.1, "b": 0.1}
    return net, net.init_params(seed=rotation, scale=0.05, values={k: v for k, v in values.items() if k in net.shapes})


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "softplus", "square", "identity"])
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_finite_difference_gradients_on_the_gpu(boundary, activation):
    rotation = BOUNDARIES.index(boundary)
    net, theta = network(rotation, activation, boundary)
    rng = np.random.default_rng(3)
    x, y = rng.uniform(-1, 1, (2, net.n)), rng.uniform(-1, 1, (2, net.n))
    _, grads = net.loss_and_grad(x, y, theta, input_grad=True)
    eps = 1e-6
    for key in sorted(grads):
        base = x if key == "x" else theta[key]
        for idx in ([()] if np.ndim(base) == 0 else [tuple(i) for i in np.ndindex(np.shape(base))][::4]):
            def loss_at(delta):
                if key == "x":
                    xx = x.copy()
                    xx[idx] += delta
                    return net.loss_and_grad(xx, y, theta)[0]
                th = {k: v.copy() for k, v in theta.items()}
                th[key][idx] += delta
                return net.loss_and_grad(x, y, th)[0]
            fd = (loss_at(eps) - loss_at(-eps)) / (2 * eps)
            g = float(grads[key][idx])
            assert abs(fd - g) / max(abs(fd), abs(g), 1e-2) < 1e-6, (key, idx, fd, g)


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("activation", ["identity", "tanh", "softplus"])
def test_step_dot_product_on_the_gpu(boundary, activation):
    """<J v, w> = <v, J^T w> for the step of layers 0 and L-1; affine layers exactly (1e-12)."""
    affine = activation == "identity"
    net, theta = network(2, activation, boundary, n=33, alpha=None if affine else ALPHA)
    rng = np.random.default_rng(5)
    z, v, w = (rng.standard_normal((3, net.n)) for _ in range(3))
    for t in (0, net.layers - 1):
        if affine:
            jv = net.step(z + v, theta, t) - net.step(z, theta, t)
        else:
            h = 1e-6
            jv = (net.step(z + h * v, theta, t) - net.step(z - h * v, theta, t)) / (2 * h)
        jtw, _ = net.step_vjp(z, theta, w, t)
        lhs, rhs = float(cupy.sum(jv * cupy.asarray(w))), float(cupy.sum(cupy.asarray(v) * jtw))
        scale = float(cupy.linalg.norm(jv)) * float(np.linalg.norm(w))
        assert abs(lhs - rhs) <= (1e-12 if affine else 1e-7) * scale, (t, lhs, rhs)


def test_network_dot_product_on_the_gpu():
    """The whole network is affine with the identity activation: <F(x+v) - F(x), w> = <v, vjp(w)>."""
    net, theta = network(1, "identity", "neumann", n=50, alpha=None)
    rng = np.random.default_rng(9)
    x, v, w = (rng.standard_normal((4, net.n)) for _ in range(3))
    jv = net.forward(x + v, theta) - net.forward(x, theta)
    dx, _ = net.vjp(x, theta, w)
    lhs, rhs = float(cupy.sum(jv * cupy.asarray(w))), float(cupy.sum(cupy.asarray(v) * dx))
    assert abs(lhs - rhs) <= 1e-12 * float(cupy.linalg.norm(jv)) * float(np.linalg.norm(w))


# ---------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("batch", [1, 8], ids=["one-chunk", "chunks"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_two_runs_are_bit_identical(batch, dtype):
    net, theta = network(0, "tanh", "periodic", n=5000, dtype=dtype)   # U, omega homogeneous: block sums
    rng = np.random.default_rng(1)
    x, y = rng.uniform(-1, 1, (batch, net.n)), rng.uniform(-1, 1, (batch, net.n))
    loss1, g1 = net.loss_and_grad(x, y, theta, input_grad=True)
    loss2, g2 = net.loss_and_grad(x, y, theta, input_grad=True)
    assert loss1 == loss2
    for k in g1:
        assert bool(cupy.array_equal(g1[k], g2[k])), k


def test_atomics_mode_agrees(monkeypatch):
    rng = np.random.default_rng(2)
    x, y = rng.uniform(-1, 1, (6, 3000)), rng.uniform(-1, 1, (6, 3000))
    results = []
    for atomics in ("0", "1"):                      # read when the network makes its workspace
        monkeypatch.setenv("NPDEGEN_CUDA_ATOMICS", atomics)
        net, theta = network(0, "softplus", "dirichlet", n=3000)
        results.append(net.loss_and_grad(x, y, theta)[1])
    for k, g in results[0].items():
        scale = float(cupy.max(cupy.abs(g)))
        assert float(cupy.max(cupy.abs(results[1][k] - g))) <= 1e-12 * scale, k
