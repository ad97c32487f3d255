"""Callbacks for :func:`npdegen.train`: progress, early stopping, trackers.

A callback is any object with some of these methods (all optional; a method that returns ``True``
asks training to stop after the current step)::

    on_train_begin(info)            # info: {"steps", "keys", "optimizer", "per_epoch"}
    on_step(step, loss, theta)      # after every optimizer step (theta: the updated parameters)
    on_epoch_end(epoch, logs)       # logs: {"loss": epoch mean, "val_loss": …, "lr": …, "step": …}
    on_train_end(history)

:class:`Progress` shows a bar with rate and time remaining: ``tqdm`` (``tqdm.auto``: terminal or
notebook) when installed (``pip install npdegen[progress]``), else a ``\\r``-updated line on a
terminal, else one line per ``interval`` seconds to a ``logging`` logger (CI logs, files).
"""
from __future__ import annotations

import logging
import math
import sys
import time

import numpy as np

__all__ = ["Callback", "Progress", "EarlyStopping", "Tracker", "call"]

log = logging.getLogger("npdegen.train")


class Callback:
    """Base class with do-nothing hooks (subclassing it is optional)."""

    def on_train_begin(self, info):
        pass

    def on_step(self, step, loss, theta):
        pass

    def on_epoch_end(self, epoch, logs):
        pass

    def on_train_end(self, history):
        pass


def call(callbacks, hook: str, *args) -> bool:
    """Run ``hook`` on every callback that has it; True when one of them asks to stop."""
    stop = False
    for cb in callbacks:
        method = getattr(cb, hook, None)
        if method is not None and method(*args) is True:
            stop = True
    return stop


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress(Callback):
    """Progress with rate and time remaining. ``mode``: ``"auto"`` (tqdm if installed, else a
    terminal line on a terminal, else log lines), ``"tqdm"``, ``"line"`` or ``"log"``; ``stream``
    for the line mode (default stderr), ``interval`` seconds between updates of the line/log modes."""

    def __init__(self, label: str = "train", mode: str = "auto", stream=None, interval: float | None = None,
                 logger: logging.Logger | None = None):
        if mode not in ("auto", "tqdm", "line", "log"):
            raise ValueError(f"Progress mode must be auto, tqdm, line or log, got {mode!r}")
        self.label, self.mode, self.stream, self.logger = label, mode, stream, logger or log
        self.interval, self.bar = interval, None

    def on_train_begin(self, info):
        self.total, self.done, self.start = info["steps"], info.get("done", 0), time.monotonic()
        self.first, self.last = self.done, -math.inf
        mode = self.mode
        if mode in ("auto", "tqdm"):
            try:
                from tqdm.auto import tqdm
            except ImportError:
                if mode == "tqdm":
                    raise
                stream = self.stream or sys.stderr
                interactive = getattr(stream, "isatty", lambda: False)() or "ipykernel" in sys.modules
                mode = "line" if interactive else "log"        # a notebook renders the \r line too
            else:
                self.bar = tqdm(total=self.total, initial=self.done, desc=self.label, file=self.stream)
        self.kind = "tqdm" if self.bar is not None else mode
        if self.interval is None:
            self.interval = 0.1 if self.kind == "line" else 10.0

    def _line(self, loss) -> str:
        elapsed = time.monotonic() - self.start
        rate = (self.done - self.first) / elapsed if elapsed > 0 else math.nan
        left = (self.total - self.done) / rate if rate and rate > 0 else math.inf
        return (f"{self.label} {self.done}/{self.total} ({100 * self.done / max(self.total, 1):.0f}%) "
                f"loss {loss:.6g}  {rate:.3g} steps/s  elapsed {_duration(elapsed)}  left {_duration(left)}")

    def on_step(self, step, loss, theta):
        self.done, self.loss = step + 1, loss
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
            return
        now = time.monotonic()
        if self.done < self.total and now - self.last < self.interval:
            return
        self.last = now
        if self.kind == "line":
            stream = self.stream or sys.stderr
            stream.write("\r" + self._line(loss) + ("\n" if self.done >= self.total else ""))
            stream.flush()
        elif self.stream is not None:
            self.stream.write(self._line(loss) + "\n")
        else:
            self.logger.info(self._line(loss))

    def on_train_end(self, history):
        if self.bar is not None:
            self.bar.close()
        elif self.kind == "line" and self.done < self.total:
            (self.stream or sys.stderr).write("\n")


class EarlyStopping(Callback):
    """Stop when ``monitor`` (``"val_loss"`` if there is a validation set, else ``"loss"``: the
    epoch's mean training loss) has not improved by ``min_delta`` (relative) for ``patience``
    epochs; with ``restore_best`` the returned parameters are the best ones seen."""

    def __init__(self, patience: int = 10, min_delta: float = 0.0, monitor: str = "auto", restore_best: bool = True):
        self.patience, self.min_delta, self.monitor, self.restore_best = patience, min_delta, monitor, restore_best
        self.best, self.wait, self.best_theta, self.best_epoch, self.stopped_epoch = math.inf, 0, None, None, None
        self._theta = None

    def on_step(self, step, loss, theta):
        self._theta = theta

    def on_epoch_end(self, epoch, logs):
        key = self.monitor if self.monitor != "auto" else ("val_loss" if "val_loss" in logs else "loss")
        value = logs[key]
        if value < self.best * (1 - self.min_delta) or self.best == math.inf:
            self.best, self.wait, self.best_epoch = value, 0, epoch
            self.best_theta = {k: np.array(v, copy=True) for k, v in (self._theta or {}).items()}
            return False
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            return True
        return False


class Tracker(Callback):
    """Records ``step``, ``loss`` and ``lr`` every ``every`` steps, the epoch logs, and (``params``)
    copies of the parameters (a list of names, or True for all)."""

    def __init__(self, every: int = 1, params=False):
        self.every, self.params = every, params
        self.steps, self.loss, self.theta, self.epochs = [], [], [], []

    def on_step(self, step, loss, theta):
        if step % self.every == 0:
            self.steps.append(step)
            self.loss.append(loss)
            if self.params:
                keys = theta if self.params is True else self.params
                self.theta.append({k: np.array(theta[k], copy=True) for k in keys})

    def on_epoch_end(self, epoch, logs):
        self.epochs.append({"epoch": epoch, **logs})
