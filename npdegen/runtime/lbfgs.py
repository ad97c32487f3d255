"""L-BFGS on the flattened parameters: one run of ``scipy.optimize.minimize(method="L-BFGS-B")``.

:class:`Flat` maps the trained entries of ``theta`` to one float64 vector ``v`` and back:

    θ_k = base_k + P_k (s ⊙ v)_k

with ``P_k`` the coarse-to-fine interpolation of :mod:`npdegen.runtime.multilevel` (the identity
at full resolution; one knot per axis for a ``tied`` name: the homogeneous restriction, with
``base = 0``) and ``s`` a diagonal scaling. :func:`gauss_newton_scale` sets

    s_j = ρ / √(H_jj + λ_k),    H = Pᵀ Jᵀ W J P,    ρ² = rᵀ W r,    λ_k = 0.1 · mean_{j ∈ k} H_jj

with ``J`` the Jacobian of the outputs, ``r`` the residual and ``W`` the loss's weight (the loss is
``½ rᵀ W r``, locally for ``"relative"``): ``H`` is the Gauss–Newton matrix in the coarse
variables, its diagonal estimated with Rademacher probes ``ξ`` as ``E[(Pᵀ Jᵀ W^{1/2} ξ)_j²]``
(one forward and ``probes`` adjoint sweeps). In these variables a unit step moves the outputs by
about the residual's size, which is what L-BFGS's first step (unit length) then does, and the
per-site spread of curvature is gone (at n = 256, L = 128 the diffusion's varies 3000× over the
sites, the reaction's is 10⁴× the diffusion's). The damping ``λ`` (Levenberg–Marquardt, per name)
keeps a site that little signal reaches from moving more than ~3× as far as a site of mean
curvature: undamped, such a site moved 10³× as far, straight into the scheme's unstable region
(measured at that size: with ``λ`` at 10⁻³ of the mean, 2 of 6 data sets failed; at 0.1, none of 8).

``bounds`` (``{"D": (0, None)}``) become L-BFGS-B's box on ``v``: at full resolution the bounds
themselves; at a coarser level, from a start ``θ0 = base + P c0`` inside them, knot ``j`` may move
by ``δ_j ∈ [lo − min θ0, hi − max θ0]`` (over the sites it touches): the rows of ``P`` are convex
weights, so every site of ``θ0 + P δ`` stays inside ``[lo, hi]``, and the box holds the start.

A trial point ``v`` whose forward pass overflows (``NonFiniteError``), or whose loss is above
``OVERFLOW_FACTOR`` times the largest finite loss of the run (an unstable scheme's 10²⁰⁰), is not an
error: the line search gets a wall, a loss ``F`` far above every loss seen (``OVERFLOW_FACTOR`` times the largest,
plus one) with the gradient ``2 (F − f_ok)(v − v_ok)/‖v − v_ok‖²`` of the quadratic rising from the
last finite point ``(v_ok, f_ok)`` to ``F``: uphill along the search line, so its interpolation
cuts the step by orders of magnitude and carries on. (Returning ``inf`` makes the line search of
some SciPy versions stop with ``ABNORMAL_TERMINATION_IN_LNSRCH``; the last finite gradient, used
before, points downhill there and made the line search give up after 20 trials.)
Needs SciPy (``pip install npdegen[lbfgs]``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .data import loss_and_grad
from .multilevel import interpolation, restriction
from .network import NonFiniteError

__all__ = ["Flat", "Run", "run", "gauss_newton_scale", "OVERFLOW_FACTOR"]

OVERFLOW_FACTOR = 1e3


def _apply(a, mats, transpose=False):
    for axis, P in enumerate(mats):
        if P is not None:
            a = np.moveaxis(np.tensordot(P.T if transpose else P, a, axes=(1, axis)), 0, axis)
    return a


def _restrict(a, mats):
    """The least-squares coarse values ``c`` of ``a`` (per axis: the Kronecker factors' pseudo-inverses)."""
    for axis, R in enumerate(mats):
        if R is not None:
            a = np.moveaxis(np.tensordot(R, a, axes=(1, axis)), 0, axis)
    return a


def _over_support(a, mats, reduce):
    """``out[j] = reduce over the sites i with P[i, j] > 0 of a[i]``, axis by axis."""
    for axis, P in enumerate(mats):
        if P is not None:
            parts = [reduce.reduce(np.compress(P[:, j] > 0, a, axis=axis), axis=axis) for j in range(P.shape[1])]
            a = np.stack(parts, axis=axis)
    return a


class Flat:
    """``theta[keys]`` ↔ a float64 vector (module docstring). ``knots[key]``: knots per axis
    (default: full resolution); ``periodic[key]``: one bool per axis (default: none periodic)."""

    def __init__(self, net, theta: dict, keys, tied=(), knots: dict | None = None, periodic: dict | None = None):
        self.net, self.theta, self.keys, self.tied = net, theta, list(keys), set(tied)
        knots, periodic = knots or {}, periodic or {}
        self.maps, self.bases, parts, self.shapes = {}, {}, [], []
        for k in self.keys:
            value = np.asarray(theta[k], np.float64)
            shape = value.shape
            m = tuple(1 for _ in shape) if k in self.tied else tuple(knots.get(k, shape))
            axes = periodic.get(k) or (False,) * len(shape)
            self.maps[k] = [interpolation(int(n), int(mm), bool(p)) for n, mm, p in zip(shape, m, axes)]
            c = _restrict(value, [restriction(int(n), int(mm), bool(p)) for n, mm, p in zip(shape, m, axes)])
            if k in self.tied or all(P is None for P in self.maps[k]):
                self.bases[k] = None                 # the homogeneous restriction / the identity
            else:
                self.bases[k] = value - _apply(c, self.maps[k])
            parts.append(np.ravel(c))
            self.shapes.append(c.shape)
        self.sizes = [p.size for p in parts]
        self.start = np.concatenate(parts) if parts else np.zeros(0)
        self.scale = np.ones(self.start.size)

    def pack(self) -> np.ndarray:
        """The start in the optimiser's (scaled, coarse) variables."""
        return self.start / self.scale

    def coarse(self, v, scaled=True) -> list:
        v = np.asarray(v, np.float64) * (self.scale if scaled else 1.0)
        out, at = [], 0
        for size, shape in zip(self.sizes, self.shapes):
            out.append(v[at:at + size].reshape(shape))
            at += size
        return out

    def unpack(self, v) -> dict:
        theta = dict(self.theta)
        for k, c in zip(self.keys, self.coarse(v)):
            value = _apply(c, self.maps[k])
            if self.bases[k] is not None:
                value = self.bases[k] + value
            theta[k] = np.broadcast_to(value, np.shape(self.theta[k])).astype(self.net.dtype)
        return theta

    def gradient(self, grads, scaled=True) -> np.ndarray:
        """``s ⊙ Pᵀ g``: the gradient in the optimiser's variables."""
        parts = [np.ravel(_apply(np.asarray(grads[k], np.float64), self.maps[k], transpose=True)) for k in self.keys]
        g = np.concatenate(parts) if parts else np.zeros(0)
        return g * self.scale if scaled else g

    def bounds(self, bounds: dict | None):
        """L-BFGS-B's box on the scaled variables, or None."""
        if not bounds:
            return None
        out = []
        for k, shape, c0 in zip(self.keys, self.shapes, self.coarse(self.start, scaled=False)):
            lo, hi = bounds.get(k, (None, None))
            lo_c = np.full(shape, -np.inf if lo is None else float(lo))
            hi_c = np.full(shape, np.inf if hi is None else float(hi))
            if self.bases[k] is not None:        # moves c0 + δ with every site of θ0 + Pδ inside
                value = np.asarray(self.theta[k], np.float64)
                lo_c = c0 + np.minimum(lo_c - _over_support(value, self.maps[k], np.minimum), 0.0)
                hi_c = c0 + np.maximum(hi_c - _over_support(value, self.maps[k], np.maximum), 0.0)
            out.append(np.stack([lo_c.ravel(), hi_c.ravel()], axis=1))
        box = np.concatenate(out) / self.scale[:, None]
        return [(None if np.isinf(lo) else lo, None if np.isinf(hi) else hi) for lo, hi in box]


#: Levenberg–Marquardt damping of the diagonal, relative to each name's mean curvature: a site
#: whose curvature is tiny (little signal passes there) moves at most ~3x further than a typical one.
DAMPING = 0.1


def gauss_newton_scale(flat: Flat, x, y, theta, loss: str = "sum", probes: int = 8, seed=0) -> np.ndarray:
    """Scales ``s_j = ρ/√(H_jj + λ)`` (module docstring); sets and returns ``flat.scale``."""
    net = flat.net
    tape = net.forward(x, theta, keep=True)
    out = np.asarray(tape.output, np.float64)
    shape = out.shape
    r = (out - np.reshape(y, shape)).reshape(shape[0], -1)
    if loss == "sum":
        w = np.ones(shape[0])
    elif loss == "mean":
        w = np.full(shape[0], 2.0 / r.size)
    else:                                   # relative: Σ_s |r_s| / (B |y_s|), locally ½ rᵀ W r
        ny = np.sqrt(np.sum(np.square(np.reshape(y, r.shape), dtype=np.float64), axis=1))
        nr = np.sqrt(np.sum(np.square(r), axis=1))
        w = 1.0 / (shape[0] * ny * np.where(nr > 0, nr, 1.0))
    rho = math.sqrt(float(np.sum(w[:, None] * np.square(r))))
    root = np.sqrt(w).reshape((-1,) + (1,) * (len(shape) - 1))
    rng = np.random.default_rng(seed)
    total = np.zeros(flat.start.size)
    for p in range(probes):
        if p and getattr(net, "checkpoint", None):       # a checkpointed tape replays once
            tape = net.forward(x, theta, keep=True)
        xi = ((rng.integers(0, 2, size=shape) * 2.0 - 1.0) * root).astype(net.dtype)
        _, grads = net.backward(tape, xi)
        total += np.square(flat.gradient(grads, scaled=False))
    diag = total / probes
    scale, at = np.ones_like(diag), 0
    for size in flat.sizes:
        part = diag[at:at + size]
        mean = float(np.mean(part)) if np.all(np.isfinite(part)) else 0.0
        if mean > 0 and rho > 0:
            scale[at:at + size] = rho / np.sqrt(part + DAMPING * mean)
        at += size
    flat.scale = scale
    return scale


class _Stop(Exception):
    """A callback asked to stop."""


@dataclass
class Run:
    """One L-BFGS-B run: ``theta`` at its end, ``loss`` per iteration (not the start),
    ``start_loss``, ``evaluations``, ``overflows`` (trial points answered by the wall: non-finite,
    or above ``OVERFLOW_FACTOR`` times the largest finite loss), SciPy's ``message``; ``converged``: SciPy
    stopped before ``steps`` on its own tests; ``stopped``: a callback stopped it."""
    theta: dict
    start_loss: float
    loss: list
    evaluations: int
    overflows: int
    message: str
    converged: bool
    stopped: bool

    @property
    def iterations(self) -> int:
        return len(self.loss)


def run(flat: Flat, x, y, steps: int, loss: str = "sum", bounds=None, on_iteration=None, memory: int = 20,
        ftol: float = 1e-15, gtol: float = 1e-12, max_evaluations: int | None = None) -> Run:
    """At most ``steps`` L-BFGS-B iterations over ``flat``'s variables from ``flat.pack()``.

    ``on_iteration(loss, theta)`` runs after every iteration; returning True stops. ``memory``:
    the number of correction pairs; ``ftol``/``gtol``: SciPy's stopping tolerances (tight by
    default: the iteration budget usually decides). Raises ``NonFiniteError`` if the start overflows.
    """
    try:
        from scipy.optimize import minimize as scipy_minimize
    except ImportError:  # pragma: no cover - scipy is an optional dependency
        raise ImportError("optimizer='lbfgs' needs SciPy: pip install npdegen[lbfgs]") from None
    net = flat.net
    v0 = flat.pack()
    box = flat.bounds(bounds)
    if box is not None:                          # start inside the box
        lo = np.array([-np.inf if b[0] is None else b[0] for b in box])
        hi = np.array([np.inf if b[1] is None else b[1] for b in box])
        v0 = np.clip(v0, lo, hi)
    state = {"worst": 0.0, "ok": None, "overflows": 0, "evals": 0, "last": None}

    def wall(v):
        """A trial point that overflows: the value ``F`` of a wall and the gradient of the quadratic
        that rises from the last finite point to ``F`` there (uphill along the search line)."""
        state["overflows"] += 1
        v_ok, f_ok = state["ok"]
        high = OVERFLOW_FACTOR * state["worst"] + 1.0
        d = np.asarray(v, np.float64) - v_ok
        dd = float(d @ d)
        return high, (2.0 * (high - f_ok) / dd) * d if dd > 0 else np.zeros_like(d)

    def fun(v):
        key = np.asarray(v).tobytes()
        if state["last"] is not None and state["last"][0] == key:
            return state["last"][1], state["last"][2]
        state["evals"] += 1
        try:
            value, grads = loss_and_grad(net, x, y, flat.unpack(v), loss)
            if not math.isfinite(value):
                raise NonFiniteError("loss")
        except (NonFiniteError, FloatingPointError, ValueError) as exc:
            overflow = not isinstance(exc, ValueError) or "overflows" in str(exc)   # beyond the dtype's range
            if state["ok"] is None or not overflow:
                raise
            return wall(v)
        if state["ok"] is not None and value > OVERFLOW_FACTOR * state["worst"] + 1.0:
            return wall(v)                       # an unstable scheme's astronomically large loss: the same wall
        g = flat.gradient(grads)
        state["worst"] = max(state["worst"], abs(value))
        state["ok"] = (np.array(v, np.float64), value)
        state["last"] = (key, value, g)          # the iterate is the last point evaluated
        return value, g

    start = fun(v0)[0]
    losses, at = [], {"x": v0}

    def callback(xk):
        xk = np.asarray(xk)
        value = fun(xk)[0]
        losses.append(value)
        at["x"] = xk.copy()
        if on_iteration is not None and on_iteration(value, flat.unpack(xk)) is True:
            raise _Stop

    if steps == 0:
        return Run(flat.unpack(v0), start, [], state["evals"], 0, "no iterations", False, False)
    options = {"maxiter": steps, "maxcor": memory, "ftol": ftol, "gtol": gtol,
               "maxfun": max_evaluations or max(15000, 20 * steps)}
    stopped = False
    with np.errstate(over="ignore", invalid="ignore"):
        try:
            res = scipy_minimize(fun, v0, jac=True, method="L-BFGS-B", bounds=box, callback=callback,
                                 options=options)
            end, message = at["x"], str(res.message)         # res.x: the last iterate
        except _Stop:
            end, message, stopped = at["x"], "stopped by a callback", True
    converged = not stopped and len(losses) < steps and "TOTAL NO. OF F" not in message.upper()
    return Run(flat.unpack(end), start, losses, state["evals"], state["overflows"], message, converged, stopped)
