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
* **Polish** (:meth:`Rounds._polish`), with the time left after the last stage: the :data:`POLISH`
  preferred fits (the winner first, then by validation nRMSE: :func:`~npdegen.estimator.choice.preferred`),
  each while it gains :data:`GAIN` per round; a fit that stalls (also in a refine round) passes its
  turn to the next (burgers-nu0.1: 34 s went unused after the nonlocal fits stalled while the flux
  fit, cut short, still improved). A round in which every fit was short of time ends them.
"""
from __future__ import annotations

import time
from dataclasses import replace

from .choice import better, preferred
from .monitor import FLOOR, GAIN
from .problem import Fit

__all__ = ["Rounds", "POLISH", "REFINE_WEIGHT", "REFINE_TOP", "REFINE_GAIN"]

#: Fits trained on per polish round (:meth:`Rounds._polish`).
POLISH = 2
#: The refine rounds' time as recipe weights (a heterogeneous recipe's is 12: ``STAGE_WEIGHTS``); the
#: fits of the first refine round; the relative gain of a round that keeps a fit in the next.
REFINE_WEIGHT, REFINE_TOP, REFINE_GAIN = 24.0, 6, 0.1


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
