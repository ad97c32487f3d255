"""The estimator's flux-form and nonlocal layer kinds (npdegen.estimator.flux, .kernels, .layerwise).

Truths are made by each kind's own layer with known parameters (and, for the frame estimate, by an
exact Fourier shift); the search must find them again, pick the right kind, and keep its promises
(the flux layer's CFL certificate; the per-layer family's exact adjoint, checked by central finite
differences in float64). Sizes are tiny: n = 32 sites.
"""
import math
import pickle
from dataclasses import replace

import numpy as np
import pytest
import sympy as sp

pytest.importorskip("sklearn")
from sklearn.base import clone  # noqa: E402

import npdegen  # noqa: E402
from npdegen.estimator import KINDS, NeuralPDERegressor, Recipe, nrmse  # noqa: E402
from npdegen.estimator.flux import FluxReport  # noqa: E402
from npdegen.estimator.layerwise import PerLayer  # noqa: E402
from npdegen.estimator.search import Problem  # noqa: E402
from npdegen.estimator.starts import frame_estimate  # noqa: E402
from npdegen.integral import NonlocalPDE, gaussian  # noqa: E402

N = 32
H = 1.0 / N
Q = (np.arange(N) + 0.5) / N
q = sp.Symbol("q")
z = sp.Function("z")(q)


def snapshots(count, seed, offset=0.5):
    """Sums of sine modes plus a per-sample mean drawn in ``±offset`` (the means tell the frame speed)."""
    rng = np.random.default_rng(seed)
    u = sum(rng.standard_normal((count, 1)) / m * np.sin(2 * np.pi * m * Q + rng.uniform(0, 6, (count, 1)))
            for m in range(1, 4))
    return 0.4 * u + rng.uniform(-offset, offset, (count, 1))


def flux_truth(layers):
    c, a, D = sp.Symbol("c", positive=True), sp.Symbol("a"), sp.Symbol("D")
    layer = npdegen.conservation_law(c * z ** 2 / 2 + a * z, z, diffusion=D,
                                     params={c: "homogeneous", a: "homogeneous", D: "homogeneous"},
                                     numerical_flux="godunov", name="kinds_truth_flux")
    return layer.compile(n=N, spacing=H, layers=layers, omega=1.0)


#: totals over the layers: flux time K, shift A, viscosity N = nu T
K_TRUE, A_TRUE, N_TRUE, L_TRUE = 0.1, 0.05, 3e-4, 24
FLUX_TRUE = {"c": np.array(K_TRUE / L_TRUE), "a": np.array(A_TRUE / L_TRUE), "D": np.array(N_TRUE / L_TRUE)}


@pytest.fixture(scope="module")
def flux_data():
    net = flux_truth(L_TRUE)
    x, x_test = snapshots(40, 0), snapshots(12, 1)
    return x, net.forward(x, FLUX_TRUE), x_test, net.forward(x_test, FLUX_TRUE)


def _problem(x, y):
    return Problem(x, y, x[:4], y[:4], (H,))


def test_frame_estimate_recovers_a_galilean_shift():
    """Y_s = X_s shifted by K m_s + A exactly (Fourier): K and A to 1e-6, no diffusion."""
    x = snapshots(30, 3)
    K, A = 0.37, -0.11
    b = K * x.mean(axis=1) + A
    k = 2 * np.pi * np.fft.rfftfreq(N, d=H)
    y = np.fft.irfft(np.fft.rfft(x, axis=1) * np.exp(-1j * k * b[:, None]), N, axis=1)
    est = frame_estimate(x, y, H)
    assert est.spread
    assert est.flux_time == pytest.approx(K, abs=1e-6)
    assert est.shift == pytest.approx(A, abs=1e-6)
    assert est.diffusion == pytest.approx(0.0, abs=1e-8)
    # means that do not spread cannot tell K: 0, and the common shift still found
    x0 = x - x.mean(axis=1, keepdims=True)
    y0 = np.fft.irfft(np.fft.rfft(x0, axis=1) * np.exp(-1j * k * A), N, axis=1)
    est0 = frame_estimate(x0, y0, H)
    assert not est0.spread and est0.flux_time == 0.0
    assert est0.shift == pytest.approx(A, abs=1e-6)


def test_flux_kind_prepares_a_certified_box(flux_data):
    """The box's every corner keeps the CFL number <= 1 on the data's states (certificate), the
    depth honours the bound, and the estimate is close to the truth."""
    x, y, _, _ = flux_data
    kind = KINDS["flux"].prepare(_problem(x, y))
    assert kind.estimate.flux_time == pytest.approx(K_TRUE, rel=0.25)
    assert kind.estimate.shift == pytest.approx(A_TRUE, abs=0.02)
    L = kind.least_depth
    assert L <= L_TRUE                     # so the search below uses the truth's depth
    recipe = Recipe("flux", "homogeneous", 3, L_TRUE, "identity", 1.0)
    box = kind.bounds(recipe, 1)
    layer = KINDS["flux"].layer(recipe, 1)
    lo, hi = kind.state_range
    for c in box["c"]:
        for a in box["a"]:
            for D in box["D"]:
                cert = layer.certificate({"c": c, "a": a, "D": D}, H, state_range=(lo, hi), omega=1.0)
                assert cert.cfl <= 1 + 1e-12 and cert.positive, (c, a, D, cert)
    # an independent check of the worst corner: max|c z + a|/h + 2 D/h^2 by hand
    worst = max(abs(box["c"][1] * zz + aa) for zz in (lo, hi) for aa in box["a"]) / H + 2 * box["D"][1] / H ** 2
    assert worst <= 1 + 1e-12


@pytest.fixture(scope="module")
def flux_fit(flux_data):
    x, y, _, _ = flux_data
    return NeuralPDERegressor(budget=60, kinds=("flux",), families=("homogeneous",), depths=(L_TRUE,),
                              max_iter=200).fit(x, y)


def test_flux_kind_recovers_its_own_layer(flux_fit, flux_data):
    _, _, x_test, y_test = flux_data
    est = flux_fit
    assert est.recipe_ == {"kind": "flux", "family": "homogeneous", "width": 3, "depth": L_TRUE,
                           "activation": "identity", "omega": 1.0}
    for k, v in FLUX_TRUE.items():
        assert float(est.theta_[k]) == pytest.approx(float(v), rel=1e-5), k
    assert nrmse(est.predict(x_test), y_test) < 1e-7
    report = est.physics_
    assert isinstance(report, FluxReport)
    assert report.totals["K"] == pytest.approx(K_TRUE, rel=1e-5)
    assert report.totals["N"] == pytest.approx(N_TRUE, rel=1e-4)
    assert report.certificate().positive
    assert "certified" in str(report)
    # mass is conserved exactly by the fitted layer
    np.testing.assert_allclose(est.predict(x_test).sum(axis=1), x_test.sum(axis=1), rtol=0, atol=1e-11)


def test_fitted_kinds_clone_and_pickle(flux_fit, flux_data):
    _, _, x_test, _ = flux_data
    again = pickle.loads(pickle.dumps(flux_fit))
    np.testing.assert_array_equal(again.predict(x_test), flux_fit.predict(x_test))
    assert str(again.physics_) == str(flux_fit.physics_)
    assert clone(flux_fit).get_params() == flux_fit.get_params()


def test_flux_kind_skips_data_that_do_not_conserve_mass(flux_data):
    x, y, _, _ = flux_data
    est = NeuralPDERegressor(budget=10, kinds=("moments", "flux"), families=("homogeneous",), depths=(4,),
                             widths=(3,), activations=("identity",), n_starts=1, max_iter=10).fit(x, 0.9 * y)
    row = next(e for e in est.search_report_ if e["recipe"] == "flux/*")
    assert row["status"] == "skipped" and "do not conserve mass" in row["note"]
    assert est.recipe_["kind"] == "moments"


def test_per_layer_adapter_gradient_matches_finite_differences():
    """PerLayer's gradient by the knots = central differences of its loss (float64)."""
    c, a, D = sp.Symbol("c", positive=True), sp.Symbol("a"), sp.Symbol("D")
    layer = npdegen.conservation_law(c * z ** 2 / 2 + a * z, z, diffusion=D,
                                     params={c: "time-dependent", a: "time-dependent", D: "time-dependent"},
                                     numerical_flux="godunov", name="kinds_td_flux")
    net = PerLayer(layer.compile(n=N, spacing=H, layers=9, omega=1.0), ("c", "a", "D"), knots=4)
    assert net.shapes == {"c": (4,), "a": (4,), "D": (4,)}
    rng = np.random.default_rng(5)
    theta = {"c": 0.004 + 0.001 * rng.random(4), "a": 0.002 * rng.standard_normal(4), "D": 2e-5 * rng.random(4)}
    x, y = snapshots(3, 6), snapshots(3, 7)
    loss, grads = net.loss_and_grad(x, y, theta)
    for k in theta:
        for j in range(4):
            step = 1e-6 * max(abs(theta[k][j]), 1e-4)
            up, down = {kk: v.copy() for kk, v in theta.items()}, {kk: v.copy() for kk, v in theta.items()}
            up[k][j] += step
            down[k][j] -= step
            fd = (net.loss_and_grad(x, y, up)[0] - net.loss_and_grad(x, y, down)[0]) / (2 * step)
            assert grads[k][j] == pytest.approx(fd, rel=1e-5, abs=1e-9 * abs(loss) / step), (k, j)
    # the knots are the per-layer values at the ends, interpolated linearly between
    expanded = net.expand(theta)["c"]
    assert expanded.shape == (9, N)
    np.testing.assert_allclose(expanded[0], theta["c"][0])
    np.testing.assert_allclose(expanded[-1], theta["c"][-1])
    np.testing.assert_allclose(expanded[:, 0], np.interp(np.linspace(0, 3, 9), np.arange(4), theta["c"]))
    # per-layer losses in chunks of samples = the wrapped network's on all samples at once
    np.testing.assert_allclose(net.layer_losses(x, y, theta, chunk=2), net.net.layer_losses(x, y, net.expand(theta)),
                               rtol=1e-13)


def nonlocal_truth(activation, layers, params):
    sigma, mu, A = sp.symbols("sigma mu A")
    names = {sigma: "homogeneous", mu: "homogeneous", A: "homogeneous"}
    X = sp.Symbol("X")
    if activation == "reaction":
        A2, A3 = sp.symbols("A2 A3")
        names.update({A2: "homogeneous", A3: "homogeneous"})
        activation = X + A2 * X ** 2 + A3 * X ** 3
    layer = NonlocalPDE(A * gaussian(sigma, mu), z, activation=activation, params=names, name="kinds_truth_nl")
    return layer.compile(N, spacing=H, layers=layers, omega=1.0)


def test_nonlocal_kind_recovers_its_linear_kernel():
    truth = {"sigma": np.array(2.5 * H), "mu": np.array(-3.3 * H), "A": np.array(0.97)}
    net = nonlocal_truth("identity", 1, truth)
    x, x_test = snapshots(30, 8), snapshots(10, 9)
    y, y_test = net.forward(x, truth), net.forward(x_test, truth)
    est = NeuralPDERegressor(budget=30, kinds=("nonlocal",), activations=("identity",), max_iter=200).fit(x, y)
    assert est.recipe_["kind"] == "nonlocal" and est.recipe_["depth"] == 1
    for k, v in truth.items():
        assert float(est.theta_[k]) == pytest.approx(float(v), rel=1e-6), k
    assert nrmse(est.predict(x_test), y_test) < 1e-8
    rows = {r["coefficient"]: r for r in est.physics_.rows()}
    assert rows["sigma"]["total"] == pytest.approx(2.5 ** 2 * H * H / 2, rel=1e-5)     # nu T = L sigma^2 / 2
    assert rows["mu"]["total"] == pytest.approx(3.3 * H, rel=1e-5)                     # transport -L mu
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.predict(x_test), est.predict(x_test))


def test_nonlocal_kind_recovers_a_reaction_kernel():
    truth = {"sigma": np.array(1.5 * H), "mu": np.array(0.0), "A": np.array(1.05), "A2": np.array(-0.05),
             "A3": np.array(0.0)}
    net = nonlocal_truth("reaction", 4, truth)
    x, x_test = np.abs(snapshots(30, 10)), np.abs(snapshots(10, 11))
    y, y_test = net.forward(x, truth), net.forward(x_test, truth)
    est = NeuralPDERegressor(budget=60, kinds=("nonlocal",), activations=("identity", "reaction"), depths=(4,),
                             max_iter=300).fit(x, y)
    assert est.recipe_["activation"] == "reaction" and est.recipe_["depth"] == 4
    for k, v in truth.items():
        assert float(est.theta_[k]) == pytest.approx(float(v), abs=1e-5 * max(1.0, abs(float(v)))), k
    assert nrmse(est.predict(x_test), y_test) < 1e-6


def test_nonlocal_depth_transfer_keeps_the_linear_symbol():
    """L mu and L sigma^2 (the symbol A^L e^{i k L mu - L sigma^2 k^2 / 2}) survive L -> 4L, and so does the
    sampled kernel's mass over the network, (A m)^L: the impulse responses of the linear networks sum alike."""
    from npdegen.estimator.kernels import sampled_mass
    kind = KINDS["nonlocal"].prepare(_problem(snapshots(8, 12), snapshots(8, 13)))
    src = Recipe("nonlocal", "homogeneous", 0, 1, "identity", 1.0)
    dst = Recipe("nonlocal", "homogeneous", 0, 4, "reaction", 1.0)
    net = kind.compile(KINDS["nonlocal"].layer(dst, 1), dst, (N,), (H,), "periodic", "auto", "float64")
    theta = {"sigma": np.array(0.1), "mu": np.array(0.08), "A": np.array(0.9)}
    out = kind.transfer(theta, src, net, dst)
    assert 4 * float(out["mu"]) == pytest.approx(0.08, rel=1e-12)
    assert 4 * float(out["sigma"]) ** 2 == pytest.approx(0.01, rel=1e-12)
    assert float(out["A2"]) == 0.0 and float(out["A3"]) == 0.0
    mass = lambda th: float(th["A"]) * sampled_mass(th["sigma"], th["mu"], H, N)
    assert mass(out) ** 4 == pytest.approx(mass(theta), rel=1e-12)
    linear = lambda L: kind.compile(KINDS["nonlocal"].layer(src, 1), replace(src, depth=L), (N,), (H,), "periodic",
                                    "auto", "float64")
    impulse = np.zeros((1, N))
    impulse[0, 0] = 1.0
    keys = ("sigma", "mu", "A")
    before = linear(1).forward(impulse, theta).sum()
    after = linear(4).forward(impulse, {k: out[k] for k in keys}).sum()
    assert after == pytest.approx(before, rel=1e-10)


@pytest.mark.parametrize("dim", [1, 2])
def test_sampled_mass_is_the_layers_kernel_sum(dim):
    """sampled_mass(sigma, mu)^dim (a product over the axes) equals the sum of one compiled linear layer's
    impulse response at A = 1: 1.597 per axis at sigma = h/4, ~1 from sigma = 2h, below 1 once the kernel
    is cut at half the period."""
    from npdegen.estimator.kernels import sampled_mass
    n, h = 16, 1.0 / 16
    grid = (n,) * dim
    rec = Recipe("nonlocal", "homogeneous", 0, 1, "identity", 1.0)
    x = snapshots(4, 3) if dim == 1 else np.random.default_rng(3).random((4, n, n))
    kind = KINDS["nonlocal"].prepare(Problem(x, x, x, x, (h,) * dim))
    net = kind.compile(KINDS["nonlocal"].layer(rec, dim), rec, grid, (h,) * dim, "periodic", "auto", "float64")
    impulse = np.zeros((1, *grid))
    impulse[(0,) * (dim + 1)] = 1.0
    for sigma, mu in ((h / 4, 0.0), (h / 2, 0.3 * h), (2 * h, -1.7 * h), (0.3, 0.1)):
        theta = {k: np.array(sigma if k.startswith("sigma") else mu if k.startswith("mu") else 1.0)
                 for k in net.shapes}
        total = float(np.asarray(net.forward(impulse, theta)).sum())
        assert sampled_mass(sigma, mu, h, n) ** dim == pytest.approx(total, rel=1e-9), (sigma, mu)
    assert sampled_mass(h / 4, 0.0, h, n) == pytest.approx(1.5968, rel=1e-4)


def test_search_picks_the_flux_kind_on_burgers_like_data(flux_data):
    x, y, x_test, y_test = flux_data
    est = NeuralPDERegressor(budget=25, families=("homogeneous",), depths=(4, 24), widths=(3,),
                             activations=("identity", "reaction"), n_starts=2, max_iter=60).fit(x, y)
    tried = {e["recipe"]: e for e in est.search_report_}
    assert tried["flux/homogeneous/w3/L24/identity"]["status"] == "fitted"
    assert est.recipe_["kind"] == "flux", est.report()
    assert nrmse(est.predict(x_test), y_test) < 1e-5


def test_search_picks_the_nonlocal_kind_on_wide_diffusion():
    """Heat flow of variance 2C = 18 cells² with growth: one Gaussian layer, three parameters, against
    stencils that need 16 layers to spread that far."""
    x, x_test = snapshots(30, 14), snapshots(10, 15)
    k = 2 * np.pi * np.fft.rfftfreq(N, d=H)

    def heat(u):
        return np.fft.irfft(np.fft.rfft(u, axis=1) * np.exp(0.05 - 9 * H * H * k * k), N, axis=1)
    est = NeuralPDERegressor(budget=25, families=("homogeneous",), depths=(16,), widths=(3,),
                             activations=("identity",), n_starts=2, max_iter=100).fit(x, heat(x))
    assert est.recipe_["kind"] == "nonlocal", est.report()
    assert nrmse(est.predict(x_test), heat(x_test)) < 1e-3
    assert float(est.theta_["sigma"]) == pytest.approx(math.sqrt(18) * H, rel=1e-2)
    assert float(est.theta_["A"]) == pytest.approx(math.exp(0.05), rel=1e-3)


def test_per_layer_flux_family_fits_a_time_dependent_law(flux_data):
    """Truth: c and D that grow over the layers (one value per layer, same at every site). The
    per-layer family matches it far better than the homogeneous fit it starts from, keeps mass, and
    gets the totals K = Σc and N = ΣD.

    Budget: the time-dependent flux kernel (face coefficients: three derived lo-face fields) compiles
    in ~15 s cold on a loaded 2-core machine; 40 s had left under 1 s to spare."""
    c, a, D = sp.Symbol("c", positive=True), sp.Symbol("a"), sp.Symbol("D")
    layer = npdegen.conservation_law(c * z ** 2 / 2 + a * z, z, diffusion=D,
                                     params={c: "time-dependent", a: "time-dependent", D: "time-dependent"},
                                     numerical_flux="godunov", name="kinds_truth_td")
    net = layer.compile(n=N, spacing=H, layers=L_TRUE, omega=1.0)
    ramp = np.linspace(0.5, 1.5, L_TRUE)[:, None] * np.ones(N)
    truth = {"c": FLUX_TRUE["c"] * ramp, "a": FLUX_TRUE["a"] * np.ones((L_TRUE, N)), "D": FLUX_TRUE["D"] * ramp[::-1]}
    x, _, x_test, _ = flux_data
    y, y_test = net.forward(x, truth), net.forward(x_test, truth)
    est = NeuralPDERegressor(budget=60, kinds=("flux",), families=("homogeneous", "time-dependent"),
                             depths=(L_TRUE,), max_iter=200).fit(x, y)
    rows = {e["family"]: e for e in est.search_report_ if e["status"] == "fitted"}
    assert est.recipe_["family"] == "time-dependent"
    assert rows["time-dependent"]["val_nrmse"] < 0.1 * rows["homogeneous"]["val_nrmse"]
    assert est.theta_["c"].shape == (L_TRUE,)
    pred = est.predict(x_test)
    assert nrmse(pred, y_test) < 1e-4
    np.testing.assert_allclose(pred.sum(axis=1), x_test.sum(axis=1), rtol=0, atol=1e-11)
    totals = est.physics_.totals
    assert totals["K"] == pytest.approx(K_TRUE, rel=1e-3)
    assert totals["N"] == pytest.approx(N_TRUE, rel=2e-2)
