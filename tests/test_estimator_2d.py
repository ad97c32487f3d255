"""The estimator on 2-D grids: the data start's shift, the 2-D stencil kinds, a tiny 2-D ADR recovered.

Truths are exact Fourier multipliers (the spectral start) or 2-D ADR networks whose every step is
checked against a hand-written NumPy loop of ``np.roll`` differences; the estimator must find their
coefficients again.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("sklearn")

from npdegen.estimator.starts import spectral_estimate  # noqa: E402


def diagonal_sine_sums(count, grid, seed, max_mode=3):
    """Sine sums whose wave vectors have both components ≠ 0 (no axis-aligned mode carries energy,
    as in the 2-D tasks' initial conditions)."""
    rng = np.random.default_rng(seed)
    x, y = [(np.arange(n) + 0.5) / n for n in grid]
    X, Y = np.meshgrid(x, y, indexing="ij")
    out = np.zeros((count, *grid))
    for s in range(count):
        for _ in range(3):
            mx, my = rng.integers(1, max_mode + 1, 2) * rng.choice([-1, 1], 2)
            out[s] += rng.uniform(0.2, 1) * np.sin(2 * np.pi * (mx * X + my * Y) + rng.uniform(0, 6))
    return out


def multiplier(x, spacing, r, b, C):
    """``Y = F⁻¹[exp(r − i b·κ − κᵀCκ) F X]``: advection by ``b``, diffusion ``C``, growth ``r``."""
    grid = x.shape[1:]
    kappa = np.meshgrid(*[2 * np.pi * np.fft.fftfreq(n, d=d) for n, d in zip(grid, spacing)], indexing="ij")
    exponent = r - 1j * sum(bi * k for bi, k in zip(b, kappa)) - sum(
        C[i][j] * kappa[i] * kappa[j] for i in range(2) for j in range(2))
    return np.real(np.fft.ifftn(np.fft.fftn(x, axes=(1, 2)) * np.exp(exponent), axes=(1, 2)))


@settings(derandomize=True, max_examples=15, deadline=None)
@given(bx=st.floats(-0.45, 0.45), by=st.floats(-0.45, 0.45), c=st.floats(0.0, 2e-3))
def test_spectral_estimate_2d_shift_without_axis_modes(bx, by, c):
    """Shifts up to half the period along both axes, from data with no axis-aligned modes (the
    1-D rule of unwrapping along the axis modes saw none of them and returned 0)."""
    grid, spacing = (32, 24), (1 / 32, 1 / 24)
    x = diagonal_sine_sums(6, grid, 3)
    y = multiplier(x, spacing, -0.05, (bx, by), [[c, 0.0], [0.0, c / 2]])
    est = spectral_estimate(x, y, spacing)
    np.testing.assert_allclose(est.velocity, [bx, by], atol=1e-8)
    np.testing.assert_allclose(est.diffusion, [[c, 0], [0, c / 2]], atol=1e-8)
    assert est.reaction == pytest.approx(-0.05, abs=1e-8)


# ---------------------------------------------------------------- the 2-D stencil kinds
from npdegen.estimator import KINDS, NeuralPDERegressor, Recipe  # noqa: E402
from npdegen.estimator.moments import moment_parameters  # noqa: E402

GRID, SPACING, OMEGA = (12, 10), (1 / 12, 1 / 10), 0.5


def shift(z, ox, oy):
    """``z[i + ox, j + oy]`` on the periodic grid."""
    return np.roll(np.roll(z, -ox, axis=1), -oy, axis=2)


def adr9_step(z, p, h=SPACING, omega=OMEGA, f=lambda v: v):
    """One relaxed step ``(1 − ω) z + ω f(Z)`` of ``Z = u + Ru − U·∇u + D_xx u_xx + 2 D_xy u_xy + D_yy u_yy
    + C_xxy u_xxy + C_xyy u_xyy + C_xxyy u_xxyy`` (``W_α = α!·C``) by central differences
    on the 3 × 3 box, written out by hand."""
    hx, hy = h
    dx = lambda v: (shift(v, 1, 0) - shift(v, -1, 0)) / (2 * hx)              # noqa: E731
    dy = lambda v: (shift(v, 0, 1) - shift(v, 0, -1)) / (2 * hy)              # noqa: E731
    dxx = lambda v: (shift(v, 1, 0) - 2 * v + shift(v, -1, 0)) / hx ** 2      # noqa: E731
    dyy = lambda v: (shift(v, 0, 1) - 2 * v + shift(v, 0, -1)) / hy ** 2      # noqa: E731
    g = p.get
    Z = (z + g("R", 0) * z - g("U_x", 0) * dx(z) - g("U_y", 0) * dy(z) + g("D_xx", 0) * dxx(z)
         + 2 * g("D_xy", 0) * dx(dy(z)) + g("D_yy", 0) * dyy(z) + g("C_xxy", 0) * dy(dxx(z))
         + g("C_xyy", 0) * dx(dyy(z)) + g("C_xxyy", 0) * dxx(dyy(z)))
    return (1 - omega) * z + omega * f(Z)


def test_2d_kinds_name_their_moments():
    """The box kind at width 3 is the free 9-point stencil (the cross term D_xy and the box's
    higher moments); the star kind the 5-point stencil; width 5: 25 and 9 parameters."""
    assert [n for _, n, _ in moment_parameters(2, 3)] == ["R", "U_x", "U_y", "D_xx", "D_xy", "D_yy", "C_xxy",
                                                          "C_xyy", "C_xxyy"]
    assert [n for _, n, _ in moment_parameters(2, 3, "star")] == ["R", "U_x", "U_y", "D_xx", "D_yy"]
    assert len(moment_parameters(2, 5)) == 25 and len(moment_parameters(2, 5, "star")) == 9
    assert [n for _, n, _ in moment_parameters(1, 5, "star")] == [n for _, n, _ in moment_parameters(1, 5)]
    with pytest.raises(ValueError, match="shape must be"):
        moment_parameters(2, 3, "disc")


@pytest.mark.parametrize("kind, family", [("moments", "homogeneous"), ("moments", "heterogeneous"),
                                          ("star", "homogeneous"), ("star", "heterogeneous")])
def test_2d_stencil_layers_match_a_numpy_loop(kind, family):
    """Both kinds' compiled 2-D networks (3 layers, identity and tanh) against the hand-written steps."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, *GRID))
    for act in ("identity", "tanh"):
        recipe = Recipe(kind, family, 3, 3, act, OMEGA)
        k = KINDS[kind]
        net = k.compile(k.layer(recipe, 2), recipe, GRID, SPACING, "periodic", "numpy", "float64")
        scale = {"R": 0.05, "U_x": 0.02, "U_y": -0.03, "D_xx": 1e-3, "D_xy": 3e-4, "D_yy": 8e-4,
                 "C_xxy": 1e-5, "C_xyy": -2e-5, "C_xxyy": 1e-7}
        theta = {n: scale[n] * (1 + 0.3 * rng.standard_normal(s)) for n, s in net.shapes.items()}
        z = x.copy()
        for _ in range(3):
            z = adr9_step(z, theta, f=np.tanh if act == "tanh" else (lambda v: v))
        np.testing.assert_allclose(net.forward(x, theta), z, atol=1e-12)
        if kind == "star":
            assert set(net.shapes) == {"R", "U_x", "U_y", "D_xx", "D_yy"}


def test_star_kind_is_not_offered_on_1d_grids():
    x = np.random.default_rng(0).standard_normal((8, 16))
    est = NeuralPDERegressor(budget=5, kinds=("moments", "star"), families=("homogeneous",), widths=(3,),
                             depths=(4,), activations=("identity",), n_starts=1, max_iter=5).fit(x, x)
    row = next(e for e in est.search_report_ if e["recipe"] == "star/*")
    assert row["status"] == "skipped" and "2/3-D grids only" in row["note"]


# ---------------------------------------------------------------- recovery on a tiny 2-D problem
TRUTH9 = {"R": -0.02, "U_x": 0.03, "U_y": -0.02, "D_xx": 8e-4, "D_xy": 2e-4, "D_yy": 5e-4}


@pytest.fixture(scope="module")
def adr2d_fit():
    """A 4-layer tanh ADR with an anisotropic diffusion tensor (cross term D_xy ≠ 0) made by the NumPy
    loop; the search over both 2-D stencil kinds, identity and tanh, the nonlocal kernel too."""
    x = diagonal_sine_sums(24, GRID, 21)
    y = x.copy()
    for _ in range(4):
        y = adr9_step(y, TRUTH9, f=np.tanh)
    est = NeuralPDERegressor(budget=90, kinds=("moments", "star", "nonlocal", "flux"), families=("homogeneous",),
                             widths=(3,), depths=(4,), activations=("identity", "tanh"), spacing=SPACING,
                             n_starts=3, random_state=0).fit(x[:16], y[:16])
    return est, x[16:], y[16:]


def test_2d_adr_coefficients_recovered(adr2d_fit):
    """The 9-point kind with tanh wins and recovers every coefficient to 1e-6 relative (the higher
    moments of the box to 1e-9 absolute: the truth has none); test nRMSE ≤ 1e-8."""
    est, x_test, y_test = adr2d_fit
    assert (est.recipe_["kind"], est.recipe_["activation"], est.recipe_["depth"]) == ("moments", "tanh", 4)
    for k, v in TRUTH9.items():
        assert float(est.theta_[k]) == pytest.approx(v, rel=1e-6), k
    for k in ("C_xxy", "C_xyy", "C_xxyy"):
        assert abs(float(est.theta_[k])) < 1e-9, k
    pred = est.predict(x_test)
    assert pred.shape == x_test.shape == (8, *GRID)
    assert 1 - est.score(x_test, y_test) < 1e-8


def test_2d_search_report_says_what_was_tried(adr2d_fit):
    """Rows for the 9-point and 5-point stencils and the kernel; the star (no cross term) cannot match
    D_xy ≠ 0, the 1-D flux kind is skipped with its reason."""
    est, _, _ = adr2d_fit
    rows = {r["recipe"]: r for r in est.search_report_}
    assert {"moments/homogeneous/w3/L4/tanh", "star/homogeneous/w3/L4/tanh"} <= set(rows)
    assert any(r.startswith("nonlocal/") for r in rows)
    assert rows["flux/*"]["status"] == "skipped" and "1-D grids only" in rows["flux/*"]["note"]
    star = rows["star/homogeneous/w3/L4/tanh"]
    assert star["status"] == "fitted" and star["n_params"] == 5 and star["val_nrmse"] > 1e3 * est.validation_nrmse_
    assert "moments/homogeneous/w3/L4/tanh" in est.report()
