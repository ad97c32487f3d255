r"""Layer kind ``"flux"``: a conservation law in flux form, Godunov's flux, depth from the CFL bound.

One layer (:func:`npdegen.conservation_law`, ``ω = 1``, identity activation) is

.. math::
    z_{t+1,i} = z_i - \frac{F(z_i, z_{i+1}) - F(z_{i-1}, z_i)}{Δ}
                + D\,\frac{z_{i+1} - 2 z_i + z_{i-1}}{Δ^2},
    \qquad g(z) = \frac{c}{2} z^2 + a z \quad (c > 0),

Godunov's flux ``F`` of the convex ``g``: viscous Burgers ``z_t + (k z²/2 + a z)_q = ν z_qq`` with
time step ``τ`` and ``c = kτ``, ``a = a_phys τ``, ``D = ντ`` — over ``L`` layers the totals
``K = Lc`` (flux time), ``A = La`` (shift) and ``N = LD`` (``νT``). The quadratic flux plus a linear
one is the default family because it is the general convex flux to second order about any state
(a Galilean frame of Burgers: a sample of mean ``m`` translates with ``k m + a``), it keeps mass
exactly, and its Riemann solutions are exact (Godunov). Families: ``homogeneous``, then one value
per layer (``time-dependent``: piecewise linear in the layer index with :data:`LAYER_KNOTS` knots,
:class:`~npdegen.estimator.layerwise.PerLayer`; a per-site value would break conservation).

**From the data** (:meth:`FluxLaw.prepare`, periodic 1-D grids): pairs whose means change by more
than :data:`MASS_TOLERANCE` of their RMS are not a conservation law (the kind is skipped);
:func:`~npdegen.estimator.starts.frame_estimate` gives ``K̂, Â, N̂``; ``Z = max|X|``.
With the transport scale ``s = K̂Z + |Â| + Δ`` the box (per layer, ÷L) is

.. math::
    c ∈ (0, K_{hi}],\ K_{hi} = 1.3 K̂ + 0.3 s/Z; \qquad a ∈ Â ± 0.3 s; \qquad
    D ∈ [0, N_{hi}],\ N_{hi} = \tfrac{Δ^2}{2}\big(L − W/Δ\big),\ W = K_{hi} Z + |Â| + 0.3 s,

so every point of it has ``max|g′|/Δ + 2D/Δ² ≤ (c Z + |a|)/Δ + 2D/Δ² ≤ 1`` on states in
``[−Z, Z]``: the fitted layer is certified (positive, maximum principle, TVD;
:meth:`~npdegen.conservation.ConservationLaw.certificate`). The depth is the least of the space's
``depths`` with ``N_{hi} ≥ N̂``, i.e. ``L ≥ W/Δ + 2N̂/Δ²``, or that bound itself; the start is
``(K̂, Â, N̂/2)/L``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import sympy as sp

from .recipes import LayerKind, NotApplicable, Recipe, register

__all__ = ["FluxLaw", "FluxReport", "MASS_TOLERANCE", "MAX_DEPTH", "FLUX_WEIGHTS", "LAYER_KNOTS"]

#: Largest ``max_s |mean(Y_s) − mean(X_s)| / RMS(X)`` of data the kind fits (mass is conserved).
MASS_TOLERANCE = 1e-2
#: Deepest network the kind builds (the CFL bound of finer grids or larger viscosities asks more).
MAX_DEPTH = 8192
#: Share weights of one recipe (:meth:`LayerKind.weight`): ``"nonlinear"`` when the data's transport
#: depends on the amplitude (``K̂ Z ≥ Δ``, which only this kind represents), ``"linear"`` otherwise.
FLUX_WEIGHTS = {"nonlinear": 12.0, "linear": 2.0}
#: Knots of the time-dependent family: ``c, a, D`` piecewise linear in the layer index (the
#: per-layer values of a 2000-layer fit are smooth, and one value per layer would be 6000 parameters)
LAYER_KNOTS = 32
_NAMES = ("c", "a", "D")


class FluxLaw(LayerKind):
    """Godunov's flux of ``c z²/2 + a z`` with diffusion ``D`` (module docstring)."""
    name = "flux"
    dims = (1,)
    families = ("homogeneous", "time-dependent")
    #: three parameters need few pairs, and a deep layer costs per pair; the per-layer family fits
    #: 3L values and trains on every pair (on 64 its validation error rose as the training loss fell)
    max_samples = 64
    #: the data start is close (frame estimate); one random start besides it
    max_starts = 2
    #: the nRMSE itself: on burgers-nu0.01 (n = 256) the mean squared error's optimum had validation
    #: nRMSE 5.9e-2 (it weights the large samples), the relative loss's 2.4e-2 (D = ν/π to 1 %)
    loss = "relative"

    def samples(self, recipe):
        return self.max_samples if recipe.family == "homogeneous" else None

    # ------------------------------------------------------------------ the data
    def prepare(self, problem) -> "FluxLaw":
        grid, (h,) = problem.grid, problem.spacing
        if len(grid) != 1:
            raise NotApplicable("flux: 1-D grids only")
        if problem.boundary != "periodic":
            raise NotApplicable("flux: needs a periodic grid (its speed estimate is spectral)")
        if grid[0] < 4:
            raise NotApplicable(f"flux: needs at least 4 sites, the grid has {grid[0]}")
        from .starts import frame_estimate
        X, Y = problem.x_train, problem.y_train
        rms = float(np.sqrt(np.mean(X ** 2)))
        drift = float(np.max(np.abs(Y.mean(axis=1) - X.mean(axis=1)))) / max(rms, 1e-300)
        if drift > MASS_TOLERANCE:
            raise NotApplicable(f"flux: the data do not conserve mass (means change by up to {drift:.2g} of "
                                f"the RMS, tolerance {MASS_TOLERANCE:g})")
        est = frame_estimate(X, Y, h)
        Z = max(float(np.abs(X).max()), 1e-300)
        scale = est.flux_time * Z + abs(est.shift) + h
        k_hi = 1.3 * est.flux_time + 0.3 * scale / Z
        worst = k_hi * Z + abs(est.shift) + 0.3 * scale
        need = math.ceil(worst / h + 2 * est.diffusion / h ** 2)
        if need > MAX_DEPTH:
            raise NotApplicable(f"flux: the CFL bound needs {need} layers (max|u| {Z:.3g}, flux time "
                                f"{est.flux_time:.3g}, viscosity {est.diffusion:.3g}), more than {MAX_DEPTH}")
        return self.specialise(estimate=est, amplitude=Z, state_range=(float(X.min()), float(X.max())),
                               scale=scale, k_hi=k_hi, worst=worst, least_depth=max(need, 1), spacing=h)

    def _prepared(self):
        if not hasattr(self, "estimate"):
            raise ValueError("the flux kind needs the data: use the kind that prepare(problem) returns")

    def depth(self, space) -> int:
        """The least of ``space.depths`` that keeps the CFL bound, or the bound itself."""
        self._prepared()
        deep = [L for L in space.depths if L >= self.least_depth]
        return min(deep) if deep else self.least_depth

    def recipes(self, space, family):
        """One recipe: width 3, :meth:`depth`, identity, ``ω = 1`` (none before :meth:`prepare`: the
        depth comes from the data)."""
        if "identity" not in space.activations or not hasattr(self, "estimate"):
            return []
        return [Recipe(self.name, family, 3, self.depth(space), "identity", 1.0)]

    def weight(self, family):
        if not hasattr(self, "estimate"):
            return FLUX_WEIGHTS["linear"]
        nonlinear = self.estimate.flux_time * self.amplitude >= self.spacing
        return FLUX_WEIGHTS["nonlinear" if nonlinear else "linear"] * (1.0 if family == "homogeneous" else 0.5)

    # ------------------------------------------------------------------ layer and network
    def layer(self, recipe, dim):
        from ..conservation import conservation_law
        q = sp.Symbol("q")
        z = sp.Function("z")(q)
        c, a, D = sp.Symbol("c", positive=True), sp.Symbol("a"), sp.Symbol("D")
        family = "time-dependent" if recipe.family == "time-dependent" else "homogeneous"
        return conservation_law(c * z ** 2 / 2 + a * z, z, diffusion=D, params={c: family, a: family, D: family},
                                numerical_flux="godunov", name=f"est_flux_{family[:3]}")

    def compile(self, layer, recipe, grid, spacing, boundary, backend, dtype):
        # one thread: each layer is one pass over a few thousand values, and threads synchronise per layer
        backend = _cpu_kernel(backend)
        net = layer.compile(n=grid[0], spacing=spacing[0], layers=recipe.depth, omega=1.0, boundary=boundary,
                            backend=backend, dtype=dtype, threads=1)
        if recipe.family == "time-dependent":
            from .layerwise import PerLayer
            return PerLayer(net, _NAMES, knots=min(LAYER_KNOTS, recipe.depth))
        return net

    def bounds(self, recipe, dim):
        """The box of the module docstring, per layer."""
        self._prepared()
        L, h, e = recipe.depth, self.spacing, self.estimate
        n_hi = max(h * h / 2 * (L - self.worst / h), 0.0)
        return {"c": (1e-6 * self.k_hi / L, self.k_hi / L),
                "a": ((e.shift - 0.3 * self.scale) / L, (e.shift + 0.3 * self.scale) / L),
                "D": (0.0, n_hi / L)}

    def _clip(self, theta, recipe):
        for k, (lo, hi) in self.bounds(recipe, 1).items():
            theta[k] = np.clip(theta[k], lo, hi).astype(theta[k].dtype)
        return theta

    def _start(self, net, recipe, K, A, N):
        L = recipe.depth
        theta = {k: np.full(net.shapes[k], v / L, net.dtype) for k, v in zip(_NAMES, (K, A, N))}
        return self._clip(theta, recipe)

    def data_start(self, net, recipe, spacing, estimate):
        """``(K̂, Â, N̂/2)/L`` (the frame estimate's viscosity is an upper estimate)."""
        self._prepared()
        e = self.estimate
        return self._start(net, recipe, max(e.flux_time, 1e-6 * self.k_hi), e.shift, e.diffusion / 2)

    def random_starts(self, net, recipe, spacing, count, rng):
        """``K = K̂·U(0.8, 1.2)`` (or ``U(0, 1)·K_hi`` when ``K̂ = 0``), ``A = Â + 0.1 s·U(−1, 1)``,
        ``N = N̂·U(0, 1)``, inside the box."""
        self._prepared()
        e, out = self.estimate, []
        for _ in range(count):
            K = e.flux_time * rng.uniform(0.8, 1.2) if e.flux_time > 0 else self.k_hi * rng.uniform(0, 1)
            out.append(self._start(net, recipe, max(K, 1e-6 * self.k_hi),
                                   e.shift + 0.1 * self.scale * rng.uniform(-1, 1), e.diffusion * rng.uniform(0, 1)))
        return out

    def rescale_depth(self, name, value, ratio, omega):
        return value * ratio                      # c, a, D are per-layer shares of the totals

    def reach(self, recipe):
        return 1

    def gain(self, layer, net, theta, recipe, spacing):
        """1 when the CFL certificate holds on the data's state range (a monotone conservative
        layer: max|z| and TV never grow; per-layer knots: the CFL number is convex in ``c, a, D``,
        so the knots bound the layers between them), else ∞."""
        cert = layer.certificate({k: np.asarray(v, np.float64) for k, v in theta.items()}, spacing[0],
                                 state_range=getattr(self, "state_range", (-1.0, 1.0)), omega=1.0)
        return float(cert.max_gain), f"CFL {float(cert.cfl):.3g} ({cert.gain_norm})"

    def physics(self, layer, theta, spacing, recipe=None):
        spacing = spacing[0] if isinstance(spacing, (tuple, list)) else spacing
        layers = recipe.depth if recipe is not None else None
        return FluxReport(layer, {k: np.asarray(v, np.float64) for k, v in theta.items()}, float(spacing), layers,
                          getattr(self, "state_range", None))


def _cpu_kernel(backend: str) -> str:
    """``"auto"`` on a machine without a GPU: the generated numba kernel when numba is installed
    (thousands of layers: measured 11x the NumPy backend's speed on Burgers, n = 256, L = 2150,
    64 pairs, loaded 2-core machine; compiled once and cached on disk); else ``backend``."""
    if backend != "auto":
        return backend
    import importlib.util

    from ..runtime.backends import get_backend
    if importlib.util.find_spec("numba") is None:
        return backend
    return "numba" if get_backend("auto").name == "numpy" else backend


@dataclass
class FluxReport:
    """What a fitted flux layer means: per layer ``c, a, D`` (a value, or one per layer) and, with
    the depth ``layers``, the totals ``K = Σc`` (flux time), ``A = Σa`` (shift), ``N = ΣD`` (``νT``);
    the CFL certificate on the data's state range. ``str()`` prints them."""
    layer: object
    theta: dict
    spacing: float
    layers: int | None = None
    state_range: tuple | None = None

    def per_layer(self, name: str) -> np.ndarray:
        """The value of ``name`` in each layer: one value, or the knots interpolated over the layers."""
        v = np.asarray(self.theta[name], np.float64)
        if self.layers is None or v.ndim == 0:
            return v if self.layers is None else np.full(self.layers, float(v))
        if v.shape[0] == self.layers:
            return v
        from ..runtime.multilevel import interpolation
        return interpolation(self.layers, v.shape[0], False) @ v

    @property
    def totals(self) -> dict | None:
        """``{"K": Σc, "A": Σa, "N": ΣD}`` over the layers (None without the depth)."""
        if self.layers is None:
            return None
        return {T: float(np.sum(self.per_layer(k))) for T, k in zip(("K", "A", "N"), _NAMES)}

    def certificate(self):
        rng = self.state_range or (-1.0, 1.0)
        return self.layer.certificate(self.theta, self.spacing, state_range=rng, omega=1.0)

    def rows(self) -> list:
        """``[{order, process, meaning, coefficient, value, min, mean, max, total}]`` per parameter (JSON-ready)."""
        meaning = {"c": ("nonlinear transport", "c z^2/2 in the flux: time step x k of z_t + (k z^2/2)_q"),
                   "a": ("advection", "a z in the flux: time step x velocity"),
                   "D": ("diffusion", "D (z+ - 2z + z-)/h^2: time step x viscosity")}
        totals = self.totals
        out = []
        for order, (k, T) in enumerate(zip(_NAMES, ("K", "A", "N"))):
            v = self.per_layer(k)
            v = v if v.ndim == 0 or np.ptp(v) > 0 else np.asarray(v[0])
            process, text = meaning[k]
            out.append({"order": order, "process": process, "meaning": text, "coefficient": k,
                        "value": float(v) if v.ndim == 0 else None, "min": float(v.min()), "mean": float(v.mean()),
                        "max": float(v.max()), "total": None if totals is None else totals[T]})
        return out

    def __str__(self):
        lines = [str(self.layer.explain()), "",
                 "param  process              per layer (value, or min / mean / max)   total over the layers"]
        for r in self.rows():
            value = (f"{r['value']:.6g}" if r["value"] is not None
                     else f"{r['min']:.4g} / {r['mean']:.4g} / {r['max']:.4g}")
            total = "-" if r["total"] is None else f"{r['total']:.6g}"
            lines.append(f"{r['coefficient']:<6} {r['process']:<20} {value:<40} {total}")
        try:
            lines.append(str(self.certificate()))
        except (ValueError, TypeError, KeyError) as exc:     # a report line must not hide the fitted model
            lines.append(f"certificate: not available ({exc})")
        return "\n".join(lines)


register(FluxLaw())
