r"""Markov-chain layers: a linear step whose rows are transition probabilities by construction.

.. math::
    Z_i = \sum_o p_o(i)\, z_{i+o}, \qquad p_o(i) = \frac{\exp ℓ_o(i)}{\sum_k \exp ℓ_k(i)},

with one logit ``ℓ_o`` per offset (a parameter of any family). Every weight is positive and every
row sums to one whatever the logits, so the layer is the expectation step ``E[z(X_{t+1}) | X_t = i]``
of a Markov chain on the grid (Kushner–Dupuis): it obeys the maximum principle, and on a periodic
or mirror-Neumann grid it keeps constants (a zero-Dirichlet edge kills the walker: rows there lose
the weight that leaves the grid). Logits live on the log-probability scale (``ℓ ≤ 0`` after
:func:`kushner_logits`); ``exp`` overflows beyond ``ℓ ≈ 709`` (float64) or ``88`` (float32), which
the network reports as a :class:`~npdegen.runtime.network.NonFiniteError`.

The chain approximates the generator ``b·∇z + ½ a : ∇∇z`` with (per layer, grid spacing Δ)
drift ``b_k(i) = Σ_o o_k Δ_k p_o(i)`` and second moment ``a_{kl}(i) = Σ_o o_k o_l Δ_k Δ_l p_o(i)``
— the first two moments of the layer's stencil (:func:`npdegen.inspect.markov.chain_report`).
:func:`kushner_logits` gives the logits of Kushner's upwind chain for a drift ``b`` and diffusion
``a``, ``p(x, x ± Δ) = Δt (a/2 + Δ b^±)/Δ²``, ``p(x, x) = 1 − Δt (a + Δ|b|)/Δ²``, which is a chain
(all ``p ≥ 0``) exactly under the CFL bound ``Δt ≤ Δ²/(a + Δ|b|)`` (with ``a = 2D``:
``Δt ≤ Δ²/(2D + |U|Δ)``).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import sympy as sp

from .derive.discretise import access_name
from .layer import NeuralPDE
from .spec.spacing import spacing_symbols

__all__ = ["markov_chain", "kushner_logits", "logit_name"]


def logit_name(offset) -> str:
    """Theta key of the logit of ``offset``: ``l_m1``, ``l_0``, ``l_p1``, ``l_p1_m1``."""
    offset = (offset,) if isinstance(offset, int) else tuple(offset)
    return "l" + access_name(offset)[1:]


def _offsets(offsets, dim: int) -> list:
    if isinstance(offsets, (str, bytes)) or not isinstance(offsets, Sequence) or len(offsets) < 2:
        raise TypeError(f"offsets must be a sequence of at least two integers or offset tuples, got {offsets!r}")
    norm = []
    for o in offsets:
        o = (o,) if isinstance(o, int) and not isinstance(o, bool) else o
        if (not isinstance(o, tuple) or len(o) != dim
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in o)):
            raise ValueError(f"markov_chain: offset {o!r} must be {'an integer' if dim == 1 else f'a tuple of {dim} integers'}")
        norm.append(o)
    if len(set(norm)) != len(norm):
        raise ValueError(f"markov_chain: offsets must be distinct, got {list(offsets)!r}")
    return norm


def markov_chain(field=None, offsets=(-1, 0, 1), family: str = "heterogeneous", activation="identity",
                 name: str = "markov_chain") -> NeuralPDE:
    """A :class:`~npdegen.NeuralPDE` whose stencil is a transition row (module docstring).

    ``field`` defaults to ``z(q)``; ``offsets`` are ints (1-D) or tuples (N-D); each offset's logit
    is a parameter (:func:`logit_name`) of ``family``. Initialise with :func:`kushner_logits` to
    start from a drift–diffusion chain, or with zeros (the uniform row)."""
    if field is None:
        field = sp.Function("z")(sp.Symbol("q"))
    dim = len(getattr(field, "args", ()))
    norm = _offsets(offsets, dim)
    logits = {o: sp.Symbol(logit_name(o)) for o in norm}
    weights = {o: sp.exp(s) for o, s in logits.items()}
    total = sum(weights.values(), sp.Integer(0))
    deltas = spacing_symbols(field.args)
    transform = sum((w / total * field.func(*(c + k * d for c, k, d in zip(field.args, o, deltas)))
                     for o, w in weights.items()), sp.Integer(0))
    return NeuralPDE(transform, field, activation=activation, params={s: family for s in logits.values()}, name=name)


def kushner_logits(drift, diffusion, dt: float, spacing: float, offsets=(-1, 0, 1)) -> dict:
    r"""Logits of Kushner's upwind chain in 1-D (module docstring) for drift ``b`` and diffusion
    ``a`` (numbers or per-site arrays): ``{logit name: log p}``. Refuses a step beyond the CFL bound
    ``dt ≤ Δ²/(a + Δ|b|)``, where the self-transition would be negative."""
    if tuple(offsets) != (-1, 0, 1):
        raise ValueError("kushner_logits builds the 3-point chain on offsets (-1, 0, 1)")
    b, a = np.asarray(drift, float), np.asarray(diffusion, float)
    for what, v in (("dt", dt), ("spacing", spacing)):
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v <= 0:
            raise ValueError(f"{what} must be a positive finite number, got {v!r}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("drift and diffusion must be finite")
    if np.any(a < 0):
        raise ValueError("the diffusion a must be >= 0: the transition weights a/2 + Δ b± would be negative")
    h = float(spacing)
    up = dt * (a / 2 + h * np.maximum(b, 0)) / h ** 2
    down = dt * (a / 2 + h * np.maximum(-b, 0)) / h ** 2
    stay = 1 - up - down
    if np.any(stay < 0):
        worst = float(np.max(dt * (a + h * np.abs(b)) / h ** 2))
        raise ValueError(f"dt = {dt} exceeds the CFL bound dt <= Δ²/(a + Δ|b|) of the upwind chain "
                         f"(dt·(a + Δ|b|)/Δ² = {worst:.4g} > 1): the weights would not be a Markov chain")
    with np.errstate(divide="ignore"):
        out = {logit_name(-1): np.log(down), logit_name(0): np.log(stay), logit_name(1): np.log(up)}
    floor = -700.0                       # exp(-700) ~ 1e-304: a zero probability, finite logit
    return {k: np.maximum(v, floor) for k, v in out.items()}
