"""NeuralPDERegressor: recovery of known networks, the budget, persistence, refusals, the CLI.

Truths are made with npdegen's own layers (ADR ``Z = z + R z − U z_q + D z_qq``, relaxed with ω = 0.5)
or, for the spectral start, with an exact Fourier multiplier; the estimator must find them again.
Budgets are generous where a test asserts accuracy (a fit of exact data stops at the rounding floor
long before; the slack is for a loaded machine) and tight where it asserts the budget.
"""
import json
import pickle
import time

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("sklearn")
from sklearn.base import clone  # noqa: E402

import npdegen  # noqa: E402
from npdegen import ops  # noqa: E402
from npdegen.estimator import KINDS, LayerKind, NeuralPDERegressor, Recipe, nrmse, register  # noqa: E402
from npdegen.estimator.cli import fit_main  # noqa: E402
from npdegen.estimator.moments import moment_parameters  # noqa: E402
from npdegen.estimator.starts import spectral_estimate  # noqa: E402

N, L, OMEGA = 32, 16, 0.5
SITES = (np.arange(N) + 0.5) / N
ONLY = dict(widths=(3,), activations=("identity",), n_starts=3)


def snapshots(count, seed, n=N):
    rng = np.random.default_rng(seed)
    q = (np.arange(n) + 0.5) / n
    return sum(rng.standard_normal((count, 1)) / m * np.sin(2 * np.pi * m * q + rng.uniform(0, 6, (count, 1)))
               for m in range(1, 6))


def adr_network(family, n=N, layers=L):
    q = sp.Symbol("q")
    z = sp.Function("z")(q)
    U, D, R = sp.symbols("U D R")
    layer = npdegen.NeuralPDE(z + R * z - U * z.diff(q) + D * z.diff(q, 2), z, params={U: family, D: family, R: family})
    return layer.compile(n=n, layers=layers, omega=OMEGA, spacing=1.0 / n)


HOMOGENEOUS = {"U": np.array(0.3 / N), "D": np.array(0.25 / N**2), "R": np.array(-0.02)}
HETEROGENEOUS = {"U": 0.3 / N * (1 + 0.5 * np.cos(2 * np.pi * SITES)),
                 "D": (0.25 + 0.1 * np.sin(2 * np.pi * SITES)) / N**2,
                 "R": -0.02 + 0.01 * np.cos(4 * np.pi * SITES)}


@pytest.fixture(scope="module")
def homogeneous_data():
    net = adr_network("homogeneous")
    x, x_test = snapshots(40, 0), snapshots(10, 1)
    return x, net.forward(x, HOMOGENEOUS), x_test, net.forward(x_test, HOMOGENEOUS)


@pytest.fixture(scope="module")
def homogeneous_fit(homogeneous_data):
    x, y, _, _ = homogeneous_data
    return NeuralPDERegressor(budget=60, families=("homogeneous",), depths=(4, 16), **ONLY).fit(x, y)


def test_recovers_homogeneous_adr(homogeneous_fit, homogeneous_data):
    est = homogeneous_fit
    _, _, x_test, y_test = homogeneous_data
    assert est.recipe_ == {"kind": "moments", "family": "homogeneous", "width": 3, "depth": 16,
                           "activation": "identity", "omega": OMEGA}
    for k, v in HOMOGENEOUS.items():
        assert est.theta_[k] == pytest.approx(float(v), rel=1e-6), k
    pred = est.predict(x_test)
    assert pred.shape == x_test.shape
    assert nrmse(pred, y_test) < 1e-8
    assert est.score(x_test, y_test) == pytest.approx(1.0, abs=1e-8)
    # the physics table: W_0 = 1 + R, W_1 = -U, W_2 = 2D at the fitted values
    moments = est.physics_.moments
    assert float(moments[0]) == pytest.approx(1 + float(est.theta_["R"]), rel=1e-12)
    assert float(moments[1]) == pytest.approx(-float(est.theta_["U"]), rel=1e-12)
    assert float(moments[2]) == pytest.approx(2 * float(est.theta_["D"]), rel=1e-12)
    assert "advection" in str(est.physics_) and "L16" in est.report()
    # the 4-layer recipe cannot move the data as far with a 3-point stencil: it loses on validation
    entries = {e["recipe"]: e for e in est.search_report_}
    assert entries["moments/homogeneous/w3/L4/identity"]["val_nrmse"] > 1e3 * est.validation_nrmse_


def test_heterogeneous_recipe_wins_and_beats_homogeneous():
    net = adr_network("heterogeneous")
    x, x_test = snapshots(40, 2), snapshots(12, 3)
    y, y_test = net.forward(x, HETEROGENEOUS), net.forward(x_test, HETEROGENEOUS)
    rich = NeuralPDERegressor(budget=60, families=("homogeneous", "heterogeneous"), depths=(16,), max_iter=100,
                              **ONLY).fit(x, y)
    plain = clone(rich).set_params(families=("homogeneous",)).fit(x, y)
    assert rich.recipe_["family"] == "heterogeneous"
    assert rich.score(x_test, y_test) > 1 - 1e-4 > plain.score(x_test, y_test) + 0.05
    for k, truth in HETEROGENEOUS.items():
        assert np.max(np.abs(rich.theta_[k] - truth)) < 1e-2 * np.max(np.abs(truth)), k
    # physics per site: the fitted diffusion profile D(q)
    assert rich.physics_.coefficients[2].shape == (N,)
    np.testing.assert_allclose(rich.physics_.coefficients[2], rich.theta_["D"], rtol=1e-12)


def test_budget_is_honoured():
    """A search far larger than 2 s stops in time, and the report says what was skipped."""
    x = snapshots(64, 4, n=64)
    y = adr_network("homogeneous", n=64, layers=8).forward(x, HOMOGENEOUS)
    t0 = time.perf_counter()
    est = NeuralPDERegressor(budget=2.0, depths=(4, 16, 64, 128)).fit(x, y)
    elapsed = time.perf_counter() - t0
    assert elapsed < 2.0 + 1.5, elapsed           # the budget plus one recipe's overhead (loaded machine)
    skipped = [e for e in est.search_report_ if e["status"] == "skipped"]
    assert any("budget" in e["note"] for e in skipped)
    # ... or a kind that cannot fit the data, or whose best fit is far behind (not promoted)
    assert all("budget" in e["note"] or "reach" in e["note"] or e["note"].startswith(("kind: ", "behind: ")) for e in skipped), \
        [e["note"] for e in skipped]
    assert any(e["status"] == "fitted" for e in est.search_report_)


def test_recipes_that_cannot_reach_the_shift_are_skipped():
    """Data shifted by 10 cells: 2 layers of a 3-point stencil move at most 2 (CFL), 16 can."""
    x = snapshots(24, 12)
    y = np.roll(x, 10, axis=1)
    est = NeuralPDERegressor(budget=5, families=("homogeneous",), depths=(2, 16), max_iter=20, **ONLY).fit(x, y)
    tried = {e["recipe"]: e for e in est.search_report_}
    assert tried["moments/homogeneous/w3/L2/identity"]["status"] == "skipped"
    assert "reach: the data move ~10 cells" in tried["moments/homogeneous/w3/L2/identity"]["note"]
    assert tried["moments/homogeneous/w3/L16/identity"]["status"] == "fitted"
    # heat flow with variance 2C = 10 cells²: 2 layers spread at most 2
    k = 2 * np.pi * np.fft.fftfreq(N, d=1 / N)
    y = np.real(np.fft.ifft(np.fft.fft(x, axis=1) * np.exp(-5 * k * k / N**2), axis=1))
    est = NeuralPDERegressor(budget=5, families=("homogeneous",), depths=(2, 16), max_iter=20, **ONLY).fit(x, y)
    tried = {e["recipe"]: e for e in est.search_report_}
    assert "the data spread ~10 cells²" in tried["moments/homogeneous/w3/L2/identity"]["note"]


def test_clone_and_pickle(homogeneous_fit, homogeneous_data):
    est = homogeneous_fit
    _, _, x_test, _ = homogeneous_data
    fresh = clone(est)
    assert fresh.get_params() == est.get_params() and not hasattr(fresh, "theta_")
    assert pickle.loads(pickle.dumps(fresh)).get_params() == est.get_params()
    back = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(back.predict(x_test), est.predict(x_test))
    assert back.recipe_ == est.recipe_ and str(back.physics_) == str(est.physics_)


@pytest.mark.parametrize("bad, match", [
    (lambda x, y: (np.where(np.arange(x.size).reshape(x.shape) == 5, np.nan, x), y), "NaN"),
    (lambda x, y: (x, np.where(np.arange(y.size).reshape(y.shape) == 7, np.inf, y)), "infinity"),
    (lambda x, y: (x, y[:, :-1]), "shape of X"),
    (lambda x, y: (x, y[:-1]), "shape of X"),
    (lambda x, y: (x[:1], y[:1]), "1 sample"),
    (lambda x, y: (x, np.zeros_like(y)), "identically zero"),
    (lambda x, y: (x[:, :2], y[:, :2]), "2 feature"),
])
def test_bad_data_is_refused(bad, match):
    x = snapshots(6, 5)
    with pytest.raises(ValueError, match=match):
        NeuralPDERegressor(budget=1, families=("homogeneous",), depths=(2,), **ONLY).fit(*bad(x, x.copy()))


@pytest.mark.parametrize("params, match", [
    (dict(budget=-1), "budget"), (dict(families=("bogus",)), "families"), (dict(widths=(4,)), "odd"),
    (dict(depths=(0,)), "depths"), (dict(activations=("relu",)), "activations"), (dict(omega=2.5), "omega"),
    (dict(validation_fraction=1.0), "validation_fraction"), (dict(boundary="open"), "boundary"),
    (dict(spacing=-0.1), "spacing"), (dict(n_starts=0), "n_starts"), (dict(dtype="int8"), "dtype"),
])
def test_bad_settings_are_refused_at_fit_not_init(params, match):
    est = NeuralPDERegressor(**params)              # stored, not validated (scikit-learn convention)
    assert all(est.get_params()[k] == v for k, v in params.items())
    x = snapshots(6, 6)
    with pytest.raises(ValueError, match=match):
        est.fit(x, x)


def test_lists_and_float32_are_accepted(homogeneous_data):
    x, y, _, _ = homogeneous_data
    small = dict(budget=60, families=("homogeneous",), depths=(16,), max_iter=40, **ONLY)
    from_lists = NeuralPDERegressor(**small).fit(x.tolist(), y.tolist())
    from_f32 = NeuralPDERegressor(**small).fit(x.astype(np.float32), y.astype(np.float32))
    assert from_lists.score(x, y) > 1 - 1e-8
    assert from_f32.score(x, y) > 1 - 1e-6              # float32 data: rounding of the inputs only
    assert from_lists.predict(x.tolist()).dtype == np.float64


def test_predict_checks_the_grid(homogeneous_fit):
    with pytest.raises(ValueError, match="expecting 32 features"):
        homogeneous_fit.predict(snapshots(2, 7, n=16))
    with pytest.raises(ValueError, match="2D array"):
        homogeneous_fit.predict(snapshots(1, 7)[0])


def test_two_dimensional_grid():
    """2-D ADR with a velocity vector and an anisotropic diffusion tensor is recovered; the truth has no
    cross term, so the 5-point star kind (5 parameters) wins over the 9-point box (9) at the same error."""
    x_, y_ = sp.symbols("x y")
    u = sp.Function("u")(x_, y_)
    U, V, Dxx, Dyy, R = sp.symbols("U_x U_y D_xx D_yy R")
    layer = npdegen.NeuralPDE(u + R * u - ops.advection((U, V), u) + ops.diffusion([[Dxx, 0], [0, Dyy]], u), u,
                              params={s: "homogeneous" for s in (U, V, Dxx, Dyy, R)})
    n, h = (10, 8), (0.1, 0.125)
    truth = {"U_x": 0.02, "U_y": -0.03, "D_xx": 0.003, "D_yy": 0.002, "R": -0.01}
    net = layer.compile(n=n, spacing=h, layers=4, omega=OMEGA)
    rng = np.random.default_rng(8)
    x = rng.standard_normal((16, *n))
    y = net.forward(x, {k: np.array(v) for k, v in truth.items()})
    est = NeuralPDERegressor(budget=60, families=("homogeneous",), depths=(4,), widths=(3,),
                             activations=("identity",), spacing=h, n_starts=2).fit(x, y)
    assert est.predict(x).shape == x.shape
    for k, v in truth.items():
        assert float(est.theta_[k]) == pytest.approx(v, rel=1e-6, abs=1e-10), k
    assert est.recipe_["kind"] == "star" and "D_xy" not in est.theta_     # no cross term: the 5-point stencil


def test_learnable_reaction_and_dirichlet_boundary():
    """f(x) = x + A2 x² (a logistic-type reaction) on a zero-Dirichlet grid: the 'reaction'
    activation recovers A2 and beats the identity (no spectral start off a periodic grid)."""
    q, A2 = sp.Symbol("q"), sp.Symbol("A2")
    z, X = sp.Function("z")(q), sp.Symbol("X")
    U, D, R = sp.symbols("U D R")
    layer = npdegen.NeuralPDE(z + R * z - U * z.diff(q) + D * z.diff(q, 2), z, activation=X + A2 * X**2,
                              params={U: "homogeneous", D: "homogeneous", R: "homogeneous", A2: "homogeneous"})
    n = 24
    net = layer.compile(n=n, spacing=1.0 / n, layers=8, omega=OMEGA, boundary="dirichlet")
    truth = {"U": np.array(0.2 / n), "D": np.array(0.2 / n**2), "R": np.array(0.05), "A2": np.array(-0.3)}
    x = np.abs(snapshots(24, 11, n=n))
    y = net.forward(x, truth)
    est = NeuralPDERegressor(budget=60, families=("homogeneous",), widths=(3,), depths=(8,), boundary="dirichlet",
                             activations=("identity", "reaction"), n_starts=2).fit(x, y)
    assert est.recipe_["activation"] == "reaction"
    for k, v in truth.items():
        assert float(est.theta_[k]) == pytest.approx(float(v), rel=1e-5), k
    assert abs(float(est.theta_["A3"])) < 1e-6
    tried = {e["recipe"]: e for e in est.search_report_}
    assert tried["moments/homogeneous/w3/L8/identity"]["val_nrmse"] > 100 * est.validation_nrmse_


def test_nrmse_and_score_formulas(homogeneous_fit, homogeneous_data):
    """nRMSE by a plain loop; a zero target is normalised by the RMS norm; weighted scores."""
    rng = np.random.default_rng(13)
    y, p = rng.standard_normal((5, 7)), rng.standard_normal((5, 7))
    y[2] = 0.0
    norms = [np.sqrt(sum(v * v for v in row)) for row in y]
    rms = np.sqrt(sum(n * n for n in norms) / 5)
    want = sum(np.sqrt(sum((a - b) ** 2 for a, b in zip(pr, yr))) / (n or rms) for pr, yr, n in zip(p, y, norms)) / 5
    assert nrmse(p, y) == pytest.approx(want, rel=1e-13)
    assert nrmse(p, y, pooled=True) == pytest.approx(np.sqrt(np.sum((p - y) ** 2) / np.sum(y * y)), rel=1e-13)
    _, _, x_test, y_test = homogeneous_data
    est = homogeneous_fit
    pred = est.predict(x_test)
    w = np.arange(1.0, len(x_test) + 1)
    per = np.sqrt(np.sum((pred - y_test) ** 2, axis=1)) / np.sqrt(np.sum(y_test ** 2, axis=1))
    assert est.score(x_test, y_test, sample_weight=w) == pytest.approx(1 - np.sum(w * per) / np.sum(w), abs=1e-15)
    with pytest.raises(ValueError, match="sample_weight"):
        est.score(x_test, y_test, sample_weight=-w)


def test_spectral_estimate_closed_form():
    """Data made by the exact multiplier exp(r − i b·κ − κᵀCκ) give back r, b and C."""
    for grid, spacing, b, C in [((64,), (1 / 64,), [0.07], [[2e-3]]),
                                ((32, 24), (1 / 32, 1 / 24), [0.05, -0.04], [[2e-3, 4e-4], [4e-4, 1e-3]])]:
        rng = np.random.default_rng(9)
        x = rng.standard_normal((20, *grid))
        kappa = np.meshgrid(*[2 * np.pi * np.fft.fftfreq(n, d=d) for n, d in zip(grid, spacing)], indexing="ij")
        b, C = np.array(b), np.array(C)
        exponent = -0.1 - 1j * sum(bi * k for bi, k in zip(b, kappa)) - sum(
            C[i, j] * kappa[i] * kappa[j] for i in range(len(grid)) for j in range(len(grid)))
        axes = tuple(range(1, len(grid) + 1))
        y = np.real(np.fft.ifftn(np.fft.fftn(x, axes=axes) * np.exp(exponent), axes=axes))
        est = spectral_estimate(x, y, spacing)
        assert est.reaction == pytest.approx(-0.1, abs=1e-9)
        np.testing.assert_allclose(est.velocity, b, atol=1e-9)
        np.testing.assert_allclose(est.diffusion, C, atol=1e-9)


@settings(derandomize=True, max_examples=12, deadline=None)
@given(b=st.floats(-0.45, 0.45), c=st.floats(0.0, 5e-3), r=st.floats(-1.0, 1.0))
def test_spectral_estimate_any_shift_within_half_the_period(b, c, r):
    n = 48
    x = np.random.default_rng(14).standard_normal((8, n))
    k = 2 * np.pi * np.fft.fftfreq(n, d=1 / n)
    y = np.real(np.fft.ifft(np.fft.fft(x, axis=1) * np.exp(r - 1j * b * k - c * k * k), axis=1))
    est = spectral_estimate(x, y, (1 / n,))
    assert est.velocity[0] == pytest.approx(b, abs=1e-8)
    assert est.diffusion[0, 0] == pytest.approx(c, abs=1e-9)
    assert est.reaction == pytest.approx(r, abs=1e-8)


def test_moment_layers_have_their_moments():
    """Width 5 in 1-D: W_0..W_4 = 1 + R, −U, 2D, 6 C3, 24 C4; 2-D width 3 (the free 3 × 3 box):
    W_(1,1) = 2 D_xy, W_(2,1) = 2 C_xxy, W_(2,2) = 4 C_xxyy."""
    kind = KINDS["moments"]
    layer = kind.layer(Recipe("moments", "homogeneous", 5, 4, "identity"), 1)
    R, U, D, C3, C4 = sp.symbols("R U D C3 C4")
    got = layer.moments(4, spacing=0.1)
    for k, want in enumerate([1 + R, -U, 2 * D, 6 * C3, 24 * C4]):
        assert sp.simplify(got[k] - want) == 0, k
    assert [name for _, name, _ in moment_parameters(2, 3)] == ["R", "U_x", "U_y", "D_xx", "D_xy", "D_yy", "C_xxy",
                                                                "C_xyy", "C_xxyy"]
    layer2 = kind.layer(Recipe("moments", "homogeneous", 3, 4, "identity"), 2)
    got2 = layer2.moments(4, spacing=(0.1, 0.2))
    assert sp.simplify(got2[(1, 1)] - 2 * sp.Symbol("D_xy")) == 0
    assert sp.simplify(got2[(0, 2)] - 2 * sp.Symbol("D_yy")) == 0
    assert sp.simplify(got2[(2, 1)] - 2 * sp.Symbol("C_xxy")) == 0
    assert sp.simplify(got2[(2, 2)] - 4 * sp.Symbol("C_xxyy")) == 0


def test_depth_transfer_keeps_the_map():
    """A warm start for twice the depth keeps (1 + ωR)^L and halves the per-layer U and D."""
    kind = KINDS["moments"]
    src = Recipe("moments", "homogeneous", 3, 8, "identity", OMEGA)
    dst = Recipe("moments", "heterogeneous", 3, 16, "identity", OMEGA)
    net = kind.layer(dst, 1).compile(n=12, layers=16, omega=OMEGA, spacing=1 / 12)
    theta = {"R": np.array(-0.04), "U": np.array(0.02), "D": np.array(0.001)}
    out = kind.transfer(theta, src, net, dst)
    assert out["U"].shape == (12,)
    np.testing.assert_allclose(out["U"], 0.01)
    np.testing.assert_allclose(out["D"], 0.0005)
    np.testing.assert_allclose((1 + OMEGA * out["R"]) ** 16, (1 + OMEGA * -0.04) ** 8, rtol=1e-12)


class _FreeStencil(LayerKind):
    """A kind added from outside: the free 3-point stencil, weights as parameters (identity start)."""
    name = "test-free"
    dims = (1,)
    families = ("homogeneous", "time-dependent")

    def layer(self, recipe, dim):
        return npdegen.NeuralPDE.free_stencil([-1, 0, 1], family=recipe.family, name=f"tf_{recipe.family[:3]}")

    def random_starts(self, net, recipe, spacing, count, rng):
        return [{"w_m1": np.zeros(net.shapes["w_m1"]), "w_0": np.ones(net.shapes["w_0"]),
                 "w_p1": np.zeros(net.shapes["w_p1"])}]             # one start: the identity map


def test_a_new_kind_joins_the_search(homogeneous_data):
    x, y, _, _ = homogeneous_data
    register(_FreeStencil())
    try:
        est = NeuralPDERegressor(budget=60, kinds=("moments", "test-free"), depths=(16,), max_iter=60,
                                 **ONLY).fit(x, y)
    finally:
        del KINDS["test-free"]
    tried = {e["recipe"]: e for e in est.search_report_}
    assert tried["test-free/homogeneous/w3/L16/identity"]["status"] == "fitted"
    assert tried["test-free/homogeneous/w3/L16/identity"]["val_nrmse"] < 1e-4   # the same map, as weights
    # no per-site family for this kind: its time-dependent recipe starts from its homogeneous fit
    assert "test-free/heterogeneous/w3/L16/identity" not in tried
    assert tried["test-free/time-dependent/w3/L16/identity"]["warm_from"] == ["test-free/homogeneous/w3/L16/identity"]
    assert tried["moments/time-dependent/w3/L16/identity"]["warm_from"] == ["moments/heterogeneous/w3/L16/identity"]
    assert est.recipe_["family"] == "homogeneous"          # the simplest of the exact fits


def test_cli_writes_model_report_and_plots(tmp_path, homogeneous_data, capsys):
    x, y, x_test, y_test = homogeneous_data
    np.save(tmp_path / "X.npy", x)
    np.save(tmp_path / "Y.npy", y)
    out = tmp_path / "fit"
    status = fit_main([str(tmp_path / "X.npy"), str(tmp_path / "Y.npy"), "--budget", "60", "--out", str(out),
                       "--seed", "1", "--families", "homogeneous,heterogeneous", "--widths", "3",
                       "--depths", "16", "--activations", "identity"])
    assert status == 0, capsys.readouterr().err
    doc = json.loads((out / "model.json").read_text())
    assert doc["recipe"]["depth"] == 16 and doc["grid"] == [N]
    assert doc["parameters"]["U"] == pytest.approx(float(HOMOGENEOUS["U"]), rel=1e-6)
    est = pickle.loads((out / "model.pkl").read_bytes())
    assert nrmse(est.predict(x_test), y_test) < 1e-8
    report = (out / "report.txt").read_text()
    assert "winner: moments/homogeneous/w3/L16/identity" in report and "stability" in report
    printed = capsys.readouterr().out
    assert "wrote" in printed
    pytest.importorskip("matplotlib")
    assert (out / "predictions.png").stat().st_size > 5000 and (out / "search.png").stat().st_size > 5000


def test_cli_errors_are_one_line(tmp_path, capsys):
    np.save(tmp_path / "X.npy", snapshots(4, 0))
    assert fit_main([str(tmp_path / "X.npy"), str(tmp_path / "missing.npy"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("npdegen fit: error:") and "missing.npy" in err and len(err.splitlines()) == 1
    assert fit_main([str(tmp_path / "X.npy"), str(tmp_path / "X.npy"), "--depths", "4,x"]) == 2
    assert "comma list of integers" in capsys.readouterr().err
