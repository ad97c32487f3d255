"""The nonlocal layer on a grid (npdegen.integral, issue 14 item 2) against independent references:
a direct O(N²) sum written here with its own boundary rule, central finite differences in float64,
and dot-product tests of the adjoint."""
import math

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings, strategies as st

import npdegen
from npdegen.integral import NonlocalPDE, exponential, gaussian, kernel, top_hat
from npdegen.integral.apply import DenseOperator, FFTOperator, StencilOperator

q, r = sp.symbols("q r", real=True)
z1 = sp.Function("z")(q)
X, Y = sp.symbols("x y")
z2 = sp.Function("z")(X, Y)
sigma, A, mu = sp.symbols("sigma A mu")
BOUNDARIES = ("periodic", "dirichlet", "neumann")


# ---------------------------------------------------------------------- the independent reference
def reflect(p, n, kind):
    """Grid index read at position p, or None: wrap, zero, or mirror about the faces repeatedly."""
    if kind == "periodic":
        return p % n
    if kind == "dirichlet":
        return p if 0 <= p < n else None
    while not 0 <= p < n:
        p = -p - 1 if p < 0 else 2 * n - 1 - p
    return p


def gauss(x, s, m=0.0):
    return math.exp(-(x - m) ** 2 / (2 * s * s)) / (math.sqrt(2 * math.pi) * s)


def direct_1d(z, weight, reach, kind):
    """Z_i = Σ_{|j| ≤ K} weight(i, j) z̃_{i+j}, one term at a time."""
    n = z.shape[-1]
    out = np.zeros_like(z)
    for i in range(n):
        for j in range(-reach, reach + 1):
            p = reflect(i + j, n, kind)
            if p is not None:
                out[..., i] += weight(i, j) * z[..., p]
    return out


def direct_2d(z, weight, reach, kinds):
    n0, n1 = z.shape[-2:]
    out = np.zeros_like(z)
    for i in range(n0):
        for k in range(n1):
            for a in range(-reach[0], reach[0] + 1):
                for b in range(-reach[1], reach[1] + 1):
                    p, s = reflect(i + a, n0, kinds[0]), reflect(k + b, n1, kinds[1])
                    if p is not None and s is not None:
                        out[..., i, k] += weight(a, b) * z[..., p, s]
    return out


def one_application(layer, n, spacing, boundary, method, reach, theta, x, dtype="float64"):
    """Z from a network of one identity layer with ω = 1 and no bias."""
    net = layer.compile(n, spacing=spacing, layers=1, omega=1.0, boundary=boundary, method=method, reach=reach,
                        dtype=dtype)
    return net.forward(x, theta), net


# ---------------------------------------------------------------------- application = direct sum
@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("width", ["narrow", "wide"])
@pytest.mark.parametrize("method", ["stencil", "fft", "dense"])
def test_application_equals_direct_sum_1d(boundary, width, method):
    n, dx = 37, 0.1
    s = 0.17 if width == "narrow" else 1.3
    reach = 6 if width == "narrow" else (n // 2 if boundary == "periodic" else n - 1)
    x = np.random.default_rng(1).standard_normal((2, n))
    layer = NonlocalPDE(gaussian(sigma), z1, params={sigma: "homogeneous"})
    got, _ = one_application(layer, n, dx, boundary, method, reach, {"sigma": np.array(s)}, x)
    want = direct_1d(x, lambda i, j: dx * gauss(j * dx, s), reach, boundary)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("boundary", ["periodic", "neumann"])
def test_periodic_reach_beyond_the_period_wraps(boundary):
    """A reach larger than the grid: periodic sums the kernel's images, Neumann reflects again."""
    n, dx, s = 12, 0.25, 1.5
    x = np.random.default_rng(2).standard_normal((2, n))
    layer = NonlocalPDE(gaussian(sigma), z1, params={sigma: "homogeneous"})
    for method in ("fft", "dense"):
        got, _ = one_application(layer, n, dx, boundary, method, 30, {"sigma": np.array(s)}, x)
        want = direct_1d(x, lambda i, j: dx * gauss(j * dx, s), 30, boundary)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("boundary", [("periodic", "periodic"), ("dirichlet", "neumann"), ("neumann", "periodic")])
@pytest.mark.parametrize("method", ["stencil", "fft", "dense"])
def test_application_equals_direct_sum_2d(boundary, method):
    n, dx = (9, 8), (0.2, 0.3)
    sx, sy = 0.3, 0.45
    layer = NonlocalPDE(gaussian((sp.Symbol("sx"), sp.Symbol("sy")), dim=2), z2,
                        params={"sx": "homogeneous", "sy": "homogeneous"})
    reach = (4, 3)
    x = np.random.default_rng(3).standard_normal((2, *n))
    got, _ = one_application(layer, n, dx, boundary, method, reach, {"sx": np.array(sx), "sy": np.array(sy)}, x)
    want = direct_2d(x, lambda a, b: dx[0] * dx[1] * gauss(a * dx[0], sx) * gauss(b * dx[1], sy), reach, boundary)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_compact_and_heterogeneous_kernels_equal_direct_sum():
    n, dx = 30, 0.1
    x = np.random.default_rng(4).standard_normal((2, n))
    h = sp.Symbol("h")
    layer = NonlocalPDE(top_hat(h), z1, params={h: "homogeneous"})
    for method in ("stencil", "fft", "dense"):
        got, net = one_application(layer, n, dx, "neumann", method, None, {"h": np.array(0.43)}, x)
        assert net._reach(net.check_params({"h": np.array(0.43)})) == (5,)
        want = direct_1d(x, lambda i, j: dx / 0.86 if abs(j * dx) <= 0.43 else 0.0, 5, "neumann")
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    # W(q, r): a Gaussian whose width grows along the grid, and a per-site sigma (heterogeneous family)
    s0 = sp.Symbol("s0", positive=True)
    width = s0 * (1 + q)
    K = kernel(sp.exp(-r**2 / (2 * width**2)) / (sp.sqrt(2 * sp.pi) * width), r, position=q)
    for method in ("stencil", "dense"):
        got, _ = one_application(NonlocalPDE(K, z1, params={s0: "homogeneous"}), n, dx, "dirichlet", method, 8,
                                 {"s0": np.array(0.15)}, x)
        want = direct_1d(x, lambda i, j: dx * gauss(j * dx, 0.15 * (1 + i * dx)), 8, "dirichlet")
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
        sig = 0.1 + 0.05 * np.sin(np.arange(n))
        got, _ = one_application(NonlocalPDE(gaussian(sigma), z1, params={sigma: "heterogeneous"}), n, dx,
                                 "periodic", method, 7, {"sigma": sig}, x)
        want = direct_1d(x, lambda i, j: dx * gauss(j * dx, sig[i]), 7, "periodic")
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("method", ["stencil", "dense"])
def test_heterogeneous_2d_equals_direct_sum(method):
    n, dx = (7, 6), (0.2, 0.25)
    rng = np.random.default_rng(18)
    sig = 0.25 + 0.1 * rng.random(n)
    layer = NonlocalPDE(gaussian(sigma, dim=2), z2, params={sigma: "heterogeneous"})
    x = rng.standard_normal((2, *n))
    got, _ = one_application(layer, n, dx, ("neumann", "dirichlet"), method, (3, 2), {"sigma": sig}, x)
    want = np.zeros_like(x)
    for i in range(n[0]):
        for k in range(n[1]):
            for a in range(-3, 4):
                for b in range(-2, 3):
                    p, s = reflect(i + a, n[0], "neumann"), reflect(k + b, n[1], "dirichlet")
                    if s is not None:
                        w = dx[0] * dx[1] * gauss(a * dx[0], sig[i, k]) * gauss(b * dx[1], sig[i, k])
                        want[:, i, k] += w * x[:, p, s]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_auto_reach_and_method_choice():
    n, dx = 256, 1.0
    x = np.random.default_rng(5).standard_normal((2, n))
    layer = NonlocalPDE(gaussian(sigma), z1, params={sigma: "homogeneous"})
    net = layer.compile(n, spacing=dx, method="auto")
    narrow, wide = net.check_params({"sigma": np.array(0.15)}), net.check_params({"sigma": np.array(30.0)})
    assert net.plan(narrow).op.name == "stencil" and net.plan(wide).op.name == "fft"
    k = net._reach(narrow)[0]                 # the first dropped weight is below eps relative to the peak
    assert gauss((k + 1) * dx, 0.15) < np.finfo(float).eps * gauss(0, 0.15) <= gauss(k * dx, 0.15)
    for th, s in ((narrow, 0.15), (wide, 30.0)):
        full = direct_1d(x, lambda i, j: dx * gauss(j * dx, s), n // 2, "periodic")
        np.testing.assert_allclose(net.forward(x, th), full, rtol=0, atol=1e-13)
    forced = layer.compile(n, spacing=dx, method="fft")
    np.testing.assert_allclose(forced.forward(x, narrow), net.forward(x, narrow), rtol=0, atol=1e-13)


# ---------------------------------------------------------------------- adjoint: dot-product tests
@settings(derandomize=True, max_examples=20, deadline=None)
@given(n=st.integers(3, 24), reach=st.integers(0, 30), kind=st.sampled_from(BOUNDARIES),
       op=st.sampled_from(["stencil", "fft", "dense"]), site=st.booleans(), seed=st.integers(0, 2**16))
def test_operator_adjoint_dot_product(n, reach, kind, op, site, seed):
    if op == "stencil":
        reach = min(reach, n)
    if op == "fft":
        site = False
    if kind == "dirichlet":
        reach = min(reach, n - 1)
    rng = np.random.default_rng(seed)
    cls = {"stencil": StencilOperator, "fft": FFTOperator, "dense": DenseOperator}[op]
    K = cls((n,), (kind,), (reach,), np.float64)
    w = rng.standard_normal((n, 2 * reach + 1) if site else 2 * reach + 1)
    u, v = rng.standard_normal((3, n)), rng.standard_normal((3, n))
    prepared = K.prepare(w)
    Ku, saved = K.forward(prepared, u)
    Ktv, corr = K.backward(prepared, v, u, saved, True)
    assert abs(np.vdot(Ku, v) - np.vdot(u, Ktv)) <= 1e-12 * max(1.0, np.abs(Ku).sum() * np.abs(v).max())
    # the correlation C contracts with the weights to <v, K u> as well
    if op == "fft":
        total = K.parseval(K.wrap(w), corr)
    else:
        total = np.sum(np.broadcast_to(w, np.shape(corr)) * corr) if np.ndim(corr) > 1 or not site else None
    assert total == pytest.approx(np.vdot(Ku, v), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("boundary", [("periodic", "dirichlet"), ("neumann", "neumann")])
def test_operator_adjoint_dot_product_2d(boundary):
    rng = np.random.default_rng(7)
    for cls in (StencilOperator, FFTOperator, DenseOperator):
        K = cls((7, 6), boundary, (3, 5), np.float64)
        w = rng.standard_normal(len(K.offsets))
        u, v = rng.standard_normal((2, 7, 6)), rng.standard_normal((2, 7, 6))
        Ku, saved = K.forward(K.prepare(w), u)
        Ktv, _ = K.backward(K.prepare(w), v, u, saved, False)
        assert abs(np.vdot(Ku, v) - np.vdot(u, Ktv)) < 1e-12 * np.abs(Ku).sum()


# ---------------------------------------------------------------------- gradients: finite differences
def fd_check(net, x, y, theta, keys, eps=1e-6, tol=1e-6):
    loss, grads = net.loss_and_grad(x, y, theta, input_grad=True)
    for k in keys:
        base = np.asarray(theta[k], np.float64)
        flat = base.reshape(-1)
        idx = range(flat.size) if flat.size <= 4 else np.random.default_rng(0).choice(flat.size, 4, replace=False)
        for j in idx:
            step = eps * max(1.0, abs(flat[j]))
            plus, minus = flat.copy(), flat.copy()
            plus[j] += step
            minus[j] -= step
            lp = net.loss_and_grad(x, y, {**theta, k: plus.reshape(base.shape)})[0]
            lm = net.loss_and_grad(x, y, {**theta, k: minus.reshape(base.shape)})[0]
            fd, an = (lp - lm) / (2 * step), float(np.asarray(grads[k]).reshape(-1)[j])
            assert abs(fd - an) <= tol * max(abs(fd), abs(an), 1e-3), (k, j, fd, an)
    xf = x.reshape(-1)
    for j in (0, xf.size // 2, xf.size - 1):
        plus, minus = xf.copy(), xf.copy()
        plus[j] += eps
        minus[j] -= eps
        fd = (net.loss_and_grad(plus.reshape(x.shape), y, theta)[0]
              - net.loss_and_grad(minus.reshape(x.shape), y, theta)[0]) / (2 * eps)
        an = grads["x"].reshape(-1)[j]
        assert abs(fd - an) <= tol * max(abs(fd), abs(an), 1e-3), ("x", j, fd, an)


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("method", ["stencil", "fft", "dense"])
def test_gradients_by_finite_differences(boundary, method):
    n, L = 24, 3
    layer = NonlocalPDE(A * gaussian(sigma, shift=mu), z1, activation="tanh",
                        params={sigma: "homogeneous", A: "homogeneous", mu: "homogeneous"}, bias="heterogeneous")
    net = layer.compile(n, spacing=0.1, layers=L, omega=0.7, boundary=boundary, method=method, reach=9,
                        train_omega=True)
    rng = np.random.default_rng(8)
    x, y = rng.standard_normal((2, n)), 0.5 * rng.standard_normal((2, n))
    theta = {"sigma": np.array(0.21), "A": np.array(1.1), "mu": np.array(0.04), "b": 0.1 * rng.standard_normal(n),
             "omega": np.array(0.7)}
    fd_check(net, x, y, theta, ["sigma", "A", "mu", "b", "omega"])


@pytest.mark.parametrize("bias", [None, "homogeneous", "heterogeneous", "time-dependent"])
def test_linear_periodic_fourier_path_equals_dense_layers(bias):
    """Identity activation, periodic, FFT: all layers in Fourier space; loss, every gradient and the
    trajectory equal the dense matrix layer by layer (1e-12), and finite differences agree."""
    n, L = 18, 4
    layer = NonlocalPDE(A * gaussian(sigma, dim=2), z2, params={sigma: "homogeneous", A: "homogeneous"}, bias=bias)
    nets = [layer.compile((n, 6), spacing=(0.1, 0.2), layers=L, omega=0.6, method=m, reach=(5, 3), train_omega=True)
            for m in ("fft", "dense")]
    rng = np.random.default_rng(15)
    x, y = rng.standard_normal((2, 3, n, 6))
    theta = {"sigma": np.array(0.23), "A": np.array(0.9), "omega": np.array(0.6)}
    if bias:
        theta["b"] = 0.1 * rng.standard_normal(nets[0].shapes["b"])
    (l0, g0), (l1, g1) = (net.loss_and_grad(x, y, theta, input_grad=True) for net in nets)
    assert nets[0].plan(nets[0].check_params(theta)).op.name == "fft" and nets[0]._spectral(nets[0].plan(theta))
    assert l0 == pytest.approx(l1, rel=1e-13)
    for k in g1:
        np.testing.assert_allclose(g0[k], g1[k], rtol=1e-11, atol=1e-12, err_msg=k)
    np.testing.assert_allclose(nets[0].layer_losses(x, y, theta), nets[1].layer_losses(x, y, theta), rtol=1e-12)
    fd_check(nets[0], x, y, theta, list(theta))


@pytest.mark.parametrize("method", ["stencil", "dense"])
def test_gradients_of_site_dependent_families(method):
    n, L = 16, 3
    ell = sp.Symbol("ell")
    layer = NonlocalPDE(A * exponential(ell), z1, activation="sigmoid",
                        params={ell: "heterogeneous", A: "time-dependent"}, bias="time-dependent")
    net = layer.compile(n, spacing=0.2, layers=L, omega=0.9, boundary="neumann", method=method, reach=6)
    rng = np.random.default_rng(9)
    x, y = rng.standard_normal((2, n)), 0.3 * rng.standard_normal((2, n))
    theta = {"ell": 0.3 + 0.1 * rng.random(n), "A": 1 + 0.1 * rng.standard_normal((L, n)),
             "b": 0.1 * rng.standard_normal((L, n))}
    fd_check(net, x, y, theta, ["ell", "A", "b"])


@pytest.mark.parametrize("family", ["homogeneous", "heterogeneous", "time-dependent"])
def test_activation_parameters_logistic_reaction(family):
    """f(x) = x + rho x (1 - x) with a trainable rho: forward against the direct sum, gradients by FD."""
    n, L, dx, s = 20, 3, 0.1, 0.2
    rho = sp.Symbol("rho")
    xs = sp.Symbol("X")
    layer = NonlocalPDE(gaussian(sigma), z1, activation=xs + rho * xs * (1 - xs),
                        params={sigma: "homogeneous", rho: family})
    net = layer.compile(n, spacing=dx, layers=L, omega=0.9, boundary="neumann", reach=8)
    rng = np.random.default_rng(16)
    x, y = rng.random((2, n)), rng.random((2, n))
    theta = {"sigma": np.array(s), "rho": 0.3 + 0.05 * rng.standard_normal(net.shapes["rho"])}
    zt = x.copy()
    for t in range(L):
        r_t = theta["rho"][t] if family == "time-dependent" else theta["rho"]
        Z = direct_1d(zt, lambda i, j: dx * gauss(j * dx, s), 8, "neumann")
        zt = 0.1 * zt + 0.9 * (Z + r_t * Z * (1 - Z))
    np.testing.assert_allclose(net.forward(x, theta), zt, rtol=0, atol=1e-12)
    fd_check(net, x, y, theta, ["sigma", "rho"])


def test_gradients_2d_fft():
    layer = NonlocalPDE(gaussian(sigma, dim=2), z2, activation="softplus", params={sigma: "homogeneous"},
                        bias="homogeneous")
    net = layer.compile((10, 9), spacing=(0.2, 0.25), layers=2, omega=0.8, boundary=("dirichlet", "neumann"),
                        method="fft")
    rng = np.random.default_rng(10)
    x, y = rng.standard_normal((2, 10, 9)), rng.standard_normal((2, 10, 9))
    fd_check(net, x, y, {"sigma": np.array(0.4), "b": np.array(0.05)}, ["sigma", "b"])


def test_multilayer_forward_equals_reference_loop_and_vjp_is_adjoint():
    """L tanh layers with bias and ω against the direct sum; ⟨J u, v⟩ = ⟨u, Jᵀ v⟩ for the linear net."""
    n, dx, s, L, om = 20, 0.15, 0.3, 4, 0.6
    rng = np.random.default_rng(11)
    x, b = rng.standard_normal((2, n)), 0.1 * rng.standard_normal(n)
    layer = NonlocalPDE(gaussian(sigma), z1, activation="tanh", params={sigma: "homogeneous"}, bias="heterogeneous")
    net = layer.compile(n, spacing=dx, layers=L, omega=om, boundary="neumann", method="fft", reach=n - 1)
    zt = x.copy()
    for _ in range(L):
        Z = direct_1d(zt, lambda i, j: dx * gauss(j * dx, s), n - 1, "neumann") - b
        zt = (1 - om) * zt + om * np.tanh(Z)
    theta = {"sigma": np.array(s), "b": b}
    np.testing.assert_allclose(net.forward(x, theta), zt, rtol=0, atol=1e-12)
    linear = NonlocalPDE(gaussian(sigma), z1, params={sigma: "homogeneous"}).compile(
        n, spacing=dx, layers=L, omega=om, boundary="dirichlet", method="fft")
    u, v = rng.standard_normal((2, 3, n))
    Ju = linear.forward(u, {"sigma": np.array(s)})
    JTv, _ = linear.vjp(u, {"sigma": np.array(s)}, v)
    assert abs(np.vdot(Ju, v) - np.vdot(u, JTv)) < 1e-12 * np.abs(Ju).sum()


def test_float32_agrees_with_float64():
    layer = NonlocalPDE(gaussian(sigma), z1, activation="tanh", params={sigma: "homogeneous"}, bias="homogeneous")
    x = np.random.default_rng(12).standard_normal((3, 64))
    theta = {"sigma": np.array(0.8), "b": np.array(0.1)}
    for method in ("stencil", "fft"):
        outs = [layer.compile(64, spacing=0.1, layers=5, omega=0.5, method=method, dtype=d).forward(x, theta)
                for d in ("float32", "float64")]
        assert outs[0].dtype == np.float32
        np.testing.assert_allclose(outs[0], outs[1], atol=2e-6)


# ---------------------------------------------------------------------- training and inspection
def test_npdegen_train_recovers_sigma_and_tape_losses():
    n = 64
    layer = NonlocalPDE(gaussian(sigma), z1, activation="tanh", params={sigma: "homogeneous"})
    net = layer.compile(n, spacing=1.0 / n, layers=4, omega=0.8, boundary="periodic")
    grid = np.arange(n) / n
    rng = np.random.default_rng(13)
    x = np.sin(2 * np.pi * (grid + rng.random((8, 1)))) + 0.5 * np.sin(6 * np.pi * grid + rng.random((8, 1)))
    y = net.forward(x, {"sigma": np.array(0.05)})
    theta0 = {"sigma": np.array(0.02)}
    theta, hist = npdegen.train(net, x, y, theta0, steps=150, lr=2e-3, progress=False,
                                bounds={"sigma": (1e-3, None)})
    assert hist.final_loss < 1e-3 * net.layer_losses(x, y, theta0)[-1]
    assert float(theta["sigma"]) == pytest.approx(0.05, rel=1e-2)
    _, hist = npdegen.train(net, x, y, theta0, steps=3, lr=1e-3, loss="mean", progress=False)   # tape path
    assert len(hist.loss) == 3 and np.isfinite(hist.loss).all()


def test_layerwise_training_and_step_vjp():
    n, L = 32, 3
    layer = NonlocalPDE(A * gaussian(0.1), z1, params={A: "time-dependent"}, bias="time-dependent")
    net = layer.compile(n, spacing=0.05, layers=L, omega=1.0)
    rng = np.random.default_rng(14)
    x = rng.standard_normal((4, n))
    theta = {"A": np.ones((L, n)), "b": np.zeros((L, n))}
    z, lam = rng.standard_normal((4, n)), rng.standard_normal((4, n))
    dz, grads = net.step_vjp(z, theta, lam, 1)
    eps, j = 1e-6, 5
    zp, zm = z.copy(), z.copy()
    zp[2, j] += eps
    zm[2, j] -= eps
    fd = (np.vdot(net.step(zp, theta, 1), lam) - np.vdot(net.step(zm, theta, 1), lam)) / (2 * eps)
    assert fd == pytest.approx(dz[2, j], rel=1e-7)
    assert np.all(grads["A"][[0, 2]] == 0) and np.any(grads["A"][1] != 0)
    theta, hist = npdegen.train(net, x, 0.5 * x, theta, steps=5, lr=1e-2, method="layerwise", progress=False)
    assert len(hist.loss) == 5 * L and hist.loss[4] < hist.loss[0]       # layer 0's five steps


def test_pickle_round_trip_and_explain():
    import pickle
    layer = NonlocalPDE(A * gaussian(sigma), z1, activation="tanh", params={sigma: "homogeneous", A: "homogeneous"},
                        bias="homogeneous")
    net = layer.compile(32, spacing=0.1, layers=2, omega=0.5, boundary="neumann")
    theta = {"sigma": np.array(0.3), "A": np.array(1.2), "b": np.array(0.1)}
    x = np.random.default_rng(17).standard_normal((2, 32))
    again = pickle.loads(pickle.dumps(net))
    np.testing.assert_array_equal(again.forward(x, theta), net.forward(x, theta))
    assert same_moment(net.moments(2)[2], A * sigma**2)
    assert [row.process for row in net.explain(2)] == ["reaction", "advection", "diffusion"]


def same_moment(a, b):
    return sp.simplify(a - b) == 0


def test_truncation_report_states_sampling_error():
    layer = NonlocalPDE(gaussian(sigma), z1, params={sigma: "homogeneous"})
    net = layer.compile(128, spacing=0.1)
    fine = net.truncation({"sigma": np.array(0.4)}, 4)
    assert abs(fine[2][2]) < 1e-14 and fine[2][0] == pytest.approx(0.16)
    coarse = net.truncation({"sigma": np.array(0.04)}, 2)     # sigma below the spacing: badly sampled
    assert abs(coarse[2][2]) > 0.1 * coarse[2][0]                   # W_2 off by more than 10 %


# ---------------------------------------------------------------------- bad input
def test_bad_input_raises_clear_errors():
    layer = NonlocalPDE(gaussian(sigma), z1, params={sigma: "heterogeneous"})
    with pytest.raises(ValueError, match="method='fft' applies one kernel"):
        layer.compile(32, method="fft")
    with pytest.raises(ValueError, match="at most n = 16"):
        NonlocalPDE(gaussian(sigma), z1, params={sigma: "homogeneous"}).compile(16, method="stencil", reach=20)
    with pytest.raises(ValueError, match="DENSE_LIMIT"):
        NonlocalPDE(gaussian(sigma), z1, params={sigma: "homogeneous"}).compile(5000, method="dense", reach=2)
    with pytest.raises(ValueError, match="need a family"):
        NonlocalPDE(gaussian(sigma), z1)
    with pytest.raises(ValueError, match="neither parameters of the kernel"):
        NonlocalPDE(gaussian(0.2), z1, params={"tau": "homogeneous"})
    with pytest.raises(ValueError, match="coordinate"):
        NonlocalPDE(gaussian(0.2), z2)
    with pytest.raises(TypeError, match="npdegen Kernel"):
        NonlocalPDE(sp.exp(-r**2), z1)
    good = NonlocalPDE(gaussian(0.2), z1)
    for kwargs, match in [({"omega": 2.5}, "outside"), ({"dtype": "float16"}, "dtype"), ({"method": "fast"}, "method"),
                          ({"reach": -1}, "reach"), ({"boundary": "open"}, "boundary"), ({"layers": 0}, "layers")]:
        with pytest.raises(ValueError, match=match):
            good.compile(16, **kwargs)
    net = good.compile(16)
    with pytest.raises(ValueError, match="NaN"):
        net.forward(np.full(16, np.nan), {})
    with pytest.raises(ValueError, match="shape"):
        net.forward(np.zeros(15), {})


def test_lbfgs_trains_a_nonlocal_network():
    """npdegen.train(optimizer="lbfgs") on a network without compile options (found by the point layer)."""
    import numpy as np
    import sympy as sp
    import npdegen
    q = sp.Symbol("q")
    z = sp.Function("z")(q)
    sigma = sp.Symbol("sigma", positive=True)
    net = npdegen.NonlocalPDE(npdegen.gaussian(sigma), z, params={sigma: "homogeneous"}).compile(
        n=64, spacing=1 / 64, layers=2)
    x = np.random.default_rng(0).standard_normal((4, 64))
    y = net.forward(x, {"sigma": np.array(0.03)})
    theta, _ = npdegen.train(net, x, y, net.init_params(values={"sigma": 0.05}), steps=30, optimizer="lbfgs",
                             progress=False)
    assert abs(float(theta["sigma"]) - 0.03) < 1e-8
