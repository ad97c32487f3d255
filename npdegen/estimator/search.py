"""The budgeted search over the recipe space, and its report.

* **Kinds.** Each layer kind is first specialised to the data
  (:meth:`~npdegen.estimator.recipes.LayerKind.prepare`: the flux kind measures its frame speed
  and depth there); a kind that cannot fit the data (``NotApplicable``) gets one report row that
  says why.
* **Order.** The families are walked in order (homogeneous → heterogeneous → time-dependent). The
  first stage fits every recipe of :meth:`~npdegen.estimator.recipes.RecipeSpace.initial`; each
  later stage promotes the :data:`PROMOTE` best recipes (certified fits near the best first:
  :func:`~npdegen.estimator.choice.promotion_order`) of each kind from the latest stage that fitted
  it (:meth:`~npdegen.estimator.recipes.RecipeSpace.promote`), warm-started from their fits, but not
  those whose own fit's validation nRMSE is more than :data:`BEHIND` times the best of all (a richer
  family that far behind is unlikely to catch up; its time goes to the others).
* **Reach.** The first stage skips recipes that cannot carry the data's transport or spread: the
  spectral estimate's shift beyond ``depth × reach`` cells or its variance beyond
  ``depth × reach²`` cells² (the CFL limits of explicit steps; :meth:`Search._reachable`).
* **Time.** A recipe may use the share ``w / Σ w`` of the time left (the sum over the recipes
  still to come: the rest of its stage and :data:`PROMOTE` per kind and later stage; weights
  :meth:`~npdegen.estimator.recipes.LayerKind.weight`, by default :data:`STAGE_WEIGHTS` per
  family), taken once its layer is built (building counts against the budget, not the share), so
  time a recipe does not use rolls on. A recipe whose shortest useful run
  (:data:`MIN_EVALUATIONS` loss evaluations, timed on the data) does not fit is skipped. A kind
  may train on fewer pairs (``samples``, drawn once per search) and from fewer starts
  (``max_starts``); validation uses all pairs.
* **Fitting.** L-BFGS (``npdegen.train(optimizer="lbfgs")``, the kind's ``loss``) from each start in
  turn while the recipe's time lasts: warm starts (shallower, narrower and identity neighbours), the
  data's spectral start and random starts, ``n_starts`` in all (later stages: the one warm start),
  screened first (each start is a candidate as it is) and trained best first. A callback stops at
  the deadline, evaluates the validation nRMSE every :data:`CHECK_EVERY` iterations, keeps the best
  parameters seen (per-site and per-layer fits get as many iterations as their time affords,
  :func:`~npdegen.estimator.monitor.affordable`), stops a start of a homogeneous recipe that gained
  less than :data:`GAIN` in :data:`PATIENCE` checks (richer families are fitted coarse to fine by
  ``npdegen.train``, whose coarse plateaus must not end the run), and the recipe once the rounding
  floor :data:`~npdegen.estimator.monitor.FLOOR` is reached. A fit keeps its best certified
  checkpoint when that is within ``CERTIFIED_WITHIN`` of its best
  (:class:`~npdegen.estimator.monitor.Monitor`). ``Problem.pooled`` (the regressor's ``metric``):
  pooled nRMSEs, and the kinds train on the mean squared error.
* **Refine and polish** (:mod:`npdegen.estimator.rounds`). Right after the first stage, refine rounds
  train on the most accurate fits that were still improving when their time ran out (successive
  halving; planned as :data:`~npdegen.estimator.rounds.REFINE_WEIGHT` recipe weights), and the later
  stages promote from the refined fits; the time left after the last stage polishes the preferred fits.
* **Depth round** (:mod:`npdegen.estimator.rounds`). After the homogeneous and the per-site stage, one
  more recipe: the stage's best stencil fit at a depth between its own and a fitted neighbour's (the
  depth grid is coarse; a truth between its points is reached there).
* **Certificate and winner** (:mod:`npdegen.estimator.choice`). Every fit gets a stability
  certificate (gain per layer; certified when the network amplifies no more than the data grow);
  the winner is, among the certified fits within the factor ``CERTIFIED_WITHIN`` of the least
  validation nRMSE (all fits when none is), the least validation nRMSE × parameters^:data:`PARSIMONY`
  (:func:`choose`). Every recipe tried, skipped or failed is in the report, with
  its gain per layer and whether it is certified.
"""
from __future__ import annotations

import functools
import math
import time
from dataclasses import replace

import numpy as np

from ..runtime.network import NonFiniteError
from ..runtime.train import TrainingDiverged, train
from .choice import CERTIFIED_WITHIN, PARSIMONY, certify, choose, data_growth, promotion_order
from .metrics import nrmse
from .monitor import CHECK_EVERY, FLOOR, GAIN, PATIENCE, Monitor, host
from .monitor import affordable as _affordable, levels as _levels, worth_starting as _worth
from .problem import Fit, Problem
from .rounds import DEPTH_FAMILIES, POLISH, REFINE_GAIN, REFINE_TOP, REFINE_WEIGHT, Rounds
from .recipes import KINDS, STAGE_WEIGHTS, NotApplicable, Recipe, RecipeSpace
from .report import format_report

__all__ = ["Problem", "Fit", "Search", "choose", "format_report", "host", "STAGE_WEIGHTS", "PROMOTE", "BEHIND",
           "POLISH", "REFINE_WEIGHT", "REFINE_TOP", "REFINE_GAIN", "CHECK_EVERY", "PATIENCE", "GAIN", "PARSIMONY"]

#: Recipes promoted from one family to the next.
PROMOTE = 2
#: A recipe whose fit's validation nRMSE is more than BEHIND times the best of all is not promoted.
BEHIND = 10.0
#: A recipe is skipped when fewer than this many loss evaluations fit in its time.
MIN_EVALUATIONS = 8


@functools.lru_cache(maxsize=64)
def _layer(kind, recipe: Recipe, dim: int):
    """The layer of a recipe (depth and ω do not change it): derived once per process."""
    return kind.layer(recipe, dim)


class Search(Rounds):
    """Walks the recipe space within ``budget`` seconds from ``started`` (a ``time.perf_counter()``
    value; default: when :meth:`run` begins); :meth:`run` returns ``(best fit, report)``."""

    def __init__(self, problem: Problem, space: RecipeSpace, budget: float, n_starts: int = 4,
                 max_iter: int = 300, seed: int = 0, log=None, started: float | None = None):
        self.problem, self.space, self.budget, self.started = problem, space, float(budget), started
        self.n_starts, self.max_iter, self.seed = n_starts, max_iter, seed
        self.log = log or (lambda message: None)
        self.fits: dict = {}
        self.report: list = []
        self._notes: dict = {}                   # recipe label -> why it is expected to fall short
        self.kinds: dict = {}                    # kind name -> the kind prepared for the data
        self._subsets: dict = {}                 # max_samples -> training pairs drawn once
        self._costs: dict = {}                   # recipe label -> seconds of one loss evaluation

    # ------------------------------------------------------------------ pieces
    def _build(self, recipe: Recipe):
        p = self.problem
        layer = _layer(KINDS[recipe.kind], replace(recipe, depth=1, omega=1.0, warm_from=()), len(p.grid))
        net = self.kinds[recipe.kind].compile(layer, recipe, p.grid, p.spacing, p.boundary, p.backend, p.dtype)
        return layer, net

    def _training(self, kind, recipe: Recipe):
        """The training pairs of ``recipe``: all, or ``kind.samples(recipe)`` of them drawn once per search."""
        p, most = self.problem, kind.samples(recipe)
        if most is None or len(p.x_train) <= most:
            return p.x_train, p.y_train
        if most not in self._subsets:
            rng = np.random.default_rng([self.seed, most])
            keep = np.sort(rng.choice(len(p.x_train), most, replace=False))
            self._subsets[most] = (np.ascontiguousarray(p.x_train[keep]), np.ascontiguousarray(p.y_train[keep]))
        return self._subsets[most]

    def _error(self, net, theta, x, y) -> float:
        try:
            pred = host(net.forward(x, theta))
        except (NonFiniteError, FloatingPointError, ValueError):
            return math.inf
        with np.errstate(over="ignore", invalid="ignore"):      # a blown-up prediction is just a bad fit
            value = nrmse(pred, y, pooled=self.problem.pooled)
        return value if math.isfinite(value) else math.inf

    def _starts(self, recipe: Recipe, net, first_stage: bool) -> list:
        kind, p = self.kinds[recipe.kind], self.problem
        starts = []
        for label in recipe.warm_from:
            if label in self.fits:
                source = self.fits[label]
                starts.append(kind.transfer(source.theta, source.recipe, net, recipe))
        if first_stage:
            data = kind.data_start(net, recipe, p.spacing, p.estimate)
            if data is not None:
                starts.append(data)
            most = min(self.n_starts, kind.max_starts or self.n_starts)
            count = max(most - len(starts), 1 if not starts else 0)
            if count:
                rng = np.random.default_rng([self.seed, len(self.report)])
                starts += kind.random_starts(net, recipe, p.spacing, count, rng)
        finite = [s for s in starts if all(np.all(np.isfinite(v)) for v in s.values())]
        return finite[:max(min(self.n_starts, kind.max_starts or self.n_starts), 1)] if first_stage else finite[:1]

    def _entry(self, recipe: Recipe, status: str, started: float, **extra) -> dict:
        entry = {"recipe": recipe.label, **recipe.to_dict(), "status": status,
                 "seconds": round(time.perf_counter() - started, 4), "n_params": None,
                 "train_nrmse": None, "val_nrmse": None, "starts": 0, "iterations": 0, "note": ""}
        entry.update(extra)
        if recipe.label in self._notes and status != "skipped":
            entry["note"] = "; ".join(filter(None, (entry["note"], self._notes[recipe.label])))
        self.report.append(entry)
        self.log(format_report([entry], header=False))
        return entry

    def _attempt(self, recipe: Recipe, share: float, first_stage: bool, polish: bool = False):
        """Build, time one evaluation, and train ``recipe`` for ``share`` of the time then left
        (``polish``: again, from its own fit)."""
        started = time.perf_counter()
        p, kind = self.problem, self.kinds[recipe.kind]
        x_train, y_train = self._training(kind, recipe)
        try:
            layer, net = self._build(recipe)
            n_params = int(sum(math.prod(s) for s in net.shapes.values()))
            starts = self._starts(recipe, net, first_stage)
            if not starts:
                return self._entry(recipe, "skipped", started, n_params=n_params, note="no warm start available")
            evaluation = self._costs.get(recipe.label, math.inf)
            for _ in range(0 if recipe.label in self._costs else 2):   # the first may load a kernel
                t0 = time.perf_counter()
                net.loss_and_grad(x_train, y_train, starts[0])
                evaluation = min(evaluation, time.perf_counter() - t0)
            self._costs[recipe.label] = evaluation
        except (ValueError, TypeError, NonFiniteError) as exc:
            return self._entry(recipe, "failed", started, note=" ".join(str(exc).split())[:200])
        now = time.perf_counter()
        end = now + share * max(self.deadline - now, 0.0)
        needed = MIN_EVALUATIONS * evaluation
        if not self.fits:                       # nothing fitted yet: the first recipe always gets a short run
            end = max(end, min(now + needed, self.deadline))
        if end - now < needed:
            return self._entry(recipe, "skipped", started, n_params=n_params,
                               note=f"budget: needs ~{needed:.2g} s, {max(end - time.perf_counter(), 0):.2g} s left")
        floor = FLOOR[str(net.dtype)]
        # patience only where L-BFGS runs one level: per-site and per-layer-and-site parameters are fitted
        # coarse to fine (npdegen.train's levels), and a coarse level's plateau must not end the run
        levels = _levels(net)
        single = levels == 1
        # training stops one evaluation early: the fit's training error and certificate come after it
        monitor = Monitor(lambda th: self._error(net, th, p.x_val, p.y_val), max(end - evaluation, now), len(starts),
                          floor, PATIENCE if single else None,
                          lambda th: certify(kind, layer, net, th, recipe, p.spacing, self.growth).certified)
        bounds = kind.bounds(recipe, len(p.grid)) or None
        # every start is a candidate as it is; the most promising (least validation error) trains first
        screened = sorted(((monitor.consider(st), i) for i, st in enumerate(starts)))
        starts = [starts[i] for _, i in screened]
        while len(starts) > 1 and not _worth(levels, (end - time.perf_counter()) / len(starts), evaluation):
            starts.pop()                         # the time affords fewer starts (monitor.worth_starting)
        monitor.left = len(starts)
        diverged, ran = 0, 0
        for i, start in enumerate(starts):
            if (i and not _worth(levels, end - time.perf_counter(), evaluation)) or monitor.best <= floor:
                break                            # the recipe's time is spent (or the data are matched)
            ran += 1
            steps = self.max_iter if single else _affordable(levels, (end - time.perf_counter()) / (len(starts) - i),
                                                             evaluation, self.max_iter)
            try:
                theta, _ = train(net, x_train, y_train, start, steps=steps, optimizer="lbfgs",
                                 loss="mean" if p.pooled else kind.loss, bounds=bounds, callbacks=[monitor],
                                 progress=False, layer_losses=False,
                                 ftol=0.0, gtol=0.0)       # the budget and the validation checks stop it
                monitor.consider(theta)
            except (TrainingDiverged, FloatingPointError, ValueError):    # diverged, or overflowed at the start
                diverged += 1
        if not math.isfinite(monitor.best):
            return self._entry(recipe, "failed", started, n_params=n_params, starts=ran,
                               note=f"every start diverged ({diverged} of {ran})")
        value, theta = monitor.result(CERTIFIED_WITHIN)
        fit = Fit(recipe, layer, net, theta, self._error(net, theta, x_train, y_train), value,   # the pairs it fitted
                  time.perf_counter() - started, monitor.iterations, kind)
        fit.certificate = certify(kind, layer, net, theta, recipe, p.spacing, self.growth)
        fit.improving = monitor.improving
        self.fits[recipe.label] = fit
        notes = ["polish: trained on from its fit" if polish else "", fit.certificate.describe(),
                 f"{diverged} of {ran} starts diverged" if diverged else "",
                 f"trained on {len(x_train)} of {len(p.x_train)} pairs" if len(x_train) < len(p.x_train) else ""]
        self._entry(recipe, "fitted", started, n_params=fit.n_params, train_nrmse=fit.train_nrmse,
                    val_nrmse=fit.val_nrmse, starts=ran, iterations=fit.iterations,
                    gain=fit.certificate.gain, certified=fit.certificate.certified, note="; ".join(filter(None, notes)))
        return fit

    def _reachable(self, recipes: list) -> list:
        """The recipes that can carry the data's transport and spread (spectral estimate, in cells):
        a stable explicit step of reach ``h`` moves data at most ``h`` cells and spreads it by a
        variance of at most ``h²`` cells² per layer, so ``L`` layers need ``L·h ≥ |b|/Δ`` and
        ``L·h² ≥ 2C/Δ²`` (half a cell of slack). The others are reported as skipped; when none can,
        all are kept and their report says why they fall short."""
        p = self.problem
        if p.estimate is None:
            return recipes
        shift = max(abs(b) / h for b, h in zip(p.estimate.velocity, p.spacing))
        spread = max(2 * p.estimate.diffusion[a, a] / h**2 for a, h in enumerate(p.spacing))

        def short(r):
            h = self.kinds[r.kind].reach(r)
            if r.depth * h < shift - 0.5:
                return f"reach: the data move ~{shift:.3g} cells, {r.depth} layers at most {r.depth * h:g}"
            if r.depth * h * h < spread - 0.5:
                return (f"reach: the data spread ~{spread:.3g} cells², {r.depth} layers at most "
                        f"{r.depth * h * h:g}")
            return ""
        notes = {r.label: short(r) for r in recipes}
        able = [r for r in recipes if not notes[r.label]]
        if not able:
            self._notes.update(notes)
            return recipes
        for r in recipes:
            if notes[r.label]:
                self._entry(r, "skipped", time.perf_counter(), note=notes[r.label])
        return able

    # ------------------------------------------------------------------ kinds, promotion, polish
    def _prepare(self):
        """Each kind of the space specialised to the data; a kind that cannot fit them gets a report row."""
        for name in self.space.kinds:
            try:
                if len(self.problem.grid) not in KINDS[name].dims:
                    raise NotApplicable(f"{name}: {'/'.join(map(str, KINDS[name].dims))}-D grids only, "
                                        f"these are {len(self.problem.grid)}-D")
                self.kinds[name] = KINDS[name].prepare(self.problem)
            except NotApplicable as exc:
                family = self.space.families[0]
                self.report.append({"recipe": f"{name}/*", "kind": name, "family": family, "status": "skipped",
                                    "seconds": 0.0, "n_params": None, "train_nrmse": None, "val_nrmse": None,
                                    "starts": 0, "iterations": 0, "note": f"kind: {exc}"})
                self.log(format_report([self.report[-1]], header=False))

    def _ahead(self, recipes: list) -> list:
        """The promoted recipes whose source fit is within :data:`BEHIND` of the best fit; the others are
        reported (per recipe, not per kind: fisher-kpp-2d's 5-point stencil at 6.4e-2 went per site beside
        its kind's reaction fit at 3.6e-3, and stayed at 6.4e-2)."""
        if not self.fits:
            return recipes
        best = min(f.val_nrmse for f in self.fits.values())
        keep = []
        for r in recipes:
            mine = min((self.fits[w].val_nrmse for w in r.warm_from if w in self.fits), default=math.inf)
            if mine > BEHIND * best + 1e-12:
                self._entry(r, "skipped", time.perf_counter(),
                            note=f"behind: its source's validation nRMSE {mine:.3g} is over {BEHIND:g}x the best "
                                 f"{best:.3g}")
            else:
                keep.append(r)
        return keep

    def _later(self, families: tuple, recipes: list) -> float:
        """The weight of the recipes the later ``families`` will promote: :data:`PROMOTE` per family of
        each kind that can be promoted — one with a recipe in ``recipes`` (this stage) or a fit before
        (burgers-nu0.1: counting the stencil kinds, every recipe out of reach, held 30 of 42 and cut the
        flux fit's first share to 13 s, about its L-BFGS set-up)."""
        playing = {r.kind for r in recipes} | {f.recipe.kind for f in self.fits.values()}
        return sum(PROMOTE * self.kinds[k].weight(f) for f in families for k in playing if f in self.kinds[k].families)

    def _depth_weight(self, family: str, recipes: list) -> float:
        """The depth round's time after the stage of ``family`` (:data:`DEPTH_FAMILIES`), as the weight of one
        of the stage's recipes of a kind with ``depth_round``; 0 when it has none."""
        if family not in DEPTH_FAMILIES:
            return 0.0
        kinds = {r.kind for r in recipes if self.kinds[r.kind].depth_round}
        return max((self.kinds[k].weight(family) for k in kinds), default=0.0)

    # ------------------------------------------------------------------ the walk
    def run(self):
        """``(best Fit, report)``; raises RuntimeError if no recipe could be fitted."""
        deadline = self.deadline = (self.started or time.perf_counter()) + self.budget
        self.growth = data_growth(self.problem.x_train, self.problem.y_train)
        self._prepare()
        families = self.space.families
        history: list = []                  # fitted recipes per stage, best first
        stalled: set = set()
        for s, family in enumerate(families):
            recipes = (self._reachable(self.space.initial(self.kinds)) if s == 0
                       else self._ahead(self.space.promote(family, history, PROMOTE, self.kinds)))
            refine = REFINE_WEIGHT if s == 0 and len(families) > 1 else 0.0     # the refine rounds (rounds.py)
            depth = self._depth_weight(family, recipes)                          # the depth round (rounds.py)
            later = self._later(families[s + 1:], recipes) + refine + depth
            weights = [self.kinds[r.kind].weight(r.family) for r in recipes]
            stage_fits = []
            for i, recipe in enumerate(recipes):
                now = time.perf_counter()
                if now >= deadline and self.fits:
                    self._entry(recipe, "skipped", now, note="budget: no time left")
                    continue
                fit = self._attempt(recipe, weights[i] / (sum(weights[i:]) + later), s == 0)
                if isinstance(fit, Fit):
                    stage_fits.append(fit)
            if depth and stage_fits:
                fit = self._depth_round(stage_fits, depth / later)
                if isinstance(fit, Fit):
                    stage_fits.append(fit)
            if refine and stage_fits:
                now = time.perf_counter()
                self._refine(now + refine / (refine + self._later(families[1:], [])) * max(deadline - now, 0), stalled)
                self.deadline = deadline
            history.append([f.recipe for f in promotion_order([self.fits[f.recipe.label] for f in stage_fits])])
        self._polish(stalled)
        if not self.fits:
            raise RuntimeError("no recipe could be fitted within the budget:\n" + format_report(self.report))
        return choose(list(self.fits.values())), self.report
