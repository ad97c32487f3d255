r"""Hand-built npdegen rows for the experiments: the layer kinds the estimator does not search yet,
and the stability / physics summaries of every fitted npdegen model.

* ``npdegen-flux`` (Burgers): the flux-form layer ``npdegen.conservation_law`` with Godunov's flux
  of ``g(z) = c z²/2`` and diffusion ``D`` (both homogeneous), per layer

  .. math:: z_{t+1} = z_t - \frac{F(z_t, z_{t+1}^{+}) - F(z_t^{-}, z_t)}{Δ} + D\,\frac{z^+ - 2z + z^-}{Δ^2},

  which is Burgers' ``u_t + (u²/2)_x = ν u_xx`` with time step ``τ = c`` and ``ν = D/c``. The depth
  comes from the CFL bound ``c·max|u|/Δ + 2D/Δ² ≤ 1`` (:meth:`ConservationLaw.certificate`): with
  the task's time ``T``, the data's ``max|u|`` (a monotone layer never exceeds it) and an upper
  bound ``ν_max`` of the viscosity, ``L = ⌈T (max|u|/Δ + 2ν_max/Δ²) / CFL⌉`` (CFL 0.8) keeps the
  scheme at CFL 0.8 when ``c = T/L`` and ``D = ν_max c``. Two parameters, fitted by L-BFGS
  (``npdegen.train``) within bounds that keep the CFL number ≤ 1.
* ``npdegen-nonlocal`` (Fisher–KPP): ``npdegen.integral.NonlocalPDE`` with a Gaussian kernel of width
  ``σ`` (one diffusion step of variance ``σ²`` per layer: ``W_2 = σ²``) and the exact logistic flow
  as activation, ``f(x) = x e^{a} / (1 + x (e^{a} − 1))`` (the reaction ``u' = ρ u(1 − u)`` over
  ``τ``, with ``a = ρτ``): a Lie splitting of Fisher–KPP, ``σ² = 2ντ``. Two parameters; the depth
  is chosen on held-out pairs.
* ``npdegen-nonlocal`` (advection): one linear layer with a shifted Gaussian kernel (``σ``, ``μ``):
  transport by ``−μ`` with a blur ``σ`` (its rectangle-rule samples interpolate between cells);
  ``μ`` starts at the data's cross-correlation peak. Two parameters.

Both stop at a wall-clock ``budget`` (:class:`Deadline`). :func:`summary` gives, for any fitted model,
its gain per layer (the largest ``|G|`` of one linearised layer over Fourier modes and sites) and the
physics it learned, as JSON-ready dicts.
"""
from __future__ import annotations

import math
import time

import numpy as np
import scipy.optimize
import sympy as sp

__all__ = ["Deadline", "flux_depth", "flux_network", "fit_flux", "fit_nonlocal", "fisher_layer", "shift_layer",
           "data_shift", "fit_shift", "kernel_symbol", "nonlocal_gain", "summary"]

q = sp.Symbol("q")
z = sp.Function("z")(q)


class Deadline:
    """``npdegen.train`` callback: ask training to stop once ``seconds`` have passed since ``start``."""

    def __init__(self, seconds: float, start: float | None = None):
        if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds > 0):
            raise ValueError(f"seconds must be a positive number, got {seconds!r}")
        self.end = (time.perf_counter() if start is None else start) + seconds

    def on_step(self, step, loss, theta):
        return time.perf_counter() >= self.end


def flux_depth(amplitude: float, T: float, spacing: float, nu_max: float = 0.0, cfl: float = 0.8) -> int:
    """``L = ⌈T (amplitude/Δ + 2 ν_max/Δ²)/cfl⌉``: the layers that keep the CFL number of Burgers'
    Godunov layer at ``cfl`` when each layer advances ``τ = T/L`` with viscosity ``ν_max`` (module docstring)."""
    for name, v in (("amplitude", amplitude), ("T", T), ("spacing", spacing)):
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be a positive finite number, got {v!r}")
    if not (math.isfinite(nu_max) and nu_max >= 0):
        raise ValueError(f"nu_max must be a finite number >= 0, got {nu_max!r}")
    if not 0 < cfl < 1:
        raise ValueError(f"cfl must be in (0, 1), got {cfl!r}")
    return max(1, math.ceil(T * (amplitude / spacing + 2 * nu_max / spacing ** 2) / cfl))


def _nrmse(pred, y) -> float:
    pred, y = np.asarray(pred).reshape(len(y), -1), np.asarray(y).reshape(len(y), -1)
    return float(np.mean(np.linalg.norm(pred - y, axis=1) / np.linalg.norm(y, axis=1)))


def flux_network(n: int, spacing: float, layers: int):
    """``(layer, network)``: Godunov's flux of ``c z²/2`` with diffusion ``D`` (homogeneous), ``layers`` deep."""
    import npdegen
    c, D = sp.Symbol("c", positive=True), sp.Symbol("D")
    layer = npdegen.conservation_law(c * z ** 2 / 2, z, diffusion=D, params={c: "homogeneous", D: "homogeneous"},
                                     numerical_flux="godunov", name="burgers_godunov")
    return layer, layer.compile(n=n, spacing=spacing, layers=layers)


def _subsample(x, y, max_samples: int | None, seed: int = 0):
    """At most ``max_samples`` training pairs (drawn without replacement): two or three parameters
    need few samples, and each L-BFGS evaluation costs one forward and one adjoint pass over them."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if max_samples is None or len(x) <= max_samples:
        return x, y
    keep = np.sort(np.random.default_rng(seed).choice(len(x), max_samples, replace=False))
    return x[keep], y[keep]


def fit_flux(x, y, T: float, spacing: float, budget: float, nu_max: float = 0.0, steps: int = 200,
             cfl: float = 0.8, max_samples: int | None = 16, seed: int = 0, loss: str = "relative") -> dict:
    """Fit the Godunov flux layer (module docstring) to pairs ``x → y``. ``loss``: npdegen.train's
    ``"relative"`` (the mean per-sample relative L2 error) or ``"sum"``; on at most ``max_samples`` pairs
    (a 1000-layer forward and adjoint pass over 64 pairs took ~15 s on the loaded machine, so 16 leave
    L-BFGS some iterations in 120 s). Returns ``{"net", "layer", "theta", "depth", "seconds",
    "iterations", "train_nrmse", "amplitude", "tau"}`` (``train_nrmse`` on all pairs)."""
    import npdegen
    started = time.perf_counter()
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    xs, ys = _subsample(x, y, max_samples, seed)
    amplitude = float(np.abs(x).max())
    layer, net = flux_network(x.shape[1], spacing, flux_depth(amplitude, T, spacing, nu_max, cfl))
    L = net.layers
    tau = T / L
    # c·amplitude/Δ + 2D/Δ² ≤ 1 for every admissible value (c ≤ 1.1 τ; D up to what is left), which
    # leaves room above D = ν_max τ (flux_depth); the start: c = τ and half of ν_max
    c_max = 1.1 * tau
    d_max = (1 - c_max * amplitude / spacing) * spacing ** 2 / 2
    start = {"c": np.array(tau), "D": np.array(min(0.5 * nu_max * tau, 0.5 * d_max))}
    theta, hist = npdegen.train(net, xs, ys, start, steps=steps, optimizer="lbfgs", progress=False, loss=loss,
                                bounds={"c": (0.5 * tau, c_max), "D": (0.0, d_max)},
                                callbacks=[Deadline(budget, started)])
    seconds = time.perf_counter() - started           # the training time (the check on all pairs below is not)
    return {"net": net, "layer": layer, "theta": theta, "depth": L, "iterations": len(hist.loss) - 1,
            "seconds": seconds, "train_nrmse": _nrmse(net.forward(x, theta), y), "amplitude": amplitude, "tau": tau}


def fisher_layer():
    """The nonlocal Fisher–KPP layer: Gaussian kernel (σ) and the exact logistic flow (a)."""
    from npdegen.integral import NonlocalPDE, gaussian
    sigma, a, X = sp.symbols("sigma a X")
    flow = X * sp.exp(a) / (1 + X * (sp.exp(a) - 1))
    return NonlocalPDE(gaussian(sigma), z, activation=flow, params={sigma: "homogeneous", a: "homogeneous"},
                       name="fisher_nonlocal")


def _lbfgs(net, x, y, names, start, bounds, steps: int, deadline: "Deadline") -> tuple:
    """SciPy's L-BFGS-B on ``0.5 Σ (z_L − y)²`` with the network's exact gradient (npdegen.train's
    L-BFGS does not take a NonlocalNetwork yet); the best point evaluated is kept when the deadline
    stops it. Returns ``(theta, evaluations)``."""
    best = {"v": np.asarray(start, float), "loss": np.inf, "calls": 0}

    def objective(v):
        if deadline.on_step(None, None, None):
            raise StopIteration
        loss, grad = net.loss_and_grad(x, y, dict(zip(names, map(np.asarray, v))))
        best["calls"] += 1
        if loss < best["loss"]:
            best.update(v=np.array(v, float), loss=float(loss))
        return float(loss), np.array([float(np.sum(grad[k])) for k in names])

    try:
        scipy.optimize.minimize(objective, best["v"], jac=True, method="L-BFGS-B", options={"maxiter": steps},
                                bounds=bounds)
    except StopIteration:
        pass
    return {k: np.array(v) for k, v in zip(names, best["v"])}, best["calls"]


def _fit_nonlocal_once(x, y, spacing: float, layers: int, steps: int, deadline: "Deadline") -> dict:
    """The Fisher layer at one depth, from ``σ`` = four cells and ``a = 0``."""
    net = fisher_layer().compile(x.shape[1], spacing=spacing, layers=layers, omega=1.0, boundary="periodic")
    theta, calls = _lbfgs(net, x, y, ("sigma", "a"), [4 * spacing, 0.0], [(spacing / 4, None), (-1.0, 1.0)],
                          steps, deadline)
    return {"net": net, "theta": theta, "evaluations": calls}


def shift_layer():
    """One linear layer ``Z(q) = ∫ W(r) z(q + r) dr`` with a shifted Gaussian ``W`` (``σ``, ``μ``):
    ``W_1 = μ``, i.e. transport by ``−μ``, and ``W_2 − W_1² = σ²`` of blur."""
    from npdegen.integral import NonlocalPDE, gaussian
    sigma, mu = sp.symbols("sigma mu")
    return NonlocalPDE(gaussian(sigma, shift=mu), z, params={sigma: "homogeneous", mu: "homogeneous"},
                       name="shift_nonlocal")


def data_shift(x, y, spacing: float) -> float:
    """The start for ``μ``: the offset ``o`` maximising the circular cross-correlation
    ``Σ_s Σ_i y_s[i] x_s[i + o]`` (by FFT), as a distance ``oΔ`` in ``(−L/2, L/2]``."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    n = x.shape[1]
    corr = np.fft.irfft(np.sum(np.conj(np.fft.rfft(y, axis=1)) * np.fft.rfft(x, axis=1), axis=0), n)
    o = int(np.argmax(corr))
    return (o - n if o > n // 2 else o) * spacing


def fit_shift(x, y, spacing: float, budget: float, steps: int = 100, max_samples: int | None = 64,
              seed: int = 0) -> dict:
    """Fit :func:`shift_layer` (one layer) to pairs ``x → y``: ``μ`` starts at :func:`data_shift` and
    stays within two cells of it, ``σ`` starts at one cell (``σ ≥ Δ/4``). Same keys as :func:`fit_flux`."""
    started = time.perf_counter()
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    xs, ys = _subsample(x, y, max_samples, seed)
    mu0 = data_shift(xs, ys, spacing)
    net = shift_layer().compile(x.shape[1], spacing=spacing, layers=1, omega=1.0, boundary="periodic")
    theta, calls = _lbfgs(net, xs, ys, ("sigma", "mu"), [spacing, mu0],
                          [(spacing / 4, None), (mu0 - 2 * spacing, mu0 + 2 * spacing)], steps,
                          Deadline(budget, started))
    seconds = time.perf_counter() - started
    return {"net": net, "layer": net.layer, "theta": theta, "depth": 1, "iterations": calls, "seconds": seconds,
            "train_nrmse": _nrmse(net.forward(x, theta), y), "start_mu": mu0}


def fit_nonlocal(x, y, spacing: float, budget: float, depths=(16, 32, 64, 128), steps: int = 100,
                 max_samples: int | None = 64, seed: int = 0) -> dict:
    """Fit the nonlocal Fisher–KPP layer (module docstring) at each depth of ``depths`` (shallow first,
    until ``budget`` seconds) on at most ``max_samples`` training pairs, and keep the depth with the
    least nRMSE on a held-out quarter of the other pairs (a Lie splitting's error falls like 1/L).
    The start is a data-free guess, not the truth. Same keys as :func:`fit_flux`, plus ``"tried"``
    (``{depth: validation nRMSE}``); ``iterations`` counts loss evaluations."""
    started = time.perf_counter()
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = max(1, len(x) // 4) if len(x) > 1 else 0
    val, train = order[:n_val], order[n_val:] if n_val else order
    xs, ys = _subsample(x[train], y[train], max_samples, seed)
    deadline, tried, best = Deadline(budget, started), {}, None
    for L in depths:
        if deadline.on_step(None, None, None) and best is not None:
            break
        r = _fit_nonlocal_once(xs, ys, spacing, int(L), steps, deadline)
        xv, yv = (x[val], y[val]) if n_val else (xs, ys)
        tried[int(L)] = _nrmse(r["net"].forward(xv, r["theta"]), yv)
        if best is None or tried[int(L)] < tried[best["depth"]]:
            best = {**r, "depth": int(L)}
    seconds = time.perf_counter() - started
    return {"net": best["net"], "layer": best["net"].layer, "theta": best["theta"], "depth": best["depth"],
            "iterations": best["evaluations"], "tried": tried, "seconds": seconds,
            "train_nrmse": _nrmse(best["net"].forward(x, best["theta"]), y)}


def kernel_symbol(net, theta, n: int) -> np.ndarray:
    """``|ŵ(k)|`` for the ``n//2 + 1`` Fourier modes of ``n`` sites: the amplification of one layer's
    kernel (the impulse response of the same kernel with the identity activation, one layer)."""
    from npdegen.integral import NonlocalPDE
    layer = net.layer
    names = [p.name for p in layer.kernel.params]
    linear = NonlocalPDE(layer.kernel, layer.field, activation="identity", params={k: "homogeneous" for k in names})
    one = linear.compile(n, spacing=net.spacing[0], layers=1, omega=1.0, boundary="periodic")
    impulse = np.zeros((1, n))
    impulse[0, 0] = 1.0
    return np.abs(np.fft.rfft(one.forward(impulse, {k: theta[k] for k in names})[0]))


def nonlocal_gain(net, theta, n: int) -> float:
    """The largest ``|ŵ(k)|`` (:func:`kernel_symbol`): the gain per layer of the linear part."""
    return float(kernel_symbol(net, theta, n).max())


def summary(kind: str, fit: dict | None = None, est=None) -> dict:
    """Gain per layer and learned physics of a fitted model: ``kind`` ``"estimator"`` (pass the
    fitted ``est``), ``"flux"`` or ``"nonlocal"`` (pass the dict of :func:`fit_flux` / :func:`fit_nonlocal`)."""
    import npdegen
    out = {}
    if kind == "estimator":
        h = est.spacing_[0]
        try:
            # a nonlocal winner is certified from its compiled network (the grid fixes the kernel's samples)
            if isinstance(est.layer_, npdegen.NonlocalPDE):
                st = npdegen.stability(est.network_, est.theta_, omega=est.recipe_["omega"])
            else:
                st = npdegen.stability(est.layer_, est.theta_, spacing=h, omega=est.recipe_["omega"])
            out["stability"] = {"stable": bool(st.stable), "max_gain_per_layer": float(st.max_gain),
                                "binding": str(st.binding), "omega_range": [float(v) for v in st.omega_range],
                                "positive": bool(getattr(st, "positive", False))}
        except Exception as exc:        # a kind npdegen.stability does not cover: the estimator's own certificate
            cert = getattr(est, "certificate_", None)
            out["stability"] = ({"estimator_certificate": cert, "npdegen.stability": f"{type(exc).__name__}: {exc}"}
                                if cert else {"error": f"{type(exc).__name__}: {exc}"})
        out["physics"] = str(est.physics_)
        rows = getattr(est.physics_, "rows", None)
        if callable(rows):
            out["physics_rows"] = [{"order": r["order"], "process": r["process"], "coefficient": r["coefficient"],
                                    "min": r["min"], "mean": r["mean"], "max": r["max"]} for r in rows()]
        return out
    theta = {k: float(np.asarray(v)) for k, v in fit["theta"].items()}
    h = fit["net"].spacing if np.isscalar(fit["net"].spacing) else fit["net"].spacing[0]
    if kind == "flux":
        cert = fit["layer"].certificate(fit["theta"], h, state_range=(-fit["amplitude"], fit["amplitude"]))
        tau = theta["c"]
        out["stability"] = {"stable": bool(cert.stable), "cfl": float(cert.cfl), "tvd": bool(cert.tvd),
                            "max_gain_per_layer": 1.0 if cert.stable else None,
                            "note": "monotone conservative scheme at CFL <= 1: TV and max|u| never grow"}
        out["physics"] = {"time_per_layer_c": tau, "total_time_L_c": tau * fit["depth"],
                          "diffusion_per_time_D_over_c": theta["D"] / tau,
                          "godunov_viscosity_max": fit["amplitude"] * h / 2 * (1 - cert.cfl), **theta}
        return out
    if kind == "shift":
        n = int(fit["net"].grid[0])
        out["stability"] = {"kernel_gain_per_layer": nonlocal_gain(fit["net"], fit["theta"], n),
                            "note": "one linear layer; the rectangle rule's samples of a Gaussian narrower than "
                                    "about a cell sum to slightly more than 1 (aliasing), so the gain can exceed 1"}
        out["physics"] = {"sigma": theta["sigma"], "mu": theta["mu"], "transport_beta_T": -theta["mu"],
                          "blur_variance_sigma2": theta["sigma"] ** 2, "start_mu_from_correlation": fit["start_mu"]}
        return out
    if kind == "nonlocal":
        n = fit["net"].grid[0] if hasattr(fit["net"], "grid") else None
        gain = nonlocal_gain(fit["net"], fit["theta"], int(n))
        a, s, L = theta["a"], theta["sigma"], fit["depth"]
        out["stability"] = {"kernel_gain_per_layer": gain, "reaction_slope_at_0": math.exp(a),
                            "reaction_slope_at_1": math.exp(-a),
                            "note": "|w^(k)| <= 1 (diffusion); f'(0) = e^a > 1 is Fisher's unstable u = 0"}
        out["physics"] = {"sigma": s, "a": a, "diffusion_nu_T": L * s * s / 2, "reaction_rho_T": L * a}
        return out
    raise ValueError(f"kind must be 'estimator', 'flux', 'nonlocal' or 'shift', got {kind!r}")
