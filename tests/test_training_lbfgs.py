"""Issue 12, item 4 (acceptance): L-BFGS recovers heterogeneous ADR coefficients, survives trial
points that overflow, multi-start finds the right advection basin, the homogeneous warm start,
and minibatches from a memory-mapped file reach the full-batch optimum; the mean and relative
losses have the right gradients."""
import numpy as np
import pytest
import sympy as sp

import npdegen
from npdegen import NeuralPDE
from npdegen.runtime import lbfgs
from npdegen.runtime.network import NonFiniteError

pytest.importorskip("scipy")

q = sp.Symbol("q")
z = sp.Function("z")(q)
U, D, R = sp.symbols("U D R")


def adr(n, layers, family="heterogeneous", omega=0.8, terms=("U", "D", "R")):
    transform = z + (R * z if "R" in terms else 0) - U * z.diff(q) + D * z.diff(q, 2)
    params = {s: family for s in (U, D, R) if s.name in terms}
    return NeuralPDE(transform, z, params=params).compile(n=n, layers=layers, omega=omega, boundary="periodic")


def rough_inputs(n, batch, seed=0):
    """Periodic profiles with every resolved mode (amplitude 1/m): all coefficients are identifiable."""
    rng = np.random.default_rng(seed)
    qq = (np.arange(n) + 0.5) / n
    x = np.zeros((batch, n))
    for m in range(1, n // 2):
        x += rng.standard_normal((batch, 1)) / m * np.sin(2 * np.pi * m * qq + rng.uniform(0, 2 * np.pi, (batch, 1)))
    return x


def hetero_truth(n):
    qq = (np.arange(n) + 0.5) / n
    return {"U": 0.3 * np.cos(2 * np.pi * qq), "D": 0.3 + 0.15 * np.sin(2 * np.pi * qq),
            "R": -0.02 + 0.02 * np.cos(4 * np.pi * qq)}


def low_pass(a, width=2):
    """Periodic moving average over 2·width + 1 sites (the 'low-passed' comparison)."""
    return np.mean([np.roll(a, s) for s in range(-width, width + 1)], axis=0)


def relative_errors(theta, truth):
    return {k: float(np.linalg.norm(low_pass(theta[k]) - low_pass(truth[k])) / np.linalg.norm(truth[k]))
            for k in truth}


def recover(n, layers, steps, batch=32):
    net = adr(n, layers)
    truth = hetero_truth(n)
    x = rough_inputs(n, batch)
    y = net.forward(x, truth)
    theta0 = {"U": np.zeros(n), "D": np.full(n, 0.3), "R": np.zeros(n)}
    theta, hist = npdegen.train(net, x, y, theta0, steps=steps, optimizer="lbfgs", bounds={"D": (0, None)},
                                progress=False)
    return theta, hist, truth


def test_lbfgs_recovers_heterogeneous_coefficients_small():
    """n = 64, L = 32 (the single-level L-BFGS of before reached 1.7e-3 in 300 iterations)."""
    theta, hist, truth = recover(64, 32, 200)
    errors = relative_errors(theta, truth)
    assert max(errors.values()) <= 1e-3, errors
    assert hist.info["iterations"] <= 200
    assert len(hist.loss) == hist.info["iterations"] + 1
    assert hist.final_loss < 1e-8 * hist.loss[0]
    assert np.all(theta["D"] >= 0)
    levels = hist.info["levels"]                  # coarse to fine: 1, 2, 4, ..., 64 knots
    assert [lv["knots"]["D"] for lv in levels] == [[2 ** j] for j in range(7)]
    assert sum(lv["iterations"] for lv in levels) == hist.info["iterations"]
    assert all(a["loss"] >= b["loss"] for a, b in zip(levels, levels[1:]))


@pytest.mark.slow
def test_lbfgs_recovers_heterogeneous_coefficients_issue_size():
    """The issue's size: n = 256, L = 128, at most 500 iterations, to 1e-3 (low-passed).
    Measured (numba, 8 data sets): 1.9e-4 … 6.4e-4; the single-level L-BFGS of before: 70-115 %."""
    theta, hist, truth = recover(256, 128, 500)
    errors = relative_errors(theta, truth)
    assert max(errors.values()) <= 1e-3, (errors, hist.info)


def _guarded(net, limit_d=0.405, limit_u=0.5):
    """Make every trial point with D > limit_d or |U| > limit_u overflow, like an unstable scheme."""
    real = net.loss_and_grad

    def guarded(x, y, theta, **kw):
        if np.any(theta["D"] > limit_d) or np.any(np.abs(theta["U"]) > limit_u):
            raise NonFiniteError("loss_and_grad: non-finite values in output (forced)")
        return real(x, y, theta, **kw)
    net.loss_and_grad = guarded


def test_lbfgs_treats_an_overflowing_trial_point_as_a_huge_loss():
    net = adr(32, 8, "homogeneous", terms=("U", "D"))
    x = rough_inputs(32, 8)
    truth = {"U": np.array(0.3), "D": np.array(0.4)}
    y = net.forward(x, truth)
    _guarded(net)
    # unscaled: L-BFGS's first step (unit length) crosses the wall
    theta, hist = npdegen.train(net, x, y, {"U": np.array(0.0), "D": np.array(0.1)}, steps=100,
                                optimizer="lbfgs", progress=False, precondition=False)
    assert hist.info["overflows"] >= 1, hist.info          # the line search did step into the wall
    for k in truth:
        assert abs(float(theta[k]) - float(truth[k])) <= 1e-6
    # the start itself overflowing is an error that names the start
    with pytest.raises(npdegen.TrainingDiverged, match="L-BFGS start"):
        npdegen.train(net, x, y, {"U": np.array(0.0), "D": np.array(0.5)}, steps=5, optimizer="lbfgs",
                      progress=False)


def test_lbfgs_bounds_are_respected():
    net = adr(32, 8, "homogeneous", terms=("U", "D"))
    x = rough_inputs(32, 8)
    y = net.forward(x, {"U": np.array(0.3), "D": np.array(0.4)})
    theta, _ = npdegen.train(net, x, y, {"U": np.array(0.0), "D": np.array(0.1)}, steps=50, optimizer="lbfgs",
                             bounds={"D": (0.0, 0.35)}, progress=False)
    assert float(theta["D"]) == pytest.approx(0.35, abs=1e-12)          # the bound is active
    theta, _ = npdegen.train(net, x, y, {"U": np.array(0.0), "D": np.array(0.1)}, steps=50,
                             optimizer="adam", lr=0.05, bounds={"D": (0.0, 0.35)}, progress=False)
    assert float(theta["D"]) <= 0.35


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_layer_losses_can_be_skipped(optimizer, monkeypatch):
    """``layer_losses=False``: the same parameters, no ``history.layer_loss`` and no call of
    ``net.layer_losses`` (the forward storing every state that a budgeted search does not need)."""
    net = adr(16, 4, "homogeneous", terms=("U", "D"))
    x = rough_inputs(16, 4)
    y = net.forward(x, {"U": np.array(0.2), "D": np.array(0.3)})
    start = {"U": np.array(0.0), "D": np.array(0.1)}
    th1, h1 = npdegen.train(net, x, y, start, steps=5, optimizer=optimizer, progress=False)
    assert h1.layer_loss is not None and len(h1.layer_loss) == 5
    calls = []
    monkeypatch.setattr(type(net), "layer_losses", lambda *a, **k: calls.append(1))
    th0, h0 = npdegen.train(net, x, y, start, steps=5, optimizer=optimizer, progress=False, layer_losses=False)
    assert h0.layer_loss is None and not calls
    for k in th1:
        np.testing.assert_array_equal(th0[k], th1[k])
    assert h0.final_loss == h0.loss[-1]


# ---------------------------------------------------------------------------- multi-start
def advection_task():
    """Shift of ω U L = 10.24 sites of a wave of wavelength 8: aliased local minima in U."""
    n = 32
    net = adr(n, 16, "homogeneous", terms=("U", "D"))
    qq = np.arange(n) / n
    rng = np.random.default_rng(0)
    x = (np.sin(2 * np.pi * 4 * qq + rng.uniform(0, 2 * np.pi, (8, 1)))
         + 0.3 * np.sin(2 * np.pi * 3 * qq + rng.uniform(0, 2 * np.pi, (8, 1))))
    truth = {"U": np.array(0.8), "D": np.array(0.4)}
    return net, x, net.forward(x, truth), truth


def test_multistart_finds_the_advection_basin_a_single_start_misses():
    net, x, y, truth = advection_task()
    zero = {"U": np.array(0.0), "D": np.array(0.3)}
    plain = dict(bounds={"D": (0, None)}, precondition=False)      # the same L-BFGS for every run
    single, hist = npdegen.train(net, x, y, zero, steps=100, optimizer="lbfgs", progress=False, **plain)
    assert hist.final_loss > 1.0 and abs(float(single["U"]) - 0.8) > 0.3      # the wrong basin
    result = npdegen.multistart(net, x, y, 8, steps=100, seed=0, ranges={"U": (-1.5, 1.5), "D": (0.2, 0.6)},
                                **plain)
    assert result.history.final_loss < 1e-12
    assert abs(float(result.theta["U"]) - 0.8) < 1e-6 and abs(float(result.theta["D"]) - 0.4) < 1e-6
    assert len(result.runs) == 8 and result.runs[result.best]["final_loss"] == min(r["final_loss"] for r in result.runs)
    assert sum(r["final_loss"] > 1.0 for r in result.runs) >= 2          # other starts did get stuck
    report = str(result)
    assert "best" in report and report.count("\n") == 8
    # given starts (and the same answer from the right one)
    again = npdegen.multistart(net, x, y, [zero, {"U": np.array(0.75), "D": np.array(0.4)}], steps=100, **plain)
    with pytest.raises(ValueError, match="checkpoint"):
        npdegen.multistart(net, x, y, [zero], steps=1, checkpoint="never.npz")
    assert again.best == 1 and abs(float(again.theta["U"]) - 0.8) < 1e-6


def test_homogeneous_warm_start_for_richer_families():
    n = 32
    truth = {"U": 0.25, "D": 0.35, "R": -0.03}
    homo = adr(n, 8, "homogeneous")
    x = rough_inputs(n, 8)
    y = homo.forward(x, {k: np.array(v) for k, v in truth.items()})
    for family, shape in (("heterogeneous", (n,)), ("time-dependent", (8, n))):
        net = adr(n, 8, family)
        base = net.init_params(seed=0, scale=0.0, values={"D": 0.3})
        warm, hist = npdegen.homogeneous_fit(net, x, y, base, steps=100)
        for k, v in truth.items():
            assert warm[k].shape == shape and np.all(warm[k] == warm[k].flat[0])    # broadcast
            assert float(warm[k].flat[0]) == pytest.approx(v, abs=1e-7)
        result = npdegen.multistart(net, x, y, ["homogeneous", base], steps=20, base=base, warm_steps=100)
        assert result.best == 0 and result.runs[0]["kind"] == "homogeneous"
        assert result.history.final_loss < 1e-12


# ---------------------------------------------------------------------------- data and losses
def test_minibatches_from_a_memory_mapped_file_reach_the_full_batch_optimum(tmp_path):
    """Noisy targets: the optimum is not the truth; Adam on minibatches of 32 from a memory-mapped
    file of 256 samples (cosine schedule to 0) ends at the full-batch L-BFGS optimum."""
    n = 32
    net = adr(n, 8, "homogeneous")
    x = rough_inputs(n, 256, seed=3)
    rng = np.random.default_rng(4)
    y = net.forward(x, {"U": np.array(0.3), "D": np.array(0.35), "R": np.array(-0.05)}) + 0.05 * rng.standard_normal(x.shape)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    start = {"U": np.array(0.1), "D": np.array(0.25), "R": np.array(0.0)}
    best, _ = npdegen.train(net, x, y, start, steps=100, optimizer="lbfgs", loss="mean", progress=False)
    steps = 400
    opt = npdegen.optim.Adam(lr=0.02, schedule=npdegen.optim.Cosine(total=steps))
    tracker = npdegen.optim.Tracker()
    theta, hist = npdegen.train(net, str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), start, steps=steps,
                                optimizer=opt, batch_size=32, loss="mean", callbacks=[tracker], progress=False)
    assert len(tracker.epochs) == steps // 8                      # 8 batches per epoch
    for k in best:
        assert abs(float(theta[k]) - float(best[k])) <= 2e-3 * max(abs(float(best[k])), 0.05), (k, theta[k], best[k])
    full = npdegen.runtime.data.evaluate(net, x, y, theta, "mean")
    optimum = npdegen.runtime.data.evaluate(net, x, y, best, "mean")
    assert full <= optimum * (1 + 1e-4)
    np.testing.assert_allclose(hist.final_loss, net.layer_losses(x, y, theta)[-1], rtol=1e-12)


def test_iterables_of_batches():
    n = 32
    net = adr(n, 8, "homogeneous")
    x = rough_inputs(n, 64, seed=5)
    y = net.forward(x, {"U": np.array(0.3), "D": np.array(0.35), "R": np.array(-0.05)})
    pairs = [(x[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)]
    start = {"U": np.array(0.1), "D": np.array(0.25), "R": np.array(0.0)}
    tracker = npdegen.optim.Tracker()
    _, hist = npdegen.train(net, pairs, None, start, steps=40, lr=0.01, callbacks=[tracker], progress=False)
    assert len(hist.loss) == 40 and len(tracker.epochs) == 10 and hist.layer_loss is None
    assert hist.loss[-1] < 0.2 * hist.loss[0]
    _, hist = npdegen.train(net, iter(pairs), None, start, steps=40, lr=0.01, progress=False)
    assert len(hist.loss) == 4                                     # a one-shot iterable ends training
    with pytest.raises(ValueError, match="y is None"):
        npdegen.train(net, x, None, start, steps=1, progress=False)


@pytest.mark.parametrize("kind", ["sum", "mean", "relative"])
def test_loss_gradients_match_finite_differences(kind):
    from npdegen.runtime.data import evaluate, loss_and_grad
    net = adr(16, 4, "heterogeneous")
    x = rough_inputs(16, 3, seed=6)
    truth = hetero_truth(16)
    y = net.forward(x, truth) + 0.01 * np.random.default_rng(7).standard_normal(x.shape)
    theta = {k: v + 0.01 for k, v in truth.items()}
    value, grads = loss_and_grad(net, x, y, theta, kind)
    assert value == pytest.approx(evaluate(net, x, y, theta, kind), rel=1e-12)
    if kind == "relative":
        r = net.forward(x, theta) - y
        assert value == pytest.approx(np.mean(np.linalg.norm(r, axis=1) / np.linalg.norm(y, axis=1)), rel=1e-12)
    if kind == "mean":
        assert value == pytest.approx(np.mean((net.forward(x, theta) - y) ** 2), rel=1e-12)
    eps = 1e-6
    for k in theta:
        for i in (0, 7):
            plus = {**theta, k: theta[k].copy()}
            minus = {**theta, k: theta[k].copy()}
            plus[k][i] += eps
            minus[k][i] -= eps
            fd = (evaluate(net, x, y, plus, kind) - evaluate(net, x, y, minus, kind)) / (2 * eps)
            assert grads[k][i] == pytest.approx(fd, rel=1e-5, abs=1e-9), (k, i)
