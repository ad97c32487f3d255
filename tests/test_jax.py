"""JAX wrapper (issue 12, item 2): npdegen.jax.neural_pde."""
import numpy as np
import pytest
import sympy as sp

jax = pytest.importorskip("jax", reason="JAX is not installed (pip install npdegen[jax])")
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402

import npdegen  # noqa: E402
from npdegen.jax import neural_pde  # noqa: E402

q, X, Y = sp.symbols("q x y")
z = sp.Function("z")(q)
U, D, R, nu = sp.symbols("U D R nu")


def _adr():
    return npdegen.NeuralPDE(z + R * z - U * z.diff(q) + D * z.diff(q, 2), z, activation="tanh",
                             params={U: "heterogeneous", D: "homogeneous", R: "time-dependent"}, bias="homogeneous")


def _data(apply, batch=3, seed=0):
    rng = np.random.default_rng(seed)
    grid = apply.net.grid
    return rng.standard_normal((batch, *grid)), rng.standard_normal((batch, *grid))


def _check_against_loss_and_grad(apply, theta, x, y, jit):
    def loss(theta, x):
        return 0.5 * jnp.sum((apply(theta, x) - y) ** 2)

    fn = jax.value_and_grad(loss, argnums=(0, 1))
    value, (g, gx) = (jax.jit(fn) if jit else fn)(theta, x)
    ref_loss, ref = apply.net.loss_and_grad(x, y, {k: np.asarray(v) for k, v in theta.items()}, input_grad=True)
    assert abs(float(value) - ref_loss) <= 1e-12 * max(1.0, ref_loss)
    for k, a in [*g.items(), ("x", gx)]:
        np.testing.assert_allclose(np.asarray(a), ref[k], rtol=1e-12, atol=1e-12 * float(np.abs(ref[k]).max() + 1))


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("boundary", ["periodic", "neumann"])
def test_grad_equals_loss_and_grad(boundary, jit):
    apply = neural_pde(_adr(), n=12, layers=4, omega=0.7, boundary=boundary)
    theta = apply.init_params(seed=1, scale=0.1, values={"D": 0.2})
    x, y = _data(apply)
    _check_against_loss_and_grad(apply, theta, x, y, jit)
    assert apply.stats == {"tape": 1, "recomputed": 0}    # the backward used the kept tape
    assert len(apply.store) == 0


def test_nd_nonlinear_jit_and_forward():
    f = sp.Function("z")(X, Y)
    layer = npdegen.NeuralPDE(f + nu * (f.diff(X, 2) + f.diff(Y, 2)) - f * f.diff(X) / 4, f, params={nu: "heterogeneous"})
    apply = neural_pde(layer, n=(5, 4), layers=3, omega=0.8)
    theta = apply.init_params(seed=0, scale=0.02, values={"nu": 0.1})
    x, y = _data(apply, 2)
    np.testing.assert_array_equal(np.asarray(jax.jit(apply)(theta, x)),
                                  apply.net.forward(x, {k: np.asarray(v) for k, v in theta.items()}))
    _check_against_loss_and_grad(apply, theta, x, y, jit=True)


def test_fallback_recomputes_and_the_store_is_bounded():
    apply = neural_pde(_adr(), n=8, layers=3, omega=0.7, max_tapes=2)
    theta = apply.init_params(seed=1, scale=0.1, values={"D": 0.2})
    x, y = _data(apply)
    pullbacks = [jax.vjp(apply, theta, x)[1] for _ in range(4)]   # four forwards, no backward yet
    assert len(apply.store) == 2
    ct = jnp.asarray(y)
    results = [pb(ct) for pb in pullbacks]
    assert apply.stats == {"tape": 2, "recomputed": 2}
    for grads, dx in results[1:]:                     # evicted tapes recompute: the same numbers
        np.testing.assert_array_equal(np.asarray(dx), np.asarray(results[0][1]))
        for k in grads:
            np.testing.assert_array_equal(np.asarray(grads[k]), np.asarray(results[0][0][k]))


def test_vmap_and_errors():
    apply = neural_pde(_adr(), n=8, layers=2, omega=0.7)
    theta = apply.init_params(seed=1)
    x, _ = _data(apply, 4)
    np.testing.assert_allclose(np.asarray(jax.vmap(lambda v: apply(theta, v))(x)), np.asarray(apply(theta, x)),
                               rtol=1e-15, atol=1e-15)
    with pytest.raises(TypeError, match="float32.*float64"):
        apply(theta, x.astype(np.float32))
    with pytest.raises(ValueError, match="keys"):
        apply({"U": theta["U"]}, x)
    with pytest.raises(ValueError, match=r"shape \(batch, 8\)"):
        apply(theta, np.zeros((2, 7)))


def test_float64_needs_x64():
    apply = neural_pde(_adr(), n=8, layers=2, omega=0.7)
    theta = apply.init_params(seed=1)
    x, _ = _data(apply, 2)
    jax.config.update("jax_enable_x64", False)
    try:
        with pytest.raises(TypeError, match="jax_enable_x64"):
            apply(theta, x)
    finally:
        jax.config.update("jax_enable_x64", True)
