r"""Layer kind ``"transport"``: a 2-D field carried by the velocity it induces (vorticity form).

One layer (:class:`npdegen.integral.TransportNetwork`) is the integrating-factor Heun step of

.. math::
    z_t + c\,\mathbf u\cdot\nabla z = ν Δz, \qquad \mathbf u = \nabla^{\perp}(-Δ)^{-1} z,

with time step ``ω = 1/L``: ``L`` layers run the network time 1, so the fitted ``c`` is the data's
time ``T`` times their velocity scale (``c = 1`` for the vorticity equation over ``T = 1``) and ``ν``
is ``νT``. The velocity is a nonlocal (Biot–Savart) function of the state, which no stencil and no
fixed kernel reaches: this is the kind for 2-D incompressible flow. Two homogeneous parameters;
the step is second order in ``1/L`` (to the solver's map: :mod:`npdegen.integral.transport`), and
the parameters mean the same at every depth (a deeper recipe starts from the shallower fit as is).

**From the data** (:meth:`SelfTransport.prepare`, periodic 2-D grids): the layer keeps the mean of
each sample exactly, so pairs whose means change by more than :data:`MASS_TOLERANCE` of their RMS
are not in reach (the kind is skipped). **Start:** a scan of the training loss over
``c ∈ {0, ±2^k, k = −3 … 3}`` and ``ν ∈ ν̂·{1/4, 1, 4}`` (``ν̂`` the spectral estimate's diffusion, the
mean of its diagonal, or ``Δ²`` without one) on :data:`SCAN_PAIRS` pairs at the shallowest depth, then
``ν`` on a grid of ratio ``2^{1/4}`` (±1.5 octaves) about the best ``c = 0`` and the best ``c ≠ 0`` points;
random starts perturb the best point. The scan runs in :meth:`SelfTransport.prepare` (71 forward
passes of 8 pairs at ``L = 8``: 0.7 s on vorticity-2d, 32², float64, 2-core machine at load ~2) and
sets the recipes' share of the time (:meth:`SelfTransport.weight`): on vorticity-2d it finds
``c = 1``, ``ν = 2.06e-3`` and the data transported; on advection-diffusion-2d ``c = 0``, not
transported. **Bounds:** ``|c| ≤ 8 max(|c_0|, 1/8)``, ``ν ≥ 0``.
**Certificate:** linearised about the zero state the transport vanishes (it is quadratic) and the
layer is ``E = e^{ωνΔ}``, gain ``1`` (the mean) for ``ν ≥ 0``: certified for data that do not grow.
It says nothing about large states, where the explicit advection needs ``ωc|u|κ ≲ 1`` on the
modes that carry energy (a fit that breaks it shows in its validation error, or fails as non-finite).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .recipes import LayerKind, NotApplicable, Recipe, register

__all__ = ["SelfTransport", "TransportLayer", "TransportReport", "TRANSPORT_DEPTHS", "TRANSPORT_WEIGHT",
           "MASS_TOLERANCE", "SCAN_PAIRS", "TRANSPORTED"]

#: The depths the kind fits (a second-order step: on vorticity-2d, 32², the true parameters give
#: test nRMSE 1.0e-2, 3.8e-3, 2.8e-3 at L = 8, 16, 32; the last is the data's own resolution error).
TRANSPORT_DEPTHS = (8, 16, 32)
#: Share weight of one recipe (:meth:`LayerKind.weight`) when the scan finds the data transported by
#: their own velocity (:data:`TRANSPORTED`; else 1, the homogeneous stencils' weight): the only kind
#: whose velocity is a nonlocal function of the state, with three recipes.
TRANSPORT_WEIGHT = 8.0
#: Largest ``max_s |mean(Y_s) − mean(X_s)| / RMS(X)`` of data the kind fits (the layer keeps the mean).
MASS_TOLERANCE = 1e-2
#: Training pairs the start's scan evaluates.
SCAN_PAIRS = 8
#: The data count as transported by their own velocity (the kind's recipes get :data:`TRANSPORT_WEIGHT`)
#: when the scan's best ``c ≠ 0`` has at most this fraction of the best ``c = 0`` error.
TRANSPORTED = 0.5


@dataclass(frozen=True)
class TransportLayer:
    """The layer of a ``transport`` recipe (what :class:`TransportNetwork` runs); ``repr`` says what it is."""
    dim: int = 2

    def __repr__(self):
        return ("TransportLayer(z_t + c u.grad z = nu lap z, u = perp grad (-lap)^-1 z; "
                "integrating-factor Heun, spectral, periodic 2-D)")


class SelfTransport(LayerKind):
    """Self-transport by the induced velocity (module docstring)."""
    name = "transport"
    dims = (2,)
    families = ("homogeneous",)
    #: two parameters need few pairs, and each pair costs ~20 FFTs per layer and pass
    max_samples = 32
    max_starts = 2
    #: the nRMSE the search selects by
    loss = "relative"

    def prepare(self, problem) -> "SelfTransport":
        grid = problem.grid
        if len(grid) != 2:
            raise NotApplicable("transport: 2-D grids only")
        bounds = (problem.boundary,) * 2 if isinstance(problem.boundary, str) else tuple(problem.boundary)
        if any(b != "periodic" for b in bounds):
            raise NotApplicable("transport: needs a periodic grid (the velocity is a Fourier multiplier)")
        if min(grid) < 8:
            raise NotApplicable(f"transport: needs at least 8 sites per axis, the grid is {grid}")
        X, Y = problem.x_train, problem.y_train
        rms = float(np.sqrt(np.mean(X ** 2)))
        drift = float(np.max(np.abs(Y.mean(axis=(1, 2)) - X.mean(axis=(1, 2))))) / max(rms, 1e-300)
        if drift > MASS_TOLERANCE:
            raise NotApplicable(f"transport: the data do not keep their mean (it changes by up to {drift:.2g} of "
                                f"the RMS, tolerance {MASS_TOLERANCE:g}); the layer conserves it")
        e = problem.estimate
        nu_hat = float(np.mean(np.diag(e.diffusion))) if e is not None else float(np.prod(problem.spacing))
        keep = np.linspace(0, len(X) - 1, min(SCAN_PAIRS, len(X))).round().astype(int)
        out = self.specialise(spacing=tuple(problem.spacing), nu_hat=max(nu_hat, 0.0), _best=None,
                              scan=(np.ascontiguousarray(X[keep]), np.ascontiguousarray(Y[keep])))
        out._scan(grid)
        return out

    def recipes(self, space, family):
        """:data:`TRANSPORT_DEPTHS`, identity, ``ω = 1/L``, each warm-started from the shallower one."""
        if "identity" not in space.activations:
            return []
        out = []
        for i, L in enumerate(TRANSPORT_DEPTHS):
            warm = (Recipe(self.name, family, 0, TRANSPORT_DEPTHS[i - 1], "identity", 1.0 / TRANSPORT_DEPTHS[i - 1]
                           ).label,) if i else ()
            out.append(Recipe(self.name, family, 0, L, "identity", 1.0 / L, warm))
        return out

    def weight(self, family):
        """:data:`TRANSPORT_WEIGHT` when the scan says the data are carried by their own velocity, else 1."""
        return TRANSPORT_WEIGHT if getattr(self, "transported", False) else 1.0

    def layer(self, recipe, dim):
        if dim != 2:
            raise ValueError(f"the transport kind is 2-D only, got {dim}-D")
        return TransportLayer(dim)

    def compile(self, layer, recipe, grid, spacing, boundary, backend, dtype):
        from ..integral.transport import transport_network
        return transport_network(grid, spacing, layers=recipe.depth, omega=1.0 / recipe.depth, boundary=boundary,
                                 dtype=dtype)

    def _prepared(self):
        if not hasattr(self, "scan"):
            raise ValueError("the transport kind needs the data: use the kind that prepare(problem) returns")

    def _start(self, net, c, nu):
        return {"c": np.asarray(c, net.dtype), "nu": np.asarray(max(nu, 0.0), net.dtype)}

    def _scan(self, grid) -> None:
        """``(c_0, ν_0)``, the least mean relative error of the scan (module docstring), and
        :attr:`transported`: whether the best ``c ≠ 0`` beats ``c = 0`` by :data:`TRANSPORTED` or more."""
        from ..integral.transport import transport_network
        L = TRANSPORT_DEPTHS[0]
        probe = transport_network(grid, self.spacing, layers=L, omega=1.0 / L)
        X, Y = self.scan
        norms = np.linalg.norm(Y.reshape(len(Y), -1), axis=1)

        def error(c, nu):
            try:
                out = probe.forward(X, {"c": np.asarray(c), "nu": np.asarray(nu)})
            except (FloatingPointError, ValueError):           # unstable at this c: not a start
                return math.inf
            with np.errstate(over="ignore", invalid="ignore"):
                err = float(np.mean(np.linalg.norm((out - Y).reshape(len(Y), -1), axis=1) / np.maximum(norms, 1e-300)))
            return err if math.isfinite(err) else math.inf

        def refine(c, nu):                                       # ν on a grid of ratio 2^(1/4) about nu
            return min((error(c, v), c, v) for v in (nu * 2.0 ** (j / 4) for j in range(-6, 7)))
        coarse = [(error(c, nu), c, nu) for c in [0.0] + [s * 2.0 ** k for k in range(-3, 4) for s in (1, -1)]
                  for nu in (self.nu_hat / 4, self.nu_hat, 4 * self.nu_hat)]
        still = refine(*min(r for r in coarse if r[1] == 0.0)[1:])
        moving = min((r for r in coarse if r[1] != 0.0), default=(math.inf, 0.0, self.nu_hat))
        moving = refine(*moving[1:]) if math.isfinite(moving[0]) else moving
        best = min(still, moving)
        self._best = best[1:]
        self.transported = bool(moving[0] <= TRANSPORTED * still[0])

    def _scanned(self, net) -> tuple:
        self._prepared()
        return self._best

    def bounds(self, recipe, dim):
        self._prepared()
        c0 = abs(self._best[0]) if getattr(self, "_best", None) is not None else 1.0
        hi = 8 * max(c0, 0.125)
        return {"c": (-hi, hi), "nu": (0.0, None)}

    def data_start(self, net, recipe, spacing, estimate):
        self._prepared()
        return self._start(net, *self._scanned(net))

    def random_starts(self, net, recipe, spacing, count, rng):
        """The scan's best point, ``c`` times ``U(0.7, 1.3)`` and ``ν`` times ``e^{U(−1, 1)}``."""
        self._prepared()
        c0, nu0 = self._scanned(net)
        nu0 = nu0 if nu0 > 0 else float(np.prod(self.spacing))
        return [self._start(net, (c0 if c0 else 0.5) * rng.uniform(0.7, 1.3), nu0 * math.exp(rng.uniform(-1, 1)))
                for _ in range(count)]

    def rescale_depth(self, name, value, ratio, omega):
        return value                              # ω = 1/L: c and ν are per unit network time at every depth

    def reach(self, recipe):
        return math.inf

    def gain(self, layer, net, theta, recipe, spacing):
        """``max_κ e^{−ωνκ²}``: the layer linearised about the zero state (module docstring)."""
        nu = float(np.asarray(theta["nu"]))
        gain = float(np.exp(-net.omega * nu * net.spectrum.k2).max())
        return gain, "linearised about 0 (the transport is quadratic): the exact diffusion e^(omega nu lap)"

    def physics(self, layer, theta, spacing, recipe=None):
        return TransportReport(layer, {k: float(np.asarray(v)) for k, v in theta.items()},
                               recipe.depth if recipe is not None else None)


@dataclass
class TransportReport:
    """What a fitted transport layer means: over the network time ``Lω = 1``, ``c`` is the data's time
    times their velocity scale (``c·u`` with ``u = ∇⊥(−Δ)⁻¹z``) and ``nu`` is their viscosity times
    the time (``νT``). ``str()`` prints them."""
    layer: object
    theta: dict
    layers: int | None = None

    def rows(self) -> list:
        """``[{order, process, meaning, coefficient, value, min, mean, max, total}]`` (JSON-ready)."""
        meaning = {"c": ("self-transport", "c in z_t + c u.grad z, u = perp grad (-lap)^-1 z: T x velocity scale"),
                   "nu": ("diffusion", "nu in nu lap z: T x viscosity")}
        out = []
        for order, k in enumerate(("c", "nu")):
            v = self.theta[k]
            out.append({"order": order, "process": meaning[k][0], "meaning": meaning[k][1], "coefficient": k,
                        "value": v, "min": v, "mean": v, "max": v, "total": v})
        return out

    def __str__(self):
        lines = [repr(self.layer), f"{self.layers} layers of time step 1/{self.layers}" if self.layers else "",
                 "param  process          value (over the network time 1)   meaning"]
        for r in self.rows():
            lines.append(f"{r['coefficient']:<6} {r['process']:<16} {r['value']:<33.6g} {r['meaning']}")
        return "\n".join(filter(None, lines))


register(SelfTransport())
