"""Training: the whole network at once, or the time-dependent family layer by layer.

``method="full"`` minimises the loss (default ``0.5 Σ (z_L − y)²``) by back-propagating through
all L layers, on the whole data set or on minibatches (:mod:`npdegen.runtime.data`), with a
first-order optimizer (:mod:`npdegen.runtime.optim`) or L-BFGS (:mod:`npdegen.runtime.lbfgs`).
``method="layerwise"`` trains "on the fly" (MODEL.md §3): for t = 0 … L−1, with z_t fixed,
the parameters of layer t (the time-dependent family, and a time-dependent bias) are fitted to
reduce ``0.5 Σ (z_{t+1} − y)²``, so the chain rule spans two layers at a time; then z_{t+1} is
computed with the fitted layer and the next layer is trained.
"""
from __future__ import annotations

import collections
import contextlib
import copy
import sys
import time
import numpy as np

from .callbacks import Progress, call
from .checkpoint import check_resume, load_checkpoint, save_checkpoint
from .constraints import Box, compose
from .data import LOSSES, as_batches, evaluate, loss_and_grad
from .history import TrainHistory, TrainingDiverged, restore_best, run_monitor
from .network import Network, NonFiniteError
from .optim import make_optimizer
from .train_lbfgs import train_lbfgs

__all__ = ["TrainHistory", "TrainingDiverged", "train"]


def _trainable(net: Network, method: str, trainable) -> list[str]:
    if trainable is not None:
        keys = list(trainable)
        unknown = set(keys) - set(net.shapes)
        if unknown:
            raise ValueError(f"trainable: unknown parameter(s) {sorted(unknown)}; the network has {sorted(net.shapes)}")
        return keys
    if method == "layerwise":
        keys = [k for k, fam in net.families.items() if fam == "time-dependent"]
        if not keys:
            raise ValueError("method='layerwise' trains the time-dependent family, and this network has none")
        return keys
    return list(net.shapes)


def _finite_dict(d) -> bool:
    return all(np.all(np.isfinite(v)) for v in d.values())


def _check_finite(step: int, where: str, loss: float = 0.0, last_theta: dict | None = None, **arrays):
    """Stop at the first non-finite loss, state, gradient or parameter, naming step and place."""
    bad = [name for name, a in arrays.items()
           if not (_finite_dict(a) if isinstance(a, dict) else np.all(np.isfinite(a)))]
    if not np.isfinite(loss) or bad:
        what = ", ".join(bad) if bad else "loss"
        raise TrainingDiverged(
            f"training diverged at step {step} ({where}): non-finite {what}, loss = {loss}; the parameters "
            "left the stable region (check omega and the stencil weights) or the learning rate is too large",
            step, where, last_theta)


@contextlib.contextmanager
def _diverged(step: int, where: str, theta: dict):
    """Turn the network's refusal of non-finite results into a TrainingDiverged naming the step."""
    try:
        yield
    except NonFiniteError as exc:
        raise TrainingDiverged(f"training diverged at step {step} ({where}): {exc}", step, where, theta) from None


def _constraint(net, bounds, constraint):
    if constraint not in (None, "stable") and not callable(constraint):
        raise ValueError(f"constraint must be None, 'stable' or a callable (previous, theta) -> theta, got {constraint!r}")
    if constraint == "stable":
        raise ValueError("constraint='stable' needs the stability certificate: call npdegen.train (which supplies "
                         "it), or pass StableRegion(certify) with your own certify(theta) -> bool")
    return compose(Box(bounds, net.shapes) if bounds else None, constraint)


def _lbfgs_applies(method, full, constraint, backoff):
    """Refuse what L-BFGS cannot do (npdegen.runtime.train_lbfgs explains why)."""
    if method != "full" or not full:
        raise ValueError("optimizer='lbfgs' trains the whole network on the whole data set (method='full', "
                         "arrays without batch_size): its line search needs one deterministic loss")
    if constraint is not None:
        raise ValueError("optimizer='lbfgs' does not support constraint (a projection inside the line search "
                         "breaks its sufficient-decrease test): use bounds for sign and box constraints")
    if backoff:
        raise ValueError("optimizer='lbfgs' does not take backoff: its line search already backs off from "
                         "trial points that overflow")


def train(net: Network, x, y, theta: dict, steps: int = 100, optimizer="adam", lr: float = 1e-2,
          method: str = "full", trainable=None, progress=None, checkpoint=None,
          checkpoint_every: int | None = None, resume=None, monitor=None, *, loss: str = "sum",
          batch_size: int | None = None, shuffle: bool = True, seed: int = 0, validation=None,
          callbacks=(), backoff: int = 0, bounds: dict | None = None, constraint=None, layer_losses: bool = True,
          **optimizer_options):
    """Fit ``theta`` so that ``net.forward(x) ≈ y``; returns ``(new_theta, history)``.

    The input ``theta`` is not modified. ``optimizer``: ``"adam"``, ``"adamw"``, ``"sgd"``, an
    optimizer object from :mod:`npdegen.optim` (with its schedule and clipping), or ``"lbfgs"``
    (SciPy's L-BFGS-B on the flattened parameters, full batch, coarse to fine and scaled by the
    Gauss–Newton diagonal; ``steps`` iterations in all; options ``levels``, ``precondition``,
    ``probes``, ``memory``, ``ftol``, ``gtol``, ``tied``, ``max_evaluations``; checkpoints,
    validation and callbacks as below: :mod:`npdegen.runtime.train_lbfgs`). Other keywords (``momentum``, ``betas``,
    ``weight_decay``, ``schedule``, ``clip_norm``, ``clip_value``) go to the optimizer.
    ``steps`` is the number of optimizer steps (per layer for ``method="layerwise"``);
    ``trainable`` restricts which keys of ``theta`` change.

    Data: ``x``, ``y`` arrays or ``.npy`` paths (memory-mapped), or ``x`` an iterable of
    ``(x, y)`` batches with ``y=None``; ``batch_size`` draws minibatches (``shuffle``, ``seed``);
    ``loss``: ``"sum"`` (``0.5 Σ (z_L − y)²``), ``"mean"`` (mean squared error) or ``"relative"``
    (nRMSE per sample, averaged); ``validation=(x_val, y_val)`` is evaluated (same loss) at the
    end of every epoch.

    ``callbacks``: objects with ``on_train_begin``/``on_step``/``on_epoch_end``/``on_train_end``
    (:mod:`npdegen.runtime.callbacks`: ``Progress``, ``EarlyStopping``, ``Tracker``); ``progress``
    (True, False, None: when stderr is a terminal, or a ``Progress``) shows rate and time left.

    Divergence: training stops with :class:`TrainingDiverged` (a ``FloatingPointError``) at the
    first non-finite loss, state, gradient or parameter, naming the step and the layer; with
    ``backoff=k`` it instead restores the last finite parameters and optimizer state and retries
    with half the learning rate, at most ``k`` times in the run. ``bounds={"D": (0, None)}``
    clips parameters (L-BFGS: box constraints); ``constraint="stable"`` shortens every update that
    leaves the certified stable region (:class:`~npdegen.runtime.constraints.StableRegion`), or
    give a callable ``(previous, theta) -> theta``.

    ``checkpoint`` (a path) saves parameters, optimizer state and progress every
    ``checkpoint_every`` steps and at the end (L-BFGS: also at the end of every level, and its
    memory restarts at every checkpoint); ``resume`` (a path) continues such a run, with the
    same arguments, exactly where it stopped (callbacks' own state is not saved).

    ``layer_losses=False`` skips ``history.layer_loss`` (a forward storing every layer's state, once at
    the end: a caller that only needs the parameters — a budgeted search — saves it).

    ``monitor``: optional callable ``theta -> str | None`` run after every update, e.g.
    ``npdegen.inspect.stability_monitor(net, every=10)``; a message it returns is issued as a
    ``RuntimeWarning`` (the stability monitor warns once, when the parameters leave the stable region).
    """
    if method not in ("full", "layerwise"):
        raise ValueError(f"method must be 'full' or 'layerwise', got {method!r}")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
    if checkpoint_every is not None and (not isinstance(checkpoint_every, int) or checkpoint_every < 1):
        raise ValueError(f"checkpoint_every must be a positive integer, got {checkpoint_every!r}")
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
    if not isinstance(backoff, int) or isinstance(backoff, bool) or backoff < 0:
        raise ValueError(f"backoff must be an integer >= 0 (the number of halvings allowed), got {backoff!r}")
    callbacks = list(callbacks)
    if progress is None:      # on by default in a terminal and in a notebook (IPython kernel)
        progress = sys.stderr.isatty() or "ipykernel" in sys.modules
    if progress:
        callbacks.append(progress if isinstance(progress, Progress) else Progress(method if method != "full" else "train"))
    theta = {k: v.copy() for k, v in net.check_params(theta).items()}
    keys = _trainable(net, method, trainable)
    data = as_batches(x, y, batch_size, shuffle, seed)
    full = getattr(data, "full_batch", False)
    if full:
        x2d, _ = net._states(data.x)
        y2d, _ = net._states(data.y, "y")
        if y2d.shape != x2d.shape:
            raise ValueError(f"y has shape {np.shape(y)}, expected the shape of x, {np.shape(x)}")
    elif method == "layerwise":
        raise ValueError("method='layerwise' trains on the whole data set: give arrays without batch_size")
    project = _constraint(net, bounds, constraint)
    if optimizer == "lbfgs":
        _lbfgs_applies(method, full, constraint, backoff)
        return train_lbfgs(net, x2d, y2d, theta, keys, steps, loss=loss, bounds=bounds, callbacks=callbacks,
                           monitor=monitor, checkpoint=checkpoint, checkpoint_every=checkpoint_every, resume=resume,
                           validation=validation, batch_size=batch_size, seed=seed, options=optimizer_options,
                           layer_losses=layer_losses)
    proto = make_optimizer(optimizer, lr, **optimizer_options)
    opt = copy.deepcopy(proto)
    history = TrainHistory(method)
    settings = {"method": method, "optimizer": opt.name, "lr": opt.lr, "keys": keys, "steps": steps}
    settings.update({k: v for k, v in (("loss", loss), ("batch_size", batch_size)) if v not in ("sum", None)})
    done = 0                      # optimizer steps taken, over all layers
    per_layer = steps if method == "layerwise" else None
    if resume is not None:
        saved, state, meta, history.loss = load_checkpoint(resume)
        mismatch = {k: (meta.get(k), v) for k, v in settings.items() if meta.get(k) != v}
        if mismatch:
            raise ValueError(f"resume: {resume} was written with other settings: {mismatch}")
        check_resume(resume, saved, state, meta, history.loss, theta, keys,
                     steps * net.layers if per_layer else steps, opt.name, per_layer)
        theta = net.check_params(saved)
        opt.load_state_dict(state)
        done = meta["done"]
        if "t" not in state:                  # written before SGD counted its updates
            opt.t = done % per_layer if per_layer else done
        history.val_loss = [float(v) for v in meta.get("val_loss", [])]
        history.backoffs = [int(v) for v in meta.get("backoffs", [])]

    def save(theta, done):
        if checkpoint is not None:
            save_checkpoint(checkpoint, theta, opt.state_dict(),
                            {**settings, "done": done, "val_loss": history.val_loss, "backoffs": history.backoffs},
                            history.loss)

    total = steps * net.layers if method == "layerwise" else steps
    call(callbacks, "on_train_begin", {"steps": total, "done": done, "keys": keys, "optimizer": opt.name,
                                       "per_epoch": getattr(data, "per_epoch", None)})
    start = time.perf_counter()
    if method == "full":
        runner = _Full(net, data, full and (x2d, y2d), loss, keys, opt, project, monitor, callbacks, backoff,
                       validation, batch_size, history)
        theta, done = runner.run(theta, done, steps, save, checkpoint_every)
    else:
        z = x2d.astype(net.dtype)
        for t in range(net.layers):
            if done >= (t + 1) * steps:          # layer finished before the checkpoint
                z = net.step(z, theta, t)
                continue
            if done == t * steps:                # a fresh layer: a fresh optimizer
                opt = copy.deepcopy(proto)
            for i in range(done - t * steps, steps):
                with _diverged(i, f"layer {t}", theta):
                    z_next = net.step(z, theta, t)
                    lam = z_next - y2d
                    value = 0.5 * float(np.sum(np.square(lam, dtype=np.float64)))
                    _check_finite(i, f"layer {t}", value, theta)
                    _, grads = net.step_vjp(z, theta, lam, t)
                history.loss.append(value)
                previous, theta = theta, opt.update(theta, grads, keys)
                if project is not None:
                    theta = project(previous, theta)
                _check_finite(i, f"layer {t}, after the update", last_theta=previous, parameters=theta)
                run_monitor(monitor, theta)
                done += 1
                stop = call(callbacks, "on_step", done - 1, value, theta)
                if checkpoint_every and done % checkpoint_every == 0:
                    save(theta, done)
                if stop:
                    history.stopped = done
                    break
            if history.stopped is not None:
                break
            with _diverged(steps, f"layer {t}, output", theta):
                z = net.step(z, theta, t)
    theta = restore_best(callbacks, theta)       # early stopping: the best parameters seen
    save(theta, done)
    if layer_losses and full:
        history.layer_loss = net.layer_losses(x2d, y2d, theta)
    elif layer_losses and hasattr(data, "samples"):
        history.layer_loss = _layer_losses(net, data, theta, data.batch_size)
    history.seconds = time.perf_counter() - start
    call(callbacks, "on_train_end", history)
    return theta, history


class _Full:
    """The loop of ``method="full"``: minibatches, epochs, validation and backoff."""

    def __init__(self, net, data, arrays, loss, keys, opt, project, monitor, callbacks, backoff, validation,
                 batch_size, history):
        self.net, self.data, self.arrays, self.loss, self.keys, self.opt = net, data, arrays, loss, keys, opt
        self.project, self.monitor, self.callbacks, self.backoff = project, monitor, callbacks, backoff
        self.validation, self.batch_size, self.history = validation, batch_size, history
        self.used = 0

    def grad(self, i, theta, batch):
        """``(loss, grads)`` at step ``i``; raises TrainingDiverged on a non-finite value."""
        with _diverged(i, "full network", theta):
            value, grads = loss_and_grad(self.net, batch[0], batch[1], theta, self.loss)
        _check_finite(i, "full network", value, theta)
        return value, grads

    def halve(self, i, state):
        """Restore the optimizer ``state`` and halve its learning rate (one backoff)."""
        self.opt.load_state_dict(state)
        self.opt.scale *= 0.5
        self.used += 1
        self.history.backoffs.append(i)

    def update(self, i, theta, grads):
        """The next parameters; an update that overflows is retried with half the rate (backoff)."""
        before = self.opt.state_dict()
        while True:
            new = self.opt.update(theta, grads, self.keys)
            if self.project is not None:
                new = self.project(theta, new)
            if _finite_dict(new) or self.used >= self.backoff:
                _check_finite(i, "full network, after the update", last_theta=theta, parameters=new)
                return new, before
            self.halve(i, before)

    def epoch_end(self, epoch, first, theta):
        values = self.history.loss[first:]
        logs = {"loss": float(np.mean(values)) if values else float("nan"), "lr": self.opt.current_lr(),
                "step": len(self.history.loss)}
        if self.validation is not None:
            xv, yv = self.validation
            logs["val_loss"] = evaluate(self.net, xv, yv, theta, self.loss, self.batch_size)
            self.history.val_loss.append(logs["val_loss"])
        self.opt.observe(logs.get("val_loss", logs["loss"]))
        return call(self.callbacks, "on_epoch_end", epoch, logs)

    def run(self, theta, done, steps, save, checkpoint_every):
        per_epoch = 1 if self.arrays else self.data.per_epoch
        batches = None if self.arrays else self.data.start(done)
        epoch, first = (done // per_epoch, done - done % per_epoch) if per_epoch else (0, done)
        i, current, snapshots, failed = done, None, collections.deque(maxlen=16), -1
        depth = 0
        while i < steps:
            if current is None:
                if self.arrays:
                    current = self.arrays
                else:
                    try:
                        e, _, current = next(batches)
                    except StopIteration:             # a one-shot iterable ran out
                        break
                    if per_epoch is None and e != epoch:
                        if self.epoch_end(epoch, first, theta):
                            self.history.stopped = i
                            break
                        epoch, first = e, i
            try:
                value, grads = self.grad(i, theta, current)
            except TrainingDiverged:
                # back to the state before the last update, at half the rate; each failure before
                # getting past this step goes one more update back (a finite but already wild point)
                depth = depth + 1 if i <= failed else 1
                if self.used >= self.backoff or not snapshots:
                    raise
                failed, back = max(i, failed), min(depth, len(snapshots))
                for _ in range(back):
                    theta, state, current = snapshots.pop()
                    self.history.loss.pop()
                    i -= 1
                self.halve(failed, state)
                continue
            new, before = self.update(i, theta, grads)
            self.history.loss.append(value)
            snapshots.append((theta, before, current))
            theta = new
            run_monitor(self.monitor, theta)
            i, current = i + 1, None
            stop = call(self.callbacks, "on_step", i - 1, value, theta)
            if per_epoch and i % per_epoch == 0:
                stop = self.epoch_end(epoch, first, theta) or stop
                epoch, first = epoch + 1, i
            if checkpoint_every and i % checkpoint_every == 0:
                save(theta, i)
            if stop:
                self.history.stopped = i
                break
        if per_epoch is None and i > first and self.history.stopped is None:
            self.epoch_end(epoch, first, theta)
        return theta, i


def _layer_losses(net, data, theta, chunk):
    """``0.5 Σ (z_t − y)²`` over all samples of ``data`` (read ``chunk`` samples at a time)."""
    total = 0.0
    for s in range(0, data.samples, chunk):
        total = total + net.layer_losses(np.asarray(data.x[s:s + chunk]), np.asarray(data.y[s:s + chunk]), theta)
    return total
