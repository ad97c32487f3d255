"""Which nRMSE the estimator selects by: the mean per-sample one, or the pooled one where the mean is
ill-conditioned (a target of norm ~0, as on burgers-nu0.1). Errors are recomputed here by hand."""
import numpy as np
import pytest

pytest.importorskip("sklearn")

from npdegen.estimator import NeuralPDERegressor  # noqa: E402
from npdegen.estimator.regressor import POOLED_RATIO, ill_conditioned  # noqa: E402

N = 24
Q = (np.arange(N) + 0.5) / N


def pairs(count, seed, tiny=None):
    """Inputs: sine sums of modes 1-3; targets: shifted by 2 cells and damped by 0.9 (a linear map that a
    5-point stencil approximates well on these modes); ``tiny``: that sample's target scaled by 1e-12
    (a decayed sample)."""
    rng = np.random.default_rng(seed)
    x = sum(rng.standard_normal((count, 1)) / m * np.sin(2 * np.pi * m * Q + rng.uniform(0, 6, (count, 1)))
            for m in range(1, 4))
    y = 0.9 * np.roll(x, 2, axis=1)
    if tiny is not None:
        y[tiny] *= 1e-12
    return x, y


def by_hand(pred, y, pooled):
    e = (pred - y).reshape(len(y), -1)
    t = y.reshape(len(y), -1)
    if pooled:
        return float(np.sqrt((e ** 2).sum() / (t ** 2).sum()))
    return float(np.mean(np.sqrt((e ** 2).sum(1)) / np.sqrt((t ** 2).sum(1))))


def test_ill_conditioned_rule():
    y = np.ones((3, 5))
    assert not ill_conditioned(y)
    y[1] *= 0.5 * POOLED_RATIO
    assert ill_conditioned(y) and not ill_conditioned(y, ratio=0.1 * POOLED_RATIO)


SETTINGS = dict(budget=20, kinds=("moments",), families=("homogeneous",), widths=(5,), depths=(4,),
                activations=("identity",), n_starts=2, max_iter=40, random_state=1)


@pytest.mark.parametrize("metric, tiny, expected", [("auto", None, "mean"), ("auto", 0, "pooled"),
                                                    ("mean", 0, "mean"), ("pooled", None, "pooled")])
def test_metric_chosen_and_used(metric, tiny, expected):
    """``metric_`` follows the rule; ``validation_nrmse_`` is the chosen nRMSE of the held-out pairs
    and ``score`` is 1 − that nRMSE, both recomputed by hand."""
    x, y = pairs(20, 0, tiny)
    est = NeuralPDERegressor(metric=metric, **SETTINGS).fit(x, y)
    assert est.metric_ == expected
    train, val = est._split(len(x))
    pooled = expected == "pooled"
    assert est.validation_nrmse_ == pytest.approx(by_hand(est.predict(x[val]), y[val], pooled), rel=1e-9)
    assert est.score(x, y) == pytest.approx(1 - by_hand(est.predict(x), y, pooled), rel=1e-9, abs=1e-12)
    w = np.arange(1.0, 21.0)
    e2 = ((est.predict(x) - y) ** 2).sum(1)
    want = (np.sqrt((w * e2).sum() / (w * (y ** 2).sum(1)).sum()) if pooled
            else (w * np.sqrt(e2) / np.sqrt((y ** 2).sum(1))).sum() / w.sum())
    assert est.score(x, y, sample_weight=w) == pytest.approx(1 - want, rel=1e-9, abs=1e-12)


def test_pooled_selection_ignores_a_decayed_sample():
    """With one target scaled to ~0 the mean per-sample nRMSE of any fit is dominated by that sample
    (its relative error is ~1e12 times the others'); the pooled selection still finds the map, and
    its pooled error on fresh pairs is small."""
    _, val = NeuralPDERegressor(**SETTINGS)._split(20)
    x, y = pairs(20, 0, tiny=int(val[0]))                  # the decayed sample is held out
    est = NeuralPDERegressor(**SETTINGS).fit(x, y)
    assert est.metric_ == "pooled"
    x_new, y_new = pairs(10, 5)
    assert by_hand(est.predict(x_new), y_new, pooled=True) < 0.05
    mean = NeuralPDERegressor(metric="mean", **SETTINGS).fit(x, y)
    assert mean.validation_nrmse_ > 1e6           # what the per-sample mean selected by: the decayed sample's error


def test_bad_metric_is_refused():
    x, y = pairs(6, 0)
    with pytest.raises(ValueError, match="metric must be one of auto, mean, pooled"):
        NeuralPDERegressor(metric="median").fit(x, y)


def test_polish_passes_the_turn_to_the_next_fits():
    """Polish: the two preferred fits first; a fit that gains nothing stalls and the next in the preferred
    order gets the time (before: polish stopped once a round gained nothing, and the rest of the budget
    went unused); a fit that improves keeps its turn. Stub fits and a stub ``_attempt`` that halves the
    error of fit 3 twice and of no other."""
    import time
    from types import SimpleNamespace

    from npdegen.estimator import Recipe
    from npdegen.estimator.search import Fit, Search

    def fit(width, val):
        return Fit(Recipe("stub", "homogeneous", width, 1, "identity"), None,
                   SimpleNamespace(dtype=np.dtype("float64")), {"p": np.zeros(1)}, val, val)

    search = Search.__new__(Search)
    fits = [fit(w, v) for w, v in ((1, 0.1), (2, 0.2), (3, 0.3), (4, 0.4), (5, 0.5))]
    search.fits = {f.recipe.label: f for f in fits}
    search.deadline = time.perf_counter() + 60
    calls, gains = [], {3: 2}

    def attempt(recipe, share, first_stage, polish=False):
        calls.append(recipe.width)
        assert polish and recipe.warm_from == (recipe.label,)
        if gains.get(recipe.width, 0) > 0:
            gains[recipe.width] -= 1
            new = fit(recipe.width, search.fits[recipe.label].val_nrmse * 0.5)
            search.fits[recipe.label] = new
            return new
        return "skipped"

    search._attempt = attempt
    search._polish()
    assert calls == [1, 2, 3, 4, 3, 5, 3]      # 1, 2 stall; 3 gains (0.3 -> 0.15) beside 4, again beside 5, stalls
    assert search.fits[fits[2].recipe.label].val_nrmse == pytest.approx(0.075)
