r"""Coefficient recovery vs noise on ``varcoef-adr``: can the U, D, R profiles be read back from data?

The task's truth is the heterogeneous neural-ADR network (:mod:`npdegen.tasks.varcoef`): 32 layers
``z ← z + ω(R z − U z_q + D z_qq)``, ω = 0.8, grid units. The targets get Gaussian noise of
standard deviation ``level · rms(y_s)`` per sample (``level`` ∈ {0, 1e-3, 1e-2}; the test targets
stay clean), and the same network structure is fitted with ``npdegen.train(..., optimizer="lbfgs")``
in two stages, neither of which sees the truth:

1. the homogeneous family (three numbers) from ``U = R = 0``, ``D = 0.1``;
2. the heterogeneous family (3n numbers) from the homogeneous fit, ``D ≥ 0`` kept by a bound.

Reported per noise level: the **low-passed** relative L2 errors
``‖S(θ̂) − S(θ)‖/‖θ‖`` of U, D, R, with ``S`` the periodic moving average over 5 sites (the
project's convention, tests/test_training_lbfgs.py: profiles varying at the grid scale barely move
the outputs of smooth inputs, so only the smoothed profile is identifiable), the unsmoothed errors,
the clean-test nRMSE, the largest gain per layer of the fitted network (``npdegen.stability``),
iterations and seconds. Goal (issue 16, no noise): U ≤ 1e-3, D ≤ 1e-2, R ≤ 1e-2.

The same data go to the estimator (``--estimator-budget`` seconds per fit, 0 skips it), twice per noise level:

* **told the structure**: ``NeuralPDERegressor`` with its recipe space cut to the truth's — the
  ``moments`` kind at width 3 (whose parameters are R, U, D), depth 32, ω = 0.8, identity, grid units,
  homogeneous then heterogeneous — so its profiles compare with the truth's directly;
* **the default search** (grid units, everything else default): its winner need not have the truth's depth
  (the default grid 4, 16, 64 lacks the truth's 32: the search's depth round reaches it) or ω. For
  small steps a layer of relaxation ω advances the PDE by ω, so a winner of the ``moments`` kind is
  compared through its profiles scaled by its duration, ``θ̂ · ω̂L̂ / (ωL)`` (the truth's ωL = 25.6; a
  time-dependent winner's per-layer profiles by their mean over the layers); other kinds have no R, U, D
  to compare.

Usage::

    python examples/experiments/recovery.py                       # n = 256, 256 train / 64 test
    python examples/experiments/recovery.py --smoke --out /tmp/r  # tiny (the CI smoke test)

Writes ``OUT/recovery.json`` and ``OUT/recovery.md`` (atomically).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import sympy as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from extras import Deadline  # noqa: E402

import npdegen  # noqa: E402
import npdegen.tasks as tasks  # noqa: E402
from npdegen.runtime.atomic import write_atomic  # noqa: E402
from npdegen.tasks.varcoef import LAYERS, OMEGA  # noqa: E402

GOALS = {"U": 1e-3, "D": 1e-2, "R": 1e-2}


def low_pass(a, width: int = 2) -> np.ndarray:
    """Periodic moving average over ``2·width + 1`` sites."""
    a = np.asarray(a, np.float64)
    return np.mean([np.roll(a, s) for s in range(-width, width + 1)], axis=0)


def relative_errors(theta: dict, truth: dict, smooth: bool = True) -> dict:
    """``‖S(θ̂_k) − S(θ_k)‖ / ‖θ_k‖`` per profile (``S`` the low pass, or the identity)."""
    f = low_pass if smooth else np.asarray
    return {k: float(np.linalg.norm(f(theta[k]) - f(truth[k])) / np.linalg.norm(truth[k])) for k in truth}


def add_noise(y, level: float, rng) -> np.ndarray:
    """``y_s + level · rms(y_s) · ξ`` with ``ξ`` standard normal, per sample ``s``."""
    if not (np.isfinite(level) and level >= 0):
        raise ValueError(f"noise level must be a finite number >= 0, got {level!r}")
    y = np.asarray(y, np.float64)
    rms = np.sqrt(np.mean(y.reshape(len(y), -1) ** 2, axis=1)).reshape((-1,) + (1,) * (y.ndim - 1))
    return y + level * rms * rng.standard_normal(y.shape)


def adr_network(n: int, family: str):
    """The task's network structure (32 layers, ω = 0.8, grid units) with U, D, R of ``family``."""
    q = sp.Symbol("q")
    z = sp.Function("z")(q)
    U, D, R = sp.symbols("U D R")
    layer = npdegen.NeuralPDE(z + R * z - U * z.diff(q) + D * z.diff(q, 2), z, activation="identity",
                              params={U: family, D: family, R: family}, name=f"recover_{family[:6]}")
    return layer, layer.compile(n=n, spacing=1.0, layers=LAYERS, omega=OMEGA, boundary="periodic")


def fit(x, y, n: int, steps: int, budget: float) -> dict:
    """The two-stage fit (module docstring); returns the parameters, iterations, seconds and gain."""
    started = time.perf_counter()
    _, hom = adr_network(n, "homogeneous")
    start = {"U": np.array(0.0), "D": np.array(0.1), "R": np.array(0.0)}
    th0, h0 = npdegen.train(hom, x, y, start, steps=min(steps, 100), optimizer="lbfgs", progress=False,
                            bounds={"D": (0, None)}, callbacks=[Deadline(budget, started)])
    layer, het = adr_network(n, "heterogeneous")
    start = {k: np.full(n, float(np.asarray(v))) for k, v in th0.items()}
    theta, h1 = npdegen.train(het, x, y, start, steps=steps, optimizer="lbfgs", progress=False,
                              bounds={"D": (0, None)}, callbacks=[Deadline(budget, started)])
    st = npdegen.stability(layer, theta, spacing=1.0, omega=OMEGA)
    return {"theta": theta, "net": het, "homogeneous": {k: float(np.asarray(v)) for k, v in th0.items()},
            "iterations": [len(h0.loss) - 1, len(h1.loss) - 1], "seconds": time.perf_counter() - started,
            "max_gain_per_layer": float(st.max_gain), "stable": bool(st.stable)}


def estimator_fit(x, y, budget: float, structured: bool, seed: int) -> dict:
    """The estimator's fit of ``x ↦ y`` (module docstring): the winner's R, U, D profiles scaled to the
    truth's duration ``ω L`` (``None`` when the winner is of another kind), recipe and seconds."""
    space = dict(kinds=("moments",), families=("homogeneous", "heterogeneous"), widths=(3,), depths=(LAYERS,),
                 activations=("identity",), omega=OMEGA) if structured else {}
    est = npdegen.NeuralPDERegressor(budget=budget, spacing=1.0, random_state=seed, **space)
    started = time.perf_counter()
    est.fit(x, y)
    recipe = dict(est.recipe_)
    profiles = None
    if recipe["kind"] == "moments" and all(k in est.theta_ for k in ("R", "U", "D")):
        scale = recipe["omega"] * recipe["depth"] / (OMEGA * LAYERS)
        # a time-dependent winner's per-layer values: their mean over the layers (the truth's are the same
        # in every layer; ω̂ Σ_t U_t = ω̂ L̂ · mean_t U_t is the elapsed transport)
        values = {k: np.asarray(est.theta_[k], np.float64) for k in ("U", "D", "R")}
        profiles = {k: np.broadcast_to(v.mean(axis=0) if v.ndim == 2 else v, (x.shape[-1],)) * scale
                    for k, v in values.items()}
    return {"estimator": est, "profiles": profiles, "recipe": recipe, "seconds": time.perf_counter() - started}


def _estimator_rows(task, y, truth, budget: float, seed: int, searches=("structured", "default")) -> dict:
    out = {}
    for name in searches:
        structured = name == "structured"
        load = os.getloadavg()[0]
        r = estimator_fit(task.x_train, y, budget, structured, seed)
        p = r["profiles"]
        out[name] = {"recipe": r["recipe"], "seconds": r["seconds"],
                     "errors": relative_errors(p, truth) if p is not None else None,
                     "raw_errors": relative_errors(p, truth, smooth=False) if p is not None else None,
                     "test_nrmse": task.nrmse(r["estimator"].predict(task.x_test)),
                     "load": [round(load, 2), round(os.getloadavg()[0], 2)]}
    return out


def run(n: int, n_train: int, n_test: int, levels, steps: int, budget: float, seed: int, smoke: bool,
        estimator_budget: float | None = None) -> dict:
    task = tasks.make("varcoef-adr", n=n, n_train=n_train, n_test=n_test, seed=seed, cache=not smoke)
    truth = {k: np.asarray(v) for k, v in task.truth.items()}
    rng = np.random.default_rng([seed, 2])
    rows = []
    for level in levels:
        load = os.getloadavg()[0]
        y = add_noise(task.y_train, level, rng)
        r = fit(task.x_train, y, n, steps, budget)
        pred = r["net"].forward(task.x_test, r["theta"])
        rows.append({"noise": level, "errors": relative_errors(r["theta"], truth),
                     "raw_errors": relative_errors(r["theta"], truth, smooth=False),
                     "test_nrmse": task.nrmse(pred), "homogeneous": r["homogeneous"], "iterations": r["iterations"],
                     "seconds": r["seconds"], "max_gain_per_layer": r["max_gain_per_layer"], "stable": r["stable"],
                     "load": [round(load, 2), round(os.getloadavg()[0], 2)]})
        if estimator_budget and not (smoke and rows[:-1]):      # the smoke test: the first level, told the structure
            rows[-1]["estimator"] = _estimator_rows(task, y, truth, estimator_budget, seed,
                                                    ("structured",) if smoke else ("structured", "default"))
        print(f"noise {level:g}: " + ", ".join(f"{k} {v:.2e}" for k, v in rows[-1]["errors"].items())
              + f"; test nRMSE {rows[-1]['test_nrmse']:.2e}; {r['seconds']:.0f} s", flush=True)
    return {"task": "varcoef-adr", "n": n, "n_train": n_train, "n_test": n_test, "seed": seed, "steps": steps,
            "budget": budget, "estimator_budget": estimator_budget, "smoke": smoke, "rows": rows, "goals": GOALS,
            "date": date.today().isoformat(),
            "machine": f"{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            "command": "python examples/experiments/recovery.py" + (" --smoke" if smoke else
                                                                    f" --n {n} --steps {steps} --budget {budget:g}"
                                                                    f" --estimator-budget {estimator_budget or 0:g}")}


def markdown(rec: dict) -> str:
    from run import _commit
    head = ["# Coefficient recovery vs noise (varcoef-adr)", "",
            f"`{rec['command']}` — {rec['date']}, commit {_commit()}, {rec['machine']}; n = {rec['n']}, "
            f"{rec['n_train']} train / {rec['n_test']} test, seed {rec['seed']}, at most {rec['steps']} L-BFGS "
            f"iterations and {rec['budget']:g} s per noise level" + (" (smoke)" if rec["smoke"] else "") + ".", "",
            "Low-passed relative L2 error ‖S(θ̂) − S(θ)‖/‖θ‖ (S: moving average over 5 sites); goal without "
            f"noise: U ≤ {GOALS['U']:g}, D ≤ {GOALS['D']:g}, R ≤ {GOALS['R']:g}. In brackets: without the low pass.",
            "", "| noise | U | D | R | test nRMSE (clean) | max gain/layer | iterations (hom., het.) | seconds "
            "| load |",
            "|---|---|---|---|---|---|---|---|---|"]
    for r in rec["rows"]:
        e, raw = r["errors"], r["raw_errors"]
        cells = [f"{e[k]:.2e} ({raw[k]:.1e})" + (" ✓" if r["noise"] == 0 and e[k] <= GOALS[k] else "")
                 for k in ("U", "D", "R")]
        head.append(f"| {r['noise']:g} | " + " | ".join(cells) + f" | {r['test_nrmse']:.2e} | "
                    f"{r['max_gain_per_layer']:.6f} | {r['iterations'][0]}, {r['iterations'][1]} | "
                    f"{r['seconds']:.0f} | {r['load'][0]:.1f}→{r['load'][1]:.1f} |")
    if any("estimator" in r for r in rec["rows"]):
        head += ["", f"## The estimator ({rec['estimator_budget']:g} s per fit)", "",
                 "*told the structure*: moments kind, width 3, depth 32, ω = 0.8, identity, grid units; *default*: the "
                 "default search in grid units, a `moments` winner's profiles scaled by its duration ω̂L̂ / 25.6 "
                 "(other kinds: n/a). Low-passed errors as above (in brackets without the low pass).", "",
                 "| noise | search | recipe | U | D | R | test nRMSE (clean) | seconds | load |",
                 "|---|---|---|---|---|---|---|---|---|"]
        for r in rec["rows"]:
            for name, e in r.get("estimator", {}).items():
                rc = e["recipe"]
                label = f"{rc['kind']}/{rc['family']}/w{rc['width']}/L{rc['depth']}/{rc['activation']}/ω {rc['omega']:g}"
                if e["errors"] is None:
                    cells = ["n/a"] * 3
                else:
                    cells = [f"{e['errors'][k]:.2e} ({e['raw_errors'][k]:.1e})"
                             + (" ✓" if r["noise"] == 0 and e["errors"][k] <= GOALS[k] else "") for k in ("U", "D", "R")]
                head.append(f"| {r['noise']:g} | {'told the structure' if name == 'structured' else 'default'} | "
                            f"{label} | " + " | ".join(cells) + f" | {e['test_nrmse']:.2e} | {e['seconds']:.0f} | "
                            f"{e['load'][0]:.1f}→{e['load'][1]:.1f} |")
    return "\n".join(head + [""])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--n-train", type=int, default=256)
    p.add_argument("--n-test", type=int, default=64)
    p.add_argument("--noise", type=float, nargs="+", default=[0.0, 1e-3, 1e-2])
    p.add_argument("--steps", type=int, default=500, help="L-BFGS iterations of the heterogeneous stage")
    p.add_argument("--budget", type=float, default=600.0, help="seconds per noise level")
    p.add_argument("--estimator-budget", type=float, default=120.0,
                   help="seconds per estimator fit (two per noise level); 0: skip the estimator")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="examples/experiments/results")
    p.add_argument("--smoke", action="store_true", help="tiny sizes (CI)")
    a = p.parse_args(argv)
    if a.smoke:
        a.n, a.n_train, a.n_test, a.steps, a.budget = 32, 16, 8, 10, 20.0
        a.estimator_budget = min(a.estimator_budget, 6.0)
    if not (np.isfinite(a.estimator_budget) and a.estimator_budget >= 0):
        p.error(f"--estimator-budget must be a finite number >= 0, got {a.estimator_budget!r}")
    rec = run(a.n, a.n_train, a.n_test, a.noise, a.steps, a.budget, a.seed, a.smoke, a.estimator_budget or None)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "recovery.json", json.dumps(rec, indent=1) + "\n", mode="umask")
    write_atomic(out / "recovery.md", markdown(rec), mode="umask")
    return 0


if __name__ == "__main__":
    sys.exit(main())
