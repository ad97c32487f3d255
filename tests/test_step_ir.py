"""The step IR's own pieces: grid boundaries, lowering, name namespaces, linearised kernels, N-D specs."""
import io
import tokenize
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

import npdegen
from npdegen.grid import fill_halo, fold_halo, interior, padded_shape, source
from npdegen.inspect.linearised import linearised_kernel
from npdegen.spec.names import RESERVED

ROOT = Path(__file__).resolve().parent.parent
BOUNDS = [("periodic", "neumann"), ("dirichlet", "periodic"), ("neumann", "neumann"), ("dirichlet", "dirichlet")]


@pytest.mark.parametrize("bounds", BOUNDS)
@pytest.mark.parametrize("halo", [(1, 2), (2, 1), (0, 1)])
def test_fill_is_the_source_rule_and_fold_its_transpose(bounds, halo):
    rng = np.random.default_rng(0)
    grid = (5, 6)
    x = np.zeros((2, *padded_shape(grid, halo)))
    interior(x, halo)[...] = rng.standard_normal((2, *grid))
    filled = x.copy()
    fill_halo(filled, bounds, halo)
    for i in range(x.shape[1]):
        for j in range(x.shape[2]):
            si, sj = source(i - halo[0], grid[0], bounds[0]), source(j - halo[1], grid[1], bounds[1])
            expect = 0.0 if si is None or sj is None else x[0, si + halo[0], sj + halo[1]]
            assert filled[0, i, j] == expect
    y = rng.standard_normal(x.shape)
    folded = y.copy()
    fold_halo(folded, bounds, halo)
    assert np.sum(filled * y) == pytest.approx(np.sum(interior(x, halo) * interior(folded, halo)), rel=1e-13)
    assert not np.any(folded - np.pad(interior(folded, halo), [(0, 0)] + [(h, h) for h in halo]))


def test_lowering_splits_coefficients_from_state_factors():
    q = sp.Symbol("q")
    z = sp.Function("z")(q)
    nu, a = sp.symbols("nu a")
    layer = npdegen.NeuralPDE(z - z * z.diff(q) + nu * z.diff(q, 2) + sp.exp(a * z), z,
                              params={nu: "heterogeneous", a: "homogeneous"})
    low = layer.lowered
    acc = set(layer.step_ir.access_symbols)
    assert all(not (w.free_symbols & acc) for w in low.coefficients)
    assert all(phi.free_symbols <= acc for phi in low.factors)
    assert low.mixed != 0 and low.mixed.has(sp.exp)           # exp(a z) cannot be split
    rules = {r.name: r for r in low.gradients}
    assert len(rules["nu"].terms) == 3                        # the three accesses of z_qq
    assert len(rules["a"].terms) == 1                         # d(exp(a z))/da reduced as a whole
    assert not low.linear and low.state_jacobians and low.accumulate


def _names_in(source: str) -> set:
    out = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.NAME:
            out.add(tok.string)
    return out


def test_parameter_names_cannot_collide_with_generated_names():
    """Sweep every identifier of a rendered step kernel as a parameter name: results never change."""
    x, y = sp.symbols("x y")
    z = sp.Function("z")(x, y)

    def build(name, act_name):
        A, rho, X = sp.Symbol(name), sp.Symbol(act_name), sp.Symbol("X")
        return npdegen.NeuralPDE(z + A * z.diff(x, 2) + A / 10 * z * z.diff(y) + A ** 2 / 2 * z, z,
                                 activation=rho * sp.tanh(X), bias="heterogeneous",
                                 params={A: "heterogeneous", rho: "homogeneous"})
    base = build("A", "rho")
    names = _names_in(base.source(boundary=("periodic", "neumann"), train_omega=True, alpha=0.1))
    candidates = sorted(n for n in names if n not in RESERVED and n not in ("b", "omega", "X")
                        and "__" not in n and not n.endswith("_") and n[0].isalpha())
    assert {"w0", "Q", "sums", "kappa", "grid", "site", "z_0_0", "Delta0", "s", "lam", "coef"} <= set(candidates) | RESERVED
    rng = np.random.default_rng(3)
    x0, y0 = rng.standard_normal((2, 2, 6, 5))

    def run(layer, pname, aname):
        net = layer.compile(n=(6, 5), layers=2, omega=0.7, boundary=("periodic", "neumann"), train_omega=True, alpha=0.1)
        theta = {pname: np.full((6, 5), 0.05), aname: np.array(0.9), "b": np.full((6, 5), 0.01), "omega": np.array(0.7)}
        loss, grads = net.loss_and_grad(x0, y0, theta, input_grad=True)
        return loss, {"A" if k == pname else "rho" if k == aname else k: v for k, v in grads.items()}
    ref_loss, ref = run(base, "A", "rho")
    tried = 0
    for name in candidates:
        if name in ("A", "rho"):
            continue
        loss, grads = run(build(name, "rho" if name != "rho" else "A"), name, "rho" if name != "rho" else "A")
        assert loss == pytest.approx(ref_loss, rel=1e-12), name
        for k in ref:
            np.testing.assert_allclose(grads[k], ref[k], rtol=1e-11, atol=1e-13, err_msg=name)
        tried += 1
    assert tried >= 20


def test_burgers_linearisation_reports_the_state_as_advection_speed():
    q = sp.Symbol("q")
    z = sp.Function("z")(q)
    nu = sp.Symbol("nu")
    dt = sp.Rational(1, 100)
    layer = npdegen.NeuralPDE(z - dt * z * z.diff(q) + dt * nu * z.diff(q, 2), z, params={nu: "homogeneous"})
    u = np.sin(np.linspace(0, 2 * np.pi, 32, endpoint=False)) + 0.5
    kern = linearised_kernel(layer, u, {"nu": 0.3}, spacing=0.1)
    np.testing.assert_allclose(kern.advection[0], 0.01 * u, atol=1e-15)   # speed u per unit time
    np.testing.assert_allclose(kern.diffusion[0], 0.01 * 0.3, rtol=1e-12)
    up, um = np.roll(u, -1), np.roll(u, 1)
    np.testing.assert_allclose(kern.reaction, -0.01 * (up - um) / 0.2, atol=1e-15)   # -dt u_q


def test_linearised_kernel_of_a_linear_layer_is_its_stencil():
    x, y = sp.symbols("x y")
    z = sp.Function("z")(x, y)
    U, D = sp.symbols("U D")
    layer = npdegen.NeuralPDE(z - U * z.diff(x) + D * (z.diff(x, 2) + z.diff(y, 2)), z,
                              params={U: "homogeneous", D: "homogeneous"})
    kern = linearised_kernel(layer, np.zeros((5, 6)), {"U": 0.3, "D": 0.2}, spacing=(0.5, 1.0))
    stencil = layer.stencil((0.5, 1.0))
    for o, w in kern.weights.items():
        np.testing.assert_allclose(w, float(stencil[o].subs({U: 0.3, D: 0.2})), rtol=1e-14)
    np.testing.assert_allclose(kern.advection[0], 0.3, rtol=1e-14)
    np.testing.assert_allclose(kern.diffusion[1], 0.2, rtol=1e-14)


def test_nd_spec_file_and_mixed_derivative_notation():
    layer, options = npdegen.load_spec(ROOT / "examples" / "adr_2d.toml")
    assert layer.dim == 2 and options["boundary"] == ["periodic", "neumann"]
    m = layer.moments(2)
    Dxy, Dxx, U = sp.symbols("Dxy Dxx U")
    assert m[(1, 1)] == 2 * Dxy and m[(2, 0)] == 2 * Dxx and m[(1, 0)] == -U
    net = layer.compile(n=(8, 6), **options)
    theta = net.init_params(seed=0, scale=0.02)
    out = net.forward(np.ones((8, 6)), theta)
    assert out.shape == (8, 6) and out.dtype == np.float32


@pytest.mark.parametrize("bad, match", [
    (dict(n=(8,)), "tuple of 2 integers"),
    (dict(n=(2, 6)), "along axis 0"),
    (dict(n=(8, 6), boundary=("periodic",)), "has 1 entries; the layer has 2"),
    (dict(n=(8, 6), boundary=("periodic", "reflect")), "unknown boundary 'reflect'"),
    (dict(n=(8, 6), spacing=(1.0,)), "tuple of 2 numbers"),
])
def test_bad_nd_compile_options(bad, match):
    x, y = sp.symbols("x y")
    z = sp.Function("z")(x, y)
    D = sp.Symbol("D")
    layer = npdegen.NeuralPDE(z + D * z.diff(x, 2), z, params={D: "heterogeneous"})
    with pytest.raises(ValueError, match=match):
        layer.compile(**bad)


def test_theta_shape_must_match_the_grid():
    x, y = sp.symbols("x y")
    z = sp.Function("z")(x, y)
    D = sp.Symbol("D")
    net = npdegen.NeuralPDE(z + D * z.diff(x, 2), z, params={D: "heterogeneous"}).compile(n=(8, 6))
    with pytest.raises(ValueError, match=r"theta\['D'\] has shape \(6, 8\); a heterogeneous parameter needs \(8, 6\)"):
        net.forward(np.zeros((8, 6)), {"D": np.zeros((6, 8))})
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 8, 6\) or \(8, 6\)"):
        net.forward(np.zeros((6, 8)), {"D": np.zeros((8, 6))})


def test_tensor_operators_give_the_tensor_moments():
    from npdegen import ops
    x, y, w = sp.symbols("x y w")
    z = sp.Function("z")(x, y, w)
    K = sp.Matrix(3, 3, lambda i, j: sp.Symbol(f"K{min(i, j)}{max(i, j)}"))
    u = sp.symbols("u0 u1 u2")
    syms = sorted(K.free_symbols | set(u), key=lambda s: s.name)
    layer = npdegen.NeuralPDE(z - ops.advection(u, z) + ops.diffusion(K, z), z,
                              params={s: "homogeneous" for s in syms})
    m = layer.moments(2)
    for k in range(3):
        e = tuple(int(j == k) for j in range(3))
        assert m[e] == -u[k]
        for l in range(3):
            a = tuple(int(j == k) + int(j == l) for j in range(3))
            assert m[a] == 2 * K[k, l]            # W_{e_k + e_l} = 2 K_kl: D_kl = W/2
    with pytest.raises(ValueError, match="symmetric"):
        ops.diffusion([[1, 2, 0], [0, 1, 0], [0, 0, 1]], z)
    with pytest.raises(ValueError, match="3 components"):
        ops.advection((1, 2), z)


@pytest.mark.parametrize("boundary", [("periodic", "neumann"), ("dirichlet", "periodic"), ("neumann", "dirichlet")])
def test_dense_matrix_of_a_2d_layer_is_its_step(boundary):
    """step_matrix @ z equals the identity-activation, omega = 1 step (linear layer), and the
    Jacobian of a nonlinear layer's step at a state (finite differences)."""
    from npdegen.inspect.matrix import step_matrix
    x, y = sp.symbols("x y")
    z = sp.Function("z")(x, y)
    U, D = sp.symbols("U D")
    rng = np.random.default_rng(4)
    layer = npdegen.NeuralPDE(z - U * z.diff(x) + D * z.diff(x, y) + D * z.diff(y, 2), z,
                              params={U: "heterogeneous", D: "homogeneous"})
    net = layer.compile(n=(5, 6), spacing=(0.5, 1.0), boundary=boundary)
    theta = {"U": rng.uniform(0, 1, (5, 6)), "D": np.array(0.3)}
    W = step_matrix(layer, theta, (5, 6), spacing=(0.5, 1.0), boundary=boundary)
    z0 = rng.standard_normal((5, 6))
    np.testing.assert_allclose(W @ z0.ravel(), net.forward(z0, theta).ravel(), rtol=1e-12, atol=1e-13)
    nonlinear = npdegen.NeuralPDE(z - U * z * z.diff(x) + D * z.diff(y, 2), z, params={U: "heterogeneous", D: "homogeneous"})
    net = nonlinear.compile(n=(5, 6), spacing=(0.5, 1.0), boundary=boundary)
    J = step_matrix(nonlinear, theta, (5, 6), spacing=(0.5, 1.0), boundary=boundary, state=z0)
    e = 1e-6
    for k in rng.choice(30, 5, replace=False):
        dz = np.zeros(30)
        dz[k] = e
        col = (net.forward(z0 + dz.reshape(5, 6), theta) - net.forward(z0 - dz.reshape(5, 6), theta)).ravel() / (2 * e)
        np.testing.assert_allclose(J[:, k], col, rtol=1e-7, atol=1e-8)


def test_a_site_with_only_a_mixed_term_compiles_and_differentiates():
    """G = sin(a z): no coefficient splits off (the lowering's coefficient list is empty)."""
    import numpy as np
    import npdegen
    q = sp.Symbol("q")
    z = sp.Function("z")(q)
    a = sp.Symbol("a")
    layer = npdegen.NeuralPDE(sp.sin(a * z), z, params={a: "homogeneous"})
    assert layer.lowered.coefficients == ()
    x = np.random.default_rng(0).standard_normal((2, 8))
    net = layer.compile(n=8, layers=2)
    loss = lambda v: net.loss_and_grad(x, 0 * x, {"a": np.array(v)})[0]
    _, grads = net.loss_and_grad(x, 0 * x, {"a": np.array(0.5)})
    assert abs(float(grads["a"]) - (loss(0.5 + 1e-6) - loss(0.5 - 1e-6)) / 2e-6) < 1e-7
    expected = x
    for _ in range(2):
        expected = np.sin(0.5 * expected)
    np.testing.assert_allclose(net.forward(x, {"a": np.array(0.5)}), expected, atol=1e-15)
