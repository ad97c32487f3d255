"""What a soft-min or min-plus layer computes, read off its stencil: the viscous Hamilton–Jacobi step
(mass, drift and diffusion from the moments of the Cole–Hopf partner, the Hamiltonian) and the
Hopf–Lax step of the ε → 0 limit. Layers are recognised by what they hold (a min-plus layer has
``costs`` and no ``eps``), so this module depends on no layer class.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

__all__ = ["hamilton_jacobi", "hopf_lax_reading"]


def _is_minplus(layer) -> bool:
    if hasattr(layer, "costs") and getattr(layer, "eps", None) is None:
        return True
    if hasattr(layer, "eps") and hasattr(layer, "weights"):
        return False
    raise TypeError(f"expected a SoftminLayer or MinPlusLayer, got {type(layer).__name__}")


@dataclass(frozen=True)
class _Reading:
    rows: tuple

    def __str__(self):
        width = max(len(a) for a, _ in self.rows)
        return "\n".join(f"{a:<{width}}  {b}" for a, b in self.rows)


def hamilton_jacobi(layer, spacing=None) -> _Reading:
    """The viscous Hamilton–Jacobi step of a soft-min layer (module docstring), from its stencil moments
    (``spacing``: numbers for ``Delta``, as for :meth:`~npdegen.NeuralPDE.moments`; ``None`` keeps symbols)."""
    if _is_minplus(layer):
        return hopf_lax_reading(layer)
    dim = layer.dim
    moments = layer.moments(2, spacing=spacing)
    key = (lambda a: a[0]) if dim == 1 else (lambda a: a)
    unit = [tuple(int(k == j) for k in range(dim)) for j in range(dim)]
    w0 = sp.simplify(moments[key((0,) * dim)])
    b = [sp.simplify(moments[key(u)] / w0) for u in unit]
    A = sp.Matrix(dim, dim, lambda k, l: sp.simplify(moments[key(tuple(a + c for a, c in zip(unit[k], unit[l])))] / w0))
    coords = layer.spec.coordinates
    p = sp.Matrix([sp.Symbol(f"p_{c}") for c in coords]) if dim > 1 else sp.Matrix([sp.Symbol("p")])
    eps = layer.eps
    H = sp.simplify(eps * sp.log(w0) - (sp.Matrix(b).T * p)[0] + (p.T * A * p)[0] / (2 * eps))
    grad = f"u_{coords[0]}" if dim == 1 else "grad u"
    rows = (("soft-min stencil", ", ".join(f"{o if dim > 1 else o[0]}: {sp.sstr(w)}" for o, w in layer.weights.items())),
            ("temperature eps", sp.sstr(eps)),
            ("Cole-Hopf partner", "phi' = sum_j w_j phi(x + o_j Delta),  u = -eps log phi"),
            ("mass W0", sp.sstr(w0)),
            ("drift b = W1/W0", sp.sstr(b[0] if dim == 1 else b)),
            ("A = W2/W0", sp.sstr(A[0, 0] if dim == 1 else A)),
            ("viscous HJ step", f"u_t + H({grad}) = (1/2) A : hess u  (viscosity A/2)"),
            ("Hamiltonian H(p)", sp.sstr(H)))
    return _Reading(rows)


def hopf_lax_reading(layer) -> _Reading:
    """What a min-plus layer computes: one dynamic-programming (Hopf–Lax) step on the stencil."""
    if not _is_minplus(layer):
        raise TypeError("hopf_lax_reading is for min-plus layers; use hamilton_jacobi for soft-min layers")
    dim = layer.dim
    costs = ", ".join(f"{o if dim > 1 else o[0]}: {sp.sstr(c)}" for o, c in layer.costs.items())
    return _Reading((("min-plus stencil", "Z_i = min_j (z[i + o_j] + c_j)"), ("costs c_j", costs),
                     ("Hopf-Lax step", "u(x, t + dt) = min_y {u(y, t) + dt L((x - y)/dt)} with c_j = dt L(-o_j Delta/dt)"),
                     ("adjoint", "sub-gradient of the lowest-offset minimiser (ties: lowest offset wins)"),
                     ("soft version", "soften(eps): weights exp(-c_j/eps), converges as eps -> 0 at rate eps log K")))
