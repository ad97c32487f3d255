"""The quadrature-generalised update as generated step kernels (npdegen.integral.quadrature_step, issue 14
item 3: "forward and adjoint generated like every other layer").

References: the NumPy sweeps of QuadratureNetwork with method="stencil" and the same reach (themselves
checked against node matrices built one site, node and offset at a time in test_quadrature_update.py),
central finite differences in float64, a dot-product test of one step's adjoint, and NumPy ≡ numba ≡ the
CUDA emulator on the same generated layer."""
import pickle

import numpy as np
import pytest
import sympy as sp

from npdegen.integral import NonlocalPDE, gaussian, kernel, top_hat
from npdegen.integral.quadrature import QuadraturePDE
from npdegen.integral.quadrature_step import QuadratureStepPDE
from test_cuda_compile import NVRTC, NVRTC_MISSING, compile_job, emulator  # noqa: F401
from test_step_cuda import compare, emulated_network

q, r = sp.symbols("q r", real=True)
z1 = sp.Function("z")(q)
X, Y = sp.symbols("x y")
z2 = sp.Function("z")(X, Y)
sigma, mu, rho, ell = sp.symbols("sigma mu rho ell")


def tanh_layer():
    """σ homogeneous, μ per site, a bias per site, tanh."""
    return NonlocalPDE(gaussian(sigma, mu), z1, activation="tanh",
                       params={sigma: "homogeneous", mu: "heterogeneous"}, bias="heterogeneous")


def reaction_layer():
    """A learnable logistic reaction x + ρ x (1 − x) (an activation parameter inside G)."""
    x = sp.Symbol("x")
    return NonlocalPDE(gaussian(sigma), z1, activation=x + rho * x * (1 - x),
                       params={sigma: "homogeneous", rho: "time-dependent"}, bias="homogeneous")


def theta_of(layer, n, layers=3, seed=0):
    rng = np.random.default_rng(seed)
    values = {"sigma": np.array(0.13), "mu": 0.02 * rng.standard_normal(n), "rho": 0.3 + 0.1 * rng.random((layers, n)),
              "b": 0.1 * rng.standard_normal(n)}
    fam = layer.families
    out = {}
    for k, f in fam.items():
        v = values[k]
        out[k] = np.array(v if np.ndim(v) == 0 else v.reshape(-1)[0]) if f == "homogeneous" else v
    return out


def close(a, b, rel):
    scale = max(1.0, float(np.max(np.abs(b))))
    assert np.max(np.abs(np.asarray(a) - np.asarray(b))) <= rel * scale


def agree(net, ref, theta, n, rel=1e-12, batch=3, seed=1):
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal((batch, n)), rng.standard_normal((batch, n))
    close(net.forward(x, theta, trajectory=True), ref.forward(x, theta, trajectory=True), rel)
    (la, ga), (lb, gb) = net.loss_and_grad(x, y, theta, input_grad=True), ref.loss_and_grad(x, y, theta, input_grad=True)
    assert abs(la - lb) <= rel * abs(lb)
    assert set(ga) == set(gb)
    for k in gb:
        close(ga[k], gb[k], rel)


# ---------------------------------------------------------------------- against the NumPy sweeps
@pytest.mark.parametrize("boundary", ["periodic", "dirichlet", "neumann"])
@pytest.mark.parametrize("Q, rule, basis", [(2, "gauss", "hat"), (3, "newton-cotes", "bspline")])
def test_generated_numpy_equals_the_quadrature_sweeps(boundary, Q, rule, basis):
    n, layer = 18, tanh_layer()
    quad = QuadraturePDE(layer, Q=Q, rule=rule, basis=basis)
    opts = dict(spacing=0.1, layers=3, omega=0.8, boundary=boundary)
    net = quad.compile(n, backend="numpy", reach=2, **opts)
    ref = quad.compile(n, method="stencil", reach=2, **opts)
    agree(net, ref, theta_of(layer, n), n)


@pytest.mark.parametrize("Q, activation", [(1, "tanh"), (3, "identity")])
def test_collapsed_nodes_take_the_linear_path(Q, activation):
    """Q = 1 or a linear f: one linear stencil Σ_k ŵ_k w^k (the templates' linear path), f and b the IR's."""
    n = 16
    layer = NonlocalPDE(gaussian(sigma, mu), z1, activation=activation,
                        params={sigma: "homogeneous", mu: "heterogeneous"}, bias="heterogeneous")
    quad = QuadraturePDE(layer, Q=Q, basis="bspline")
    step = quad.step_layer(3)
    assert step.collapsed and step.lowered.linear and step.lowered.ir.bias == "heterogeneous"
    opts = dict(spacing=0.1, layers=3, omega=0.8, boundary="dirichlet")
    agree(quad.compile(n, backend="numpy", reach=3, **opts), quad.compile(n, method="stencil", reach=3, **opts),
          theta_of(layer, n), n)
    assert not QuadraturePDE(layer, Q=2).step_layer(1).collapsed or activation == "identity"


def test_activation_parameters_and_literal_weights():
    """ρ (time-dependent) inside G, normalise=False (c = ν), Q = 2 Gauss with the Gaussian basis."""
    n, layer = 16, reaction_layer()
    quad = QuadraturePDE(layer, Q=2, basis="gaussian", normalise=False)
    opts = dict(spacing=0.1, layers=3, omega=0.6, boundary="neumann")
    agree(quad.compile(n, backend="numpy", reach=3, **opts), quad.compile(n, method="stencil", reach=3, **opts),
          theta_of(layer, n), n)


@pytest.mark.slow          # 15 s of SymPy derivation (4 nodes x 9 offsets)
def test_two_dimensional_nodes():
    """Q = 2 in 2-D: four nodes per cell (the tensor product), reach (1, 1), one boundary per axis."""
    kern = gaussian((sigma, ell), dim=2)
    layer = NonlocalPDE(kern, z2, activation="tanh", params={sigma: "homogeneous", ell: "heterogeneous"},
                        bias="homogeneous")
    quad = QuadraturePDE(layer, Q=2)
    n = (7, 6)
    opts = dict(spacing=(0.2, 0.25), layers=2, omega=0.7, boundary=("periodic", "neumann"))
    net, ref = quad.compile(n, backend="numpy", reach=(1, 1), **opts), quad.compile(n, method="stencil",
                                                                                     reach=(1, 1), **opts)
    rng = np.random.default_rng(3)
    theta = {"sigma": np.array(0.3), "ell": 0.25 + 0.05 * rng.random(n), "b": np.array(0.05)}
    x, y = rng.standard_normal((2, *n)), rng.standard_normal((2, *n))
    close(net.forward(x, theta), ref.forward(x, theta), 1e-12)
    (la, ga), (lb, gb) = net.loss_and_grad(x, y, theta), ref.loss_and_grad(x, y, theta)
    assert abs(la - lb) <= 1e-12 * abs(lb)
    for k in gb:
        close(ga[k], gb[k], 1e-12)


# ---------------------------------------------------------------------- independent of the sweeps
def test_gradients_by_finite_differences_and_the_adjoint_by_dot_products():
    n, layer = 14, reaction_layer()
    net = QuadraturePDE(layer, Q=2).compile(n, backend="numpy", reach=2, spacing=0.1, layers=3, omega=0.7,
                                            boundary="dirichlet")
    theta = theta_of(layer, n)
    rng = np.random.default_rng(7)
    x, y = rng.standard_normal((2, n)), rng.standard_normal((2, n))
    _, grads = net.loss_and_grad(x, y, theta)
    eps = 1e-6
    for k, idx in [("sigma", ()), ("b", ()), ("rho", (1, 4))]:
        plus, minus = {kk: v.copy() for kk, v in theta.items()}, {kk: v.copy() for kk, v in theta.items()}
        plus[k][idx] += eps
        minus[k][idx] -= eps
        fd = (net.loss_and_grad(x, y, plus)[0] - net.loss_and_grad(x, y, minus)[0]) / (2 * eps)
        assert abs(grads[k][idx] - fd) <= 1e-6 * max(1.0, abs(fd)), k
    # one step: <J v, u> = <v, J^T u>
    v, u = rng.standard_normal((2, n)), rng.standard_normal((2, n))
    h = 1e-7
    jv = (net.step(x + h * v, theta, layer=1) - net.step(x - h * v, theta, layer=1)) / (2 * h)
    jtu, _ = net.step_vjp(x, theta, u, layer=1)
    assert abs(np.sum(jv * u) - np.sum(v * jtu)) <= 1e-7 * np.sum(np.abs(v * jtu))


def test_numba_equals_numpy_and_pickles():
    pytest.importorskip("numba")
    n, layer = 20, tanh_layer()
    quad = QuadraturePDE(layer, Q=2)
    opts = dict(spacing=0.1, layers=3, omega=0.8, boundary="neumann")
    nb, npy = quad.compile(n, backend="numba", reach=1, **opts), quad.compile(n, backend="numpy", reach=1, **opts)
    agree(nb, npy, theta_of(layer, n), n, rel=1e-12)
    again = pickle.loads(pickle.dumps(nb))
    x = np.random.default_rng(0).standard_normal((2, n))
    theta = theta_of(layer, n)
    np.testing.assert_array_equal(again.forward(x, theta), nb.forward(x, theta))
    with pytest.raises(ValueError, match="sigma > 0"):
        again.forward(x, {**theta, "sigma": np.array(-0.2)})


def test_cuda_emulation_equals_numpy(emulator):  # noqa: F811
    from npdegen.codegen.step_render import StepOptions
    layer = QuadraturePDE(reaction_layer(), Q=2).step_layer(2)
    options = StepOptions(backend="cupy", boundary=("periodic",), dtype="float64")
    cu, _ = emulated_network(layer, options, (13,), (0.1,), emulator, "quad", layers=3, omega=0.8)
    ref = layer.compile(n=13, spacing=0.1, layers=3, omega=0.8, boundary="periodic")
    compare(cu, ref, theta_of(reaction_layer(), 13), layers=3)


@pytest.mark.skipif(NVRTC is None, reason=NVRTC_MISSING)
@pytest.mark.parametrize("dim", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_cuda_sources_compile_with_nvrtc(dim):
    from npdegen.codegen.step_render import StepOptions, render_step
    if dim == 1:
        layer, bc = QuadraturePDE(tanh_layer(), Q=2).step_layer(2), ("neumann",)
    else:
        layer = QuadraturePDE(NonlocalPDE(gaussian(sigma, dim=2), z2, activation="tanh",
                                          params={sigma: "homogeneous"}), Q=2).step_layer((1, 1))
        bc = ("periodic", "dirichlet")
    if True:
        code = render_step(layer.lowered, StepOptions(backend="cupy", boundary=bc, dtype="float32")).files[".cu"]
        log, entries = compile_job(code, "90", True)
        assert log is None, log
        assert {"forward_step", "adjoint_site"} <= set(entries)


# ---------------------------------------------------------------------- bad input
def test_bad_input_is_named():
    quad = QuadraturePDE(tanh_layer(), Q=2)
    with pytest.raises(ValueError, match="reach"):
        quad.compile(16, backend="numpy")
    with pytest.raises(ValueError, match="reach"):
        quad.step_layer(9)
    with pytest.raises(ValueError, match="reach"):
        quad.step_layer((1, 1))
    with pytest.raises(ValueError, match="method"):
        quad.compile(16, backend="numpy", reach=2, method="fft")
    with pytest.raises(TypeError, match="QuadraturePDE"):
        QuadratureStepPDE(tanh_layer(), 2)
    h = sp.Symbol("h")
    compact = QuadraturePDE(NonlocalPDE(top_hat(h), z1, params={h: "homogeneous"}), Q=2)
    with pytest.raises(ValueError, match="compact support"):
        compact.step_layer(2)
    placed = QuadraturePDE(NonlocalPDE(kernel(sp.exp(-r ** 2 * (1 + q ** 2)), r, position=q), z1), Q=2)
    with pytest.raises(ValueError, match="position"):
        placed.step_layer(2)
