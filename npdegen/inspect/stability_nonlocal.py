r"""Stability certificate of a nonlocal layer (:class:`npdegen.NonlocalPDE` and its compiled network).

One step is ``z ← (1 − ω) z + ω f(K z − b)`` with ``K`` the kernel sampled on the grid,
``(Kz)_i = Σ_o w_{i,o} z̃_{i+o}`` (:mod:`npdegen.integral.network`; ``z̃`` the boundary extension).
Linearised at slope ``s`` (``f′`` at an operating point) the step matrix is ``A = (1 − ω) I + ω s K``
and a perturbation grows by at most ``‖A‖₂`` per layer.

**One kernel on periodic axes: exact.** ``K`` is circulant; the grid mode ``e^{iκ·j}``
(``κ_a = 2π m_a / n_a``) is multiplied by the kernel's symbol
``λ(κ) = Σ_o w_o e^{iκ·o}``, the (conjugated) DFT of the weights wrapped onto the period. A circulant
is normal, so

.. math::  ‖A‖_2 = \max_κ |G(κ)|, \qquad G(κ) = 1 + ω\,g(κ), \quad g(κ) = s\,λ(κ) − 1

is the exact l2 gain per layer (the largest singular value of the dense layer matrix) and
``|G| ≤ 1`` on the grid's modes is necessary and sufficient (von Neumann). ``g`` is the stencil's
``g(θ)`` of :mod:`.vonneumann` with the offsets out to the kernel's reach. A Neumann axis (the
even extension, period ``2n``) with a kernel symmetric along it is exact too: the cosine modes
``κ = πm/n``, ``m < n``, diagonalise ``K`` (DCT-II) and ``A`` is symmetric.

**Everything else: a bound.** A kernel that varies with the site (heterogeneous parameters,
``W(q, r)``), zero Dirichlet edges, or a kernel not symmetric along a Neumann axis: the Schur bound

.. math::  ‖A‖_2 ≤ \sqrt{‖A‖_1\, ‖A‖_∞}, \qquad
           ‖A‖_∞ = \max_i |1 − ω a_i| + ω b_i = \max(1 + ω \max_i(b_i − a_i),\ ω \max_i(a_i + b_i) − 1),

with ``a_i = 1 − s d_i`` (``d_i`` the weights that land on the diagonal) and ``b_i = |s| Σ |w_{i,o}|``
over the others (triangle inequality where several offsets read one site); ``‖A‖_1`` the same with
the off-diagonal weights summed per site they read. Four numbers per criterion give the admissible
``ω``: the squared bound is piecewise quadratic in ``ω``, and ``ω_max`` is where it first exceeds 1.

A site-dependent family whose values are equal at every site is one kernel (exact).

**Time-dependent parameters:** the certificate of every layer; ``max_gain`` is the largest and
``network_gain`` bounds the whole stack, ``Π_t ‖A_t‖`` (exactly ``max_κ Π_t |G_t(κ)|`` in the exact
case: circulants commute).

**Lax–Richtmyer** (as :mod:`.stability_nd`): the reaction-free step ``A − ω diag(ρ)``,
``ρ_i = s Σ_o w_{i,o} − 1`` over the weights that read a site (the kernel's mass minus one, the
growth of the mean). If its gain is
``≤ 1`` then ``‖A‖₂ ≤ 1 + ω max|ρ|`` and ``‖A^L‖₂ ≤ e^{ω max|ρ| L}``: bounded growth.

**The quadrature update** (:class:`~npdegen.integral.QuadratureNetwork`): with one slope at every
node the linearised update is ``(1 − ω) z + ω s K_Q z``, ``K_Q`` the collapsed operator; certified
as above (no Lipschitz bound of the nonlinear update with several nodes: each node's ``f′``
multiplies its own operator).

**The nonlinear step.** With ``Lip(f) = sup|f′|`` (1 for identity, tanh, relu, softplus; 1/4 for
the sigmoid; none for ``square`` and polynomial reactions) the step itself is Lipschitz in l2 with
constant ``lipschitz_gain = |1 − ω| + ω Lip(f) ‖K‖₂`` (``‖K‖₂`` exact or bounded as above).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import sympy as sp

from .stability_nd import _omega_max

__all__ = ["NonlocalStability", "nonlocal_stability", "activation_lipschitz", "is_nonlocal"]

_TOL = 1e-9
_LIPSCHITZ = {"identity": 1.0, "tanh": 1.0, "sigmoid": 0.25, "relu": 1.0, "softplus": 1.0, "square": math.inf}


@dataclass(frozen=True)
class NonlocalStability:
    """The certificate; ``str()`` a readable report, ``to_dict()`` JSON-ready (module docstring)."""
    stable: bool
    criterion: str              # "von Neumann", "Lax-Richtmyer" or "none"
    method: str                 # "symbol" (exact gain) or "Schur bound"
    binding: str
    omega: float
    slope: float
    max_gain: float             # max over layers of ||A_t||_2 (exact with method "symbol", else a bound)
    gain_per_layer: tuple       # ||A_t||_2 per layer (one entry unless time-dependent)
    network_gain: float         # bound of ||A_{L-1} ... A_0||_2 over the layers
    growth_per_layer: float     # omega * max |rho|
    omega_max_von_neumann: float
    omega_max_lax_richtmyer: float
    kernel_norm: float          # ||K||_2 (exact or bound), max over layers
    lipschitz: float | None     # sup |f'| (None: unknown for this activation)
    lipschitz_gain: float | None    # |1 - omega| + omega * lipschitz * kernel_norm
    positive: bool
    markov: bool
    layers: int = 1
    heterogeneous: bool = False

    @property
    def exact(self) -> bool:
        return self.method == "symbol"

    @property
    def omega_range(self) -> tuple:
        """Admissible ``(0, ω_max)`` of the criterion that decides (Lax–Richtmyer when it did)."""
        top = self.omega_max_lax_richtmyer if self.criterion == "Lax-Richtmyer" else self.omega_max_von_neumann
        return (0.0, top)

    def __str__(self) -> str:
        verdict = f"stable ({self.criterion})" if self.stable else "UNSTABLE"
        how = "exact: the kernel's symbol" if self.exact else "bound: sqrt(||A||_1 ||A||_inf)"
        lip = ("unknown for this activation" if self.lipschitz is None else
               "none (f' unbounded)" if not math.isfinite(self.lipschitz) else
               f"{self.lipschitz_gain:.6g} (sup|f'| = {self.lipschitz:.6g})")
        lines = [f"{verdict} at omega = {self.omega:.6g}, slope {self.slope:.6g}: l2 gain per layer "
                 f"{self.max_gain:.6g} ({how})" + (" (site-dependent kernel)" if self.heterogeneous else ""),
                 f"  von Neumann (gain <= 1):            omega <= {self.omega_max_von_neumann:.6g}",
                 f"  Lax-Richtmyer (gain <= 1 + C dt):   omega <= {self.omega_max_lax_richtmyer:.6g}, "
                 f"growth per layer <= {self.growth_per_layer:.3g}",
                 f"  binding: {self.binding}",
                 f"  over {self.layers} layer(s): gain <= {self.network_gain:.6g}; ||K||_2 "
                 f"{'=' if self.exact else '<='} {self.kernel_norm:.6g}",
                 f"  nonlinear step (Lipschitz in l2): {lip}",
                 f"  positive (monotone): {self.positive}; Markov (rows sum to 1): {self.markov}"]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        num = lambda v: None if v is None or not np.isfinite(v) else float(v)
        return {"stable": self.stable, "criterion": self.criterion, "method": self.method, "exact": self.exact,
                "binding": self.binding, "omega": self.omega, "slope": self.slope,
                "omega_range": [num(v) for v in self.omega_range], "max_gain": num(self.max_gain),
                "gain_per_layer": [num(v) for v in self.gain_per_layer], "network_gain": num(self.network_gain),
                "growth_per_layer": num(self.growth_per_layer),
                "omega_max_von_neumann": num(self.omega_max_von_neumann),
                "omega_max_lax_richtmyer": num(self.omega_max_lax_richtmyer), "kernel_norm": num(self.kernel_norm),
                "lipschitz": num(self.lipschitz), "lipschitz_gain": num(self.lipschitz_gain),
                "positive": self.positive, "markov": self.markov, "layers": self.layers,
                "frozen_coefficients": False, "heterogeneous": self.heterogeneous}


def is_nonlocal(layer) -> bool:
    """A :class:`~npdegen.integral.NonlocalPDE` or a network compiled from one (a ``QuadratureNetwork``
    included; npdegen.integral is imported only when the object comes from it)."""
    if not type(layer).__module__.startswith("npdegen.integral"):
        return False
    from ..integral import NonlocalPDE
    from ..integral.network import NonlocalNetwork
    return isinstance(layer, (NonlocalPDE, NonlocalNetwork))


def activation_lipschitz(activation, values: dict | None = None) -> float | None:
    """``sup_x |f′(x)|`` of a layer's :class:`~npdegen.integral.layer.Activation`: the built-ins' values
    (module docstring), a constant ``f′``, ``inf`` for a polynomial of degree ≥ 2, else None (unknown).
    ``values``: the activation parameters (numbers; per-site values give None unless ``f′`` is
    polynomial in ``x``)."""
    from ..spec.activations import ACTIVATION_SYMBOL as x, BUILTIN_ACTIVATIONS
    for name, builtin in BUILTIN_ACTIVATIONS.items():
        if activation.expr == builtin:
            return _LIPSCHITZ[name]
    subs = {}
    for p in activation.params:
        v = np.asarray((values or {}).get(p.name, np.nan), np.float64)
        if v.ndim or not np.isfinite(v):
            return None
        subs[p] = float(v)
    dfdx = sp.diff(activation.expr, x).subs(subs)
    if not dfdx.has(x):
        return abs(float(dfdx))
    if dfdx.is_polynomial(x):
        return math.inf           # a polynomial f' of degree >= 1 is unbounded
    return None


# ------------------------------------------------------------------------------------- the layer
def _network(layer, params, spacing, n, boundary):
    from ..integral import NonlocalPDE
    if isinstance(layer, NonlocalPDE):
        if n is None:
            raise ValueError("a NonlocalPDE is certified on a grid: give n= (sites, or one per axis), or certify "
                             "the compiled network")
        timed = [k for k, f in layer.families.items() if f == "time-dependent" and k in params]
        layers = int(np.shape(params[timed[0]])[0]) if timed and np.ndim(params[timed[0]]) else 1
        return layer.compile(n, spacing=1.0 if spacing is None else spacing, layers=layers, omega=1.0,
                             boundary=boundary or "periodic", allow_unstable=True)
    for what, v in (("n", n), ("spacing", spacing), ("boundary", boundary)):
        if v is not None:
            raise ValueError(f"{what}= is fixed by the compiled NonlocalNetwork; certify the NonlocalPDE with "
                             f"{what}= instead")
    return layer


def _theta(net, params):
    if not isinstance(params, dict):
        raise TypeError(f"params must be a dict of parameter values, got {type(params).__name__}")
    theta = {k: v for k, v in params.items() if k not in ("b", "omega") or k in net.shapes}
    if "b" in net.shapes and "b" not in theta:
        theta["b"] = np.zeros(net.shapes["b"])          # the bias does not enter the linearised step
    if "omega" in net.shapes and "omega" not in theta:
        theta["omega"] = np.asarray(net.omega)
    return net.check_params(theta)


def _number(name, v, positive=True):
    v = np.asarray(v, np.float64) if not isinstance(v, (str, bytes, dict)) and v is not None else v
    if not isinstance(v, np.ndarray) or v.ndim or not np.isfinite(v) or (positive and v <= 0):
        raise ValueError(f"{name} must be a {'positive ' if positive else ''}finite number, got {v!r}")
    return float(v)


def _slope(net, theta, slope, operating_point):
    act = net.layer.activation
    if operating_point is None:
        return _number("slope", slope, positive=False)
    x0 = _number("operating_point", operating_point, positive=False)
    args = [np.asarray(theta[k], np.float64) for k in act.names]
    if any(a.ndim for a in args):
        raise ValueError("operating_point: the activation's parameters vary with the site; give slope= instead")
    return float(np.asarray(act.slope(np.asarray(x0), args)))


# ------------------------------------------------------------------------------------- the gains
def _symmetric(offsets, w, axes) -> bool:
    """``w(o) = w(o reflected on axis a)`` for every axis in ``axes`` (``offsets``: a C-ordered box)."""
    reach = offsets.max(axis=0)
    box = w.reshape(tuple(2 * reach + 1))
    scale = np.abs(w).max()
    return all(np.allclose(box, np.flip(box, axis=a), rtol=0, atol=1e-13 * scale) for a in axes)


def _symbol(offsets, w, grid, boundaries):
    """``(λ(κ), κ)`` on the modes that diagonalise ``K``: all of a periodic axis, the first ``n`` of a
    Neumann axis's period ``2n``."""
    periods = tuple(n if b == "periodic" else 2 * n for n, b in zip(grid, boundaries))
    k = np.zeros(periods, np.float64)
    np.add.at(k, tuple(offsets[:, a] % p for a, p in enumerate(periods)), w)
    lam = np.conj(np.fft.fftn(k))[tuple(slice(0, n) for n in grid)]
    axes = [2 * np.pi * np.arange(n) / p for n, p in zip(grid, periods)]
    kappa = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(grid))
    return lam.reshape(-1), (kappa + np.pi) % (2 * np.pi) - np.pi, k


def _assemble(offsets, w, grid, boundaries):
    """Per site: the diagonal weight ``d``, ``Σ|w|`` off the diagonal by row and by the column read,
    the row's mass ``Σ w`` and the smallest off-diagonal weight (module docstring)."""
    from ..integral.apply import source_index
    size = int(np.prod(grid))
    W = np.asarray(w, np.float64).reshape(-1, len(offsets))
    idx = np.indices(grid).reshape(len(grid), size)
    diag, row, col, mass = (np.zeros(size) for _ in range(4))
    low, own = np.inf, np.arange(size)
    for c, off in enumerate(offsets):
        src, valid = np.zeros(size, np.int64), np.ones(size, bool)
        for a, (n, b) in enumerate(zip(grid, boundaries)):
            ia = source_index(idx[a] + off[a], n, b)
            valid &= ia >= 0
            src = src * n + np.where(ia >= 0, ia, 0)
        wc = np.broadcast_to(W[:, c], (size,))
        on, elsewhere = valid & (src == own), valid & (src != own)
        mass += np.where(valid, wc, 0.0)
        diag += np.where(on, wc, 0.0)
        row += np.where(elsewhere, np.abs(wc), 0.0)
        col += np.bincount(src[elsewhere], weights=np.abs(wc[elsewhere]), minlength=size)
        if elsewhere.any():
            low = min(low, float(wc[elsewhere].min()))
    return diag, row, col, mass, low


def _lines(a, b):
    """``(p, q)``: ``max_i |1 − ω a_i| + ω b_i = max(1 + p ω, q ω − 1)`` for ``ω ≥ 0``."""
    return float(np.max(b - a)), float(np.max(a + b))


def _schur(rows, cols, omega):
    R = max(1 + rows[0] * omega, rows[1] * omega - 1)
    C = max(1 + cols[0] * omega, cols[1] * omega - 1)
    return math.sqrt(max(R, 0.0) * max(C, 0.0))


def _schur_omega_max(rows, cols) -> float:
    """The first ``ω > 0`` where the Schur bound exceeds 1: the bound squared is ``R(ω) C(ω)``, each a
    maximum of two lines, so ``R C − 1`` changes sign only at the lines' crossings and the roots of the
    four products; test the sign between consecutive candidates."""
    lines = [((1.0, rows[0]), (-1.0, rows[1])), ((1.0, cols[0]), (-1.0, cols[1]))]
    cand = {0.0}
    for (a1, b1), (a2, b2) in [lines[0], lines[1]]:
        if b1 != b2:
            cand.add((a2 - a1) / (b1 - b2))
    for a1, b1 in lines[0]:
        for a2, b2 in lines[1]:
            coef = [b1 * b2, a1 * b2 + a2 * b1, a1 * a2 - 1]
            for r in (np.roots(coef) if coef[0] or coef[1] else []):
                if abs(r.imag) <= 1e-12 * max(1.0, abs(r.real)):
                    cand.add(float(r.real))
    pts = sorted(c for c in cand if c >= 0 and np.isfinite(c))
    for lo, hi in zip(pts, pts[1:] + [2 * pts[-1] + 1.0]):
        if _schur(rows, cols, (lo + hi) / 2) > 1 + 1e-12:
            return lo
    return math.inf


def _exact_layer(offsets, w, grid, boundaries, omega, s):
    lam, kappa, k = _symbol(offsets, w, grid, boundaries)
    scale = 1.0 + np.abs(w).sum()
    rho = s * float(w.sum()) - 1.0
    rho = 0.0 if abs(rho) <= 64 * np.finfo(float).eps * scale else rho
    h = s * (lam - w.sum())
    h = np.where(np.abs(h) <= 64 * np.finfo(float).eps * scale, 0.0, h)
    g = rho + h
    gain = np.abs(1 + omega * g)
    (om_vn, k_vn), (om_lr, k_lr) = _omega_max(g), _omega_max(h)
    zero = (0,) * len(grid)
    off_ok = bool(np.all(s * np.delete(k.ravel(), 0) >= -_TOL))
    return dict(G=1 + omega * g, gain=float(gain.max()), lr=float(np.abs(1 + omega * h).max()), rho=abs(rho),
                rho_signed=rho, om_vn=om_vn, om_lr=om_lr, knorm=float(np.abs(lam).max()), kappa=kappa,
                k_vn=k_vn, k_lr=k_lr, k_max=int(np.argmax(gain)),
                positive=off_ok and 1 - omega + omega * s * k[zero] >= -_TOL,
                markov=abs(rho) <= _TOL)


def _bound_layer(offsets, w, grid, boundaries, omega, s):
    diag, row, col, mass, low = _assemble(offsets, w, grid, boundaries)
    a, rho = 1 - s * diag, s * mass - 1
    rows, cols = _lines(a, abs(s) * row), _lines(a, abs(s) * col)
    a_lr = s * (mass - diag)                      # diagonal of A − ω diag(ρ): 1 − ω s (mass − d)
    rows_lr, cols_lr = _lines(a_lr, abs(s) * row), _lines(a_lr, abs(s) * col)
    i = int(np.argmax(np.abs(1 - omega * a) + omega * abs(s) * row))
    j = int(np.argmax(np.abs(1 - omega * a) + omega * abs(s) * col))
    site = lambda q: tuple(int(v) for v in np.unravel_index(q, grid))
    return dict(gain=_schur(rows, cols, omega), lr=_schur(rows_lr, cols_lr, omega), rho=float(np.abs(rho).max()),
                rho_signed=float(rho[np.argmax(np.abs(rho))]), om_vn=_schur_omega_max(rows, cols),
                om_lr=_schur_omega_max(rows_lr, cols_lr),
                knorm=math.sqrt(float(np.max(np.abs(diag) + row)) * float(np.max(np.abs(diag) + col))),
                rows=site(i), cols=site(j),
                positive=bool(s * low >= -_TOL and np.all(1 - omega * a >= -_TOL)),
                markov=bool(np.all(np.abs(rho) <= _TOL)))


def _binding(r, exact, criterion) -> str:
    if not exact:
        text = (f"Schur bound sqrt(||A||_1 ||A||_inf): largest row sum of |A| at site {r['rows']}, largest column "
                f"sum at site {r['cols']}")
    else:
        k = r["k_lr"] if criterion == "Lax-Richtmyer" else r["k_vn"]
        k = r["k_max"] if k is None else k
        th = r["kappa"][k]
        text = ("reaction (theta = 0): rho_0 = " + f"{r['rho_signed']:.6g} per unit omega" if np.allclose(th, 0)
                else f"mode theta = {tuple(float(v) for v in np.round(th / np.pi, 4))} pi of the kernel's symbol")
    if criterion == "Lax-Richtmyer":
        text += f"; gain <= 1 fails only through the reaction rho = {r['rho_signed']:.6g} (a bounded growth)"
    return text


def nonlocal_stability(layer, params: dict, spacing=None, omega=None, slope: float = 1.0, operating_point=None,
                       n=None, boundary=None) -> NonlocalStability:
    """The certificate of a nonlocal ``layer`` (a ``NonlocalPDE`` with ``n=`` and optionally
    ``spacing=``, ``boundary=``; or a ``NonlocalNetwork``, which fixes them) for ``params``
    (the bias may be left out). ``omega``: default ``params["omega"]``, else the network's, else 1.
    ``slope`` is ``f′`` at the operating point, or ``operating_point=x0`` for ``f′(x0)``."""
    net = _network(layer, params, spacing, n, boundary)
    theta = _theta(net, params)
    if omega is None:
        omega = params["omega"] if "omega" in params else net.omega
    omega = _number("omega", omega)
    s = _slope(net, theta, slope, operating_point)
    timed = any(net.families[k] == "time-dependent" for k in net.kernel_names)
    results, exact, heterogeneous = [], True, False
    for t in range(net.layers if timed else 1):
        offsets, w = net.sampled_weights(theta, t)
        if w.ndim > 1:                  # site-dependent family with one value everywhere: one kernel
            rows = w.reshape(-1, w.shape[-1])
            w = rows[0] if np.all(rows == rows[0]) else w
        site = w.ndim > 1
        heterogeneous |= site
        neumann = [a for a, b in enumerate(net.boundaries) if b == "neumann"]
        use_symbol = (not site and "dirichlet" not in net.boundaries
                      and (not neumann or _symmetric(offsets, w, neumann)))
        exact &= use_symbol
        results.append((offsets, w, use_symbol))
    per = [(_exact_layer if exact else _bound_layer)(o, w, net.grid, net.boundaries, omega, s)
           for o, w, _ in results]
    gains = tuple(r["gain"] for r in per)
    if exact and timed:
        network_gain = float(np.abs(np.prod([r["G"] for r in per], axis=0)).max())
    else:
        network_gain = float(np.prod([gains[0 if len(gains) == 1 else t] for t in range(net.layers)]))
    max_gain = max(gains)
    if max_gain <= 1 + _TOL:
        criterion = "von Neumann"
    elif all(r["lr"] <= 1 + _TOL for r in per):
        criterion = "Lax-Richtmyer"
    else:
        criterion = "none"
    worst = per[int(np.argmax(gains))]
    knorm = max(r["knorm"] for r in per)
    lip = activation_lipschitz(net.layer.activation, theta)
    nodes = getattr(getattr(net, "nodes", None), "count", 1)
    if nodes > 1 and not net.layer.activation.linear:
        lip = None          # the quadrature update: each node's f′ multiplies its own operator K_k, not K_Q
    lip_gain = None if lip is None else (math.inf if not math.isfinite(lip) else abs(1 - omega) + omega * lip * knorm)
    return NonlocalStability(
        stable=criterion != "none", criterion=criterion, method="symbol" if exact else "Schur bound",
        binding=_binding(worst, exact, criterion), omega=omega, slope=s, max_gain=float(max_gain),
        gain_per_layer=gains, network_gain=network_gain, growth_per_layer=omega * max(r["rho"] for r in per),
        omega_max_von_neumann=min(r["om_vn"] for r in per), omega_max_lax_richtmyer=min(r["om_lr"] for r in per),
        kernel_norm=knorm, lipschitz=lip, lipschitz_gain=lip_gain, positive=all(bool(r["positive"]) for r in per),
        markov=all(bool(r["positive"]) and bool(r["markov"]) for r in per), layers=net.layers,
        heterogeneous=heterogeneous)
