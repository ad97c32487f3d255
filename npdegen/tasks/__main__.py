"""``python -m npdegen.tasks list | make NAME [options] | verify [--full]``.

* ``list`` — the task names with their equations and settings;
* ``make NAME`` — generate (or load from the cache) a task and print its shapes and norms;
  ``--out DIR`` also writes ``x_train.npy``, ``y_train.npy``, ``x_test.npy``, ``y_test.npy`` (and the
  ``truth_*.npy`` profiles) there, atomically;
* ``verify`` — run the solver checks (:mod:`npdegen.tasks.verify`) and print a table; the exit
  status is 1 if any check fails.
"""
from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np

from ..runtime.atomic import write_atomic
from .registry import describe, make, names
from .verify import format_table, run_checks


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m npdegen.tasks", description="npdegen benchmark tasks")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the tasks")
    m = sub.add_parser("make", help="generate a task (cached)")
    m.add_argument("name")
    m.add_argument("--n", type=int, default=None, help="cells per axis (default 256 in 1-D, 64 in 2-D)")
    m.add_argument("--n-train", type=int, default=256)
    m.add_argument("--n-test", type=int, default=64)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--no-cache", action="store_true", help="neither read nor write the task cache")
    m.add_argument("--cache-dir", default=None, help="cache folder (default $NPDEGEN_TASK_DIR or ~/.cache/npdegen/tasks)")
    m.add_argument("--out", default=None, help="also write the arrays as .npy files into this folder")
    v = sub.add_parser("verify", help="run the solver checks and print a table")
    v.add_argument("--full", action="store_true", help="larger grids and more samples (minutes)")
    return p


def _save_npy(path: Path, array) -> None:
    def write(fh):
        buf = io.BytesIO()
        np.save(buf, np.asarray(array), allow_pickle=False)
        fh.write(buf.getvalue())
    write_atomic(path, write, mode="umask")


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "list":
        for name in names():
            print(describe(name))
        return 0
    if args.command == "verify":
        rows = run_checks(full=args.full)
        print(format_table(rows))
        failed = [r for r in rows if not r.ok]
        print(f"{len(rows) - len(failed)}/{len(rows)} checks passed")
        return 1 if failed else 0
    try:
        cache = False if args.no_cache else (args.cache_dir or True)
        task = make(args.name, n=args.n, n_train=args.n_train, n_test=args.n_test, seed=args.seed, cache=cache)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(describe(task.name))
    for key in ("x_train", "y_train", "x_test", "y_test"):
        a = getattr(task, key)
        print(f"  {key:8s} {str(a.shape):18s} rms {np.sqrt(np.mean(a ** 2)) if a.size else float('nan'):.4g}")
    if task.truth:
        print("  truth    " + ", ".join(f"{k} [{v.min():.3g}, {v.max():.3g}]" for k, v in task.truth.items()))
    if args.out:
        out = Path(args.out)
        arrays = {k: getattr(task, k) for k in ("x_train", "y_train", "x_test", "y_test")}
        arrays.update({f"truth_{k}": v for k, v in (task.truth or {}).items()})
        for key, a in arrays.items():
            _save_npy(out / f"{key}.npy", a)
        print(f"  wrote {len(arrays)} arrays to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
