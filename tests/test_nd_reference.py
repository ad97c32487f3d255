"""2-D and 3-D layers against the independent NumPy reference in tests/reference_nd.py.

Forward passes (float64, 1e-12 relative, absolute floor 1e-12·max|ref|) for every boundary per axis
(all 9 pairs in 2-D, uniform and mixed triples in 3-D), parameters spread over the three families,
every bias family and no bias; gradients by central finite differences (ε = 1e-6, error
``|fd − g| / max(|fd|, |g|, 1e-2) < 1e-6``); dot-product tests of ``step_vjp``:
``|⟨J v, w⟩ − ⟨v, Jᵀ w⟩| ≤ 1e-12 ‖J v‖ ‖w‖`` with ``J v`` from the reference by the complex step
(exact to rounding for analytic layers) or, for linear identity layers, from linearity of the
package's own step; the parameter part against complex-step directional derivatives of the
reference, 1e-12 relative to ``Σ_k |⟨δθ_k, g_k⟩|``. Bad input: clear errors.

Grids are small (6×5, 4×3×5) so the whole file runs in seconds.
"""
import itertools

import numpy as np
import pytest
import sympy as sp

import npdegen
from reference_nd import (BOUNDARIES, FAMILIES, Reference, assert_close, check_network_vjp, check_param_adjoint,
                          check_state_adjoint,
                          derivative_fields, derivative_fields_loop, family_shape, fd_check, inner,
                          normalise_boundaries, numeric_stencil, pad, reference_stencil, source_multi_index,
                          stencil_matrix)

x, y, w = sp.symbols("x y w")
z2 = sp.Function("z")(x, y)
z3 = sp.Function("z")(x, y, w)
U, V, W, R = sp.symbols("U V W R")
Dxx, Dxy, Dyy, Dww, Dxw = sp.symbols("Dxx Dxy Dyy Dww Dxw")

N2, N3 = (6, 5), (4, 3, 5)
SP2, SP3 = (0.8, 0.6), (0.8, 0.6, 0.7)
LAYERS, OMEGA = 3, 0.7
VALUES = {"U": 0.3, "V": -0.2, "W": 0.15, "R": -0.1, "Dxx": 0.1, "Dxy": 0.03, "Dyy": 0.08, "Dww": 0.09,
          "Dxw": -0.02, "b": 0.1}

ADR2 = z2 + R * z2 - U * z2.diff(x) - V * z2.diff(y) + Dxx * z2.diff(x, 2) + 2 * Dxy * z2.diff(x, y) \
    + Dyy * z2.diff(y, 2)
ADR2_SYMS = (U, V, Dxx, Dxy, Dyy, R)
ADR3 = z3 + R * z3 - U * z3.diff(x) - V * z3.diff(y) - W * z3.diff(w) + Dxx * z3.diff(x, 2) \
    + Dyy * z3.diff(y, 2) + Dww * z3.diff(w, 2) + 2 * Dxw * z3.diff(x, w)
ADR3_SYMS = (U, V, W, Dxx, Dyy, Dww, Dxw, R)
BIASES = (None,) + FAMILIES
PAIRS = list(itertools.product(BOUNDARIES, repeat=2))
TRIPLES = [(b,) * 3 for b in BOUNDARIES] + [("periodic", "dirichlet", "neumann"), ("dirichlet", "neumann", "periodic"),
                                           ("neumann", "periodic", "dirichlet")]


def rotated(symbols, shift):
    """Each symbol gets a family, rotated by ``shift`` (so each symbol meets each family)."""
    return {s: FAMILIES[(k + shift) % 3] for k, s in enumerate(symbols)}


def build(transform, field, params, *, bias=None, activation="tanh", boundary="periodic", n=N2, spacing=SP2,
          layers=LAYERS, omega=OMEGA, accuracy=2, seed=0, scale=0.1, values=VALUES, train_omega=False):
    layer = npdegen.NeuralPDE(transform, field, activation=activation, params=params, bias=bias, accuracy=accuracy)
    kw = dict(train_omega=True) if train_omega else {}
    net = layer.compile(n=n, spacing=spacing, layers=layers, omega=omega, boundary=boundary, dtype="float64",
                        backend="numpy", **kw)
    theta = net.init_params(seed=seed, scale=scale, values={k: v for k, v in values.items() if k in params_names(params, bias)})
    for s, fam in params.items():
        assert np.shape(theta[s.name]) == family_shape(fam, n, layers), (s, fam, np.shape(theta[s.name]))
    if bias is not None:
        assert np.shape(theta["b"]) == family_shape(bias, n, layers)
    else:
        assert "b" not in theta
    ref = Reference(transform, field, params, bias=bias, activation=activation, accuracy=accuracy)
    return net, theta, ref


def params_names(params, bias):
    return {s.name for s in params} | ({"b"} if bias is not None else set())


def check_forward(net, theta, ref, x, spacing, boundary, layers=LAYERS, omega=OMEGA, rel=1e-12):
    th = {k: np.asarray(v, np.float64) for k, v in theta.items()}
    traj = ref.forward(x, th, layers, spacing, boundary, omega)
    assert_close(net.forward(x, theta), traj[-1], rel, "forward")
    assert_close(net.forward(x, theta, trajectory=True), traj, rel, "trajectory")
    for t in range(layers):
        assert_close(net.step(traj[t], theta, layer=t), traj[t + 1], rel, f"step {t}")
    return traj


# ---------------------------------------------------------------------------- the reference itself
def test_reference_boundary_index_logic():
    n = (4, 3)
    b = ("neumann", "periodic")
    assert source_multi_index((-1, -1), n, b) == (0, 2)
    assert source_multi_index((-2, 3), n, b) == (1, 0)
    assert source_multi_index((4, 1), n, b) == (3, 1)
    assert source_multi_index((5, 1), n, b) == (2, 1)
    assert source_multi_index((-1, 0), n, ("dirichlet", "neumann")) is None
    assert source_multi_index((0, -1), n, ("dirichlet", "neumann")) == (0, 0)
    assert source_multi_index((-1, -1), n, ("neumann", "dirichlet")) is None
    z = np.arange(12.0).reshape(1, 4, 3)
    zp = pad(z, (2, 1), ("neumann", "periodic"))
    for i in range(-2, 6):
        for j in range(-1, 4):
            assert zp[0, i + 2, j + 1] == z[(0,) + source_multi_index((i, j), (4, 3), ("neumann", "periodic"))]
    zp = pad(z, (1, 2), ("dirichlet", "neumann"))
    assert zp[0, 0, 0] == 0 and zp[0, 1, 0] == z[0, 0, 1] and zp[0, 1, 1] == z[0, 0, 0]


@pytest.mark.parametrize("accuracy", [2, 4])
@pytest.mark.parametrize("boundary", PAIRS[::2] + [("neumann", "dirichlet")])
def test_reference_derivatives_pad_equals_loop_2d(rng, boundary, accuracy):
    alphas = [(0, 0), (1, 0), (0, 1), (2, 0), (1, 1), (0, 2), (2, 1)]
    z = rng.standard_normal((2,) + N2)
    a = derivative_fields(z, alphas, accuracy, SP2, boundary)
    b = derivative_fields_loop(z, alphas, accuracy, SP2, boundary)
    for alpha in alphas:
        np.testing.assert_allclose(a[alpha], b[alpha], rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("boundary", TRIPLES[::2])
def test_reference_derivatives_pad_equals_loop_3d(rng, boundary):
    alphas = [(0, 0, 0), (1, 0, 0), (0, 1, 1), (0, 0, 2), (1, 0, 1)]
    z = rng.standard_normal((1,) + N3)
    a = derivative_fields(z, alphas, 2, SP3, boundary)
    b = derivative_fields_loop(z, alphas, 2, SP3, boundary)
    for alpha in alphas:
        np.testing.assert_allclose(a[alpha], b[alpha], rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("boundary", [("periodic", "neumann"), ("dirichlet", "periodic"), "neumann"])
def test_reference_linear_step_is_the_stencil_matrix(rng, boundary):
    """For a linear homogeneous identity layer the reference's Z is M z with M from the stencil."""
    terms = {(0, 0): 1 + R, (1, 0): -U, (0, 1): -V, (2, 0): Dxx, (1, 1): 2 * Dxy, (0, 2): Dyy}
    params = {s: "homogeneous" for s in ADR2_SYMS}
    ref = Reference(ADR2, z2, params, activation="identity")
    theta = {k: np.float64(v) for k, v in VALUES.items() if k != "b"}
    st = numeric_stencil(reference_stencil(terms, 2, 2, SP2), VALUES)
    M = stencil_matrix(st, N2, normalise_boundaries(boundary, 2))
    z = rng.standard_normal((2,) + N2)
    Z = ref.pre(z, theta, 0, SP2, boundary)
    np.testing.assert_allclose(Z.reshape(2, -1), z.reshape(2, -1) @ M.T, rtol=1e-13, atol=1e-13)
    Zl = ref.pre(z, theta, 0, SP2, boundary, loop=True)
    np.testing.assert_allclose(Zl, Z, rtol=1e-13, atol=1e-13)


# ---------------------------------------------------------------------------- forward, 2-D
@pytest.mark.parametrize("boundary", PAIRS, ids=lambda b: "-".join(b))
def test_forward_2d_every_boundary_pair(rng, boundary):
    """All 9 boundary pairs; the bias family and the parameter families rotate with the case."""
    k = PAIRS.index(boundary)
    bias = BIASES[k % 4]
    net, theta, ref = build(ADR2, z2, rotated(ADR2_SYMS, k), bias=bias, boundary=boundary, seed=k)
    x0 = rng.uniform(-1, 1, (2,) + N2)
    traj = check_forward(net, theta, ref, x0, SP2, boundary)
    assert np.max(np.abs(traj[-1])) > 1e-3


@pytest.mark.parametrize("bias", BIASES, ids=str)
@pytest.mark.parametrize("shift", [0, 1, 2])
def test_forward_2d_families(rng, shift, bias):
    """Every parameter meets every family, with every bias family (mixed boundary)."""
    boundary = ("neumann", "dirichlet")
    net, theta, ref = build(ADR2, z2, rotated(ADR2_SYMS, shift), bias=bias, boundary=boundary, seed=shift)
    check_forward(net, theta, ref, rng.uniform(-1, 1, (2,) + N2), SP2, boundary)


@pytest.mark.parametrize("boundary", list(BOUNDARIES) + [("periodic", "neumann")], ids=str)
def test_forward_2d_accuracy_4(rng, boundary):
    """Halo 2 in both axes: Neumann mirrors and periodic wraps reach two cells, corners compose."""
    net, theta, ref = build(ADR2, z2, rotated(ADR2_SYMS, 1), bias="heterogeneous", boundary=boundary,
                            accuracy=4, n=(6, 5))
    check_forward(net, theta, ref, rng.uniform(-1, 1, (2, 6, 5)), SP2, boundary)


@pytest.mark.parametrize("activation", ["identity", "sigmoid", "softplus", "square"])
def test_forward_2d_activations(rng, activation):
    boundary = ("dirichlet", "periodic")
    net, theta, ref = build(ADR2, z2, rotated(ADR2_SYMS, 2), bias="time-dependent", activation=activation,
                            boundary=boundary)
    check_forward(net, theta, ref, rng.uniform(-1, 1, (2,) + N2), SP2, boundary)


def test_forward_2d_unbatched_input_and_shapes(rng):
    boundary = ("periodic", "neumann")
    net, theta, ref = build(ADR2, z2, rotated(ADR2_SYMS, 0), bias="heterogeneous", boundary=boundary)
    x0 = rng.uniform(-1, 1, N2)
    traj = ref.forward(x0[None], theta, LAYERS, SP2, boundary, OMEGA)
    out = net.forward(x0, theta)
    assert out.shape == N2
    assert_close(out, traj[-1, 0], 1e-12)
    full = net.forward(x0, theta, trajectory=True)
    assert full.shape == (LAYERS + 1,) + N2
    assert_close(full, traj[:, 0], 1e-12)
    batched = net.forward(np.stack([x0, -x0, 0.5 * x0]), theta, trajectory=True)
    assert batched.shape == (LAYERS + 1, 3) + N2
    assert_close(batched[:, 0], traj[:, 0], 1e-12)
    assert net.step(x0, theta, layer=1).shape == N2


def test_forward_2d_square_grid_transposed_roles(rng):
    """A non-symmetric anisotropic layer on a square grid with different spacings: catches swapped
    axes that the 6×5 shape alone could hide (the x- and y-coefficients differ)."""
    boundary = ("dirichlet", "neumann")
    net, theta, ref = build(ADR2, z2, {s: "homogeneous" for s in ADR2_SYMS}, boundary=boundary, n=(5, 5),
                            values={"U": 0.4, "V": 0.0, "Dxx": 0.2, "Dyy": 0.01, "Dxy": 0.05, "R": 0.0}, scale=0.0,
                            activation="identity")
    x0 = rng.uniform(-1, 1, (1, 5, 5))
    check_forward(net, theta, ref, x0, SP2, boundary)


# ---------------------------------------------------------------------------- forward, 3-D
@pytest.mark.parametrize("boundary", TRIPLES, ids=lambda b: "-".join(b))
def test_forward_3d(rng, boundary):
    k = TRIPLES.index(boundary)
    net, theta, ref = build(ADR3, z3, rotated(ADR3_SYMS, k), bias=BIASES[k % 4], boundary=boundary, n=N3,
                            spacing=SP3, seed=k)
    x0 = rng.uniform(-1, 1, (2,) + N3)
    traj = check_forward(net, theta, ref, x0, SP3, boundary)
    assert np.max(np.abs(traj[-1])) > 1e-3


def test_forward_3d_unbatched_input(rng):
    boundary = ("neumann", "dirichlet", "periodic")
    net, theta, ref = build(ADR3, z3, rotated(ADR3_SYMS, 2), bias="time-dependent", boundary=boundary, n=N3,
                            spacing=SP3)
    x0 = rng.uniform(-1, 1, N3)
    out = net.forward(x0, theta)
    assert out.shape == N3
    assert_close(out, ref.forward(x0[None], theta, LAYERS, SP3, boundary, OMEGA)[-1, 0], 1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("boundary", list(itertools.product(BOUNDARIES, repeat=3)), ids=lambda b: "-".join(b))
def test_forward_3d_all_triples_accuracy_4(rng, boundary):
    n = (5, 6, 5)
    net, theta, ref = build(ADR3, z3, rotated(ADR3_SYMS, 1), bias="heterogeneous", boundary=boundary, n=n,
                            spacing=SP3, accuracy=4, layers=2)
    check_forward(net, theta, ref, rng.uniform(-1, 1, (1,) + n), SP3, boundary, layers=2)


# ---------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("boundary", [("periodic", "neumann"), ("dirichlet", "periodic"), ("neumann", "neumann"),
                                      ("dirichlet", "dirichlet")], ids=str)
def test_gradients_2d_finite_differences(rng, boundary):
    k = [("periodic", "neumann"), ("dirichlet", "periodic"), ("neumann", "neumann"),
         ("dirichlet", "dirichlet")].index(boundary)
    net, theta, ref = build(ADR2, z2, rotated(ADR2_SYMS, k), bias=FAMILIES[k % 3], boundary=boundary, seed=k)
    x0, y0 = rng.uniform(-1, 1, (2,) + N2), rng.uniform(-1, 1, (2,) + N2)
    loss, _ = fd_check(net, theta, x0, y0, rng)
    assert loss == pytest.approx(ref.loss(x0, y0, theta, LAYERS, SP2, boundary, OMEGA), rel=1e-12)


def test_gradients_2d_train_omega(rng):
    boundary = ("neumann", "periodic")
    net, theta, ref = build(ADR2, z2, rotated(ADR2_SYMS, 1), bias="heterogeneous", boundary=boundary,
                            train_omega=True)
    assert "omega" in theta and np.shape(theta["omega"]) == ()
    x0, y0 = rng.uniform(-1, 1, (2,) + N2), rng.uniform(-1, 1, (2,) + N2)
    fd_check(net, theta, x0, y0, rng)


@pytest.mark.parametrize("boundary", [TRIPLES[3], TRIPLES[4]], ids=lambda b: "-".join(b))
def test_gradients_3d_finite_differences(rng, boundary):
    net, theta, ref = build(ADR3, z3, rotated(ADR3_SYMS, TRIPLES.index(boundary)), bias="time-dependent",
                            boundary=boundary, n=N3, spacing=SP3)
    x0, y0 = rng.uniform(-1, 1, (2,) + N3), rng.uniform(-1, 1, (2,) + N3)
    fd_check(net, theta, x0, y0, rng)


def test_gradients_2d_accuracy_4(rng):
    boundary = ("neumann", "dirichlet")
    net, theta, ref = build(ADR2, z2, rotated(ADR2_SYMS, 2), bias="homogeneous", boundary=boundary, accuracy=4)
    x0, y0 = rng.uniform(-1, 1, (2,) + N2), rng.uniform(-1, 1, (2,) + N2)
    fd_check(net, theta, x0, y0, rng)


def test_loss_and_grad_is_vjp_of_the_residual(rng):
    boundary = ("dirichlet", "neumann")
    net, theta, _ = build(ADR2, z2, rotated(ADR2_SYMS, 0), bias="heterogeneous", boundary=boundary)
    x0, y0 = rng.uniform(-1, 1, (2,) + N2), rng.uniform(-1, 1, (2,) + N2)
    loss, grads = net.loss_and_grad(x0, y0, theta, input_grad=True)
    zL = net.forward(x0, theta)
    assert loss == pytest.approx(0.5 * np.sum((zL - y0) ** 2), rel=1e-14)
    dx, g2 = net.vjp(x0, theta, zL - y0)
    assert dx.shape == x0.shape
    np.testing.assert_allclose(grads["x"], dx, rtol=1e-13, atol=1e-15)
    for k in g2:
        np.testing.assert_allclose(grads[k], g2[k], rtol=1e-13, atol=1e-15)


# ---------------------------------------------------------------------------- step adjoint
@pytest.mark.parametrize("boundary", [("periodic", "dirichlet"), ("neumann", "neumann"), ("dirichlet", "neumann")],
                         ids=str)
def test_step_adjoint_linear_identity_2d(rng, boundary):
    """Linear identity layer: J v = step(v) − step(0) of the package's own step (exact linearity)."""
    net, theta, ref = build(ADR2, z2, rotated(ADR2_SYMS, 1), bias="heterogeneous", activation="identity",
                            boundary=boundary)
    z = rng.uniform(-1, 1, (2,) + N2)
    v, wv = rng.standard_normal(z.shape), rng.standard_normal(z.shape)
    Jv = net.step(v, theta, layer=1) - net.step(np.zeros_like(v), theta, layer=1)
    dz, _ = net.step_vjp(z, theta, wv, layer=1)
    assert abs(inner(Jv, wv) - inner(v, dz)) <= 1e-12 * np.linalg.norm(Jv) * np.linalg.norm(wv)
    check_state_adjoint(net, ref, theta, z, 1, SP2, boundary, rng)


@pytest.mark.parametrize("boundary", [("periodic", "neumann"), ("dirichlet", "dirichlet"), ("neumann", "periodic")],
                         ids=str)
def test_step_adjoint_tanh_2d(rng, boundary):
    k = [("periodic", "neumann"), ("dirichlet", "dirichlet"), ("neumann", "periodic")].index(boundary)
    net, theta, ref = build(ADR2, z2, rotated(ADR2_SYMS, k), bias=FAMILIES[k], boundary=boundary, accuracy=2 + 2 * (k == 2))
    z = rng.uniform(-1, 1, (2,) + N2)
    for t in (0, LAYERS - 1):
        check_state_adjoint(net, ref, theta, z, t, SP2, boundary, rng)
        check_param_adjoint(net, ref, theta, z, t, SP2, boundary, rng)


def test_step_adjoint_tanh_3d(rng):
    boundary = ("neumann", "periodic", "dirichlet")
    net, theta, ref = build(ADR3, z3, rotated(ADR3_SYMS, 2), bias="time-dependent", boundary=boundary, n=N3,
                            spacing=SP3)
    z = rng.uniform(-1, 1, (2,) + N3)
    check_state_adjoint(net, ref, theta, z, 1, SP3, boundary, rng)
    check_param_adjoint(net, ref, theta, z, 1, SP3, boundary, rng)


def test_step_adjoint_train_omega(rng):
    boundary = ("dirichlet", "periodic")
    net, theta, ref = build(ADR2, z2, rotated(ADR2_SYMS, 0), bias="homogeneous", boundary=boundary,
                            activation="sigmoid", train_omega=True)
    z = rng.uniform(-1, 1, (2,) + N2)
    check_param_adjoint(net, ref, theta, z, 2, SP2, boundary, rng)


@pytest.mark.parametrize("boundary", [("neumann", "dirichlet"), ("periodic", "neumann", "dirichlet")], ids=str)
def test_network_vjp_complex_step(rng, boundary):
    """The whole network's vjp (all layers, input and every parameter) against complex-step
    derivatives of the reference: 1e-12, much tighter than finite differences."""
    if len(boundary) == 3:
        net, theta, ref = build(ADR3, z3, rotated(ADR3_SYMS, 1), bias="time-dependent", boundary=boundary, n=N3,
                                spacing=SP3, train_omega=True)
        check_network_vjp(net, ref, theta, rng.uniform(-1, 1, (2,) + N3), LAYERS, SP3, boundary, rng)
    else:
        net, theta, ref = build(ADR2, z2, rotated(ADR2_SYMS, 2), bias="heterogeneous", boundary=boundary,
                                accuracy=4)
        check_network_vjp(net, ref, theta, rng.uniform(-1, 1, (2,) + N2), LAYERS, SP2, boundary, rng)


def test_unbatched_gradients_2d(rng):
    boundary = ("periodic", "dirichlet")
    net, theta, _ = build(ADR2, z2, rotated(ADR2_SYMS, 0), bias="heterogeneous", boundary=boundary)
    x0, y0 = rng.uniform(-1, 1, N2), rng.uniform(-1, 1, N2)
    loss, grads = net.loss_and_grad(x0, y0, theta, input_grad=True)
    assert grads["x"].shape == N2
    loss2, grads2 = net.loss_and_grad(x0[None], y0[None], theta, input_grad=True)
    assert loss == pytest.approx(loss2, rel=1e-14)
    for k in grads:
        np.testing.assert_allclose(grads[k], grads2[k][0] if k == "x" else grads2[k], rtol=1e-13, atol=1e-15)
    dz, g = net.step_vjp(x0, theta, y0, layer=0)
    assert dz.shape == N2 and set(g) == set(theta)


# ---------------------------------------------------------------------------- other transforms
Dx3, Dxxyy, logD = sp.symbols("Dx3 Dxxyy logD")


def test_forward_axis_without_derivatives(rng):
    """Derivatives along x only: the y axis has no halo, so a 2-site y axis is a valid grid."""
    boundary = ("neumann", "dirichlet")
    transform = z2 + R * z2 + Dxx * z2.diff(x, 2) - U * z2.diff(x)
    params = {R: "heterogeneous", Dxx: "time-dependent", U: "homogeneous"}
    for n in [(6, 2), (6, 1)]:
        net, theta, ref = build(transform, z2, params, bias="heterogeneous", boundary=boundary, n=n)
        check_forward(net, theta, ref, rng.uniform(-1, 1, (2,) + n), SP2, boundary)


@pytest.mark.parametrize("boundary", [("neumann", "periodic"), ("dirichlet", "neumann")], ids=str)
def test_forward_higher_order_derivatives(rng, boundary):
    """z_xxx (5-point, halo 2) and the mixed z_xxyy (3×3 tensor stencil) with z_yy."""
    transform = z2 + Dx3 * z2.diff(x, 3) + Dxxyy * z2.diff(x, 2, y, 2) + Dyy * z2.diff(y, 2)
    params = {Dx3: "heterogeneous", Dxxyy: "homogeneous", Dyy: "time-dependent"}
    n = (7, 5)
    net, theta, ref = build(transform, z2, params, bias="homogeneous", boundary=boundary, n=n,
                            values={"Dx3": 0.01, "Dxxyy": 0.005, "Dyy": 0.05, "b": 0.1}, scale=0.01)
    check_forward(net, theta, ref, rng.uniform(-1, 1, (2,) + n), SP2, boundary)
    x0, y0 = rng.uniform(-1, 1, (2,) + n), rng.uniform(-1, 1, (2,) + n)
    fd_check(net, theta, x0, y0, rng)


def test_forward_exp_coefficient_2d(rng):
    """exp(logD) coefficient: weights nonlinear in the parameter."""
    boundary = ("periodic", "neumann")
    transform = z2 + sp.exp(logD) * (z2.diff(x, 2) + z2.diff(y, 2)) - U * z2.diff(y)
    params = {logD: "heterogeneous", U: "time-dependent"}
    net, theta, ref = build(transform, z2, params, boundary=boundary, activation="softplus",
                            values={"logD": -2.5, "U": 0.2}, scale=0.3)
    check_forward(net, theta, ref, rng.uniform(-1, 1, (2,) + N2), SP2, boundary)
    check_network_vjp(net, ref, theta, rng.uniform(-1, 1, (2,) + N2), LAYERS, SP2, boundary, rng)


def test_parameter_free_linear_layer(rng):
    boundary = ("dirichlet", "periodic", "neumann")
    transform = z3 + sp.Rational(1, 20) * (z3.diff(x, 2) + z3.diff(y, 2) + z3.diff(w, 2))
    net, theta, ref = build(transform, z3, {}, boundary=boundary, n=N3, spacing=SP3, activation="identity")
    assert theta == {}
    x0 = rng.uniform(-1, 1, (2,) + N3)
    check_forward(net, theta, ref, x0, SP3, boundary)
    check_network_vjp(net, ref, theta, x0, LAYERS, SP3, boundary, rng)


def test_checkpointing_gives_the_same_gradients(rng):
    boundary = ("neumann", "dirichlet")
    params = rotated(ADR2_SYMS, 1)
    layer = npdegen.NeuralPDE(ADR2, z2, activation="tanh", params=params, bias="time-dependent")
    kw = dict(n=N2, spacing=SP2, layers=5, omega=OMEGA, boundary=boundary)
    net, net_ck = layer.compile(**kw), layer.compile(checkpoint=2, **kw)
    theta = net.init_params(seed=2, scale=0.1, values={k: v for k, v in VALUES.items() if k in net.shapes})
    x0, y0 = rng.uniform(-1, 1, (2,) + N2), rng.uniform(-1, 1, (2,) + N2)
    loss, grads = net.loss_and_grad(x0, y0, theta, input_grad=True)
    loss_ck, grads_ck = net_ck.loss_and_grad(x0, y0, theta, input_grad=True)
    assert loss_ck == pytest.approx(loss, rel=1e-13)
    for k in grads:
        np.testing.assert_allclose(grads_ck[k], grads[k], rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------- larger problems
@pytest.mark.parametrize("boundary", [("neumann", "periodic"), ("dirichlet", "neumann")], ids=str)
def test_large_batch_2d(rng, boundary):
    """A (64, 48, 40) batch: ~1.2e5 values per layer, enough for the kernels' blocks (and threads).
    The vectorised reference checks the forward pass and, by complex steps, both adjoint parts."""
    n = (48, 40)
    net, theta, ref = build(ADR2, z2, rotated(ADR2_SYMS, 1), bias="time-dependent", boundary=boundary, n=n, seed=5)
    x0 = rng.uniform(-1, 1, (64,) + n)
    check_forward(net, theta, ref, x0, SP2, boundary)
    check_state_adjoint(net, ref, theta, x0, 1, SP2, boundary, rng, full=False)
    check_param_adjoint(net, ref, theta, x0, 2, SP2, boundary, rng)
    # the gradient of the whole batch is the sum of the gradients of its halves
    y0 = rng.uniform(-1, 1, x0.shape)
    loss, grads = net.loss_and_grad(x0, y0, theta, input_grad=True)
    la, ga = net.loss_and_grad(x0[:23], y0[:23], theta, input_grad=True)
    lb, gb = net.loss_and_grad(x0[23:], y0[23:], theta, input_grad=True)
    assert loss == pytest.approx(la + lb, rel=1e-12)
    for k in theta:
        np.testing.assert_allclose(grads[k], ga[k] + gb[k], rtol=1e-10, atol=1e-12 * np.max(np.abs(grads[k])))
    np.testing.assert_allclose(grads["x"], np.concatenate([ga["x"], gb["x"]]), rtol=1e-12, atol=1e-15)


def test_large_3d(rng):
    n = (20, 18, 16)
    boundary = ("periodic", "neumann", "dirichlet")
    net, theta, ref = build(ADR3, z3, rotated(ADR3_SYMS, 0), bias="heterogeneous", boundary=boundary, n=n,
                            spacing=SP3, layers=2)
    x0 = rng.uniform(-1, 1, (8,) + n)
    check_forward(net, theta, ref, x0, SP3, boundary, layers=2)
    check_state_adjoint(net, ref, theta, x0, 1, SP3, boundary, rng, full=False)
    check_param_adjoint(net, ref, theta, x0, 0, SP3, boundary, rng)


# ---------------------------------------------------------------------------- numba backend
@pytest.mark.slow
@pytest.mark.parametrize("boundary", [("neumann", "dirichlet"), ("periodic", "periodic", "neumann")], ids=str)
def test_numba_backend_matches_reference(rng, boundary):
    """backend="numba": forward against the reference, gradients against the NumPy backend."""
    three = len(boundary) == 3
    transform, field, syms = (ADR3, z3, ADR3_SYMS) if three else (ADR2, z2, ADR2_SYMS)
    n, spacing = (N3, SP3) if three else (N2, SP2)
    params = rotated(syms, 2)
    layer = npdegen.NeuralPDE(transform, field, activation="tanh", params=params, bias="heterogeneous")
    net = layer.compile(n=n, spacing=spacing, layers=LAYERS, omega=OMEGA, boundary=boundary, dtype="float64",
                        backend="numba")
    net_np = layer.compile(n=n, spacing=spacing, layers=LAYERS, omega=OMEGA, boundary=boundary, dtype="float64",
                           backend="numpy")
    theta = net_np.init_params(seed=1, scale=0.1, values={k: v for k, v in VALUES.items() if k in net_np.shapes})
    ref = Reference(transform, field, params, bias="heterogeneous", activation="tanh")
    x0, y0 = rng.uniform(-1, 1, (3,) + n), rng.uniform(-1, 1, (3,) + n)
    check_forward(net, theta, ref, x0, spacing, boundary)
    loss, grads = net.loss_and_grad(x0, y0, theta, input_grad=True)
    loss_np, grads_np = net_np.loss_and_grad(x0, y0, theta, input_grad=True)
    assert loss == pytest.approx(loss_np, rel=1e-12)
    assert set(grads) == set(grads_np)
    for k in grads:
        np.testing.assert_allclose(grads[k], grads_np[k], rtol=1e-10, atol=1e-12 * np.max(np.abs(grads_np[k])))


# ---------------------------------------------------------------------------- bad input
ERRORS = (ValueError, TypeError)


def test_error_activation_without_argument_symbol():
    """An activation whose argument cannot be told from its parameters (rho not in params)."""
    rho, X = sp.symbols("rho X")
    with pytest.raises(ERRORS, match=r"(?i)activation"):
        npdegen.NeuralPDE(z2 + U * z2.diff(x, 2), z2, activation=rho * X * (1 - X), params={U: "homogeneous"})


def test_error_nonlocal_shifted_field():
    with pytest.raises(ERRORS, match=r"(?i)non-?local|unknown function|shift"):
        npdegen.NeuralPDE(z2 + U * z2.subs(x, x + 1), z2, params={U: "homogeneous"})


def test_error_unknown_function():
    g = sp.Function("g")(x, y)
    with pytest.raises(ERRORS, match=r"(?i)unknown function|\bg\b"):
        npdegen.NeuralPDE(z2 + U * g, z2, params={U: "homogeneous"})


def test_error_coefficient_depends_on_coordinate():
    with pytest.raises(ERRORS, match=r"(?i)coordinate"):
        npdegen.NeuralPDE(z2 + x * U * z2.diff(x), z2, params={U: "homogeneous"})
    with pytest.raises(ERRORS, match=r"(?i)coordinate"):
        npdegen.NeuralPDE(z3 + sp.sin(w) * z3.diff(y, 2), z3)


@pytest.mark.parametrize("boundary", [("periodic",), ("periodic", "neumann", "dirichlet"), ("periodic", "wall")],
                         ids=str)
def test_error_boundary_tuple(boundary):
    layer = npdegen.NeuralPDE(ADR2, z2, params={s: "homogeneous" for s in ADR2_SYMS})
    with pytest.raises(ERRORS, match=r"(?i)boundar.*(axis|axes|entries|dimension|wall|one of)"):
        layer.compile(n=N2, spacing=SP2, layers=2, boundary=boundary)


def test_error_theta_shape_does_not_match_grid(rng):
    net, theta, _ = build(ADR2, z2, {U: "heterogeneous", V: "time-dependent", Dxx: "homogeneous", Dxy: "homogeneous",
                                     Dyy: "homogeneous", R: "homogeneous"}, boundary="periodic")
    x0 = rng.uniform(-1, 1, (2,) + N2)
    bad = dict(theta, U=np.zeros(N2[::-1]))
    with pytest.raises(ERRORS, match=r"(?i)shape"):
        net.forward(x0, bad)
    bad = dict(theta, V=np.zeros(N2))           # time-dependent needs (L, nx, ny)
    with pytest.raises(ERRORS, match=r"(?i)shape"):
        net.loss_and_grad(x0, x0, bad)
    with pytest.raises(ERRORS, match=r"(?i)shape"):
        net.forward(rng.uniform(-1, 1, (2,) + N2[::-1]), theta)


def test_error_grid_dimension_mismatch():
    layer = npdegen.NeuralPDE(ADR2, z2, params={s: "homogeneous" for s in ADR2_SYMS})
    for n in [(4,), (4, 5, 6), 6]:
        with pytest.raises(ERRORS, match=r"(?i)\bn\b.*(axis|axes|tuple|dimension|2)"):
            layer.compile(n=n, spacing=SP2, layers=2)
    with pytest.raises(ERRORS, match=r"(?i)spacing.*(axis|axes|tuple|dimension|2)"):
        layer.compile(n=N2, spacing=(0.5,), layers=2)


def test_error_grid_too_small():
    lap = z2.diff(x, 2) + z2.diff(y, 2)
    layer = npdegen.NeuralPDE(lap, z2, accuracy=4)
    with pytest.raises(ERRORS, match=r"(?i)(small|half-width|halo|stencil).*axis 0"):
        layer.compile(n=(3, 6), spacing=SP2, layers=2)
    with pytest.raises(ERRORS, match=r"(?i)(small|half-width|halo|stencil).*axis 1"):
        layer.compile(n=(6, 2), spacing=SP2, layers=2)
    layer.compile(n=(5, 5), spacing=SP2, layers=2)      # just large enough
