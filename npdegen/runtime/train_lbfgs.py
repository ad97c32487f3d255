"""``train(..., optimizer="lbfgs")``: SciPy's L-BFGS-B, coarse to fine, with checkpoints and validation.

**Levels.** With ``levels="auto"`` the heterogeneous and time-dependent parameters are fitted as
piecewise-linear interpolants of 1, 2, 4, … knots per axis (:mod:`npdegen.runtime.multilevel`;
the layer axis too: a continuation in depth of the time-dependent family), each level starting
from the previous one's optimum, the last at full resolution; ``levels=k`` runs only the ``k``
finest (``levels=1``: full resolution only). The ``steps`` iterations are split between the levels
(:func:`~npdegen.runtime.multilevel.budgets`); a level that converges early hands its unused
iterations to the next. With ``precondition`` (default) every run of L-BFGS-B optimises the
variables scaled by the Gauss–Newton diagonal (:func:`~npdegen.runtime.lbfgs.gauss_newton_scale`,
``probes`` Rademacher probes seeded by ``(seed, iterations done)``).

**Segments and checkpoints.** A level is one L-BFGS-B run, cut at every multiple of
``checkpoint_every`` iterations (counted over the whole run): each piece starts a fresh L-BFGS-B
(empty memory, the scaling estimated again). ``checkpoint`` saves the parameters and progress at
the end of every piece and level and at the end; ``resume`` continues such a run with the same
arguments and repeats the uninterrupted run bit for bit, because the pieces are the same in both.
(SciPy keeps L-BFGS-B's memory to itself, so a checkpoint can only fall where a run restarts:
``checkpoint_every`` therefore changes the iterates, a little.) Callbacks' own state is not saved.

**Validation and callbacks.** Every iteration is an epoch: ``on_step`` and ``on_epoch_end`` are
called with the iteration's loss and, with ``validation=(x_val, y_val)``, its validation loss
(``history.val_loss``), so :class:`~npdegen.runtime.callbacks.EarlyStopping` stops L-BFGS and
restores the best iterate. ``monitor`` runs after every iteration.

Not available with L-BFGS (a ``ValueError`` says so): minibatches and iterables (L-BFGS needs one
deterministic function: full batch only), ``method="layerwise"``, ``constraint`` (a projection
inside a line search breaks its sufficient-decrease test: use ``bounds``), ``backoff`` (the line
search already backs off from trial points that overflow).
"""
from __future__ import annotations

import time

import numpy as np

from ..grid import normalise_boundaries
from .callbacks import call
from .checkpoint import check_resume, load_checkpoint, save_checkpoint
from .constraints import Box
from .data import evaluate, loss_and_grad
from .history import TrainHistory, TrainingDiverged, restore_best, run_monitor
from .lbfgs import Flat, gauss_newton_scale, run
from .multilevel import budgets, hierarchy
from .network import NonFiniteError

__all__ = ["train_lbfgs", "auto_memory", "OPTIONS"]

OPTIONS = {"memory": None, "ftol": 1e-15, "gtol": 1e-12, "tied": (), "max_evaluations": None, "precondition": True,
           "levels": "auto", "probes": 8}


def _options(given: dict) -> dict:
    unknown = set(given) - set(OPTIONS)
    if unknown:
        raise ValueError(f"optimizer='lbfgs' takes the options {sorted(OPTIONS)}, got {sorted(unknown)}")
    opts = {**OPTIONS, **given}
    levels = opts["levels"]
    if not (levels == "auto" or (isinstance(levels, int) and not isinstance(levels, bool) and levels >= 1)):
        raise ValueError(f"levels must be 'auto' or a positive integer (the finest levels run), got {levels!r}")
    for name in ("memory", "probes"):
        v = opts[name]
        if (v is not None or name == "probes") and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if opts["max_evaluations"] is not None and (not isinstance(opts["max_evaluations"], int)
                                                or opts["max_evaluations"] < 1):
        raise ValueError(f"max_evaluations must be a positive integer or None, got {opts['max_evaluations']!r}")
    if not isinstance(opts["precondition"], bool):
        raise ValueError(f"precondition must be True or False, got {opts['precondition']!r}")
    opts["tied"] = sorted(opts["tied"])
    return opts


def auto_memory(variables: int) -> int:
    """L-BFGS correction pairs by default: 100 (about every iteration of a level: at n = 256,
    L = 128 the errors were 2-4e-4 with 100 pairs, 9e-4 with 20), fewer when the ``2 m`` stored
    vectors would pass 64 MB (4·10⁶ values), at least 10."""
    return int(min(100, max(10, 4_000_000 // max(variables, 1))))


def _periodic(net, keys) -> dict:
    """One bool per axis of each parameter shaped like the grid or ``(layers, *grid)``: its grid
    axes' boundaries, the layer axis not periodic; None for any other shape (never coarsened)."""
    grid = getattr(net, "grid", None)
    boundary = getattr(getattr(net, "options", None), "boundary", getattr(net, "boundary", None))
    if grid is None or boundary is None:        # a network without a grid (points) or a boundary: no coarsening
        return {k: None for k in keys}
    grid = tuple(grid)
    sides = tuple(b == "periodic" for b in normalise_boundaries(boundary, len(grid)))
    out = {}
    for k in keys:
        shape = tuple(net.shapes[k])
        out[k] = sides if shape == grid else (False,) + sides if shape == (net.layers, *grid) else None
    return out


def train_lbfgs(net, x, y, theta, keys, steps, *, loss="sum", bounds=None, callbacks=(), monitor=None,
                checkpoint=None, checkpoint_every=None, resume=None, validation=None, batch_size=None, seed=0,
                options=None, layer_losses=True):
    """Fit ``theta[keys]`` to ``(x, y)`` (2-D arrays, full batch) with at most ``steps`` L-BFGS
    iterations; returns ``(theta, history)`` (module docstring)."""
    opts = _options(options or {})
    if bounds:
        Box(bounds, net.shapes)                        # validates the bounds
    periodic = _periodic(net, keys)
    plan = hierarchy({k: net.shapes[k] for k in keys}, periodic, [k for k in opts["tied"] if k in keys])
    if opts["levels"] != "auto":
        plan = plan[-opts["levels"]:]
    variables = sum(int(np.prod(m)) for m in plan[-1].values())
    memory = opts["memory"] or auto_memory(variables)
    share = budgets(steps, [sum(int(np.prod(m)) for m in level.values()) for level in plan])
    settings = {"method": "full", "optimizer": "lbfgs", "keys": list(keys), "steps": steps, "loss": loss,
                "seed": seed, "checkpoint_every": checkpoint_every,
                **{k: opts[k] for k in ("memory", "ftol", "gtol", "tied", "precondition", "levels", "probes")}}
    history = TrainHistory("full")
    progress = {"level": 0, "used": 0, "carry": 0, "evaluations": 0, "overflows": 0, "sweeps": 0, "record": []}
    if resume is not None:
        theta, progress = _resume(resume, net, theta, keys, steps, settings, len(plan), history)
    done = len(history.loss) - 1 if history.loss else 0

    def save(theta):
        if checkpoint is not None:
            meta = {**settings, **progress, "done": done, "start_loss": history.loss[0], "val_loss": history.val_loss}
            save_checkpoint(checkpoint, theta, {}, meta, history.loss[1:])

    def on_iteration(value, th):
        i = len(history.loss) - 1
        history.loss.append(value)
        logs = {"loss": value, "step": i + 1}
        if validation is not None:
            logs["val_loss"] = evaluate(net, validation[0], validation[1], th, loss, batch_size)
            history.val_loss.append(logs["val_loss"])
        run_monitor(monitor, th)
        stop = call(callbacks, "on_step", i, value, th)
        return call(callbacks, "on_epoch_end", i, logs) or stop

    call(callbacks, "on_train_begin", {"steps": steps, "done": done, "keys": list(keys), "optimizer": "lbfgs",
                                       "per_epoch": 1})
    start, message, stopped = time.perf_counter(), "", False
    if not history.loss:
        try:
            history.loss.append(loss_and_grad(net, x, y, theta, loss)[0])
        except NonFiniteError as exc:
            raise TrainingDiverged(f"training diverged at step 0 (L-BFGS start): {exc}", 0, "L-BFGS start",
                                   None) from None
    while progress["level"] < len(plan) and not stopped:
        allowance = share[progress["level"]] + progress["carry"]
        piece = allowance - progress["used"]
        if checkpoint_every:
            piece = min(piece, checkpoint_every - done % checkpoint_every)
        r = None
        if piece > 0:
            flat = Flat(net, theta, keys, opts["tied"], plan[progress["level"]], periodic)
            try:
                if opts["precondition"]:
                    gauss_newton_scale(flat, x, y, theta, loss, opts["probes"], seed=[seed, done])
                    progress["sweeps"] += opts["probes"]
                left = None if opts["max_evaluations"] is None else opts["max_evaluations"] - progress["evaluations"]
                r = run(flat, x, y, piece, loss, bounds, on_iteration, memory, opts["ftol"], opts["gtol"],
                        left)
            except NonFiniteError as exc:
                raise TrainingDiverged(f"training diverged at step {done} (L-BFGS start of a run): {exc}", done,
                                       "L-BFGS start", theta) from None
            theta, message, stopped = r.theta, r.message, r.stopped
            done += r.iterations
            progress["used"] += r.iterations
            progress["evaluations"] += r.evaluations
            progress["overflows"] += r.overflows
        out_of_evaluations = (opts["max_evaluations"] is not None
                              and progress["evaluations"] >= opts["max_evaluations"])
        if r is None or r.converged or progress["used"] >= allowance or out_of_evaluations:
            knots = {k: list(v) for k, v in plan[progress["level"]].items()}
            progress["record"].append({"knots": knots, "iterations": progress["used"], "loss": history.loss[-1]})
            progress.update(level=progress["level"] + 1, carry=max(allowance - progress["used"], 0), used=0)
            if out_of_evaluations:
                progress["level"] = len(plan)
        save(theta)
    if stopped:
        history.stopped = done
    theta = restore_best(callbacks, theta)
    save(theta)
    history.info = {"iterations": done, "evaluations": progress["evaluations"], "overflows": progress["overflows"],
                    "gauss_newton_sweeps": progress["sweeps"], "message": message,
                    "success": not stopped and progress["level"] >= len(plan), "levels": progress["record"]}
    if layer_losses:
        history.layer_loss = net.layer_losses(x, y, theta)
    history.seconds = time.perf_counter() - start
    call(callbacks, "on_train_end", history)
    return theta, history


def _resume(path, net, like, keys, steps, settings, depth, history):
    saved, state, meta, loss = load_checkpoint(path)
    mismatch = {k: (meta.get(k), v) for k, v in settings.items() if meta.get(k) != v}
    if mismatch:
        raise ValueError(f"resume: {path} was written with other settings: {mismatch}")
    check_resume(path, saved, state, meta, loss, like, keys, steps, "lbfgs")
    if state:
        raise ValueError(f"resume: {path}: an L-BFGS checkpoint holds no optimizer state, found {sorted(state)}")
    progress = {k: meta.get(k) for k in ("level", "used", "carry", "evaluations", "overflows", "sweeps", "record")}
    counts = [progress[k] for k in ("level", "used", "carry", "evaluations", "overflows", "sweeps")]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts) or progress["level"] > depth \
            or not isinstance(progress["record"], list) or not isinstance(meta.get("start_loss"), float):
        raise ValueError(f"resume: {path}: L-BFGS progress (level <= {depth}, used, carry, evaluations, overflows, "
                         f"record, start_loss) is damaged: {progress}")
    history.loss = [meta["start_loss"], *loss]
    history.val_loss = [float(v) for v in meta.get("val_loss", [])]
    return net.check_params(saved), progress
