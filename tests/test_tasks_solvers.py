"""npdegen.tasks solvers against independent references: closed forms, Cole-Hopf, convergence orders, front speed."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy.special import ive

from npdegen.tasks import (SineSum, advection, bramson_position, burgers, burgers_on_grid, cell_centres, cole_hopf,
                           fisher_kpp, front_position, logistic, velocity, vorticity)
from npdegen.tasks.fisher import strang
from npdegen.tasks.fourier import resample, restrict, upsample
from npdegen.tasks.spectral import burgers_refinement, burgers_steps
from npdegen.tasks.twod import vorticity_on_grid


def smooth_ic(samples, seed, **kw):
    return SineSum.draw(samples, np.random.default_rng(seed), p_abs=0, p_window=0, **kw)


# ---------------------------------------------------------------- Fourier tools
@settings(derandomize=True, max_examples=15, deadline=None)
@given(n=st.integers(4, 40), r=st.sampled_from([1, 3, 5]), seed=st.integers(0, 100))
def test_restrict_inverts_upsample(n, r, seed):
    u = np.random.default_rng(seed).standard_normal((2, n))
    np.testing.assert_allclose(restrict(upsample(u, r, 1), r, 1), u, atol=1e-12)


@pytest.mark.parametrize("n", [16, 17])
def test_upsample_is_the_trigonometric_interpolant(n):
    """Every mode below Nyquist, and the cell-centre Nyquist sine, are interpolated exactly."""
    x, xf = cell_centres(n), cell_centres(3 * n)
    for k in range(1, (n + 1) // 2):
        u = np.cos(2 * np.pi * k * x + 0.7)
        np.testing.assert_allclose(upsample(u[None], 3, 1)[0], np.cos(2 * np.pi * k * xf + 0.7), atol=1e-12)
    if n % 2 == 0:
        np.testing.assert_allclose(upsample(np.sin(np.pi * n * x)[None], 3, 1)[0], np.sin(np.pi * n * xf), atol=1e-12)


@pytest.mark.parametrize("m, n", [(96, 64), (97, 64), (64, 96), (50, 37)])
def test_resample_evaluates_the_interpolant_at_other_centres(m, n):
    xm, xn = cell_centres(m), cell_centres(n)
    top = (min(m, n) - 1) // 2                       # modes below both grids' Nyquist
    u = sum(np.cos(2 * np.pi * k * xm + 0.3 * k) for k in range(1, top + 1))
    expected = sum(np.cos(2 * np.pi * k * xn + 0.3 * k) for k in range(1, top + 1))
    np.testing.assert_allclose(resample(u[None], n, 1)[0], expected, atol=1e-11)


def test_resample_agrees_with_restrict_and_upsample():
    u = np.random.default_rng(0).standard_normal((2, 12, 12))
    fine = upsample(u, 3, 2)
    np.testing.assert_allclose(resample(u, 36, 2), fine, atol=1e-12)
    np.testing.assert_allclose(resample(fine, 12, 2), restrict(fine, 3, 2), atol=1e-12)


# ---------------------------------------------------------------- advection
@pytest.mark.parametrize("beta,T", [(0.1, 0.5), (0.4, 0.5), (1.0, 2.0), (-0.3, 0.7)])
def test_advection_shifts_every_mode_exactly(beta, T):
    n = 32
    x = cell_centres(n)
    k = np.arange(1, n // 2)[:, None]
    u0 = np.sin(2 * np.pi * k * x + 0.3)
    np.testing.assert_allclose(advection(u0, beta, T), np.sin(2 * np.pi * k * (x - beta * T) + 0.3), atol=1e-12)


def test_advection_of_sine_sums_is_the_function_at_x_minus_beta_t():
    ic = smooth_ic(6, 0)
    x = cell_centres(64)
    np.testing.assert_allclose(advection(ic(x), 0.4, 0.5), ic(np.mod(x - 0.2, 1.0)), atol=1e-12)


def test_advection_diffusion_2d_closed_form():
    """Each mode A sin(2π m·x + φ) becomes A e^{-κ|2πm|²T} sin(2π m·(x - βT) + φ)."""
    ic = smooth_ic(3, 1, dims=2, modes=3, max_mode=4)
    n, beta, kappa, T = 24, (0.5, -0.25), 0.01, 0.3
    x = cell_centres(n)
    X, Y = np.meshgrid(x, x, indexing="ij")
    expected = np.zeros((3, n, n))
    for s in range(3):
        for i in range(3):
            m = ic.mode[s, i]
            decay = np.exp(-kappa * (2 * np.pi) ** 2 * (m ** 2).sum() * T)
            expected[s] += ic.sign[s] * ic.amplitude[s, i] * decay * np.sin(
                2 * np.pi * (m[0] * (X - beta[0] * T) + m[1] * (Y - beta[1] * T)) + ic.phase[s, i])
    np.testing.assert_allclose(advection(ic(x, x), beta, T, kappa=kappa, dims=2), expected, atol=1e-12)


@settings(derandomize=True, max_examples=10, deadline=None)
@given(t1=st.floats(0, 2), t2=st.floats(0, 2), beta=st.floats(-1, 1))
def test_advection_is_a_flow(t1, t2, beta):
    """Odd n: no Nyquist mode, whose grid restriction (a factor cos(πnβT)) does not compose."""
    u = np.random.default_rng(0).standard_normal((2, 21))
    np.testing.assert_allclose(advection(advection(u, beta, t1), beta, t2), advection(u, beta, t1 + t2), atol=1e-11)


# ---------------------------------------------------------------- Burgers
def test_cole_hopf_quadrature_matches_the_bessel_series():
    r"""u0 = A sin 2πx: φ0 = e^{κ cos 2πx} = I_0(κ) + 2Σ I_m(κ) cos 2πmx exactly (κ = A/(4πε)); heat flow per mode."""
    nu, A, t = 0.1, 1.0, 0.7
    eps = nu / np.pi
    kappa = A / (4 * np.pi * eps)
    x, m = cell_centres(64), np.arange(1, 300)[:, None]
    w = ive(m, kappa) * np.exp(-eps * (2 * np.pi * m) ** 2 * t)
    phi = ive(0, kappa) + 2 * (w * np.cos(2 * np.pi * m * x)).sum(0)
    phi_x = -2 * (w * 2 * np.pi * m * np.sin(2 * np.pi * m * x)).sum(0)
    exact = -2 * eps * phi_x / phi
    got = cole_hopf(lambda y: (A * (1 - np.cos(2 * np.pi * y)) / (2 * np.pi))[None], x, nu, t)
    np.testing.assert_allclose(got[0], exact, atol=1e-12)


def test_burgers_closed_form_solution():
    """φ = 1 + a e^{-εk²t} cos kx solves the heat equation, so u = 2εak e^{-εk²t} sin kx / φ solves Burgers."""
    nu, a, k, T = 0.05, 0.6, 2 * np.pi * 2, 0.8
    eps = nu / np.pi

    def u(x, t):
        g = a * np.exp(-eps * k ** 2 * t)
        return 2 * eps * g * k * np.sin(k * x) / (1 + g * np.cos(k * x))

    x = cell_centres(64)
    np.testing.assert_allclose(burgers(u(x, 0.0), nu, T), u(x, T)[None], atol=1e-9)


@pytest.mark.parametrize("nu", [0.1, 0.01])
def test_burgers_agrees_with_cole_hopf(nu):
    ic = smooth_ic(3, 2)
    n = 64
    x = cell_centres(n)
    u_max = float(np.abs(ic(cell_centres(4096))).max())
    r = burgers_refinement(n, nu, u_max)
    got = restrict(burgers_on_grid(ic(cell_centres(r * n)), nu, 1.0), r, 1)
    np.testing.assert_allclose(got, cole_hopf(ic.primitive, x, nu, 1.0), atol=1e-7)


def test_burgers_time_self_convergence_is_fourth_order():
    ic = smooth_ic(2, 3)
    n, nu = 32, 0.1
    ref = restrict(burgers_on_grid(ic(cell_centres(3 * n)), nu, 1.0, steps=2000), 3, 1)
    errs = [abs(restrict(burgers_on_grid(ic(cell_centres(3 * n)), nu, 1.0, steps=s), 3, 1) - ref).max()
            for s in (40, 80, 160)]
    orders = np.log2(np.array(errs[:-1]) / errs[1:])
    assert np.all((orders > 3.5) & (orders < 5.5)), (errs, orders)


def test_burgers_grid_convergence_is_spectral():
    """Refining the solver grid 1 -> 3 -> 5 at ν = 0.01: the error against Cole-Hopf falls geometrically
    (> 50x per step: spectral, where a p-th order method would gain 3^p, 1.7^p), down to the time-step floor."""
    ic = smooth_ic(2, 4)
    n, nu = 64, 0.01
    u_max = float(np.abs(ic(cell_centres(4096))).max())
    ref = cole_hopf(ic.primitive, cell_centres(n), nu, 1.0)
    steps = burgers_steps(1.0, nu, u_max)
    errs = [abs(restrict(burgers_on_grid(ic(cell_centres(r * n)), nu, 1.0, steps=steps), r, 1) - ref).max()
            for r in (1, 3, 5)]
    assert errs[0] > 50 * errs[1] > 50 * 50 * errs[2] and errs[2] < 1e-7, errs


def test_burgers_conserves_the_mean():
    u0 = smooth_ic(2, 5)(cell_centres(48)) + 0.3
    np.testing.assert_allclose(burgers(u0, 0.1, 0.5).mean(axis=1), u0.mean(axis=1), atol=1e-12)


# ---------------------------------------------------------------- Fisher-KPP
def test_logistic_is_the_exact_flow():
    u = np.linspace(0, 1, 11)
    np.testing.assert_allclose(logistic(logistic(u, 1.3, 0.2), 1.3, 0.5), logistic(u, 1.3, 0.7), atol=1e-14)
    h = 1e-5                                     # the ODE u' = ρ u (1 - u), central difference in t
    du = (logistic(u, 1.3, 0.4 + h) - logistic(u, 1.3, 0.4 - h)) / (2 * h)
    v = logistic(u, 1.3, 0.4)
    np.testing.assert_allclose(du, 1.3 * v * (1 - v), atol=1e-8)
    with pytest.raises(ValueError, match="blows up"):
        logistic(np.array([-5.0]), 1.0, 1.0)


def test_fisher_without_reaction_is_the_heat_flow():
    u0 = np.clip(smooth_ic(2, 6)(cell_centres(32)) * 0.3 + 0.5, 0, 1)
    np.testing.assert_allclose(fisher_kpp(u0, 0.01, 0.0, 0.5, steps=3), advection(u0, 0.0, 0.5, kappa=0.01), atol=1e-13)


def test_fisher_strang_is_second_order():
    length = 32.0
    ic = SineSum.draw(3, np.random.default_rng(7), lengths=(length,), max_mode=4, p_abs=0, p_window=0)
    u0 = 0.5 + 0.4 * ic(cell_centres(128, length)) / ic.bound()[:, None]
    ref = strang(u0, 0.5, 1.0, 1.0, (length,), 2048)
    errs = [abs(strang(u0, 0.5, 1.0, 1.0, (length,), s) - ref).max() for s in (16, 32, 64)]
    orders = np.log2(np.array(errs[:-1]) / errs[1:])
    assert np.all((orders > 1.9) & (orders < 2.2)), (errs, orders)


def test_front_position_of_a_tanh_profile():
    x = cell_centres(400, 40.0)
    u = 0.5 * (1 - np.tanh(np.stack([x - 13.3, x - 27.05])))
    np.testing.assert_allclose(front_position(u, x), [13.3, 27.05], atol=2e-3)


def test_fisher_front_moves_at_two_sqrt_nu_rho():
    """Bramson: X(t) = 2√(νρ) t − (3/2)√(ν/ρ) ln t + const; the fitted speed is within 1 % of 2√(νρ)."""
    nu, rho, length, n = 0.5, 1.0, 256.0, 2048
    x = cell_centres(n, length)
    # a steep front (tail e^{-2x}, faster than √(ρ/ν)): it is pulled to the minimal speed; Δ = 1/8 resolves
    # tanh to 1e-17, so no aliasing noise seeds the unstable state u = 0 ahead of it
    u = (0.5 * (1 - np.tanh(x - 30.0)) * 0.5 * (1 + np.tanh(x - 5.0)))[None]
    times, positions = [], []
    for i in range(1, 15):
        u = fisher_kpp(u, nu, rho, 2.0, length=length, steps=40)
        times.append(2.0 * i)
        positions.append(front_position(u, x)[0])
    t, p = np.array(times[4:]), np.array(positions[4:])
    speed = np.polyfit(t, p - (bramson_position(t, nu, rho) - 2 * np.sqrt(nu * rho) * t), 1)[0]
    assert abs(speed / (2 * np.sqrt(nu * rho)) - 1) < 0.01, speed
    raw = np.polyfit(t, p, 1)[0]
    assert 0.9 * 2 * np.sqrt(nu * rho) < raw < 2 * np.sqrt(nu * rho)   # pulled fronts approach c* from below


def test_fisher_rejects_negative_data():
    with pytest.raises(ValueError, match=">= 0"):
        fisher_kpp(-np.ones(16), 0.5, 1.0, 0.1)


# ---------------------------------------------------------------- 2-D vorticity
def test_velocity_of_a_closed_form_streamfunction():
    """ψ = sin 2πx sin 2πy: ω = 8π²ψ, u = ψ_y, v = -ψ_x."""
    x = cell_centres(16)
    X, Y = np.meshgrid(x, x, indexing="ij")
    s = 2 * np.pi
    u, v = velocity(2 * s ** 2 * np.sin(s * X) * np.sin(s * Y))
    np.testing.assert_allclose(u[0], s * np.sin(s * X) * np.cos(s * Y), atol=1e-12)
    np.testing.assert_allclose(v[0], -s * np.cos(s * X) * np.sin(s * Y), atol=1e-12)


def test_one_shell_vorticity_decays_exactly():
    x = cell_centres(16)
    X, Y = np.meshgrid(x, x, indexing="ij")
    w0 = 9.0 * (np.sin(2 * np.pi * (X + 2 * Y) + 0.3) + 0.5 * np.cos(2 * np.pi * (2 * X - Y)))
    nu, T = 0.01, 0.4
    np.testing.assert_allclose(vorticity(w0, nu, T, refine=1), (w0 * np.exp(-nu * (2 * np.pi) ** 2 * 5 * T))[None],
                               atol=1e-12)


def test_vorticity_time_self_convergence_is_fourth_order():
    ic = smooth_ic(1, 8, dims=2, modes=4, max_mode=3)
    x = cell_centres(16)
    w0 = ic(x, x)
    ref = vorticity_on_grid(w0, 2e-3, 0.5, steps=256)
    errs = [abs(vorticity_on_grid(w0, 2e-3, 0.5, steps=s) - ref).max() for s in (8, 16, 32)]
    orders = np.log2(np.array(errs[:-1]) / errs[1:])
    assert np.all(orders > 3.5), (errs, orders)


# ---------------------------------------------------------------- input checks
@pytest.mark.parametrize("call, match", [
    (lambda: advection(np.ones((2, 3)), 0.1, 1.0), "at least 4"),
    (lambda: advection(np.full(8, np.nan), 0.1, 1.0), "non-finite"),
    (lambda: advection(np.ones(8), 0.1, -1.0), "T must be"),
    (lambda: advection(np.ones((2, 8, 8)), 0.1, 1.0, dims=2), "beta must be"),
    (lambda: burgers(np.ones(8), 0.0, 1.0), "nu must be"),
    (lambda: burgers(np.ones(8), 0.1, 1.0, refine=2), "odd positive integer"),
    (lambda: burgers(np.ones(8), 0.1, 1.0, steps=0), "steps must be"),
    (lambda: fisher_kpp(np.ones(8), 0.5, 1.0, 1.0, dims=4), "dims must be"),
])
def test_bad_solver_input_raises_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_two_d_verify_checks_pass():
    """The 2-D group of ``python -m npdegen.tasks verify``: closed-form advection-diffusion, 2-D Strang
    order, Taylor-Green decay and the vorticity solver's spatial self-convergence."""
    from npdegen.tasks.verify import Check, _two_d
    rows = [Check(*row) for row in _two_d(24)]
    assert len(rows) == 4 and any("Taylor-Green" in r.name for r in rows)
    assert all(r.ok for r in rows), [(r.name, r.value) for r in rows if not r.ok]
