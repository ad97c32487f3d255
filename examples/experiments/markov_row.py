r"""The ``npdegen-markov`` row (advection tasks): upwind Markov-chain layers (:func:`npdegen.markov_chain`).

A layer is the expectation step of a random walk on the grid,

.. math:: Z_i = \sum_{o \in \{-1, 0, 1\}} p_o\, z_{i+o}, \qquad p_o = \frac{e^{ℓ_o}}{\sum_k e^{ℓ_k}},

positive and summing to one whatever the three logits ``ℓ`` (homogeneous parameters): it obeys the
maximum principle and keeps constants (Kushner–Dupuis). Its drift per layer is ``b = Δ(p₊ − p₋)``
and the variance it adds ``Δ²(p₊ + p₋) − b²``: transport by ``L·b`` with a numerical diffusion that
no positive 3-point chain can avoid unless each layer moves a whole cell (``p₊ = 1``). The depth is
the least the data's shift allows at under one cell per layer, ``L = ⌊|s|/Δ⌋ + 1`` (``s`` the
cross-correlation shift of the pairs, :func:`extras.data_shift`), and the start is Kushner's upwind
chain of drift ``s/L`` (:func:`npdegen.kushner_logits`) with a little diffusion, so that no logit
starts at ``−∞``. L-BFGS (``npdegen.train``) then fits the three logits.
"""
from __future__ import annotations

import math
import time

import numpy as np

from extras import Deadline, _nrmse, _subsample, data_shift

__all__ = ["fit_markov", "summary"]

NAMES = ("l_m1", "l_0", "l_p1")


def fit_markov(x, y, spacing: float, budget: float, steps: int = 100, max_samples: int | None = 64,
               seed: int = 0) -> dict:
    """Fit the homogeneous upwind chain (module docstring) to pairs ``x → y`` within ``budget`` seconds.
    Returns ``{"net", "layer", "theta", "depth", "seconds", "iterations", "train_nrmse", "start_shift"}``."""
    import npdegen
    if not (math.isfinite(spacing) and spacing > 0):
        raise ValueError(f"spacing must be a positive finite number, got {spacing!r}")
    started = time.perf_counter()
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    xs, ys = _subsample(x, y, max_samples, seed)
    shift = data_shift(xs, ys, spacing)
    depth = math.floor(abs(shift) / spacing + 1e-9) + 1
    drift = shift / depth                                        # per layer, |drift| < Δ
    room = spacing ** 2 - spacing * abs(drift)                   # the CFL bound's room: a + Δ|b| <= Δ²
    start = npdegen.kushner_logits(drift, 0.1 * room, 1.0, spacing)
    layer = npdegen.markov_chain(family="homogeneous", name="upwind_chain")
    net = layer.compile(n=x.shape[1], spacing=spacing, layers=depth, omega=1.0, boundary="periodic")
    theta, hist = npdegen.train(net, xs, ys, {k: np.asarray(float(v)) for k, v in start.items()}, steps=steps,
                                optimizer="lbfgs", progress=False, loss="relative", layer_losses=False,
                                callbacks=[Deadline(budget, started)])
    seconds = time.perf_counter() - started
    return {"net": net, "layer": layer, "theta": theta, "depth": depth, "iterations": len(hist.loss) - 1,
            "seconds": seconds, "train_nrmse": _nrmse(net.forward(x, theta), y), "start_shift": shift,
            "spacing": spacing}


def summary(fit: dict) -> dict:
    """Stability and physics of a fitted chain, JSON-ready: the probabilities, drift and added variance
    per layer, the transport ``L b`` and the numerical diffusion ``L·var/2`` over the network."""
    logits = np.array([float(np.asarray(fit["theta"][k])) for k in NAMES])
    p = np.exp(logits - logits.max())
    p /= p.sum()
    h, L = fit["spacing"], fit["depth"]
    b = h * (p[2] - p[0])
    var = h * h * (p[2] + p[0]) - b * b
    return {"stability": {"max_gain_per_layer": 1.0, "positive": True,
                          "note": "a Markov chain: positive weights summing to one (maximum principle, constants kept)"},
            "physics": {"p_minus": float(p[0]), "p_stay": float(p[1]), "p_plus": float(p[2]),
                        "drift_per_layer": float(b), "transport_total_L_b": float(L * b),
                        "variance_per_layer": float(var), "numerical_diffusion_total": float(L * var / 2),
                        "start_shift": fit["start_shift"], "depth": L}}
