r"""The quadrature-generalised update as a layer of the step IR: generated NumPy, numba and CUDA kernels.

:class:`~npdegen.integral.quadrature.QuadraturePDE` (eq. 24) evaluates node ``k`` of site ``i`` as

.. math::
    Z_i^k = \sum_o w^k_o(θ_i, Δ)\, z[i+o] - b_i, \qquad
    w^k_o = c \sum_l ŵ_l \Big(\prod_a Δ_a\Big) W\big((o + x_l - x_k)Δ;\, θ_i\big),

    z'_i = (1 - ω)\, z_i + ω \sum_k ŵ_k\, f(Z_i^k),

with the kernel sampled on the box of offsets ``|o_a| ≤ R_a`` (the *reach*), ``x_k`` the nodes in
cell units, ``ŵ_k`` their weights and ``c`` 1 (``normalise=True``) or the rule's mass ``ν``. That is
the step IR's update ``z' = (1 − ω) z + ω f(G − b)`` with ``f`` the identity, no IR bias and

.. math::  G = \sum_k ŵ_k\, f\Big(\sum_o w^k_o\, z[i+o] - b\Big),

a nonlinear local expression of the accesses: the activation (and its parameters) and the bias move
inside ``G``. SymPy then derives, as for any nonlinear layer (:mod:`npdegen.ir.step`),

.. math::
    \frac{∂G}{∂z[i+o]} = \sum_k ŵ_k f'(Z^k)\, w^k_o, \quad
    \frac{∂G}{∂θ} = \sum_k ŵ_k f'(Z^k) \sum_o \frac{∂w^k_o}{∂θ} z[i+o], \quad
    \frac{∂G}{∂b} = -\sum_k ŵ_k f'(Z^k), \quad
    \frac{∂G}{∂ρ} = \sum_k ŵ_k \frac{∂f}{∂ρ}(Z^k),

and every backend's template runs it: no template knows it is a quadrature. The generated network
equals :meth:`QuadraturePDE.compile` with ``method="stencil"`` and the same ``reach``
(tests/test_quadrature_step.py: forward and gradients to 1e-12 in float64, NumPy ≡ numba ≡ the CUDA
emulation). The kernel's range (``σ > 0``, …) is checked on every θ the network is given.

When the nodes collapse — ``Q = 1``, or a linear ``f`` (:mod:`.quadrature`, step 6) — ``G`` is the
linear stencil ``Σ_o (Σ_k ŵ_k w^k_o) z[i+o]`` and ``f``, ``b`` stay the IR's: the templates' linear
path (coefficients once per call, the transposed stencil in the adjoint). With several nodes and a
nonlinear ``f`` the Jacobians depend on the state and are formed per site: the generated kernels then
cost more than :class:`~npdegen.integral.quadrature.QuadratureNetwork`'s NumPy sweeps on a CPU
(``examples/quadrature_update.py`` (c) measures both); they are what runs on a GPU.

Limits (a clear error names them): kernels of the displacement only (``W(r; θ)``, not ``W(q, r)``),
without compact support (the indicator of a top-hat is not differentiable in ``θ``; use
:meth:`QuadraturePDE.compile`), and a reach within the step IR's stencil size.
"""
from __future__ import annotations

import numbers

import numpy as np
import sympy as sp

from ..derive.softmin import Parenthesised, shifted_access
from ..layer import NeuralPDE
from ..spec.activations import ACTIVATION_SYMBOL
from ..spec.spacing import spacing_symbols
from .sample import box_offsets

__all__ = ["QuadratureStepPDE", "Node", "MAX_REACH"]

#: Offsets per axis at most (a 17-point stencil per axis: the step IR's largest accuracy stencils).
MAX_REACH = 8


class Node(Parenthesised, sp.Function):
    """``x`` itself, derivative 1: one node, printed ``(x)``. The activation's argument ``Z^k`` is one,
    so that SymPy never inspects the sum inside ``f`` (its assumption queries on ``tanh`` of a sum of
    exponentials took 10 s per derivative); a :class:`sympy.Function`, not an ``UnevaluatedExpr``, which
    :func:`sympy.cse` rebuilt wrongly here (SymPy 1.14: a product of powers in place of a sum)."""
    nargs = 1

    @classmethod
    def eval(cls, x):
        if x.is_Number:
            return x

    def fdiff(self, argindex=1):
        return sp.Integer(1)


def _reach(reach, dim: int) -> tuple:
    values = reach if isinstance(reach, (tuple, list)) else (reach,) * dim
    if len(values) != dim or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in values):
        raise ValueError(f"reach must be an int or a tuple of {dim} ints (offsets per axis), got {reach!r}")
    if not all(0 <= v <= MAX_REACH for v in values):
        raise ValueError(f"reach {tuple(values)}: each axis must be 0..{MAX_REACH} cells for a generated kernel "
                         "(wider kernels: QuadraturePDE.compile with method='fft')")
    return tuple(int(v) for v in values)


def _node_weights(quadrature, reach: tuple) -> tuple:
    """``(offsets, [[w^k_o for o] for k])``: the SymPy weights of every node (module docstring)."""
    layer, nodes = quadrature.layer, quadrature.nodes
    kernel = layer.kernel
    if kernel.position:
        raise ValueError(f"kernel {kernel.name} depends on the position q (W(q, r)); the generated quadrature "
                         "layer takes kernels of the displacement only: use QuadraturePDE.compile")
    if kernel.support is not None:
        raise ValueError(f"kernel {kernel.name} has compact support (its indicator is not differentiable in the "
                         "parameters); use QuadraturePDE.compile(method='stencil') for it")
    deltas = spacing_symbols(layer.field.args)
    cell = sp.Mul(*deltas)
    scale = 1.0 if quadrature.normalise else float(nodes.mass)
    weights = [float(w) for w in nodes.weights]
    offsets = [tuple(int(v) for v in o) for o in box_offsets(reach)]
    per_node = []
    for k in range(nodes.count):
        row = []
        for o in offsets:
            w = sp.Integer(0)
            for l in range(nodes.count):
                r = [sp.Float(float(o[a] + nodes.nodes[l, a] - nodes.nodes[k, a]), 17) * deltas[a]
                     for a in range(layer.dim)]
                w += sp.Float(scale * weights[l], 17) * cell * kernel.density.xreplace(dict(zip(kernel.r, r)))
            row.append(w)
        per_node.append(row)
    return offsets, per_node


def _site(quadrature, reach: tuple):
    """``(G, activation, params, bias, collapsed)``: the step IR's transform, activation, parameter
    families and bias family. When the nodes collapse (``Q = 1`` or a linear ``f``: module docstring
    of :mod:`.quadrature`, step 6) ``G = Σ_o (Σ_k ŵ_k w^k_o) z[i+o]`` is linear and ``f``, ``b`` stay
    the IR's (the fast path of every template); else ``G`` holds ``f`` and ``b`` (module docstring)."""
    layer, nodes = quadrature.layer, quadrature.nodes
    field = layer.field
    offsets, per_node = _node_weights(quadrature, reach)
    accesses = [shifted_access(field, o) for o in offsets]
    weights = [sp.Float(float(w), 17) for w in nodes.weights]
    params = {p: layer.families[p.name] for p in (*layer.kernel.params, *layer.activation.params)}
    bias = layer.families.get("b")
    if nodes.count == 1 or layer.activation.linear:
        G = sum((sum((wk * row[j] for wk, row in zip(weights, per_node)), sp.Integer(0)) * access
                 for j, access in enumerate(accesses)), sp.Integer(0))
        return G, layer._args["activation"], params, bias, True
    x = ACTIVATION_SYMBOL
    b = sp.Symbol("b", real=True) if bias else sp.Integer(0)
    G = sp.Integer(0)
    for wk, row in zip(weights, per_node):
        Z = sum((w * access for w, access in zip(row, accesses)), sp.Integer(0))
        G += wk * layer.activation.expr.xreplace({x: Node(Z - b)})
    if bias:
        params[b] = bias
    # one term linear in an access with a parameter-free coefficient (the step templates split G into
    # such terms and a rest; :func:`npdegen.derive.softmin._with_linear_term`): same value and derivatives
    return field + Node(G - field), "identity", params, None, False


class QuadratureStepPDE(NeuralPDE):
    """A :class:`~npdegen.integral.quadrature.QuadraturePDE` with its kernel sampled out to ``reach``
    as a step-IR layer (module docstring): ``compile(..., backend="numba")`` and every other option of
    :meth:`npdegen.NeuralPDE.compile`. Its ``theta`` keys are those of the quadrature layer (with
    several nodes and a nonlinear ``f``, ``b`` is the bias inside ``f``, a parameter of ``G``: the
    layer has no IR bias). ``collapsed``: the nodes collapsed into one linear stencil."""

    def __init__(self, quadrature, reach):
        # what a QuadraturePDE holds (no import of .quadrature, which makes these layers: one direction)
        if not all(hasattr(quadrature, a) for a in ("layer", "nodes", "normalise", "Q")):
            raise TypeError(f"quadrature must be a QuadraturePDE, got {type(quadrature).__name__}")
        self.quadrature = quadrature
        self.reach = _reach(reach, quadrature.layer.dim)
        G, activation, params, bias, self.collapsed = _site(quadrature, self.reach)
        layer = quadrature.layer
        self._reserved = None if self.collapsed else ("omega",)
        super().__init__(G, layer.field, activation=activation, params=params, bias=bias,
                         name=f"{layer.name}_q{quadrature.Q}")
        self._args = {"quadrature": quadrature, "reach": self.reach}

    def compile(self, n, **options):
        net = super().compile(n, **options)
        net.param_checks = (self._check,)
        return net

    def _check(self, theta: dict) -> None:
        sampler = self.quadrature.layer.sampler
        host = {k: theta[k].get() if hasattr(theta[k], "get") else theta[k] for k in sampler.names}   # cupy
        sampler.check({k: np.asarray(v, np.float64) for k, v in host.items()})

    def __repr__(self):
        return f"QuadratureStepPDE({self.quadrature!r}, reach={self.reach})"
