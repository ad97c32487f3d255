"""Optimizers, learning-rate schedules, gradient clipping and training callbacks for :func:`npdegen.train`.

    from npdegen.optim import AdamW, Cosine
    opt = AdamW(lr=1e-2, weight_decay=1e-3, schedule=Cosine(total=500), clip_norm=1.0)
    theta, hist = npdegen.train(net, x, y, theta, steps=500, optimizer=opt)

An optimizer is functional on dicts of arrays (``update(theta, grads, keys) -> new theta``) and has a
``state_dict`` of plain arrays, saved in training checkpoints. ``optimizer="lbfgs"`` in
:func:`npdegen.train` runs SciPy's L-BFGS-B instead (:mod:`npdegen.runtime.lbfgs`);
:func:`multistart` and :func:`homogeneous_fit` (:mod:`npdegen.runtime.multistart`) pick the basin.
"""
from .runtime.callbacks import Callback, EarlyStopping, Progress, Tracker
from .runtime.constraints import Box, StableRegion
from .runtime.data import Batches, IterableBatches
from .runtime.multistart import MultiStart, homogeneous_fit, multistart, random_starts
from .runtime.optim import SGD, Adam, AdamW, Optimizer
from .runtime.schedules import Constant, Cosine, ReduceOnPlateau, StepDecay, clip_by_global_norm, clip_by_value

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "Constant", "Cosine", "StepDecay", "ReduceOnPlateau",
           "clip_by_global_norm", "clip_by_value", "Callback", "Progress", "EarlyStopping", "Tracker",
           "Batches", "IterableBatches", "Box", "StableRegion", "multistart", "MultiStart", "random_starts",
           "homogeneous_fit"]
