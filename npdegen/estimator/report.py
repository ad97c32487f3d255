"""The search report as a text table."""
from __future__ import annotations

__all__ = ["format_report"]


def _number(v) -> str:
    return "-" if v is None else (f"{v:.3e}" if isinstance(v, float) else str(v))


def _gain(e) -> str:
    """The gain per layer, ``*`` marking a fit whose stability certificate fails (``-``: none)."""
    if e.get("status") != "fitted" or "certified" not in e:
        return "-"
    g = e.get("gain")
    return ("none" if g is None else f"{g:.6g}") + ("" if e["certified"] else "*")


def format_report(report: list, header: bool = True) -> str:
    """The search report as a text table (one row per recipe tried; ``gain``: per layer, ``*`` when
    the fit is not certified stable, :mod:`npdegen.estimator.choice`)."""
    cols = ("recipe", "status", "n_params", "train_nrmse", "val_nrmse", "gain", "seconds", "note")
    rows = [tuple(_gain(e) if c == "gain" else _number(e.get(c)) if c not in ("recipe", "status", "note")
                  else str(e.get(c) or "") for c in cols) for e in report]
    table = ([cols] if header else []) + rows
    if not table:
        return ""
    widths = [max(len(r[i]) for r in table) for i in range(len(cols))] if header else \
        [40, 8, 8, 10, 10, 9, 8, 0]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in table)
