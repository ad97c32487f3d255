"""The numba backend against the NumPy backend and against the mathematics: agreement to 1e-12
(float64, exact activations), finite differences, dot-product and Taylor tests.

Each case below is one generated kernel (numba compiles it once per test session, a few seconds;
the fixtures are module-scoped), chosen so that every activation, boundary and parameter family
appears, with soft normalisation and a trained ω in most of them, halos of 1, 2 and 3, one-sided
offsets, layer-independent weights (computed once per call, gradient sums contracted once at the
end) and per-layer ones (a time-dependent parameter). The helpers
(dense step Jacobian, finite differences, the step dot-product tests) are those of
``tests/test_gradients.py``, with its tolerances.
"""
import numpy as np
import pytest
import sympy as sp

numba = pytest.importorskip("numba", reason="numba is not installed (pip install 'npdegen[fast]')")

import npdegen  # noqa: E402
from test_gradients import (  # noqa: E402
    CUSTOM, LAYERS, N, OMEGA, SPACING, Dense, adr_transform, check_step_adjoint, check_step_params, dot_tol,
    fd_check, inner, inputs, random_direction, relu_theta, shifted)

H, D_, R_ = "heterogeneous", "homogeneous", "time-dependent"
#: name: (activation, boundary, bias, families of (U, D, R), alpha, train_omega, layer options)
CASES = {
    "identity-periodic": ("identity", "periodic", D_, (D_, D_, D_), 0.1, True, {"accuracy": 6}),
    "tanh-dirichlet": ("tanh", "dirichlet", H, (R_, H, D_), 0.1, True, {}),
    "sigmoid-neumann": ("sigmoid", "neumann", R_, (D_, R_, H), 0.1, True, {"offsets": (0, 1, 2), "accuracy": None}),
    "relu-periodic": ("relu", "periodic", H, (H, D_, H), None, True, {}),
    "softplus-neumann": ("softplus", "neumann", D_, (H, H, D_), 0.1, True, {"accuracy": 4}),
    "square-dirichlet": ("square", "dirichlet", R_, (R_, D_, H), None, False, {}),
}


def build(adr, name, backend="numba", n=N, layers=LAYERS, **extra):
    activation, boundary, bias, families, alpha, train_omega, layer_kw = CASES[name]
    q, z, U, D, R = adr
    params = dict(zip((U, D, R), families))
    layer = npdegen.NeuralPDE(adr_transform(adr), z, activation=CUSTOM.get(activation, activation), params=params,
                              bias=bias, **layer_kw)
    kw = dict(n=n, spacing=SPACING, layers=layers, omega=OMEGA, boundary=boundary, alpha=alpha,
              train_omega=train_omega, **extra)
    net = layer.compile(backend=backend, activations="exact" if backend == "numba" else None, **kw)
    return layer, params, net


#: Compiling a kernel takes several seconds: these three cases run with the slow tests
#: (``-m slow``); the others already cover every boundary, family, halo and both weight paths.
SLOW = {"sigmoid-neumann", "relu-periodic", "square-dirichlet"}


@pytest.fixture(scope="module", params=[pytest.param(name, marks=pytest.mark.slow) if name in SLOW else name
                                        for name in sorted(CASES)])
def case(request):
    """(name, numba network, numpy network, theta, dense step matrices)."""
    q = sp.Symbol("q")
    adr = (q, sp.Function("z")(q), *sp.symbols("U D R"))
    name = request.param
    layer, params, net = build(adr, name)
    _, _, ref = build(adr, name, backend="numpy")
    activation, boundary, bias = CASES[name][:3]
    theta = net.init_params(seed=3, scale=0.02 if activation == "relu" else 0.05,
                            values={k: v for k, v in {"U": 0.3, "D": 0.15, "R": -0.1, "b": 0.1}.items()
                                    if k in net.shapes})
    if activation == "relu":
        theta = relu_theta(net, theta)
    dense = Dense(layer, params, bias, activation, SPACING, N, boundary)
    return name, net, ref, theta, dense


def close(a, b, rtol=1e-12):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * max(np.max(np.abs(b)), 1e-300))


def test_backend_and_forms(case):
    name, net, ref, theta, _ = case
    assert net.backend.name == "numba" and net.options.activations == "exact"
    assert net.kernel.ACTIVATIONS == "exact" and ref.backend.name == "numpy"


def test_agrees_with_numpy(case, rng):
    """Trajectory, loss, every gradient, the input gradient and a vjp: 1e-12 relative."""
    name, net, ref, theta, _ = case
    x, y = inputs(rng, net, CASES[name][0])
    close(net.forward(x, theta, trajectory=True), ref.forward(x, theta, trajectory=True))
    loss, grads = net.loss_and_grad(x, y, theta, input_grad=True)
    loss0, grads0 = ref.loss_and_grad(x, y, theta, input_grad=True)
    assert loss == pytest.approx(loss0, rel=1e-12)
    assert set(grads) == set(grads0)
    for k in grads0:
        assert grads[k].shape == grads0[k].shape and grads[k].dtype == grads0[k].dtype
        close(grads[k], grads0[k])
    w = rng.standard_normal(x.shape)
    dx, g = net.vjp(x, theta, w)
    dx0, g0 = ref.vjp(x, theta, w)
    close(dx, dx0)
    for k in g0:
        close(g[k], g0[k])


def test_finite_differences(case, rng):
    """Central differences of the loss for every key and the input (tests/test_gradients.py: rel < 1e-6)."""
    name, net, _, theta, _ = case
    x, y = inputs(rng, net, CASES[name][0])
    fd_check(net, theta, x, y, keys=sorted(theta) + ["x"], input_grad=True)


def test_step_dot_product(case, rng):
    """<J v, w> = <v, Jᵀ w> against the dense step Jacobian, and the parameter part, first and last layer."""
    name, net, _, theta, dense = case
    activation, alpha = CASES[name][0], CASES[name][4]
    z = inputs(rng, net, activation)[0]
    v, w = rng.standard_normal((2, net.n)), rng.standard_normal((2, net.n))
    for t in (0, net.layers - 1):
        check_step_adjoint(net, theta, dense, z, v, w, t, alpha)
        check_step_params(net, theta, dense, z, w, t, activation, rng, richardson=t == 0)


def test_taylor(case, rng):
    """First-order remainder slope 1, second-order slope 2 (ε = 1e-2 … 1e-4)."""
    name, net, _, theta, _ = case
    if CASES[name][0] == "relu":
        pytest.skip("relu: the Taylor remainder is not smooth across the kink (finite differences cover it)")
    x, y = inputs(rng, net, CASES[name][0])
    loss, grads = net.loss_and_grad(x, y, theta)
    d = {k: 0.5 * v for k, v in random_direction(theta, rng).items()}
    slope = sum(inner(d[k], grads[k]) for k in theta)
    eps = np.logspace(-2, -4, 5)
    r1, r2 = [], []
    for e in eps:
        le = net.loss_and_grad(x, y, shifted(theta, d, e))[0]
        r1.append(abs(le - loss))
        r2.append(abs(le - loss - e * slope))
    assert abs(np.polyfit(np.log(eps), np.log(r1), 1)[0] - 1) < 0.1, r1
    assert abs(np.polyfit(np.log(eps), np.log(r2), 1)[0] - 2) < 0.1, r2


def test_network_dot_product(case, rng):
    """The whole network: <J v, w> = <v, vjp(w)>, J v by central differences of x -> z_L (the dense
    test above covers single steps exactly)."""
    name, net, _, theta, _ = case
    x = inputs(rng, net, CASES[name][0])[0]
    v, w = rng.standard_normal(x.shape), rng.standard_normal(x.shape)
    h = 1e-6
    Jv = (net.forward(x + h * v, theta) - net.forward(x - h * v, theta)) / (2 * h)
    dx, _ = net.vjp(x, theta, w)
    assert abs(inner(Jv, w) - inner(v, dx)) <= 1e-7 * np.linalg.norm(Jv) * np.linalg.norm(w) + dot_tol(Jv, w)


@pytest.mark.parametrize("chunk", [1, 2, 3, 5])
def test_chunks_smaller_than_the_grid(case, rng, chunk):
    """Several chunks per layer (halos crossing chunk edges, chunks narrower than the stencil):
    the same numbers as one chunk."""
    name, net, ref, theta, _ = case
    x, y = inputs(rng, net, CASES[name][0])
    expected = net.loss_and_grad(x, y, theta, input_grad=True)
    saved = net.kernel.CHUNK
    try:
        net.kernel.CHUNK = chunk
        net._work.clear()
        got = net.loss_and_grad(x, y, theta, input_grad=True)
        z1 = net.step(x, theta, net.layers - 1)
    finally:
        net.kernel.CHUNK = saved
        net._work.clear()
    assert got[0] == pytest.approx(expected[0], rel=1e-13)
    for k in expected[1]:
        close(got[1][k], expected[1][k], 1e-13)
    close(z1, ref.step(x, theta, net.layers - 1))


def test_single_sample(case, rng):
    """A single sample (n,) and the gradient dtypes, as the NumPy backend returns them."""
    name, net, ref, theta, _ = case
    x, y = (a[0] for a in inputs(rng, net, CASES[name][0]))
    loss, grads = net.loss_and_grad(x, y, theta, input_grad=True)
    loss0, grads0 = ref.loss_and_grad(x, y, theta, input_grad=True)
    assert grads["x"].shape == (net.n,) and loss == pytest.approx(loss0, rel=1e-12)
