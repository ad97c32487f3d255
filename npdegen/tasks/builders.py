r"""How each benchmark task turns random initial conditions into snapshot pairs ``(u(0), u(T))``.

Every builder takes the task's settings, the number of cells per axis ``n``, the number of
samples and a :class:`numpy.random.Generator`, and returns ``(x, y)`` shaped ``(samples, *grid)``:
the initial condition and the solution at time ``T``, both as values at the cell centres. The
initial condition is drawn as a *function* (:mod:`npdegen.tasks.initial`) and evaluated directly
on whichever grid the solver uses. Solvers run on a finer grid: refined by an odd factor, which
contains the coarse cell centres (``y`` is then sub-sampled), or of at least ``solver_grid`` cells
per axis (``y`` is then the trigonometric interpolant at the coarse centres,
:func:`npdegen.tasks.fourier.resample`). Either way ``x`` and ``y`` are point values of the same
:math:`u_0` and of the computed :math:`u(T)`.

Accuracy of ``y`` (max-norm, measured by ``python -m npdegen.tasks verify``): advection exact;
Burgers ≲ 1e-8 (ETDRK4 fourth order; Cole–Hopf); Fisher–KPP ≲ 1e-5 (Strang second order, the
collocation of the kinks of ``|u|`` initial data); variable-coefficient ADR exact (it is the network);
2-D advection–diffusion exact; 2-D Fisher–KPP ≲ 1e-6 (96² solver grid, Strang h = 4e-3); vorticity
≲ 1e-6 relative (ν = 2e-3: 96² solver grid; 64² gives 2e-5, 80² 7e-7).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from .advection import advection
from .fisher import strang
from .fourier import cell_centres, resample, restrict
from .initial import Fronts, SineSum, UnitInterval
from .spectral import burgers_on_grid, burgers_refinement, burgers_steps
from .twod import vorticity_on_grid
from .varcoef import varcoef_adr

__all__ = ["BUILDERS"]

#: Samples solved together (memory and per-group time steps).
CHUNK = 64


def _centres(n, lengths, r=1):
    return [cell_centres(r * n, length) for length in lengths]


def _sine_sum(s, samples, rng, dims=1):
    return SineSum.draw(samples, rng, dims=dims, lengths=tuple(s["lengths"]), **s["initial"])


def _chunks(samples):
    return [slice(i, min(i + CHUNK, samples)) for i in range(0, samples, CHUNK)]


def advection_task(s, n, samples, rng):
    r"""Exact: :math:`u(x, T) = u_0((x - βT) \bmod L)`, the initial function evaluated at the shifted points."""
    ic = _sine_sum(s, samples, rng)
    (x,) = _centres(n, s["lengths"])
    length = s["lengths"][0]
    return ic(x), ic(np.mod(x - s["beta"] * s["T"], length))


def burgers_task(s, n, samples, rng):
    """Pseudo-spectral Burgers on a fine grid per chunk of samples (refinement and steps from the chunk's max|u0|)."""
    ic = _sine_sum(s, samples, rng)
    length = s["lengths"][0]
    (x,) = _centres(n, s["lengths"])
    order = np.argsort(np.abs(ic(cell_centres(4096, length))).max(axis=1))     # similar amplitudes together
    y = np.empty((samples, n))
    for part in _chunks(samples):
        idx = order[part]
        sub = ic.take(idx)
        u_max = float(np.abs(sub(cell_centres(4096, length))).max())
        r = burgers_refinement(n, s["nu"], u_max, length)
        fine = burgers_on_grid(sub(cell_centres(r * n, length)), s["nu"], s["T"], length,
                               steps=burgers_steps(s["T"], s["nu"], u_max))
        y[idx] = restrict(fine, r, 1)
    return ic(x), y


def _fisher_initial(s, samples, rng):
    base = _sine_sum(s, samples, rng, dims=len(s["lengths"]))
    return Fronts.of(base, s["front_width"]) if s.get("front_width") else UnitInterval.of(base)


def _solver_cells(s, n):
    """Solver cells per axis: ``refine · n`` (odd ``refine``, default 1), at least ``solver_grid`` (default 0)."""
    return max(s.get("refine", 1) * n, s.get("solver_grid", 0))


def fisher_task(s, n, samples, rng):
    """Strang splitting on the solver grid (:func:`_solver_cells`), ``ceil(T / s["step"])`` steps."""
    ic = _fisher_initial(s, samples, rng)
    lengths, dims, m = tuple(s["lengths"]), len(s["lengths"]), _solver_cells(s, n)
    steps = max(1, math.ceil(s["T"] / s["step"]))
    y = np.empty((samples,) + (n,) * dims)
    for part in _chunks(samples):
        fine = ic.take(part)(*_centres(m, lengths))
        y[part] = resample(strang(fine, s["nu"], s["rho"], s["T"], lengths, steps), n, dims)
    return ic(*_centres(n, lengths)), y


def varcoef_task(s, n, samples, rng):
    """The heterogeneous neural-ADR network with the true profiles (:mod:`npdegen.tasks.varcoef`)."""
    ic = _sine_sum(s, samples, rng)
    x = ic(*_centres(n, s["lengths"]))
    return x, varcoef_adr(x, layers=s["layers"], omega=s["omega"])


def advection_diffusion_2d_task(s, n, samples, rng):
    r"""Exact in Fourier for the band-limited sine sums (grid refined until it holds every mode)."""
    ic = _sine_sum(s, samples, rng, dims=2)
    r = 1
    while r * n <= 2 * s["initial"]["max_mode"]:        # the grid must hold every mode below its Nyquist
        r += 2
    fine = ic(*_centres(n, s["lengths"], r))
    y = advection(fine, tuple(s["beta"]), s["T"], kappa=s["kappa"], length=tuple(s["lengths"]), dims=2)
    return ic(*_centres(n, s["lengths"])), restrict(y, r, 2)


def _vorticity_initial(s, samples, rng):
    r"""Vorticity sine sums whose modes carry velocity amplitudes :math:`A/K`: :math:`ω`-amplitude :math:`2π|m|A/K`."""
    base = _sine_sum(s, samples, rng, dims=2)
    scale = 2 * np.pi * np.linalg.norm(base.mode / np.asarray(s["lengths"]), axis=-1) / base.amplitude.shape[1]
    return dataclasses.replace(base, amplitude=base.amplitude * scale)


def vorticity_task(s, n, samples, rng):
    """Pseudo-spectral vorticity on the solver grid (:func:`_solver_cells`)."""
    ic = _vorticity_initial(s, samples, rng)
    lengths, m = tuple(s["lengths"]), _solver_cells(s, n)
    y = np.empty((samples, n, n))
    for part in _chunks(samples):
        y[part] = resample(vorticity_on_grid(ic.take(part)(*_centres(m, lengths)), s["nu"], s["T"], lengths), n, 2)
    return ic(*_centres(n, lengths)), y


BUILDERS = {"advection": advection_task, "burgers": burgers_task, "fisher": fisher_task, "varcoef": varcoef_task,
            "advection-diffusion-2d": advection_diffusion_2d_task, "vorticity": vorticity_task}
