"""Training: the whole network at once, or the time-dependent family layer by layer.

``method="full"`` minimises ``0.5 Σ (z_L − y)²`` by back-propagating through all L layers.
``method="layerwise"`` trains "on the fly" (MODEL.md §3): for t = 0 … L−1, with z_t fixed,
the parameters of layer t (the time-dependent family, and a time-dependent bias) are fitted to
reduce ``0.5 Σ (z_{t+1} − y)²``, so the chain rule spans two layers at a time; then z_{t+1} is
computed with the fitted layer and the next layer is trained.
"""
from __future__ import annotations

import contextlib
import sys
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from .network import Network, NonFiniteError
from .checkpoint import check_resume, load_checkpoint, save_checkpoint
from .optim import make_optimizer

__all__ = ["TrainHistory", "TrainingDiverged", "train"]


class TrainingDiverged(FloatingPointError):
    """Training met a non-finite value. ``step`` and ``where`` say when; ``theta`` holds the last
    finite parameters (for a diagnosis, e.g. their stability certificate)."""

    def __init__(self, message: str, step: int, where: str, theta: dict | None):
        super().__init__(message)
        self.step, self.where, self.theta = step, where, theta


@dataclass
class TrainHistory:
    """``loss``: one value per optimizer step (for layerwise: the current layer's loss);
    ``layer_loss``: ``0.5 Σ (z_t − y)²`` for t = 0 … L with the trained parameters;
    ``seconds``: wall time."""
    method: str
    loss: list = field(default_factory=list)
    layer_loss: np.ndarray | None = None
    seconds: float = 0.0

    @property
    def final_loss(self) -> float:
        return float(self.layer_loss[-1])


class _Progress:
    """A one-line progress bar on stderr (only when enabled)."""

    def __init__(self, total: int, enabled: bool, label: str):
        self.total, self.enabled, self.label, self.last = total, enabled, label, -1.0

    def __call__(self, done: int, loss: float):
        if not self.enabled:
            return
        now = time.monotonic()
        if done < self.total and now - self.last < 0.1:
            return
        self.last = now
        width = 24
        filled = int(width * done / max(self.total, 1))
        sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] "
                         f"{done}/{self.total}  loss {loss:.6g}")
        if done >= self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


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


def _check_finite(step: int, where: str, loss: float = 0.0, last_theta: dict | None = None, **arrays):
    """Stop at the first non-finite loss, state, gradient or parameter, naming step and place."""
    bad = [name for name, a in arrays.items()
           if not (all(np.all(np.isfinite(v)) for v in a.values()) if isinstance(a, dict) else np.all(np.isfinite(a)))]
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


def _monitor(monitor, theta):
    if monitor is not None:
        message = monitor(theta)
        if message:
            warnings.warn(message, RuntimeWarning, stacklevel=3)


def train(net: Network, x, y, theta: dict, steps: int = 100, optimizer: str = "adam", lr: float = 1e-2,
          method: str = "full", trainable=None, progress: bool | None = None, checkpoint=None,
          checkpoint_every: int | None = None, resume=None, monitor=None, **optimizer_options):
    """Fit ``theta`` so that ``net.forward(x) ≈ y``; returns ``(new_theta, history)``.

    The input ``theta`` is not modified. ``optimizer`` is ``"adam"`` or ``"sgd"``; ``steps`` is
    the number of optimizer steps (per layer for ``method="layerwise"``); ``trainable``
    restricts which keys of ``theta`` change. ``progress`` shows a bar on stderr (default: when
    stderr is a terminal). Training stops with ``FloatingPointError`` at the first non-finite
    loss, state, gradient or parameter, naming the step and the layer.

    ``checkpoint`` (a path) saves parameters, optimizer state and progress every
    ``checkpoint_every`` steps and at the end; ``resume`` (a path) continues such a run, with the
    same arguments, exactly where it stopped.

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
    if progress is None:
        progress = sys.stderr.isatty()
    theta = {k: v.copy() for k, v in net.check_params(theta).items()}
    keys = _trainable(net, method, trainable)
    x2d, _ = net._states(x)
    y2d, _ = net._states(y, "y")
    if y2d.shape != x2d.shape:
        raise ValueError(f"y has shape {np.shape(y)}, expected the shape of x, {np.shape(x)}")
    history = TrainHistory(method)
    settings = {"method": method, "optimizer": optimizer, "lr": lr, "keys": keys, "steps": steps}
    opt = make_optimizer(optimizer, lr, **optimizer_options)
    done = 0                      # optimizer steps taken, over all layers
    if resume is not None:
        saved, state, meta, history.loss = load_checkpoint(resume)
        mismatch = {k: (meta.get(k), v) for k, v in settings.items() if meta.get(k) != v}
        if mismatch:
            raise ValueError(f"resume: {resume} was written with other settings: {mismatch}")
        check_resume(resume, saved, state, meta, history.loss, theta, keys, steps * net.layers if method == "layerwise"
                     else steps, optimizer, steps if method == "layerwise" else None)
        theta = net.check_params(saved)
        opt.load_state_dict(state)
        done = meta["done"]

    def save():
        if checkpoint is not None:
            save_checkpoint(checkpoint, theta, opt.state_dict(), {**settings, "done": done}, history.loss)

    start = time.perf_counter()
    if method == "full":
        bar = _Progress(steps, progress, "train")
        for i in range(done, steps):
            with _diverged(i, "full network", theta):
                loss, grads = net.loss_and_grad(x2d, y2d, theta)
            history.loss.append(loss)
            previous, theta = theta, opt.update(theta, grads, keys)
            _check_finite(i, "full network, after the update", last_theta=previous, parameters=theta)
            _monitor(monitor, theta)
            done = i + 1
            bar(done, loss)
            if checkpoint_every and done % checkpoint_every == 0:
                save()
    else:
        bar = _Progress(steps * net.layers, progress, "layerwise")
        z = x2d.astype(net.dtype)
        for t in range(net.layers):
            if done >= (t + 1) * steps:          # layer finished before the checkpoint
                z = net.step(z, theta, t)
                continue
            if done == t * steps:                # a fresh layer: a fresh optimizer
                opt = make_optimizer(optimizer, lr, **optimizer_options)
            for i in range(done - t * steps, steps):
                with _diverged(i, f"layer {t}", theta):
                    z_next = net.step(z, theta, t)
                    lam = z_next - y2d
                    loss = 0.5 * float(np.sum(np.square(lam, dtype=np.float64)))
                    _check_finite(i, f"layer {t}", loss, theta)
                    _, grads = net.step_vjp(z, theta, lam, t)
                history.loss.append(loss)
                previous, theta = theta, opt.update(theta, grads, keys)
                _check_finite(i, f"layer {t}, after the update", last_theta=previous, parameters=theta)
                _monitor(monitor, theta)
                done += 1
                bar(done, loss)
                if checkpoint_every and done % checkpoint_every == 0:
                    save()
            with _diverged(steps, f"layer {t}, output", theta):
                z = net.step(z, theta, t)
    save()
    history.layer_loss = net.layer_losses(x2d, y2d, theta)
    history.seconds = time.perf_counter() - start
    return theta, history
