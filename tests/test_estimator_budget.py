"""How the search spends its budget: the reserve and its refine rounds, which fits are promoted and
replaced, how many starts a recipe trains from, when a start stops, and the nonlocal kind's starts.

References are independent of the code under test: stub fits and stub attempts with hand-made
errors, a fake clock for the monitor, closed forms, and compiled networks' impulse responses.
"""
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("sklearn")

import npdegen.estimator.monitor as monitor_module  # noqa: E402
from npdegen.estimator import KINDS, Recipe, RecipeSpace  # noqa: E402
from npdegen.estimator.choice import CERTIFIED_WITHIN, Certificate, better, promotion_order  # noqa: E402
from npdegen.estimator.monitor import (EVALUATIONS_PER_ITERATION, FIRST_ITERATIONS, FLAT, PATIENCE,  # noqa: E402
                                       PROBES, Monitor, worth_starting)
from npdegen.estimator.search import GAIN, PROMOTE, REFINE_GAIN, REFINE_TOP, Fit, Problem, Search  # noqa: E402

N = 24
H = 1.0 / N


def snapshots(count, seed, n=N):
    rng = np.random.default_rng(seed)
    q = (np.arange(n) + 0.5) / n
    return sum(rng.standard_normal((count, 1)) / m * np.sin(2 * np.pi * m * q + rng.uniform(0, 6, (count, 1)))
               for m in range(1, 4))


def fourier_map(x, shift_cells, variance_cells2):
    k = 2 * np.pi * np.fft.fftfreq(x.shape[1])
    return np.real(np.fft.ifft(np.fft.fft(x, axis=1) * np.exp(-1j * k * shift_cells - variance_cells2 * k * k / 2),
                               axis=1))


def stub_fit(width, val, certified=None, kind="stub", family="homogeneous", n_params=1, improving=False):
    cert = None if certified is None else Certificate(1.0 if certified else 1.5, 1.0 if certified else 1e3, 1.01,
                                                      certified)
    return Fit(Recipe(kind, family, width, 1, "identity"), None, SimpleNamespace(dtype=np.dtype("float64")),
               {"p": np.zeros(n_params)}, val, val, certificate=cert, improving=improving)


def stub_search(fits=()):
    search = Search.__new__(Search)
    search.fits = {f.recipe.label: f for f in fits}
    search.report, search._notes, search.log = [], {}, lambda message: None
    return search


# ---------------------------------------------------------------- which fits are kept and promoted
def test_better_follows_the_choice_factor():
    """A trained-on fit replaces a certified one when it is better and certified, or better by more than
    CERTIFIED_WITHIN (then choose() would pass over the certified one anyway)."""
    old = stub_fit(3, 2.9e-2, certified=True)
    assert better(stub_fit(3, 1.3e-4, certified=False), old)                 # 220x better: replaces it
    assert not better(stub_fit(3, 2.9e-2 / CERTIFIED_WITHIN * 1.01, certified=False), old)
    assert better(stub_fit(3, 2.9e-2 / CERTIFIED_WITHIN * 0.99, certified=False), old)
    assert better(stub_fit(3, 1e-2, certified=True), old)
    assert not better(stub_fit(3, 3e-2, certified=True), old)                # worse never replaces
    assert not better(stub_fit(3, 1e-3, certified=False), old, certified_within=np.inf)   # the strict rule


def test_promotion_order_puts_certified_fits_first_only_near_the_best():
    near = stub_fit(1, 2e-3, certified=True)
    best = stub_fit(2, 1e-3, certified=False)
    far = stub_fit(3, 0.3, certified=True)
    worse = stub_fit(4, 5e-3, certified=False)
    order = promotion_order([far, worse, best, near])
    assert [f.recipe.width for f in order] == [1, 2, 4, 3]
    assert promotion_order([]) == []


def test_promotion_order_ranks_the_certified_group_as_the_choice_does():
    """Within the certified fits near the best, error x parameters^(1/4) (penalised): fits a stage cannot
    tell apart (varcoef-adr's homogeneous stage: 0.394 +- 0.1 %) go on simplest first; a fit clearly
    better (more than the parameter ratio^(1/4)) still goes first; the uncertified ones by error."""
    ties = [stub_fit(1, 0.3939, certified=True, n_params=7), stub_fit(2, 0.3945, certified=True, n_params=3),
            stub_fit(3, 0.3944, certified=True, n_params=5), stub_fit(4, 0.3900, certified=False, n_params=3)]
    assert [f.recipe.width for f in promotion_order(ties)] == [2, 3, 1, 4]
    clear = [stub_fit(1, 0.30, certified=True, n_params=7), stub_fit(2, 0.3945, certified=True, n_params=3)]
    assert [f.recipe.width for f in promotion_order(clear)] == [1, 2]       # 0.3945 / 0.30 > (7 / 3) ** 0.25


def test_promoted_recipes_far_behind_the_best_are_skipped_one_by_one():
    """BEHIND applies to each promoted recipe's own source fit, not to its kind's best."""
    fits = [stub_fit(1, 1e-3, kind="a"), stub_fit(2, 5e-3, kind="b"), stub_fit(3, 2e-2, kind="b")]
    search = stub_search(fits)
    promoted = [Recipe(f.recipe.kind, "heterogeneous", f.recipe.width, 1, "identity", warm_from=(f.recipe.label,))
                for f in fits]
    kept = search._ahead(promoted)
    assert [r.width for r in kept] == [1, 2]
    assert [e["status"] for e in search.report] == ["skipped"] and "behind" in search.report[0]["note"]


def test_later_counts_the_kinds_that_can_be_promoted():
    """The weight kept for later stages: PROMOTE per later family of each kind with a recipe in this stage
    or a fit before; a kind whose recipes were all out of reach holds none."""
    search = stub_search()
    search.kinds = {"moments": KINDS["moments"], "nonlocal": KINDS["nonlocal"]}
    later = ("heterogeneous", "time-dependent")
    local = Recipe("nonlocal", "homogeneous", 0, 1, "identity", 1.0)
    stencil = Recipe("moments", "homogeneous", 3, 4, "identity")
    weights = KINDS["moments"].weight("heterogeneous") + KINDS["moments"].weight("time-dependent")
    assert search._later(later, [local]) == 0                       # the nonlocal kind is homogeneous only
    assert search._later(later, [local, stencil]) == PROMOTE * weights
    search.fits = {"m": stub_fit(3, 0.1, kind="moments")}
    assert search._later(later, [local]) == PROMOTE * weights
    assert search._later((), [local, stencil]) == 0


def test_first_stage_interleaves_kinds_by_depth():
    space = RecipeSpace(kinds=("moments", "nonlocal"), families=("homogeneous",), widths=(3, 5), depths=(4, 16),
                        activations=("identity", "reaction")).validate(1, (N,))
    recipes = space.initial()
    depths = [r.depth for r in recipes]
    assert depths == sorted(depths) and recipes[0].kind == "nonlocal" and recipes[0].depth == 1
    for L in (4, 16):
        kinds = [r.kind for r in recipes if r.depth == L]
        assert kinds == sorted(kinds, key=("moments", "nonlocal").index) and set(kinds) == {"moments", "nonlocal"}
    labels = [r.label for r in recipes]
    for i, r in enumerate(recipes):                      # every warm start is fitted before the recipe
        assert all(labels.index(w) < i for w in r.warm_from if w in labels), r.label
    assert {r.label for r in recipes} == {r.label for k in ("moments", "nonlocal")
                                          for r in KINDS[k].recipes(space, "homogeneous")}


# ---------------------------------------------------------------- polish rounds
def test_polish_out_of_time_does_not_stall():
    """An attempt skipped for lack of time leaves its fit free for later rounds; a round in which every
    attempt was short ends the rounds."""
    import time
    fits = [stub_fit(w, v) for w, v in ((1, 0.1), (2, 0.2), (3, 0.3))]
    search = stub_search(fits)
    search.deadline = time.perf_counter() + 60
    calls, short = [], {1: 1}

    def attempt(recipe, share, first_stage, polish=False):
        calls.append(recipe.width)
        if short.get(recipe.width, 0) > 0:
            short[recipe.width] -= 1
            return {"status": "skipped", "note": "budget: needs ~9 s, 8 s left"}
        return search.fits[recipe.label]                  # no gain: stalls
    search._attempt = attempt
    stalled = set()
    search._polish(stalled)
    assert calls == [1, 2, 1, 3] and stalled == {f.recipe.label for f in fits}
    calls.clear()
    search._attempt = lambda recipe, share, first_stage, polish=False: (
        calls.append(recipe.width) or {"status": "skipped", "note": "budget: needs ~9 s, 1 s left"})
    stalled = set()
    search._polish(stalled)
    assert calls == [1, 2] and not stalled


def test_refine_is_successive_halving():
    """The REFINE_TOP best fits still improving get a round each, the time split evenly over the rounds
    left and the fits of the round; then the better half (rounded up) of those that gained REFINE_GAIN
    goes on. A fit on a plateau gets no round; one that gains less than GAIN stalls; one that gains
    between GAIN and REFINE_GAIN leaves the rounds without stalling."""
    import time
    assert REFINE_TOP == 6 and GAIN < 0.05 < REFINE_GAIN < 0.5
    fits = [stub_fit(w, 0.1 * w, improving=True) for w in range(1, 9)] + [stub_fit(9, 0.01)]   # 9: a plateau
    search = stub_search(fits)
    gains = {2: [0.5, 0.5, 0.5], 5: [0.5], 3: [0.95], 6: [0.8, 0.5]}     # new / old validation nRMSE per round
    calls, slices = [], []

    def attempt(recipe, share, first_stage, polish=False):
        calls.append(recipe.width)
        slices.append(search.deadline - time.perf_counter())
        assert polish and share == 1.0 and recipe.warm_from == (recipe.label,)
        if gains.get(recipe.width):
            new = stub_fit(recipe.width, search.fits[recipe.label].val_nrmse * gains[recipe.width].pop(0))
            search.fits[recipe.label] = new
            return new
        return search.fits[recipe.label]
    search._attempt = attempt
    stalled = set()
    search._refine(time.perf_counter() + 36.0, stalled)
    # round 1: 2, 5 and 6 gain (0.1, 0.25, 0.48), 3 gains 5 % (out, not stalled), 1 and 4 stall;
    # round 2: the better half rounded up, 2 and 5: 5 stalls; round 3: 2
    assert calls == [1, 2, 3, 4, 5, 6, 2, 5, 2]
    assert stalled == {fits[i].recipe.label for i in (0, 3, 4)}
    assert slices[0] == pytest.approx(36.0 / 3 / 6, rel=1e-2) and slices[6] == pytest.approx(36.0 / 2 / 2, rel=1e-2)
    assert slices[8] == pytest.approx(36.0, rel=1e-2)
    assert search.fits[fits[1].recipe.label].val_nrmse == pytest.approx(0.025)
    search = stub_search([stub_fit(1, 0.1), stub_fit(2, 0.2)])          # nothing improving: no rounds
    search._attempt = attempt
    calls.clear()
    search._refine(time.perf_counter() + 36.0, set())
    assert calls == []


def test_refine_rounds_run_before_the_richer_families(monkeypatch):
    """The refine rounds follow the first stage: a polish row of the homogeneous fit (counted as still
    improving here) comes before the first heterogeneous row, which starts from the refined fit (no
    worse than the first-stage fit)."""
    monkeypatch.setattr(Monitor, "improving", property(lambda self: True))
    x, x_val = snapshots(16, 1), snapshots(6, 2)
    y, y_val = fourier_map(x, 0.7, 0.5), fourier_map(x_val, 0.7, 0.5)
    space = RecipeSpace(kinds=("moments",), families=("homogeneous", "heterogeneous"), widths=(3,), depths=(4,),
                        activations=("identity",)).validate(1, (N,))
    search = Search(Problem(x, y, x_val, y_val, (H,)), space, budget=6, n_starts=2, max_iter=40)
    search.run()
    rows = search.report
    polish = [i for i, e in enumerate(rows) if "polish" in e["note"]]
    richer = [i for i, e in enumerate(rows) if e["family"] == "heterogeneous"]
    assert polish and richer and polish[0] < richer[0], [(e["recipe"], e["note"]) for e in rows]
    first = rows[0]
    assert first["family"] == "homogeneous" and first["status"] == "fitted"
    assert search.fits[first["recipe"]].val_nrmse <= first["val_nrmse"]


def test_a_recipe_trains_from_the_starts_its_time_affords(monkeypatch):
    """With set-ups that no share can afford, every recipe trains from its one best-screened start."""
    x, x_val = snapshots(12, 3), snapshots(6, 4)
    y, y_val = fourier_map(x, 0.4, 0.6), fourier_map(x_val, 0.4, 0.6)
    space = RecipeSpace(kinds=("moments",), families=("homogeneous",), widths=(3,), depths=(4, 8),
                        activations=("identity",)).validate(1, (N,))

    def starts(first_iterations):
        monkeypatch.setattr(monitor_module, "FIRST_ITERATIONS", first_iterations)
        search = Search(Problem(x, y, x_val, y_val, (H,)), space, budget=4, n_starts=3, max_iter=15)
        search.run()
        return [e["starts"] for e in search.report if e["status"] == "fitted" and "polish" not in e["note"]
                and "depth round" not in e["note"]]
    assert starts(10 ** 9) == [1, 1]
    assert max(starts(FIRST_ITERATIONS)) > 1


# ---------------------------------------------------------------- the monitor and start budgets
class Clock:
    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now


def test_the_first_iteration_is_not_a_measure_of_the_next(monkeypatch):
    """A start's set-up (before its first iteration) does not set the expected iteration length: the
    start runs on until the next iteration would end after its share."""
    clock = Clock()
    monkeypatch.setattr(monitor_module, "time", clock)
    mon = Monitor(lambda th: 1.0, end=10.0, starts=1, patience=None)
    mon.on_train_begin({})
    theta = {"p": np.zeros(1)}
    stops = []
    for t in (6.0, 7.0, 8.0, 9.0):                # set-up and first iteration 6 s, then 1 s per iteration
        clock.now = t
        stops.append(mon.on_step(len(stops), 1.0 / (1 + t), theta))
    assert stops == [False, False, False, True]   # counting the set-up would have stopped at the first
    late = Monitor(lambda th: 1.0, end=10.0, starts=1, patience=None)
    clock.now = 0.0
    late.on_train_begin({})
    clock.now = 11.0                              # a set-up that overran the share: stop
    assert late.on_step(0, 1.0, theta) is True


def test_monitor_says_whether_the_best_start_was_still_improving(monkeypatch):
    """Cut short by time: improving; stopped on a plateau (a flat loss): not; the best of several starts
    decides; a start never trained (the screened parameters are the best): not."""
    clock = Clock()
    monkeypatch.setattr(monitor_module, "time", clock)
    theta = {"p": np.zeros(1)}
    values = iter([0.5, 0.4, 0.3, 0.2, 0.1, 0.05])

    def run(mon, losses, end_at=None):
        mon.on_train_begin({})
        for i, loss in enumerate(losses):
            clock.now += 1.0
            if mon.on_step(i, loss, theta):
                break
        mon.consider(theta)

    mon = Monitor(lambda th: next(values), end=4.0, starts=1)
    mon.consider(theta)                                    # screening
    assert not mon.improving
    run(mon, [1.0, 0.9, 0.8, 0.7, 0.6])                  # stopped by its time
    assert mon.improving
    clock.now = 0.0
    mon = Monitor(lambda th: next(values), end=1e6, starts=2)
    run(mon, [1.0, 0.5] + [0.5] * FLAT)                   # stopped on a flat loss: its consider is the best
    assert not mon.improving


def test_a_start_whose_loss_is_flat_stops(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(monitor_module, "time", clock)
    theta = {"p": np.zeros(1)}
    for patience, expected in ((PATIENCE, [False, False] + [False] * (FLAT - 1) + [True]),
                               (None, [False] * (FLAT + 2))):
        mon = Monitor(lambda th: 1.0, end=1e6, starts=1, patience=patience)
        mon.on_train_begin({})
        out = []
        for i, loss in enumerate([1.0, 0.5] + [0.5 * (1 - 1e-13)] * FLAT):
            clock.now = 1.0 + i
            out.append(mon.on_step(i, loss, theta))
        assert out == expected, patience


def test_worth_starting_is_the_set_up_and_first_iterations():
    for levels, evaluation in ((1, 0.01), (3, 1.2)):
        needed = (levels * PROBES + 2 + FIRST_ITERATIONS * EVALUATIONS_PER_ITERATION) * evaluation
        assert worth_starting(levels, needed * (1 + 1e-9), evaluation)
        assert not worth_starting(levels, needed * (1 - 1e-9), evaluation)


# ---------------------------------------------------------------- the nonlocal kind's starts
@pytest.mark.parametrize("dim", [1, 2])
def test_nonlocal_starts_have_the_intended_sampled_mass(dim):
    """The data start's kernel, as the compiled linear layer samples it, has the mass e^{r/L} (the sum of
    its impulse response), also for widths below a cell where A alone would be 1.6 per axis off."""
    n = 16
    grid, spacing = (n,) * dim, (1.0 / n,) * dim
    x = np.random.default_rng(0).random((4, *grid))
    estimate = SimpleNamespace(reaction=0.3, velocity=np.full(dim, 0.02), diffusion=np.eye(dim) * 2e-5)
    kind = KINDS["nonlocal"].prepare(Problem(x, x, x, x, spacing, estimate=estimate))
    linear = Recipe("nonlocal", "homogeneous", 0, 1, "identity", 1.0)
    for L in (1, 8):
        recipe = Recipe("nonlocal", "homogeneous", 0, L, "identity", 1.0)
        net = kind.compile(KINDS["nonlocal"].layer(linear, dim), recipe, grid, spacing, "periodic", "auto", "float64")
        one = kind.compile(KINDS["nonlocal"].layer(linear, dim), linear, grid, spacing, "periodic", "auto", "float64")
        theta = kind.data_start(net, recipe, spacing, estimate)
        impulse = np.zeros((1, *grid))
        impulse[(0,) * (dim + 1)] = 1.0
        assert float(np.asarray(one.forward(impulse, theta)).sum()) == pytest.approx(np.exp(0.3 / L), rel=1e-9)
