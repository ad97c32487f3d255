"""The estimator's choice: stability certificates rank fits, wider stencils start from narrower fits,
the simplest fit near the best wins.

References are independent of the certificate code: a layer's gain per mode is the FFT of one linear
layer's impulse response (a translation-invariant linear map is diagonal in Fourier modes), the
nonlocal kernel's symbol is the DFT of its rectangle-rule samples, and the wider stencil's map is
compared with the narrower network's output.
"""
import math

import numpy as np
import pytest

pytest.importorskip("sklearn")

from npdegen.estimator import KINDS, NeuralPDERegressor, Recipe, RecipeSpace, register  # noqa: E402
from npdegen.estimator.choice import (AMPLIFICATION_TOL, CERTIFIED_WITHIN, PARSIMONY, Certificate,  # noqa: E402
                                      better, certify, choose, data_growth, penalised, rank)
from npdegen.estimator.moments import MomentStencil  # noqa: E402
from npdegen.estimator.recipes import LayerKind  # noqa: E402
from npdegen.estimator.search import Fit, Problem, Search  # noqa: E402

N = 32
H = 1.0 / N


def snapshots(count, seed, n=N):
    rng = np.random.default_rng(seed)
    q = (np.arange(n) + 0.5) / n
    return sum(rng.standard_normal((count, 1)) / m * np.sin(2 * np.pi * m * q + rng.uniform(0, 6, (count, 1)))
               for m in range(1, 6))


def fourier_map(x, shift_cells, variance_cells2, growth=1.0):
    """Exact advection by ``shift_cells`` and heat flow of variance ``variance_cells2`` (in cells)."""
    k = 2 * np.pi * np.fft.fftfreq(x.shape[1])
    mult = growth * np.exp(-1j * k * shift_cells - variance_cells2 * k * k / 2)
    return np.real(np.fft.ifft(np.fft.fft(x, axis=1) * mult, axis=1))


def moments_net(recipe):
    kind = KINDS["moments"]
    return kind.layer(recipe, 1), kind.compile(kind.layer(recipe, 1), recipe, (N,), (H,), "periodic", "auto",
                                               "float64")


def impulse_gain(net, theta, modes=None):
    """max over modes of the symbol of one layer (``net`` has one layer): ``Σ_j r_j e^{−ijθ}`` with
    ``r`` its impulse response, on the grid's modes, or on ``modes`` angles θ ∈ [0, π]."""
    impulse = np.zeros((1, N))
    impulse[0, 0] = 1.0
    r = net.forward(impulse, theta)[0]
    if modes is None:
        return float(np.abs(np.fft.fft(r)).max())
    j = (np.arange(N) + N // 2) % N - N // 2
    t = np.linspace(0, np.pi, modes)
    return float(np.abs(np.exp(-1j * np.outer(t, j)) @ r).max())


# ---------------------------------------------------------------- certificates
@pytest.mark.parametrize("R, U, D", [(0.0, 0.2, 0.2), (0.01, 0.1, 0.3), (-0.02, 0.0, 0.1), (0.0, 0.4, 0.01)])
def test_moment_gain_is_the_largest_mode_amplification(R, U, D):
    one = Recipe("moments", "homogeneous", 3, 1, "identity", 0.5)
    layer, net = moments_net(one)
    theta = {"R": np.array(R), "U": np.array(U * H), "D": np.array(D * H * H)}
    gain, _ = KINDS["moments"].gain(layer, net, theta, one, (H,))
    # the certificate's sup over all angles θ: at least the grid modes' largest, equal to a fine sampling's
    assert gain >= impulse_gain(net, theta) - 1e-12
    assert gain == pytest.approx(impulse_gain(net, theta, modes=20001), rel=1e-7)
    # the learnable reaction x + A2 x² + A3 x³ (a step-IR layer): slope 1 at 0, the same gain; with
    # A2 = A3 = 0 the layer is linear and its impulse response is the reference again
    poly = Recipe("moments", "homogeneous", 3, 1, "reaction", 0.5)
    poly_layer, poly_net = moments_net(poly)
    zero = dict(theta, A2=np.array(0.0), A3=np.array(0.0))
    assert impulse_gain(poly_net, zero, modes=20001) == pytest.approx(gain, rel=1e-7)
    for a2, a3 in ((0.0, 0.0), (0.3, -0.2)):
        curved = dict(theta, A2=np.array(a2), A3=np.array(a3))
        assert KINDS["moments"].gain(poly_layer, poly_net, curved, poly, (H,))[0] == pytest.approx(gain, rel=1e-12)
    # certified when gain**L is within the data's growth (here 1) plus the slack
    deep = Recipe("moments", "homogeneous", 3, 16, "identity", 0.5)
    cert = certify(KINDS["moments"], layer, net, theta, deep, (H,), growth=1.0)
    assert cert.amplification == pytest.approx(gain ** 16, rel=1e-12)
    assert cert.certified == (gain ** 16 <= 1 + AMPLIFICATION_TOL)


def test_uncertified_fits_are_promoted_last():
    """A first stage whose most accurate fit is uncertified: the certified one is promoted first."""
    fits = [_fit(3, 1e-3, False), _fit(5, 2e-3, True), _fit(5, 3e-3, False)]
    assert [f.val_nrmse for f in sorted(fits, key=rank)] == [2e-3, 1e-3, 3e-3]


@pytest.mark.parametrize("family, shape", [("heterogeneous", (N,)), ("time-dependent", (3, N))])
@pytest.mark.parametrize("width", [3, 5])
def test_moment_gain_equals_the_certificates(family, shape, width):
    """Per site and per layer: the kind's gain is npdegen.stability's max |G| (it evaluates the same
    angles from the weights without the rest of the certificate)."""
    import npdegen
    rng = np.random.default_rng(width)
    recipe = Recipe("moments", family, width, shape[0] if len(shape) == 2 else 4, "tanh", 0.7)
    layer, net = moments_net(recipe)
    theta = {"R": 0.01 * rng.standard_normal(shape), "U": 0.3 * H * rng.standard_normal(shape),
             "D": 0.2 * H * H * rng.uniform(0.5, 1.5, shape)}
    if width == 5:
        theta.update(C3=1e-3 * H ** 3 * rng.standard_normal(shape), C4=-1e-3 * H ** 4 * rng.uniform(0, 1, shape))
    gain, _ = KINDS["moments"].gain(layer, net, theta, recipe, (H,))
    cert = npdegen.stability(layer, theta, spacing=H, omega=0.7, slope=1.0)
    assert gain == pytest.approx(cert.max_gain, rel=1e-12)


def test_growth_beyond_the_data_is_uncertified_and_within_it_certified():
    one = Recipe("moments", "homogeneous", 3, 8, "identity", 0.5)
    layer, net = moments_net(one)
    theta = {"R": np.array(0.05), "U": np.array(0.0), "D": np.array(0.1 * H * H)}   # mean x(1 + 0.025) per layer
    x = snapshots(6, 0)
    y = net.forward(x, theta)
    assert data_growth(x, y) == pytest.approx(np.max(np.linalg.norm(y, axis=1) / np.linalg.norm(x, axis=1)))
    assert not certify(KINDS["moments"], layer, net, theta, one, (H,), growth=1.0).certified
    # data that grow as much as the network (the mean mode: 1.025**8) allow it
    assert certify(KINDS["moments"], layer, net, theta, one, (H,), growth=1.025 ** 8).certified
    text = certify(KINDS["moments"], layer, net, theta, one, (H,), growth=1.0).describe()
    assert text.startswith("uncertified: gain 1.025 per layer") and "ranked after certified fits" in text


def test_nonlocal_gain_is_the_sampled_kernel_symbol():
    kind = KINDS["nonlocal"]
    recipe = Recipe("nonlocal", "homogeneous", 0, 1, "identity", 1.0)
    layer = kind.layer(recipe, 1)
    net = kind.compile(layer, recipe, (N,), (H,), "periodic", "auto", "float64")
    for A, sigma, mu in [(1.0, 0.3 * H, 0.1 * H), (0.9, 2 * H, -3 * H), (1.02, 2.5 * H, 0.0)]:
        theta = {"A": np.array(A), "sigma": np.array(sigma), "mu": np.array(mu)}
        r = (np.arange(N) - N // 2) * H
        images = sum(np.exp(-(r + m - mu) ** 2 / (2 * sigma ** 2)) for m in (-2, -1, 0, 1, 2))
        samples = A * H * images / (math.sqrt(2 * math.pi) * sigma)
        reference = float(np.abs(np.fft.fft(samples)).max())
        gain, _ = kind.gain(layer, net, theta, recipe, (H,))
        assert gain == pytest.approx(reference, rel=1e-6), (A, sigma, mu)


class _Unstable(MomentStencil):
    """The moment stencil of width 5 whose certificate always fails (a constructed case)."""
    name = "test-unstable"

    def recipes(self, space, family):
        return [Recipe(self.name, family, 5, L, "identity", space.omega) for L in space.depths]

    def gain(self, layer, net, theta, recipe, spacing):
        return 2.0, "constructed: declared unstable"


def test_an_uncertified_fit_ranks_after_certified_ones():
    """Noisy data (0.4 % noise) that the uncertified width-5 kind fits 2-10x better than the certified
    width-3 stencil: the certified fit wins, the report says why; with no certified fit, the best
    uncertified one wins."""
    x, x_val = snapshots(24, 1), snapshots(8, 2)
    y, y_val = fourier_map(x, 1.3, 1.1), fourier_map(x_val, 1.3, 1.1)
    y = y + 0.004 * np.std(y) * np.random.default_rng(3).standard_normal(y.shape)
    register(_Unstable())
    try:
        settings = dict(budget=30, families=("homogeneous",), widths=(3,), depths=(8,), activations=("identity",),
                        n_starts=2, max_iter=80)
        est = NeuralPDERegressor(kinds=("moments", "test-unstable"), **settings).fit(x, y)
        alone = NeuralPDERegressor(kinds=("test-unstable",), **settings).fit(x, y)
    finally:
        del KINDS["test-unstable"]
    rows = {e["recipe"]: e for e in est.search_report_ if e["status"] == "fitted"}
    bad, good = rows["test-unstable/homogeneous/w5/L8/identity"], rows["moments/homogeneous/w3/L8/identity"]
    # the uncertified fit is the more accurate one, within CERTIFIED_WITHIN
    assert good["val_nrmse"] / CERTIFIED_WITHIN < bad["val_nrmse"] < good["val_nrmse"] / 2
    assert bad["certified"] is False and bad["gain"] == 2.0 and "ranked after certified fits" in bad["note"]
    assert good["certified"] is True and good["gain"] ** 8 <= 1 + AMPLIFICATION_TOL
    assert est.recipe_["kind"] == "moments" and est.certified_
    assert est.certificate_["certified"] and est.certificate_["gain_per_layer"] == pytest.approx(good["gain"])
    assert alone.recipe_["kind"] == "test-unstable" and not alone.certified_
    assert "NOT certified" in alone.report()
    assert est.score(x_val, y_val) < alone.score(x_val, y_val)


def _fit(n_params, val, certified):
    cert = Certificate(1.0 if certified else 1.5, 1.0 if certified else 1e3, 1.01, certified)
    theta = {"p": np.zeros(n_params)}
    return Fit(Recipe("moments", "homogeneous", 3, 4, "identity"), None, None, theta, val, val, certificate=cert)


def test_certified_fits_rank_first_within_the_factor():
    exact, near, far = _fit(5, 1e-4, False), _fit(3, 1e-4 * CERTIFIED_WITHIN * 0.9, True), _fit(3, 0.3, True)
    assert choose([exact, near]) is near                            # certified and within the factor: preferred
    assert choose([exact, far]) is exact                            # an exact uncertified fit beats a bad certified one
    assert choose([exact, far], certified_within=np.inf) is far     # the strict rule
    assert choose([_fit(5, 1e-9, False), _fit(7, 1e-3, False)]).val_nrmse == 1e-9
    assert better(_fit(3, 1e-3, True), _fit(3, 2e-3, True)) and not better(_fit(3, 1e-3, False), _fit(3, 2e-3, True))
    with pytest.raises(ValueError):
        choose([])


def test_parsimony_rule():
    """The least max(v, 1e-9) * P**PARSIMONY among the certified fits: k times the parameters must buy
    k**(1/4) times less validation nRMSE."""
    a, b = _fit(3, 1e-2, True), _fit(768, 4e-3, True)
    assert penalised(a) == pytest.approx(1e-2 * 3 ** PARSIMONY) and PARSIMONY == 0.25
    assert choose([a, b]) is a                                      # 256x the parameters for 2.5x: not enough
    ratio = 81920 / 768
    assert choose([b, _fit(81920, 4e-3 / ratio ** 0.25 * 1.01, True)]) is b
    assert choose([b, _fit(81920, 4e-3 / ratio ** 0.25 * 0.99, True)]).n_params == 81920
    assert choose([_fit(3, 1e-12, True), _fit(768, 1e-15, True)]).n_params == 3    # exact data: the fewest
    assert choose([_fit(5, 1e-3, True), _fit(5, 5e-4, True)]).val_nrmse == 5e-4


# ---------------------------------------------------------------- wider from narrower
def test_wider_stencil_starts_from_the_padded_narrower_one():
    """The transfer gives the wider network the narrower one's map (all families, activations);
    carrying the names over with C3 = C4 = 0 would not."""
    rng = np.random.default_rng(5)
    x = snapshots(5, 3)
    kind = KINDS["moments"]
    for family, shape in (("homogeneous", ()), ("heterogeneous", (N,)), ("time-dependent", (6, N))):
        for act in ("identity", "tanh", "reaction"):
            r3, r5, r7 = (Recipe("moments", family, w, 6, act) for w in (3, 5, 7))
            (_, n3), (_, n5), (_, n7) = moments_net(r3), moments_net(r5), moments_net(r7)
            theta = {"R": -0.01 + 0.01 * rng.standard_normal(shape),
                     "U": 0.2 * H * (1 + 0.1 * rng.standard_normal(shape)),
                     "D": 0.2 * H * H * (1 + 0.1 * rng.standard_normal(shape))}
            if act == "reaction":
                theta.update(A2=np.array(0.1), A3=np.array(-0.05))
            y3 = n3.forward(x, theta)
            t5 = kind.transfer(theta, r3, n5, r5)
            np.testing.assert_allclose(n5.forward(x, t5), y3, rtol=0, atol=1e-12 * np.abs(y3).max())
            np.testing.assert_allclose(n7.forward(x, kind.transfer(t5, r5, n7, r7)), y3, rtol=0,
                                       atol=1e-12 * np.abs(y3).max())
            named = LayerKind.transfer(kind, theta, r3, n5, r5)          # the old transfer: names only
            assert np.abs(n5.forward(x, named) - y3).max() > 1e-4 * np.abs(y3).max()


@pytest.mark.parametrize("activation, shift, variance, iterations",
                         [("identity", 2.6, 0.8, 60), ("tanh", 2.6, 0.8, 60), ("tanh", 5.0, 0.5, 20)])
def test_wider_stencil_never_fits_worse_than_the_narrower(activation, shift, variance, iterations):
    """In the search, the width-5 recipe (warm-started from width 3 only: one start) ends with a
    training loss and a validation nRMSE no worse than the width-3 fit's, on data width 3 cannot
    match (with the old transfer, names only, both tanh cases ended with a worse training loss)."""
    x, x_val = snapshots(24, 7), snapshots(8, 8)
    y, y_val = fourier_map(x, shift, variance), fourier_map(x_val, shift, variance)
    space = RecipeSpace(kinds=("moments",), families=("homogeneous",), widths=(3, 5), depths=(8,),
                        activations=tuple(dict.fromkeys(("identity", activation)))).validate(1, (N,))
    search = Search(Problem(x, y, x_val, y_val, (H,)), space, budget=30, n_starts=1, max_iter=iterations)
    search.run()
    narrow = search.fits[f"moments/homogeneous/w3/L8/{activation}"]
    wide = search.fits[f"moments/homogeneous/w5/L8/{activation}"]
    mse = lambda fit: float(np.mean((fit.net.forward(x, fit.theta) - y) ** 2))
    assert mse(wide) <= mse(narrow) * (1 + 1e-12)
    assert wide.val_nrmse <= narrow.val_nrmse * (1 + 1e-12)
    if activation == "identity":
        assert wide.val_nrmse < 0.5 * narrow.val_nrmse          # and it uses its extra moments


# ---------------------------------------------------------------- certified checkpoints
def test_monitor_keeps_the_best_certified_checkpoint():
    """Checkpoints improve while the later ones are uncertified: the result is the last certified one
    when it is within the factor, else the best; certifying stays within its share of the time."""
    import time as _time

    from npdegen.estimator.monitor import CERTIFY_SHARE, Monitor
    values = {0: 1e-2, 1: 5e-3, 2: 2e-3, 3: 1e-3, 4: 4e-4}
    monitor = Monitor(lambda th: values[int(th["k"])], _time.perf_counter() + 60, 1,
                      certify=lambda th: int(th["k"]) <= 2)
    for k in range(5):
        monitor.began -= 10.0                       # as if 10 s of training passed between checks
        monitor.consider({"k": np.array(k)})
    assert monitor.best == 4e-4 and monitor.stable == 2e-3
    value, theta = monitor.result(10.0)
    assert value == 2e-3 and int(theta["k"]) == 2
    value, theta = monitor.result(4.0)              # the certified checkpoint is 5x worse: the best
    assert value == 4e-4 and int(theta["k"]) == 4
    calls = []

    def slow(th):
        calls.append(1)
        _time.sleep(0.02)
        return True
    monitor = Monitor(lambda th: 1.0 / (1 + int(th["k"])), _time.perf_counter() + 60, 1, certify=slow)
    started = _time.perf_counter()
    for k in range(40):
        monitor.consider({"k": np.array(k)})
        _time.sleep(0.005)
    assert monitor.certifying <= CERTIFY_SHARE * (_time.perf_counter() - started) + 0.03
    assert 1 <= len(calls) < 40
