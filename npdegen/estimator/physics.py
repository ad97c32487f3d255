r"""The physics of a fitted layer: its :meth:`~npdegen.NeuralPDE.explain` table with numbers.

The table gives every kernel moment ``W_k`` (no ``1/k!``; N-D: ``W_α``) as an expression of the
parameters and names its process (reaction, advection, diffusion, …). :func:`fitted_physics`
evaluates each moment and each PDE coefficient ``W_k/k!`` at the fitted parameters, with the
spacing of the data: a number for the homogeneous family, one per site for the heterogeneous
family (shape ``grid``), one per layer and site for the time-dependent family (shape ``(L, *grid)``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy as sp

__all__ = ["FittedPhysics", "fitted_physics"]


@dataclass
class FittedPhysics:
    """``table``: the symbolic :class:`~npdegen.derive.physics.PhysicsTable`; ``moments`` and
    ``coefficients``: ``{order: values}`` at the fitted parameters; ``str()`` shows them (a value,
    or min / mean / max over sites and layers)."""
    table: object
    moments: dict
    coefficients: dict

    def __iter__(self):
        return iter(self.table)

    def __len__(self):
        return len(self.table)

    def rows(self) -> list:
        """``[{order, process, meaning, moment, coefficient, value, min, mean, max}]`` (JSON-ready)."""
        out = []
        for row in self.table:
            c = np.asarray(self.coefficients[row.order], np.float64)
            out.append({"order": list(row.order) if isinstance(row.order, tuple) else row.order,
                        "process": row.process, "meaning": row.meaning, "moment": sp.sstr(row.moment),
                        "coefficient": sp.sstr(row.coefficient),
                        "value": float(c) if c.ndim == 0 else None,
                        "min": float(c.min()), "mean": float(c.mean()), "max": float(c.max())})
        return out

    def __str__(self) -> str:
        head = ("k", "process", "PDE coefficient W_k/k!", "fitted value (min / mean / max over sites)")
        body = []
        for r in self.rows():
            value = (f"{r['value']:.6g}" if r["value"] is not None
                     else f"{r['min']:.4g} / {r['mean']:.4g} / {r['max']:.4g}")
            order = r["order"] if isinstance(r["order"], int) else tuple(r["order"])
            body.append((str(order), r["process"], r["coefficient"], value))
        widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
        line = lambda row: "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
        return "\n".join([line(head), line(tuple("-" * w for w in widths)), *map(line, body)])


def fitted_physics(layer, theta: dict, spacing) -> FittedPhysics:
    """The explain table of ``layer`` and its moments at ``theta`` (arrays by parameter name) on a
    grid of the given ``spacing`` (a number, or one per axis)."""
    table = layer.explain()
    spacing = tuple(spacing) if isinstance(spacing, (tuple, list)) else (spacing,)
    subs = dict(zip(layer.spacing_symbols, (sp.Float(float(h)) for h in spacing)))
    values = {k: np.asarray(v, np.float64) for k, v in theta.items()}
    moments, coefficients = {}, {}
    for row in table:
        for target, expr in ((moments, row.moment), (coefficients, row.coefficient)):
            expr = expr.xreplace(subs) if isinstance(expr, sp.Basic) else sp.Float(float(expr))
            symbols = sorted(expr.free_symbols, key=lambda s: s.name)
            names = [s.name for s in symbols]
            missing = [n for n in names if n not in values]
            if missing:
                raise ValueError(f"moment {row.order}: parameter(s) {missing} have no fitted value")
            f = sp.lambdify(symbols, expr, "numpy")
            shape = np.broadcast_shapes(*(values[n].shape for n in names)) if names else ()
            target[row.order] = np.broadcast_to(np.asarray(f(*(values[n] for n in names)), np.float64), shape).copy()
    return FittedPhysics(table, moments, coefficients)
