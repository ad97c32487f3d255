"""Plot the experiments: test nRMSE against the number of parameters and against training seconds,
one panel per task, from ``results.jsonl`` (the latest row of every task and model, as in results.md;
the pooled nRMSE for tasks in ``POOLED``, whose per-sample mean is ill-conditioned).

The dashed line in each panel is the FNO reference nRMSE of issue 16's goal figures (an FNO of
~0.5 M parameters trained to convergence on tasks of this kind, not measured here); the ``fno``
point is this machine's FNO after the same wall-clock budget as the npdegen models. Usage::

    python examples/experiments/plot.py                               # results/ → results/nrmse.png
    python examples/experiments/plot.py --results DIR --out FILE.png
"""
from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import latest  # noqa: E402

from npdegen.runtime.atomic import write_atomic  # noqa: E402

#: issue 16's reference FNO test nRMSE ("Goal figures"), quoted, for the dashed lines
REFERENCE_FNO = {"advection-beta0.4-T0.5": 7.5e-3, "burgers-nu0.01": 0.14, "fisher-kpp": 9.5e-4, "varcoef-adr": 1.9e-2}
#: tasks whose per-sample nRMSE is ill-conditioned (samples that decay to ~0): plotted pooled
POOLED = {"burgers-nu0.1"}
STYLE = {"npdegen": ("tab:blue", "o"), "npdegen-het": ("tab:cyan", "o"), "npdegen-flux": ("tab:green", "s"),
         "npdegen-nonlocal": ("tab:purple", "D"), "dense-linear": ("tab:gray", "x"),
         "circulant-linear": ("tab:brown", "+"), "fno": ("tab:red", "^")}


def figure(records: list):
    """The matplotlib figure: two rows (nRMSE vs parameters, vs seconds), one column per task."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = latest(records)
    tasks = list(rows)
    fig, axes = plt.subplots(2, len(tasks), figsize=(3.2 * len(tasks), 6.0), squeeze=False)
    for j, task in enumerate(tasks):
        for i, key in enumerate(("n_params", "seconds")):
            ax = axes[i][j]
            metric = "pooled" if task in POOLED else "nrmse"
            for model, (row, _) in rows[task].items():
                if metric not in row or not row[metric] > 0:
                    continue
                colour, marker = STYLE.get(model, ("black", "."))
                ax.loglog(max(row[key], 1e-3), row[metric], marker, color=colour, label=model, ms=7)
            if task in REFERENCE_FNO:
                ax.axhline(REFERENCE_FNO[task], ls="--", color="tab:red", lw=1, label="FNO reference (issue)")
            ax.set_xlabel("parameters" if key == "n_params" else "training seconds")
            ax.grid(True, which="major", alpha=0.3)
            if i == 0:
                ax.set_title(task + (" (pooled nRMSE)" if task in POOLED else ""), fontsize=9)
            if j == 0:
                ax.set_ylabel("test nRMSE (mean)")
    handles = {}
    for ax in axes.flat:
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=min(len(handles), 8), fontsize=8)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", default="examples/experiments/results", help="folder with results.jsonl")
    p.add_argument("--out", default=None, help="PNG file (default: RESULTS/nrmse.png)")
    a = p.parse_args(argv)
    log = Path(a.results) / "results.jsonl"
    if not log.exists():
        raise SystemExit(f"{log} does not exist: run examples/experiments/run.py first")
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    buf = io.BytesIO()
    figure(records).savefig(buf, format="png", dpi=110)
    write_atomic(Path(a.out or Path(a.results) / "nrmse.png"), buf.getvalue(), mode="umask")
    return 0


if __name__ == "__main__":
    sys.exit(main())
