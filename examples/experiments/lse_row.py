r"""The ``npdegen-lse`` row (Burgers tasks): soft-min (log-sum-exp) layers, the Cole–Hopf image of the heat step.

Burgers' ``u_t + u u_x = ε u_xx`` (the tasks' ``ε = ν/π``) is, for the potential ``z = ½∫u``
(``u = 2 z_q``), the viscous Hamilton–Jacobi equation ``z_t + z_q² = ε z_qq``, which Cole–Hopf
(``z = −ε log φ``) turns into the heat equation. The soft-min layer of :func:`npdegen.softmin_layer`,

.. math:: Z_i = -ε \log \sum_j w_j\, e^{-z_{i+j}/ε},

with the heat stencil ``w = (d, 1 − 2d, d)`` steps it exactly as the linear layer steps ``φ``
(docs/theory.md: log-sum-exp layers are viscous Hamilton–Jacobi steps). A potential needs a
periodic field of mean zero; the samples' mean ``m`` is carried by Galilean invariance,
``u(x, t) = m + v(x − m t, t)`` with ``v`` Burgers of mean zero. So a pair is mapped by

    u₀ → z₀ = ½ ∫ (u₀ − m)    (spectral)
       → L soft-min layers (log-weights lw_m1, lw_0, lw_p1 and log ε: 4 homogeneous parameters)
       → v = 2 ∂_q z_L         (spectral)
       → u_T = m + v(x − m T)   (a Fourier shift; T the task's time, as the flux row uses it)

and fitted by L-BFGS (SciPy) on ``½ Σ (v − v_target)²`` with ``v_target(x) = u_T(x + m T) − m``: the
gradient is the network's exact adjoint (``net.vjp``) of the cotangent ``−2 ∂_q (v − v_target)``
(the spectral derivative is antisymmetric). The depth keeps the heat stencil positive,
``d = ε T/(L Δ²) ≤ ½`` for ``ε`` up to ``ε_max``; the start is the heat stencil of ``ε_max/2``.
"""
from __future__ import annotations

import math
import time

import numpy as np
import scipy.optimize
import sympy as sp

from extras import _nrmse, _subsample

__all__ = ["lse_network", "potential", "velocity", "galilean_shift", "velocity_loss", "fit_lse", "predict_lse", "summary"]

LOGEPS = sp.Symbol("logeps")
NAMES = ("logeps", "lw_m1", "lw_0", "lw_p1")


def _wavenumbers(n: int, spacing: float) -> np.ndarray:
    """``i k`` of the real FFT of ``n`` points (the Nyquist mode zeroed: the derivative is antisymmetric)."""
    k = 2j * np.pi * np.fft.rfftfreq(n, spacing)
    if n % 2 == 0:
        k[-1] = 0
    return k


def potential(u, spacing: float) -> np.ndarray:
    """``½ ∫ u`` of mean zero, per sample (rows of ``u``, periodic; the mean of ``u`` is dropped)."""
    u = np.asarray(u, np.float64)
    ik = _wavenumbers(u.shape[-1], spacing)
    zh = np.where(ik == 0, 0, 0.5 * np.fft.rfft(u, axis=-1) / np.where(ik == 0, 1, ik))   # the mean, Nyquist: 0
    return np.fft.irfft(zh, u.shape[-1], axis=-1)


def velocity(z, spacing: float) -> np.ndarray:
    """``2 ∂_q z`` (spectral), per sample."""
    z = np.asarray(z, np.float64)
    return np.fft.irfft(2 * _wavenumbers(z.shape[-1], spacing) * np.fft.rfft(z, axis=-1), z.shape[-1], axis=-1)


def galilean_shift(u, distance, spacing: float) -> np.ndarray:
    """``u(x − distance)`` per sample (``distance`` one number per row), by the Fourier shift theorem."""
    u = np.asarray(u, np.float64)
    k = 2 * np.pi * np.fft.rfftfreq(u.shape[-1], spacing)
    phase = np.exp(-1j * k[None, :] * np.asarray(distance, np.float64).reshape(-1, 1))
    if u.shape[-1] % 2 == 0:                        # the Nyquist mode stays real
        phase[:, -1] = np.cos(k[-1] * np.asarray(distance, np.float64).reshape(-1))
    return np.fft.irfft(np.fft.rfft(u, axis=-1) * phase, u.shape[-1], axis=-1)


def lse_network(n: int, spacing: float, layers: int):
    """``(layer, network)``: ``layers`` soft-min layers of a trainable 3-point stencil and ``ε = e^{logeps}``."""
    from npdegen.softmin import softmin_layer
    layer = softmin_layer([-1, 0, 1], eps=sp.exp(LOGEPS), params={LOGEPS: "homogeneous"}, family="homogeneous",
                          name="burgers_cole_hopf")
    return layer, layer.compile(n=n, spacing=spacing, layers=layers)


def predict_lse(net, theta, x, T: float, spacing: float) -> np.ndarray:
    """``u_T`` for inputs ``x`` (module docstring)."""
    x = np.asarray(x, np.float64)
    m = x.mean(axis=1)
    v = velocity(net.forward(potential(x, spacing), theta), spacing)
    return m[:, None] + galilean_shift(v, m * T, spacing)


class _OutOfTime(Exception):
    """The budget cannot afford another evaluation."""


def velocity_loss(net, theta, z0, target, spacing: float) -> tuple:
    """``(½ Σ (2 ∂_q z_L − target)², gradients)`` for potentials ``z0``: the network's adjoint of the
    cotangent ``(2 ∂_q)ᵀ r = −2 ∂_q r`` (the spectral derivative is antisymmetric)."""
    r = velocity(net.forward(z0, theta), spacing) - target
    _, grads = net.vjp(z0, theta, -velocity(r, spacing))
    return 0.5 * float(np.sum(r * r)), grads


def fit_lse(x, y, T: float, spacing: float, budget: float, eps_max: float, steps: int = 200,
            max_samples: int | None = 32, seed: int = 0) -> dict:
    """Fit the Cole–Hopf soft-min row (module docstring) to pairs ``x → y`` within ``budget`` seconds, on at
    most ``max_samples`` pairs. Returns ``{"net", "layer", "theta", "depth", "seconds", "iterations",
    "train_nrmse", "eps", "weights", "T", "spacing"}`` (``train_nrmse``: mean per-sample relative L2 error on
    all pairs)."""
    if not (math.isfinite(eps_max) and eps_max > 0):
        raise ValueError(f"eps_max must be a positive finite number, got {eps_max!r}")
    started = time.perf_counter()
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    xs, ys = _subsample(x, y, max_samples, seed)
    n = x.shape[1]
    depth = max(1, math.ceil(2 * eps_max * T / spacing ** 2))
    layer, net = lse_network(n, spacing, depth)
    m = xs.mean(axis=1)
    z0 = potential(xs, spacing)
    target = galilean_shift(ys - m[:, None], -m * T, spacing)        # v(x) = u_T(x + m T) − m
    d0 = 0.5 * eps_max * T / (depth * spacing ** 2)                  # the heat stencil of ε_max / 2
    start = np.array([math.log(0.5 * eps_max), math.log(d0), math.log(1 - 2 * d0), math.log(d0)])
    deadline = started + budget
    state = {"count": 0, "longest": 0.0, "best": (math.inf, start)}

    def theta_of(p):
        return {k: np.asarray(v) for k, v in zip(NAMES, p)}

    def objective(p):
        # an evaluation that would end past the deadline is not started (a line search may take several)
        if state["count"] and time.perf_counter() + state["longest"] > deadline:
            raise _OutOfTime
        t0 = time.perf_counter()
        loss, g = velocity_loss(net, theta_of(p), z0, target, spacing)
        state["count"] += 1
        state["longest"] = max(state["longest"], time.perf_counter() - t0)
        if loss < state["best"][0]:
            state["best"] = (loss, np.array(p))
        return loss, np.array([float(g[k]) for k in NAMES])

    try:
        res = scipy.optimize.minimize(objective, start, jac=True, method="L-BFGS-B",
                                      options={"maxiter": steps, "ftol": 0.0, "gtol": 0.0})
        iterations = int(res.nit)
    except _OutOfTime:
        iterations = None
    theta = theta_of(state["best"][1])          # the least loss evaluated
    seconds = time.perf_counter() - started
    pred = predict_lse(net, theta, x, T, spacing)
    w = np.exp([float(theta[k]) for k in ("lw_m1", "lw_0", "lw_p1")])
    return {"net": net, "layer": layer, "theta": theta, "depth": depth, "seconds": seconds,
            "iterations": iterations if iterations is not None else state["count"], "train_nrmse": _nrmse(pred, y),
            "eps": float(np.exp(float(theta["logeps"]))), "weights": w.tolist(), "T": T, "spacing": spacing}


def summary(fit: dict) -> dict:
    """Stability and physics of a fitted row, JSON-ready: ``ε`` (so ``ν = π ε``), the stencil, the time the
    network advances (per layer ``τ = d Δ²/ε`` with ``d`` the normalised side weight: the heat step's
    ``d = ε τ/Δ²``), the drift of an asymmetric stencil, and why the layer cannot amplify."""
    w = np.asarray(fit["weights"], np.float64)
    total = float(w.sum())
    d = float((w[0] + w[2]) / 2 / total)
    eps, h, L = fit["eps"], fit["spacing"], fit["depth"]
    tau = d * h * h / eps
    return {"stability": {"weights_positive": bool(np.all(w > 0)), "weights_sum": total,
                          "note": "positive weights: each layer is monotone and does not expand the max norm of "
                                  "differences (a soft-min of shifted copies); the sum only shifts the potential "
                                  "by -eps log(sum), which the velocity does not see"},
            "physics": {"eps": eps, "viscosity_nu_pi_eps": math.pi * eps, "side_weight_d": d,
                        "time_per_layer": tau, "total_time_L_tau": L * tau, "task_time_T": fit["T"],
                        "drift_cells_per_layer": float((w[2] - w[0]) / total), "depth": L}}
