r"""Soft-min (log-sum-exp) stencil layers and their ε → 0 min-plus limit (MODEL.md §6, issue 13 item 4).

A :class:`SoftminLayer` with a positive stencil ``{o_j: w_j}`` and temperature ``ε > 0`` computes

.. math::
    Z_i = -ε \log \sum_j w_j\, e^{-z_{i+o_j}/ε} = m_i - ε \log \sum_j e^{-(s_j - m_i)/ε},
    \qquad s_j = z_{i+o_j} + c_j,\ c_j = -ε \log w_j,\ m_i = \min_j s_j,

then ``z' = (1 − ω) z + ω f(Z − b)`` like every npdegen layer (default: identity, no bias, ω = 1).
It is the Cole–Hopf image of the positive linear step ``φ'_i = Σ_j w_j φ_{i+o_j}``:
``u = −ε log φ`` maps one onto the other exactly (:meth:`SoftminLayer.linear_layer`,
:func:`npdegen.inspect.softmin.cole_hopf`). Its Jacobian is the softmax ``π_j`` of the attribution
(a softmax-weighted gather in the adjoint); the max-shift keeps every exponent ≤ 0 (no overflow for
any finite state, weights or ε). Site expressions and their exact derivatives:
:mod:`npdegen.derive.softmin`.

Positivity: numeric weights must be > 0 and ε > 0 (clear errors otherwise); parameter expressions
must be positive for every real parameter value, which SymPy checks: trainable weights are
log-weights ``w_j = exp(lw_j)`` (pass a list of offsets), a trainable temperature is written
``eps = exp(s)`` with ``s`` a parameter of any family.

Boundaries act on ``z`` (ghost cells of :mod:`npdegen.grid`): *periodic* and *neumann* (mirror)
ghosts of ``z`` are the same ghosts of ``φ = e^{−z/ε}`` (the identity with the linear layer holds
on the same boundary); a *dirichlet* ghost ``z = 0`` is ``φ = 1``, not 0: the soft-min layer with
zero-Dirichlet ghosts is the Cole–Hopf image of the linear step with ghost value **1** (exit cost 0
outside the domain, the Dirichlet datum ``u = 0`` of the Hamilton–Jacobi equation), i.e. of the
zero-Dirichlet linear layer plus ``Σ_{j: i+o_j outside} w_j``.

A :class:`MinPlusLayer` computes ``Z_i = min_j (z_{i+o_j} + c_j)`` (tropical, Hopf–Lax/upwind). With
the costs ``c_j`` held fixed, the soft-min layer of weights ``e^{−c_j/ε}`` converges to it as
ε → 0: ``min − ε log K ≤ Z^ε ≤ min`` (:meth:`MinPlusLayer.soften`, :meth:`SoftminLayer.limit`). Its
adjoint is the sub-gradient of the lowest-offset minimiser (ties broken deterministically: offsets
compared as tuples, the lowest wins).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import sympy as sp

from .derive import softmin as sm
from .layer import NeuralPDE
from .spec.layerspec import FAMILIES
from .spec.spacing import spacing_symbols

__all__ = ["SoftminLayer", "MinPlusLayer", "softmin_layer", "minplus_layer"]


def _field(field, dim_hint: int | None):
    if field is None:
        if dim_hint not in (None, 1):
            raise ValueError(f"{dim_hint}-D offsets need an N-D field, e.g. sympy.Function('z')(x, y)")
        return sp.Function("z")(sp.Symbol("q"))
    if not isinstance(field, sp.core.function.AppliedUndef):
        raise TypeError(f"field must be an applied function such as z(q) or z(x, y), got {field!r}")
    return field


def _offset_dim(offsets) -> int | None:
    for o in offsets:
        return len(o) if isinstance(o, tuple) else 1
    return None


def _names(params) -> dict:
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a mapping symbol -> family, got {type(params).__name__}")
    return {(k if isinstance(k, str) else getattr(k, "name", None)): v for k, v in params.items()}


def _family(family) -> str:
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}, got {family!r}")
    return family


def _per_offset(values, field, params: dict, family: str, check, trainable) -> tuple[dict, dict]:
    """``({offset tuple: expression}, params)`` from a mapping (checked by ``check``) or a sequence of
    offsets (a fresh trainable parameter per offset, ``trainable(offset) -> (expression, symbol)``)."""
    dim = len(field.args)
    spacing = {s.name for s in spacing_symbols(field.args)}
    if isinstance(values, Mapping):
        keys = list(values)
        offsets = sm.normalise_offsets(keys, dim)
        by_offset = {(k,) if not isinstance(k, tuple) else tuple(k): v for k, v in values.items()}
        names = set(_names(params))
        out = {o: check(by_offset[o], f"entry {o if dim > 1 else o[0]!r}", names, spacing) for o in offsets}
        return out, dict(params or {})
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError("the stencil must be a mapping {offset: value} or a sequence of offsets (trainable), got "
                        f"{type(values).__name__}")
    offsets = sm.normalise_offsets(list(values), dim)
    params = dict(params or {})
    out = {}
    for o in offsets:
        expr, symbol = trainable(o)
        if symbol.name in _names(params):
            raise ValueError(f"parameter name {symbol.name!r} is taken by a trainable stencil entry")
        params[symbol] = _family(family)
        out[o] = expr
    return out, params


def _from_linear(layer: NeuralPDE, spacing, values) -> tuple[dict, sp.Expr, dict]:
    """``(weights, field, params)`` of a positive linear layer (its stencil, parameters substituted)."""
    spec = layer.spec
    if spec.activation_name != "identity" or spec.bias is not None:
        raise ValueError(f"layer {spec.name!r} has activation {spec.activation_name!r} and bias {spec.bias!r}: "
                         "a soft-min layer is the Cole-Hopf image of a linear step (identity activation, no bias)")
    try:
        stencil = layer.stencil(spacing=spacing)
    except ValueError as exc:
        raise ValueError(f"layer {spec.name!r} is not a linear stencil layer: {exc}") from None
    values = dict(values or {})
    subs = {}
    for s, _fam in spec.params:
        if s.name in values:
            subs[s] = sm.as_number(values.pop(s.name), f"values[{s.name!r}]")
    if values:
        raise ValueError(f"values given for unknown parameter(s) {sorted(values)} of layer {spec.name!r}")
    weights = {o: w.xreplace(subs) for o, w in stencil.items()}
    used = set().union(*(w.free_symbols for w in weights.values()))
    params = {s: fam for s, fam in spec.params if s in used}
    return weights, spec.field, params


class SoftminLayer(NeuralPDE):
    r"""The soft-min stencil layer ``Z_i = −ε log Σ_j w_j exp(−z_{i+o_j}/ε)`` (see the module docstring).

    Parameters
    ----------
    weights : mapping ``{offset: w_j}``, a sequence of offsets, or a positive linear :class:`NeuralPDE`.
        Offsets are ints (1-D) or tuples (N-D, grid units). Weights are numbers > 0 or SymPy
        expressions of parameters (and ``Delta``) that are positive for every real parameter value.
        A sequence of offsets makes trainable log-weights ``w_o = exp(lw_o)`` (``lw_m1, lw_0, lw_p1``;
        N-D ``lw_p1_m2``) of ``family``. A linear layer gives its stencil (identity activation, no
        bias; ``spacing`` fixes ``Delta``, ``values`` substitutes numbers for some of its parameters).
    eps : the temperature: a number > 0, or a positive expression of parameters (``exp(s)``).
    field : the field, ``z(q)`` by default (1-D); N-D offsets need ``z(x, y)`` etc.
    params : ``{symbol: family}`` of the symbols in the weights and in ``eps``.
    family : family of the trainable log-weights (``"homogeneous"``, ``"heterogeneous"``, ``"time-dependent"``).
    activation, bias, name : as for :class:`NeuralPDE` (the Cole–Hopf identity is for the identity
        activation, no bias and ω = 1).
    """

    def __init__(self, weights, eps, field=None, params=None, family="homogeneous", activation="identity",
                 bias=None, name="softmin", spacing=None, values=None):
        linear = isinstance(weights, NeuralPDE)
        if linear:
            if field is not None:
                raise ValueError("field comes from the linear layer; do not pass it")
            weights, field, layer_params = _from_linear(weights, spacing, values)
            params = {**layer_params, **dict(params or {})}
        elif spacing is not None or values is not None:
            raise TypeError("spacing and values apply to a linear layer given as weights")
        keys = list(weights) if isinstance(weights, (Mapping, Sequence)) and not isinstance(weights, str) else []
        field = _field(field, _offset_dim(keys))
        try:
            self.weights, params = _per_offset(weights, field, params, family, sm.positive_weight,
                                               lambda o: (sp.exp(sm.log_weight_symbol(o)), sm.log_weight_symbol(o)))
        except ValueError as exc:
            if not linear:
                raise
            raise ValueError(f"{exc} (the linear layer's stencil: give spacing= and values={{parameter: number}} "
                             "to fix it, or parametrise the layer positively)") from None
        self.offsets = tuple(self.weights)
        self.eps = sm.temperature(eps, set(_names(params)), {s.name for s in spacing_symbols(field.args)})
        self.costs = {o: sm.cost_of_weight(w, self.eps) for o, w in self.weights.items()}
        transform = sm.softmin_site(field, self.offsets, tuple(self.costs.values()), self.eps)
        args = dict(weights=dict(self.weights), eps=self.eps, field=field, params=dict(params), family=family,
                    activation=activation, bias=bias, name=name)
        super().__init__(transform, field, activation=activation, params=params, bias=bias, name=name)
        self._args = args

    def _user_weights(self) -> dict:
        """The positive stencil ``{offset tuple: w_o}`` (the Cole–Hopf partner's weights)."""
        return dict(self.weights)

    def stencil(self, spacing=None) -> dict:
        """The positive stencil ``{offset: w}`` of the linear step this layer is the Cole–Hopf image of
        (``spacing`` as for :meth:`NeuralPDE.stencil`); :meth:`moments` are its moments."""
        return super().stencil(spacing)

    def linear_layer(self, name: str | None = None) -> NeuralPDE:
        """The positive linear layer ``φ'_i = Σ_j w_j φ_{i+o_j}`` with ``−ε log φ' = Z(−ε log φ)``."""
        field = self.spec.field
        transform = sp.Add(*(w * sm.shifted_access(field, o) for o, w in self.weights.items()))
        used = {s.name for s in transform.free_symbols}
        params = {s: fam for s, fam in self.spec.params if s.name in used}
        return NeuralPDE(transform, field, params=params, name=name or f"{self.spec.name}_linear")

    def limit(self, name: str | None = None) -> "MinPlusLayer":
        """The ε → 0 limit with the costs ``c_j = −ε log w_j`` held fixed: ``min_j (z_{i+o_j} + c_j)``."""
        used = set().union(*(c.free_symbols for c in self.costs.values()))
        params = {s: fam for s, fam in self.spec.params if s in used}
        return MinPlusLayer(self.costs, field=self.spec.field, params=params, name=name or f"{self.spec.name}_limit")

    def explain(self, max_order=None, spacing=None):
        """The viscous Hamilton–Jacobi step this layer takes (:func:`npdegen.inspect.softmin.hamilton_jacobi`;
        ``spacing`` gives ``Delta`` a value)."""
        from .derive.softmin_physics import hamilton_jacobi
        return hamilton_jacobi(self, spacing)

    def __repr__(self):
        ws = ", ".join(f"{o if len(o) > 1 else o[0]}: {sp.sstr(w)}" for o, w in self.weights.items())
        return f"SoftminLayer({self.spec.name!r}: Z = -eps log sum_j w_j exp(-z[i+o_j]/eps), w = {{{ws}}}, " \
               f"eps = {sp.sstr(self.eps)})"


class MinPlusLayer(NeuralPDE):
    r"""The min-plus (tropical) stencil layer ``Z_i = min_j (z_{i+o_j} + c_j)``.

    Parameters
    ----------
    costs : mapping ``{offset: c_j}`` (finite numbers of any sign, or expressions of parameters), or a
        sequence of offsets (trainable costs ``c_m1, c_0, c_p1``; N-D ``c_p1_m2``, of ``family``).
    field, params, family, activation, bias, name : as for :class:`SoftminLayer`.

    The adjoint is the sub-gradient of the lowest-offset minimiser: ``∂Z_i/∂z_{i+o_k} = 1`` for the
    first ``k`` (offsets in increasing order) with ``s_k = min``, 0 for the others; ``∂Z_i/∂c_k`` the same.
    """

    def __init__(self, costs, field=None, params=None, family="homogeneous", activation="identity", bias=None,
                 name="minplus"):
        keys = list(costs) if isinstance(costs, (Mapping, Sequence)) and not isinstance(costs, str) else []
        field = _field(field, _offset_dim(keys))
        self.costs, params = _per_offset(costs, field, params, family, sm.real_cost,
                                         lambda o: (sm.cost_symbol(o), sm.cost_symbol(o)))
        self.offsets = tuple(self.costs)
        transform = sm.minplus_site(field, self.offsets, tuple(self.costs.values()))
        args = dict(costs=dict(self.costs), field=field, params=dict(params), family=family,
                    activation=activation, bias=bias, name=name)
        super().__init__(transform, field, activation=activation, params=params, bias=bias, name=name)
        self._args = args

    def soften(self, eps, params=None, name: str | None = None) -> SoftminLayer:
        """The soft-min layer of weights ``exp(−c_j/ε)`` (the same costs) at temperature ``eps``;
        ``params`` adds the families of symbols in ``eps``."""
        used = set().union(*(c.free_symbols for c in self.costs.values()))
        families = {s: fam for s, fam in self.spec.params if s in used}
        families.update(dict(params or {}))
        eps_expr = sm.temperature(eps, set(_names(families)), {s.name for s in self.spacing_symbols})
        weights = {o: sp.exp(-c / eps_expr) for o, c in self.costs.items()}
        return SoftminLayer(weights, eps_expr, field=self.spec.field, params=families,
                            name=name or f"{self.spec.name}_soft")

    def stencil(self, spacing=None):
        raise ValueError(f"layer {self.spec.name!r} is a min-plus layer: it has costs (layer.costs), not a linear "
                         "stencil; its soft version (layer.soften(eps)) has the weights exp(-c/eps)")

    def explain(self, max_order=None):
        """The Hopf–Lax reading of the costs (:func:`npdegen.inspect.softmin.hopf_lax_reading`)."""
        from .derive.softmin_physics import hopf_lax_reading
        return hopf_lax_reading(self)

    def __repr__(self):
        cs = ", ".join(f"{o if len(o) > 1 else o[0]}: {sp.sstr(c)}" for o, c in self.costs.items())
        return f"MinPlusLayer({self.spec.name!r}: Z = min_j (z[i+o_j] + c_j), c = {{{cs}}})"


def softmin_layer(weights_or_layer, eps, **kwargs) -> SoftminLayer:
    """A :class:`SoftminLayer` (same arguments)."""
    return SoftminLayer(weights_or_layer, eps, **kwargs)


def minplus_layer(costs, **kwargs) -> MinPlusLayer:
    """A :class:`MinPlusLayer` (same arguments)."""
    return MinPlusLayer(costs, **kwargs)
