"""docs/theory.md §1: the special cases of the relaxation layer z ← (1 − ω) z + ω f(W z − b).

* W = I, b = 0, f = id: the identity (no evolution), for every ω and boundary;
* W = c·I: a local ODE, each site an independent scalar recursion (logistic-type map for
  f(z) = z²; piecewise-constant attractor z* = −b/(1 − c) for f = id);
* f = id: a linear PDE whose steady state is z* = (I − W)⁻¹(−b), W the dense matrix assembled
  here independently from ``layer.stencil`` with explicit boundary index logic;
* ω = 1 is an ordinary feed-forward layer z ← f(Z); ω = 0.5 halves the update.
"""
import numpy as np
import pytest
import sympy as sp

from npdegen import NeuralPDE

BOUNDARIES = ("periodic", "dirichlet", "neumann")


def _field():
    q = sp.Symbol("q")
    return q, sp.Function("z")(q)


def dense_matrix(layer, theta, n, spacing, boundary, layer_index=0):
    """The n×n matrix W with Z = W z − b, built from ``layer.stencil`` (SymPy, lambdified).

    Row convention W[i, i+j] = w_j(θ_i). Outside the grid: periodic wraps, Dirichlet drops the
    entry (z = 0 there), Neumann mirrors about the cell faces, z[−k] = z[k−1], z[n−1+k] = z[n−k].
    """
    stencil = layer.stencil(spacing)
    names = sorted(layer.spec.param_families)
    syms = [sp.Symbol(k) for k in names]
    values = []
    for k in names:
        v = np.asarray(theta[k], float)
        fam = layer.spec.param_families[k]
        if fam == "time-dependent":
            v = v[layer_index]
        values.append(np.broadcast_to(v, (n,)))
    W = np.zeros((n, n))
    for j, w in stencil.items():
        wj = np.broadcast_to(np.asarray(sp.lambdify(syms, w, "numpy")(*values), float), (n,))
        for i in range(n):
            m = i + j
            if boundary == "periodic":
                m %= n
            elif boundary == "dirichlet":
                if not 0 <= m < n:
                    continue
            elif boundary == "neumann":
                if m < 0:
                    m = -m - 1          # z[-k] = z[k-1]
                elif m >= n:
                    m = 2 * n - 1 - m   # z[n-1+k] = z[n-k]
            W[i, m] += wj[i]
    return W


# ---------------------------------------------------------------------------- identity
@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("omega", [0.3, 1.0, 1.7])
def test_identity_layer_leaves_input_unchanged(boundary, omega, rng):
    _, z = _field()
    layer = NeuralPDE(z, z, activation="identity")
    net = layer.compile(n=17, spacing=0.1, layers=6, omega=omega, boundary=boundary)
    theta = net.init_params(seed=0)
    assert theta == {}
    x = rng.standard_normal((5, 17))
    # (1 − ω) z + ω z is z up to rounding (bit for bit at ω = 1): a few ulp after 6 layers
    exact = dict(rtol=0, atol=0) if omega == 1.0 else dict(rtol=1e-15, atol=0)
    out = net.forward(x, theta)
    np.testing.assert_allclose(out, x, **exact)
    traj = net.forward(x, theta, trajectory=True)
    assert traj.shape == (7, 5, 17)
    np.testing.assert_array_equal(traj[0], x)
    for t in range(7):
        np.testing.assert_allclose(traj[t], x, **exact)
    # the adjoint of the identity is the identity
    lam = rng.standard_normal((5, 17))
    dx, grads = net.vjp(x, theta, lam)
    np.testing.assert_allclose(dx, lam, **exact)
    assert grads == {}


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_identity_with_homogeneous_unit_coefficient(boundary, rng):
    """T[z] = c·z with c = 1 and b = 0 is the identity too (W = I written with a parameter)."""
    _, z = _field()
    c = sp.Symbol("c")
    layer = NeuralPDE(c * z, z, params={c: "homogeneous"}, bias="heterogeneous")
    net = layer.compile(n=12, layers=4, omega=0.8, boundary=boundary)
    theta = {"c": np.array(1.0), "b": np.zeros(12)}
    x = rng.standard_normal((3, 12))
    np.testing.assert_allclose(net.forward(x, theta), x, rtol=1e-15, atol=0)


# ---------------------------------------------------------------------------- local ODE
@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("omega", [0.25, 0.6, 1.0])
def test_local_logistic_map_sites_are_independent(boundary, omega):
    """W = I, f(z) = z², b = 0: z ← (1 − ω) z + ω z², site by site."""
    _, z = _field()
    layer = NeuralPDE(z, z, activation="square")
    n, L = 16, 12
    net = layer.compile(n=n, spacing=0.05, layers=L, omega=omega, boundary=boundary)
    x = np.linspace(-0.4, 0.95, n)[None, :] * np.array([[1.0], [0.7]])
    traj = net.forward(x, {}, trajectory=True)
    ref = x.copy()
    for t in range(L + 1):
        np.testing.assert_allclose(traj[t], ref, rtol=1e-13, atol=1e-15)
        ref = (1 - omega) * ref + omega * ref**2
    # a site's update does not see its neighbours: perturbing one site changes only that site
    short = layer.compile(n=n, spacing=0.05, layers=2, omega=omega, boundary=boundary)
    x2 = x.copy()
    x2[:, 5] += 0.01
    diff = short.forward(x2, {}) - short.forward(x, {})
    assert np.all(diff[:, 5] != 0)
    np.testing.assert_array_equal(np.delete(diff, 5, axis=1), 0.0)


def test_local_logistic_map_with_coefficient_and_bias():
    """W = c·I with a bias: z ← (1 − ω) z + ω (c z − b)², the scalar recursion per site."""
    _, z = _field()
    c = sp.Symbol("c")
    layer = NeuralPDE(c * z, z, activation="square", params={c: "homogeneous"}, bias="heterogeneous")
    n, L, omega = 10, 9, 0.7
    net = layer.compile(n=n, layers=L, omega=omega, boundary="dirichlet")
    b = np.linspace(-0.2, 0.2, n)
    theta = {"c": np.array(0.9), "b": b}
    x = np.linspace(0.1, 0.8, n)
    out = net.forward(x, theta)
    ref = x.copy()
    for _ in range(L):
        ref = (1 - omega) * ref + omega * (0.9 * ref - b) ** 2
    np.testing.assert_allclose(out, ref, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_local_linear_ode_reaches_piecewise_constant_attractor(boundary, rng):
    """f = id, W = c·I (|c| < 1), piecewise-constant b: z* = c z* − b, i.e. z* = −b/(1 − c)."""
    _, z = _field()
    c = sp.Symbol("c")
    layer = NeuralPDE(c * z, z, params={c: "homogeneous"}, bias="heterogeneous")
    n, L, omega, cval = 24, 200, 0.8, 0.5
    net = layer.compile(n=n, layers=L, omega=omega, boundary=boundary)
    b = np.repeat([0.3, -1.0, 2.0, 0.0], n // 4)       # piecewise constant
    theta = {"c": np.array(cval), "b": b}
    x = rng.standard_normal((4, n))
    out = net.forward(x, theta)
    z_star = -b / (1 - cval)
    np.testing.assert_allclose(out, np.broadcast_to(z_star, out.shape), rtol=0, atol=1e-12)
    # contraction factor per layer is 1 − ω(1 − c): check one step of the linear recursion too
    traj = net.forward(x, theta, trajectory=True)
    rho = 1 - omega * (1 - cval)
    np.testing.assert_allclose(traj[5] - z_star, rho**5 * (x - z_star), rtol=1e-12, atol=1e-13)


# ---------------------------------------------------------------------------- linear steady state
def _adr(family="homogeneous", accuracy=2):
    q, z = _field()
    U, D, R = sp.symbols("U D R")
    layer = NeuralPDE(z + R * z - U * z.diff(q) + D * z.diff(q, 2), z, activation="identity",
                      params={U: family, D: family, R: family}, bias="heterogeneous", accuracy=accuracy)
    return layer


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("accuracy", [2, 4])
def test_linear_steady_state_is_greens_function_solve(boundary, accuracy):
    """f = id, contracting ADR (D > 0, R < 0): z_L → (I − W)⁻¹(−b) for many layers."""
    n, spacing, omega, L = 20, 0.5, 0.9, 400
    layer = _adr(accuracy=accuracy)
    net = layer.compile(n=n, spacing=spacing, layers=L, omega=omega, boundary=boundary)
    q = (np.arange(n) + 0.5) / n
    theta = {"U": np.array(0.1), "D": np.array(0.04), "R": np.array(-0.3),
             "b": np.sin(2 * np.pi * q) + 0.5 * np.cos(6 * np.pi * q) + 0.2}
    W = dense_matrix(layer, theta, n, spacing, boundary)
    # the iteration z ← ((1−ω)I + ωW) z − ωb must be a contraction for the test to mean anything
    assert np.max(np.abs(np.linalg.eigvals((1 - omega) * np.eye(n) + omega * W))) < 0.95
    z_star = np.linalg.solve(np.eye(n) - W, -theta["b"])
    x = np.random.default_rng(3).standard_normal((3, n))
    out = net.forward(x, theta)
    np.testing.assert_allclose(out, np.broadcast_to(z_star, out.shape), rtol=0, atol=1e-10)


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_linear_steady_state_heterogeneous_coefficients(boundary):
    """Same with U(q), D(q), R(q): checks the row convention W[i, i+j] = w_j(θ_i)."""
    n, spacing, omega, L = 18, 1.0, 1.0, 300
    layer = _adr(family="heterogeneous")
    net = layer.compile(n=n, spacing=spacing, layers=L, omega=omega, boundary=boundary)
    q = (np.arange(n) + 0.5) / n
    theta = {"U": 0.15 * np.sin(2 * np.pi * q), "D": 0.25 + 0.1 * np.cos(2 * np.pi * q),
             "R": -0.3 - 0.1 * q, "b": np.exp(-((q - 0.3) ** 2) / 0.01) - 0.5 * q}
    W = dense_matrix(layer, theta, n, spacing, boundary)
    assert np.max(np.abs(np.linalg.eigvals(W))) < 0.95
    # the test is only sensitive to the row convention if W is not symmetric
    assert np.max(np.abs(W - W.T)) > 1e-2
    z_star = np.linalg.solve(np.eye(n) - W, -theta["b"])
    out = net.forward(np.zeros(n), theta)
    np.testing.assert_allclose(out, z_star, rtol=0, atol=1e-10)
    # one layer is exactly W z − b
    x = np.random.default_rng(4).standard_normal(n)
    np.testing.assert_allclose(net.step(x, theta, 0), W @ x - theta["b"], rtol=1e-13, atol=1e-13)


def test_time_dependent_layers_use_their_own_parameters():
    """theta[p][t] acts in the step t → t+1: the output is the product of the per-layer maps."""
    n, spacing, omega, L = 12, 1.0, 0.7, 5
    layer = _adr(family="time-dependent")
    net = layer.compile(n=n, spacing=spacing, layers=L, omega=omega, boundary="dirichlet")
    rng = np.random.default_rng(5)
    theta = {"U": 0.1 * rng.standard_normal((L, n)), "D": 0.2 + 0.05 * rng.standard_normal((L, n)),
             "R": -0.1 * rng.random((L, n)), "b": 0.1 * rng.standard_normal(n)}
    x = rng.standard_normal(n)
    ref = x.copy()
    for t in range(L):
        W = dense_matrix(layer, theta, n, spacing, "dirichlet", layer_index=t)
        ref = (1 - omega) * ref + omega * (W @ ref - theta["b"])
    np.testing.assert_allclose(net.forward(x, theta), ref, rtol=1e-12, atol=1e-13)


# ---------------------------------------------------------------------------- relaxation
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_omega_one_is_a_feed_forward_layer(boundary, rng):
    """ω = 1: z_{t+1} = f(W z_t − b) exactly (no memory of z_t)."""
    n, spacing, L = 16, 0.25, 3
    q, z = _field()
    U, D, R = sp.symbols("U D R")
    layer = NeuralPDE(z + R * z - U * z.diff(q) + D * z.diff(q, 2), z, activation="tanh",
                      params={U: "homogeneous", D: "heterogeneous", R: "homogeneous"}, bias="heterogeneous")
    net = layer.compile(n=n, spacing=spacing, layers=L, omega=1.0, boundary=boundary)
    theta = {"U": np.array(0.2), "D": 0.01 + 0.005 * rng.random(n), "R": np.array(-0.1),
             "b": 0.1 * rng.standard_normal(n)}
    W = dense_matrix(layer, theta, n, spacing, boundary)
    x = rng.standard_normal((2, n))
    traj = net.forward(x, theta, trajectory=True)
    for t in range(L):
        np.testing.assert_allclose(traj[t + 1], np.tanh(traj[t] @ W.T - theta["b"]), rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_omega_half_halves_the_update(boundary, rng):
    """z_1 − z_0 at ω = 0.5 is exactly half of z_1 − z_0 at ω = 1, for the same parameters."""
    n, spacing = 14, 1.0
    q, z = _field()
    U, D, R = sp.symbols("U D R")
    layer = NeuralPDE(z + R * z - U * z.diff(q) + D * z.diff(q, 2), z, activation="sigmoid",
                      params={U: "homogeneous", D: "homogeneous", R: "heterogeneous"}, bias="homogeneous")
    full = layer.compile(n=n, spacing=spacing, layers=1, omega=1.0, boundary=boundary)
    half = layer.compile(n=n, spacing=spacing, layers=1, omega=0.5, boundary=boundary)
    theta = {"U": np.array(0.3), "D": np.array(0.2), "R": 0.1 * rng.standard_normal(n), "b": np.array(0.05)}
    x = rng.standard_normal((3, n))
    d_full = full.forward(x, theta) - x
    d_half = half.forward(x, theta) - x
    np.testing.assert_allclose(d_half, 0.5 * d_full, rtol=1e-12, atol=1e-14)
    # and both agree with the formula (1 − ω) z + ω f(Z)
    W = dense_matrix(layer, theta, n, spacing, boundary)
    F = 1 / (1 + np.exp(-(x @ W.T - theta["b"])))
    np.testing.assert_allclose(half.forward(x, theta), 0.5 * x + 0.5 * F, rtol=1e-12, atol=1e-14)
