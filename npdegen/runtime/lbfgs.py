"""L-BFGS on the flattened parameters: ``scipy.optimize.minimize(method="L-BFGS-B")``.

The trained entries of ``theta`` are packed into one float64 vector (``tied`` names are packed as
one value broadcast to every site and layer: the homogeneous restriction of a heterogeneous or
time-dependent parameter). ``bounds`` (``{"D": (0, None)}``) become L-BFGS-B's box constraints.

A trial point whose forward pass overflows (``NonFiniteError``) is not an error: the line search
gets a loss far above every loss seen (``OVERFLOW_FACTOR`` times the largest, plus one) and the
gradient of the last finite point, so it shrinks the step and carries on. (Returning ``inf`` makes
the line search of some SciPy versions stop with ``ABNORMAL_TERMINATION_IN_LNSRCH``.)
Needs SciPy (``pip install npdegen[lbfgs]``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .data import loss_and_grad
from .network import NonFiniteError

__all__ = ["Flat", "LBFGSResult", "minimize", "OVERFLOW_FACTOR"]

OVERFLOW_FACTOR = 1e3


class Flat:
    """Packing of ``theta[keys]`` into a vector and back (``tied`` keys as one shared value)."""

    def __init__(self, net, theta: dict, keys, tied=()):
        self.net, self.base, self.keys, self.tied = net, theta, list(keys), set(tied)
        self.sizes = [1 if k in self.tied else int(np.size(theta[k])) for k in self.keys]
        self.scale = np.ones(sum(self.sizes))     # optimiser variable = value / scale

    def rescale(self, gradient):
        """Per-parameter scales that give every name's gradient the same root mean square (a
        diagonal preconditioner: the reaction's gradient can be 1e4 times the diffusion's)."""
        at, scale = 0, np.ones_like(self.scale)
        for size in self.sizes:
            rms = float(np.sqrt(np.mean(np.square(gradient[at:at + size]))))
            scale[at:at + size] = 1.0 / rms if rms > 0 and np.isfinite(rms) else 1.0
            at += size
        self.scale = scale / np.exp(np.mean(np.log(scale)))

    def pack(self, theta) -> np.ndarray:
        parts = [np.atleast_1d(np.mean(np.asarray(theta[k], np.float64))) if k in self.tied
                 else np.asarray(theta[k], np.float64).ravel() for k in self.keys]
        return (np.concatenate(parts) if parts else np.zeros(0)) / self.scale

    def unpack(self, v) -> dict:
        v = np.asarray(v) * self.scale
        theta, at = dict(self.base), 0
        for k, size in zip(self.keys, self.sizes):
            shape = np.shape(self.base[k])
            part = v[at:at + size]
            theta[k] = (np.full(shape, part[0]) if k in self.tied else part.reshape(shape)).astype(self.net.dtype)
            at += size
        return theta

    def gradient(self, grads) -> np.ndarray:
        parts = [np.atleast_1d(np.sum(grads[k], dtype=np.float64)) if k in self.tied
                 else np.asarray(grads[k], np.float64).ravel() for k in self.keys]
        return (np.concatenate(parts) if parts else np.zeros(0)) * self.scale

    def bounds(self, bounds: dict | None):
        if not bounds:
            return None
        unknown = set(bounds) - set(self.base)
        if unknown:
            raise ValueError(f"bounds: unknown parameter(s) {sorted(unknown)}")
        out = []
        for k, size in zip(self.keys, self.sizes):
            lo, hi = bounds.get(k, (None, None))
            out += [(lo, hi)] * size
        s = self.scale
        return [(None if lo is None else lo / s[i], None if hi is None else hi / s[i]) for i, (lo, hi) in enumerate(out)]


@dataclass
class LBFGSResult:
    theta: dict
    loss: list            # one value per iteration (the first: the start)
    iterations: int
    evaluations: int
    overflows: int        # trial points whose forward pass overflowed
    message: str
    success: bool


def minimize(net, x, y, theta: dict, keys, steps: int, loss: str = "sum", bounds=None, tied=(),
             on_iteration=None, memory: int = 20, ftol: float = 1e-15, gtol: float = 1e-12,
             max_evaluations: int | None = None, precondition: bool = True) -> LBFGSResult:
    """Minimise the loss ``loss`` over ``theta[keys]`` with at most ``steps`` L-BFGS iterations.

    ``on_iteration(iteration, loss, theta)`` runs after every iteration; returning True stops.
    ``memory``: the number of correction pairs; ``ftol``/``gtol``: SciPy's stopping tolerances
    (tight by default: the iteration budget usually decides). ``precondition``: optimise
    ``θ_k / s_k`` with per-name scales ``s_k`` that equalise the gradients' size at the start.
    """
    try:
        from scipy.optimize import minimize as scipy_minimize
    except ImportError:  # pragma: no cover - scipy is an optional dependency
        raise ImportError("optimizer='lbfgs' needs SciPy: pip install npdegen[lbfgs]") from None
    flat = Flat(net, theta, keys, tied)
    if precondition and len(flat.keys) > 1:
        flat.rescale(flat.gradient(loss_and_grad(net, x, y, theta, loss)[1]))
    v0 = flat.pack(theta)
    box = flat.bounds(bounds)
    if box is not None:                          # start inside the box
        lo = np.array([-np.inf if b[0] is None else b[0] for b in box])
        hi = np.array([np.inf if b[1] is None else b[1] for b in box])
        v0 = np.clip(v0, lo, hi)
    state = {"worst": 0.0, "grad": None, "overflows": 0, "evals": 0, "seen": {}}

    def fun(v):
        state["evals"] += 1
        try:
            value, grads = loss_and_grad(net, x, y, flat.unpack(v), loss)
            if not math.isfinite(value):
                raise NonFiniteError("loss")
        except (NonFiniteError, FloatingPointError):
            if state["grad"] is None:
                raise
            state["overflows"] += 1
            return OVERFLOW_FACTOR * state["worst"] + 1.0, state["grad"]
        except ValueError as exc:               # a trial point beyond the dtype's range
            if state["grad"] is None or "overflows" not in str(exc):
                raise
            state["overflows"] += 1
            return OVERFLOW_FACTOR * state["worst"] + 1.0, state["grad"]
        g = flat.gradient(grads)
        state["worst"] = max(state["worst"], abs(value))
        state["grad"] = g
        state["seen"] = {v.tobytes(): value}     # the iterate is the last point evaluated
        return value, g

    history = [fun(v0)[0]]
    state["evals"] = 0
    count = {"it": 0}

    def callback(xk):
        count["it"] += 1
        value = state["seen"].get(np.asarray(xk).tobytes())
        if value is None:
            value = fun(xk)[0]
        history.append(value)
        if on_iteration is not None and on_iteration(count["it"] - 1, value, flat.unpack(xk)) is True:
            raise StopIteration

    options = {"maxiter": steps, "maxcor": memory, "ftol": ftol, "gtol": gtol,
               "maxfun": max_evaluations or max(15000, 20 * steps)}
    if steps == 0:
        return LBFGSResult(flat.unpack(v0), history, 0, 1, 0, "no iterations", True)
    with np.errstate(over="ignore", invalid="ignore"):
        res = scipy_minimize(fun, v0, jac=True, method="L-BFGS-B", bounds=box, callback=callback, options=options)
    return LBFGSResult(flat.unpack(res.x), history, int(res.nit), state["evals"] + 1, state["overflows"],
                       str(res.message), bool(res.success) or count["it"] >= steps)
