"""The step-IR stability certificate: agrees with the 1-D symbolic certificate, closed forms in N-D,
Lax-Richtmyer for growth terms, nonlinear layers linearised at a state."""
import numpy as np
import pytest
import sympy as sp

import npdegen
from npdegen.inspect.stability_nd import step_stability

q, x, y = sp.symbols("q x y")
U, D, R, nu, rho, Dx, Dy = sp.symbols("U D R nu rho Dx Dy")
z1 = sp.Function("z")(q)
z2 = sp.Function("z")(x, y)


@pytest.mark.parametrize("values, omega", [({"U": 0.3, "D": 0.2, "R": 0.0}, 0.8), ({"U": 0.3, "D": 0.6, "R": 0.0}, 1.0),
                                           ({"U": 0.0, "D": 0.25, "R": -0.1}, 1.5), ({"U": 0.5, "D": 0.1, "R": 0.0}, 0.5)])
def test_agrees_with_the_symbolic_1d_certificate(values, omega):
    layer = npdegen.NeuralPDE(z1 + R * z1 - U * z1.diff(q) + D * z1.diff(q, 2), z1,
                              params={U: "homogeneous", D: "homogeneous", R: "homogeneous"})
    new, old = step_stability(layer, values, omega=omega, modes=2048), npdegen.stability(layer, values, omega=omega)
    assert new.stable == old.stable
    assert new.max_gain == pytest.approx(old.max_gain, rel=1e-5)
    assert new.omega_max_von_neumann == pytest.approx(old.omega_range[1], rel=1e-4)


@pytest.mark.parametrize("dx, dy, stable", [(0.2, 0.25, True), (0.25, 0.25, True), (0.26, 0.25, False), (0.1, 0.41, False)])
def test_2d_diffusion_closed_form(dx, dy, stable):
    """G = 1 - 4 w dx sin^2(t_x/2) - 4 w dy sin^2(t_y/2): stable iff omega (dx + dy) <= 1/2."""
    layer = npdegen.NeuralPDE(z2 + Dx * z2.diff(x, 2) + Dy * z2.diff(y, 2), z2, params={Dx: "homogeneous", Dy: "homogeneous"})
    cert = step_stability(layer, {"Dx": dx, "Dy": dy}, omega=1.0)
    assert cert.stable is stable and cert.criterion == ("von Neumann" if stable else "none")
    assert cert.omega_max_von_neumann == pytest.approx(0.5 / (dx + dy), rel=1e-9)
    assert cert.markov is (dx + dy <= 0.5)


def test_fisher_kpp_is_lax_richtmyer_stable_not_unstable():
    layer = npdegen.NeuralPDE(z1 + nu * z1.diff(q, 2) + rho * z1 * (1 - z1), z1, params={nu: "homogeneous", rho: "homogeneous"})
    cert = step_stability(layer, {"nu": 0.2, "rho": 0.1}, omega=1.0)
    assert cert.stable and cert.criterion == "Lax-Richtmyer"
    assert cert.max_gain == pytest.approx(1.1) and cert.growth_per_layer == pytest.approx(0.1)
    assert cert.omega_max_von_neumann == 0.0 and cert.omega_max_lax_richtmyer == pytest.approx(2.5)
    assert "reaction" in cert.binding and "Lax-Richtmyer" in str(cert)
    at_one = step_stability(layer, {"nu": 0.2, "rho": 0.1}, omega=1.0, state=np.ones(16))   # decay at z = 1
    assert at_one.stable and at_one.criterion == "von Neumann"
    too_big = step_stability(layer, {"nu": 0.6, "rho": 0.1}, omega=1.0)                  # omega d > 1/2
    assert not too_big.stable and too_big.criterion == "none"


def test_burgers_linearised_at_a_state_uses_the_local_speed():
    """Frozen-coefficient analysis of u - dt u u_q + dt nu u_qq: central advection with speed u needs
    diffusion: omega (dt u / dx)^2 <= 2 dt nu / dx^2 (long waves) fails for large u."""
    dt = sp.Rational(1, 10)
    layer = npdegen.NeuralPDE(z1 - dt * z1 * z1.diff(q) + dt * nu * z1.diff(q, 2), z1, params={nu: "homogeneous"})
    slow = step_stability(layer, {"nu": 1.0}, state=np.full(16, 0.5), omega=1.0)
    fast = step_stability(layer, {"nu": 1.0}, state=np.full(16, 8.0), omega=1.0)
    assert slow.stable and not fast.stable


def test_bad_input():
    layer = npdegen.NeuralPDE(z1 + nu * z1.diff(q, 2), z1, params={nu: "homogeneous"})
    with pytest.raises(ValueError, match="omega must be a positive"):
        step_stability(layer, {"nu": 0.1}, omega=-1)
    with pytest.raises(ValueError, match="theta lacks the parameter"):
        step_stability(layer, {}, omega=1)


def test_inspect_cli_certifies_nd_and_nonlinear_specs(capsys):
    from pathlib import Path
    from npdegen.cli import main
    examples = Path(__file__).resolve().parent.parent / "examples"
    args = ["inspect", str(examples / "adr_2d.toml"), "--omega", "0.8"] + [
        f"--param={k}={v}" for k, v in dict(U=0.1, V=0, Dxx=0.1, Dxy=0.02, Dyy=0.1, R=0).items()]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "diffusion (xy)" in out and "stable (von Neumann)" in out and "omega <= 2.5" in out
    assert main(["inspect", str(examples / "burgers.toml"), "--param", "nu=0.5"]) == 0
    out = capsys.readouterr().out
    assert "dG/dz_m1" in out and "linearised at z = 0" in out


def test_npdegen_stability_dispatches_to_the_step_certificate():
    """npdegen.stability works for N-D layers and networks too, and the training monitor with it."""
    from npdegen.inspect import stability_monitor
    layer = npdegen.NeuralPDE(z2 + Dx * z2.diff(x, 2) + Dy * z2.diff(y, 2), z2, params={Dx: "homogeneous", Dy: "homogeneous"})
    cert = npdegen.stability(layer, {"Dx": 0.2, "Dy": 0.2}, omega=1.0)
    assert cert.stable and cert.omega_range[1] == pytest.approx(1.25)
    net = layer.compile(n=(6, 5), omega=1.5, boundary=("periodic", "neumann"))
    assert not npdegen.stability(net, {"Dx": 0.2, "Dy": 0.2}).stable        # omega 1.5 > 1.25
    monitor = stability_monitor(net)
    message = monitor({"Dx": np.array(0.2), "Dy": np.array(0.2)})
    assert "left the stable region" in message and "1.25" in message
