"""The pieces of the coarse-to-fine L-BFGS (issue 12): interpolation and restriction, the level
hierarchy and budgets, the packing of theta (round trip, adjoint, bounds) and the Gauss–Newton
diagonal scaling against a Jacobian by finite differences."""
import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from npdegen import NeuralPDE
from npdegen import train as npdegen_train
from npdegen.runtime.lbfgs import Flat, gauss_newton_scale
from npdegen.runtime.multilevel import budgets, hierarchy, interpolation, knots, restriction

q = sp.Symbol("q")
z = sp.Function("z")(q)
U, D, R = sp.symbols("U D R")


def adr(n, layers, family="heterogeneous", boundary="periodic"):
    return NeuralPDE(z + R * z - U * z.diff(q) + D * z.diff(q, 2), z, params={U: family, D: family, R: family}).compile(
        n=n, layers=layers, omega=0.8, boundary=boundary)


# ---------------------------------------------------------------------------- interpolation
@settings(derandomize=True, max_examples=40, deadline=None)
@given(n=st.integers(2, 70), level=st.integers(0, 7), periodic=st.booleans())
def test_interpolation_is_a_convex_partition_of_unity_and_nested(n, level, periodic):
    m = knots(n, level, periodic)
    P = interpolation(n, m, periodic)
    if P is None:                                                 # full resolution: the identity
        assert m == n
        return
    assert P.shape == (n, m) and np.all(P >= 0)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=0, atol=1e-15)
    assert np.all((P > 0).sum(axis=1) <= 2)                       # hat functions: two neighbours at most
    R = restriction(n, m, periodic)
    np.testing.assert_allclose(R @ P, np.eye(m), atol=1e-12)       # a left inverse: P c restricts back to c
    # the next level's space contains this one (its knots include these): P = P_fine (R_fine P)
    fine = knots(n, level + 1, periodic)
    Pf = interpolation(n, fine, periodic)
    if Pf is not None:
        np.testing.assert_allclose(Pf @ (restriction(n, fine, periodic) @ P), P, atol=1e-12)


def test_interpolation_by_hand():
    P = interpolation(8, 4, True)                 # knots at 0, 2, 4, 6; site 7 halfway between 6 and 0
    expected = np.zeros((8, 4))
    for i in range(8):
        k, f = divmod(i, 2)
        expected[i, k] += 1 - f / 2
        expected[i, (k + 1) % 4] += f / 2
    np.testing.assert_array_equal(P, expected)
    P = interpolation(5, 3, False)                # knots at 0, 2, 4: linear functions are exact
    np.testing.assert_allclose(P @ np.array([1.0, 3.0, 5.0]), [1, 2, 3, 4, 5])
    assert interpolation(6, 6, True) is None and restriction(6, 6, False) is None
    np.testing.assert_array_equal(interpolation(5, 1, False), np.ones((5, 1)))
    with pytest.raises(ValueError, match="1 <= m <= n"):
        interpolation(4, 5, True)


def test_hierarchy_and_budgets():
    shapes = {"D": (32,), "K": (8, 32), "c": ()}
    periodic = {"D": (True,), "K": (False, True), "c": ()}
    plan = hierarchy(shapes, periodic)
    assert [lv["D"] for lv in plan] == [(1,), (2,), (4,), (8,), (16,), (32,)]
    assert [lv["K"] for lv in plan] == [(1, 1), (2, 2), (3, 4), (5, 8), (8, 16), (8, 32)]   # layers: 2^(j-1)+1
    assert all(lv["c"] == () for lv in plan)
    loose = hierarchy({"D": (32,), "W": (3, 5)}, {"D": (True,), "W": None})     # W: not on the grid
    assert [lv["W"] for lv in loose] == [(3, 5)] * 6
    tied = hierarchy(shapes, periodic, tied=["D", "K"])
    assert len(tied) == 1 and tied[0] == {"D": (1,), "K": (1, 1), "c": ()}
    share = budgets(500, [3 * 2 ** j for j in range(9)])
    assert sum(share) == 500 and all(a <= b for a, b in zip(share, share[1:])) and share[0] >= 25
    assert budgets(7, [1, 4, 16]) == [1, 2, 4] and sum(budgets(0, [1, 2])) == 0


# ---------------------------------------------------------------------------- packing
@pytest.mark.parametrize("boundary", ["periodic", "neumann"])
def test_flat_round_trip_adjoint_and_bounds(boundary):
    n, L = 24, 3
    net = adr(n, L, "time-dependent", boundary)
    rng = np.random.default_rng(0)
    theta = {k: 0.3 + 0.05 * rng.uniform(-1, 1, (L, n)) for k in "UDR"}      # D inside the bounds below
    axes = (False, boundary == "periodic")
    flat = Flat(net, theta, ["U", "D", "R"], knots={"U": (2, 6), "D": (3, 6), "R": (1, 1)},
                periodic={k: axes for k in "UDR"})
    flat.scale = rng.uniform(0.5, 2.0, flat.start.size)
    assert flat.start.size == 12 + 18 + 1
    back = flat.unpack(flat.pack())                       # base + P c reproduces the start
    for k in theta:
        np.testing.assert_allclose(back[k], theta[k], rtol=0, atol=1e-14)
    # gradient() is the adjoint of the linear part of unpack(): <g, θ(v) − θ(0)> = <gradient(g), v>
    v = rng.standard_normal(flat.start.size)
    g = {k: rng.standard_normal((L, n)) for k in theta}
    t1, t0 = flat.unpack(v), flat.unpack(np.zeros_like(v))
    lhs = sum(float(np.sum(g[k] * (t1[k] - t0[k]))) for k in theta)
    assert lhs == pytest.approx(float(flat.gradient(g) @ v), rel=1e-12)
    # any point of the box keeps every site inside the bounds, despite the fine detail in base,
    # and the box holds the start
    box = np.array(flat.bounds({"D": (0.25, 0.35)}), dtype=float)
    start = flat.pack()
    assert np.all(np.nan_to_num(box[:, 0], nan=-np.inf) <= start) and np.all(start <= np.nan_to_num(box[:, 1], nan=np.inf))
    lo, hi = np.nan_to_num(box[:, 0], nan=-5.0), np.nan_to_num(box[:, 1], nan=5.0)
    for corner in (lo, hi, rng.uniform(lo, hi)):
        d = flat.unpack(corner)["D"]
        assert np.all(d >= 0.25 - 1e-12) and np.all(d <= 0.35 + 1e-12)
    # tied: the homogeneous restriction (the mean, broadcast; no fine detail kept)
    tied = Flat(net, theta, ["D"], tied=["D"])
    assert tied.start == pytest.approx([np.mean(theta["D"])]) and np.all(tied.unpack(tied.pack())["D"] == tied.start[0])


# ---------------------------------------------------------------------------- Gauss–Newton scaling
def _jacobian(net, x, theta, keys, eps=1e-6):
    cols = []
    for k in keys:
        for i in range(np.size(theta[k])):
            plus = {**theta, k: theta[k].copy()}
            minus = {**theta, k: theta[k].copy()}
            plus[k].flat[i] += eps
            minus[k].flat[i] -= eps
            cols.append(((net.forward(x, plus) - net.forward(x, minus)) / (2 * eps)).ravel())
    return np.array(cols).T


def test_gauss_newton_scale_matches_the_jacobian():
    n, L = 8, 3
    net = adr(n, L)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, n))
    truth = {"U": 0.2 * rng.standard_normal(n), "D": 0.3 + 0.05 * rng.standard_normal(n), "R": 0.05 * rng.standard_normal(n)}
    y = net.forward(x, truth)
    theta = {"U": np.zeros(n), "D": np.full(n, 0.3), "R": np.zeros(n)}
    keys = ["U", "D", "R"]
    J = _jacobian(net, x, theta, keys)
    r = (net.forward(x, theta) - y).ravel()
    flat = Flat(net, theta, keys, knots={k: (4,) for k in keys}, periodic={k: (True,) for k in keys})
    P = np.kron(np.eye(3), interpolation(n, 4, True))
    diag = np.sum((J @ P) ** 2, axis=0)
    exact = np.concatenate([np.linalg.norm(r) / np.sqrt(d + 0.1 * d.mean()) for d in np.split(diag, 3)])
    scale = gauss_newton_scale(flat, x, y, theta, "sum", probes=4000, seed=0)
    np.testing.assert_allclose(scale, exact, rtol=0.05)            # Hutchinson: ~1.5 % per entry at 4000 probes
    # the same scale for the mean loss and, with one sample, the relative loss (W and rho change together)
    few = gauss_newton_scale(Flat(net, theta, keys), x, y, theta, "sum", probes=3, seed=5)
    mean = gauss_newton_scale(Flat(net, theta, keys), x, y, theta, "mean", probes=3, seed=5)
    np.testing.assert_allclose(mean, few, rtol=1e-12)
    one = gauss_newton_scale(Flat(net, theta, keys), x[:1], y[:1], theta, "sum", probes=3, seed=5)
    rel = gauss_newton_scale(Flat(net, theta, keys), x[:1], y[:1], theta, "relative", probes=3, seed=5)
    np.testing.assert_allclose(rel, one, rtol=1e-12)


def test_coarse_to_fine_on_a_2d_grid_with_a_time_dependent_parameter():
    """Axes refine by their own rule: periodic x 1, 2, 4, 8, 12; Neumann y 1, 2, 3, 5, 8; the layer
    axis of the time-dependent family 1, 2, 3, 4 (a continuation in depth)."""
    x, y = sp.symbols("x y")
    f = sp.Function("z")(x, y)
    nu, c = sp.symbols("nu c")
    layer = NeuralPDE(f + nu * (f.diff(x, 2) + f.diff(y, 2)) - c * f.diff(x), f,
                      params={nu: "heterogeneous", c: "time-dependent"})
    net = layer.compile(n=(12, 8), layers=4, omega=0.8, boundary=("periodic", "neumann"))
    gx, gy = np.meshgrid((np.arange(12) + 0.5) / 12, (np.arange(8) + 0.5) / 8, indexing="ij")
    truth = {"nu": 0.15 + 0.05 * np.sin(2 * np.pi * gx) * np.cos(np.pi * gy),
             "c": 0.1 + 0.05 * np.linspace(0, 1, 4)[:, None, None] + 0 * gx}
    X = np.random.default_rng(0).standard_normal((8, 12, 8))
    Y = net.forward(X, truth)
    start = {"nu": np.full((12, 8), 0.1), "c": np.zeros((4, 12, 8))}
    theta, hist = npdegen_train(net, X, Y, start, steps=150, optimizer="lbfgs", progress=False,
                                bounds={"nu": (0, None)})
    assert [lv["knots"]["nu"] for lv in hist.info["levels"]] == [[1, 1], [2, 2], [4, 3], [8, 5], [12, 8]]
    assert [lv["knots"]["c"] for lv in hist.info["levels"]] == [[1, 1, 1], [2, 2, 2], [3, 4, 3], [4, 8, 5], [4, 12, 8]]
    assert hist.final_loss < 1e-5 * hist.loss[0]
    assert np.abs(theta["nu"] - truth["nu"]).max() < 1e-2 * truth["nu"].max()    # c: not identifiable per site
