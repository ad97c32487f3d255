"""The vectorisable float64 tanh of the numba kernels (npdegen.codegen.vector_math)."""
import math

import numpy as np
import pytest
import sympy as sp

from npdegen.codegen.vector_math import VTANH_SOURCE, Tanh64, vector_activation

numba = pytest.importorskip("numba")


@pytest.fixture(scope="module")
def vtanh():
    ns = {"numba": numba, "math": math,
          "_JIT": dict(cache=False, nogil=True, error_model="numpy", boundscheck=False, fastmath={"contract"})}
    exec(VTANH_SOURCE, ns)
    fn = ns["_vtanh"]

    @numba.njit
    def apply(xs, out):
        for i in range(xs.size):
            out[i] = fn(xs[i])
    return apply


def test_within_a_few_ulp_of_tanh_everywhere(vtanh):
    rng = np.random.default_rng(0)
    xs = np.concatenate([np.linspace(-25, 25, 100001), np.logspace(-300, 1.3, 20000),
                         -np.logspace(-300, 1.3, 20000), 3 * rng.standard_normal(50000),
                         [0.0, -0.0, 0.625, -0.625, np.nextafter(0.625, 0), 18.7, 19.0, 5e-324]])
    out = np.empty_like(xs)
    vtanh(xs, out)
    ref = np.array([math.tanh(v) for v in xs])
    ulp = np.abs(out - ref) / np.spacing(np.maximum(np.abs(ref), np.finfo(float).tiny))
    assert ulp.max() <= 4, (ulp.max(), xs[np.argmax(ulp)])
    assert np.all(np.sign(out) == np.sign(ref))


def test_special_values(vtanh):
    xs = np.array([np.nan, np.inf, -np.inf, 1e300, -1e300])
    out = np.empty_like(xs)
    vtanh(xs, out)
    assert np.isnan(out[0]) and list(out[1:]) == [1.0, -1.0, 1.0, -1.0]


def test_sympy_side():
    x = sp.Symbol("x", real=True)
    assert vector_activation(sp.tanh(x) + sp.exp(x)) == Tanh64(x) + sp.exp(x)
    assert sp.diff(Tanh64(2 * x), x) == 2 * (1 - Tanh64(2 * x) ** 2)
    assert Tanh64(sp.Integer(0)) == 0


@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
def test_float64_numba_layers_equal_numpy(activation):
    import npdegen
    q = sp.Symbol("q")
    z = sp.Function("z")(q)
    U, D = sp.symbols("U D")
    layer = npdegen.NeuralPDE(z - U * z.diff(q) + D * z.diff(q, 2), z, activation=activation,
                              params={U: "heterogeneous", D: "homogeneous"})
    rng = np.random.default_rng(1)
    x0, y0 = 2 * rng.standard_normal((2, 3, 32))
    results = []
    for backend in ("numpy", "numba"):
        net = layer.compile(n=32, layers=6, omega=0.7, backend=backend)
        assert backend == "numpy" or net.kernel.ACTIVATIONS == "vector"
        theta = net.init_params(seed=0, scale=0.1, values={"D": 0.2})
        results.append(net.loss_and_grad(x0, y0, theta, input_grad=True))
    (l0, g0), (l1, g1) = results
    assert l1 == pytest.approx(l0, rel=1e-13)
    for k in g0:
        np.testing.assert_allclose(g1[k], g0[k], rtol=1e-12, atol=1e-14)
