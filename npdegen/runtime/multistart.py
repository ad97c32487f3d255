"""Multi-start training and the homogeneous warm start.

* :func:`multistart` trains from several starts (given ``theta`` dicts, ``count`` random starts,
  or ``"homogeneous"``: the homogeneous fit below) and returns the best run with a report of all
  (:class:`MultiStart`; ``str()`` is a table). A run that diverges is reported, not raised.
* :func:`random_starts` draws one uniform value per parameter in ``ranges[k] = (low, high)``,
  broadcast over sites and layers (a random *homogeneous* start, seeded).
* :func:`homogeneous_fit` fits the homogeneous restriction of a heterogeneous or time-dependent
  network (every site and layer sharing one value per parameter: what a homogeneous copy of the
  layer would learn, without compiling one) with L-BFGS, and returns it broadcast to the
  network's shapes: a warm start that puts the richer families in the right basin.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from .train import TrainHistory, TrainingDiverged, train

__all__ = ["MultiStart", "multistart", "random_starts", "homogeneous_fit"]


def random_starts(net, count: int, seed: int = 0, ranges: dict | None = None, base: dict | None = None) -> list:
    """``count`` starts: ``base`` (default ``net.init_params(scale=0)``) with ``theta[k]`` set to one
    value drawn uniformly from ``ranges[k]``, broadcast over sites and layers."""
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive integer, got {count!r}")
    ranges = dict(ranges or {})
    unknown = set(ranges) - set(net.shapes)
    if unknown:
        raise ValueError(f"ranges: unknown parameter(s) {sorted(unknown)}; the network has {sorted(net.shapes)}")
    base = net.check_params(base) if base is not None else net.init_params(seed=seed, scale=0.0)
    rng = np.random.default_rng(seed)
    starts = []
    for _ in range(count):
        theta = {k: np.array(v, copy=True) for k, v in base.items()}
        for k, (lo, hi) in ranges.items():
            theta[k] = np.full(net.shapes[k], rng.uniform(lo, hi), net.dtype)
        starts.append(theta)
    return starts


def homogeneous_fit(net, x, y, theta: dict, steps: int = 200, trainable=None, **kwargs):
    """``(theta, history)``: L-BFGS over one value per trained parameter (the homogeneous
    restriction), broadcast back to the network's shapes. ``kwargs`` go to ``train`` (``loss``,
    ``bounds``, ``memory``, …)."""
    keys = list(trainable) if trainable is not None else list(net.shapes)
    tied = [k for k in keys if net.shapes[k] != ()]
    kwargs.setdefault("progress", False)
    return train(net, x, y, theta, steps=steps, optimizer="lbfgs", trainable=keys, tied=tied, **kwargs)


@dataclass
class MultiStart:
    """The best run (``theta``, ``history``, ``best``: its index) and ``runs``: one dict per start
    (``start``, ``kind``, ``final_loss``, ``seconds``, ``error``, ``theta``)."""
    theta: dict
    history: TrainHistory
    best: int
    runs: list = field(default_factory=list)

    def __str__(self):
        lines = [f"{'start':>5}  {'kind':<12} {'final loss':>12} {'seconds':>8}  note"]
        for r in self.runs:
            note = "best" if r["start"] == self.best else (r["error"] or "")
            lines.append(f"{r['start']:>5}  {r['kind']:<12} {r['final_loss']:>12.6g} {r['seconds']:>8.2f}  {note}")
        return "\n".join(lines)


def multistart(net, x, y, starts, steps: int = 100, optimizer="lbfgs", seed: int = 0, ranges: dict | None = None,
               base: dict | None = None, warm_steps: int = 200, **kwargs) -> MultiStart:
    """Train from every start and keep the best final loss.

    ``starts``: a list of ``theta`` dicts and/or ``"homogeneous"`` (the :func:`homogeneous_fit`
    from ``base``), or an int: that many :func:`random_starts` (``seed``, ``ranges``, ``base``).
    ``kwargs`` go to :func:`npdegen.train` (``loss``, ``bounds``, ``trainable``, ``lr``, …), except
    ``checkpoint``/``resume``: one file holds one run (checkpoint a chosen start with ``train``).
    """
    given = [k for k in ("checkpoint", "resume") if kwargs.get(k) is not None]
    if given:
        raise ValueError(f"multistart does not take {' or '.join(given)}: a checkpoint holds one run; train the "
                         "best start again with npdegen.train(..., checkpoint=...)")
    base_theta = net.check_params(base) if base is not None else net.init_params(seed=seed, scale=0.0)
    generated = isinstance(starts, int) and not isinstance(starts, bool)
    if generated:
        starts = random_starts(net, starts, seed, ranges, base_theta)
    if not starts:
        raise ValueError("multistart needs at least one start")
    kwargs.setdefault("progress", False)
    runs, best, best_out = [], None, None
    for i, start in enumerate(starts):
        kind = "homogeneous" if isinstance(start, str) else ("random" if generated else "given")
        t0 = time.perf_counter()
        error, theta, history = None, None, None
        try:
            if isinstance(start, str):
                if start != "homogeneous":
                    raise ValueError(f"a start is a theta dict or 'homogeneous', got {start!r}")
                fit_kwargs = {k: v for k, v in kwargs.items() if k in ("loss", "bounds", "trainable", "progress")}
                start, _ = homogeneous_fit(net, x, y, base_theta, steps=warm_steps, **fit_kwargs)
            theta, history = train(net, x, y, start, steps=steps, optimizer=optimizer, **kwargs)
            final = history.final_loss
        except TrainingDiverged as exc:
            final, error = math.inf, f"diverged at step {exc.step}"
        if not math.isfinite(final):
            final, error = math.inf, error or "non-finite loss"
        runs.append({"start": i, "kind": kind, "final_loss": final, "seconds": time.perf_counter() - t0,
                     "error": error, "theta": theta})
        if best is None or final < runs[best]["final_loss"]:
            best, best_out = i, (theta, history)
    if best_out[0] is None:
        raise TrainingDiverged("multistart: every run diverged", 0, "multistart", None)
    return MultiStart(theta=best_out[0], history=best_out[1], best=best, runs=runs)
