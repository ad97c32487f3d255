"""Forward pass of the generated kernels against an independent, hand-written reference.

The reference below uses none of the package's kernels: it only takes the symbolic stencil
``layer.stencil(spacing)`` (checked against closed forms in ``test_stencil.py``), lambdifies its
weights, and then loops explicitly over batch, sites and offsets in plain Python with explicit
boundary index logic, ``math`` activations, relaxation, bias and soft normalisation, exactly as
the semantics docstring of :mod:`npdegen.runtime.network` states them:

    Z[i]      = Σ_j w_j(θ at site i, layer t) z[i+j] − b[i]
    z_next[i] = (1 − ω) z[i] + ω f(Z[i]) − α (‖z‖ − 1) z[i]      (‖·‖ over sites, per sample)

Boundaries: periodic wraps; Dirichlet reads 0 outside; Neumann mirrors about the cell faces,
``z[−k] = z[k−1]`` and ``z[n−1+k] = z[n−k]``.

Tolerance: float64 kernels agree with the reference to 1e-12 relative (element-wise, with an
absolute floor of 1e-12 × max|reference| for entries that cancel to ~0); float32 kernels agree
with the float64 reference to 1e-5 relative in the same sense.
"""
import math

import numpy as np
import pytest
import sympy as sp

import npdegen

FAMILIES = ("homogeneous", "heterogeneous", "time-dependent")
BOUNDARIES = ("periodic", "dirichlet", "neumann")

#: f(x) written directly with math, independent of the package's SymPy forms.
ACTIVATIONS = {
    "identity": lambda x: x,
    "tanh": math.tanh,
    "sigmoid": lambda x: 1.0 / (1.0 + math.exp(-x)),
    "relu": lambda x: max(x, 0.0),
    "softplus": lambda x: math.log1p(math.exp(x)),   # inputs here are moderate (|x| < 10)
    "square": lambda x: x * x,
}


_s = sp.Symbol("s")
#: Custom activations: what the layer is given, and f written with math for the reference.
CUSTOM = {
    "sin+cube": (sp.sin(_s) + _s**3 / 10, lambda x: math.sin(x) + x**3 / 10),
    "softsign": (_s / (1 + sp.Abs(_s)), lambda x: x / (1 + abs(x))),
    "atan-lambda": (sp.Lambda(_s, sp.atan(2 * _s)), lambda x: math.atan(2 * x)),
}


# ---------------------------------------------------------------------------- the reference
def read(z, k, boundary):
    """z[k] for any k within one grid length of the interior, with explicit boundary logic."""
    n = len(z)
    if 0 <= k < n:
        return z[k]
    if boundary == "periodic":
        return z[k % n]
    if boundary == "dirichlet":
        return 0.0
    if boundary == "neumann":
        # z[-m] = z[m-1]  (k = -m < 0);   z[n-1+m] = z[n-m]  (k = n-1+m >= n)
        return z[-k - 1] if k < 0 else z[2 * n - 1 - k]
    raise ValueError(boundary)


def param_at(value, family, t, i):
    """The value of a parameter (or the bias) at site i in the step t -> t+1."""
    if family == "homogeneous":
        return float(value)
    if family == "heterogeneous":
        return float(value[i])
    if family == "time-dependent":
        return float(value[t][i])
    raise ValueError(family)


class Reference:
    """Plain-Python forward pass of a layer given by its symbolic stencil."""

    def __init__(self, layer, params, bias, activation, spacing):
        self.symbols = list(params)                     # parameter symbols, in a fixed order
        self.families = {s.name: fam for s, fam in params.items()}
        self.bias = bias
        self.f = ACTIVATIONS[activation] if isinstance(activation, str) else CUSTOM[activation[1]][1]
        stencil = layer.stencil(spacing)
        self.weights = {j: sp.lambdify(self.symbols, w, "math") for j, w in sorted(stencil.items())}

    def stencil_at(self, theta, t, i):
        args = [param_at(theta[s.name], self.families[s.name], t, i) for s in self.symbols]
        return {j: float(w(*args)) for j, w in self.weights.items()}

    def step(self, z, theta, t, boundary, omega, alpha=0.0):
        """One sample, one layer: returns (z_next, Z) as lists."""
        n = len(z)
        norm = math.sqrt(sum(v * v for v in z))
        znext, pre = [], []
        for i in range(n):
            Z = 0.0
            for j, w in self.stencil_at(theta, t, i).items():
                Z += w * read(z, i + j, boundary)
            if self.bias is not None:
                Z -= param_at(theta["b"], self.bias, t, i)
            pre.append(Z)
            znext.append((1.0 - omega) * z[i] + omega * self.f(Z) - alpha * (norm - 1.0) * z[i])
        return znext, pre

    def forward(self, x, theta, layers, boundary, omega, alpha=0.0):
        """x (batch, n) -> trajectory (L+1, batch, n) and pre-activations (L, batch, n)."""
        theta = {k: np.asarray(v, np.float64) for k, v in theta.items()}
        x = np.asarray(x, np.float64)
        traj = np.zeros((layers + 1,) + x.shape)
        pre = np.zeros((layers,) + x.shape)
        traj[0] = x
        for s in range(x.shape[0]):
            z = [float(v) for v in x[s]]
            for t in range(layers):
                z, Z = self.step(z, theta, t, boundary, omega, alpha)
                traj[t + 1, s], pre[t, s] = z, Z
        return traj, pre


def assert_close(actual, expected, rel):
    expected = np.asarray(expected, np.float64)
    actual = np.asarray(actual)
    assert actual.shape == expected.shape
    scale = max(float(np.max(np.abs(expected))), 1e-300)
    np.testing.assert_allclose(actual.astype(np.float64), expected, rtol=rel, atol=rel * scale)


# ---------------------------------------------------------------------------- layers
def rotated_params(adr, shift):
    """U, D, R take the three families, rotated by ``shift`` so each symbol meets each family."""
    _, _, U, D, R = adr
    return {sym: FAMILIES[(k + shift) % 3] for k, sym in enumerate((U, D, R))}


def adr_transform(adr):
    q, z, U, D, R = adr
    return z + R * z - U * z.diff(q) + D * z.diff(q, 2)


ADR_VALUES = {"U": 0.3, "D": 0.15, "R": -0.1, "b": 0.1}


def build(transform, field, params, bias, activation, boundary, *, n=8, layers=3, spacing=0.8,
          omega=0.7, alpha=None, dtype="float64", values=None, scale=0.1, seed=3, **layer_kw):
    """Layer, compiled network, parameters and reference; ``activation`` a name or ("custom", key)."""
    given = activation if isinstance(activation, str) else CUSTOM[activation[1]][0]
    layer = npdegen.NeuralPDE(transform, field, activation=given, params=params, bias=bias, **layer_kw)
    net = layer.compile(n=n, spacing=spacing, layers=layers, omega=omega, boundary=boundary,
                        dtype=dtype, alpha=alpha)
    vals = {k: v for k, v in (values or {}).items() if k in net.shapes}
    theta = net.init_params(seed=seed, scale=scale, values=vals)
    ref = Reference(layer, params, bias, activation, spacing)
    return net, theta, ref


def check_all(net, theta, ref, x, boundary, omega=0.7, alpha=0.0, rel=1e-12):
    """forward, forward(trajectory=True) and step for every layer against the reference."""
    traj, _ = ref.forward(x, theta, net.layers, boundary, omega, alpha)
    assert_close(net.forward(x, theta), traj[-1], rel)
    assert_close(net.forward(x, theta, trajectory=True), traj, rel)
    for t in range(net.layers):
        assert_close(net.step(traj[t], theta, t), traj[t + 1], rel)
    return traj


# ---------------------------------------------------------------------------- tests
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("bias", FAMILIES)
def test_forward_matches_reference(adr, rng, bias, boundary, activation):
    """Every boundary × activation × bias family, with U, D, R spread over the three families."""
    q, z, U, D, R = adr
    params = rotated_params(adr, FAMILIES.index(bias))
    net, theta, ref = build(adr_transform(adr), z, params, bias, activation, boundary,
                            values=ADR_VALUES, seed=FAMILIES.index(bias))
    x = rng.uniform(-1, 1, (2, net.n))
    traj = check_all(net, theta, ref, x, boundary)
    assert np.all(np.isfinite(traj)) and np.max(np.abs(traj[-1])) > 1e-3   # a non-trivial output


@pytest.mark.parametrize("name", sorted(CUSTOM))
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_custom_activation(adr, rng, boundary, name):
    """SymPy-expression and Lambda activations (generated f) against math versions."""
    q, z, U, D, R = adr
    params = rotated_params(adr, 1)
    net, theta, ref = build(adr_transform(adr), z, params, "heterogeneous", ("custom", name), boundary,
                            values=ADR_VALUES)
    check_all(net, theta, ref, rng.uniform(-1, 1, (2, net.n)), boundary)


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_single_layer(adr, rng, boundary):
    q, z, U, D, R = adr
    params = rotated_params(adr, 2)
    net, theta, ref = build(adr_transform(adr), z, params, "time-dependent", "tanh", boundary, layers=1,
                            values=ADR_VALUES)
    assert theta["b"].shape == (1, net.n)
    check_all(net, theta, ref, rng.uniform(-1, 1, (2, net.n)), boundary)


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_forward_without_bias(adr, rng, boundary):
    q, z, U, D, R = adr
    params = {U: "heterogeneous", D: "homogeneous", R: "time-dependent"}
    net, theta, ref = build(adr_transform(adr), z, params, None, "tanh", boundary, values=ADR_VALUES)
    assert "b" not in theta
    check_all(net, theta, ref, rng.uniform(-1, 1, (2, net.n)), boundary)


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("accuracy,n", [(4, 9), (6, 10)])
def test_wider_central_stencil(adr, rng, boundary, accuracy, n):
    """accuracy 4 / 6: halo 2 / 3, so the Neumann mirror and periodic wrap reach several cells."""
    q, z, U, D, R = adr
    params = {U: "heterogeneous", D: "time-dependent"}
    net, theta, ref = build(-U * z.diff(q) + D * z.diff(q, 2), z, params, "heterogeneous", "tanh",
                            boundary, n=n, accuracy=accuracy, values=ADR_VALUES)
    assert net.halo == accuracy // 2
    assert set(ref.weights) == set(range(-net.halo, net.halo + 1))
    check_all(net, theta, ref, rng.uniform(-1, 1, (2, n)), boundary)


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_adr_layer_at_accuracy_4(adr, rng, boundary):
    """The full ADR layer (with its zeroth-order term z + R z) at accuracy 4.

    Regression: the exact identity stencil {0: 1} of the order-0 term used to be capped at
    accuracy 3 by ``achieved_accuracy`` (npdegen/derive/fornberg.py), so this layer raised
    ``ValueError: offsets (0,) give accuracy 3 for the order-0 derivative``.
    """
    q, z, U, D, R = adr
    params = {U: "heterogeneous", D: "homogeneous", R: "time-dependent"}
    net, theta, ref = build(adr_transform(adr), z, params, "heterogeneous", "tanh", boundary,
                            n=9, accuracy=4, values=ADR_VALUES)
    check_all(net, theta, ref, rng.uniform(-1, 1, (2, 9)), boundary)


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("offsets", [(-2, -1, 0), (0, 1, 2), (-1, 0, 1, 2)])
def test_one_sided_offsets(adr, rng, boundary, offsets):
    q, z, U, D, R = adr
    params = {U: "heterogeneous", R: "time-dependent"}
    net, theta, ref = build(z + R * z - U * z.diff(q), z, params, "homogeneous", "sigmoid", boundary,
                            n=7, offsets=offsets, values=ADR_VALUES)
    assert set(ref.weights) == set(offsets)
    check_all(net, theta, ref, rng.uniform(-1, 1, (2, 7)), boundary)


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_exp_coefficient(adr, rng, boundary):
    """A coefficient ``exp(logD)``: the weights are nonlinear in the parameter."""
    q, z, U, D, R = adr
    logD = sp.Symbol("logD")
    params = {logD: "heterogeneous", U: "homogeneous"}
    net, theta, ref = build(z - U * z.diff(q) + sp.exp(logD) * z.diff(q, 2), z, params, "time-dependent",
                            "softplus", boundary, values={"logD": -2.0, "U": 0.2, "b": 0.1}, scale=0.3)
    check_all(net, theta, ref, rng.uniform(-1, 1, (2, net.n)), boundary)


@pytest.mark.parametrize("activation", ["tanh", "identity", "square"])
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_soft_normalisation(adr, rng, boundary, activation):
    q, z, U, D, R = adr
    params = {U: "heterogeneous", D: "homogeneous", R: "time-dependent"}
    net, theta, ref = build(adr_transform(adr), z, params, "heterogeneous", activation, boundary,
                            alpha=0.1, values=ADR_VALUES)
    assert net.alpha == 0.1
    x = rng.uniform(-1, 1, (2, net.n))
    check_all(net, theta, ref, x, boundary, alpha=0.1)
    # the normalisation term really acts: without it the reference differs
    plain, _ = ref.forward(x, theta, net.layers, boundary, 0.7, 0.0)
    assert np.max(np.abs(plain[-1] - net.forward(x, theta))) > 1e-3


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_one_dimensional_input(adr, rng, boundary):
    q, z, U, D, R = adr
    params = {U: "heterogeneous", D: "homogeneous", R: "time-dependent"}
    net, theta, ref = build(adr_transform(adr), z, params, "heterogeneous", "tanh", boundary,
                            values=ADR_VALUES)
    x = rng.uniform(-1, 1, net.n)
    traj, _ = ref.forward(x[None], theta, net.layers, boundary, 0.7)
    out = net.forward(x, theta)
    assert out.shape == (net.n,)
    assert_close(out, traj[-1, 0], 1e-12)
    full = net.forward(x, theta, trajectory=True)
    assert full.shape == (net.layers + 1, net.n)
    assert_close(full, traj[:, 0], 1e-12)
    step = net.step(x, theta, 0)
    assert step.shape == (net.n,)
    assert_close(step, traj[1, 0], 1e-12)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_float32_matches_float64_reference(adr, rng, boundary, activation):
    q, z, U, D, R = adr
    params = {U: "heterogeneous", D: "homogeneous", R: "time-dependent"}
    net, theta, ref = build(adr_transform(adr), z, params, "heterogeneous", activation, boundary,
                            dtype="float32", values=ADR_VALUES)
    assert all(v.dtype == np.float32 for v in theta.values())
    x = rng.uniform(-1, 1, (2, net.n)).astype(np.float32)
    traj, _ = ref.forward(x, theta, net.layers, boundary, 0.7)   # float64 reference, float32 inputs
    out = net.forward(x, theta)
    assert out.dtype == np.float32
    assert_close(out, traj[-1], 1e-5)
    assert_close(net.forward(x, theta, trajectory=True), traj, 1e-5)
    assert_close(net.step(x, theta, 0), traj[1], 1e-5)


def test_float32_soft_normalisation(adr, rng):
    q, z, U, D, R = adr
    params = {U: "heterogeneous", D: "homogeneous", R: "time-dependent"}
    net, theta, ref = build(adr_transform(adr), z, params, "heterogeneous", "tanh", "neumann",
                            dtype="float32", alpha=0.1, values=ADR_VALUES)
    x = rng.uniform(-1, 1, (2, net.n)).astype(np.float32)
    traj, _ = ref.forward(x, theta, net.layers, "neumann", 0.7, 0.1)
    assert_close(net.forward(x, theta), traj[-1], 1e-5)


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_forward_large_batch(adr, rng, boundary):
    """A (520, 150) batch: large enough for the kernels' column blocks (and threads on several
    cores). Samples are independent, so the reference runs on a few of them only."""
    q, z, U, D, R = adr
    params = {U: "heterogeneous", D: "homogeneous", R: "time-dependent"}
    net, theta, ref = build(adr_transform(adr), z, params, "time-dependent", "softplus", boundary,
                            n=150, layers=2, alpha=0.05, accuracy=4, values=ADR_VALUES)
    x = rng.uniform(-1, 1, (520, 150))
    rows = [0, 63, 64, 300, 519]
    traj, _ = ref.forward(x[rows], theta, net.layers, boundary, 0.7, 0.05)
    full = net.forward(x, theta, trajectory=True)
    assert_close(full[:, rows], traj, 1e-12)
    assert_close(net.forward(x, theta)[rows], traj[-1], 1e-12)
    th64 = {k: np.asarray(v, np.float64) for k, v in theta.items()}
    one_step = [ref.step(list(x[r]), th64, 1, boundary, 0.7, 0.05)[0] for r in rows]
    assert_close(net.step(x, theta, 1)[rows], one_step, 1e-12)
    # each row as its own (small) batch gives the same numbers
    np.testing.assert_allclose(full[:, rows], net.forward(x[rows], theta, trajectory=True), rtol=1e-13, atol=1e-15)


def test_reference_boundary_logic():
    """The reference's own index logic on a tiny example (so the reference is checked too)."""
    z = [10.0, 11.0, 12.0, 13.0]
    assert [read(z, k, "periodic") for k in (-2, -1, 4, 5)] == [12.0, 13.0, 10.0, 11.0]
    assert [read(z, k, "dirichlet") for k in (-2, -1, 4, 5)] == [0.0, 0.0, 0.0, 0.0]
    # z[-1] = z[0], z[-2] = z[1]; z[n] = z[n-1], z[n+1] = z[n-2]
    assert [read(z, k, "neumann") for k in (-2, -1, 4, 5)] == [11.0, 10.0, 13.0, 12.0]
