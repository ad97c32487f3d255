"""Physics report (issue 5, docs/theory.md §2): symbolic moments, cumulants and the effective PDE of L
relaxed layers, checked against the closed forms and against the compiled network."""
import json
from math import factorial

import numpy as np
import pytest
import sympy as sp

from npdegen import NeuralPDE
from npdegen.inspect import physics_report


@pytest.fixture(scope="module")
def linear_adr():
    q = sp.Symbol("q")
    z = sp.Function("z")(q)
    U, D, R = sp.symbols("U D R")
    return NeuralPDE(z + R * z - U * z.diff(q) + D * z.diff(q, 2), z,
                     params={U: "homogeneous", D: "homogeneous", R: "homogeneous"})


def test_warming_hyett_anti_diffusion_and_reaction(linear_adr):
    rep = physics_report(linear_adr)            # ω, Δ symbolic; f = id so f' = 1
    U, D, R = sp.symbols("U D R")
    w = [s for s in rep[2].coefficient.free_symbols if s.name == "omega"][0]
    assert sp.simplify(rep[0].coefficient - sp.log(1 + w * R)) == 0
    assert sp.simplify(rep[1].coefficient + w * U / (1 + w * R)) == 0
    assert sp.simplify(rep[2].coefficient.subs(R, 0) - (w * D - w**2 * U**2 / 2)) == 0
    # one application: moments W0 = 1 + R, W1 = -U, W2 = 2D; normalised cumulant κ2 = 2D/(1+R) - U²/(1+R)²
    assert [sp.simplify(rep[k].moment - e) for k, e in enumerate([1 + R, -U, 2 * D])] == [0, 0, 0]
    assert sp.simplify(rep[2].cumulant - (2 * D / (1 + R) - U**2 / (1 + R) ** 2)) == 0
    assert [r.process for r in rep] == ["reaction", "advection", "diffusion", "dispersion", "hyper-diffusion"]
    assert "ANTI-DIFFUSION" in rep[2].meaning


def test_activation_slope_enters(linear_adr):
    q = sp.Symbol("q")
    z = sp.Function("z")(q)
    U, D, R = sp.symbols("U D R")
    layer = NeuralPDE(z + R * z - U * z.diff(q) + D * z.diff(q, 2), z, activation="tanh",
                      params={U: "homogeneous", D: "homogeneous", R: "homogeneous"})
    x0 = 0.7
    rep = physics_report(layer, operating_point=x0, omega=0.5)
    s = 1 - np.tanh(x0) ** 2
    assert float(rep.slope) == pytest.approx(s)
    # c1 = −ωsU / (1 − ω + ωs(1 + R))
    got = float(rep[1].coefficient.subs({U: 0.3, R: 0.1}))
    assert got == pytest.approx(-0.5 * s * 0.3 / (1 - 0.5 + 0.5 * s * 1.1), rel=1e-12)


def test_effective_pde_matches_the_compiled_network(linear_adr):
    """Cumulants add: after L layers the profile's log-mass, mean, variance and third cumulant
    change by L·K0, −L·K1, L·K2, −L·K3 (K_m = m!·c_m·dt), exactly for a linear periodic layer."""
    U, D, R, omega, h, L, n = 0.3, 0.4, -0.1, 0.7, 0.5, 20, 256
    params = {"U": U * h, "D": D * h**2, "R": R}
    rep = physics_report(linear_adr, params, spacing=h, omega=omega, layers=L)
    K = [factorial(m) * float(rep[m].values[0]) for m in range(4)]
    net = linear_adr.compile(n=n, spacing=h, layers=L, omega=omega)
    q = h * np.arange(n)
    x = np.exp(-0.5 * ((q - q.mean()) / 3.0) ** 2)
    traj = net.forward(x, net.init_params(scale=0.0, values=params), trajectory=True)

    def cumulants(p):
        mass = p.sum()
        mean = (q * p).sum() / mass
        c = q - mean
        return np.log(mass), mean, (c**2 * p).sum() / mass, (c**3 * p).sum() / mass

    first, last = cumulants(traj[0]), cumulants(traj[-1])
    assert last[0] - first[0] == pytest.approx(L * K[0], rel=1e-10)
    assert last[1] - first[1] == pytest.approx(-L * K[1], rel=1e-10)
    assert last[2] - first[2] == pytest.approx(L * K[2], rel=1e-9)
    assert last[3] - first[3] == pytest.approx(-L * K[3], rel=1e-7, abs=1e-9)


def test_numeric_flags_and_sites(linear_adr):
    D = np.array([0.01, 0.02, 0.3])
    rep = physics_report(linear_adr, {"U": 0.4, "D": D, "R": 0.0}, spacing=1.0, omega=1.0)
    np.testing.assert_allclose(rep[2].values, D - 0.4**2 / 2)          # ωD − ω²U²/2
    np.testing.assert_allclose(rep[2].moments, 2 * D)
    assert rep.flags == ["diffusion: ANTI-DIFFUSION at 2 of 3 sites"]
    text = str(rep)
    assert "ANTI-DIFFUSION at 2 of 3 sites" in text and "effective PDE" in text
    data = json.loads(json.dumps(rep.to_dict(), allow_nan=False))
    assert data["terms"][2]["values"] == pytest.approx(list(D - 0.08))
    single = physics_report(linear_adr, {"U": 0.1, "D": 0.2, "R": -0.1}, spacing=1.0, omega=1.0)
    assert single[1].meaning.startswith("transport towards +q") and single[0].meaning == "decay"
    assert single[2].meaning == "smoothing" and not single.flags


def test_hyperdiffusion_is_named_and_signed():
    q = sp.Symbol("q")
    z = sp.Function("z")(q)
    e = sp.Symbol("e")
    layer = NeuralPDE(z - e * z.diff(q, 4), z, params={e: "homogeneous"})
    rep = physics_report(layer, {"e": 0.01}, spacing=1.0, omega=1.0, max_order=4)
    assert rep[4].process == "hyper-diffusion"
    assert rep[4].values[0] < 0 and rep[4].meaning == "damps short waves"
    bad = physics_report(layer, {"e": -0.01}, spacing=1.0, omega=1.0, max_order=4)
    assert "ANTI-HYPER-DIFFUSION" in bad[4].flag


def test_bad_input(linear_adr):
    with pytest.raises(ValueError, match="layers"):
        physics_report(linear_adr, layers=0)
    with pytest.raises(ValueError, match="max_order"):
        physics_report(linear_adr, max_order=-1)
    with pytest.raises(ValueError, match="still symbolic"):
        physics_report(linear_adr, {"U": 0.1, "D": 0.1, "R": 0.0})
    with pytest.raises(ValueError, match="omega"):
        physics_report(linear_adr, omega=float("nan"))
