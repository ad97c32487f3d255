"""Markov-chain layers (npdegen.markov) and their chain report, against independent references."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from npdegen.inspect.markov import chain_report
from npdegen.markov import kushner_logits, markov_chain


def softmax_rows(theta, keys):
    L = np.stack([np.asarray(theta[k], float) for k in keys])
    P = np.exp(L - L.max(axis=0))
    return P / P.sum(axis=0)


@settings(derandomize=True, max_examples=10, deadline=None)
@given(st.integers(0, 2 ** 31 - 1), st.sampled_from(["periodic", "neumann"]))
def test_step_is_a_transition_row_and_equals_a_loop(seed, boundary):
    rng = np.random.default_rng(seed)
    n = 12
    layer = markov_chain()
    net = layer.compile(n=n, spacing=0.1, layers=1, boundary=boundary)
    theta = {k: 3 * rng.standard_normal(n) for k in ("l_m1", "l_0", "l_p1")}
    P = softmax_rows(theta, ("l_m1", "l_0", "l_p1"))
    assert np.all(P > 0) and np.allclose(P.sum(0), 1)
    u = rng.standard_normal((2, n))
    expected = np.zeros_like(u)
    for i in range(n):
        for w, j in zip(P[:, i], (i - 1, i, i + 1)):
            if boundary == "periodic":
                j %= n
            else:                       # mirror about the cell faces
                j = -j - 1 if j < 0 else (2 * n - j - 1 if j >= n else j)
            expected[:, i] += w * u[:, j]
    np.testing.assert_allclose(net.forward(u, theta), expected, atol=1e-14)
    # a chain keeps constants and obeys the maximum principle
    np.testing.assert_allclose(net.forward(np.full((1, n), 2.5), theta), 2.5, atol=1e-14)
    out = net.forward(u, theta)
    assert out.max() <= u.max() + 1e-14 and out.min() >= u.min() - 1e-14


def test_kushner_logits_give_drift_and_diffusion():
    n, h, a, b = 20, 0.05, 0.01, -0.4
    dt = 0.8 * h * h / (a + h * abs(b))
    theta = kushner_logits(np.full(n, b), np.full(n, a), dt=dt, spacing=h)
    report = chain_report(markov_chain(), theta, n, spacing=h)
    np.testing.assert_allclose(report.drift[0] / dt, b, rtol=1e-12)
    # the upwind chain's second moment carries its numerical diffusion h|b|
    np.testing.assert_allclose(report.second_moment[0, 0] / dt, a + h * abs(b), rtol=1e-12)
    assert report.row_sum_error < 1e-14 and report.min_weight >= 0
    np.testing.assert_allclose(report.stationary, 1 / n, rtol=1e-10)     # periodic, homogeneous: uniform
    # symmetric walk eigenvalues p0 + p+ e^{ik} + p- e^{-ik}: |lambda_2| from the closed form
    P = softmax_rows(theta, ("l_m1", "l_0", "l_p1"))[:, 0]
    k = 2 * np.pi * np.arange(1, n) / n
    lam = np.abs(P[1] + P[2] * np.exp(1j * k) + P[0] * np.exp(-1j * k)).max()
    assert report.second_eigenvalue == pytest.approx(lam, rel=1e-10)


def test_heterogeneous_stationary_distribution_by_power_iteration():
    rng = np.random.default_rng(3)
    n = 10
    theta = {k: rng.standard_normal(n) for k in ("l_m1", "l_0", "l_p1")}
    report = chain_report(markov_chain(), theta, n, spacing=1.0, boundary="neumann")
    pi = np.full(n, 1 / n)
    for _ in range(20000):
        pi = pi @ report.transition
    np.testing.assert_allclose(report.stationary, pi, atol=1e-10)
    assert "spectral gap" in str(report)


def test_gradients_equal_finite_differences():
    rng = np.random.default_rng(4)
    n = 9
    net = markov_chain(family="heterogeneous").compile(n=n, spacing=0.5, layers=5, boundary="neumann")
    theta = {k: rng.standard_normal(n) for k in ("l_m1", "l_0", "l_p1")}
    u, target = rng.standard_normal((2, n)), rng.standard_normal((2, n))
    _, grads = net.loss_and_grad(u, target, theta)
    eps = 1e-6
    for key in theta:
        for i in (0, 4, n - 1):
            hi = {k: v.copy() for k, v in theta.items()}
            lo = {k: v.copy() for k, v in theta.items()}
            hi[key][i] += eps
            lo[key][i] -= eps
            fd = (net.loss_and_grad(u, target, hi)[0] - net.loss_and_grad(u, target, lo)[0]) / (2 * eps)
            assert abs(fd - grads[key][i]) <= 1e-7 * max(1.0, abs(fd)), (key, i)


def test_two_dimensional_chain():
    layer = markov_chain(field=__import__("sympy").Function("z")(*__import__("sympy").symbols("x y")),
                         offsets=[(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)], family="homogeneous")
    theta = {k: np.array(v) for k, v in zip(("l_0_0", "l_p1_0", "l_m1_0", "l_0_p1", "l_0_m1"),
                                            (0.0, -1.0, -1.5, -2.0, -2.0))}
    report = chain_report(layer, theta, (5, 4), spacing=(0.1, 0.2))
    w = np.exp([0.0, -1.0, -1.5, -2.0, -2.0]); w /= w.sum()
    np.testing.assert_allclose(report.drift[0], 0.1 * (w[1] - w[2]), rtol=1e-12)
    np.testing.assert_allclose(report.drift[1], 0.0, atol=1e-15)
    np.testing.assert_allclose(report.second_moment[1, 1], 0.04 * (w[3] + w[4]), rtol=1e-12)


def test_bad_input():
    with pytest.raises(ValueError, match="CFL"):
        kushner_logits(1.0, 0.1, dt=1.0, spacing=0.1)
    with pytest.raises(ValueError, match=">= 0"):
        kushner_logits(0.0, -0.1, dt=0.001, spacing=0.1)
    with pytest.raises(ValueError, match="distinct"):
        markov_chain(offsets=(-1, -1, 0))
    with pytest.raises(TypeError):
        markov_chain(offsets=(0,))
    import sympy as sp
    q = sp.Symbol("q")
    from npdegen import NeuralPDE
    nonlinear = NeuralPDE(sp.Function("z")(q) ** 2, sp.Function("z")(q))
    with pytest.raises(ValueError, match="linear"):
        chain_report(nonlinear, {}, 8)
