"""The search's depth round (:mod:`npdegen.estimator.rounds`): which depth it tries, from which fit, and
that it reaches a truth whose depth lies between the points of the depth grid.

References: stub fits with hand-made errors (which side the round bisects towards), and data made by a
compiled npdegen network of known depth (the truth) that the grid's neighbours cannot represent.
"""
from types import SimpleNamespace

import numpy as np
import pytest
import sympy as sp

pytest.importorskip("sklearn")

import npdegen  # noqa: E402
from npdegen.estimator import KINDS, Recipe, RecipeSpace  # noqa: E402
from npdegen.estimator.choice import Certificate  # noqa: E402
from npdegen.estimator.rounds import depth_between  # noqa: E402
from npdegen.estimator.search import Fit, Problem, Search  # noqa: E402
from test_estimator_budget import stub_search as budget_stub_search  # noqa: E402


def stub(depth, val, kind="moments", family="heterogeneous", activation="identity", width=3):
    return Fit(Recipe(kind, family, width, depth, activation), None, SimpleNamespace(dtype=np.dtype("float64")),
               {"p": np.zeros(1)}, val, val, certificate=Certificate(1.0, 1.0, 1.01, True))


def stub_search(fits):
    search = budget_stub_search(fits)
    search.kinds = dict(KINDS)
    return search


def chosen(stage, earlier=()):
    recipe, note = stub_search(list(earlier) + list(stage))._depth_recipe(list(stage))
    return (None, note) if recipe is None else (recipe.depth, recipe.warm_from, note)


def test_depth_between_is_the_rounded_geometric_mean():
    assert [depth_between(16, 64), depth_between(64, 16), depth_between(4, 16), depth_between(32, 64),
            depth_between(1, 2)] == [32, 32, 8, 45, 1]


def test_the_round_goes_where_the_stage_says_the_error_falls():
    """Best at the deepest of the stage's depths: deeper (towards the next fitted depth of any stage);
    at the shallowest: shallower; between two: towards the better neighbour."""
    hom = [stub(4, 0.4, family="homogeneous"), stub(16, 0.4, family="homogeneous"),
           stub(64, 0.4, family="homogeneous")]
    # varcoef-adr's case: per site, 8 layers 1e-3, 16 layers 2e-4 (best) -> between 16 and 64
    assert chosen([stub(8, 1e-3), stub(16, 2e-4)], hom) == (
        32, ("moments/heterogeneous/w3/L16/identity",), "depth round: between the fits at L16 and L64")
    assert chosen([stub(64, 1e-3), stub(16, 2e-4)], hom)[0] == 8           # the shallowest is best
    assert chosen([stub(4, 1e-2), stub(16, 2e-4), stub(64, 1e-3)])[0] == 32  # between: the better side
    assert chosen([stub(4, 1e-3), stub(16, 2e-4), stub(64, 1e-2)])[0] == 8


def test_a_stage_of_one_depth_asks_the_earlier_stages():
    """The stage fitted one depth only (two widths at L64): the side is the better of the kind's fits at
    the neighbouring depths in any stage; the deepest of the grid has no side above."""
    hom = [stub(16, 0.3, family="homogeneous"), stub(64, 0.4, family="homogeneous")]
    assert chosen([stub(64, 1e-3), stub(64, 2e-3, width=5)], hom)[0] == 32
    hom = [stub(4, 0.3, family="homogeneous"), stub(16, 0.5, family="homogeneous"),
           stub(64, 0.4, family="homogeneous")]
    assert chosen([stub(16, 1e-3)], hom)[0] == 8


def test_nothing_to_try():
    """No depth between (neighbours 1 apart), no neighbour at all, a depth already tried, or no kind that
    takes the space's depths: no recipe."""
    assert chosen([stub(4, 1e-3), stub(5, 2e-3)]) == (None, "")            # sqrt(4 * 5) rounds to 4
    assert chosen([stub(16, 1e-3)]) == (None, "")
    assert chosen([stub(16, 1e-3, kind="nonlocal"), stub(64, 1e-2, kind="nonlocal")]) == (None, "")
    stage = [stub(16, 1e-3), stub(32, 2e-3)]
    search = stub_search([stub(8, 0.5, family="homogeneous")] + stage)
    assert search._depth_recipe(stage)[0].depth == 11                       # shallowest is best: below
    search.report.append({"recipe": "moments/heterogeneous/w3/L11/identity"})   # tried (or skipped) before
    assert search._depth_recipe(stage)[0].depth == 23                       # then the other side
    search.report.append({"recipe": "moments/heterogeneous/w3/L23/identity"})
    assert search._depth_recipe(stage) == (None, "")


def truth_pairs(depth, count, seed, n=32):
    """Pairs of a homogeneous 3-point ADR network of ``depth`` layers, ω = 0.5 (the search's)."""
    q = sp.Symbol("q")
    z = sp.Function("z")(q)
    U, D, R = sp.symbols("U D R")
    layer = npdegen.NeuralPDE(z + R * z - U * z.diff(q) + D * z.diff(q, 2), z,
                              params={U: "homogeneous", D: "homogeneous", R: "homogeneous"})
    net = layer.compile(n=n, spacing=1.0, layers=depth, omega=0.5, boundary="periodic")
    rng = np.random.default_rng(seed)
    grid = (np.arange(n) + 0.5) / n
    x = sum(rng.standard_normal((count, 1)) / m * np.sin(2 * np.pi * m * grid + rng.uniform(0, 6, (count, 1)))
            for m in range(1, 6))
    return x, net.forward(x, {"U": 0.3, "D": 0.35, "R": -0.01})


def test_the_round_reaches_a_depth_between_the_grid_points():
    """Truth: 4 layers of ω = 0.5; the grid's 1 and 16 layers cannot represent its map (measured 0.35 and
    8.6e-3); the depth round tries L4 between them, warm from the 16-layer fit rescaled, and reaches the
    data's rounding (2e-14): it wins."""
    x, y = truth_pairs(4, 24, 1)
    x_val, y_val = truth_pairs(4, 8, 2)
    space = RecipeSpace(kinds=("moments",), families=("homogeneous",), widths=(3,), depths=(1, 16),
                        activations=("identity",)).validate(1, (32,))
    search = Search(Problem(x, y, x_val, y_val, (1.0,)), space, budget=10, n_starts=2, max_iter=200)
    best, report = search.run()
    rows = {e["recipe"]: e for e in report if e["status"] == "fitted" and "polish" not in e["note"]}
    grid = [rows[f"moments/homogeneous/w3/L{d}/identity"]["val_nrmse"] for d in (1, 16)]
    new = rows["moments/homogeneous/w3/L4/identity"]
    assert new["note"].startswith("depth round: between the fits at L")
    assert new["warm_from"] and new["warm_from"][0] in rows
    assert best.recipe.depth == 4 and best.val_nrmse < 1e-6 < 1e-3 < min(grid), (best.recipe.label, grid)
