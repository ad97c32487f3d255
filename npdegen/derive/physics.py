"""What each kernel moment does physically (docs/theory.md §2).

Applying a local kernel is, to leading orders,
``Σ_j w_j z(q + jΔ) = W_0 z + W_1 z_q + W_2/2! z_qq + W_3/3! z_qqq + W_4/4! z_qqqq + …``.
Per layer (one unit of time):

* ``W_0`` — amplitude: ``W_0 − 1`` is the reaction rate (growth if > 0, decay if < 0);
* ``W_1`` — advection: ``z_{t+1} ≈ z + W_1 z_q`` transports with velocity ``−W_1``;
* ``W_2/2`` — diffusivity (anti-diffusion if negative: unstable);
* ``W_3/6`` — dispersion;
* ``W_4/24`` — hyper-diffusion coefficient of ``z_qqqq`` (stabilising when negative);
* higher even orders generalised diffusion, odd ones generalised propagation.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import factorial

import sympy as sp

__all__ = ["PROCESSES", "PhysicsRow", "PhysicsTable", "explain_moments", "explain_tensor_moments", "tensor_process"]

PROCESSES = {
    0: ("reaction", "amplitude W0; reaction rate W0 - 1 per layer"),
    1: ("advection", "transport velocity -W1 (towards +q when W1 < 0)"),
    2: ("diffusion", "diffusivity W2/2; negative = anti-diffusion (unstable)"),
    3: ("dispersion", "dispersion coefficient W3/6"),
    4: ("hyper-diffusion", "coefficient W4/24 of z_qqqq; stabilising when negative"),
}


def process_name(order: int) -> tuple[str, str]:
    if order in PROCESSES:
        return PROCESSES[order]
    kind = "generalised diffusion" if order % 2 == 0 else "generalised propagation"
    return kind, f"coefficient W{order}/{order}! of the order-{order} derivative"


@dataclass(frozen=True)
class PhysicsRow:
    order: int
    moment: sp.Expr        # W_k
    coefficient: sp.Expr   # W_k / k!, the coefficient of ∂^k z
    process: str
    meaning: str


@dataclass(frozen=True)
class PhysicsTable:
    """Rows ``moment → process``; ``str(table)`` is a readable table."""
    rows: tuple

    def __iter__(self):
        return iter(self.rows)

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, k):
        return self.rows[k]

    def __str__(self) -> str:
        head = ("k", "moment W_k", "PDE coefficient W_k/k!", "process", "meaning")
        body = [(str(r.order), sp.sstr(r.moment), sp.sstr(r.coefficient), r.process, r.meaning)
                for r in self.rows]
        widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
        line = lambda row: "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
        return "\n".join([line(head), line(tuple("-" * w for w in widths)), *map(line, body)])


def explain_moments(moments: dict) -> PhysicsTable:
    """Name the physical process of each moment ``{k: W_k}``."""
    rows = []
    for k in sorted(moments):
        name, meaning = process_name(k)
        rows.append(PhysicsRow(k, moments[k], sp.expand(moments[k] / factorial(k)), name, meaning))
    return PhysicsTable(tuple(rows))


def tensor_process(alpha: tuple, coordinates) -> tuple[str, str]:
    """Process and meaning of the multi-index moment ``W_α`` of an N-D kernel."""
    names = [str(c) for c in coordinates]
    order = sum(alpha)
    axes = [n for n, a in zip(names, alpha) for _ in range(a)]
    if order == 0:
        return PROCESSES[0]
    if order == 1:
        return (f"advection ({axes[0]})", f"velocity component along {axes[0]}: -W_{alpha}")
    if order == 2:
        k, l = axes
        if k == l:
            return (f"diffusion ({k}{k})", f"diffusion tensor entry D_{k}{k} = W_{alpha}/2")
        return (f"diffusion ({k}{l})", f"off-diagonal diffusion D_{k}{l} = D_{l}{k} = W_{alpha}/2")
    if order == 3:
        return (f"dispersion ({''.join(axes)})", f"coefficient W_{alpha}/alpha! of d^3/d{'d'.join(axes)}")
    if order == 4:
        return (f"hyper-diffusion ({''.join(axes)})", f"coefficient W_{alpha}/alpha! of d^4/d{'d'.join(axes)}")
    kind = "generalised diffusion" if order % 2 == 0 else "generalised propagation"
    return kind, f"coefficient W_{alpha}/alpha! of the order-{order} derivative"


def explain_tensor_moments(moments: dict, coordinates) -> PhysicsTable:
    """Name the process of each multi-index moment ``{α: W_α}``; the coefficient column is
    ``W_α/α!`` (``α! = Π_k α_k!``), the coefficient of ``∂^α z`` in ``Σ_o w_o z(x + oΔ)``."""
    rows = []
    for alpha in sorted(moments, key=lambda a: (sum(a), [-v for v in a])):
        name, meaning = tensor_process(alpha, coordinates)
        denom = 1
        for a in alpha:
            denom *= factorial(a)
        rows.append(PhysicsRow(alpha, moments[alpha], sp.expand(moments[alpha] / denom), name, meaning))
    return PhysicsTable(tuple(rows))
