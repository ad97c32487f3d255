"""``npdegen fit X.npy Y.npy --budget 60 --out DIR``: fit a neural PDE to snapshot pairs from the shell.

``X.npy`` and ``Y.npy`` hold ``u(0)`` and ``u(T)`` shaped ``(n_samples, *grid)`` (read without
pickles). :class:`~npdegen.estimator.NeuralPDERegressor` searches its recipe space within the budget;
written into ``DIR`` (each file atomically):

* ``model.pkl`` — the fitted estimator (``pickle.load`` it, then ``.predict``);
* ``model.json`` — the winning recipe, its parameters (lists), the grid, scores and fitted physics;
* ``report.txt`` — the search report (every recipe tried, skipped or failed, with why), the winner,
  its physics table with the fitted values, and its stability certificate;
* ``predictions.png``, ``search.png``, ``moments.png`` (heterogeneous and time-dependent winners) —
  only with matplotlib; without it one line says the plots were skipped.
"""
from __future__ import annotations

import argparse
import io
import json
import pickle
import sys
import traceback
from pathlib import Path

import numpy as np

from ..runtime.atomic import write_atomic

__all__ = ["add_parser", "build_parser", "run", "fit_main"]

_CHOICES = ("periodic", "dirichlet", "neumann")


def _options(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("x", metavar="X.npy", help="initial snapshots u(0), shaped (n_samples, *grid)")
    p.add_argument("y", metavar="Y.npy", help="final snapshots u(T), shaped like X")
    p.add_argument("--budget", type=float, default=60.0, help="seconds for the search (default %(default)s)")
    p.add_argument("--out", default="npdegen-fit", help="folder for the model, report and plots (default %(default)s)")
    p.add_argument("--boundary", choices=_CHOICES, default="periodic", help="grid boundary (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the validation split and random starts (default 0)")
    p.add_argument("--spacing", type=float, help="grid spacing (default: the unit domain, 1/n per axis)")
    p.add_argument("--families", help="comma list (default homogeneous,heterogeneous,time-dependent)")
    p.add_argument("--widths", help="comma list of odd stencil widths (default 3,5)")
    p.add_argument("--depths", help="comma list of layer counts (default 4,16,64)")
    p.add_argument("--activations", help="comma list of identity,tanh,reaction (default all three)")
    p.add_argument("--kinds", help="comma list of layer kinds: star,moments,nonlocal,flux,transport (default: all; "
                   "each is tried where it applies to the grid)")
    p.add_argument("--no-plot", action="store_true", help="skip the plots (no matplotlib needed)")
    p.add_argument("--verbose", action="store_true", help="print one line per recipe tried")
    return p


def add_parser(subparsers, parents=()):
    """Add the ``fit`` command to an ``argparse`` sub-parser collection (``func=run``)."""
    p = subparsers.add_parser("fit", help="fit a neural PDE to snapshot pairs X.npy -> Y.npy within a time budget",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                              parents=list(parents))
    _options(p).set_defaults(func=run)
    return p


def build_parser() -> argparse.ArgumentParser:
    """The stand-alone parser of ``npdegen fit``."""
    p = argparse.ArgumentParser(prog="npdegen fit", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    return _options(p)


def _list(text, what, cast=str):
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ValueError(f"--{what} needs a comma-separated list, got {text!r}")
    try:
        return tuple(cast(t) for t in items)
    except ValueError:
        raise ValueError(f"--{what}: {text!r} is not a comma list of integers") from None


def _load(path, what) -> np.ndarray:
    path = Path(path)
    if path.suffix != ".npy":
        raise ValueError(f"{what} must be a .npy file, got {path}")
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise ValueError(f"{path}: not a plain numeric .npy array ({exc})") from None


def _json(est, report_rows) -> str:
    r = est.recipe_
    best = next((e for e in report_rows if e.get("status") == "fitted"
                 and e.get("recipe") == f"{r['kind']}/{r['family']}/w{r['width']}/L{r['depth']}/{r['activation']}"), {})
    doc = {
        "recipe": r,
        "layer": repr(est.layer_),
        "parameters": {k: np.asarray(v).tolist() for k, v in est.theta_.items()},
        "n_params": int(sum(np.size(v) for v in est.theta_.values())),
        "grid": list(est.grid_), "spacing": list(est.spacing_), "boundary": est.boundary,
        "train_nrmse": best.get("train_nrmse"), "validation_nrmse": est.validation_nrmse_,
        "fit_seconds": est.fit_seconds_, "settings": {k: (list(v) if isinstance(v, tuple) else v)
                                                       for k, v in est.get_params().items()},
        "physics": est.physics_.rows() if hasattr(est.physics_, "rows") and callable(est.physics_.rows)
        else str(est.physics_),
        "search": report_rows,
    }
    return json.dumps(doc, indent=1, default=lambda o: o.item() if hasattr(o, "item") else str(o)) + "\n"


def _stability(est) -> str:
    """The stability certificate of the fitted network (:func:`npdegen.stability`), or why none."""
    from ..inspect.stability import stability
    try:
        cert = stability(est.network_, {k: np.asarray(v) for k, v in est.theta_.items()})
    except Exception as exc:  # noqa: BLE001 - a report line must not hide the fitted model
        return f"stability: not available ({' '.join(str(exc).split())[:200]})"
    return "stability of the fitted network:\n" + "\n".join("  " + line for line in str(cert).splitlines())


def _plots(est, X, Y, out: Path) -> list:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return []
    written = []

    def save(fig, name):
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        written.append(write_atomic(out / name, buf.getvalue(), mode="umask"))

    k = min(3, X.shape[0])
    pred = est.predict(X[:k])
    fig = Figure(figsize=(5 * k, 3.4), layout="constrained")
    for i in range(k):
        ax = fig.add_subplot(1, k, i + 1)
        if X.ndim == 2:
            ax.plot(X[i], color="0.6", lw=1, label="X = u(0)")
            ax.plot(Y[i], color="C0", lw=2, label="Y = u(T)")
            ax.plot(pred[i], "--", color="C3", lw=1.5, label="prediction")
            ax.legend(fontsize=7)
        else:
            im = ax.imshow(np.reshape(pred[i] - Y[i], Y.shape[1:3] + (-1,))[..., 0], cmap="RdBu_r")
            fig.colorbar(im, ax=ax, label="prediction − Y")
        ax.set_title(f"sample {i}")
    save(fig, "predictions.png")
    rows = [e for e in est.search_report_ if e.get("status") == "fitted"]
    fig = Figure(figsize=(5.5, 3.8), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    for c, family in enumerate(("homogeneous", "heterogeneous", "time-dependent")):
        pts = [(e["n_params"], max(e["val_nrmse"], 1e-16)) for e in rows if e.get("family") == family]
        if pts:
            ax.scatter(*zip(*pts), color=f"C{c}", label=family)
    ax.set(xscale="log", yscale="log", xlabel="parameters", ylabel="validation nRMSE", title="recipes tried")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    save(fig, "search.png")
    coeffs = getattr(est.physics_, "coefficients", None)
    if est.recipe_["family"] != "homogeneous" and X.ndim == 2 and coeffs:
        fig = Figure(figsize=(5 * len(coeffs), 3.2), layout="constrained")
        for i, (order, values) in enumerate(coeffs.items()):
            ax = fig.add_subplot(1, len(coeffs), i + 1)
            v = np.atleast_2d(values)
            for row in v:
                ax.plot(row, lw=1, alpha=0.6 if len(v) > 1 else 1)
            ax.set(title=f"W_{order}/{order}!", xlabel="site")
        save(fig, "moments.png")
    return written


def run(args) -> int:
    """Fit, write the files, print where they are."""
    from .regressor import NeuralPDERegressor
    X, Y = _load(args.x, "X"), _load(args.y, "Y")
    params = dict(budget=args.budget, boundary=args.boundary, random_state=args.seed, verbose=args.verbose)
    if args.spacing is not None:
        params["spacing"] = args.spacing
    for name, cast in (("families", str), ("widths", int), ("depths", int), ("activations", str), ("kinds", str)):
        value = _list(getattr(args, name), name, cast)
        if value is not None:
            params[name] = value
    est = NeuralPDERegressor(**params).fit(X, Y)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in e.items()} for e in est.search_report_]
    written = [write_atomic(out / "model.pkl", pickle.dumps(est), mode="umask"),
               write_atomic(out / "model.json", _json(est, rows), mode="umask")]
    report = est.report() + "\n\n" + _stability(est) + "\n"
    written.append(write_atomic(out / "report.txt", report, mode="umask"))
    if args.no_plot:
        plots_note = "plots: skipped (--no-plot)"
    else:
        plots = _plots(est, X, Y, out)
        written += plots
        plots_note = "" if plots else "plots: skipped (matplotlib is not installed: pip install 'npdegen[plot]')"
    print(report)
    if plots_note:
        print(plots_note)
    for path in written:
        print(f"wrote {path}")
    return 0


def fit_main(argv=None) -> int:
    """``npdegen fit …`` as a function: exit status 0, or 2 with one ``npdegen fit: error: …`` line."""
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except KeyboardInterrupt:
        print("npdegen fit: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the command line turns any failure into one clean message
        if args.debug:
            traceback.print_exc()
        message = " ".join(str(exc).split()) or type(exc).__name__
        kind = "" if isinstance(exc, (ValueError, TypeError, OSError)) else f"{type(exc).__name__}: "
        print(f"npdegen fit: error: {kind}{message}" + ("" if args.debug else " (--debug for the traceback)"),
              file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(fit_main())
