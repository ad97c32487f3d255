"""Dense log-sum-exp layer (issue 13 item 5): the Hopf–Cole identity, exact adjoints, the Hessian, the
max-plus limit, overflow safety and clear errors — each against an independent reference (a Python
loop with math.fsum, central finite differences in float64, the heat equation by finite differences,
closed-form bounds)."""
import math
import os
import runpy
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npdegen.lse import (DenseLSE, MaxPlus, anchor_weights, fit_lbfgs, heat_offset, hopf_cole_solution, hopf_lax,
                         layer_from_params, loss_and_grad)

ROOT = Path(__file__).resolve().parent.parent


def _random(rng, m=6, d=3, batch=5, eps=0.4):
    return DenseLSE(rng.normal(size=(m, d)), rng.normal(size=m), eps), rng.normal(size=(batch, d))


def _loop_lse(x, W, b, eps):
    """ε log Σ_j exp(s_j/ε) by a Python loop (math.fsum of exp), for moderate scores only."""
    out = []
    for xb in x:
        s = [sum(W[j, i] * xb[i] for i in range(W.shape[1])) + b[j] for j in range(W.shape[0])]
        out.append(eps * math.log(math.fsum(math.exp(sj / eps) for sj in s)))
    return np.array(out)


def test_forward_matches_a_loop(rng):
    layer, x = _random(rng)
    np.testing.assert_allclose(layer(x), _loop_lse(x, layer.W, layer.b, layer.eps), rtol=1e-13, atol=1e-13)


# -- the Hamilton–Jacobi identity --------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(5))
def test_hopf_cole_identity_to_machine_precision(seed):
    r = np.random.default_rng(seed)
    m, d = r.integers(1, 12), r.integers(1, 5)
    y, g, x = r.normal(size=(m, d)) * 2, r.normal(size=m), r.normal(size=(20, d)) * 2
    t, eps = r.uniform(0.1, 2.0), r.uniform(0.01, 1.0)
    f = DenseLSE.from_anchors(y, g, t, eps)(x)
    quad = np.sum(x * x, axis=1) / (4 * t)
    v = hopf_cole_solution(x, t, y, g, eps, normalised=False)
    u = hopf_cole_solution(x, t, y, g, eps)
    scale = np.abs(f) + quad + np.abs(v)
    assert np.max(np.abs(f - (quad - v)) / scale) < 1e-12
    # the PDE solution differs by the heat kernel's normalisation, a constant in x
    assert np.max(np.abs(f - (quad - u + heat_offset(t, eps, d))) / (scale + abs(heat_offset(t, eps, d)))) < 1e-12


def test_anchor_weights_formula(rng):
    y, g, t = rng.normal(size=(4, 2)), rng.normal(size=4), 0.3
    W, b = anchor_weights(y, g, t)
    for j in range(4):
        np.testing.assert_allclose(W[j], y[j] / 0.6, rtol=1e-15)
        assert b[j] == pytest.approx(-g[j] - (y[j, 0] ** 2 + y[j, 1] ** 2) / 1.2, rel=1e-14)


def _pde_residual(x, t, y, g, eps, normalised, h=1e-3, k=1e-4):
    """u_t + |∇u|² − εΔu by central differences (4th-order in x, 2nd-order in t)."""
    u = lambda xx, tt: hopf_cole_solution(xx, tt, y, g, eps, normalised=normalised)
    u_t = (u(x, t + k) - u(x, t - k)) / (2 * k)
    grad2, lap = 0.0, 0.0
    for i in range(x.shape[1]):
        e = np.zeros(x.shape[1])
        e[i] = h
        p1, m1, p2, m2 = u(x + e, t), u(x - e, t), u(x + 2 * e, t), u(x - 2 * e, t)
        grad2 = grad2 + ((8 * (p1 - m1) - (p2 - m2)) / (12 * h)) ** 2
        lap = lap + (-p2 + 16 * p1 - 30 * u(x, t) + 16 * m1 - m2) / (12 * h * h)
    return u_t + grad2 - eps * lap


@pytest.mark.parametrize("d", [1, 2, 3])
def test_hopf_cole_solves_viscous_hamilton_jacobi(d):
    r = np.random.default_rng(d)
    y, g, x = r.normal(size=(5, d)), r.normal(size=5) * 0.3, r.normal(size=(8, d))
    t, eps = 0.6, 0.4
    res = _pde_residual(x, t, y, g, eps, normalised=True)
    assert np.max(np.abs(res)) < 1e-6
    # without the normalisation the residual is the constant source −εd/(2t) (the test can fail)
    res_v = _pde_residual(x, t, y, g, eps, normalised=False)
    np.testing.assert_allclose(res_v, -eps * d / (2 * t), atol=1e-6)


def test_hopf_lax_limit(rng):
    y, g, x, t = rng.normal(size=(7, 2)), rng.normal(size=7), rng.normal(size=(30, 2)), 0.5
    lax = hopf_lax(x, t, y, g)
    q = g[None] + np.sum((x[:, None] - y[None]) ** 2, axis=2) / (4 * t)
    np.testing.assert_allclose(lax, q.min(axis=1), rtol=1e-15)
    errors = []
    for eps in (1e-1, 1e-2, 1e-3, 1e-4):
        v = hopf_cole_solution(x, t, y, g, eps, normalised=False)
        assert np.all(v <= lax + 1e-14) and np.all(lax - v <= eps * np.log(7) + 1e-14)   # 0 ≤ lax − v ≤ ε log m
        errors.append(np.max(np.abs(hopf_cole_solution(x, t, y, g, eps) - lax)))
    assert errors[-1] < 5e-3 and errors == sorted(errors, reverse=True)


# -- gradients ---------------------------------------------------------------------------------------
def _fd(fun, value, h=1e-6):
    """Central differences of the scalar fun at every entry of value (float64)."""
    value = np.array(value, dtype=float)
    out = np.zeros_like(value)
    for idx in np.ndindex(value.shape):
        p, m = value.copy(), value.copy()
        p[idx] += h
        m[idx] -= h
        out[idx] = (fun(p) - fun(m)) / (2 * h)
    return out


def test_gradients_by_finite_differences(rng):
    layer, x = _random(rng)
    gout = rng.normal(size=x.shape[0])
    grads = layer.vjp(x, gout)
    W, b, eps = layer.W, layer.b, layer.eps
    loss = lambda W_, b_, e_, x_: float(np.dot(gout, DenseLSE(W_, b_, e_)(x_)))
    checks = {"x": _fd(lambda v: loss(W, b, eps, v), x), "W": _fd(lambda v: loss(v, b, eps, x), W),
              "b": _fd(lambda v: loss(W, v, eps, x), b), "eps": _fd(lambda v: loss(W, b, float(v), x), eps)}
    for k, ref in checks.items():
        assert np.max(np.abs(np.asarray(grads[k]) - ref)) < 1e-6, k
    np.testing.assert_allclose(layer.gradient(x), grads["x"] / gout[:, None], rtol=1e-12)


def test_eps_derivative_is_entropy_and_the_stated_formula(rng):
    layer, x = _random(rng, eps=0.7)
    f, s = layer(x), layer.scores(x)
    att = layer.attribution(x)
    np.testing.assert_allclose(att.weights.sum(axis=1), 1, rtol=1e-15)
    np.testing.assert_allclose(att.entropy, (f - np.sum(att.weights * s, axis=1)) / layer.eps, rtol=1e-12)
    np.testing.assert_allclose(att.entropy, -np.sum(att.weights * np.log(att.weights), axis=1), rtol=1e-13)
    np.testing.assert_allclose(layer.jvp(x, deps=1.0), att.entropy, rtol=1e-15)


def test_dot_product_and_directional_derivative(rng):
    layer, x = _random(rng, m=9, d=4, batch=7)
    dx, dW, db, deps = (rng.normal(size=x.shape), rng.normal(size=layer.W.shape), rng.normal(size=layer.n_pieces),
                        0.37)
    gout = rng.normal(size=x.shape[0])
    lhs = np.dot(gout, layer.jvp(x, dx, dW, db, deps))
    g = layer.vjp(x, gout)
    rhs = np.sum(g["x"] * dx) + np.sum(g["W"] * dW) + np.dot(g["b"], db) + g["eps"] * deps
    assert abs(lhs - rhs) <= 1e-12 * (abs(lhs) + 1)
    h = 1e-6                                               # the x-JVP against the directional derivative
    fd = (layer(x + h * dx) - layer(x - h * dx)) / (2 * h)
    np.testing.assert_allclose(layer.jvp(x, dx), fd, atol=1e-8)


def test_hessian_is_covariance_over_eps(rng):
    layer, x = _random(rng, m=8, d=3, batch=4, eps=0.6)
    H = layer.hessian(x)
    h = 1e-5
    for i in range(3):
        e = np.zeros(3)
        e[i] = h
        col = (layer.gradient(x + e) - layer.gradient(x - e)) / (2 * h)
        np.testing.assert_allclose(H[:, :, i], col, atol=1e-8)
    pi = layer.attribution(x).weights
    second = np.einsum("bm,mi,mj->bij", pi, layer.W, layer.W)
    mean = pi @ layer.W
    np.testing.assert_allclose(H, (second - mean[:, :, None] * mean[:, None, :]) / layer.eps, atol=1e-13)
    assert np.all(np.linalg.eigvalsh(H) > -1e-13)          # convex


# -- the max-plus limit ------------------------------------------------------------------------------
def _tied_layer():
    """Integer pieces and inputs: scores are exact integers, so ties are exact."""
    W = np.array([[1, 0], [0, 1], [1, 1], [-1, 2], [2, -1]], float)
    b = np.array([0, 0, -1, 0, -2], float)
    x = np.array([[1, 1], [2, 1], [0, 3], [0, 0]], float)   # ties: k = 4, 2, 1, 3
    return W, b, x


def test_eps_to_zero_rate_with_ties_and_gap():
    W, b, x = _tied_layer()
    trop = MaxPlus(W, b)
    k, gap = trop.ties(x), trop.gap(x)
    s = x @ W.T + b
    assert list(k) == [int(np.sum(r == r.max())) for r in s] and list(k) == [4, 2, 1, 3]
    f0 = trop(x)
    for eps in (1.0, 0.3, 0.1, 0.03, 0.01, 1e-3):
        excess = DenseLSE(W, b, eps)(x) - f0 - eps * np.log(k)
        bound = eps * (5 - k) / k * np.exp(-gap / eps)
        assert np.all(excess >= -1e-15) and np.all(excess <= bound + 1e-15), eps
    # lowest-index tie breaking: winners and sub-gradients
    np.testing.assert_array_equal(trop.winners(x), [int(np.flatnonzero(r == r.max())[0]) for r in s])
    np.testing.assert_array_equal(trop.gradient(x), W[trop.winners(x)])
    assert np.all(MaxPlus.limit_of(DenseLSE(W, b, 0.5))(x) == f0)


def test_maxplus_subgradients_away_from_ties(rng):
    trop = MaxPlus(rng.normal(size=(6, 3)), rng.normal(size=6))
    x, gout = rng.normal(size=(5, 3)), rng.normal(size=5)
    assert np.all(trop.gap(x) > 1e-3)                      # random data: no ties, FD is valid
    g = trop.vjp(x, gout)
    loss = lambda W_, b_, x_: float(np.dot(gout, MaxPlus(W_, b_)(x_)))
    np.testing.assert_allclose(g["x"], _fd(lambda v: loss(trop.W, trop.b, v), x), atol=1e-8)
    np.testing.assert_allclose(g["W"], _fd(lambda v: loss(v, trop.b, x), trop.W), atol=1e-8)
    np.testing.assert_allclose(g["b"], _fd(lambda v: loss(trop.W, v, x), trop.b), atol=1e-8)
    # the soft layer's gradients converge to the sub-gradients
    soft = trop.soften(1e-3).vjp(x, gout)
    for key in ("x", "W", "b"):
        np.testing.assert_allclose(soft[key], g[key], atol=1e-6)
    att = trop.attribution(x)
    np.testing.assert_array_equal(att.weights.argmax(axis=1), trop.winners(x))


@settings(derandomize=True, max_examples=30, deadline=None)
@given(m=st.integers(1, 8), d=st.integers(1, 4), eps=st.floats(1e-3, 10.0), seed=st.integers(0, 2**16))
def test_bounds_and_convexity(m, d, eps, seed):
    r = np.random.default_rng(seed)
    layer, x = DenseLSE(r.normal(size=(m, d)), r.normal(size=m), eps), r.normal(size=(6, d))
    f, f0 = layer(x), MaxPlus.limit_of(layer)(x)
    tol = 1e-12 * (1 + np.abs(f0))
    assert np.all(f >= f0 - tol) and np.all(f <= f0 + eps * np.log(m) + tol)
    H = layer.attribution(x).entropy
    assert np.all(H >= 0) and np.all(H <= np.log(m) + 1e-12)
    x2 = r.normal(size=(6, d))
    assert np.all(layer((x + x2) / 2) <= (f + layer(x2)) / 2 + 1e-12 * (1 + np.abs(f)))


# -- overflow, dtypes, errors ------------------------------------------------------------------------
def test_overflow_safety_with_huge_inputs():
    W, b, x = _tied_layer()
    big = x * 1e6
    for dtype, scale, eps in ((np.float64, 1e6, 1e-4), (np.float32, 1e30, 1e-3)):
        layer = DenseLSE(W.astype(dtype), b.astype(dtype), eps)
        xx = (x * scale).astype(dtype)
        with np.errstate(over="ignore"):
            assert not np.all(np.isfinite(np.exp((xx @ layer.W.T) / dtype(eps))))   # the naive form overflows
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            f, att, grads = layer(xx), layer.attribution(xx), layer.vjp(xx, np.ones(len(xx), dtype))
            hess = layer.hessian(xx)
        for arr in (f, att.weights, att.entropy, grads["x"], grads["W"], grads["b"], hess):
            assert np.all(np.isfinite(arr)) and arr.dtype == dtype
        assert np.isfinite(grads["eps"])
        trop = MaxPlus.limit_of(layer)                            # f = max + ε log(#ties) up to e^{-gap/ε}
        np.testing.assert_allclose(f, trop(xx) + eps * np.log(trop.ties(xx)), rtol=1e-6, atol=1e-9)
    with pytest.raises(ValueError, match="overflow"):
        DenseLSE(W * 1e200, b, 0.1)(big * 1e200)


def test_float32_matches_float64(rng):
    layer, x = _random(rng)
    l32 = DenseLSE(layer.W.astype(np.float32), layer.b.astype(np.float32), layer.eps)
    f32 = l32(x.astype(np.float32))
    assert f32.dtype == np.float32 and l32.gradient(x.astype(np.float32)).dtype == np.float32
    np.testing.assert_allclose(f32, layer(x), rtol=1e-5, atol=1e-5)
    assert l32(x).dtype == np.float64                      # float64 input computes in float64


@pytest.mark.parametrize("eps, exc", [(0, ValueError), (-0.1, ValueError), (np.nan, ValueError),
                                      (np.inf, ValueError), ("0.1", TypeError), (True, TypeError)])
def test_bad_temperature(eps, exc, rng):
    with pytest.raises(exc, match="eps"):
        DenseLSE(rng.normal(size=(3, 2)), np.zeros(3), eps)
    with pytest.raises(exc, match="eps"):
        hopf_cole_solution(np.zeros((1, 2)), 1.0, np.zeros((3, 2)), np.zeros(3), eps)


def test_bad_shapes_and_values(rng):
    W, b = rng.normal(size=(3, 2)), rng.normal(size=3)
    layer = DenseLSE(W, b, 0.5)
    cases = [(lambda: DenseLSE(W[0], b, 0.5), ValueError, "W must have shape"),
             (lambda: DenseLSE(W, b[:2], 0.5), ValueError, "one offset per row"),
             (lambda: DenseLSE(W + 1j, b, 0.5), TypeError, "real"),
             (lambda: DenseLSE(np.where(W > 0, np.nan, W), b, 0.5), ValueError, "NaN"),
             (lambda: layer(np.zeros((4, 3))), ValueError, r"\(batch, 2\)"),
             (lambda: layer(np.zeros(2)), ValueError, "x must have shape"),
             (lambda: layer(np.array([[0.0, np.nan]])), ValueError, "NaN"),
             (lambda: layer.vjp(np.zeros((4, 2)), np.ones(3)), ValueError, "grad_out"),
             (lambda: layer.jvp(np.zeros((4, 2)), dW=np.ones((2, 2))), ValueError, "dW"),
             (lambda: DenseLSE.from_anchors(W, b, 0.0, 0.5), ValueError, "t must be"),
             (lambda: DenseLSE.from_anchors(W, b[:2], 1.0, 0.5), ValueError, "one value per anchor"),
             (lambda: hopf_lax(np.zeros((1, 3)), 1.0, W, b), ValueError, "dimension"),
             (lambda: heat_offset(1.0, 0.1, 0), ValueError, "dimension"),
             (lambda: loss_and_grad({"W": W, "b": b}, np.zeros((2, 2)), np.zeros(2)), ValueError, "eps"),
             (lambda: loss_and_grad({"W": W, "b": b, "eps": 0.1}, np.zeros((2, 2)), np.zeros(3)), ValueError,
              "target")]
    for call, exc, msg in cases:
        with pytest.raises(exc, match=msg):
            call()


# -- training ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("temp", ["eps", "log_eps"])
def test_loss_and_grad_by_finite_differences(temp, rng):
    params = {"W": rng.normal(size=(4, 2)), "b": rng.normal(size=4),
              temp: np.asarray(0.5 if temp == "eps" else np.log(0.5))}
    x, target = rng.normal(size=(10, 2)), rng.normal(size=10)
    loss, grads = loss_and_grad(params, x, target)
    assert set(grads) == set(params)
    for k in params:
        fd = _fd(lambda v: loss_and_grad({**params, k: v}, x, target)[0], params[k])
        assert np.max(np.abs(grads[k] - fd)) < 1e-7, k
    assert layer_from_params(params).eps == pytest.approx(0.5, rel=1e-15)


def test_training_recovers_a_teacher(rng):
    from npdegen.optim import Adam
    y, g = rng.normal(size=(5, 2)), rng.normal(size=5)
    teacher = DenseLSE.from_anchors(y, g, 0.5, 0.2)
    x = rng.normal(size=(200, 2))
    target = teacher(x)
    start = DenseLSE(teacher.W + 0.3 * rng.normal(size=teacher.W.shape), teacher.b + 0.3, 0.5)
    params = {"W": start.W, "b": start.b, "log_eps": np.asarray(np.log(start.eps))}
    opt, first = Adam(lr=2e-2), loss_and_grad(params, x, target)[0]
    for _ in range(200):
        loss, grads = loss_and_grad(params, x, target)
        params = opt.update(params, grads, list(params))
    assert loss < 0.1 * first
    fitted, res = fit_lbfgs(start, x, target, maxiter=60)
    assert np.mean((fitted(x) - target) ** 2) < 1e-3 * np.mean((start(x) - target) ** 2)
    assert res.nit <= 60 and abs(fitted.eps - 0.2) < 0.03


def test_example_writes_the_entropy_plot(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "sweep.png"
    monkeypatch.setenv("NPDEGEN_EXAMPLE_PLOT", str(out))
    monkeypatch.setenv("NPDEGEN_EXAMPLE_STEPS", "10")
    runpy.run_path(str(ROOT / "examples" / "lse_hamilton_jacobi.py"), run_name="__main__")
    text = capsys.readouterr().out
    assert "identity" in text and "entropy" in text
    assert out.stat().st_size > 5_000
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
