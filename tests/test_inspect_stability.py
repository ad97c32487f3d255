"""Stability certificate (issue 5, docs/theory.md §5): the symbolic G(θ), the ω bounds, agreement with
brute-force simulation of the linearised scheme, positivity, Péclet and conservation."""
import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings, strategies as st

from npdegen import NeuralPDE, stability
from npdegen.inspect import activation_slope, stability_monitor
from npdegen.inspect.vonneumann import OMEGA, SLOPE, THETA


@pytest.fixture(scope="module")
def adr_layer():
    q = sp.Symbol("q")
    z = sp.Function("z")(q)
    U, D, R = sp.symbols("U D R")
    return NeuralPDE(z + R * z - U * z.diff(q) + D * z.diff(q, 2), z,
                     params={U: "homogeneous", D: "homogeneous", R: "homogeneous"})


def test_symbolic_G_is_the_model_formula(adr_layer):
    """G = 1 + ω[(s(1+r) − 1) − 4sd sin²(θ/2) − i s c sin θ], c = U/Δ, d = D/Δ², r = R."""
    cert = stability(adr_layer, {"U": 0.3, "D": 0.2, "R": 0.0})
    U, D, R, Delta = sp.symbols("U D R Delta")
    generic = cert._G_generic
    s, w, th = SLOPE, OMEGA, THETA
    c, d = U / Delta, D / Delta**2
    model = 1 + w * ((s * (1 + R) - 1) - 4 * s * d * sp.sin(th / 2) ** 2 - sp.I * s * c * sp.sin(th))
    names = {str(x): x for x in generic.free_symbols}
    assert sp.simplify(generic.subs(names) - model.subs({U: names["U"], D: names["D"], R: names["R"],
                                                          Delta: names["Delta"]})) == 0
    # numerically: |G| on the grid is the modulus of that formula
    theta = cert.theta
    G = 1 + 1.0 * (-4 * 0.2 * np.sin(theta / 2) ** 2 - 1j * 0.3 * np.sin(theta))
    np.testing.assert_allclose(cert.gain, np.abs(G), rtol=1e-12)


@settings(max_examples=60, deadline=None)
@given(c=st.floats(0.02, 1.5), d=st.floats(0.01, 0.8), spacing=st.sampled_from([1.0, 0.25]))
def test_model_bounds_reproduced(adr_layer, c, d, spacing):
    """r = 0, s = 1: stable ⇔ ω c² ≤ 2d and ω d ≤ 1/2, with the binding one named."""
    params = {"U": c * spacing, "D": d * spacing**2, "R": 0.0}
    cert = stability(adr_layer, params, spacing=spacing, omega=1.0)
    bound = min(2 * d / c**2, 1 / (2 * d))
    assert cert.omega_range[1] == pytest.approx(bound, rel=1e-9)
    assert cert.stable == (1.0 <= bound * (1 + 1e-9))
    if 2 * d / c**2 < 1 / (2 * d) * (1 - 1e-6):
        assert cert.binding.startswith("long-wave") and "omega*s*c^2 <= 2d" in cert.binding
    elif 1 / (2 * d) < 2 * d / c**2 * (1 - 1e-6):
        assert cert.binding.startswith("grid-scale") and "omega*d <= 1/2" in cert.binding
    # positivity: A, B >= 0 ⇔ |c| <= 2d (cell Péclet c/d <= 2); diagonal 1 - ω + ω(1 - 2d) >= 0
    assert cert.peclet == pytest.approx(c / d)
    assert cert.positive == (c <= 2 * d * (1 + 1e-12) and 1 - 2 * d >= -1e-12)
    assert cert.markov == cert.positive          # r = 0: rows sum to 1
    assert cert.conservative                     # homogeneous, periodic, r = 0


def _brute_force_grows(U, D, R, omega, s, n=64, doublings=40, seed=0):
    """Does ‖z_L‖ grow for the linearised scheme z ← (1 − ω)z + ωs W z (periodic, central ADR)?
    z_L = M^L z_0 with L = 2^doublings layers, by repeated squaring of the n×n step matrix M."""
    I = np.eye(n)
    S = np.roll(I, 1, axis=1)                    # (S z)_i = z_{i+1}
    A, B, C = U / 2 + D, -U / 2 + D, 1 + R - 2 * D
    W = A[:, None, None] * S.T + C[:, None, None] * I + B[:, None, None] * S
    M = (1 - omega)[:, None, None] * I + (omega * s)[:, None, None] * W
    log_scale = np.zeros(len(U))
    for _ in range(doublings):
        M = M @ M
        m = np.abs(M).max(axis=(1, 2))
        M /= m[:, None, None]
        log_scale = 2 * log_scale + np.log(m)
    z0 = np.random.default_rng(seed).standard_normal(n)
    return log_scale + np.log(np.linalg.norm(M @ z0, axis=1) / np.linalg.norm(z0)) > 0


def test_verdict_agrees_with_brute_force_simulation(adr_layer):
    """≥ 500 random homogeneous (U, D, R, ω) (and slopes s): the certificate's class matches whether
    ‖z_L‖ grows, with no mismatch outside a 1% band of ω around the boundary. Half of the draws
    are placed within 20% of the MODEL bound to test the boundary itself."""
    rng = np.random.default_rng(2026)
    m = 600
    U = rng.uniform(-1, 1, m)
    D = rng.uniform(0.01, 0.6, m)
    R = np.where(rng.random(m) < 0.5, 0.0, rng.uniform(-0.25, 0.03, m))
    s = np.where(rng.random(m) < 0.7, 1.0, rng.uniform(0.3, 1.0, m))
    omega = rng.uniform(0.05, 1.95, m)
    near = (R == 0) & (s == 1)                       # closed form: ω* = min(2d/c², 1/(2d))
    bound = np.minimum(2 * D / U**2, 1 / (2 * D))
    factor = rng.uniform(0.8, 1.2, m)
    omega = np.where(near & (bound * factor < 1.95), bound * factor, omega)
    certs = [stability(adr_layer, {"U": u, "D": d, "R": r}, omega=w, slope=sl)
             for u, d, r, w, sl in zip(U, D, R, omega, s)]
    predicted_stable = np.array([c.stable for c in certs])
    omega_max = np.array([c.omega_range[1] for c in certs])
    grows = _brute_force_grows(U, D, R, omega, s)
    band = np.abs(omega - omega_max) <= 0.01 * omega_max
    mismatch = (predicted_stable == grows) & ~band
    assert len(certs) >= 500 and 0.2 < grows.mean() < 0.8
    assert not mismatch.any(), [(U[i], D[i], R[i], omega[i], s[i], omega_max[i]) for i in np.where(mismatch)[0]]
    # the closed-form MODEL bound is what the certificate finds for r = 0, s = 1
    np.testing.assert_allclose(omega_max[near], bound[near], rtol=1e-9)


def test_compiled_network_agrees(adr_layer):
    """The generated kernel itself (f = identity) grows exactly when the certificate says unstable."""
    net = adr_layer.compile(n=32, layers=300, omega=1.0)
    x = np.random.default_rng(0).standard_normal(32)
    for params, omega in [({"U": 0.3, "D": 0.2, "R": -0.01}, 1.0), ({"U": 0.9, "D": 0.1, "R": 0.0}, 1.0),
                          ({"U": 0.1, "D": 0.45, "R": -0.02}, 1.5), ({"U": 0.1, "D": 0.3, "R": 0.01}, 0.5)]:
        net.omega = omega
        theta = net.init_params(scale=0.0, values=params)
        traj = net.forward(x, theta, trajectory=True)
        grows = np.linalg.norm(traj[-1]) > np.linalg.norm(traj[150])
        assert stability(net, theta).stable != grows, (params, omega)


def test_heterogeneous_frozen_coefficients(adr_layer):
    n = 24
    U = np.linspace(0.0, 0.8, n)
    cert = stability(adr_layer, {"U": U, "D": 0.2, "R": 0.0}, omega=1.0)
    assert cert.heterogeneous
    assert cert.omega_range[1] == pytest.approx(min(2 * 0.2 / 0.8**2, 1 / 0.4))
    long_wave = next(c for c in cert.constraints if c.name.startswith("long-wave"))
    assert long_wave.site == (n - 1,)            # the site with the largest U binds
    assert not cert.conservative and cert.column_sum_error > 0.01   # pull form: columns ≠ 1
    # time-dependent parameters: per layer and site
    td = stability(adr_layer, {"U": np.stack([U, U / 2]), "D": 0.2, "R": 0.0}, omega=1.0)
    assert td.omega_range[1] == pytest.approx(cert.omega_range[1])


def test_reaction_and_anti_diffusion(adr_layer):
    grow = stability(adr_layer, {"U": 0.0, "D": 0.1, "R": 0.05}, omega=0.5)
    assert not grow.stable and grow.binding.startswith("growth") and grow.omega_range[1] == 0
    decay = stability(adr_layer, {"U": 0.0, "D": 0.1, "R": -0.5}, omega=1.0)
    assert decay.stable
    anti = stability(adr_layer, {"U": 0.2, "D": -0.05, "R": 0.0}, omega=0.5)
    assert not anti.stable and anti.binding.startswith("anti-diffusion")
    # docs/theory.md §5: pure advection with central differences (d = 0) is unstable for every ω
    pure = stability(adr_layer, {"U": 0.2, "D": 0.0, "R": 0.0}, omega=0.01)
    assert not pure.stable and pure.binding.startswith("advection without diffusion")
    assert pure.omega_range == (0.0, 0.0)


def test_slope_from_the_activation(adr):
    q, z, U, D, R = adr
    layer = NeuralPDE(z + R * z - U * z.diff(q) + D * z.diff(q, 2), z, activation="tanh",
                      params={U: "homogeneous", D: "homogeneous", R: "homogeneous"})
    assert activation_slope(layer, 0.5) == pytest.approx(1 - np.tanh(0.5) ** 2)
    flat = stability(layer, {"U": 0.9, "D": 0.1, "R": 0.0}, omega=1.0, operating_point=2.0)
    assert flat.slope == pytest.approx(1 - np.tanh(2.0) ** 2)
    assert flat.stable and not stability(layer, {"U": 0.9, "D": 0.1, "R": 0.0}, omega=1.0).stable


def test_report_text_and_json(adr_layer):
    import json
    cert = stability(adr_layer, {"U": 0.5, "D": 0.1, "R": 0.0}, omega=1.0)
    text = str(cert)
    assert "UNSTABLE" in text and "VIOLATED" in text and "Peclet" in text
    data = json.loads(json.dumps(cert.to_dict(), allow_nan=False))
    assert data["stable"] is False and data["omega_range"][1] == pytest.approx(0.8)


def test_monitor_warns_once(adr_layer):
    net = adr_layer.compile(n=16, layers=2, omega=1.0)
    monitor = stability_monitor(net)
    ok = net.init_params(scale=0.0, values={"U": 0.1, "D": 0.2})
    bad = net.init_params(scale=0.0, values={"U": 0.9, "D": 0.1})
    assert monitor(ok) is None
    message = monitor(bad)
    assert message and "left the stable region" in message and "long-wave" in message
    assert monitor(bad) is None


@pytest.mark.parametrize("params, kw, exc, match", [
    ({"U": 0.1, "D": 0.1}, {}, ValueError, "missing"),
    ({"U": 0.1, "D": 0.1, "R": 0.0, "X": 1.0}, {}, ValueError, "unknown"),
    ({"U": np.nan, "D": 0.1, "R": 0.0}, {}, ValueError, "NaN"),
    ({"U": "a", "D": 0.1, "R": 0.0}, {}, TypeError, "real numbers"),
    ({"U": 0.1, "D": 0.1, "R": 0.0}, {"omega": -1.0}, ValueError, "omega"),
    ({"U": 0.1, "D": 0.1, "R": 0.0}, {"spacing": 0.0}, ValueError, "spacing"),
    ([0.1, 0.1, 0.0], {}, TypeError, "dict"),
])
def test_bad_input(adr_layer, params, kw, exc, match):
    with pytest.raises(exc, match=match):
        stability(adr_layer, params, **kw)
