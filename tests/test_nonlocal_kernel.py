"""Kernel functions of the nonlocal layer (npdegen.integral, issue 14 item 1): moments against closed
forms and numerical quadrature, the divergent moments of power laws, and the errors."""
import math

import numpy as np
import pytest
import sympy as sp
from scipy import integrate

from npdegen.integral import (NonlocalPDE, epanechnikov, exponential, gaussian, kernel, power_law,
                              top_hat)

r, q = sp.symbols("r q", real=True)
sigma, ell, h, A, mu = sp.symbols("sigma ell h A mu")
x, y = sp.symbols("x y")


def same(a, b):
    return sp.simplify(sp.sympify(a) - sp.sympify(b)) == 0


# ---------------------------------------------------------------------- closed forms
@pytest.mark.parametrize("make, closed", [
    (lambda: gaussian(sigma), {0: 1, 1: 0, 2: sigma**2, 3: 0, 4: 3 * sigma**4}),
    (lambda: exponential(ell), {0: 1, 1: 0, 2: 2 * ell**2, 3: 0, 4: 24 * ell**4}),
    (lambda: top_hat(h), {0: 1, 1: 0, 2: h**2 / 3, 3: 0, 4: h**4 / 5}),
    (lambda: epanechnikov(h), {0: 1, 1: 0, 2: h**2 / 5, 3: 0, 4: 3 * h**4 / 35}),
], ids=["gaussian", "exponential", "top_hat", "epanechnikov"])
def test_moments_equal_closed_forms(make, closed):
    m = make().moments(4)
    assert m.divergent == () and m.conditions == {} and m.undecided == ()
    assert set(m) == set(closed)
    for k, v in closed.items():
        assert same(m[k], v), (k, m[k], v)


def test_moments_of_a_user_kernel_match_numerical_quadrature():
    """An asymmetric kernel written by hand: SymPy's closed forms against scipy.integrate.quad."""
    a = sp.Symbol("a", positive=True)
    W = sp.Piecewise((sp.exp(-r / a), r >= 0), (sp.exp(2 * r), True)) * r**2
    K = kernel(W, r, params=[a])
    m = K.moments(3)
    branches = sp.lambdify((r, a), W)

    def f(s, a):
        with np.errstate(over="ignore", invalid="ignore"):       # Piecewise evaluates both branches
            return branches(s, a)
    for k in range(4):
        numeric = integrate.quad(lambda s: s**k * f(s, 0.7), -np.inf, 0)[0] + \
            integrate.quad(lambda s: s**k * f(s, 0.7), 0, np.inf)[0]
        assert float(m[k].subs(a, 0.7)) == pytest.approx(numeric, rel=1e-10)


def test_shifted_gaussian_advects():
    m = gaussian(sigma, shift=mu).moments(2)
    assert same(m[1], mu) and same(m[2], mu**2 + sigma**2)


def test_amplitude_and_sums():
    m = (A * gaussian(sigma)).moments(2)
    assert same(m[0], A) and same(m[2], A * sigma**2)
    s2 = sp.Symbol("s2")
    dog = gaussian(sigma) - gaussian(s2)          # a difference of Gaussians: zero mass, W_2 = σ² − s2²
    m = dog.moments(2)
    assert same(m[0], 0) and same(m[2], sigma**2 - s2**2)
    with pytest.raises(ValueError, match="same support"):
        top_hat(h) + gaussian(sigma)


# ---------------------------------------------------------------------- N-D
def test_two_dimensional_gaussian_multi_index_moments():
    m = gaussian((sigma, ell), dim=2).moments(4)
    assert same(m[(0, 0)], 1) and same(m[(2, 0)], sigma**2) and same(m[(0, 2)], ell**2)
    assert same(m[(1, 1)], 0) and same(m[(2, 2)], sigma**2 * ell**2) and same(m[(4, 0)], 3 * sigma**4)
    table = gaussian(sigma, dim=2).explain(2)
    processes = [row.process for row in table]
    assert "diffusion (xx)" in processes and "diffusion (xy)" in processes and "advection (y)" in processes


def test_two_dimensional_power_law_divergences():
    m = power_law(sp.Rational(7, 2), dim=2).moments(3)
    assert set(m.divergent) == {a for a in m.all_values if max(a) >= 3}


def test_heterogeneous_kernel_moments_depend_on_position():
    s = sp.Symbol("s", positive=True)
    width = s * (1 + q**2)
    W = sp.exp(-r**2 / (2 * width**2)) / (sp.sqrt(2 * sp.pi) * width)
    K = kernel(W, r, position=q)
    assert K.heterogeneous and K.params == (s,)
    assert same(K.moments(2)[2], width**2)


# ---------------------------------------------------------------------- power laws
@pytest.mark.parametrize("alpha", [sp.Rational(5, 2), 3, 3.5, sp.Rational(9, 2), 6])
def test_power_law_reports_exactly_the_divergent_moments(alpha):
    m = power_law(alpha).moments(6)
    expected = tuple(k for k in range(7) if k >= float(alpha) - 1)      # k < alpha - 1 converge
    assert m.divergent == expected
    assert m.convergent == tuple(k for k in range(7) if k not in expected)
    assert same(m[0], 1)
    if 2 not in expected:          # W_2 = 2ℓ²/((α−2)(α−3)) for ℓ = 1
        assert same(m[2], sp.Rational(2) / ((sp.nsimplify(alpha) - 2) * (sp.nsimplify(alpha) - 3)))
    text = str(m)
    assert "diverge" in text and f"{len(m.convergent)} of the 7" in text
    table = power_law(alpha).explain(6)
    for row in table:
        assert ("diverges" in row.process) == (row.order in expected)


def test_symbolic_power_law_states_the_conditions():
    alpha = sp.Symbol("alpha")
    m = power_law(alpha).moments(4)
    assert m.divergent == ()
    for k in range(1, 5):
        assert m.conditions[k] == (alpha > k + 1)


def test_user_power_law_range_checked_on_values():
    a = sp.Symbol("a")
    K = kernel((1 + sp.Abs(r)) ** (-a), r)
    assert K.mass_condition == (a > 1)
    layer = NonlocalPDE(K, sp.Function("z")(q), params={a: "homogeneous"})
    net = layer.compile(16, reach=3)
    net.forward(np.zeros(16), {"a": np.array(2.0)})
    with pytest.raises(ValueError, match="not integrable.*a > 1"):
        net.forward(np.zeros(16), {"a": np.array(0.5)})


# ---------------------------------------------------------------------- errors
@pytest.mark.parametrize("make, match", [
    (lambda: kernel(1 / (1 + sp.Abs(r)), r), "not integrable"),
    (lambda: kernel(sp.exp(r), r), "not integrable"),
    (lambda: kernel(sp.Integer(1), r), "not integrable"),
    (lambda: gaussian(0), "sigma must be > 0"),
    (lambda: gaussian(-1.5), "sigma must be > 0"),
    (lambda: gaussian((1, -1), dim=2), "sigma_y must be > 0"),
    (lambda: exponential(-2), "ell must be > 0"),
    (lambda: top_hat(0), "h must be > 0"),
    (lambda: epanechnikov(-1), "h must be > 0"),
    (lambda: power_law(1), "alpha must be > 1"),
    (lambda: power_law(0.5), "alpha must be > 1"),
    (lambda: gaussian(-sp.Symbol("s", positive=True)), "never > 0"),
    (lambda: kernel(sp.exp(-r**2) * A, r, params=[]), "neither r"),
    (lambda: kernel(sp.Integer(1), r, support=-1), "must be > 0"),
    (lambda: kernel(sp.exp(-r**2), r, position=r), "different symbols"),
])
def test_bad_kernels_raise_value_error(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_kernel_types():
    with pytest.raises(TypeError, match="not a string"):
        kernel("exp(-r**2)", r)
    with pytest.raises(TypeError, match="not a string"):
        gaussian("1.0")
    with pytest.raises(TypeError, match="Symbol"):
        kernel(sp.exp(-r**2), "r")
    with pytest.raises(ValueError, match="reserved"):
        kernel(sp.exp(-r**2 / sp.Symbol("b")**2), r, params={sp.Symbol("b"): (0, None)})


def test_sigma_at_or_below_zero_in_theta_is_refused():
    layer = NonlocalPDE(gaussian(sigma), sp.Function("z")(q), params={sigma: "homogeneous"})
    net = layer.compile(32, spacing=0.1)
    for bad in (0.0, -0.2):
        with pytest.raises(ValueError, match="sigma > 0 is violated"):
            net.forward(np.zeros(32), {"sigma": np.array(bad)})
    with pytest.raises(ValueError, match="pass values= for sigma"):
        net.init_params()                           # the default sigma = 0 is outside sigma > 0
    assert float(net.init_params(values={"sigma": 0.3})["sigma"]) == pytest.approx(0.3, abs=0.05)


def test_exact_float_parameters_and_gaussian_mass_numerically():
    K = gaussian(0.25)
    assert float(K.moments(2)[2]) == pytest.approx(0.0625, rel=1e-14)
    f = sp.lambdify(r, K.W)
    assert integrate.quad(f, -np.inf, np.inf)[0] == pytest.approx(1.0, rel=1e-12)
    assert math.isclose(float(power_law(3.5).moments(2)[2]), 8 / 3, rel_tol=1e-14)
