"""Adjoints of the generated kernels: finite differences, dot-product (adjoint) tests, Taylor test.

Everything the adjoints are checked against is built here independently of the kernels: the
dense step matrix ``W`` comes from lambdifying the symbolic stencil ``layer.stencil(spacing)`` with
explicit boundary index logic, and ``f'`` from ``sympy.diff`` of activations written out here.

Tolerances (all float64):

* finite differences: central, ε = 1e-6; error measure ``|fd − g| / max(|fd|, |g|, 1e-2)``
  (the floor makes it an absolute 1e-8 check for tiny gradient entries, where the O(1e-10)
  round-off of the difference quotient would otherwise dominate) must be < 1e-6;
* dot-product tests: ``|⟨J v, w⟩ − ⟨v, Jᵀ w⟩| ≤ 1e-12 · ‖J v‖ ‖w‖`` (Cauchy–Schwarz scale);
* parameter part of the step adjoint: 1e-12 against the analytic directional derivative (bias,
  ω and the stencil weights through their SymPy derivatives), 1e-10 against a
  Richardson-extrapolated central difference (h = 5e-4 along a unit-normal direction; the
  observed error is ≤ 5e-12: truncation O(h⁴), round-off ~1e-16/h), both relative to
  ``Σ_k |⟨δθ_k, g_k⟩|``;
* Taylor test: slopes of the first- and second-order remainders over ε = 1e-2 … 1e-4 within 0.1
  of 1 and 2;
* float32 kernels: loss within 1e-5 and gradients within 1e-4 (of the largest entry) of float64.

Problems are small (n = 7, 3 layers, batch 2) except one large-batch test that drives the
kernels' column blocks (and threads, on several cores).
"""
import numpy as np
import pytest
import sympy as sp

import npdegen

FAMILIES = ("homogeneous", "heterogeneous", "time-dependent")
BOUNDARIES = ("periodic", "dirichlet", "neumann")
ACTIVATION_NAMES = ("identity", "tanh", "sigmoid", "relu", "softplus", "square")
SMOOTH = ("identity", "tanh", "sigmoid", "softplus", "square")

_x = sp.Symbol("x", real=True)
#: f written out independently of npdegen.spec.activations (same functions, textbook forms).
ACT_EXPR = {
    "identity": _x,
    "tanh": sp.tanh(_x),
    "sigmoid": 1 / (1 + sp.exp(-_x)),
    "relu": sp.Piecewise((0, _x < 0), (_x, True)),
    "softplus": sp.log(1 + sp.exp(_x)),
    "square": _x**2,
}
_s = sp.Symbol("s")
#: Custom activations as handed to the layer; ACT_EXPR gets the same functions in x.
CUSTOM = {
    "sin+cube": sp.sin(_s) + _s**3 / 10,
    "softsign": _s / (1 + sp.Abs(_s)),
    "atan-lambda": sp.Lambda(_s, sp.atan(2 * _s)),
}
ACT_EXPR.update({"sin+cube": sp.sin(_x) + _x**3 / 10, "softsign": _x / (1 + sp.Abs(_x)),
                 "atan-lambda": sp.atan(2 * _x)})


def _vectorised(expr):
    fn = sp.lambdify(_x, expr, "numpy")
    return lambda a: np.broadcast_to(np.asarray(fn(a), np.float64), np.shape(a)).copy()


ACT_F = {k: _vectorised(e) for k, e in ACT_EXPR.items()}
ACT_DF = {k: _vectorised(sp.diff(e, _x)) for k, e in ACT_EXPR.items()}

N, LAYERS, SPACING, OMEGA = 7, 3, 0.8, 0.7
ADR_VALUES = {"U": 0.3, "D": 0.15, "R": -0.1, "b": 0.1}


# ---------------------------------------------------------------------------- independent helpers
def source_index(k, n, boundary):
    """Which interior site z[k] reads (None: a Dirichlet zero)."""
    if 0 <= k < n:
        return k
    if boundary == "periodic":
        return k % n
    if boundary == "dirichlet":
        return None
    return -k - 1 if k < 0 else 2 * n - 1 - k      # Neumann: z[-m] = z[m-1], z[n-1+m] = z[n-m]


def param_at(value, family, t, i):
    value = np.asarray(value, np.float64)
    return float(value) if family == "homogeneous" else float(value[i]) if family == "heterogeneous" \
        else float(value[t][i])


class Dense:
    """Dense matrices of one step, from the lambdified symbolic stencil."""

    def __init__(self, layer, params, bias, activation, spacing, n, boundary):
        self.symbols = list(params)
        self.families = {s.name: f for s, f in params.items()}
        self.bias, self.activation, self.n, self.boundary = bias, activation, n, boundary
        st = layer.stencil(spacing)
        self.w = {j: sp.lambdify(self.symbols, e, "math") for j, e in st.items()}
        self.dw = {(p.name, j): sp.lambdify(self.symbols, sp.diff(e, p), "math")
                   for j, e in st.items() for p in self.symbols}

    def _args(self, theta, t, i):
        return [param_at(theta[s.name], self.families[s.name], t, i) for s in self.symbols]

    def _assemble(self, value_of):
        M = np.zeros((self.n, self.n))
        for i in range(self.n):
            for j in self.w:
                col = source_index(i + j, self.n, self.boundary)
                if col is not None:
                    M[i, col] += value_of(i, j)
        return M

    def W(self, theta, t):
        return self._assemble(lambda i, j: self.w[j](*self._args(theta, t, i)))

    def dW(self, theta, dtheta, t):
        """Σ_p ∂W/∂θ_p · δθ_p."""
        return self._assemble(lambda i, j: sum(
            self.dw[p.name, j](*self._args(theta, t, i)) * param_at(dtheta[p.name], self.families[p.name], t, i)
            for p in self.symbols))

    def b(self, theta, t):
        if self.bias is None:
            return np.zeros(self.n)
        return np.array([param_at(theta["b"], self.bias, t, i) for i in range(self.n)])

    def Z(self, z, theta, t):
        """Pre-activations (batch, n)."""
        return z @ self.W(theta, t).T - self.b(theta, t)

    def jacobian(self, zs, theta, t, omega, alpha):
        """J = (1-ω) I + ω diag(f'(Z)) W − α [(‖z‖-1) I + z zᵀ/‖z‖] for one sample zs (n,)."""
        W = self.W(theta, t)
        Z = W @ zs - self.b(theta, t)
        J = (1 - omega) * np.eye(self.n) + omega * ACT_DF[self.activation](Z)[:, None] * W
        if alpha:
            norm = np.linalg.norm(zs)
            J -= alpha * ((norm - 1) * np.eye(self.n) + np.outer(zs, zs) / norm)
        return J


def rotated_params(adr, shift):
    _, _, U, D, R = adr
    return {sym: FAMILIES[(k + shift) % 3] for k, sym in enumerate((U, D, R))}


def adr_transform(adr):
    q, z, U, D, R = adr
    return z + R * z - U * z.diff(q) + D * z.diff(q, 2)


def make(adr, params, bias, activation, boundary, *, n=N, layers=LAYERS, alpha=None, train_omega=False,
         transform=None, scale=0.05, seed=0, values=ADR_VALUES, **layer_kw):
    q, z, U, D, R = adr
    layer = npdegen.NeuralPDE(transform if transform is not None else adr_transform(adr), z,
                              activation=CUSTOM.get(activation, activation), params=params, bias=bias,
                              **layer_kw)
    net = layer.compile(n=n, spacing=SPACING, layers=layers, omega=OMEGA, boundary=boundary,
                        alpha=alpha, train_omega=train_omega)
    theta = net.init_params(seed=seed, scale=scale, values={k: v for k, v in values.items() if k in net.shapes})
    dense = Dense(layer, params, bias, activation, SPACING, n, boundary)
    return net, theta, dense


def entries(shape, n, layers):
    """Indices to probe: the scalar, or sites 0, middle, n-1 (and first/last layer rows)."""
    if shape == ():
        return [()]
    if len(shape) == 1:
        return [(0,), (n // 2,), (n - 1,)]
    mid = min(1, layers - 1)
    return sorted({(0, 0), (layers - 1, n - 1), (mid, n // 2), (layers - 1, 0), (0, n - 1)})


def fd_check(net, theta, x, y, keys=None, eps=1e-6, input_grad=False):
    """Central differences of the loss for several entries of every key; returns the worst error."""
    loss, grads = net.loss_and_grad(x, y, theta, input_grad=input_grad)
    worst = 0.0
    for key in keys or grads:
        base = x if key == "x" else theta[key]
        for idx in entries(np.shape(base), net.n, net.layers) if key != "x" else \
                [(0, 0), (0, net.n - 1), (1, net.n // 2), (1, 0)]:
            def loss_at(delta):
                if key == "x":
                    xx = x.copy()
                    xx[idx] += delta
                    return net.loss_and_grad(xx, y, theta)[0]
                th = {k: np.array(v, copy=True) for k, v in theta.items()}
                th[key][idx] += delta
                return net.loss_and_grad(x, y, th)[0]
            fd = (loss_at(eps) - loss_at(-eps)) / (2 * eps)
            g = float(grads[key][idx])
            err = abs(fd - g) / max(abs(fd), abs(g), 1e-2)
            assert err < 1e-6, (key, idx, fd, g, err)
            worst = max(worst, err)
    return worst


def relu_theta(net, theta):
    """Pre-activations kept away from the kink: z > 0 stays > 0, bias -0.3 (Z ≥ 0.3) on even sites
    and +3 (Z ≪ 0, the zero branch) on odd sites where the bias family allows it."""
    theta = dict(theta)
    fam = net.families.get("b")
    site = np.where(np.arange(net.n) % 2 == 0, -0.3, 3.0)
    theta["b"] = {"homogeneous": np.float64(-0.3), "heterogeneous": site,
                  "time-dependent": np.tile(site, (net.layers, 1))}[fam]
    return theta


def inputs(rng, net, activation):
    if activation == "relu":
        x = rng.uniform(0.5, 1.5, (2, net.n))
    else:
        x = rng.uniform(-1, 1, (2, net.n))
    return x, rng.uniform(-1, 1, (2, net.n))


def inner(a, b):
    return float(np.sum(np.asarray(a, np.float64) * np.asarray(b, np.float64)))


# ---------------------------------------------------------------------------- 1. finite differences
@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("bias", FAMILIES)
def test_loss_gradient_finite_differences(adr, rng, bias, boundary, activation):
    """Every key of theta, for every bias family × boundary × activation (U, D, R rotated over
    the three families), including boundary sites 0 and n-1 and the input gradient."""
    net, theta, dense = make(adr, rotated_params(adr, FAMILIES.index(bias)), bias, activation, boundary,
                             seed=FAMILIES.index(bias), scale=0.02 if activation == "relu" else 0.05)
    x, y = inputs(rng, net, activation)
    if activation == "relu":
        theta = relu_theta(net, theta)
        traj = net.forward(x, theta, trajectory=True)
        Zmin = min(np.min(np.abs(dense.Z(traj[t], theta, t))) for t in range(net.layers))
        assert Zmin > 0.1, Zmin                     # far from the kink for ε = 1e-6
        assert np.any(dense.Z(traj[0], theta, 0) < 0) == (bias != "homogeneous")
    fd_check(net, theta, x, y, keys=sorted(theta) + ["x"], input_grad=True)


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("alpha", [None, 0.1])
def test_finite_differences_train_omega(adr, rng, boundary, alpha):
    params = {adr[2]: "heterogeneous", adr[3]: "homogeneous", adr[4]: "time-dependent"}
    net, theta, _ = make(adr, params, "heterogeneous", "tanh", boundary, alpha=alpha, train_omega=True)
    assert "omega" in theta and float(theta["omega"]) == OMEGA
    x, y = inputs(rng, net, "tanh")
    loss, grads = net.loss_and_grad(x, y, theta)
    assert grads["omega"].shape == () and abs(float(grads["omega"])) > 1e-3
    fd_check(net, theta, x, y, input_grad=True, keys=sorted(theta) + ["x"])


@pytest.mark.parametrize("activation", ["tanh", "square", "softplus", "identity"])
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_finite_differences_soft_normalisation(adr, rng, boundary, activation):
    net, theta, _ = make(adr, rotated_params(adr, 1), "time-dependent", activation, boundary, alpha=0.1)
    x, y = inputs(rng, net, activation)
    fd_check(net, theta, x, y, input_grad=True, keys=sorted(theta) + ["x"])


def test_finite_differences_one_dimensional_input(adr, rng):
    net, theta, _ = make(adr, rotated_params(adr, 2), "heterogeneous", "sigmoid", "neumann")
    x, y = rng.uniform(-1, 1, net.n), rng.uniform(-1, 1, net.n)
    loss, grads = net.loss_and_grad(x, y, theta, input_grad=True)
    assert grads["x"].shape == (net.n,)
    loss2, grads2 = net.loss_and_grad(x[None], y[None], theta, input_grad=True)
    assert loss == pytest.approx(loss2, rel=1e-14)
    np.testing.assert_allclose(grads["x"], grads2["x"][0], rtol=1e-14, atol=1e-16)
    for i in (0, net.n - 1):
        e = np.zeros(net.n)
        e[i] = 1e-6
        fd = (net.loss_and_grad(x + e, y, theta)[0] - net.loss_and_grad(x - e, y, theta)[0]) / 2e-6
        assert abs(fd - grads["x"][i]) / max(abs(fd), 1e-2) < 1e-6


def test_loss_and_grad_is_vjp_of_the_residual(adr, rng):
    net, theta, _ = make(adr, rotated_params(adr, 0), "heterogeneous", "tanh", "dirichlet", alpha=0.1)
    x, y = inputs(rng, net, "tanh")
    loss, grads = net.loss_and_grad(x, y, theta, input_grad=True)
    zL = net.forward(x, theta)
    assert loss == pytest.approx(0.5 * np.sum((zL - y) ** 2), rel=1e-14)
    dx, g2 = net.vjp(x, theta, zL - y)
    np.testing.assert_allclose(grads["x"], dx, rtol=1e-13, atol=1e-15)
    for k in g2:
        np.testing.assert_allclose(grads[k], g2[k], rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("activation", sorted(CUSTOM))
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_custom_activation_gradients(adr, rng, boundary, activation):
    """SymPy-expression / Lambda activations: finite differences and the step dot-product test."""
    net, theta, dense = make(adr, rotated_params(adr, 0), "time-dependent", activation, boundary,
                             train_omega=True)
    x, y = inputs(rng, net, activation)
    fd_check(net, theta, x, y, keys=sorted(theta) + ["x"], input_grad=True)
    v, w = rng.standard_normal((2, net.n)), rng.standard_normal((2, net.n))
    check_step_adjoint(net, theta, dense, x, v, w, 1, None)
    check_step_params(net, theta, dense, x, w, 1, activation, rng)


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_single_layer_gradients(adr, rng, boundary):
    net, theta, _ = make(adr, rotated_params(adr, 2), "time-dependent", "sigmoid", boundary, layers=1,
                         alpha=0.1, train_omega=True)
    x, y = inputs(rng, net, "sigmoid")
    fd_check(net, theta, x, y, keys=sorted(theta) + ["x"], input_grad=True)


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_float32_gradients_match_float64(adr, rng, boundary):
    """Same network in float32: loss and every gradient within 1e-4 (relative to the largest entry)
    of float64, and returned as float32."""
    kw = dict(alpha=0.1, train_omega=True)
    net, theta, _ = make(adr, rotated_params(adr, 1), "heterogeneous", "tanh", boundary, **kw)
    layer = npdegen.NeuralPDE(adr_transform(adr), adr[1], activation="tanh", params=rotated_params(adr, 1),
                              bias="heterogeneous")
    net32 = layer.compile(n=N, spacing=SPACING, layers=LAYERS, omega=OMEGA, boundary=boundary, dtype="float32", **kw)
    x, y = inputs(rng, net, "tanh")
    loss, grads = net.loss_and_grad(x, y, theta, input_grad=True)
    loss32, grads32 = net32.loss_and_grad(x.astype(np.float32), y.astype(np.float32),
                                          {k: np.float32(v) for k, v in theta.items()}, input_grad=True)
    assert loss32 == pytest.approx(loss, rel=1e-5)
    assert set(grads32) == set(grads)
    for k in grads:
        assert grads32[k].dtype == np.float32 and grads32[k].shape == grads[k].shape
        np.testing.assert_allclose(grads32[k], grads[k], rtol=1e-4, atol=1e-4 * np.max(np.abs(grads[k])))


# ---------------------------------------------------------------------------- 2. step adjoint
def dot_tol(Jv, w):
    return 1e-12 * np.linalg.norm(Jv) * np.linalg.norm(w)


def check_step_adjoint(net, theta, dense, z, v, w, t, alpha, samples=None):
    """Dot-product test of step_vjp against the dense per-sample J; also Jᵀw itself.

    ``samples``: the rows of v, w that are nonzero (default all); J is built only for those."""
    samples = range(z.shape[0]) if samples is None else samples
    Jv, JTw = np.zeros_like(v), np.zeros_like(w)
    for s in samples:
        J = dense.jacobian(z[s], theta, t, OMEGA, alpha)
        Jv[s], JTw[s] = J @ v[s], J.T @ w[s]
    # the dense J is the Jacobian of the package's own step (sanity: a central difference)
    h = 1e-6
    fdJv = (net.step(z + h * v, theta, t) - net.step(z - h * v, theta, t)) / (2 * h)
    np.testing.assert_allclose(fdJv, Jv, rtol=1e-6, atol=1e-8)
    dz, _ = net.step_vjp(z, theta, w, t)
    assert abs(inner(Jv, w) - inner(v, dz)) <= dot_tol(Jv, w)
    np.testing.assert_allclose(dz, JTw, rtol=1e-12, atol=1e-12 * np.max(np.abs(JTw)))


@pytest.mark.parametrize("alpha", [None, 0.1])
@pytest.mark.parametrize("activation", SMOOTH)
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_step_adjoint_dot_product(adr, rng, boundary, activation, alpha):
    """⟨J v, w⟩ = ⟨v, step_vjp(z, θ, w)[0]⟩ with J assembled densely, per sample."""
    net, theta, dense = make(adr, rotated_params(adr, 2), "heterogeneous", activation, boundary, alpha=alpha)
    z = rng.uniform(-1, 1, (2, net.n))
    v, w = rng.standard_normal((2, net.n)), rng.standard_normal((2, net.n))
    check_step_adjoint(net, theta, dense, z, v, w, 1, alpha)


def random_direction(theta, rng):
    return {k: rng.standard_normal(np.shape(v)) for k, v in theta.items()}


def shifted(theta, d, h):
    return {k: np.asarray(theta[k], np.float64) + h * d[k] for k in theta}


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "softplus", "square"])
@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("bias", FAMILIES)
def test_step_adjoint_parameter_part(adr, rng, bias, boundary, activation):
    """⟨∂z_{t+1}/∂θ · δθ, w⟩ = ⟨δθ, step_vjp(z, θ, w)[1]⟩ for all keys at once (with ω trained)."""
    net, theta, dense = make(adr, rotated_params(adr, FAMILIES.index(bias)), bias, activation, boundary,
                             train_omega=True)
    z = rng.uniform(-1, 1, (2, net.n))
    w = rng.standard_normal((2, net.n))
    check_step_params(net, theta, dense, z, w, net.layers - 1, activation, rng, richardson=True)


def check_step_params(net, theta, dense, z, w, t, activation, rng, richardson=False):
    """Parameter part of step_vjp: analytic directional derivatives (1e-12), optionally a
    Richardson-extrapolated central difference of the package's step (1e-10)."""
    d = random_direction(theta, rng)
    _, grads = net.step_vjp(z, theta, w, t)
    assert set(grads) == set(theta)
    terms = {k: inner(d[k], grads[k]) for k in theta}
    scale = sum(abs(v) for v in terms.values())

    Z = dense.Z(z, theta, t)
    fp = ACT_DF[activation](Z)
    omega = float(theta.get("omega", OMEGA))
    weight_keys = [k for k in theta if k not in ("b", "omega")]
    # analytic directional derivatives, key by key
    d_weights = omega * fp * (z @ dense.dW(theta, d, t).T)
    assert abs(inner(d_weights, w) - sum(terms[k] for k in weight_keys)) <= 1e-12 * scale
    if "b" in theta:
        d_bias = -omega * fp * dense.b({"b": d["b"]}, t)          # exact: Z is affine in b
        assert abs(inner(d_bias, w) - terms["b"]) <= 1e-12 * scale
    if "omega" in theta:
        d_omega = float(d["omega"]) * (ACT_F[activation](Z) - z)    # exact: the step is affine in ω
        assert abs(inner(d_omega, w) - terms["omega"]) <= 1e-12 * scale
    if not richardson:
        return
    # Richardson-extrapolated central difference of the package's step, all non-bias keys at once
    dw_only = {k: (np.zeros_like(d[k]) if k == "b" else d[k]) for k in d}

    def central(h):
        return (net.step(z, shifted(theta, dw_only, h), t) - net.step(z, shifted(theta, dw_only, -h), t)) / (2 * h)
    h = 5e-4
    rich = (4 * central(h / 2) - central(h)) / 3
    expected = sum(terms[k] for k in theta if k != "b")
    assert abs(inner(rich, w) - expected) <= 1e-10 * scale, (inner(rich, w), expected)


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_step_adjoint_exp_coefficient(adr, rng, boundary):
    """Weights nonlinear in the parameter (exp(logD)): dot test of the parameter part."""
    q, z, U, D, R = adr
    logD = sp.Symbol("logD")
    params = {logD: "time-dependent", U: "heterogeneous"}
    net, theta, dense = make(adr, params, "homogeneous", "tanh", boundary,
                             transform=z - U * z.diff(q) + sp.exp(logD) * z.diff(q, 2),
                             values={"logD": -1.5, "U": 0.3, "b": 0.1}, scale=0.3)
    zz = rng.uniform(-1, 1, (2, net.n))
    w = rng.standard_normal((2, net.n))
    d = random_direction(theta, rng)
    for t in range(net.layers):
        _, grads = net.step_vjp(zz, theta, w, t)
        terms = {k: inner(d[k], grads[k]) for k in theta}
        scale = sum(abs(v) for v in terms.values())
        fp = ACT_DF["tanh"](dense.Z(zz, theta, t))
        d_w = OMEGA * fp * (zz @ dense.dW(theta, d, t).T)
        assert abs(inner(d_w, w) - terms["logD"] - terms["U"]) <= 1e-12 * scale
        assert abs(inner(-OMEGA * fp * float(d["b"]), w) - terms["b"]) <= 1e-12 * scale


# ---------------------------------------------------------------------------- wide stencils
WIDE = {
    "accuracy4": dict(accuracy=4),
    "accuracy6": dict(accuracy=6),
    "left(-2,-1,0)": dict(offsets=(-2, -1, 0), accuracy=None),
    "right(0,1,2)": dict(offsets=(0, 1, 2), accuracy=None),
}


@pytest.mark.parametrize("stencil", sorted(WIDE))
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_wide_stencil_adjoints(adr, rng, boundary, stencil):
    """Halo 2 and 3 (several mirrored / wrapped / zero ghost cells), one-sided stencils: finite
    differences of every key and of x, the step dot-product test and its parameter part."""
    net, theta, dense = make(adr, rotated_params(adr, 1), "heterogeneous", "tanh", boundary, alpha=0.1,
                             train_omega=True, **WIDE[stencil])
    assert net.halo >= 2
    x, y = inputs(rng, net, "tanh")
    fd_check(net, theta, x, y, keys=sorted(theta) + ["x"], input_grad=True)
    z = rng.uniform(-1, 1, (2, net.n))
    v, w = rng.standard_normal((2, net.n)), rng.standard_normal((2, net.n))
    for t in (0, net.layers - 1):
        check_step_adjoint(net, theta, dense, z, v, w, t, 0.1)
        check_step_params(net, theta, dense, z, w, t, "tanh", rng)


# ---------------------------------------------------------------------------- large batches
BIG_BATCH, BIG_N = 520, 150      # > 2**18 bytes per (batch, n) array: the kernels work in column blocks


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_large_batch_adjoints(adr, rng, boundary):
    """A batch large enough for blocked (and, on several cores, threaded) kernels: the step
    dot-product test on a few samples, and the gradient equals the sum over small sub-batches."""
    net, theta, dense = make(adr, rotated_params(adr, 0), "time-dependent", "softplus", boundary, n=BIG_N,
                             alpha=0.1, train_omega=True, accuracy=4)
    samples = (0, 263, BIG_BATCH - 1)
    z = rng.uniform(-1, 1, (BIG_BATCH, BIG_N))
    v, w = np.zeros_like(z), np.zeros_like(z)
    for s in samples:
        v[s], w[s] = rng.standard_normal(BIG_N), rng.standard_normal(BIG_N)
    check_step_adjoint(net, theta, dense, z, v, w, 1, 0.1, samples=samples)

    x, y = z, rng.uniform(-1, 1, z.shape)
    loss, grads = net.loss_and_grad(x, y, theta, input_grad=True)
    parts = [net.loss_and_grad(x[k:k + 65], y[k:k + 65], theta, input_grad=True) for k in range(0, BIG_BATCH, 65)]
    assert loss == pytest.approx(sum(p[0] for p in parts), rel=1e-12)
    np.testing.assert_allclose(grads["x"], np.concatenate([p[1]["x"] for p in parts]), rtol=1e-12, atol=1e-15)
    for k in theta:
        total = sum(p[1][k] for p in parts)
        np.testing.assert_allclose(grads[k], total, rtol=1e-10, atol=1e-10 * np.max(np.abs(total)))


# ---------------------------------------------------------------------------- 3. linear network
@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("bias", FAMILIES)
def test_linear_network_dot_product(adr, rng, bias, boundary):
    """Identity activation, no normalisation: x → z_L is linear once b = 0, so J v = forward(v)."""
    net, theta, _ = make(adr, rotated_params(adr, FAMILIES.index(bias)), bias, "identity", boundary,
                         layers=3, scale=0.1)
    theta0 = dict(theta, b=np.zeros_like(theta["b"]))
    x = rng.uniform(-1, 1, (2, net.n))
    v, w = rng.standard_normal((2, net.n)), rng.standard_normal((2, net.n))
    Jv = net.forward(v, theta0)
    dx, _ = net.vjp(x, theta, w)         # Jᵀ does not depend on x nor on b
    assert abs(inner(Jv, w) - inner(v, dx)) <= dot_tol(Jv, w)
    # stronger: the dense J from unit vectors, transposed
    J = net.forward(np.eye(net.n), theta0).T          # column k = J e_k
    np.testing.assert_allclose(dx, w @ J, rtol=1e-12, atol=1e-12 * np.max(np.abs(dx)))


# ---------------------------------------------------------------------------- 4. Taylor test
@pytest.mark.parametrize("config", [
    ("tanh", "periodic", None, False),
    ("sigmoid", "dirichlet", None, True),
    ("softplus", "neumann", 0.1, False),
    ("square", "neumann", None, True),
    ("tanh", "dirichlet", 0.1, True),
])
def test_taylor_convergence(adr, rng, config):
    activation, boundary, alpha, train_omega = config
    net, theta, _ = make(adr, rotated_params(adr, 1), "time-dependent", activation, boundary,
                         alpha=alpha, train_omega=train_omega)
    x, y = inputs(rng, net, activation)
    loss, grads = net.loss_and_grad(x, y, theta)
    d = {k: 0.5 * v for k, v in random_direction(theta, rng).items()}
    slope = sum(inner(d[k], grads[k]) for k in theta)
    eps = np.logspace(-2, -4, 5)
    r1, r2 = [], []
    for e in eps:
        le = net.loss_and_grad(x, y, shifted(theta, d, e))[0]
        r1.append(abs(le - loss))
        r2.append(abs(le - loss - e * slope))
    p1 = np.polyfit(np.log(eps), np.log(r1), 1)[0]
    p2 = np.polyfit(np.log(eps), np.log(r2), 1)[0]
    assert abs(p1 - 1) < 0.1, (p1, r1)
    assert abs(p2 - 2) < 0.1, (p2, r2)


# ---------------------------------------------------------------------------- 5. layer rows
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_step_vjp_touches_only_its_layer_row(adr, rng, boundary):
    _, _, U, D, R = adr
    params = {U: "time-dependent", D: "homogeneous", R: "heterogeneous"}
    net, theta, _ = make(adr, params, "time-dependent", "tanh", boundary, layers=4, train_omega=True)
    z = rng.uniform(-1, 1, (2, net.n))
    w = rng.standard_normal((2, net.n))
    for t in range(net.layers):
        _, grads = net.step_vjp(z, theta, w, t)
        for k in ("U", "b"):
            assert grads[k].shape == (net.layers, net.n)
            others = np.delete(grads[k], t, axis=0)
            assert np.all(others == 0), (k, t)
            assert np.all(np.abs(grads[k][t]) > 0), (k, t)
        assert abs(float(grads["D"])) > 0 and np.any(grads["R"] != 0) and abs(float(grads["omega"])) > 0


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_chained_step_vjps_reproduce_vjp(adr, rng, boundary):
    """Backward through the trajectory with step_vjp = one vjp sweep (input and parameters)."""
    net, theta, _ = make(adr, rotated_params(adr, 0), "time-dependent", "softplus", boundary, alpha=0.1,
                         train_omega=True)
    x = rng.uniform(-1, 1, (2, net.n))
    w = rng.standard_normal((2, net.n))
    traj = net.forward(x, theta, trajectory=True)
    lam = w.copy()
    total = {k: np.zeros(np.shape(v)) for k, v in theta.items()}
    for t in reversed(range(net.layers)):
        lam, g = net.step_vjp(traj[t], theta, lam, t)
        for k in g:
            total[k] += g[k]
    dx, grads = net.vjp(x, theta, w)
    np.testing.assert_allclose(lam, dx, rtol=1e-12, atol=1e-14)
    for k in grads:
        np.testing.assert_allclose(total[k], grads[k], rtol=1e-12, atol=1e-14)
