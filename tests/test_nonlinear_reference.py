"""Nonlinear transforms and activation parameters against independent references.

* 1-D Burgers: ``z − dt z z_q + dt ν z_qq`` with ``f`` = identity and ω = 1 is one explicit central
  Burgers step; the layer's trajectory equals a hand-written Python loop
  (:func:`reference_nd.burgers_step_loop`) layer by layer, for all three boundaries.
* 2-D nonlinear transforms (``z + ν Δz − z z_x``, ``z + A sin(z) z_xx``, ``z + z_x²``) against the
  per-site reference of tests/reference_nd.py (float64, 1e-12).
* Activation parameters (``activation = ρ X (1 − X)``, ρ in any family): forward, finite-difference
  gradients, dot-product tests.
* Gradients: central differences (ε = 1e-6, ``|fd − g| / max(|fd|, |g|, 1e-2) < 1e-6``); adjoints:
  ``⟨J v, w⟩ = ⟨v, Jᵀ w⟩`` to 1e-12 with ``J v`` by the complex step through the reference, and the
  parameter part key by key (1e-12 relative to ``Σ_k |⟨δθ_k, g_k⟩|``).
"""
import numpy as np
import pytest
import sympy as sp

import npdegen
from reference_nd import BOUNDARIES, FAMILIES, Reference, assert_close, burgers_step_loop, family_shape
from reference_nd import check_network_vjp, check_param_adjoint, check_state_adjoint, fd_check

q, x, y = sp.symbols("q x y")
z1 = sp.Function("z")(q)
z2 = sp.Function("z")(x, y)
nu, A, C, rho = sp.symbols("nu A C rho")
X = sp.Symbol("X")
DT = sp.Rational(1, 20)
N1, DQ = 9, 0.4
N2, SP2 = (6, 5), (0.8, 0.6)
LAYERS, OMEGA = 3, 0.7
BURGERS = z1 - DT * z1 * z1.diff(q) + DT * nu * z1.diff(q, 2)
PAIRS = [("periodic", "neumann"), ("dirichlet", "periodic"), ("neumann", "dirichlet"), "periodic", "dirichlet",
         "neumann"]

#: name -> (transform, {param: default value})
NONLINEAR_2D = {
    "viscous-burgers": (z2 + nu * (z2.diff(x, 2) + z2.diff(y, 2)) - z2 * z2.diff(x), {nu: 0.05}),
    "sin-diffusion": (z2 + A * sp.sin(z2) * z2.diff(x, 2), {A: 0.1}),
    "gradient-square": (z2 + z2.diff(x) ** 2, {}),
    "gradient-square-mixed": (z2 + C * z2.diff(x) * z2.diff(y) - nu * z2 * z2.diff(x, y), {C: 0.2, nu: 0.1}),
}


def build(transform, field, params, *, act_params=None, activation="tanh", bias=None, boundary="periodic", n=N2,
          spacing=SP2, layers=LAYERS, omega=OMEGA, accuracy=2, values=None, seed=0, scale=0.05):
    act_params = act_params or {}
    given = activation
    ref_act = activation
    if not isinstance(activation, str):
        given = activation
        ref_act = (activation, X, act_params)
    layer = npdegen.NeuralPDE(transform, field, activation=given, params={**params, **act_params}, bias=bias,
                              accuracy=accuracy)
    net = layer.compile(n=n, spacing=spacing, layers=layers, omega=omega, boundary=boundary, dtype="float64",
                        backend="numpy")
    names = {s.name for s in {**params, **act_params}} | ({"b"} if bias else set())
    theta = net.init_params(seed=seed, scale=scale, values={k: v for k, v in (values or {}).items() if k in names})
    assert set(theta) == names
    for s, fam in {**params, **act_params}.items():
        assert np.shape(theta[s.name]) == family_shape(fam, n if isinstance(n, tuple) else (n,), layers)
    ref = Reference(transform, field, params, bias=bias, activation=ref_act, accuracy=accuracy)
    return net, theta, ref


def check_forward(net, theta, ref, x0, spacing, boundary, layers=LAYERS, omega=OMEGA, rel=1e-12):
    traj = ref.forward(x0, theta, layers, spacing, boundary, omega)
    assert_close(net.forward(x0, theta, trajectory=True), traj, rel, "trajectory")
    for t in range(layers):
        assert_close(net.step(traj[t], theta, layer=t), traj[t + 1], rel, f"step {t}")
    return traj


# ---------------------------------------------------------------------------- Burgers
def burgers_loop_trajectory(x0, nu_value, layers, boundary):
    out = [np.asarray(x0, np.float64)]
    for _ in range(layers):
        nxt = [burgers_step_loop(list(s), float(DT), nu_value, DQ, boundary) for s in out[-1]]
        out.append(np.array(nxt))
    return np.stack(out)


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_reference_burgers_equals_hand_loop(rng, boundary):
    """The generic per-site reference (no npdegen) reproduces the hand-written Burgers loop."""
    ref = Reference(BURGERS, z1, {nu: "homogeneous"}, activation="identity")
    x0 = rng.uniform(-1, 1, (2, N1))
    traj = ref.forward(x0, {"nu": np.float64(0.3)}, 4, (DQ,), boundary, 1.0)
    np.testing.assert_allclose(traj, burgers_loop_trajectory(x0, 0.3, 4, boundary), rtol=1e-14, atol=1e-14)
    traj_loop = ref.forward(x0, {"nu": np.float64(0.3)}, 2, (DQ,), boundary, 1.0, loop=True)
    np.testing.assert_allclose(traj_loop, traj[:3], rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("family", ["homogeneous", "heterogeneous"])
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_burgers_layer_matches_hand_written_step(rng, boundary, family):
    layers = 5
    net, theta, _ = build(BURGERS, z1, {nu: family}, activation="identity", boundary=boundary, n=N1, spacing=DQ,
                          layers=layers, omega=1.0, values={"nu": 0.3})
    assert "b" not in theta
    x0 = np.sin(2 * np.pi * np.outer([1, 2], np.arange(N1) / N1)) + 0.3 * rng.uniform(-1, 1, (2, N1))
    nu_value = float(theta["nu"]) if family == "homogeneous" else list(theta["nu"])
    expected = burgers_loop_trajectory(x0, nu_value, layers, boundary)
    got = net.forward(x0, theta, trajectory=True)
    assert got.shape == (layers + 1, 2, N1)
    for t in range(layers + 1):
        assert_close(got[t], expected[t], 1e-12, f"layer {t}")
        if t < layers:
            assert_close(net.step(expected[t], theta, layer=t), expected[t + 1], 1e-12, f"step {t}")
    # the nonlinear term really acts: the linear part alone differs
    lin = [x0]
    for _ in range(layers):
        lin.append(np.array([burgers_step_loop(list(s), 0.0, nu_value, DQ, boundary) for s in lin[-1]]))
    assert np.max(np.abs(lin[-1] - expected[-1])) > 1e-3


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_burgers_gradients(rng, boundary):
    net, theta, ref = build(BURGERS, z1, {nu: "time-dependent"}, activation="identity", bias="heterogeneous",
                            boundary=boundary, n=N1, spacing=DQ, omega=0.9, values={"nu": 0.3})
    x0, y0 = rng.uniform(-1, 1, (2, N1)), rng.uniform(-1, 1, (2, N1))
    fd_check(net, theta, x0, y0, rng)
    z = rng.uniform(-1, 1, (2, N1))
    check_state_adjoint(net, ref, theta, z, 1, (DQ,), boundary, rng, omega=0.9)
    check_param_adjoint(net, ref, theta, z, 1, (DQ,), boundary, rng, omega=0.9)


# ---------------------------------------------------------------------------- 2-D nonlinear
@pytest.mark.parametrize("name", sorted(NONLINEAR_2D))
@pytest.mark.parametrize("k", [0, 1, 2])
def test_forward_2d_nonlinear(rng, name, k):
    transform, defaults = NONLINEAR_2D[name]
    j = sorted(NONLINEAR_2D).index(name)
    boundary = PAIRS[(3 * j + k) % len(PAIRS)]
    params = {s: FAMILIES[(k + i) % 3] for i, s in enumerate(defaults)}
    bias = (None,) + FAMILIES
    net, theta, ref = build(transform, z2, params, bias=bias[(j + k) % 4], boundary=boundary, seed=k,
                            values={s.name: v for s, v in defaults.items()} | {"b": 0.05})
    x0 = rng.uniform(-1, 1, (2,) + N2)
    traj = check_forward(net, theta, ref, x0, SP2, boundary)
    assert np.max(np.abs(traj[-1])) > 1e-3


@pytest.mark.parametrize("accuracy", [2, 4])
def test_forward_2d_nonlinear_identity_activation(rng, accuracy):
    transform, defaults = NONLINEAR_2D["viscous-burgers"]
    boundary = ("neumann", "periodic")
    net, theta, ref = build(transform, z2, {nu: "heterogeneous"}, activation="identity", boundary=boundary,
                            accuracy=accuracy, omega=1.0, values={"nu": 0.05})
    x0 = rng.uniform(-1, 1, (2,) + N2)
    traj = check_forward(net, theta, ref, x0, SP2, boundary, omega=1.0)
    # z_x z term really acts: the reference without it differs
    lin = Reference(z2 + nu * (z2.diff(x, 2) + z2.diff(y, 2)), z2, {nu: "heterogeneous"}, accuracy=accuracy)
    assert np.max(np.abs(lin.forward(x0, theta, LAYERS, SP2, boundary, 1.0)[-1] - traj[-1])) > 1e-3


@pytest.mark.parametrize("name", ["viscous-burgers", "sin-diffusion", "gradient-square-mixed"])
def test_gradients_2d_nonlinear(rng, name):
    transform, defaults = NONLINEAR_2D[name]
    j = sorted(NONLINEAR_2D).index(name)
    boundary = PAIRS[j]
    params = {s: FAMILIES[(j + i) % 3] for i, s in enumerate(defaults)}
    net, theta, ref = build(transform, z2, params, bias=FAMILIES[j % 3], boundary=boundary,
                            values={s.name: v for s, v in defaults.items()} | {"b": 0.05})
    x0, y0 = rng.uniform(-1, 1, (2,) + N2), rng.uniform(-1, 1, (2,) + N2)
    fd_check(net, theta, x0, y0, rng)
    z = rng.uniform(-1, 1, (2,) + N2)
    check_state_adjoint(net, ref, theta, z, 0, SP2, boundary, rng)
    check_param_adjoint(net, ref, theta, z, LAYERS - 1, SP2, boundary, rng)


@pytest.mark.parametrize("name", ["viscous-burgers", "sin-diffusion", "gradient-square-mixed"])
def test_network_vjp_nonlinear_complex_step(rng, name):
    """vjp of the whole nonlinear network (input and parameters) to 1e-12 by complex steps."""
    transform, defaults = NONLINEAR_2D[name]
    j = sorted(NONLINEAR_2D).index(name)
    boundary = PAIRS[(j + 3) % len(PAIRS)]
    params = {s: FAMILIES[(j + i + 1) % 3] for i, s in enumerate(defaults)}
    net, theta, ref = build(transform, z2, params, bias=FAMILIES[(j + 1) % 3], boundary=boundary,
                            values={s.name: v for s, v in defaults.items()} | {"b": 0.05}, accuracy=2 + 2 * (j % 2))
    check_network_vjp(net, ref, theta, rng.uniform(-1, 1, (2,) + N2), LAYERS, SP2, boundary, rng)


def test_gradients_parameter_free_nonlinear(rng):
    """``z + z_x²``: no parameters at all, only the input gradient."""
    transform, _ = NONLINEAR_2D["gradient-square"]
    boundary = ("dirichlet", "neumann")
    net, theta, ref = build(transform, z2, {}, boundary=boundary)
    assert theta == {}
    x0, y0 = rng.uniform(-1, 1, (2,) + N2), rng.uniform(-1, 1, (2,) + N2)
    fd_check(net, theta, x0, y0, rng)
    check_state_adjoint(net, ref, theta, rng.uniform(-1, 1, (2,) + N2), 1, SP2, boundary, rng)


U = sp.Symbol("U")
PARAM_IN_FUNCTION = [
    pytest.param("cos(U z) z_x", z2 + sp.cos(U * z2) * z2.diff(x)),
    pytest.param("exp(U z) z_xx", z2 + sp.exp(U * z2) * z2.diff(x, 2)),
    pytest.param("tanh(U z_y)", z2 + sp.tanh(U * z2.diff(y))),
    pytest.param("1d cos(U z) z_q", z1 + sp.cos(U * z1) * z1.diff(q)),
    pytest.param("U cos(z) z_y", z2 + U * sp.cos(z2) * z2.diff(y)),
    pytest.param("(U z)^2 z_y + sin(U z)", z2 + (U * z2) ** 2 * z2.diff(y) + sp.sin(U * z2)),
]


@pytest.mark.parametrize("name,transform", PARAM_IN_FUNCTION)
def test_parameter_inside_a_function_of_the_field(rng, name, transform):
    """Coefficient functions that mix a parameter and the field (or a derivative) nonlinearly."""
    field = z1 if name.startswith("1d") else z2
    one = field is z1
    boundary = "neumann" if one else ("neumann", "periodic")
    n, spacing = ((N1,), (DQ,)) if one else (N2, SP2)
    net, theta, ref = build(transform, field, {U: "heterogeneous"}, bias="homogeneous", boundary=boundary,
                            n=n[0] if one else n, spacing=spacing[0] if one else spacing, values={"U": 0.3})
    x0 = rng.uniform(-1, 1, (2,) + n)
    check_forward(net, theta, ref, x0, spacing, boundary)
    check_network_vjp(net, ref, theta, x0, LAYERS, spacing, boundary, rng)


# ---------------------------------------------------------------------------- activation parameters
LOGISTIC = rho * X * (1 - X)


@pytest.mark.parametrize("family", FAMILIES)
def test_activation_parameter_forward(rng, family):
    boundary = ("periodic", "dirichlet")
    net, theta, ref = build(z2 + nu * (z2.diff(x, 2) + z2.diff(y, 2)), z2, {nu: "heterogeneous"},
                            act_params={rho: family}, activation=LOGISTIC, bias="homogeneous", boundary=boundary,
                            values={"nu": 0.05, "rho": 2.5, "b": -0.3}, scale=0.1)
    x0 = rng.uniform(0, 1, (2,) + N2)
    traj = check_forward(net, theta, ref, x0, SP2, boundary)
    assert np.max(np.abs(traj[-1])) > 1e-3


@pytest.mark.parametrize("family", FAMILIES)
def test_activation_parameter_gradients(rng, family):
    """FD gradients and adjoints for ρ (and ν, b) with a nonlinear transform."""
    boundary = ("neumann", "periodic")
    transform = z2 + nu * z2.diff(x, 2) - z2 * z2.diff(y)
    net, theta, ref = build(transform, z2, {nu: "homogeneous"}, act_params={rho: family}, activation=LOGISTIC,
                            bias="heterogeneous", boundary=boundary, values={"nu": 0.05, "rho": 2.5, "b": -0.3},
                            scale=0.1)
    x0, y0 = rng.uniform(0, 1, (2,) + N2), rng.uniform(0, 1, (2,) + N2)
    _, grads = fd_check(net, theta, x0, y0, rng)
    assert np.max(np.abs(grads["rho"])) > 1e-4
    z = rng.uniform(0, 1, (2,) + N2)
    check_state_adjoint(net, ref, theta, z, 1, SP2, boundary, rng)
    check_param_adjoint(net, ref, theta, z, 1, SP2, boundary, rng)


@pytest.mark.parametrize("family", FAMILIES)
def test_activation_parameter_network_vjp(rng, family):
    boundary = ("dirichlet", "neumann")
    net, theta, ref = build(z2 + nu * z2.diff(y, 2) + A * sp.sin(z2) * z2.diff(x), z2,
                            {nu: "heterogeneous", A: "homogeneous"}, act_params={rho: family}, activation=LOGISTIC,
                            bias="time-dependent", boundary=boundary, values={"nu": 0.05, "A": 0.2, "rho": 2.5, "b": -0.3})
    check_network_vjp(net, ref, theta, rng.uniform(0, 1, (2,) + N2), LAYERS, SP2, boundary, rng)


def test_activation_parameter_1d(rng):
    """1-D layer with a heterogeneous activation parameter (the 1-D path stays covered)."""
    net, theta, ref = build(BURGERS, z1, {nu: "homogeneous"}, act_params={rho: "heterogeneous"},
                            activation=LOGISTIC, boundary="neumann", n=N1, spacing=DQ, values={"nu": 0.3, "rho": 2.0})
    x0, y0 = rng.uniform(0, 1, (2, N1)), rng.uniform(0, 1, (2, N1))
    check_forward(net, theta, ref, x0, (DQ,), "neumann")
    fd_check(net, theta, x0, y0, rng)


def test_error_activation_parameter_in_transform():
    """ρ may only appear in the activation."""
    with pytest.raises((ValueError, TypeError), match=r"(?i)activation|rho"):
        npdegen.NeuralPDE(z2 + rho * z2.diff(x, 2), z2, activation=LOGISTIC, params={rho: "homogeneous"})


@pytest.mark.slow
def test_numba_backend_nonlinear_with_activation_parameter(rng):
    """backend="numba" for a nonlinear transform (a parameter inside a function of the field too)
    with a heterogeneous activation parameter: forward against the reference, the whole network's
    vjp by complex steps (1e-12), and the loss gradient by finite differences."""
    boundary = ("neumann", "periodic")
    transform = z2 + nu * (z2.diff(x, 2) + z2.diff(y, 2)) - z2 * z2.diff(x) / 10 + sp.cos(A * z2) * z2.diff(x, y) / 20
    params = {nu: "time-dependent", A: "homogeneous"}
    layer = npdegen.NeuralPDE(transform, z2, activation=LOGISTIC, params={**params, rho: "heterogeneous"},
                              bias="heterogeneous")
    net = layer.compile(n=N2, spacing=SP2, layers=LAYERS, omega=OMEGA, boundary=boundary, dtype="float64",
                        backend="numba")
    theta = net.init_params(seed=4, scale=0.05, values={"nu": 0.05, "A": 0.2, "rho": 2.5, "b": -0.3})
    ref = Reference(transform, z2, params, bias="heterogeneous", activation=(LOGISTIC, X, {rho: "heterogeneous"}))
    x0, y0 = rng.uniform(0, 1, (3,) + N2), rng.uniform(0, 1, (3,) + N2)
    check_forward(net, theta, ref, x0, SP2, boundary)
    check_network_vjp(net, ref, theta, x0, LAYERS, SP2, boundary, rng)
    fd_check(net, theta, x0, y0, rng)
    net_np = layer.compile(n=N2, spacing=SP2, layers=LAYERS, omega=OMEGA, boundary=boundary, dtype="float64",
                           backend="numpy")
    loss, grads = net.loss_and_grad(x0, y0, theta, input_grad=True)
    loss_np, grads_np = net_np.loss_and_grad(x0, y0, theta, input_grad=True)
    assert loss == pytest.approx(loss_np, rel=1e-12)
    for k in grads_np:
        np.testing.assert_allclose(grads[k], grads_np[k], rtol=1e-10, atol=1e-12 * np.max(np.abs(grads_np[k])))
