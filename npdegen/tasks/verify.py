r"""Solver checks against independent references: ``python -m npdegen.tasks verify [--full]``.

Each check returns a :class:`Check` (what was measured, the value, the bound it must meet):

* advection — the Fourier shift of single modes and of band-limited sine sums against the
  functions evaluated at :math:`x - βT` (max error);
* Burgers — agreement with the Cole–Hopf quadrature (:func:`npdegen.tasks.cole_hopf`) at
  ν = 0.1 and 0.01; the observed time order of ETDRK4 (:math:`\log_2` of successive error ratios
  against Cole–Hopf, about 4); the fine grid's spectral convergence (at ν = 0.01 on 64 cells the
  error falls more than 50× per refinement 1 → 3 → 5, where a p-th order method gains 3^p, 1.7^p);
* Fisher–KPP — the observed order of Strang splitting against a fine-step reference (about 2),
  and the front speed on a long domain against :math:`2\sqrt{νρ}` after removing Bramson's
  :math:`-\tfrac32\sqrt{ν/ρ}\ln t` delay;
* vorticity — a one-shell vorticity decays exactly as :math:`e^{-ν|κ|^2 t}` (the advection of a
  one-shell field vanishes), Taylor–Green (:math:`ψ = \sin 2πx \sin 2πy`) among them, the time
  order of ETDRK4 on a random field, and the spatial self-convergence (solver grids 12, 16, 24
  against 48, compared on 16 points: spectral, the error falls more than 10× per step);
* 2-D advection–diffusion — the Fourier solution against the closed form of sine sums;
* 2-D Fisher–KPP — the observed order of 2-D Strang splitting against a fine-step reference;
* variable-coefficient ADR — the generated network against a hand-written NumPy loop of the
  stencil;
* task data — the Fisher–KPP and vorticity tasks' ``y`` against the same samples solved on a
  grid twice as fine (or refined by two more) with half the time step.

``--full`` uses larger grids and more samples (minutes); the quick mode takes seconds.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np

from .advection import advection
from .builders import BUILDERS
from .checks import bramson_position, cole_hopf, front_position
from .fisher import strang
from .fourier import cell_centres, resample, restrict
from .initial import SineSum, UnitInterval
from .registry import settings
from .spectral import burgers_on_grid, burgers_refinement, burgers_steps
from .twod import vorticity_on_grid
from .varcoef import LAYERS, OMEGA, varcoef_adr, varcoef_profiles

__all__ = ["Check", "run_checks", "format_table"]


@dataclass(frozen=True)
class Check:
    """One verified property: ``value`` must be ``<= bound`` (``sense="max"``) or ``>= bound`` (``"min"``)."""

    name: str
    value: float
    bound: float
    sense: str = "max"
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(np.isfinite(self.value) and (self.value <= self.bound if self.sense == "max"
                                                 else self.value >= self.bound))


def _order(errors):
    e = np.asarray(errors)
    return float(np.min(np.log2(e[:-1] / e[1:])))


def _advection(size):
    x = cell_centres(size)
    modes = np.arange(1, size // 2)
    u0 = np.sin(2 * np.pi * np.outer(modes, x) + 0.3)
    err = abs(advection(u0, 0.4, 0.5) - np.sin(2 * np.pi * np.outer(modes, x - 0.2) + 0.3)).max()
    ic = SineSum.draw(16, np.random.default_rng(0), p_abs=0, p_window=0)
    err2 = abs(advection(ic(x), 1.0, 0.37) - ic(np.mod(x - 0.37, 1.0))).max()
    return [("advection: Fourier shift of every mode below Nyquist, max error", err, 1e-11),
            ("advection: sine sums vs u0(x - beta T), max error", err2, 1e-12)]


def _burgers(size, samples):
    rows = []
    ic = SineSum.draw(samples, np.random.default_rng(1), p_abs=0, p_window=0)
    x = cell_centres(size)
    u_max = float(np.abs(ic(cell_centres(4096))).max())
    for nu in (0.1, 0.01):
        ref = cole_hopf(ic.primitive, x, nu, 1.0)
        r = burgers_refinement(size, nu, u_max)
        y = restrict(burgers_on_grid(ic(cell_centres(r * size)), nu, 1.0), r, 1)
        rows.append((f"Burgers nu={nu:g}: spectral vs Cole-Hopf, max error", abs(y - ref).max(), 1e-7))
    nu = 0.1
    ref = cole_hopf(ic.primitive, x, nu, 1.0)
    steps = burgers_steps(1.0, nu, u_max) // 8
    errs = [abs(restrict(burgers_on_grid(ic(cell_centres(3 * size)), nu, 1.0, steps=s), 3, 1) - ref).max()
            for s in (steps, 2 * steps, 4 * steps)]
    rows.append(("Burgers nu=0.1: ETDRK4 observed time order (>= 3.5)", _order(errs), 3.5, "min"))
    nu, coarse = 0.01, 64                  # spectral convergence: 64 cells, solver grids 64, 192, 320
    ref = cole_hopf(ic.primitive, cell_centres(coarse), nu, 1.0)
    steps = burgers_steps(1.0, nu, u_max)
    errs = [abs(restrict(burgers_on_grid(ic(cell_centres(r * coarse)), nu, 1.0, steps=steps), r, 1) - ref).max()
            for r in (1, 3, 5)]
    rows.append(("Burgers nu=0.01: error ratio per refinement 1 -> 3 -> 5 (>= 50)",
                 min(errs[0] / errs[1], errs[1] / errs[2]), 50.0, "min"))
    return rows


def _fisher(size):
    rows = []
    length, nu, rho = 32.0, 0.5, 1.0
    ic = UnitInterval.of(SineSum.draw(8, np.random.default_rng(2), lengths=(length,), max_mode=4, p_abs=0,
                                      p_window=0))
    u0 = ic(cell_centres(size, length))
    ref = strang(u0, nu, rho, 1.0, (length,), 4096)
    errs = [abs(strang(u0, nu, rho, 1.0, (length,), s) - ref).max() for s in (16, 32, 64)]
    rows.append(("Fisher-KPP: Strang observed order vs fine steps (>= 1.9)", _order(errs), 1.9, "min"))
    big, cells = 8 * length, 16 * size            # Δ = 1/8 for size 128: the tanh front is resolved to 1e-17
    x = cell_centres(cells, big)
    u = (0.5 * (1 - np.tanh(x - 30.0)) * 0.5 * (1 + np.tanh(x - 5.0)))[None]    # tail e^{-2x}: steep, pulled
    times, positions = [], []
    t, dt = 0.0, 2.0
    for _ in range(14):                   # t = 2 … 28: the front stays far from the domain's end
        u = strang(u, nu, rho, dt, (big,), 40)
        t += dt
        times.append(t)
        positions.append(front_position(u, x)[0])
    times, positions = np.array(times), np.array(positions)
    late = times >= 10
    speed = np.polyfit(times[late], positions[late] - (bramson_position(times[late], nu, rho)
                                                       - 2 * np.sqrt(nu * rho) * times[late]), 1)[0]
    rows.append(("Fisher-KPP: front speed / 2 sqrt(nu rho) - 1 (Bramson-corrected)",
                 abs(speed / (2 * np.sqrt(nu * rho)) - 1), 0.01))
    return rows


def _vorticity(size):
    x = cell_centres(size)
    X, Y = np.meshgrid(x, x, indexing="ij")
    shell = 2 * np.pi * np.sqrt(5) * (0.7 * np.sin(2 * np.pi * (X + 2 * Y) + 0.3) + np.cos(2 * np.pi * (2 * X - Y))
                                     + 0.4 * np.sin(2 * np.pi * (2 * X + Y)))[None]
    nu, T = 0.01, 0.5
    exact = shell * np.exp(-nu * (2 * np.pi) ** 2 * 5 * T)
    err = abs(vorticity_on_grid(shell, nu, T) - exact).max() / abs(exact).max()
    ic = SineSum.draw(2, np.random.default_rng(3), dims=2, modes=4, max_mode=3, p_abs=0, p_window=0)
    w0 = ic(x, x)
    ref = vorticity_on_grid(w0, 2e-3, 0.5, steps=256)
    errs = [abs(vorticity_on_grid(w0, 2e-3, 0.5, steps=s) - ref).max() for s in (8, 16, 32)]
    return [("vorticity: one-shell field decays exactly, relative max error", err, 1e-12),
            ("vorticity: ETDRK4 observed time order (>= 3.5)", _order(errs), 3.5, "min")]


def _two_d(size):
    """2-D: advection–diffusion in closed form, Strang order of 2-D Fisher–KPP, Taylor–Green decay, the
    vorticity solver's spatial self-convergence."""
    x = cell_centres(size)
    X, Y = np.meshgrid(x, x, indexing="ij")
    beta, kappa, T = (0.5, 0.25), 2e-3, 0.5
    modes = [(1, 2, 0.3, 1.0), (3, -1, 1.1, 0.5), (2, 3, 2.0, 0.7)]
    u0 = sum(a * np.sin(2 * np.pi * (mx * X + my * Y) + p) for mx, my, p, a in modes)[None]
    exact = sum(a * np.exp(-kappa * (2 * np.pi) ** 2 * (mx ** 2 + my ** 2) * T)
                * np.sin(2 * np.pi * (mx * (X - beta[0] * T) + my * (Y - beta[1] * T)) + p) for mx, my, p, a in modes)
    rows = [("2-D advection-diffusion: Fourier solution vs closed form, max error",
             abs(advection(u0, beta, T, kappa=kappa, dims=2) - exact).max(), 1e-12)]
    ic = UnitInterval.of(SineSum.draw(2, np.random.default_rng(6), dims=2, modes=3, max_mode=3, p_abs=0,
                                      p_window=0))
    f0 = ic(x, x)
    ref = strang(f0, 2e-3, 1.0, 1.0, (1.0, 1.0), 1024)
    errs = [abs(strang(f0, 2e-3, 1.0, 1.0, (1.0, 1.0), s) - ref).max() for s in (8, 16, 32)]
    rows.append(("2-D Fisher-KPP: Strang observed order vs fine steps (>= 1.9)", _order(errs), 1.9, "min"))
    nu, t = 0.01, 0.5                       # Taylor-Green: psi = sin(2 pi x) sin(2 pi y), w = 8 pi^2 psi
    tg = 8 * np.pi ** 2 * np.sin(2 * np.pi * X) * np.sin(2 * np.pi * Y)
    err = abs(vorticity_on_grid(tg[None], nu, t) - tg * np.exp(-8 * np.pi ** 2 * nu * t)).max() / abs(tg).max()
    rows.append(("vorticity: Taylor-Green decays as exp(-8 pi^2 nu t), relative max error", err, 1e-12))
    ic = SineSum.draw(2, np.random.default_rng(7), dims=2, modes=4, max_mode=3, p_abs=0, p_window=0)
    steps = 64
    solves = {m: resample(vorticity_on_grid(ic(cell_centres(m), cell_centres(m)), 5e-3, 0.5, steps=steps), 16, 2)
              for m in (12, 16, 24, 48)}
    errs = [abs(solves[m] - solves[48]).max() for m in (12, 16, 24)]
    rows.append(("vorticity: spatial self-convergence, error ratio per grid 12 -> 16 -> 24 (>= 10)",
                 min(errs[0] / errs[1], errs[1] / errs[2]), 10.0, "min"))
    return rows


def _varcoef(size):
    u0 = SineSum.draw(8, np.random.default_rng(4))(cell_centres(size))
    p = varcoef_profiles(size)
    z = u0.copy()
    for _ in range(LAYERS):
        z = (1 - OMEGA) * z + OMEGA * ((p["U"] / 2 + p["D"]) * np.roll(z, 1, axis=1) + (1 + p["R"] - 2 * p["D"]) * z
                                       + (-p["U"] / 2 + p["D"]) * np.roll(z, -1, axis=1))
    return [("varcoef-adr: network vs NumPy stencil loop, max error", abs(varcoef_adr(u0) - z).max(), 1e-12)]


def _task_data(names, n, samples):
    """Each task's ``y`` against the same task solved on a finer solver grid with half the step."""
    rows = []
    for name in names:
        s = settings(name)
        finer = copy.deepcopy(s)
        if "refine" in s:
            finer["refine"] = s["refine"] + 2
        if "solver_grid" in s:
            finer["solver_grid"] = 2 * s["solver_grid"]
        if "step" in s:
            finer["step"] = s["step"] / 2
        build = BUILDERS[s["kind"]]
        _, y = build(s, n, samples, np.random.default_rng(5))
        _, ref = build(finer, n, samples, np.random.default_rng(5))
        rows.append((f"task {name} (n={n}): y vs finer grid and half step, max error / max|y|",
                     abs(y - ref).max() / abs(ref).max(), 1e-5))
    return rows


def run_checks(full: bool = False) -> list:
    """Run every check (larger sizes with ``full``) and return the :class:`Check` rows."""
    groups = [(_advection, (1024 if full else 128,)), (_burgers, (256 if full else 64, 16 if full else 3)),
              (_fisher, (512 if full else 128,)), (_vorticity, (64 if full else 24,)),
              (_two_d, (64 if full else 32,)), (_varcoef, (256 if full else 64,)),
              (_task_data, (["fisher-kpp", "fisher-kpp-long", "fisher-kpp-2d", "vorticity-2d"], 64, 8) if full
               else (["fisher-kpp-long"], 32, 2))]
    if not full:                               # the 2-D tasks' data at a tiny size
        groups.append((_task_data, (["fisher-kpp-2d", "vorticity-2d"], 16, 1)))
    rows = []
    for fn, args in groups:
        t0 = time.perf_counter()
        found = fn(*args)
        seconds = (time.perf_counter() - t0) / len(found)
        rows += [Check(*row, seconds=seconds) for row in found]
    return rows


def format_table(rows) -> str:
    """The checks as an aligned text table with a PASS/FAIL column."""
    width = max(len(r.name) for r in rows)
    lines = [f"{'check':<{width}}  {'value':>11}  {'bound':>11}  {'s':>6}  result"]
    for r in rows:
        op = "<=" if r.sense == "max" else ">="
        lines.append(f"{r.name:<{width}}  {r.value:>11.3e}  {op}{r.bound:>9.1e}  {r.seconds:>6.2f}  "
                     f"{'PASS' if r.ok else 'FAIL'}")
    return "\n".join(lines)
