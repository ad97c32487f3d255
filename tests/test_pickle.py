"""Layers and compiled networks pickle (as their spec and options) and compile again on load:
what a process pool or a Dask worker needs (issue 15, item 1)."""
import pickle

import numpy as np
import pytest
import sympy as sp

import npdegen

q, x, y = sp.symbols("q x y")


def _cases():
    z = sp.Function("z")(q)
    U, D = sp.symbols("U D")
    yield npdegen.NeuralPDE(z - U * z.diff(q) + D * z.diff(q, 2), z, activation="tanh",
                            params={U: "heterogeneous", D: "homogeneous"}, bias="time-dependent"), \
        dict(n=16, layers=3, omega=0.7, boundary="neumann", checkpoint=2)
    f = sp.Function("z")(x, y)
    nu, rho, X = sp.symbols("nu rho X")
    yield npdegen.NeuralPDE(f + nu * f.diff(y, 2) - f * f.diff(x) / 10, f, activation=rho * sp.tanh(X),
                            params={nu: "heterogeneous", rho: "homogeneous"}), \
        dict(n=(6, 5), spacing=(1.0, 0.5), layers=2, boundary=("periodic", "dirichlet"), dtype="float32")


@pytest.mark.parametrize("layer, options", list(_cases()))
def test_network_round_trip(layer, options):
    net = layer.compile(**options)
    theta = net.init_params(seed=1, scale=0.1, values={k: 0.1 for k in ("D", "nu", "rho") if k in net.shapes})
    rng = np.random.default_rng(0)
    x0, y0 = rng.standard_normal((2, 3, *net.grid)).astype(net.dtype)
    again = pickle.loads(pickle.dumps(net))
    assert again is not net and again.kernel is not None and repr(again) == repr(net)
    assert again.checkpoint == net.checkpoint and again.options == net.options
    l0, g0 = net.loss_and_grad(x0, y0, theta)
    l1, g1 = again.loss_and_grad(x0, y0, theta)
    assert l1 == l0
    for k in g0:
        np.testing.assert_array_equal(g1[k], g0[k])
    layer2 = pickle.loads(pickle.dumps(layer))
    assert repr(layer2) == repr(layer) and layer2.step_ir.fingerprint() == layer.step_ir.fingerprint()


def test_a_network_without_recipe_refuses_to_pickle():
    z = sp.Function("z")(q)
    net = npdegen.NeuralPDE(z + z.diff(q, 2) / 10, z).compile(n=8)
    net.recipe = None
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(net)
