r"""The variable-coefficient ADR task: its truth is a heterogeneous neural-ADR network of npdegen itself.

Each of the :math:`L` layers is the relaxed, identity-activation neural ADR step
(docs/theory.md §3) on the periodic cell-centre grid, in grid units (:math:`Δ = 1`):

.. math::
    z_{t+1} = z_t + ω\big(R(q)\, z_t - U(q)\, \partial_q z_t + D(q)\, \partial_q^2 z_t\big),

with second-order central differences, i.e. the stencil
:math:`(U/2 + D,\ 1 + R - 2D,\ -U/2 + D)` on :math:`(z_{i-1}, z_i, z_{i+1})`, written in SymPy as
``z + R*z - U*z.diff(q) + D*z.diff(q, 2)`` with ``U, D, R`` heterogeneous. The profiles are
smooth functions of the physical position :math:`x = (i + 1/2)/n \in (0, 1)`:

.. math::
    U(x) = 0.2 + 0.1\sin 2πx,\qquad D(x) = 0.25 + 0.1\cos 2πx,\qquad R(x) = -0.02 + 0.02\sin 4πx,

in grid units per layer (so the same profiles describe a different continuum PDE at each
``n``: the task is the network, not a continuum limit). With :math:`ω = 0.8`, :math:`L = 32` the
scheme is stable and positive: :math:`ωD \le 0.28 \le 1/2`, :math:`ωU^2 \le 0.072 \le 2D_{\min} = 0.3`,
and the cell Péclet number :math:`|U|/D \le 2`.
"""
from __future__ import annotations

import numpy as np

from .fourier import as_fields, cell_centres

__all__ = ["varcoef_profiles", "varcoef_network", "varcoef_adr", "LAYERS", "OMEGA"]

LAYERS = 32
OMEGA = 0.8


def varcoef_profiles(n: int) -> dict:
    """The true ``U, D, R`` at the ``n`` cell centres of (0, 1) (module docstring), grid units per layer."""
    x = cell_centres(n)
    return {"U": 0.2 + 0.1 * np.sin(2 * np.pi * x),
            "D": 0.25 + 0.1 * np.cos(2 * np.pi * x),
            "R": -0.02 + 0.02 * np.sin(4 * np.pi * x)}


def varcoef_network(n: int, layers: int = LAYERS, omega: float = OMEGA, backend: str = "numpy"):
    """The heterogeneous neural-ADR :class:`npdegen.Network` (identity activation, periodic, spacing 1)."""
    import sympy as sp

    from ..layer import NeuralPDE

    q = sp.Symbol("q")
    z = sp.Function("z")(q)
    U, D, R = sp.symbols("U D R")
    layer = NeuralPDE(z + R * z - U * z.diff(q) + D * z.diff(q, 2), z, activation="identity",
                      params={U: "heterogeneous", D: "heterogeneous", R: "heterogeneous"}, name="task_varcoef_adr")
    return layer.compile(n=n, spacing=1.0, layers=layers, omega=omega, boundary="periodic", backend=backend)


def varcoef_adr(u0, layers: int = LAYERS, omega: float = OMEGA, profiles: dict | None = None) -> np.ndarray:
    """The network's output for inputs ``u0`` ``(batch, n)``, with the true profiles unless ``profiles`` is given."""
    u = as_fields(u0, 1)
    n = u.shape[1]
    theta = varcoef_profiles(n) if profiles is None else profiles
    return np.asarray(varcoef_network(n, layers, omega).forward(u, theta), dtype=np.float64)
