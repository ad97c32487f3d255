"""The quadrature-generalised update (npdegen.integral.quadrature, issue 14 item 3) against independent
references: rules and bases in closed form (and SciPy's B-spline), the node matrices W^{kl} built here
one site, node and offset at a time with their own boundary rule, the grid layer for Q = 1, central
finite differences in float64 and dot-product tests of the adjoint."""
import math
import pickle

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings, strategies as st
from scipy.interpolate import BSpline

import npdegen
from npdegen.integral import NonlocalPDE, epanechnikov, gaussian, kernel
from npdegen.integral.basis import Basis, node_set, rule
from npdegen.integral.quadrature import QuadraturePDE

q, r = sp.symbols("q r", real=True)
z1 = sp.Function("z")(q)
X, Y = sp.symbols("x y")
z2 = sp.Function("z")(X, Y)
sigma, mu, h, rho = sp.symbols("sigma mu h rho")


# ---------------------------------------------------------------------- independent reference
def rule_ref(Q, kind):
    """Nodes in [-1/2, 1/2] and weights summing to 1, in closed form."""
    if kind == "gauss":
        return {1: ([0.0], [1.0]), 2: ([-0.5 / math.sqrt(3), 0.5 / math.sqrt(3)], [0.5, 0.5]),
                3: ([-0.5 * math.sqrt(0.6), 0.0, 0.5 * math.sqrt(0.6)], [5 / 18, 8 / 18, 5 / 18])}[Q]
    return {1: ([0.0], [1.0]), 2: ([-0.5, 0.5], [0.5, 0.5]), 3: ([-0.5, 0.0, 0.5], [1 / 6, 4 / 6, 1 / 6])}[Q]


def basis_ref(name, x):
    x = np.asarray(x, float)
    if name == "hat":
        return np.maximum(0.0, 1 - np.abs(x))
    if name == "bspline":
        return BSpline.basis_element(np.arange(-2.0, 3.0), extrapolate=False)(x)
    return np.exp(-x ** 2 / (2 * 0.5 ** 2))                      # "gaussian": width 1/2 cell


def reflect(p, n, kind):
    if kind == "periodic":
        return p % n
    if kind == "dirichlet":
        return p if 0 <= p < n else None
    while not 0 <= p < n:
        p = -p - 1 if p < 0 else 2 * n - 1 - p
    return p


def node_matrices(n, dx, kind, Q, rule_kind, basis, W, reach, normalise=True):
    """``(ŵ, c, [A_k])``: ``A_k[i, src(i+o)] += c ŵ_l Δ W(i, oΔ + d_l − d_k, k)`` for every o, l."""
    x, p = map(np.asarray, rule_ref(Q, rule_kind))
    raw = p * basis_ref(basis, x)
    w, c = raw / raw.sum(), (1.0 if normalise else raw.sum())
    mats = []
    for k in range(Q):
        A = np.zeros((n, n))
        for i in range(n):
            for o in range(-reach, reach + 1):
                src = reflect(i + o, n, kind)
                if src is None:
                    continue
                for l in range(Q):
                    A[i, src] += c * w[l] * dx * W(i, o * dx + (x[l] - x[k]) * dx, k)
        mats.append(A)
    return w, c, mats


def ref_forward(x, mats, w, b, omega, f, layers):
    traj, pres = [x], []
    for _ in range(layers):
        Zs = [traj[-1] @ A.T - b for A in mats]
        pres.append(Zs)
        traj.append((1 - omega) * traj[-1] + omega * sum(wk * f(Z) for wk, Z in zip(w, Zs)))
    return traj, pres


def ref_vjp(pres, mats, w, omega, fprime, lam):
    for Zs in reversed(pres):
        lam = (1 - omega) * lam + sum((omega * wk * fprime(Z) * lam) @ A for wk, Z, A in zip(w, Zs, mats))
    return lam


def gauss(x, s, m=0.0):
    return np.exp(-(x - m) ** 2 / (2 * s * s)) / (math.sqrt(2 * math.pi) * s)


def tanh_prime(Z):
    return 1 - np.tanh(Z) ** 2


# ---------------------------------------------------------------------- rules and bases
def test_rules_and_bases_in_closed_form():
    for Q in (1, 2, 3):
        for kind in ("gauss", "newton-cotes"):
            x, p = rule(Q, kind)
            want_x, want_p = rule_ref(Q, kind)
            np.testing.assert_allclose(x, want_x, rtol=0, atol=1e-15)
            np.testing.assert_allclose(p, want_p, rtol=0, atol=1e-15)
    grid = np.linspace(-2.6, 2.6, 53)
    np.testing.assert_allclose(Basis.bspline(3)(grid), np.nan_to_num(basis_ref("bspline", grid)), atol=1e-15)
    np.testing.assert_allclose(Basis.hat()(grid), basis_ref("hat", grid), atol=1e-15)
    quad = BSpline.basis_element(np.arange(-1.5, 2.0), extrapolate=False)
    np.testing.assert_allclose(Basis.bspline(2)(grid), np.nan_to_num(quad(grid)), atol=1e-15)
    for degree in (1, 2, 3, 5):                              # partitions of unity, unit integral
        assert Basis.bspline(degree).integral() == 1
        np.testing.assert_allclose(sum(Basis.bspline(degree)(grid[:5] + j) for j in range(-8, 9)), 1, atol=1e-14)
    assert sp.simplify(Basis.gaussian(0.3).integral() - sp.Rational(3, 10) * sp.sqrt(2 * sp.pi)) == 0
    ns = node_set(3, "newton-cotes", "hat", 2)               # tensor product: (0.1, 0.8, 0.1) per axis
    assert ns.count == 9 and ns.weights.sum() == pytest.approx(1)
    np.testing.assert_allclose(ns.weights.reshape(3, 3), np.outer([0.1, 0.8, 0.1], [0.1, 0.8, 0.1]), atol=1e-15)
    assert ns.variance == pytest.approx((0.05, 0.05)) and ns.mass == pytest.approx((5 / 6) ** 2)


# ---------------------------------------------------------------------- Q = 1 is the standard update
@pytest.mark.parametrize("basis", ["hat", "bspline", "gaussian", Basis.bspline(2)])
@pytest.mark.parametrize("method", ["stencil", "fft", "dense"])
def test_q1_equals_the_standard_update(basis, method):
    n, dx = 32, 1 / 32
    layer = NonlocalPDE(gaussian(sigma, mu), z1, activation="tanh", params={sigma: "homogeneous", mu: "homogeneous"},
                        bias="heterogeneous")
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((3, n)), rng.standard_normal((3, n))
    theta = {"sigma": np.array(0.06), "mu": np.array(0.013), "b": 0.1 * rng.standard_normal(n)}
    opts = dict(spacing=dx, layers=3, omega=0.8, method=method, boundary="periodic" if method == "fft" else "neumann")
    std, quad = layer.compile(n, **opts), QuadraturePDE(layer, Q=1, basis=basis).compile(n, **opts)
    np.testing.assert_allclose(quad.forward(x, theta), std.forward(x, theta), rtol=0, atol=1e-14)
    (l1, g1), (l2, g2) = std.loss_and_grad(x, y, theta), quad.loss_and_grad(x, y, theta)
    assert abs(l1 - l2) <= 1e-14 * abs(l1)
    for k in g1:
        np.testing.assert_allclose(g2[k], g1[k], rtol=1e-14, atol=1e-14)
    # eq. 24 itself: f_i = Φ^0 f(Z_i), Φ^0 = Δ (the rule integrates the basis exactly)
    one = layer.compile(n, **{**opts, "omega": 1.0})
    assert quad.Phi.tolist() == [dx]
    np.testing.assert_allclose(quad.update(x, theta), dx * one.step(x, theta, 0), rtol=0, atol=1e-14)


def test_q1_literal_weights_put_the_prefactor_inside_and_outside():
    """normalise=False: Φ^0 = Δ φ(0) = (2/3)Δ for the cubic B-spline, inside f and outside."""
    n, dx = 24, 0.1
    layer = NonlocalPDE(gaussian(sigma), z1, activation="tanh", params={sigma: "homogeneous"}, bias="homogeneous")
    scaled = NonlocalPDE(sp.Rational(2, 3) * gaussian(sigma), z1, activation="tanh", params={sigma: "homogeneous"},
                         bias="homogeneous")
    quad = QuadraturePDE(layer, Q=1, basis="bspline", normalise=False).compile(n, spacing=dx, omega=1.0)
    std = scaled.compile(n, spacing=dx, omega=1.0)
    theta = {"sigma": np.array(0.25), "b": np.array(0.2)}
    x = np.random.default_rng(2).standard_normal((2, n))
    assert quad.Phi[0] == pytest.approx(2 / 3 * dx, rel=1e-15)
    np.testing.assert_allclose(quad.update(x, theta), quad.Phi[0] * std.step(x, theta, 0), rtol=0, atol=1e-14)
    np.testing.assert_allclose(quad.forward(x, theta), std.forward(x, theta), rtol=0, atol=1e-14)


# ---------------------------------------------------------------------- Q = 2, 3 against the loop
CASES = [  # (Q, rule, basis, boundary, method, kernel)
    (2, "gauss", "hat", "periodic", "fft", "gaussian"),
    (3, "gauss", "bspline", "periodic", "stencil", "gaussian"),
    (3, "newton-cotes", "gaussian", "periodic", "dense", "gaussian"),
    (2, "newton-cotes", "hat", "dirichlet", "fft", "gaussian"),
    (3, "gauss", "hat", "dirichlet", "dense", "gaussian"),
    (2, "gauss", "bspline", "neumann", "stencil", "compact"),
    (3, "newton-cotes", "hat", "neumann", "fft", "compact"),
]


def _case(Q, rule_kind, basis, boundary, method, which, activation="tanh", normalise=True):
    n, dx = 24, 0.1
    if which == "gaussian":
        K, theta = gaussian(sigma, mu), {"sigma": np.array(0.13), "mu": np.array(0.031)}
        W = lambda i, rr, k: gauss(rr, 0.13, 0.031)                       # noqa: E731
        reach = 3 * n if boundary == "periodic" else n
    else:
        K, theta = epanechnikov(h), {"h": np.array(0.237)}
        W = lambda i, rr, k: np.where(np.abs(rr) <= 0.237, 0.75 / 0.237 * (1 - rr ** 2 / 0.237 ** 2), 0.0)  # noqa
        reach = n
    params = {p: "homogeneous" for p in K.params}
    layer = NonlocalPDE(K, z1, activation=activation, params=params, bias="heterogeneous")
    net = QuadraturePDE(layer, Q=Q, rule=rule_kind, basis=basis, normalise=normalise).compile(
        n, spacing=dx, layers=3, omega=0.7, boundary=boundary, method=method)
    rng = np.random.default_rng(Q * 7 + len(boundary))
    theta["b"] = 0.1 * rng.standard_normal(n)
    w, c, mats = node_matrices(n, dx, boundary, Q, rule_kind, basis, W, reach, normalise)
    return net, theta, w, c, mats, rng


@pytest.mark.parametrize("case", CASES, ids=["-".join(map(str, c)) for c in CASES])
def test_forward_update_and_adjoint_equal_the_quadrature_loop(case):
    net, theta, w, c, mats, rng = _case(*case)
    x, lam = rng.standard_normal((2, 24)), rng.standard_normal((2, 24))
    traj, pres = ref_forward(x, mats, w, theta["b"], 0.7, np.tanh, 3)
    np.testing.assert_allclose(net.forward(x, theta), traj[-1], rtol=0, atol=1e-12)
    np.testing.assert_allclose(net.forward(x, theta, trajectory=True), np.stack(traj), rtol=0, atol=1e-12)
    Phi = c * w * 0.1
    np.testing.assert_allclose(net.Phi, Phi, rtol=1e-14)
    f_i = sum(P * np.tanh(Z) for P, Z in zip(Phi, pres[0]))                # eq. 24
    np.testing.assert_allclose(net.update(x, theta), f_i, rtol=0, atol=1e-12)
    dx, _ = net.vjp(x, theta, lam)
    np.testing.assert_allclose(dx, ref_vjp(pres, mats, w, 0.7, tanh_prime, lam), rtol=0, atol=1e-12)


@pytest.mark.parametrize("method", ["fft", "dense"])
def test_linear_update_collapses_and_equals_the_loop(method):
    """f = id: one smoothed kernel per layer (the Fourier-space path for fft); the per-node path
    (forced) gives the same numbers; literal weights (normalise=False) scale the mass by ν."""
    for normalise in (True, False):
        net, theta, w, c, mats, rng = _case(3, "gauss", "hat", "periodic", method, "gaussian", "identity", normalise)
        x, lam = rng.standard_normal((2, 24)), rng.standard_normal((2, 24))
        traj, pres = ref_forward(x, mats, w, theta["b"], 0.7, lambda Z: Z, 3)
        want_dx = ref_vjp(pres, mats, w, 0.7, np.ones_like, lam)
        for collapse in (True, False):
            net._collapse = collapse
            np.testing.assert_allclose(net.forward(x, theta), traj[-1], rtol=0, atol=1e-12)
            np.testing.assert_allclose(net.vjp(x, theta, lam)[0], want_dx, rtol=0, atol=1e-12)
        assert (c == 1.0) == normalise and (normalise or c == pytest.approx(0.7848342585440324))


def test_two_dimensions_and_position_dependent_kernels_equal_the_loop():
    # 2-D: Q = 2 per axis, four nodes per cell, tensor-product weights
    n, dx = (6, 5), (0.2, 0.25)
    layer = NonlocalPDE(gaussian(sigma, dim=2), z2, activation="tanh", params={sigma: "homogeneous"})
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, *n))
    for method, boundary in (("fft", ("periodic", "dirichlet")), ("stencil", ("neumann", "periodic"))):
        net = QuadraturePDE(layer, Q=2, rule="gauss").compile(n, spacing=dx, layers=1, omega=1.0, boundary=boundary,
                                                               method=method, reach=(4, 4))
        got = net.forward(x, {"sigma": np.array(0.21)})
        a = 0.5 / math.sqrt(3)
        nodes = [(sx, sy) for sx in (-a, a) for sy in (-a, a)]
        want = np.zeros_like(x)
        for i in range(n[0]):
            for j in range(n[1]):
                for dk in nodes:
                    Z = 0.0
                    for o1 in range(-4, 5):
                        for o2 in range(-4, 5):
                            p, s = reflect(i + o1, n[0], boundary[0]), reflect(j + o2, n[1], boundary[1])
                            if p is None or s is None:
                                continue
                            for dl in nodes:
                                wl = 0.25 * dx[0] * dx[1] * gauss((o1 + dl[0] - dk[0]) * dx[0], 0.21) \
                                    * gauss((o2 + dl[1] - dk[1]) * dx[1], 0.21)
                                Z = Z + wl * x[:, p, s]
                    want[:, i, j] += 0.25 * np.tanh(Z)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    # W(q, r): the width grows along the grid; evaluated at the node q_i + d_k
    s0 = sp.Symbol("s0", positive=True)
    width = s0 * (1 + q)
    K = kernel(sp.exp(-r ** 2 / (2 * width ** 2)) / (sp.sqrt(2 * sp.pi) * width), r, position=q)
    net = QuadraturePDE(NonlocalPDE(K, z1, activation="tanh", params={s0: "homogeneous"}), Q=3).compile(
        20, spacing=0.1, layers=2, omega=0.6, boundary="dirichlet", method="dense")
    x1 = rng.standard_normal((2, 20))
    xn, _ = rule_ref(3, "gauss")
    W = lambda i, rr, k: gauss(rr, 0.15 * (1 + (i + xn[k]) * 0.1))          # noqa: E731
    w, _, mats = node_matrices(20, 0.1, "dirichlet", 3, "gauss", "hat", W, 20)
    traj, _ = ref_forward(x1, mats, w, 0.0, 0.6, np.tanh, 2)
    np.testing.assert_allclose(net.forward(x1, {"s0": np.array(0.15)}), traj[-1], rtol=0, atol=1e-12)


@settings(derandomize=True, max_examples=12, deadline=None)
@given(Q=st.sampled_from([2, 3]), rule_kind=st.sampled_from(["gauss", "newton-cotes"]),
       basis=st.sampled_from(["hat", "bspline", "gaussian"]), method=st.sampled_from(["stencil", "fft", "dense"]),
       omega=st.floats(0.2, 1.5), seed=st.integers(0, 2 ** 16))
def test_property_forward_equals_loop(Q, rule_kind, basis, method, omega, seed):
    n, dx, s = 16, 0.1, 0.12
    layer = NonlocalPDE(gaussian(sigma), z1, activation="sigmoid", params={sigma: "heterogeneous"}
                        if method != "fft" else {sigma: "homogeneous"})
    rng = np.random.default_rng(seed)
    sig = s + 0.02 * rng.random(n) if method != "fft" else np.array(s)
    net = QuadraturePDE(layer, Q=Q, rule=rule_kind, basis=basis).compile(n, spacing=dx, layers=2, omega=omega,
                                                                        method=method, boundary="dirichlet")
    W = lambda i, rr, k: gauss(rr, float(np.broadcast_to(sig, (n,))[i]))     # noqa: E731
    w, _, mats = node_matrices(n, dx, "dirichlet", Q, rule_kind, basis, W, n)
    x = rng.standard_normal((2, n))
    traj, _ = ref_forward(x, mats, w, 0.0, omega, lambda Z: 1 / (1 + np.exp(-Z)), 2)
    np.testing.assert_allclose(net.forward(x, {"sigma": sig}), traj[-1], rtol=0, atol=1e-12)


# ---------------------------------------------------------------------- gradients and adjoint
def fd_check(net, x, y, theta, keys, eps=1e-6, tol=1e-6):
    _, grads = net.loss_and_grad(x, y, theta, input_grad=True)
    for k in keys:
        base = np.asarray(theta[k], float)
        for j in sorted({0, base.size // 2, base.size - 1}):
            step = eps * max(1.0, abs(base.reshape(-1)[j]))
            plus, minus = base.copy().reshape(-1), base.copy().reshape(-1)
            plus[j] += step
            minus[j] -= step
            lp = net.loss_and_grad(x, y, {**theta, k: plus.reshape(base.shape)})[0]
            lm = net.loss_and_grad(x, y, {**theta, k: minus.reshape(base.shape)})[0]
            fd, an = (lp - lm) / (2 * step), float(np.asarray(grads[k]).reshape(-1)[j])
            assert abs(fd - an) <= tol * max(abs(fd), abs(an), 1e-3), (k, j, fd, an)
    xf = x.reshape(-1)
    for j in (0, xf.size - 1):
        plus, minus = xf.copy(), xf.copy()
        plus[j] += eps
        minus[j] -= eps
        fd = (net.loss_and_grad(plus.reshape(x.shape), y, theta)[0]
              - net.loss_and_grad(minus.reshape(x.shape), y, theta)[0]) / (2 * eps)
        assert abs(fd - grads["x"].reshape(-1)[j]) <= tol * max(abs(fd), 1e-3)


@pytest.mark.parametrize("method,boundary,family", [("fft", "periodic", "homogeneous"),
                                                    ("stencil", "neumann", "heterogeneous"),
                                                    ("dense", "dirichlet", "time-dependent")])
def test_gradients_by_finite_differences(method, boundary, family):
    n, L = 20, 3
    layer = NonlocalPDE(gaussian(sigma, mu), z1, activation=sp.Symbol("x") * (1 + rho * (1 - sp.Symbol("x"))),
                        params={sigma: family, mu: "homogeneous", rho: "homogeneous"}, bias="heterogeneous")
    net = QuadraturePDE(layer, Q=3, rule="gauss", basis="bspline").compile(
        n, spacing=0.1, layers=L, omega=0.7, boundary=boundary, method=method, reach=6, train_omega=True)
    rng = np.random.default_rng(9)
    x, y = 0.5 * rng.standard_normal((2, n)), 0.5 * rng.standard_normal((2, n))
    shape = net.shapes["sigma"]
    theta = {"sigma": 0.15 + 0.02 * rng.random(shape), "mu": np.array(0.03), "rho": np.array(0.8),
             "b": 0.1 * rng.standard_normal(n), "omega": np.array(0.7)}
    fd_check(net, x, y, theta, ["sigma", "mu", "rho", "b", "omega"])


def test_adjoint_dot_product():
    """⟨v, J u⟩ = ⟨Jᵀ v, u⟩ for the (linear) map x → z_L, per-node and collapsed, every method."""
    rng = np.random.default_rng(11)
    layer = NonlocalPDE(gaussian(sigma, mu), z1, params={sigma: "homogeneous", mu: "homogeneous"})
    theta = {"sigma": np.array(0.17), "mu": np.array(-0.02)}
    u, v = rng.standard_normal((3, 30)), rng.standard_normal((3, 30))
    for method, boundary in (("fft", "periodic"), ("fft", "neumann"), ("stencil", "dirichlet"), ("dense", "neumann")):
        net = QuadraturePDE(layer, Q=2, basis="gaussian").compile(30, spacing=0.1, layers=4, omega=0.9,
                                                                   boundary=boundary, method=method)
        for collapse in (True, False):
            net._collapse = collapse
            Ju, (JTv, _) = net.forward(u, theta), net.vjp(u, theta, v)
            assert abs(np.vdot(v, Ju) - np.vdot(JTv, u)) <= 1e-12 * np.abs(Ju).sum()


# ---------------------------------------------------------------------- inspection, training, pickling
def test_truncation_shows_the_smoothing_moment():
    """W_Q = W * ρ: W_2 grows by 2 Var(d) W_0; W_0 and W_1 stay (sampling is spectrally exact here)."""
    layer = NonlocalPDE(2 * gaussian(sigma, mu), z1, params={sigma: "homogeneous", mu: "homogeneous"})
    theta = {"sigma": np.array(0.5), "mu": np.array(0.1)}
    for Q, kind, var in ((2, "gauss", 1 / 12), (3, "newton-cotes", 0.05), (2, "newton-cotes", 0.25)):
        net = QuadraturePDE(layer, Q=Q, rule=kind).compile(128, spacing=0.1)
        assert net.smearing() == pytest.approx((2 * var * 0.01,), rel=1e-12)
        t = net.truncation(theta, 2)
        assert abs(t[0][2]) < 1e-12 and abs(t[1][2]) < 1e-12
        assert t[2][2] == pytest.approx(2 * net.smearing()[0], rel=1e-9)       # W_0 = 2


def test_train_recovers_sigma_and_pickles():
    n = 48
    layer = NonlocalPDE(gaussian(sigma), z1, activation="tanh", params={sigma: "homogeneous"})
    net = QuadraturePDE(layer, Q=2).compile(n, spacing=1 / n, layers=3, omega=0.8)
    grid = np.arange(n) / n
    rng = np.random.default_rng(13)
    x = np.sin(2 * np.pi * (grid + rng.random((6, 1)))) + 0.5 * np.sin(6 * np.pi * grid + rng.random((6, 1)))
    y = net.forward(x, {"sigma": np.array(0.04)})
    theta0 = {"sigma": np.array(0.02)}
    theta, hist = npdegen.train(net, x, y, theta0, steps=120, lr=2e-3, progress=False, bounds={"sigma": (1e-3, None)})
    assert hist.final_loss < 1e-3 * net.layer_losses(x, y, theta0)[-1]
    assert float(theta["sigma"]) == pytest.approx(0.04, rel=1e-2)
    again = pickle.loads(pickle.dumps(net))
    assert again.nodes.Q == 2 and again.nodes.basis.name == "hat"
    np.testing.assert_array_equal(again.forward(x, theta), net.forward(x, theta))


def test_step_vjp_layerwise_tape_and_float32():
    layer = NonlocalPDE(gaussian(sigma), z1, activation="tanh", params={sigma: "time-dependent"}, bias="homogeneous")
    net = QuadraturePDE(layer, Q=2, basis="gaussian").compile(24, spacing=0.1, layers=3, omega=0.8, method="stencil")
    rng = np.random.default_rng(21)
    theta = {"sigma": 0.12 + 0.02 * rng.random((3, 24)), "b": np.array(0.05)}
    z, lam = rng.standard_normal((2, 24)), rng.standard_normal((2, 24))
    dz, grads = net.step_vjp(z, theta, lam, 1)
    eps, j = 1e-6, 7
    zp, zm = z.copy(), z.copy()
    zp[1, j] += eps
    zm[1, j] -= eps
    fd = (np.vdot(net.step(zp, theta, 1), lam) - np.vdot(net.step(zm, theta, 1), lam)) / (2 * eps)
    assert fd == pytest.approx(dz[1, j], rel=1e-7)
    assert np.all(grads["sigma"][[0, 2]] == 0) and np.any(grads["sigma"][1] != 0)
    tape = net.forward(z, theta, keep=True)                       # tape = vjp
    np.testing.assert_allclose(net.backward(tape, lam)[0], net.vjp(z, theta, lam)[0], rtol=0, atol=1e-14)
    _, hist = npdegen.train(net, z, 0.5 * z, theta, steps=4, lr=1e-3, method="layerwise", progress=False)
    assert len(hist.loss) == 12 and hist.loss[3] < hist.loss[0]
    single = NonlocalPDE(gaussian(sigma), z1, activation="tanh", params={sigma: "homogeneous"}, bias="homogeneous")
    x, th = rng.standard_normal((3, 64)), {"sigma": np.array(0.3), "b": np.array(0.1)}
    for method in ("stencil", "fft", "dense"):
        outs = [QuadraturePDE(single, Q=3).compile(64, spacing=0.1, layers=5, omega=0.5, method=method, dtype=d)
                .forward(x, th) for d in ("float32", "float64")]
        assert outs[0].dtype == np.float32
        np.testing.assert_allclose(outs[0], outs[1], atol=2e-6)


# ---------------------------------------------------------------------- bad input
def test_bad_input_raises_clear_errors():
    layer = NonlocalPDE(gaussian(sigma), z1, params={sigma: "homogeneous"})
    for Q in (0, 4, 2.0, True, "2"):
        with pytest.raises(ValueError, match="Q must be 1, 2 or 3"):
            QuadraturePDE(layer, Q=Q)
    with pytest.raises(ValueError, match="rule must be one of"):
        QuadraturePDE(layer, Q=2, rule="simpson")
    with pytest.raises(ValueError, match="basis must be one of"):
        QuadraturePDE(layer, Q=2, basis="spline")
    for width in (0, -0.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="width"):
            Basis.gaussian(width)
    for degree in (0, 6, 2.5):
        with pytest.raises(ValueError, match="degree"):
            Basis.bspline(degree)
    with pytest.raises(TypeError, match="NonlocalPDE"):
        QuadraturePDE(gaussian(sigma), Q=2)
    with pytest.raises(TypeError, match="normalise"):
        QuadraturePDE(layer, Q=2, normalise="yes")
    with pytest.raises(ValueError, match="sigma must be > 0"):
        gaussian(-1.0)
    net = QuadraturePDE(layer, Q=3).compile(16, spacing=0.1)
    with pytest.raises(ValueError, match="sigma > 0"):
        net.forward(np.zeros(16), {"sigma": np.array(-0.1)})
    with pytest.raises(ValueError, match="sigma > 0"):
        net.forward(np.zeros(16), {"sigma": np.array(0.0)})
    with pytest.raises(ValueError, match="shape"):
        net.forward(np.zeros(15), {"sigma": np.array(0.1)})
    with pytest.raises(ValueError, match="NaN"):
        net.forward(np.full(16, np.nan), {"sigma": np.array(0.1)})
    hetero = NonlocalPDE(gaussian(sigma), z1, params={sigma: "heterogeneous"})
    with pytest.raises(ValueError, match="convolution"):
        QuadraturePDE(hetero, Q=2).compile(16, method="fft")
    with pytest.raises(ValueError, match="layer must be an integer"):
        net.update(np.zeros(16), {"sigma": np.array(0.1)}, layer=3)
