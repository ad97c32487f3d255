r"""The search's refine and polish rounds: time for the fits that are still improving.

:class:`~npdegen.estimator.search.Search` (a :class:`Rounds`) runs two kinds of rounds; each round of
a fit is one more run of its recipe from its own parameters (a report row ``polish: trained on from
its fit``), and a fit is only replaced by a better one (:func:`~npdegen.estimator.choice.better`).

* **Refine** (:meth:`Rounds._refine`), right after the first stage, before any promotion: successive
  halving over the :data:`REFINE_TOP` fits of least validation nRMSE among those still improving when
  their time ran out (a start not stopped by a plateau: :attr:`~npdegen.estimator.problem.Fit.improving`).
  The rounds have the time split evenly over the rounds left and the fits of each round; after each
  round the better half (rounded up) of the fits that gained :data:`REFINE_GAIN` goes on (at most 6,
  3, 2 fits in three rounds; rounded down, fisher-kpp-2d's 4-layer kernel fit, at its splitting
  error 4.6e-3, went on alone and stalled, and the 16-layer one, 1.0e-2 and still gaining 57 % per
  round, was dropped). The
  search plans their time as :data:`REFINE_WEIGHT` recipe weights beside the later stages' recipes
  (:meth:`~npdegen.estimator.search.Search.run`); time they do not use rolls on to the later stages.
  This is the screening rule: the first stage tries every recipe briefly (52 on a 2-D grid, ~1 s
  each), and the recipes that were cut short while improving get the time to show what they reach —
  fisher-kpp-2d: the kernel + reaction fit, validation 5.6e-2 after its first-stage share of 1.6 s,
  reaches 1.3e-3 in 8 s more; several fits per round since first-stage errors rank them noisily —
  while the richer families start from fits closer to their plateau. Fits that stopped on a plateau
  get no refine round (varcoef-adr: its homogeneous fits sit at 0.39, and their rounds took 30 s from
  the per-site family, which then reached 1.6e-2 instead of 2e-5).
* **Depth** (:meth:`Rounds._depth_round`), after the stage of each family in :data:`DEPTH_FAMILIES`: one
  more recipe, the stage's best fit of a kind that takes the space's depths
  (:attr:`~npdegen.estimator.recipes.LayerKind.depth_round`) at a depth between its own and a fitted
  neighbour's (:func:`depth_between`: the geometric mean, so the grid 4, 16, 64 is refined to 8 or 32
  where the fits say the depth lies), warm-started from the fit rescaled to the new depth. The depth
  grid is coarse so that the first stage stays short; a per-site truth of 32 layers lies between its
  points, and neither neighbour can represent it (varcoef-adr, 32 layers of ω = 0.8: per-site fits at
  16 and 64 layers stopped at 1e-4 and 4e-4–9e-4, their coefficient profiles ~1e-2 off; at 32 layers
  the per-site fit reaches 2e-6 in its share and 1.5e-8 polished, the profiles to 5e-6). Its time is
  planned as one recipe of the stage's family.
* **Polish** (:meth:`Rounds._polish`), with the time left after the last stage: the :data:`POLISH`
  preferred fits (the winner first, then by validation nRMSE: :func:`~npdegen.estimator.choice.preferred`),
  each while it gains :data:`GAIN` per round; a fit that stalls (also in a refine round) passes its
  turn to the next (burgers-nu0.1: 34 s went unused after the nonlocal fits stalled while the flux
  fit, cut short, still improved). A round in which every fit was short of time ends them.
"""
from __future__ import annotations

import math
import time
from dataclasses import replace

from .choice import better, preferred, promotion_order
from .monitor import FLOOR, GAIN
from .problem import Fit

__all__ = ["Rounds", "POLISH", "REFINE_WEIGHT", "REFINE_TOP", "REFINE_GAIN", "DEPTH_FAMILIES", "depth_between"]

#: Fits trained on per polish round (:meth:`Rounds._polish`).
POLISH = 2
#: The refine rounds' time as recipe weights (a heterogeneous recipe's is 12: ``STAGE_WEIGHTS``); the
#: fits of the first refine round; the relative gain of a round that keeps a fit in the next.
REFINE_WEIGHT, REFINE_TOP, REFINE_GAIN = 24.0, 6, 0.1
#: The families after whose stage the depth round runs (the time-dependent family, last and shortest,
#: has no stage after it to use a new depth).
DEPTH_FAMILIES = ("homogeneous", "heterogeneous")


def depth_between(depth: int, other: int) -> int:
    """The depth tried between two fitted depths: their geometric mean, rounded (16, 64 → 32)."""
    return max(1, int(round(math.sqrt(depth * other))))


class Rounds:
    """The rounds of :class:`~npdegen.estimator.search.Search` (it supplies ``fits``, ``deadline`` and
    ``_attempt``)."""

    def _again(self, label: str, share: float):
        """Train the fit ``label`` on for ``share`` of the time left (a polish row), keep the better fit
        (:func:`~npdegen.estimator.choice.better`); ``"short"`` when the share could not pay the fit's
        shortest run, else the relative gain of its validation nRMSE (0 when none)."""
        before = self.fits[label]
        if before.val_nrmse <= FLOOR[str(before.net.dtype)]:
            return 0.0
        again = self._attempt(replace(before.recipe, warm_from=(label,)), share, False, polish=True)
        if isinstance(again, dict) and again["note"].startswith("budget"):
            return "short"
        if not isinstance(again, Fit) or not better(again, before):     # better, and certified if it was
            self.fits[label] = before
        return max(1.0 - again.val_nrmse / before.val_nrmse, 0.0) if isinstance(again, Fit) else 0.0

    def _polish(self, stalled: set | None = None):
        """Time left until ``self.deadline``, in rounds (module docstring): the :data:`POLISH` preferred fits
        that have not stalled train on, each for an equal share; a fit that gains less than :data:`GAIN`
        stalls (added to ``stalled``); a round whose every fit was short of time ends them."""
        stalled = set() if stalled is None else stalled
        while time.perf_counter() < self.deadline:
            ranked = [f for f in preferred(list(self.fits.values())) if f.recipe.label not in stalled][:POLISH]
            if not ranked:
                return
            short = 0
            for i, fit in enumerate(ranked):
                if time.perf_counter() >= self.deadline:
                    return
                gained = self._again(fit.recipe.label, 1.0 / (len(ranked) - i))
                short += gained == "short"
                if gained != "short" and gained < GAIN:
                    stalled.add(fit.recipe.label)
            if short == len(ranked):
                return

    def _depth_recipe(self, stage_fits: list):
        """The depth round's recipe and its note, or ``(None, "")``: the first of ``stage_fits`` in
        promotion order (:func:`~npdegen.estimator.choice.promotion_order`) among the kinds with
        ``depth_round``, at :func:`depth_between` its depth ``L`` and the nearest fitted depth of its kind
        (any stage) on one side. The side: where the stage's own fits of the kind say the error falls —
        beyond ``L`` when ``L`` is the deepest (shallowest) of them, towards the better neighbour when it
        lies between them; by the kind's fits of every stage when the stage fitted ``L`` alone; the other
        side when the first has nothing left to try."""
        mine = [f for f in promotion_order(stage_fits) if self.kinds[f.recipe.kind].depth_round]
        if not mine:
            return None, ""
        best = mine[0].recipe
        kin = [f for f in self.fits.values() if f.recipe.kind == best.kind]
        depths = sorted({f.recipe.depth for f in kin})
        below = max((d for d in depths if d < best.depth), default=None)
        above = min((d for d in depths if d > best.depth), default=None)
        staged = {f.recipe.depth for f in mine if f.recipe.kind == best.kind} - {best.depth}
        error = lambda d, pool: min((f.val_nrmse for f in pool if f.recipe.depth == d), default=math.inf)
        if staged and max(staged) < best.depth:
            sides = (above, below)                   # the deepest of the stage is its best: deeper still
        elif staged and min(staged) > best.depth:
            sides = (below, above)
        else:
            pool = [f for f in mine if f.recipe.kind == best.kind] if staged else kin
            sides = sorted((below, above), key=lambda d: math.inf if d is None else error(d, pool))
        tried = {f.recipe.label for f in self.fits.values()} | {e["recipe"] for e in self.report}
        for other in sides:
            if other is None:
                continue
            depth = depth_between(best.depth, other)
            recipe = replace(best, depth=depth, warm_from=(best.label,))
            if depth not in (best.depth, other) and recipe.label not in tried:
                return recipe, f"depth round: between the fits at L{best.depth} and L{other}"
        return None, ""

    def _depth_round(self, stage_fits: list, share: float):
        """Fit the depth round's recipe (:meth:`_depth_recipe`) for ``share`` of the time left; the Fit,
        a report row (skipped or failed) or None when there is no depth to try."""
        recipe, note = self._depth_recipe(stage_fits)
        if recipe is None:
            return None
        self._notes[recipe.label] = note
        return self._attempt(recipe, share, False)

    def _refine(self, until: float, stalled: set):
        """Successive halving until ``until`` (module docstring) over the :data:`REFINE_TOP` fits still
        improving, least validation nRMSE first; a fit that gains less than :data:`GAIN` in a round
        stalls, one that gains less than :data:`REFINE_GAIN` leaves the rounds."""
        fits = sorted((f for f in self.fits.values() if f.improving), key=lambda f: f.val_nrmse)
        labels = [f.recipe.label for f in fits][:REFINE_TOP]
        rounds = max(len(labels), 1).bit_length()          # REFINE_TOP 6: three rounds
        for r in range(rounds):
            going = []
            for i, label in enumerate(labels):
                now = time.perf_counter()
                if now >= until:
                    return
                self.deadline = now + (until - now) / (rounds - r) / (len(labels) - i)
                gained = self._again(label, 1.0)
                if gained == "short" or gained >= REFINE_GAIN:
                    going.append(label)
                elif gained < GAIN:
                    stalled.add(label)
            labels = sorted(going, key=lambda k: self.fits[k].val_nrmse)[:(len(going) + 1) // 2]
            if not labels:
                return
