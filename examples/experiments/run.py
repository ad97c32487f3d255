"""Which targets can neural ADR layers reach? One task per call: npdegen's estimator against three
baselines, results as a JSON record and a Markdown table row.

For task ``T`` (``npdegen.tasks.make(T)``: pairs u(0) ↦ u(T) on a periodic grid) this trains

* ``npdegen``: ``NeuralPDERegressor(budget=B)`` — its default recipe search (homogeneous →
  heterogeneous → time-dependent families, stencil widths, depths, activations, L-BFGS multistart);
* ``dense-linear`` (n² parameters) and ``circulant-linear`` (n parameters): least squares;
* ``fno``: a Fourier Neural Operator trained by Adam for the same wall-clock budget B (or
  ``--fno-epochs``; baselines.py): 1-D with ~0.55 M parameters, 2-D (``FNO2d``) with ~0.41 M;

and, where the task calls for a layer kind the estimator does not search yet (extras.py),

* ``npdegen-flux`` (Burgers tasks): a Godunov flux-form layer, 2 parameters, depth from the CFL bound;
* ``npdegen-markov`` (advection tasks): an upwind Markov-chain layer (positive, rows summing to one), 3 logits,
  depth from the data's shift at under one cell per layer (markov_row.py);
* ``npdegen-lse`` (Burgers tasks): soft-min (log-sum-exp) layers on the potential ``½∫u`` — viscous
  Hamilton–Jacobi steps, the Cole–Hopf image of the heat step (lse_row.py), 4 parameters;
* ``npdegen-nonlocal`` (Fisher–KPP tasks): a Gaussian-kernel layer with the logistic flow, 2 parameters;
  (advection tasks): one layer with a shifted Gaussian kernel, 2 parameters;
* ``npdegen-het`` (only with ``--models``): the estimator without the time-dependent family;

and reports test nRMSE (mean over samples of ``‖ŷ − y‖/‖y‖``, and pooled ``‖Ŷ − Y‖/‖Y‖``),
parameter counts, training seconds, the machine's load average while each model trained, the
winning recipe, and every npdegen model's stability (gain per layer) and physics. Usage::

    python examples/experiments/run.py advection-beta0.4-T0.5 --budget 120 --out results/
    python examples/experiments/run.py fisher-kpp --smoke          # tiny sizes (the CI smoke test)
    nice -n 15 python examples/experiments/run.py vorticity-2d --budget 60 --n-train 128 --n-test 32

2-D tasks (``advection-diffusion-2d``, ``fisher-kpp-2d``, ``vorticity-2d``) run the estimator, both
linear baselines and the 2-D FNO on ``--n`` × ``--n`` cells (default 32); the flux and nonlocal rows are 1-D.

Each call appends one JSON line to ``OUT/results.jsonl`` and rewrites ``OUT/results.md`` from all
lines (both written atomically).
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baselines import CirculantLinear, DenseLinear, FNO1d, FNO2d, fno_predict, nrmse, train_fno  # noqa: E402
import lse_row  # noqa: E402
import markov_row  # noqa: E402

import npdegen.tasks as tasks  # noqa: E402
from npdegen.runtime.atomic import write_atomic  # noqa: E402


MODELS = ("npdegen", "npdegen-flux", "npdegen-lse", "npdegen-markov", "npdegen-nonlocal", "dense-linear",
          "circulant-linear", "fno")
#: opt-in rows (``--models``): the estimator without the time-dependent family (at most width · n
#: parameters: ≤ 1 % of the FNO's for n = 256, w ≤ 5)
OPTIONAL = ("npdegen-het",)


def name_dims(name: str) -> int:
    """Grid axes of the task ``name``."""
    return len(tasks.settings(name)["lengths"])


def _load() -> float:
    """The 1-minute load average (the number of runnable processes; this machine has os.cpu_count() cores)."""
    try:
        return float(os.getloadavg()[0])
    except OSError:                                  # pragma: no cover - platforms without getloadavg
        return float("nan")


def _row(task, pred, seconds: float, n_params: int, load: float, **extra) -> dict:
    return dict(nrmse=nrmse(pred, task.y_test), pooled=task.nrmse(np.reshape(pred, task.y_test.shape), pooled=True),
                seconds=seconds, n_params=int(n_params), load=[round(load, 2), round(_load(), 2)], **extra)


def pooled_metric(y, ratio: float = 1e-8) -> bool:
    """True when the per-sample relative error is ill-conditioned: some target's norm is below ``ratio``
    times the largest (smallest/largest: 5e-18 on burgers-nu0.1, where modes decay by e^-80; 6e-4 on
    burgers-nu0.01). Such tasks are judged by the pooled nRMSE, and the flux row and the FNO then train
    on a pooled loss instead of the mean relative one."""
    norms = np.linalg.norm(np.reshape(y, (len(y), -1)), axis=1)
    return bool(norms.min() < ratio * norms.max())


def applicable(task, models=MODELS) -> list:
    """The models of ``models`` that run on ``task``: the flux and soft-min rows on Burgers, the Markov row
    on advection, the nonlocal row on Fisher–KPP and advection."""
    kind = task.settings["kind"]
    if task.dims != 1:                  # the hand-built rows are 1-D layers
        return [m for m in models if m not in ("npdegen-flux", "npdegen-lse", "npdegen-markov", "npdegen-nonlocal")]
    return [m for m in models if (m not in ("npdegen-flux", "npdegen-lse") or kind == "burgers")
            and (m != "npdegen-markov" or kind == "advection")
            and (m != "npdegen-nonlocal" or kind in ("fisher", "advection"))]


def run(name: str, budget: float, n: int, n_train: int, n_test: int, fno_epochs: int, seed: int,
        smoke: bool, models=MODELS, nonlocal_depths=(16, 32, 64, 128)) -> dict:
    import extras
    task = tasks.make(name, n=n, n_train=n_train, n_test=n_test, seed=seed, cache=not smoke)
    rows, inspect = {}, {}
    pooled = pooled_metric(task.y_train)
    for model in applicable(task, models):
        load, t0 = _load(), time.perf_counter()
        if model in ("npdegen", "npdegen-het"):
            from npdegen.estimator import NeuralPDERegressor
            families = {} if model == "npdegen" else dict(families=("homogeneous", "heterogeneous"))
            est = NeuralPDERegressor(budget=budget, random_state=seed, **families,
                                     **(dict(depths=(4,), widths=(3,), n_starts=1, max_iter=20) if smoke else {}))
            est.fit(task.x_train, task.y_train)
            seconds = time.perf_counter() - t0
            rows[model] = _row(task, est.predict(task.x_test), seconds, sum(np.size(v) for v in est.theta_.values()),
                               load, recipe=est.recipe_, validation_nrmse=float(est.validation_nrmse_),
                               tried=len(est.search_report_), certified=bool(est.certified_),
                               gain_per_layer=(est.certificate_ or {}).get("gain_per_layer"))
            inspect[model] = extras.summary("estimator", est=est)
            from npdegen.estimator.search import format_report
            inspect[model]["search_report"] = format_report(est.search_report_)
        elif model in ("npdegen-flux", "npdegen-nonlocal"):
            h = task.spacing[0]
            if model == "npdegen-flux":
                nu_max = 1.25 * task.settings["nu"] / np.pi      # the task's viscosity nu/pi, with a margin
                fit = extras.fit_flux(task.x_train, task.y_train, task.settings["T"], h, budget, nu_max=nu_max,
                                      steps=5 if smoke else 200, loss="sum" if pooled else "relative")
            elif task.settings["kind"] == "advection":
                fit = extras.fit_shift(task.x_train, task.y_train, h, budget, steps=5 if smoke else 100)
            else:
                fit = extras.fit_nonlocal(task.x_train, task.y_train, h, budget, depths=nonlocal_depths,
                                          steps=5 if smoke else 100)
            rows[model] = _row(task, fit["net"].forward(task.x_test, fit["theta"]), fit["seconds"],
                               sum(np.size(v) for v in fit["theta"].values()), load, depth=fit["depth"],
                               iterations=fit["iterations"], train_nrmse=fit["train_nrmse"],
                               **({"tried": fit["tried"]} if "tried" in fit else {}))
            inspect[model] = extras.summary("flux" if model == "npdegen-flux" else "shift" if "start_mu" in fit
                                            else "nonlocal", fit)
        elif model == "npdegen-lse":
            h, T = task.spacing[0], task.settings["T"]
            fit = lse_row.fit_lse(task.x_train, task.y_train, T, h, budget, eps_max=1.25 * task.settings["nu"] / np.pi,
                                  steps=5 if smoke else 200)
            rows[model] = _row(task, lse_row.predict_lse(fit["net"], fit["theta"], task.x_test, T, h), fit["seconds"],
                               len(fit["theta"]), load, depth=fit["depth"], iterations=fit["iterations"],
                               train_nrmse=fit["train_nrmse"])
            inspect[model] = lse_row.summary(fit)
        elif model == "npdegen-markov":
            fit = markov_row.fit_markov(task.x_train, task.y_train, task.spacing[0], budget, steps=5 if smoke else 100)
            rows[model] = _row(task, fit["net"].forward(task.x_test, fit["theta"]), fit["seconds"], len(fit["theta"]),
                               load, depth=fit["depth"], iterations=fit["iterations"], train_nrmse=fit["train_nrmse"])
            inspect[model] = markov_row.summary(fit)
        elif model in ("dense-linear", "circulant-linear"):
            m = DenseLinear() if model == "dense-linear" else CirculantLinear()
            m.fit(task.x_train, task.y_train)
            rows[model] = _row(task, m.predict(task.x_test), time.perf_counter() - t0, m.n_params_, load)
        elif model == "fno":
            try:
                make = FNO1d if task.dims == 1 else FNO2d
                fno = make(**(dict(width=8, modes=4, layers=2) if smoke else {}), seed=seed)
                info = train_fno(fno, task.x_train, task.y_train, epochs=fno_epochs, budget=budget, seed=seed,
                                 loss="pooled" if pooled else "relative")
                rows[model] = _row(task, fno_predict(fno, task.x_test), info["seconds"], info["n_params"], load,
                                   epochs=info["epochs"], threads=info["threads"])
            except ImportError as exc:
                rows[model] = dict(skipped=str(exc))
        else:
            raise ValueError(f"unknown model {model!r}; choose from {', '.join(MODELS + OPTIONAL)}")
    return dict(task=name, equation=task.equation, n=task.n, n_train=n_train, n_test=n_test, seed=seed,
                budget=budget, smoke=smoke, results=rows, inspect=inspect, pooled_metric=pooled,
                machine=f"{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                date=date.today().isoformat(), commit=_commit())


def _commit() -> str:
    """The commit of the checkout this script runs from (best effort), with ``+uncommitted`` when its
    npdegen/ differs from that commit (then the numbers are not reproducible from the commit alone)."""
    import subprocess
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
                              cwd=here).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", str(here.parents[1] / "npdegen")],
                               capture_output=True, text=True, timeout=30, cwd=here).stdout.strip()
        return (head + ("+uncommitted" if dirty else "")) if head else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def latest(records: list) -> dict:
    """``{task: {model: (row, record)}}``: the latest row of every model on every task (calls that ran
    a subset of the models, ``--models``, merge with earlier ones)."""
    out = {}
    for rec in records:
        for model, row in rec["results"].items():
            out.setdefault(rec["task"], {})[model] = (row, rec)
    return out


def _note(row: dict) -> str:
    if "recipe" in row:
        r = row["recipe"]
        cert = {True: ", certified", False: ", NOT certified"}.get(row.get("certified"), "")
        return (f"{r['kind']}/{r['family']}/w{r['width']}/L{r['depth']}/{r['activation']}, "
                f"{row.get('tried', '?')} tried{cert}")
    if "depth" in row:
        tried = f"; depths tried {', '.join(map(str, row['tried']))}" if isinstance(row.get("tried"), dict) else ""
        return f"L = {row['depth']}, {row['iterations']} L-BFGS iterations / evaluations{tried}"
    if "epochs" in row:
        return f"{row['epochs']} epochs" + (f", {row['threads']} thread(s)" if "threads" in row else ", 2 threads")
    return ""


def markdown(records: list) -> str:
    """The results table (latest row per task and model) and every npdegen model's stability and physics."""
    lines = ["| task | model | test nRMSE (mean) | pooled | parameters | seconds | load | recipe / note |",
             "|---|---|---|---|---|---|---|---|"]
    inspect, sources = [], []
    for task, models in latest(records).items():
        order = MODELS[:1] + OPTIONAL + MODELS[1:]
        for model in sorted(models, key=lambda m: order.index(m) if m in order else len(order)):
            row, rec = models[model]
            smoke = " (smoke)" if rec["smoke"] else ""
            if "skipped" in row:
                lines.append(f"| {task} | {model} | – | – | – | – | – | {row['skipped']} |")
                continue
            load = row.get("load")
            load = f"{load[0]:.1f}→{load[1]:.1f}" if load else "–"
            pooled = f"{row['pooled']:.3e}" if "pooled" in row else "–"
            lines.append(f"| {task} | {model} | {row['nrmse']:.3e} | {pooled} | {row['n_params']:,} | "
                         f"{row['seconds']:.1f} | {load} | {_note(row)}{smoke} |")
            sources.append(f"{task} / {model}: {rec['date']}, commit {rec.get('commit', 'unknown')}, "
                           f"{rec['machine']}, budget {rec['budget']:g} s, n {rec['n']}, "
                           f"{rec['n_train']} train / {rec['n_test']} test, seed {rec['seed']}")
            info = rec.get("inspect", {}).get(model)
            if info:
                stab = info.get("stability")
                if isinstance(stab, dict) and "error" in stab and "certified" in row:   # a kind npdegen.stability
                    stab = {"estimator_certificate": {"certified": row["certified"],     # does not cover (nonlocal,
                                                      "gain_per_layer": row.get("gain_per_layer")},   # flux): the
                            "npdegen.stability": stab["error"]}                         # estimator's own
                inspect += [f"### {task} — {model}", "", "Stability: " + json.dumps(stab), ""]
                phys = info.get("physics")
                inspect += (["```", phys, "```", ""] if isinstance(phys, str)
                            else ["Physics: " + json.dumps(phys), ""])
                if info.get("search_report"):
                    inspect += ["<details><summary>recipes tried</summary>", "", "```", info["search_report"], "```",
                                "", "</details>", ""]
    return "\n".join(["# Experiments", "", "Load: the 1-minute load average when the model started → when it "
                      "finished (the machine's cores are shared).", "", *lines, "", "## Runs", "",
                      *(f"- {s}" for s in sources), "", "## Stability (gain per layer) and physics of the npdegen "
                      "models", "", *inspect])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("task", choices=tasks.names())
    p.add_argument("--budget", type=float, default=120.0, help="seconds for the estimator and for the FNO")
    p.add_argument("--n", type=int, default=None, help="cells per axis (default 256 for 1-D tasks, 32 for 2-D)")
    p.add_argument("--n-train", type=int, default=256)
    p.add_argument("--n-test", type=int, default=64)
    p.add_argument("--fno-epochs", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="examples/experiments/results")
    p.add_argument("--models", nargs="+", choices=MODELS + OPTIONAL, default=list(MODELS),
                   help="the models to run (the flux row runs on Burgers tasks only, the nonlocal row on Fisher-KPP "
                        "and advection)")
    p.add_argument("--nonlocal-depths", type=int, nargs="+", default=[16, 32, 64, 128],
                   help="depths the nonlocal row tries (the best on held-out pairs is kept)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes and budgets (CI)")
    a = p.parse_args(argv)
    two_d = name_dims(a.task) == 2
    if a.n is None:
        a.n = 32 if two_d else 256
    if a.smoke:
        a.n, a.n_train, a.n_test, a.budget, a.fno_epochs = 16 if two_d else 32, 16, 8, 10.0, 3
    record = run(a.task, a.budget, a.n, a.n_train, a.n_test, a.fno_epochs, a.seed, a.smoke, tuple(a.models),
                 tuple(a.nonlocal_depths))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "results.jsonl"
    previous = log.read_text() if log.exists() else ""
    write_atomic(log, previous + json.dumps(record) + "\n", mode="umask")
    records = [json.loads(line) for line in (previous + json.dumps(record) + "\n").splitlines() if line.strip()]
    write_atomic(out / "results.md", markdown(records), mode="umask")
    for model, row in record["results"].items():
        print(f"{a.task:28s} {model:18s} " + (f"nRMSE {row['nrmse']:.3e}  params {row['n_params']:>9,}  "
                                             f"{row['seconds']:7.1f} s" if "nrmse" in row else row["skipped"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
