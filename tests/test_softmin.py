"""Soft-min (log-sum-exp) stencil layers and their min-plus limit against independent references.

* one step equals a hand-written loop of ``−ε log Σ_j w_j exp(−z_{i+j}/ε)`` with the ghost cells
  written out per boundary kind;
* Cole–Hopf: the soft-min network equals ``−ε log`` of the positive *linear* npdegen network applied
  to ``exp(−z/ε)`` to 1e-12, over several layers, on every boundary kind (a zero-Dirichlet ghost
  ``z = 0`` is ``φ = 1``: the linear zero-Dirichlet step plus the weights that reach outside), 1-D and 2-D;
* ε → 0 with fixed costs: ``min − ε log K ≤ Z^ε ≤ min``, the gap ``→ ε log k`` at exact ties and
  ``≤ ε K e^{−δ/ε}`` off them;
* the min-plus adjoint is the one-hot of the lowest-offset minimiser (exact ties, every backend);
* gradients (ε and log-weights, costs) equal central finite differences in float64; dot-product tests;
* attribution = the Jacobian, entropy = −∂Z/∂ε at fixed costs, Hessian = FD and = −(dense LSE Hessian);
* overflow: states of size 1e3/ε, weights 1e±30, float32 and float64 — finite, within the min-plus bounds;
* NumPy ≡ numba ≡ the CUDA emulator; NVRTC compiles the sources; bad input gives clear errors;
* the numba kernels' vectorisable exp/log: float32 numba ≡ float64 NumPy to float32 accuracy; the
  Jacobians pass A stores for pass B (1-D and 2-D, every line kind) ≡ NumPy.
"""
import pickle

import numpy as np
import pytest
import sympy as sp

import npdegen
from npdegen.inspect.softmin import (attribution, cole_hopf, inverse_cole_hopf, local_terms, site_hessian)
from npdegen.softmin import MinPlusLayer, SoftminLayer, minplus_layer, softmin_layer
from test_cuda_compile import NVRTC, NVRTC_MISSING, compile_job, emulator  # noqa: F401
from test_step_cuda import compare, emulated_network

q, x, y = sp.symbols("q x y")
z1 = sp.Function("z")(q)
z2 = sp.Function("z")(x, y)
LOGEPS = sp.Symbol("logeps")
WEIGHTS = {-1: 0.3, 0: 0.5, 1: 0.2}
BOUNDARIES = ("periodic", "neumann", "dirichlet")


def ghost(u, p, boundary):
    """u at grid index p (1-D, last axis) with the ghost rule written out; None for a zero ghost."""
    n = u.shape[-1]
    if 0 <= p < n:
        return u[..., p]
    if boundary == "periodic":
        return u[..., p % n]
    if boundary == "neumann":
        return u[..., -p - 1] if p < 0 else u[..., 2 * n - 1 - p]
    return np.zeros_like(u[..., 0])


def reference_softmin(u, weights, eps, boundary):
    """−ε log Σ_j w_j exp(−u_{i+j}/ε), site by site (moderate u: no shift needed); w_j a number or
    one per site."""
    out = np.empty_like(u)
    for i in range(u.shape[-1]):
        total = sum((w[i] if np.ndim(w) else w) * np.exp(-ghost(u, i + j, boundary) / eps)
                    for j, w in weights.items())
        out[..., i] = -eps * np.log(total)
    return out


def trainable(family="homogeneous", **kw):
    return softmin_layer([-1, 0, 1], eps=sp.exp(LOGEPS), params={LOGEPS: "homogeneous"}, family=family, **kw)


def theta_for(n, family="homogeneous", seed=0):
    rng = np.random.default_rng(seed)
    shape = () if family == "homogeneous" else (n,)
    return {"logeps": np.array(np.log(0.3)), **{k: rng.uniform(-0.5, 0.5, shape) for k in ("lw_m1", "lw_0", "lw_p1")}}


# ---------------------------------------------------------------- forward against references
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_one_step_equals_the_handwritten_loop(boundary):
    u = np.random.default_rng(1).uniform(-1, 1, (3, 13))
    net = softmin_layer(WEIGHTS, eps=0.25).compile(n=13, boundary=boundary)
    np.testing.assert_allclose(net.forward(u, {}), reference_softmin(u, WEIGHTS, 0.25, boundary), rtol=0, atol=1e-14)


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_cole_hopf_identity_with_the_linear_layer(boundary):
    """Z(u) = −ε log L[exp(−u/ε)] to 1e-12 over 5 layers; dirichlet: ghost φ = 1 (see module docstring)."""
    eps, n, layers = 0.2, 16, 5
    layer = softmin_layer(WEIGHTS, eps=eps)
    linear = layer.linear_layer()
    u = np.random.default_rng(2).uniform(-1, 1, (4, n))
    soft = layer.compile(n=n, layers=layers, boundary=boundary).forward(u, {})
    step = linear.compile(n=n, layers=1, boundary=boundary)
    outside = np.array([sum(w for j, w in WEIGHTS.items() if not 0 <= i + j < n) for i in range(n)])
    phi = cole_hopf(u, eps)
    for _ in range(layers):
        phi = step.forward(phi, {}) + (outside if boundary == "dirichlet" else 0)
    np.testing.assert_allclose(soft, inverse_cole_hopf(phi, eps), rtol=0, atol=1e-12)
    if boundary != "dirichlet":                      # the shift invariance the Cole-Hopf map relies on
        shifted = layer.compile(n=n, layers=layers, boundary=boundary).forward(u + 7.0, {})
        np.testing.assert_allclose(shifted, soft + 7.0, rtol=0, atol=1e-12)


def test_cole_hopf_identity_in_2d_with_mixed_boundaries():
    eps = 0.3
    weights = {(0, 0): 0.4, (1, 0): 0.1, (-1, 0): 0.2, (0, 1): 0.15, (0, -1): 0.15, (1, 1): 0.05}
    layer = softmin_layer(weights, eps=eps, field=z2)
    u = np.random.default_rng(3).uniform(-1, 1, (2, 7, 6))
    for boundary in (("periodic", "neumann"), ("neumann", "periodic")):
        soft = layer.compile(n=(7, 6), layers=3, boundary=boundary).forward(u, {})
        phi = layer.linear_layer().compile(n=(7, 6), layers=3, boundary=boundary).forward(cole_hopf(u, eps), {})
        np.testing.assert_allclose(soft, inverse_cole_hopf(phi, eps), rtol=0, atol=1e-12)


def test_layer_from_a_positive_linear_layer():
    D = sp.Symbol("D")
    heat = npdegen.NeuralPDE(z1 + D * z1.diff(q, 2), z1, params={D: "homogeneous"})
    layer = softmin_layer(heat, eps=0.5, spacing=1, values={"D": 0.2})
    assert {k: float(v) for k, v in layer.stencil().items()} == pytest.approx({-1: 0.2, 0: 0.6, 1: 0.2})
    u = np.random.default_rng(4).uniform(-1, 1, (2, 12))
    direct = softmin_layer({-1: 0.2, 0: 0.6, 1: 0.2}, eps=0.5).compile(n=12).forward(u, {})
    np.testing.assert_allclose(layer.compile(n=12).forward(u, {}), direct, rtol=0, atol=1e-14)
    a, c = sp.symbols("a c")
    Delta = npdegen.SPACING
    free = npdegen.NeuralPDE(sp.exp(a) * z1.subs(q, q - Delta) + z1 + sp.exp(c) * z1.subs(q, q + Delta), z1,
                             params={a: "heterogeneous", c: "homogeneous"})
    kept = softmin_layer(free, eps=0.5)                          # provably positive: parameters stay
    assert kept.spec.param_families == {"a": "heterogeneous", "c": "homogeneous"}
    theta = {"a": np.random.default_rng(5).uniform(-1, 1, 12), "c": np.array(0.3)}
    expected = reference_softmin(u, {-1: np.exp(theta["a"]), 0: 1.0, 1: np.exp(0.3)}, 0.5, "periodic")
    np.testing.assert_allclose(kept.compile(n=12).forward(u, theta), expected, rtol=0, atol=1e-14)
    text = str(layer.explain())
    assert "Hamiltonian" in text and "Cole-Hopf" in text
    with pytest.raises(ValueError, match="not positive"):        # 1 - 2D is not positive for every D
        softmin_layer(heat, eps=0.5, spacing=1)


# ---------------------------------------------------------------- the eps -> 0 limit
def test_softmin_converges_to_minplus_at_rate_eps():
    costs = {-2: 0.3, -1: 0.0, 0: 0.0, 1: 0.2}
    mp = minplus_layer(costs)
    rng = np.random.default_rng(5)
    u = rng.uniform(-1, 1, (2, 24))
    u[0, :8] = 0.0                      # exact ties of s_{-1} and s_0 there (k counted below)
    exact = mp.compile(n=24).forward(u, {})
    t = local_terms(mp, u, {})
    ties = np.sum(t.scores == t.scores.min(axis=-1, keepdims=True), axis=-1)
    gap = np.sort(t.scores, axis=-1)
    delta = np.where(ties < 4, np.take_along_axis(gap, ties[..., None], axis=-1)[..., 0] - gap[..., 0], np.inf)
    for eps in (0.1, 0.01, 1e-3, 1e-5):
        soft = mp.soften(eps).compile(n=24).forward(u, {})
        assert np.all(soft <= exact + 1e-15) and np.all(soft >= exact - eps * np.log(4) - 1e-15)
        excess = exact - soft - eps * np.log(ties)              # >= 0, <= eps (K - k)/k e^{-delta/eps}
        bound = eps * (4 - ties) / ties * np.exp(-delta / eps)
        assert np.all(excess >= -1e-13) and np.all(excess <= bound + 1e-13), eps
    assert np.any(ties > 1)
    lim = softmin_layer(WEIGHTS, eps=0.25).limit()
    c = {o[0]: float(v) for o, v in lim.costs.items()}
    assert c == pytest.approx({j: -0.25 * np.log(w) for j, w in WEIGHTS.items()})


def test_minplus_adjoint_is_the_lowest_offset_one_hot():
    """Integer data: many exact ties. Each site's row of the Jacobian is exactly one 1, at the lowest tied offset."""
    layer = minplus_layer({-1: 0.0, 0: 0.0, 1: 0.0})
    n = 10
    u = np.array([[1.0, 1.0, 1.0, 0.0, 2.0, 2.0, 0.0, 0.0, 5.0, 1.0]])
    net = layer.compile(n=n, boundary="periodic")
    for i in range(n):
        lam = np.zeros((1, n))
        lam[0, i] = 1.0
        dz, _ = net.step_vjp(u, {}, lam, layer=0)
        window = [(i + j) % n for j in (-1, 0, 1)]
        values = u[0, window]
        first = window[int(np.argmax(values == values.min()))]
        expected = np.zeros(n)
        expected[first] = 1.0
        np.testing.assert_array_equal(dz[0], expected)
    mp = minplus_layer([-1, 0, 1]).compile(n=n)
    _, g = mp.loss_and_grad(u, np.zeros_like(u), {"c_m1": np.array(0.0), "c_0": np.array(0.0), "c_p1": np.array(0.0)})
    assert float(g["c_m1"] + g["c_0"] + g["c_p1"]) == pytest.approx(float(np.sum(net.forward(u, {}))), abs=1e-12)


# ---------------------------------------------------------------- gradients
def finite_differences(net, u, target, theta, grads, h=1e-6):
    for key in theta:
        flat = np.asarray(theta[key], dtype=float)
        for idx in (np.ndindex(*flat.shape) if flat.shape else [()]):
            hi, lo = {**theta, key: flat.copy()}, {**theta, key: flat.copy()}
            hi[key][idx] += h
            lo[key][idx] -= h
            fd = (net.loss_and_grad(u, target, hi)[0] - net.loss_and_grad(u, target, lo)[0]) / (2 * h)
            got = float(np.asarray(grads[key])[idx])
            assert abs(fd - got) <= 1e-6 * max(1.0, abs(fd)), (key, idx, fd, got)


def dot_product_test(net, u, theta, seed):
    rng = np.random.default_rng(seed)
    v, w, h = rng.standard_normal(u.shape), rng.standard_normal(u.shape), 1e-6
    jv = (net.forward(u + h * v, theta) - net.forward(u - h * v, theta)) / (2 * h)
    dx, _ = net.vjp(u, theta, w)
    assert abs(np.sum(jv * w) - np.sum(v * dx)) <= 1e-7 * max(1.0, abs(np.sum(v * dx)))


@pytest.mark.parametrize("family", ["homogeneous", "heterogeneous"])
def test_softmin_gradients_equal_finite_differences(family):
    n = 9
    net = trainable(family).compile(n=n, layers=4, omega=0.7, boundary="neumann")
    rng = np.random.default_rng(6)
    u, target = rng.uniform(-1, 1, (2, n)), rng.uniform(-1, 1, (2, n))
    theta = theta_for(n, family)
    _, grads = net.loss_and_grad(u, target, theta)
    finite_differences(net, u, target, theta, grads)
    dot_product_test(net, u, theta, 7)


def test_minplus_gradients_equal_finite_differences():
    n = 11
    layer = minplus_layer([-1, 0, 1], family="heterogeneous")
    net = layer.compile(n=n, layers=3, omega=0.6, boundary="dirichlet")
    rng = np.random.default_rng(8)
    u, target = rng.uniform(-1, 1, (2, n)), rng.uniform(-1, 1, (2, n))
    theta = {k: rng.uniform(0, 0.3, n) for k in ("c_m1", "c_0", "c_p1")}
    traj = net.forward(u, theta, trajectory=True)
    for t in range(3):          # FD is valid away from switches: every winner leads by > 100 h
        s = np.sort(local_terms(layer, traj[t], theta, boundary="dirichlet").scores, axis=-1)
        assert np.min(s[..., 1] - s[..., 0]) > 1e-4
    _, grads = net.loss_and_grad(u, target, theta)
    finite_differences(net, u, target, theta, grads)
    dot_product_test(net, u, theta, 9)


# ---------------------------------------------------------------- inspection
def test_attribution_is_the_jacobian_and_entropy_is_minus_dz_deps():
    n, eps = 10, 0.4
    mp = minplus_layer({-1: 0.2, 0: 0.0, 1: 0.1})
    layer = mp.soften(eps)
    u = np.random.default_rng(10).uniform(-1, 1, (1, n))
    att = attribution(layer, u, {}, boundary="neumann")
    np.testing.assert_allclose(att.weights.sum(axis=-1), 1.0, atol=1e-15)
    net = layer.compile(n=n, boundary="neumann")
    for i in range(2, n - 2):
        lam = np.zeros((1, n))
        lam[0, i] = 1.0
        dz, _ = net.step_vjp(u, {}, lam, layer=0)
        np.testing.assert_allclose(dz[0, i - 1:i + 2], att.weights[0, i], rtol=0, atol=1e-14)
    h = 1e-6
    dz_deps = (mp.soften(eps + h).compile(n=n, boundary="neumann").forward(u, {})
               - mp.soften(eps - h).compile(n=n, boundary="neumann").forward(u, {})) / (2 * h)
    np.testing.assert_allclose(dz_deps, -att.entropy, rtol=0, atol=1e-8)
    assert np.all(att.entropy > 0) and np.all(att.entropy <= np.log(3) + 1e-15)
    hard = attribution(mp, u, {}, boundary="neumann")
    assert np.all(hard.entropy == 0) and np.all(hard.weights.sum(axis=-1) == 1)


def test_attribution_of_a_time_dependent_layer_is_its_linearised_kernel():
    """Per-layer log-weights: π at layer t equals the step's Jacobian at t and npdegen.inspect.linearised_kernel."""
    from npdegen.inspect import linearised_kernel
    n, L = 9, 3
    layer = trainable("time-dependent")
    rng = np.random.default_rng(15)
    theta = {"logeps": np.array(np.log(0.3)), **{k: rng.uniform(-1, 1, (L, n)) for k in ("lw_m1", "lw_0", "lw_p1")}}
    u = rng.uniform(-1, 1, (1, n))
    net = layer.compile(n=n, layers=L, boundary="dirichlet")
    att = attribution(layer, u, theta, boundary="dirichlet", layer_index=2)
    lin = linearised_kernel(layer, u[0], theta, boundary="dirichlet", layer_index=2)
    for k, j in enumerate((-1, 0, 1)):
        np.testing.assert_allclose(lin.weights[(j,)], att.weights[0, :, k], rtol=0, atol=1e-14)
    i = 4
    lam = np.zeros((1, n))
    lam[0, i] = 1.0
    dz, _ = net.step_vjp(u, theta, lam, layer=2)
    np.testing.assert_allclose(dz[0, i - 1:i + 2], att.weights[0, i], rtol=0, atol=1e-14)


def test_site_hessian_equals_finite_differences_and_the_dense_lse_hessian():
    from npdegen.lse import DenseLSE
    n, eps = 8, 0.3
    layer = softmin_layer(WEIGHTS, eps=eps)
    u = np.random.default_rng(11).uniform(-1, 1, (1, n))
    H = site_hessian(layer, u, {})
    net = layer.compile(n=n)
    i, h = 4, 1e-4
    for a, ja in enumerate((-1, 0, 1)):
        for b, jb in enumerate((-1, 0, 1)):
            def Z(da, db):
                v = u.copy()
                v[0, i + ja] += da
                v[0, i + jb] += db
                return net.forward(v, {})[0, i]
            fd = (Z(h, h) - Z(h, -h) - Z(-h, h) + Z(-h, -h)) / (4 * h * h)
            assert abs(fd - H[0, i, a, b]) < 1e-6
    accesses = u[0, [i - 1, i, i + 1]][None]
    costs = np.array([-eps * np.log(WEIGHTS[j]) for j in (-1, 0, 1)])
    dense = DenseLSE(-np.eye(3), -costs, eps)                  # Z = -f with W_j = -e_j, b_j = -c_j
    np.testing.assert_allclose(H[0, i], -dense.hessian(accesses)[0], rtol=0, atol=1e-13)
    np.testing.assert_allclose(-dense(accesses), net.forward(u, {})[0, i:i + 1], rtol=0, atol=1e-14)
    assert np.all(np.linalg.eigvalsh(H[0]) <= 1e-14)          # concave


# ---------------------------------------------------------------- overflow, backends
@pytest.mark.parametrize("backend,dtype", [("numpy", "float64"), ("numpy", "float32"), ("numba", "float32"),
                                           pytest.param("numba", "float64", marks=pytest.mark.slow)])
def test_no_overflow_for_huge_states_and_extreme_weights(backend, dtype):
    if backend == "numba":
        pytest.importorskip("numba")
    eps, n = 1e-3, 16
    layer = softmin_layer({-1: 1e-30, 0: 1.0, 1: 1e30}, eps=eps)
    rng = np.random.default_rng(12)
    u = (rng.uniform(-1, 1, (2, n)) * 1e3 / eps).astype(dtype)
    net = layer.compile(n=n, layers=2, boundary="dirichlet", backend=backend, dtype=dtype)
    out = net.forward(u, {})
    loss, grads = net.loss_and_grad(u, np.zeros_like(u), {}, input_grad=True)
    assert np.all(np.isfinite(out)) and np.isfinite(loss) and np.all(np.isfinite(grads["x"]))
    lim = layer.limit().compile(n=n, layers=1, boundary="dirichlet")
    one = net.step(u, {}, layer=0).astype(np.float64)
    hard = lim.forward(u.astype(np.float64), {})
    tol = 1e-6 * 1e3 / eps if dtype == "float32" else 1e-9 * 1e3 / eps
    assert np.all(one <= hard + tol) and np.all(one >= hard - eps * np.log(3) - tol)


@pytest.mark.parametrize("kind", ["softmin", pytest.param("minplus", marks=pytest.mark.slow)])
def test_numba_equals_numpy(kind):
    pytest.importorskip("numba")
    n = 40
    rng = np.random.default_rng(13)
    u, target = rng.uniform(-1, 1, (3, n)), rng.uniform(-1, 1, (3, n))
    u[:, :10] = np.round(4 * u[:, :10]) / 4                  # exact ties for the min-plus one-hot
    if kind == "softmin":
        layer, theta = trainable(), theta_for(n)
    else:
        layer, theta = minplus_layer([-1, 0, 1]), {"c_m1": np.array(0.25), "c_0": np.array(0.0),
                                                   "c_p1": np.array(0.25)}
    nets = [layer.compile(n=n, layers=6, omega=0.8, boundary="neumann", backend=b) for b in ("numpy", "numba")]
    (la, ga), (lb, gb) = (net.loss_and_grad(u, target, theta, input_grad=True) for net in nets)
    assert abs(la - lb) <= 1e-12 * abs(lb)
    for k in gb:
        np.testing.assert_allclose(ga[k], gb[k], rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("boundary", [("periodic", "dirichlet"),
                                      pytest.param(("neumann", "periodic"), marks=pytest.mark.slow)])
def test_numba_stored_jacobians_in_2d_equal_numpy(boundary):
    """The numba adjoint stores s·J_o in pass A for the soft-min layer (its Jacobians call exp) and
    pass B only gathers them, on interior lines, at the row ends and on the lines next to an outer
    edge (pass C); a linear layer's kernel stores none. Loss, parameter and input gradients equal the
    NumPy network's in float64."""
    pytest.importorskip("numba")
    weights = {(0, 0): sp.exp(sp.Symbol("a")), (1, 0): 0.1, (-1, 0): 0.2, (0, 1): 0.15, (0, -1): 0.15, (1, 1): 0.05}
    layer = softmin_layer(weights, eps=sp.exp(LOGEPS), field=z2,
                          params={sp.Symbol("a"): "heterogeneous", LOGEPS: "homogeneous"})
    rng = np.random.default_rng(15)
    u, target = rng.uniform(-1, 1, (2, 7, 6)), rng.uniform(-1, 1, (2, 7, 6))
    theta = {"logeps": np.array(np.log(0.3)), "a": rng.uniform(-0.5, 0.5, (7, 6))}
    nets = [layer.compile(n=(7, 6), layers=4, omega=0.9, boundary=boundary, backend=b) for b in ("numpy", "numba")]
    assert nets[1].kernel.STORED_JACOBIANS == 6
    assert layer.linear_layer().compile(n=(7, 6), backend="numba").kernel.STORED_JACOBIANS == 0
    (la, ga), (lb, gb) = (net.loss_and_grad(u, target, theta, input_grad=True) for net in nets)
    assert abs(la - lb) <= 1e-12 * abs(la)
    for k in ga:
        np.testing.assert_allclose(gb[k], ga[k], rtol=1e-11, atol=1e-13)


def test_numba_float32_kernels_use_vector_exp_log_and_match_float64():
    """The numba kernels compute exp/log with the vectorisable helpers (npdegen.codegen.vector_math;
    ``activations="exact"``: libm); the float32 network (the benchmark's layer) agrees with the
    float64 NumPy network to float32 accuracy: loss and gradients to 1e-5 relative."""
    pytest.importorskip("numba")
    layer, n = trainable(), 64
    vector = layer.source(backend="numba", dtype="float32", boundary="periodic")
    exact = layer.source(backend="numba", dtype="float32", boundary="periodic", activations="exact")
    assert "def _vexp" in vector and "_vexp(" in vector.split("def _vlog")[1] and "math.exp(" not in vector
    assert "math.exp(" in exact and "_vexp" not in exact
    rng = np.random.default_rng(14)
    u, target = rng.standard_normal((4, n)), rng.standard_normal((4, n))
    theta = theta_for(n)
    ref = layer.compile(n=n, layers=8, boundary="periodic").loss_and_grad(u, target, theta, input_grad=True)
    net = layer.compile(n=n, layers=8, boundary="periodic", backend="numba", dtype="float32")
    theta32 = {k: np.asarray(v, np.float32) for k, v in theta.items()}
    loss, grads = net.loss_and_grad(u.astype(np.float32), target.astype(np.float32), theta32, input_grad=True)
    assert abs(loss - ref[0]) <= 1e-5 * abs(ref[0])
    for k, g in ref[1].items():
        np.testing.assert_allclose(np.asarray(grads[k], np.float64), g, rtol=1e-5, atol=1e-5 * np.abs(g).max())


@pytest.mark.parametrize("kind", ["softmin", "minplus"])
def test_cuda_emulation_equals_numpy(emulator, kind):  # noqa: F811
    from npdegen.codegen.step_render import StepOptions
    if kind == "softmin":
        layer, theta = trainable(family="heterogeneous"), theta_for(13, "heterogeneous")
    else:
        layer, theta = minplus_layer([-1, 0, 1]), {"c_m1": np.array(0.1), "c_0": np.array(0.0), "c_p1": np.array(0.2)}
    options = StepOptions(backend="cupy", boundary=("dirichlet",), dtype="float64")
    cu, _ = emulated_network(layer, options, (13,), (1.0,), emulator, kind, layers=3, omega=0.8)
    ref = layer.compile(n=13, layers=3, omega=0.8, boundary="dirichlet")
    compare(cu, ref, theta, layers=3)


@pytest.mark.skipif(NVRTC is None, reason=NVRTC_MISSING)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cuda_sources_compile_with_nvrtc(dtype):
    from npdegen.codegen.step_render import StepOptions, render_step
    for layer in (trainable(), minplus_layer([-1, 0, 1]), softmin_layer({(0, 1): 1.0, (1, 0): 2.0}, eps=0.1, field=z2)):
        options = StepOptions(backend="cupy", boundary=("neumann",) * layer.dim, dtype=dtype)
        log, entries = compile_job(render_step(layer.lowered, options).files[".cu"], "90", True)
        assert log is None, log
        assert {"forward_step", "adjoint_site", "adjoint_gather"} <= set(entries)


def test_pickles_and_reports():
    net = trainable().compile(n=12, layers=2)
    again = pickle.loads(pickle.dumps(net))
    u = np.random.default_rng(14).uniform(-1, 1, (2, 12))
    theta = theta_for(12)
    np.testing.assert_array_equal(again.forward(u, theta), net.forward(u, theta))
    assert isinstance(pickle.loads(pickle.dumps(minplus_layer({0: 1.0, 1: 0.0}))), MinPlusLayer)
    layer = trainable()
    assert isinstance(layer, SoftminLayer) and "exp(lw_m1)" in repr(layer)
    assert "Hopf-Lax" in str(minplus_layer({0: 0.0, 1: 1.0}).explain())


# ---------------------------------------------------------------- bad input
def test_bad_input_is_refused_clearly():
    a = sp.Symbol("a")
    for eps in (0, -0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="eps"):
            softmin_layer(WEIGHTS, eps=eps)
    with pytest.raises(ValueError, match="not positive"):
        softmin_layer(WEIGHTS, eps=a, params={a: "homogeneous"})
    with pytest.raises(TypeError):
        softmin_layer(WEIGHTS, eps="0.1")
    with pytest.raises(TypeError):
        softmin_layer(WEIGHTS, eps=True)
    with pytest.raises(ValueError, match="> 0"):
        softmin_layer({-1: 0.5, 0: 0.0, 1: 0.5}, eps=0.1)
    with pytest.raises(ValueError, match="> 0"):
        softmin_layer({-1: -0.5, 1: 0.5}, eps=0.1)
    with pytest.raises(ValueError, match="not positive"):
        softmin_layer({-1: a, 1: 0.5}, eps=0.1, params={a: "homogeneous"})
    with pytest.raises(ValueError, match="not parameters"):
        softmin_layer({-1: sp.exp(a), 1: 0.5}, eps=0.1)
    with pytest.raises(TypeError, match="text"):
        softmin_layer({-1: "0.5", 1: 0.5}, eps=0.1)
    with pytest.raises(ValueError, match="distinct"):
        softmin_layer([0, 0, 1], eps=0.1)
    with pytest.raises(ValueError, match="integer"):
        softmin_layer({(0, 1): 1.0}, eps=0.1, field=z1)           # 2-D offset, 1-D field
    with pytest.raises(ValueError, match="N-D field"):
        softmin_layer({(0, 1): 1.0, (1, 0): 1.0}, eps=0.1)
    with pytest.raises(ValueError, match="family"):
        softmin_layer([-1, 0, 1], eps=0.1, family="global")
    with pytest.raises(ValueError, match="finite"):
        minplus_layer({0: float("inf"), 1: 0.0})
    with pytest.raises(ValueError, match="linear step"):
        softmin_layer(npdegen.NeuralPDE(z1 + z1.diff(q, 2), z1, activation="tanh"), eps=0.1)
    with pytest.raises(ValueError, match="not a linear"):
        softmin_layer(npdegen.NeuralPDE(z1 + z1 * z1.diff(q), z1), eps=0.1)
    with pytest.raises(ValueError, match="unknown parameter"):
        softmin_layer(npdegen.NeuralPDE(z1 + z1.diff(q, 2) / 4, z1), eps=0.1, spacing=1, values={"D": 1.0})
    with pytest.raises(TypeError, match="linear layer"):
        softmin_layer(WEIGHTS, eps=0.1, spacing=1.0)
    with pytest.raises(ValueError, match="costs"):
        minplus_layer({0: 0.0, 1: 1.0}).stencil()
    with pytest.raises(ValueError, match="range"):
        cole_hopf(np.array([-1e3]), 1.0)
    with pytest.raises(ValueError, match="> 0"):
        inverse_cole_hopf(np.array([0.0, 1.0]), 1.0)
    with pytest.raises(ValueError, match="eps"):
        cole_hopf(np.zeros(3), -1.0)
