r"""Stability certificate of any step-IR layer: N-D, nonlinear (linearised at a state), growth terms.

With frozen coefficients per site and the activation's slope ``s``, a Fourier mode
``z_j = e^{i o·θ}`` is multiplied by ``G(θ) = 1 + ω g(θ)``,

.. math::  g(θ) = s W_0 − 1 − 2s Σ_o w_o \sin^2(o·θ/2) + i s Σ_o w_o \sin(o·θ)

(docs/theory.md §10), with ``w_o = ∂G/∂z[i+o]`` at the state (the stencil of a linear layer).
Two criteria, and the certificate says which one decided:

* **von Neumann**: ``|G(θ)| ≤ 1`` for every θ and site (no mode grows);
* **Lax–Richtmyer**: the reaction-free factor ``|1 + ω (g(θ) − g(0))| ≤ 1``, so that
  ``|G(θ)| ≤ 1 + ω|ρ_0|`` with ``ρ_0 = sW_0 − 1`` the reaction rate: powers of the step grow at
  most like ``e^{ω|ρ_0| L}`` over L layers, the bounded growth of a physical reaction (Fisher–KPP
  is not "unstable for every ω"). ``growth_per_layer`` reports ``ω max|ρ_0|``.

It also reports the admissible ``ω`` range of each criterion, the binding mode, positivity of the
step matrix (monotone, maximum principle) and the Markov property (rows summing to one).
θ is sampled on a uniform grid of ``modes`` points per axis including 0 and π.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .linearised import linearised_kernel

__all__ = ["StepStability", "step_stability"]

_DEFAULT_MODES = {1: 256, 2: 48, 3: 16}


@dataclass(frozen=True)
class StepStability:
    stable: bool
    criterion: str              # "von Neumann", "Lax-Richtmyer" or "none"
    binding: str                # what limits omega (or breaks stability)
    omega: float
    slope: float
    max_gain: float             # max |G| over modes and sites
    growth_per_layer: float     # omega * max |rho_0|: the bound of |G| - 1 under Lax-Richtmyer
    omega_max_von_neumann: float
    omega_max_lax_richtmyer: float
    positive: bool
    markov: bool

    @property
    def omega_range(self) -> tuple:
        """Admissible ``(0, ω_max)`` of the criterion that decides (Lax–Richtmyer when it did)."""
        top = self.omega_max_lax_richtmyer if self.criterion == "Lax-Richtmyer" else self.omega_max_von_neumann
        return (0.0, top)

    def __str__(self) -> str:
        verdict = f"stable ({self.criterion})" if self.stable else "UNSTABLE"
        lines = [f"{verdict} at omega = {self.omega:.6g}, slope {self.slope:.6g}: max|G| = {self.max_gain:.6g}",
                 f"  von Neumann (|G| <= 1):            omega <= {self.omega_max_von_neumann:.6g}",
                 f"  Lax-Richtmyer (|G| <= 1 + C dt):   omega <= {self.omega_max_lax_richtmyer:.6g}, "
                 f"growth per layer <= {self.growth_per_layer:.3g}",
                 f"  binding: {self.binding}",
                 f"  positive (monotone): {self.positive}; Markov (rows sum to 1): {self.markov}"]
        return "\n".join(lines)


def _thetas(dim: int, modes: int) -> np.ndarray:
    axis = np.linspace(-np.pi, np.pi, 2 * (modes // 2) + 1)       # odd count: contains 0 and ±π
    return np.stack(np.meshgrid(*([axis] * dim), indexing="ij"), axis=-1).reshape(-1, dim)


def _omega_max(g: np.ndarray) -> tuple[float, int | None]:
    """Largest ω with |1 + ω g| ≤ 1 for all given g (min over g ≠ 0 of −2 Re g/|g|², 0 if some
    Re g > 0), and the flat index of the g that binds (None if no g ≠ 0)."""
    g = g.ravel()
    mag = np.abs(g) ** 2
    live = np.flatnonzero(mag > 1e-300)
    if live.size == 0:
        return np.inf, None
    bound = -2 * g.real[live] / mag[live]
    k = int(np.argmin(bound))
    return float(max(bound[k], 0.0)), int(live[k])


def step_stability(layer, params: dict, spacing=1.0, omega: float = 1.0, slope: float = 1.0, state=None,
                   n=None, boundary="periodic", layer_index: int = 0, modes: int | None = None,
                   tol: float = 1e-9) -> StepStability:
    """The certificate of ``layer`` (any ``NeuralPDE``) for parameter values ``params``.

    ``state`` (an array on the grid) linearises a nonlinear layer; without it the state is zero
    on a grid of shape ``n`` (default: the parameters' grid, else 8 sites per axis).
    """
    ir = layer.step_ir
    if not (np.isfinite(omega) and omega > 0) or not np.isfinite(slope):
        raise ValueError(f"omega must be a positive number and slope finite, got {omega!r}, {slope!r}")
    if state is None:       # zero state on the parameters' grid, else on n, else a small grid
        shapes = [np.shape(v)[-ir.dim:] for k, v in params.items() if k not in ("b", "omega") and np.ndim(v) >= ir.dim]
        if shapes:
            grid = shapes[0]
        elif n is not None:
            grid = tuple(n) if np.ndim(n) else (n,) * ir.dim
        else:
            grid = (max(8, 2 * max(ir.halo) + 1),) * ir.dim
        state = np.zeros(grid)
    kernel = linearised_kernel(layer, state, {k: v for k, v in params.items() if k not in ("b", "omega")},
                               spacing=spacing, boundary=boundary, layer_index=layer_index)
    offsets = list(kernel.weights)
    W = np.stack([kernel.weights[o].reshape(-1) for o in offsets], axis=1) * slope    # (sites, K)
    W = np.unique(W, axis=0)                                                           # distinct sites
    O = np.array(offsets, dtype=float)                                                 # (K, d)
    theta = _thetas(ir.dim, modes or _DEFAULT_MODES[ir.dim])                           # (M, d)
    phase = theta @ O.T                                                                # (M, K)
    scale = 1.0 + np.abs(W).sum(axis=1, keepdims=True)                                 # round-off scale
    rho0 = W.sum(axis=1) - 1.0                                                         # (sites,)
    rho0 = np.where(np.abs(rho0) <= 64 * np.finfo(float).eps * scale[:, 0], 0.0, rho0)
    h = -2.0 * (W @ np.sin(phase / 2).T ** 2) + 1j * (W @ np.sin(phase).T)             # (sites, M)
    tiny = np.abs(h) <= 64 * np.finfo(float).eps * scale
    h = np.where(tiny, 0.0, h)
    g = rho0[:, None] + h
    gain = np.abs(1 + omega * g)
    max_gain = float(gain.max())
    (om_vn, k_vn), (om_lr, k_lr) = _omega_max(g), _omega_max(h)
    growth = float(omega * np.max(np.abs(rho0)))
    if max_gain <= 1 + tol:
        stable, criterion = True, "von Neumann"
    elif float(np.abs(1 + omega * h).max()) <= 1 + tol:
        stable, criterion = True, "Lax-Richtmyer"
    else:
        stable, criterion = False, "none"
    k = k_lr if criterion == "Lax-Richtmyer" else k_vn
    if k is None:
        k = int(np.argmax(np.abs(1 + omega * g)))
    site, mode = np.unravel_index(k, g.shape)
    th = theta[mode]
    if np.allclose(th, 0):
        binding = f"reaction (theta = 0): rho_0 = {rho0[site]:.6g} per unit omega"
    elif np.all(np.isclose(np.abs(th), np.pi) | np.isclose(th, 0)):
        binding = f"grid-scale mode theta = {tuple(float(v) for v in np.round(th / np.pi, 3))} pi (diffusion/dispersion bound)"
    else:
        binding = f"mode theta = {tuple(float(v) for v in np.round(th / np.pi, 3))} pi"
    if criterion == "Lax-Richtmyer":
        binding += f"; |G| <= 1 fails only through the reaction rho_0 = {float(np.max(rho0)):.6g} (a bounded growth)"
    zero = offsets.index((0,) * ir.dim) if (0,) * ir.dim in offsets else None
    off = [k for k in range(len(offsets)) if k != zero]
    positive = bool(np.all(W[:, off] >= -tol) and np.all(1 - omega + omega * (W[:, zero] if zero is not None else 0) >= -tol))
    markov = positive and bool(np.all(np.abs(rho0) <= tol))
    return StepStability(stable=stable, criterion=criterion, binding=binding, omega=float(omega),
                         slope=float(slope), max_gain=max_gain, growth_per_layer=growth,
                         omega_max_von_neumann=om_vn, omega_max_lax_richtmyer=om_lr,
                         positive=positive, markov=markov)
