"""Which targets can neural ADR layers reach? One task per call: npdegen's estimator against three
baselines, results as a JSON record and a Markdown table row.

For task ``T`` (``npdegen.tasks.make(T)``: pairs u(0) ↦ u(T) on a periodic grid) this trains

* ``npdegen``: ``NeuralPDERegressor(budget=B)`` — its default recipe search (homogeneous →
  heterogeneous → time-dependent families, stencil widths, depths, activations, L-BFGS multistart);
* ``dense-linear`` (n² parameters) and ``circulant-linear`` (n parameters): least squares;
* ``fno``: a 1-D Fourier Neural Operator of ~0.55 M parameters (baselines.py), Adam for the same
  wall-clock budget B (or ``--fno-epochs``);

and reports test nRMSE (mean over samples of ``‖ŷ − y‖/‖y‖``), parameter counts, training seconds,
the winning recipe and the fitted physics. Usage::

    python examples/experiments/run.py advection-beta0.4-T0.5 --budget 120 --out results/
    python examples/experiments/run.py fisher-kpp --smoke          # tiny sizes (the CI smoke test)

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
from baselines import CirculantLinear, DenseLinear, FNO1d, fno_predict, nrmse, train_fno  # noqa: E402

import npdegen.tasks as tasks  # noqa: E402
from npdegen.runtime.atomic import write_atomic  # noqa: E402


def run(name: str, budget: float, n: int, n_train: int, n_test: int, fno_epochs: int, seed: int,
        smoke: bool) -> dict:
    from npdegen.estimator import NeuralPDERegressor
    task = tasks.make(name, n=n, n_train=n_train, n_test=n_test, seed=seed, cache=not smoke)
    if task.dims != 1:
        raise SystemExit(f"{name}: the FNO baseline here is 1-D; 2-D tasks run the estimator only (--no-baselines)")
    rows = {}
    t0 = time.perf_counter()
    est = NeuralPDERegressor(budget=budget, random_state=seed,
                             **(dict(depths=(4,), widths=(3,), n_starts=1, max_iter=20) if smoke else {}))
    est.fit(task.x_train, task.y_train)
    rows["npdegen"] = dict(nrmse=nrmse(est.predict(task.x_test), task.y_test), seconds=time.perf_counter() - t0,
                           n_params=int(sum(np.size(v) for v in est.theta_.values())), recipe=est.recipe_)
    for label, model in (("dense-linear", DenseLinear()), ("circulant-linear", CirculantLinear())):
        t0 = time.perf_counter()
        model.fit(task.x_train, task.y_train)
        rows[label] = dict(nrmse=nrmse(model.predict(task.x_test), task.y_test), seconds=time.perf_counter() - t0,
                           n_params=int(model.n_params_))
    try:
        fno = FNO1d(**(dict(width=8, modes=4, layers=2) if smoke else {}), seed=seed)
        info = train_fno(fno, task.x_train, task.y_train, epochs=fno_epochs, budget=budget, seed=seed)
        rows["fno"] = dict(nrmse=nrmse(fno_predict(fno, task.x_test), task.y_test), seconds=info["seconds"],
                           n_params=int(info["n_params"]), epochs=info["epochs"])
    except ImportError as exc:
        rows["fno"] = dict(skipped=str(exc))
    return dict(task=name, equation=task.equation, n=task.n, n_train=n_train, n_test=n_test, seed=seed,
                budget=budget, smoke=smoke, results=rows, physics=str(est.physics_),
                machine=f"{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                date=date.today().isoformat(), commit=_commit())


def _commit() -> str:
    """The npdegen commit the record was made with (best effort)."""
    import subprocess
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def markdown(records: list) -> str:
    lines = ["| task | model | test nRMSE | parameters | seconds | note |", "|---|---|---|---|---|---|"]
    for rec in records:
        for model, row in rec["results"].items():
            if "skipped" in row:
                lines.append(f"| {rec['task']} | {model} | – | – | – | {row['skipped']} |")
                continue
            note = ", ".join(f"{k} {v}" for k, v in (row.get("recipe") or {}).items())
            lines.append(f"| {rec['task']} | {model} | {row['nrmse']:.3e} | {row['n_params']:,} | "
                         f"{row['seconds']:.1f} | {note}{' (smoke)' if rec['smoke'] else ''} |")
    machines = sorted({f"{r['machine']} ({r['date']}, commit {r.get('commit', 'unknown')})" for r in records})
    return "\n".join(["# Experiments", "", "Machine and date: " + "; ".join(machines), "", *lines, ""])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("task", choices=tasks.names())
    p.add_argument("--budget", type=float, default=120.0, help="seconds for the estimator and for the FNO")
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--n-train", type=int, default=256)
    p.add_argument("--n-test", type=int, default=64)
    p.add_argument("--fno-epochs", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="examples/experiments/results")
    p.add_argument("--smoke", action="store_true", help="tiny sizes and budgets (CI)")
    a = p.parse_args(argv)
    if a.smoke:
        a.n, a.n_train, a.n_test, a.budget, a.fno_epochs = 32, 16, 8, 15.0, 3
    record = run(a.task, a.budget, a.n, a.n_train, a.n_test, a.fno_epochs, a.seed, a.smoke)
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
