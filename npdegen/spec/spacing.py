"""The symbols a user writes for the grid spacing: ``Delta`` in 1-D, ``Delta_<coordinate>`` in N-D.

They appear in symbolic stencils (``layer.stencil()``) and in explicit shifted accesses of the
field, ``z(q + Delta)`` or ``z(x - 2*Delta_x, y + Delta_y)`` (a free stencil).
"""
from __future__ import annotations

import sympy as sp

__all__ = ["SPACING", "spacing_symbols"]

#: The grid spacing Δ of a 1-D layer as it appears in symbolic stencils (printed ``Delta``).
SPACING = sp.Symbol("Delta", positive=True)


def spacing_symbols(coordinates) -> tuple:
    """The symbolic spacings of a layer (or of its coordinates): ``(Delta,)`` in 1-D, else
    ``Delta_<coordinate>`` per axis, e.g. ``(Delta_x, Delta_y)``."""
    spec = getattr(coordinates, "spec", None)
    coordinates = tuple(spec.coordinates if spec is not None else coordinates)
    if len(coordinates) == 1:
        return (SPACING,)
    return tuple(sp.Symbol(f"Delta_{c}", positive=True) for c in coordinates)
