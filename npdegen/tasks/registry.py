r"""The benchmark tasks by name, their settings, and :func:`make`.

=============================  =====================================================  ======================
name                           equation, domain, time                                 initial condition
=============================  =====================================================  ======================
``advection-beta{β}-T{T}``     :math:`u_t + βu_x = 0` on (0, 1), β ∈ {0.1, 0.4, 1},   PDEBench sine sums
                               T ∈ {0.5, 2} (exact)
``burgers-nu0.1``,             :math:`u_t + (u^2/2)_x = (ν/π)u_{xx}` on (0, 1), T = 1   PDEBench sine sums
``burgers-nu0.01``
``fisher-kpp``                 :math:`u_t = νu_{xx} + ρu(1-u)`, ν = 0.5, ρ = 1 on      sine sums mapped onto
                               (0, 1), T = 1 (diffusion flattens it: mode 1 decays     [0, 1]
                               by :math:`e^{-ν(2π)^2T} ≈ 3\cdot10^{-9}`)
``fisher-kpp-long``            the same on (0, 32), T = 2: patches near 1 invade 0     fronts (ε = 0.25),
                               at speed :math:`2\sqrt{νρ} ≈ 1.41`, structure kept      2 modes ≤ 4
``varcoef-adr``                the heterogeneous neural-ADR network, 32 layers,        PDEBench sine sums
                               ω = 0.8 (:mod:`npdegen.tasks.varcoef`); ``truth``
                               holds U, D, R
``advection-diffusion-2d``     :math:`u_t + β\cdot\nabla u = κΔu`, β = (0.5, 0.25),   3 sine modes, |m_a| ≤ 4
                               κ = 0.002 on (0, 1)², T = 0.5 (exact)
``fisher-kpp-2d``              :math:`u_t = νΔu + ρu(1-u)`, ν = 2e-3, ρ = 1 on         fronts (ε = 0.4),
                               (0, 1)², T = 1                                          3 modes ≤ 3
``vorticity-2d``               :math:`ω_t + \mathbf u\cdot\nabla ω = νΔω`, ν = 2e-3    4 modes ≤ 4, velocity
                               (Re ≈ 500 on the box) on (0, 1)², T = 1                 amplitudes U(0, 1)/4
=============================  =====================================================  ======================

The advection tasks shift by :math:`βT \in \{0.05, 0.2, 0.5, 0.8, 2\}`: ``advection-beta0.1-T2`` and
``advection-beta0.4-T0.5`` are the same map (shift 0.2, and the same inputs for a seed), and
``advection-beta1-T2`` is the identity (two periods) — kept because they complete PDEBench's grid of
settings and make good sanity checks for a learner.

Under ``burgers-nu0.1`` a sample whose two modes are both high decays to almost nothing by
:math:`T = 1` (mode 8: :math:`e^{-(ν/π)(16π)^2} ≈ e^{-80}`), so its own nRMSE is ill-conditioned:
report the pooled nRMSE (:meth:`Task.nrmse` with ``pooled=True``) next to the per-sample mean.

"PDEBench sine sums": two modes with wave numbers 1…8, and ``|u|``, a sign flip and a smooth
window each with probability 0.1 (:mod:`npdegen.tasks.initial`). 1-D tasks default to
``n = 256`` cells, 2-D tasks to ``64 × 64``. Every grid is periodic with cell centres
``(j + 1/2) L/n``. Train samples are drawn from ``numpy.random.default_rng([seed, 0])``, test samples
from ``default_rng([seed, 1])``: the sets are independent, the test set does not change with
``n_train``, and tasks sharing an initial-condition family (all advection, Burgers and
variable-coefficient tasks) share their inputs for a seed.
"""
from __future__ import annotations

import copy
import difflib
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import numpy as np

from . import cache as _cache
from .builders import BUILDERS
from .fourier import cell_centres
from .varcoef import LAYERS, OMEGA, varcoef_profiles

__all__ = ["Task", "make", "names", "settings", "describe", "GENERATOR_VERSION"]

#: Bumped whenever generated arrays change for the same request (it is part of the cache key).
GENERATOR_VERSION = 1
MAX_SAMPLES = 100_000
SIZE_LIMITS = {1: (8, 16384), 2: (8, 512)}

_PDEBENCH = {"modes": 2, "max_mode": 8, "p_abs": 0.1, "p_flip": 0.1, "p_window": 0.1, "delta": 0.02}


def _smooth(modes, max_mode, p_flip=0.0):
    return {"modes": modes, "max_mode": max_mode, "p_abs": 0.0, "p_flip": p_flip, "p_window": 0.0, "delta": 0.02}


def _table() -> dict:
    t = {}
    for beta in (0.1, 0.4, 1.0):
        for T in (0.5, 2.0):
            t[f"advection-beta{beta:g}-T{T:g}"] = {
                "kind": "advection", "equation": "u_t + beta u_x = 0", "beta": beta, "T": T,
                "lengths": [1.0], "initial": _PDEBENCH}
    for nu in (0.1, 0.01):
        t[f"burgers-nu{nu:g}"] = {"kind": "burgers", "equation": "u_t + (u^2/2)_x = (nu/pi) u_xx", "nu": nu, "T": 1.0,
                                  "lengths": [1.0], "initial": _PDEBENCH}
    fisher = {"kind": "fisher", "equation": "u_t = nu u_xx + rho u (1 - u)", "nu": 0.5, "rho": 1.0}
    t["fisher-kpp"] = {**fisher, "T": 1.0, "lengths": [1.0], "initial": _PDEBENCH, "refine": 3, "step": 2.5e-4}
    t["fisher-kpp-long"] = {**fisher, "T": 2.0, "lengths": [32.0], "initial": _smooth(2, 4, 0.1), "front_width": 0.25,
                            "refine": 3, "step": 1e-3}
    t["varcoef-adr"] = {"kind": "varcoef", "equation": "z <- z + omega (R(q) z - U(q) z_q + D(q) z_qq), L layers",
                        "layers": LAYERS, "omega": OMEGA, "lengths": [1.0], "initial": _PDEBENCH}
    t["advection-diffusion-2d"] = {"kind": "advection-diffusion-2d", "equation": "u_t + beta . grad u = kappa lap u",
                                   "beta": [0.5, 0.25], "kappa": 0.002, "T": 0.5, "lengths": [1.0, 1.0],
                                   "initial": _smooth(3, 4, 0.1)}
    t["fisher-kpp-2d"] = {"kind": "fisher", "equation": "u_t = nu lap u + rho u (1 - u)", "nu": 2e-3, "rho": 1.0,
                          "T": 1.0, "lengths": [1.0, 1.0], "initial": _smooth(3, 3), "front_width": 0.4,
                          "solver_grid": 96, "step": 4e-3}
    t["vorticity-2d"] = {"kind": "vorticity", "equation": "w_t + u . grad w = nu lap w, u = (psi_y, -psi_x), -lap psi = w",
                         "nu": 2e-3, "T": 1.0, "lengths": [1.0, 1.0], "initial": _smooth(4, 4), "solver_grid": 96}
    return t


_TASKS = _table()


def names(dims: int | None = None) -> list:
    """The task names (all, or those with ``dims`` grid axes)."""
    return [k for k, v in _TASKS.items() if dims is None or len(v["lengths"]) == dims]


def _lookup(name) -> dict:
    if not isinstance(name, str) or name not in _TASKS:
        close = difflib.get_close_matches(str(name), list(_TASKS), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(f"unknown task {name!r}{hint}; valid names: {', '.join(_TASKS)}")
    return _TASKS[name]


def settings(name: str) -> dict:
    """A copy of the settings of task ``name`` (equation, coefficients, time, domain, initial conditions)."""
    return copy.deepcopy(_lookup(name))


def describe(name: str) -> str:
    """One line: the task's equation and its settings."""
    s = _lookup(name)
    rest = ", ".join(f"{k}={v}" for k, v in s.items() if k not in ("kind", "equation", "initial"))
    return f"{name}: {s['equation']}; {rest}"


@dataclass(frozen=True, eq=False)
class Task:
    """A generated benchmark task: snapshot pairs ``x = u(0)``, ``y = u(T)`` shaped ``(samples, *grid)``.

    ``grid`` holds the cell centres per axis, ``spacing`` the cell widths, ``domain`` the
    ``(0, L)`` interval per axis, ``boundary`` is ``"periodic"``; ``settings`` are the task's
    settings (read-only), ``truth`` the true coefficient profiles where a task has them
    (``varcoef-adr``: ``U, D, R``), else ``None``. Arrays are read-only.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    grid: tuple
    spacing: tuple
    domain: tuple
    settings: MappingProxyType
    seed: int
    truth: MappingProxyType | None = None
    boundary: str = "periodic"
    equation: str = field(default="")

    def __reduce__(self):
        """Pickle as plain fields (a ``mappingproxy`` does not pickle); unpickling restores the read-only views."""
        state = {f: getattr(self, f) for f in self.__dataclass_fields__}
        state["settings"] = dict(self.settings)
        state["truth"] = None if self.truth is None else dict(self.truth)
        return (_task_from_fields, (state,))

    @property
    def n(self) -> tuple:
        """Cells per axis."""
        return tuple(len(g) for g in self.grid)

    @property
    def dims(self) -> int:
        return len(self.grid)

    def nrmse(self, prediction, split: str = "test", pooled: bool = False) -> float:
        r"""nRMSE of ``prediction`` against ``y_test`` (or ``y_train``): the mean over samples of
        :math:`\lVert \hat y - y\rVert / \lVert y\rVert`, or with ``pooled`` the ratio of the norms over all samples."""
        if split not in ("test", "train"):
            raise ValueError(f"split must be 'test' or 'train', got {split!r}")
        y = self.y_test if split == "test" else self.y_train
        p = np.asarray(prediction, dtype=np.float64)
        if p.shape != y.shape:
            raise ValueError(f"prediction has shape {p.shape}, expected {y.shape}")
        if pooled:
            return float(np.linalg.norm(p - y) / np.linalg.norm(y))
        axes = tuple(range(1, y.ndim))
        return float(np.mean(np.sqrt(((p - y) ** 2).sum(axes)) / np.sqrt((y ** 2).sum(axes))))


def _task_from_fields(state: dict) -> Task:
    state = dict(state)
    for key in ("x_train", "y_train", "x_test", "y_test"):
        state[key] = _read_only(state[key])
    state["grid"] = tuple(_read_only(g) for g in state["grid"])
    state["settings"] = MappingProxyType(state["settings"])
    if state["truth"] is not None:
        state["truth"] = MappingProxyType({k: _read_only(v) for k, v in state["truth"].items()})
    return Task(**state)


def _count(name, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
    return int(value)


def _read_only(a):
    a = np.ascontiguousarray(a, dtype=np.float64)
    a.setflags(write=False)
    return a


def make(name: str, n: int | None = None, n_train: int = 256, n_test: int = 64, seed: int = 0,
         cache: bool | str | Path = True) -> Task:
    """Generate (or load from the cache) the task ``name`` with ``n`` cells per axis.

    ``n`` defaults to 256 for 1-D tasks and 64 for 2-D ones; ``seed`` (an integer ≥ 0) fixes every
    random draw; ``cache``: ``True`` uses :func:`npdegen.tasks.cache.task_dir`, a path uses that
    folder, ``False`` neither reads nor writes. Raises ValueError for unknown names (listing the
    valid ones) and for sizes outside the limits.
    """
    s = _lookup(name)
    dims = len(s["lengths"])
    lo, hi = SIZE_LIMITS[dims]
    n = (256 if dims == 1 else 64) if n is None else _count("n", n, lo, hi)
    n_train = _count("n_train", n_train, 1, MAX_SAMPLES)
    n_test = _count("n_test", n_test, 0, MAX_SAMPLES)
    seed = _count("seed", seed, 0, 2 ** 63 - 1)
    meta = {"name": name, "n": n, "n_train": n_train, "n_test": n_test, "seed": seed,
            "version": GENERATOR_VERSION, "settings": s}
    keys = ("x_train", "y_train", "x_test", "y_test")
    path = None
    arrays = None
    if cache is not False:
        if not isinstance(cache, (bool, str, Path)):
            raise TypeError(f"cache must be True, False or a folder path, got {type(cache).__name__}")
        path = _cache.cache_path(_cache.task_dir() if cache is True else Path(cache), meta)
        arrays = _cache.load(path, meta, keys)
    if arrays is None:
        arrays = _generate(s, n, n_train, n_test, seed)
        if path is not None:
            _cache.save(path, meta, arrays)
    lengths = tuple(float(v) for v in s["lengths"])
    truth = None
    if s["kind"] == "varcoef":
        truth = MappingProxyType({k: _read_only(v) for k, v in varcoef_profiles(n).items()})
    return Task(name=name, **{k: _read_only(arrays[k]) for k in keys},
                grid=tuple(_read_only(cell_centres(n, length)) for length in lengths),
                spacing=tuple(length / n for length in lengths), domain=tuple((0.0, length) for length in lengths),
                settings=MappingProxyType(copy.deepcopy(s)), seed=seed, truth=truth, equation=s["equation"])


def _generate(s, n, n_train, n_test, seed) -> dict:
    build = BUILDERS[s["kind"]]
    grid = (n,) * len(s["lengths"])
    out = {}
    for split, samples, stream in (("train", n_train, 0), ("test", n_test, 1)):
        if samples == 0:
            x = y = np.empty((0,) + grid)
        else:
            x, y = build(s, n, samples, np.random.default_rng([seed, stream]))
        out[f"x_{split}"], out[f"y_{split}"] = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return out
