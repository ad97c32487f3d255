"""The tape API (issue 12, item 3): forward(keep=True) then backward equals vjp, with one forward."""
import numpy as np
import pytest
import sympy as sp

import npdegen

q, x, y = sp.symbols("q x y")


def _layers():
    z = sp.Function("z")(q)
    U, D, R = sp.symbols("U D R")
    yield "adr-1d", npdegen.NeuralPDE(z + R * z - U * z.diff(q) + D * z.diff(q, 2), z, activation="tanh",
                                      params={U: "heterogeneous", D: "homogeneous", R: "time-dependent"}, bias="homogeneous"), 16
    f = sp.Function("z")(x, y)
    nu = sp.Symbol("nu")
    yield "burgers-2d", npdegen.NeuralPDE(f + nu * f.diff(y, 2) - f * f.diff(x) / 10, f, params={nu: "heterogeneous"}), (6, 5)


@pytest.mark.parametrize("checkpoint", [None, 2])
@pytest.mark.parametrize("name, layer, n", list(_layers()), ids=lambda v: v if isinstance(v, str) else "")
def test_backward_of_a_tape_equals_vjp_and_runs_no_forward(name, layer, n, checkpoint, monkeypatch):
    net = layer.compile(n=n, layers=5, omega=0.7, checkpoint=checkpoint)
    theta = net.init_params(seed=1, scale=0.1, values={k: 0.1 for k in ("D", "nu") if k in net.shapes})
    rng = np.random.default_rng(0)
    grid = (n,) if isinstance(n, int) else n
    x0, ct = rng.standard_normal((2, 3, *grid))
    dx_ref, g_ref = net.vjp(x0, theta, ct)
    tape = net.forward(x0, theta, keep=True)
    np.testing.assert_array_equal(tape.output, net.forward(x0, theta))
    net.forward(x0 + 1, theta)                     # other calls do not disturb the tape
    calls = []
    real = net.kernel.forward
    monkeypatch.setattr(net.kernel, "forward", lambda *a, **k: calls.append(1) or real(*a, **k))
    dx, grads = net.backward(tape, ct)
    # a checkpointed tape recomputes all but its last segment: L/k - 1 segment forwards
    assert len(calls) == (0 if checkpoint is None else -(-5 // checkpoint) - 1)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-13, atol=1e-14)
    for k in g_ref:
        np.testing.assert_allclose(grads[k], g_ref[k], rtol=1e-13, atol=1e-14)
    if checkpoint is None:
        dx2, _ = net.backward(tape, ct)           # a plain tape can be replayed
        np.testing.assert_array_equal(dx2, dx)
    else:
        with pytest.raises(ValueError, match="already used"):
            net.backward(tape, ct)


def test_tape_errors():
    z = sp.Function("z")(q)
    net = npdegen.NeuralPDE(z + z.diff(q, 2) / 10, z).compile(n=8, layers=2)
    other = npdegen.NeuralPDE(z + z.diff(q, 2) / 10, z).compile(n=8, layers=2)
    tape = net.forward(np.ones(8), {}, keep=True)
    with pytest.raises(ValueError, match="made by this network"):
        other.backward(tape, np.ones(8))
    with pytest.raises(ValueError, match="cotangent has shape"):
        net.backward(tape, np.ones((2, 8)))
    with pytest.raises(ValueError, match="keep=True returns a tape"):
        net.forward(np.ones(8), {}, trajectory=True, keep=True)
