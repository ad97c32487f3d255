"""The step NumPy kernels run layer by layer in cache-sized blocks: every blocking gives the
one-block results (slabs of grid rows, several samples per block, uneven remainders)."""
import numpy as np
import pytest
import sympy as sp

import npdegen

x, y, w = sp.symbols("x y w")
A, B, rho, X = sp.symbols("A B rho X")


def _layers():
    z = sp.Function("z")(x, y)
    yield "2d-linear", npdegen.NeuralPDE(z + A * z.diff(x) + B * (z.diff(x, 2) + z.diff(y, 2)) + B * z.diff(x, y), z,
                                         activation="tanh", params={A: "heterogeneous", B: "time-dependent"},
                                         bias="heterogeneous"), (7, 5), ("periodic", "neumann")
    yield "2d-nonlinear", npdegen.NeuralPDE(z - A * z * z.diff(x) + B * z.diff(y, 2) + sp.cos(A * z) / 10, z,
                                            activation=rho * sp.tanh(X), params={A: "heterogeneous", B: "homogeneous",
                                                                                 rho: "heterogeneous"}), (6, 5), ("dirichlet", "periodic")
    z3 = sp.Function("z")(x, y, w)
    yield "3d", npdegen.NeuralPDE(z3 + A * z3.diff(w, 2) - z3 * z3.diff(x) / 10, z3, params={A: "homogeneous"},
                                  bias="time-dependent"), (5, 4, 3), ("neumann", "dirichlet", "periodic")


@pytest.mark.parametrize("name, layer, n, boundary", list(_layers()), ids=lambda v: v if isinstance(v, str) else "")
def test_every_blocking_gives_the_same_results(name, layer, n, boundary):
    net = layer.compile(n=n, layers=3, omega=0.7, boundary=boundary, alpha=0.05, train_omega=True)
    theta = net.init_params(seed=2, scale=0.1, values={k: 0.1 for k in ("A", "B", "rho") if k in net.shapes})
    rng = np.random.default_rng(3)
    x0, y0 = rng.standard_normal((2, 5, *n))
    size = int(np.prod(n))
    results = []
    for elems in (None, 1, size - 1, size * 2, size * 3 + 1):   # default; slabs of one grid row; ...
        net.kernel.BLOCK_ELEMS = elems or (1 << 16)
        net._work.clear()
        loss, grads = net.loss_and_grad(x0, y0, theta, input_grad=True)
        step = net.step(x0, theta, 1)
        dz, sgrads = net.step_vjp(x0, theta, y0, 2)
        results.append((loss, grads, step, dz, sgrads))
        blocks = net._workspace(5)["blocks"]
        if elems == 1:
            assert len(blocks) == n[0] and all(b.a1 - b.a0 == 1 for b in blocks)
        if elems == size * 3 + 1:
            assert [b.b1 - b.b0 for b in blocks] == [3, 2]
    net.kernel.BLOCK_ELEMS = 1 << 16
    ref = results[0]
    for loss, grads, step, dz, sgrads in results[1:]:
        assert loss == pytest.approx(ref[0], rel=1e-12)
        for k in ref[1]:
            np.testing.assert_allclose(grads[k], ref[1][k], rtol=1e-11, atol=1e-13)
        np.testing.assert_allclose(step, ref[2], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(dz, ref[3], rtol=1e-11, atol=1e-13)
        for k in ref[4]:
            np.testing.assert_allclose(sgrads[k], ref[4][k], rtol=1e-11, atol=1e-13)
