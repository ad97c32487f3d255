"""Attractors and depth (issue 5): Newton's z* = f(W z* − b) against fixed-point iteration of the
compiled network, the linear Green's-function steady state, clean failures, the loss profile."""
import numpy as np
import pytest
import sympy as sp

from npdegen import NeuralPDE, train
from npdegen.inspect import FixedPointError, fixed_point, green_steady_state, loss_profile

N = 32


def _layer(activation, bias="heterogeneous", transform=None):
    q = sp.Symbol("q")
    z = sp.Function("z")(q)
    U, D, R = sp.symbols("U D R")
    expr = transform(z, q, U, D, R) if transform else z + R * z - U * z.diff(q) + D * z.diff(q, 2)
    params = {s: "homogeneous" for s in (U, D, R) if expr.has(s)}
    return NeuralPDE(expr, z, activation=activation, bias=bias, params=params)


B = 0.4 * np.sin(2 * np.pi * np.arange(N) / N) + 0.1


@pytest.mark.parametrize("activation, omega", [("tanh", 0.8), ("sigmoid", 1.0), ("softplus", 0.5)])
def test_newton_matches_fixed_point_iteration(activation, omega):
    """Where the relaxation layers converge (iterate the generated kernel for many layers),
    Newton finds the same z*, in a handful of iterations."""
    layer = _layer(activation)
    params = {"U": 0.2, "D": 0.3, "R": -0.4, "b": B}
    net = layer.compile(n=N, layers=400, omega=omega)
    theta = net.init_params(scale=0.0, values={"U": 0.2, "D": 0.3, "R": -0.4})
    theta["b"] = B
    traj = net.forward(np.zeros(N), theta, trajectory=True)
    assert np.max(np.abs(traj[-1] - traj[-2])) < 1e-12            # the iteration converged
    fp = fixed_point(net, theta)
    assert fp.converged and fp.iterations <= 10 and fp.residual < 1e-10
    np.testing.assert_allclose(fp.z, traj[-1], atol=1e-10)
    assert fp.attracting(omega)
    np.testing.assert_allclose(fixed_point(layer, params, n=N).z, fp.z, atol=1e-12)


def test_linear_layer_is_the_greens_function():
    layer = _layer("identity")
    params = {"U": 0.3, "D": 0.2, "R": -0.3, "b": B}
    z, G = green_steady_state(layer, params, n=N, return_green=True)
    fp = fixed_point(layer, params, n=N)
    np.testing.assert_allclose(fp.z, z, atol=1e-12)
    assert fp.iterations == 1                                     # Newton is exact for f = id
    A, C, Bw = 0.3 / 2 + 0.2, 1 - 0.3 - 2 * 0.2, -0.3 / 2 + 0.2      # w_{-1}, w_0, w_{+1}
    I = np.eye(N)
    W = A * np.roll(I, -1, axis=1) + C * I + Bw * np.roll(I, 1, axis=1)
    np.testing.assert_allclose(z, W @ z - B, atol=1e-12)          # z* = W z* − b
    np.testing.assert_allclose(G @ (np.eye(N) - W), np.eye(N), atol=1e-10)


def test_no_fixed_point_is_reported_cleanly():
    # W = I, f = id, b ≠ 0: z = z − b has no solution
    ident = _layer("identity", transform=lambda z, q, U, D, R: z + R * z)
    with pytest.raises(FixedPointError, match="singular"):
        fixed_point(ident, {"R": 0.0, "b": np.ones(N)}, n=N)
    with pytest.raises(FixedPointError, match="singular"):
        green_steady_state(ident, {"R": 0.0, "b": np.ones(N)}, n=N)
    # f(x) = x², z = (z + 1)² has no real solution
    square = _layer("square", bias="homogeneous", transform=lambda z, q, U, D, R: z + R * z)
    with pytest.raises(FixedPointError, match="no fixed point"):
        fixed_point(square, {"R": 0.0, "b": -1.0}, n=8, z0=np.full(8, 0.3))
    out = fixed_point(square, {"R": 0.0, "b": -1.0}, n=8, z0=np.full(8, 0.3), raise_on_failure=False)
    assert not out.converged and out.residual > 0.1
    # and where one exists, z = (z − 1)² gives z* = (3 − √5)/2
    ok = fixed_point(square, {"R": 0.0, "b": 1.0}, n=8)
    np.testing.assert_allclose(ok.z, (3 - np.sqrt(5)) / 2, atol=1e-12)


def test_unstable_fixed_point_is_not_attracting():
    layer = _layer("identity")
    fp = fixed_point(layer, {"U": 0.0, "D": 0.1, "R": 0.3, "b": B}, n=N)   # W has eigenvalues > 1
    assert fp.converged and not fp.attracting(0.5)


def test_loss_profile_of_a_trained_network():
    layer = _layer("tanh", bias=None)
    net = layer.compile(n=N, layers=6, omega=0.8)
    x = np.sin(2 * np.pi * np.outer(np.arange(1, 5), np.arange(N) / N))
    y = net.forward(x, net.init_params(scale=0.0, values={"U": 0.3, "D": 0.2, "R": -0.05}))
    theta, history = train(net, x, y, net.init_params(seed=1, scale=0.05), steps=30, lr=0.02)
    prof = loss_profile(net, x, y, theta)
    np.testing.assert_allclose(prof.losses, history.layer_loss)
    np.testing.assert_allclose(loss_profile(history).losses, prof.losses)
    assert prof.reduction[0] == 0 and prof.reduction.max() == pytest.approx(1)
    assert 0 <= prof.depth(0.5) <= prof.depth(0.95) <= 6
    assert "95% of the loss reduction" in str(prof)
    assert loss_profile([4.0, 2.0, 1.0, 1.0]).depth(0.95) == 2
    with pytest.raises(ValueError, match="finite"):
        loss_profile([1.0, np.nan])
    with pytest.raises(ValueError, match="needs x"):
        loss_profile(net)


def test_bad_input():
    layer = _layer("tanh")
    with pytest.raises(ValueError, match="give the number of sites"):
        fixed_point(layer, {"U": 0.1, "D": 0.1, "R": 0.0})
    with pytest.raises(ValueError, match="boundary"):
        fixed_point(layer, {"U": 0.1, "D": 0.1, "R": 0.0}, n=8, boundary="mirror")
    with pytest.raises(ValueError, match="layer_index"):
        fixed_point(layer, {"U": np.zeros((3, 8)), "D": 0.1, "R": 0.0})
