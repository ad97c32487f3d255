"""The experiment scripts run end to end at a tiny size (their results at full size are committed in
examples/experiments/results/ with the command, machine and date), and their pieces are right:
baselines on linear maps, the flux and nonlocal rows on data of their own layers, the kernel symbol
against the sampled Gaussian's FFT, noise and low pass against hand-written loops, the recovery
network against the task's truth."""
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import npdegen

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "experiments"))
import extras  # noqa: E402
import recovery  # noqa: E402
from baselines import CirculantLinear, DenseLinear, nrmse  # noqa: E402


def test_linear_baselines_recover_linear_maps():
    rng = np.random.default_rng(0)
    n = 16
    X = rng.standard_normal((64, n))
    kernel = rng.standard_normal(n)
    Y = np.fft.irfft(np.fft.rfft(X, axis=1) * np.fft.rfft(kernel), n, axis=1)      # a circular convolution
    assert nrmse(CirculantLinear().fit(X, Y).predict(X), Y) < 1e-12
    A = rng.standard_normal((n, n))
    assert nrmse(DenseLinear(ridge=0).fit(X, X @ A).predict(X), X @ A) < 1e-10


def test_linear_baselines_on_2d_grids():
    """A 2-D circular convolution (made with np.roll, not FFT) is the circulant baseline's exact fit; a
    dense map of the flattened grid the dense one's; both return the input's shape. Band-limited inputs
    (modes at rounding level in every sample) leave those modes at 0 instead of amplifying rounding."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((80, 6, 5))
    kernel = rng.standard_normal((6, 5))
    Y = sum(kernel[i, j] * np.roll(np.roll(X, i, axis=1), j, axis=2) for i in range(6) for j in range(5))
    circ = CirculantLinear().fit(X, Y)
    assert circ.n_params_ == 30 and circ.predict(X).shape == X.shape and nrmse(circ.predict(X), Y) < 1e-12
    A = rng.standard_normal((30, 30))
    Z = (X.reshape(80, 30) @ A).reshape(X.shape)
    dense = DenseLinear(ridge=0).fit(X, Z)
    assert dense.n_params_ == 900 and nrmse(dense.predict(X), Z) < 1e-10
    q = (np.arange(16) + 0.5) / 16
    phase = rng.uniform(0, 6, (20, 1, 1))
    smooth = rng.standard_normal((20, 1, 1)) * np.sin(2 * np.pi * (q[:, None] + 2 * q[None, :]) + phase)
    fit = CirculantLinear().fit(smooth, 0.5 * smooth)
    assert np.count_nonzero(fit.kappa_) == 1 and np.allclose(fit.kappa_[fit.kappa_ != 0], 0.5)   # rfft half: (1, 2)


def test_fno2d_shapes_and_one_training_step():
    torch = pytest.importorskip("torch")
    from baselines import FNO2d, fno_predict, train_fno
    model = FNO2d(width=6, modes=3, layers=2)
    x = np.random.default_rng(2).standard_normal((4, 12, 10))
    assert fno_predict(model, x).shape == x.shape
    info = train_fno(model, x, 0.5 * x, epochs=2, batch=2)
    assert info["epochs"] == 2 and np.isfinite(info["loss"])
    assert info["n_params"] == sum(p.numel() * (2 if p.is_complex() else 1) for p in model.parameters())
    assert FNO2d().spectral[0].weight.shape == (2, 20, 20, 8, 8) and torch.is_complex(FNO2d().spectral[0].weight)


def test_flux_depth_and_deadline():
    # T (max|u|/Δ + 2ν/Δ²)/cfl by hand: 1·(2·64 + 2·0.01·64²)/0.8 = (128 + 81.92)/0.8 = 262.4 → 263
    assert extras.flux_depth(2.0, 1.0, 1 / 64, nu_max=0.01, cfl=0.8) == 263
    assert extras.flux_depth(1.0, 0.5, 0.1, cfl=0.5) == 10
    for bad in (dict(amplitude=0.0), dict(T=-1.0), dict(spacing=math.nan), dict(nu_max=-1e-3), dict(cfl=1.0)):
        args = dict(amplitude=1.0, T=1.0, spacing=0.1, nu_max=0.0, cfl=0.5) | bad
        with pytest.raises(ValueError):
            extras.flux_depth(**args)
    d = extras.Deadline(0.05)
    assert d.on_step(0, 0.0, {}) is False
    time.sleep(0.06)
    assert d.on_step(1, 0.0, {}) is True
    with pytest.raises(ValueError):
        extras.Deadline(0)


def _smooth_inputs(n, batch, seed=0, modes=3):
    q = (np.arange(n) + 0.5) / n
    rng = np.random.default_rng(seed)
    return sum(rng.uniform(-0.5, 0.5, (batch, 1)) * np.sin(2 * np.pi * m * q + rng.uniform(0, 6.3, (batch, 1)))
               for m in range(1, modes + 1))


def test_fit_flux_recovers_its_own_layer():
    """Data made by the Godunov layer with c = τ, D = ν τ: the fit (which starts at D = ν_max τ/2)
    finds them, and the certificate says CFL ≤ 1."""
    n, T, nu = 32, 0.2, 0.01
    x = _smooth_inputs(n, 12)
    L = extras.flux_depth(float(np.abs(x).max()), T, 1 / n, 1.25 * nu)
    _, net = extras.flux_network(n, 1 / n, L)
    tau = T / L
    truth = {"c": np.array(tau), "D": np.array(nu * tau)}
    y = net.forward(x, truth)
    fit = extras.fit_flux(x, y, T, 1 / n, budget=30, nu_max=1.25 * nu, steps=60)
    assert fit["depth"] == L
    assert abs(float(fit["theta"]["c"]) / tau - 1) < 1e-3
    assert abs(float(fit["theta"]["D"]) / (nu * tau) - 1) < 2e-2
    assert fit["train_nrmse"] < 1e-3
    info = extras.summary("flux", fit)
    assert info["stability"]["stable"] and info["stability"]["cfl"] <= 1
    assert abs(info["physics"]["total_time_L_c"] - T) < 1e-3 * T


def test_kernel_symbol_is_the_sampled_gaussian():
    """|ŵ(k)| of the nonlocal layer = |FFT| of Δ·exp(−r²/2σ²)/(√(2π)σ) sampled on the periodic grid."""
    n, h, sigma = 64, 1 / 64, 0.04
    net = extras.fisher_layer().compile(n, spacing=h, layers=2, omega=1.0)
    got = extras.kernel_symbol(net, {"sigma": np.array(sigma), "a": np.array(0.2)}, n)
    r = np.minimum(np.arange(n), n - np.arange(n)) * h          # periodic distance of site 0 to each site
    w = h * np.exp(-r ** 2 / (2 * sigma ** 2)) / (math.sqrt(2 * math.pi) * sigma)
    np.testing.assert_allclose(got, np.abs(np.fft.rfft(w)), atol=1e-9)
    assert extras.nonlocal_gain(net, {"sigma": np.array(sigma), "a": np.array(0.2)}, n) <= 1 + 1e-9


def test_fit_nonlocal_recovers_its_own_layer():
    n, h = 48, 1 / 48
    net = extras.fisher_layer().compile(n, spacing=h, layers=4, omega=1.0)
    truth = {"sigma": np.array(0.05), "a": np.array(0.1)}
    x = np.clip(0.5 + _smooth_inputs(n, 16, seed=1), 0, 1)
    y = net.forward(x, truth)
    fit = extras.fit_nonlocal(x, y, h, budget=30, depths=(2, 4), steps=60)
    assert fit["depth"] == 4 and set(fit["tried"]) == {2, 4}
    assert abs(float(fit["theta"]["sigma"]) - 0.05) < 1e-5 and abs(float(fit["theta"]["a"]) - 0.1) < 1e-5
    info = extras.summary("nonlocal", fit)
    assert abs(info["physics"]["reaction_rho_T"] - 0.4) < 1e-4
    assert abs(info["stability"]["reaction_slope_at_0"] - math.exp(0.1)) < 1e-4


def test_shift_row_finds_and_fits_a_shift():
    """y = x shifted right by 5 cells: the correlation start is −5Δ (the kernel reads z(q + r) at
    r = μ), and the one-layer shifted Gaussian fits it with a blur below a cell."""
    n, h = 64, 1 / 64
    x = _smooth_inputs(n, 24, seed=2)
    y = np.roll(x, 5, axis=1)
    assert extras.data_shift(x, y, h) == pytest.approx(-5 * h)
    assert extras.data_shift(y, x, h) == pytest.approx(5 * h)
    fit = extras.fit_shift(x, y, h, budget=30, steps=60)
    assert abs(float(fit["theta"]["mu"]) + 5 * h) < 1e-3 * h
    assert float(fit["theta"]["sigma"]) < h and fit["train_nrmse"] < 1e-2
    assert extras.summary("shift", fit)["physics"]["transport_beta_T"] == pytest.approx(5 * h, rel=1e-3)


def test_noise_low_pass_and_errors_by_hand():
    rng = np.random.default_rng(3)
    a = rng.standard_normal(11)
    hand = np.array([sum(a[(i + s) % 11] for s in range(-2, 3)) / 5 for i in range(11)])
    np.testing.assert_allclose(recovery.low_pass(a), hand, atol=1e-15)
    y = rng.standard_normal((400, 64)) * rng.uniform(0.1, 10, (400, 1))
    noisy = recovery.add_noise(y, 1e-2, np.random.default_rng(0))
    ratio = np.linalg.norm(noisy - y, axis=1) / np.linalg.norm(y, axis=1)
    assert abs(ratio.mean() - 1e-2) < 1e-3                       # σ = level · rms per sample
    assert np.array_equal(recovery.add_noise(y, 0.0, rng), y)
    with pytest.raises(ValueError):
        recovery.add_noise(y, -1.0, rng)
    truth = {"U": np.sin(np.arange(8.0)) + 2}
    assert recovery.relative_errors(truth, truth) == {"U": 0.0}
    off = {"U": truth["U"] * 1.01}
    assert abs(recovery.relative_errors(off, truth, smooth=False)["U"] - 0.01) < 1e-12


def test_recovery_network_is_the_task_truth():
    import npdegen.tasks as tasks
    task = tasks.make("varcoef-adr", n=32, n_train=4, n_test=0, cache=False)
    _, net = recovery.adr_network(32, "heterogeneous")
    pred = net.forward(task.x_train, {k: np.asarray(v) for k, v in task.truth.items()})
    np.testing.assert_allclose(pred, task.y_train, rtol=0, atol=1e-12 * np.abs(task.y_train).max())


def test_recovery_smoke(tmp_path):
    assert recovery.main(["--smoke", "--noise", "0", "0.01", "--out", str(tmp_path)]) == 0
    rec = json.loads((tmp_path / "recovery.json").read_text())
    assert [r["noise"] for r in rec["rows"]] == [0.0, 0.01]
    assert all(np.isfinite(list(r["errors"].values())).all() for r in rec["rows"])
    md = (tmp_path / "recovery.md").read_text()
    assert "| 0.01 |" in md
    est = rec["rows"][0]["estimator"]["structured"]      # the smoke: the estimator told the structure, first level
    assert est["recipe"]["kind"] == "moments" and est["recipe"]["depth"] == 32 and est["recipe"]["omega"] == 0.8
    assert est["errors"] is not None and np.isfinite(list(est["errors"].values())).all()
    assert "estimator" not in rec["rows"][1]
    assert "| 0 | told the structure | moments/" in md


def test_pooled_metric_rule():
    import run
    y = np.ones((3, 8))
    assert not run.pooled_metric(y)
    y[1] *= 1e-9
    assert run.pooled_metric(y) and not run.pooled_metric(y, ratio=1e-10)


def test_experiment_smoke(tmp_path):
    pytest.importorskip("sklearn")
    import run
    assert run.main(["advection-beta0.4-T0.5", "--smoke", "--out", str(tmp_path)]) == 0
    assert run.main(["fisher-kpp", "--smoke", "--models", "npdegen-nonlocal", "dense-linear",
                     "--nonlocal-depths", "2", "--out", str(tmp_path)]) == 0
    assert run.main(["burgers-nu0.01", "--smoke", "--models", "npdegen-flux", "npdegen-lse", "--out", str(tmp_path)]) == 0
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    flux = records[2]["inspect"]["npdegen-flux"]
    assert flux["stability"]["cfl"] <= 1 and records[2]["results"]["npdegen-flux"]["n_params"] == 2
    lse = records[2]["inspect"]["npdegen-lse"]
    assert records[2]["results"]["npdegen-lse"]["n_params"] == 4 and lse["stability"]["weights_positive"]
    assert set(records[0]["results"]) == {"npdegen", "npdegen-markov", "npdegen-nonlocal", "dense-linear",
                                          "circulant-linear", "fno"}
    assert records[0]["inspect"]["npdegen-markov"]["stability"]["positive"]
    assert set(records[1]["results"]) == {"npdegen-nonlocal", "dense-linear"}
    for rec in records:
        assert all(np.isfinite(r["nrmse"]) and np.isfinite(r["pooled"]) for r in rec["results"].values()
                   if "nrmse" in r)
    assert "stability" in records[0]["inspect"]["npdegen"] and "physics" in records[1]["inspect"]["npdegen-nonlocal"]
    estimator = records[0]["results"]["npdegen"]          # the estimator's certificate travels with its row
    assert isinstance(estimator["certified"], bool) and estimator["gain_per_layer"] > 0
    md = (tmp_path / "results.md").read_text()
    assert "| advection-beta0.4-T0.5 | npdegen |" in md and "| fisher-kpp | npdegen-nonlocal |" in md
    import plot
    assert plot.main(["--results", str(tmp_path)]) == 0
    assert (tmp_path / "nrmse.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a later call's row replaces the earlier one of the same task and model (latest wins)
    rows = run.latest(records + [dict(records[1], results={"dense-linear": dict(records[1]["results"]["dense-linear"],
                                                                                 nrmse=-1.0)})])
    assert rows["fisher-kpp"]["dense-linear"][0]["nrmse"] == -1.0
    assert set(rows) == {"advection-beta0.4-T0.5", "fisher-kpp", "burgers-nu0.01"}


def test_experiment_smoke_2d(tmp_path):
    """A 2-D task at the smoke size (16 × 16): the estimator, both linear baselines and the 2-D FNO."""
    pytest.importorskip("sklearn")
    import run
    assert run.main(["advection-diffusion-2d", "--smoke", "--out", str(tmp_path)]) == 0
    rec = json.loads((tmp_path / "results.jsonl").read_text())
    assert rec["n"] == [16, 16]
    assert set(rec["results"]) == {"npdegen", "dense-linear", "circulant-linear", "fno"}
    for row in rec["results"].values():
        assert "skipped" in row or (np.isfinite(row["nrmse"]) and np.isfinite(row["pooled"]))
    assert rec["results"]["circulant-linear"]["n_params"] == 256
    assert rec["results"]["npdegen"]["nrmse"] < 1.0        # better than predicting zero, even at 16 x 16
    assert "| advection-diffusion-2d | npdegen |" in (tmp_path / "results.md").read_text()


def test_estimator_summary_certifies_a_nonlocal_winner_with_npdegen_stability():
    """A nonlocal winner is certified by npdegen.stability from its compiled network (not the
    estimator's fallback): the gain equals the estimator's own certificate (exact for a periodic
    Gaussian blur, whose symbol's largest modulus is its mass, 1)."""
    rng = np.random.default_rng(0)
    n = 32
    x = rng.standard_normal((16, n))
    k = np.exp(-0.5 * ((np.arange(n) - n // 2) / 2.0) ** 2)
    k /= k.sum()
    y = np.real(np.fft.ifft(np.fft.fft(x) * np.fft.fft(np.roll(k, -n // 2))))
    est = npdegen.NeuralPDERegressor(budget=20, kinds=("nonlocal",)).fit(x, y)
    stability = extras.summary("estimator", est=est)["stability"]
    assert stability["stable"] and "npdegen.stability" not in stability
    assert stability["max_gain_per_layer"] == pytest.approx(est.certificate_["gain_per_layer"], rel=1e-9)


# ---------------------------------------------------------------- the soft-min (Cole–Hopf) row
def _band_limited(rng, batch, n):
    uh = np.fft.rfft(rng.standard_normal((batch, n)), axis=1)
    uh[:, n // 3:] = 0
    return np.fft.irfft(uh, n, axis=1)


def test_lse_potential_velocity_and_shift_by_hand():
    import lse_row
    rng = np.random.default_rng(4)
    n, h = 24, 1 / 24
    u = _band_limited(rng, 3, n) + np.array([[0.0], [0.7], [-0.2]])
    z = lse_row.potential(u, h)
    np.testing.assert_allclose(z.mean(axis=1), 0, atol=1e-14)
    np.testing.assert_allclose(lse_row.velocity(z, h), u - u.mean(axis=1, keepdims=True), atol=1e-12)
    xq = np.arange(n) * h                                                       # closed form of ½∫u
    w = 0.4 + 1.5 * np.sin(2 * np.pi * xq) - 0.5 * np.cos(4 * np.pi * xq)
    half = 0.5 * (-1.5 * np.cos(2 * np.pi * xq) / (2 * np.pi) - 0.5 * np.sin(4 * np.pi * xq) / (4 * np.pi))
    np.testing.assert_allclose(lse_row.potential(w[None], h)[0], half, atol=1e-14)
    shifted = lse_row.galilean_shift(u, np.array([2 * h, -5 * h, 0.0]), h)
    np.testing.assert_allclose(shifted, np.stack([np.roll(u[0], 2), np.roll(u[1], -5), u[2]]), atol=1e-12)


def test_lse_row_is_the_cole_hopf_image_of_the_linear_heat_network():
    """The row's prediction with the heat stencil equals the same pipeline through the *linear* heat
    network on φ = exp(−z/ε) (npdegen.NeuralPDE, no soft-min): Cole–Hopf, computed independently."""
    import sympy as sp
    import lse_row
    rng = np.random.default_rng(5)
    n, h, T, L, eps = 32, 1 / 32, 0.05, 40, 0.02
    x = 0.3 * _band_limited(rng, 4, n) + np.array([[0.0], [0.3], [0.0], [-0.1]])
    d = eps * T / (L * h * h)
    theta = {"logeps": np.array(np.log(eps)), "lw_m1": np.array(np.log(d)), "lw_0": np.array(np.log(1 - 2 * d)),
             "lw_p1": np.array(np.log(d))}
    _, net = lse_row.lse_network(n, h, L)
    got = lse_row.predict_lse(net, theta, x, T, h)
    q, D = sp.Symbol("q"), sp.Symbol("D")
    zf = sp.Function("z")(q)
    heat = npdegen.NeuralPDE(zf + D * zf.diff(q, 2), zf, params={D: "homogeneous"}).compile(n=n, spacing=1.0,
                                                                                            layers=L)
    z0 = lse_row.potential(x, h)
    zL = -eps * np.log(heat.forward(np.exp(-z0 / eps), {"D": np.array(d)}))
    m = x.mean(axis=1)
    want = m[:, None] + lse_row.galilean_shift(lse_row.velocity(zL, h), m * T, h)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-10 * np.abs(want).max())


def test_lse_velocity_loss_gradient_by_finite_differences():
    import lse_row
    rng = np.random.default_rng(6)
    n, h = 16, 1 / 16
    _, net = lse_row.lse_network(n, h, 6)
    z0 = lse_row.potential(_band_limited(rng, 3, n), h)
    target = _band_limited(rng, 3, n)
    theta = {"logeps": np.array(np.log(0.05)), "lw_m1": np.array(np.log(0.2)), "lw_0": np.array(np.log(0.55)),
             "lw_p1": np.array(np.log(0.25))}
    _, g = lse_row.velocity_loss(net, theta, z0, target, h)
    for k in theta:
        step = 1e-6
        up = {**theta, k: theta[k] + step}
        dn = {**theta, k: theta[k] - step}
        fd = (lse_row.velocity_loss(net, up, z0, target, h)[0] - lse_row.velocity_loss(net, dn, z0, target, h)[0]) / (2 * step)
        assert abs(float(g[k]) - fd) <= 1e-6 * max(1.0, abs(fd)), (k, float(g[k]), fd)


def test_lse_fit_reads_back_the_viscosity():
    """Data of the row's own map (ε = 0.02, the heat stencil): L-BFGS from ε_max/2 finds ε to 1e-4."""
    import lse_row
    rng = np.random.default_rng(7)
    n, h, T, eps = 32, 1 / 32, 0.05, 0.02
    x = 0.3 * _band_limited(rng, 12, n) + rng.uniform(-0.2, 0.2, (12, 1))
    L = math.ceil(2 * 1.25 * eps * T / h ** 2)
    d = eps * T / (L * h * h)
    truth = {"logeps": np.array(np.log(eps)), "lw_m1": np.array(np.log(d)), "lw_0": np.array(np.log(1 - 2 * d)),
             "lw_p1": np.array(np.log(d))}
    _, net = lse_row.lse_network(n, h, L)
    y = lse_row.predict_lse(net, truth, x, T, h)
    fit = lse_row.fit_lse(x, y, T, h, budget=20, eps_max=1.25 * eps, steps=200)
    assert fit["depth"] == L and abs(fit["eps"] / eps - 1) < 1e-4, fit["eps"]
    assert fit["train_nrmse"] < 1e-5
    s = lse_row.summary(fit)
    assert s["stability"]["weights_positive"] and abs(s["physics"]["total_time_L_tau"] / T - 1) < 1e-3
    quick = lse_row.fit_lse(x, y, T, h, budget=1e-6, eps_max=1.25 * eps)      # one evaluation, then out of time
    assert quick["iterations"] == 1 and np.isfinite(quick["train_nrmse"])
    with pytest.raises(ValueError, match="eps_max"):
        lse_row.fit_lse(x, y, T, h, budget=1, eps_max=0.0)


# ---------------------------------------------------------------- the Markov-chain row
def test_markov_row_recovers_its_own_chain():
    """Pairs made by a 12-layer upwind chain (drift 0.9 cells per layer, a little diffusion): the data's
    shift is 10.8 cells, the row takes ⌊11⌋ + 1 = 12 layers — the truth's structure — and reads back the
    transport and the probabilities; a chain's rows are positive and sum to one."""
    import npdegen
    import markov_row
    rng = np.random.default_rng(8)
    n, h, L = 64, 1 / 64, 12
    x = _band_limited(rng, 24, n)
    truth = {k: np.asarray(v) for k, v in npdegen.kushner_logits(0.9 * h, 0.02 * h * h, 1.0, h).items()}
    y = npdegen.markov_chain(family="homogeneous").compile(n=n, spacing=h, layers=L, omega=1.0).forward(x, truth)
    assert abs(extras.data_shift(x, y, h) / h) == 11
    fit = markov_row.fit_markov(x, y, h, budget=20)
    s = markov_row.summary(fit)["physics"]
    assert fit["depth"] == L and abs(s["transport_total_L_b"] / (10.8 * h) - 1) < 1e-4, s
    p = np.exp(np.array([float(truth[k]) for k in markov_row.NAMES]))
    np.testing.assert_allclose([s["p_minus"], s["p_stay"], s["p_plus"]], p / p.sum(), atol=1e-4)
    assert fit["train_nrmse"] < 1e-6
    with pytest.raises(ValueError, match="spacing"):
        markov_row.fit_markov(x, y, 0.0, budget=1)
