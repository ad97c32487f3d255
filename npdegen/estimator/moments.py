r"""Layer kind ``"moments"``: the free ``w``-point stencil written in its moments (docs/theory.md §2).

With ``W_α = Σ_o Π_a (o_a Δ_a)^{α_a} w_o`` (no ``1/k!``) the parameters are the PDE coefficients of ::

    1-D:  Z = z + R z − U z_q + D z_qq + C3 z_qqq + C4 z_qqqq + …     (W_0 = 1 + R, W_1 = −U,
                                                                        W_k = k!·coefficient)
    N-D:  Z = u + R u − U_x u_x − U_y u_y + D_xx u_xx + 2 D_xy u_xy + D_yy u_yy + C_xxx u_xxx + …

(``D`` the diffusion tensor, ``W_α = 2 D`` for ``|α| = 2``; other orders' parameters are the
coefficients of their derivatives, ``W_α = α!·C``, named by their axes: ``C_xxy``, ``C_xxyy``) with
every multi-index ``α_a ≤ w − 1`` of the ``w^d`` box, so the layer is exactly the free
``w^d``-point stencil, reparametrised by the invertible (tensor-product) Vandermonde map. 1-D width
3 is the neural ADR layer; 2-D width 3 the free 9-point stencil: ``R, U_x, U_y, D_xx, D_xy, D_yy``
and ``C_xxy, C_xyy, C_xxyy`` (the cross term ``D_xy`` lives on the corners). The kind ``star``
(:class:`StarStencil`, N-D only) keeps the pure-axis moments: the 5-point stencil at width 3.
:meth:`npdegen.NeuralPDE.from_moments` solves the moment system. Every family, every width,
every depth and activation of the recipe space, relaxed with the space's ``ω``.
"""
from __future__ import annotations

import math
from dataclasses import replace
from itertools import product

import numpy as np
import sympy as sp

from .recipes import LETTERS as _LETTERS
from .recipes import LayerKind, Recipe, activation_expression, register

__all__ = ["MomentStencil", "StarStencil", "moment_parameters", "SHAPES"]


#: Stencil shapes: ``box`` — every multi-index with ``α_a < w`` on each axis (the free ``w^d``-point box
#: stencil); ``star`` — the pure-axis ones ``α = k e_a``, ``k < w`` (the ``d(w−1)+1``-point star).
SHAPES = ("box", "star")


def moment_parameters(dim: int, width: int, shape: str = "box") -> list:
    """``[(alpha, name, W_alpha as a function of the parameter symbol)]`` of the width-``w`` moment layer
    (``shape``: :data:`SHAPES`; in 1-D both are the ``w``-point stencil)."""
    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {SHAPES}, got {shape!r}")
    out = []
    orders = [a for a in product(range(width), repeat=dim) if shape == "box" or sum(v > 0 for v in a) <= 1]
    for alpha in sorted(orders, key=lambda a: (sum(a), tuple(-v for v in a))):
        k = sum(alpha)
        letters = "".join(_LETTERS[i] * a for i, a in enumerate(alpha))
        scale = math.prod(math.factorial(a) for a in alpha)
        if dim == 1:
            name = {0: "R", 1: "U", 2: "D"}.get(k, f"C{k}")
        else:
            name = "R" if k == 0 else f"{'U' if k == 1 else 'D' if k == 2 else 'C'}_{letters}"
        if k == 0:
            out.append((alpha, name, lambda s: 1 + s))
        elif k == 1:
            out.append((alpha, name, lambda s: -s))
        elif k == 2:                      # the diffusion tensor entry: W_α = 2 D (also off the diagonal)
            out.append((alpha, name, lambda s: 2 * s))
        else:
            out.append((alpha, name, lambda s, c=scale: c * s))
    return out



class MomentStencil(LayerKind):
    """The free ``w``-point stencil in its moments: ``R``, ``U``, ``D``, ``C3``, … (module docstring)."""
    name = "moments"
    depth_round = True
    #: which multi-indices are parameters (:data:`SHAPES`)
    shape = "box"

    def layer(self, recipe, dim):
        from ..layer import NeuralPDE
        if dim == 1:
            field = sp.Function("z")(sp.Symbol("q"))
        else:
            field = sp.Function("u")(*sp.symbols(" ".join(_LETTERS[:dim])))
        h = recipe.width // 2
        offsets = tuple(range(-h, h + 1))
        params, moments = {}, {}
        for alpha, name, moment in moment_parameters(dim, recipe.width, self.shape):
            s = sp.Symbol(name)
            params[s] = recipe.family
            moments[alpha[0] if dim == 1 else alpha] = moment(s)
        activation = activation_expression(recipe.activation, params)
        shape = "w" if self.shape == "box" else "star"
        tag = f"est_{shape}{recipe.width}_{recipe.activation[:3]}_{recipe.family[:3]}_{dim}d"
        return NeuralPDE.from_moments(moments, offsets if dim == 1 else (offsets,) * dim, field=field,
                                      activation=activation, params=params, name=tag)

    def recipes(self, space, family):
        """As :meth:`LayerKind.recipes`; a box recipe also starts from the star fit of the same family,
        width, depth and activation where the space has the ``star`` kind (N-D: the star is the box
        with zero mixed moments, so the box fit starts from the star's map)."""
        out = super().recipes(space, family)
        if self.shape != "box" or "star" not in space.kinds:
            return out
        return [replace(r, warm_from=r.warm_from + (replace(r, kind="star").label,)) for r in out]

    def bounds(self, recipe, dim):
        names = [n for _, n, _ in moment_parameters(dim, recipe.width, self.shape)]
        return {n: (0.0, None) for n in names if n == "D" or (n.startswith("D_") and len(set(n[2:])) == 1)}

    def random_starts(self, net, recipe, spacing, count, rng):
        """``d = D/Δ² ∈ (0.02, 0.3)``, ``c = UΔ⁻¹ ∈ (−0.3, 0.3)·√(2d/ω)`` (inside the stable
        region ``ω c² ≤ 2d``), ``R ∈ (−0.02, 0.02)``, higher coefficients 0."""
        starts = []
        for _ in range(count):
            d = rng.uniform(0.02, 0.3)
            theta = {k: np.zeros(s, net.dtype) for k, s in net.shapes.items()}
            for k in theta:
                axes = _axes(k)
                if k == "R":
                    theta[k][...] = rng.uniform(-0.02, 0.02)
                elif k[0] == "U":
                    theta[k][...] = rng.uniform(-0.3, 0.3) * math.sqrt(2 * d / recipe.omega) * spacing[axes[0]]
                elif k[0] == "D" and len(set(axes)) == 1:
                    theta[k][...] = d * spacing[axes[0]] ** 2
            starts.append(theta)
        return starts

    def data_start(self, net, recipe, spacing, estimate):
        """From the data's total generator ``(r, b, c)`` (``Ĝ(κ) = exp(r − i b·κ − c κ²)``) per
        layer: ``R = (e^{r/L} − 1)/ω``, ``U = b/(ωL)``, ``D = (c/L + ω²U²/2)/ω`` (the forward
        Euler anti-diffusion of the relaxed step added back: ``D_eff = ωD − ω²U²/2``)."""
        if estimate is None:
            return None
        L, w = recipe.depth, recipe.omega
        theta = {k: np.zeros(s, net.dtype) for k, s in net.shapes.items()}
        for k in theta:
            axes = _axes(k)
            if k == "R":
                theta[k][...] = math.expm1(estimate.reaction / L) / w
            elif k[0] == "U":
                theta[k][...] = estimate.velocity[axes[0]] / (w * L)
            elif k[0] == "D" and len(axes) == 2:
                i, j = axes
                u_i, u_j = estimate.velocity[i] / (w * L), estimate.velocity[j] / (w * L)
                value = (estimate.diffusion[i, j] / L + w * w * u_i * u_j / 2) / w
                theta[k][...] = max(value, 0.0) if i == j else value
        return theta

    def transfer(self, theta, source, net, recipe):
        """As :meth:`LayerKind.transfer`, and on 1-D grids a **narrower** fit enters a wider
        stencil exactly: its weights ``w_o`` (``|o| ≤ h``, from its moments by the Vandermonde
        system ``W_k = Σ_o (oΔ)^k w_o``) padded with zero weights at the new offsets, whose moments
        ``W_k`` for ``k < w′`` become the wider layer's parameters (``C3, C4, …`` are not 0 there:
        a 3-point stencil has ``W_3 = Δ² W_1``, ``W_4 = Δ² W_2``). The wider network then starts
        from the narrower one's map, so its fit is never worse (:mod:`npdegen.estimator.search`
        keeps the best parameters seen, the start among them). N-D grids: names carry over."""
        if recipe.width > source.width and "U" in net.shapes:          # 1-D (N-D names are U_x, …)
            spacing = float(np.ravel(net.spacing)[0])
            theta = _widen(theta, source.width, recipe.width, spacing)
            source = Recipe(source.kind, source.family, recipe.width, source.depth, source.activation,
                            source.omega)
        return super().transfer(theta, source, net, recipe)

    def gain(self, layer, net, theta, recipe, spacing):
        """The von Neumann gain of :func:`npdegen.stability` at slope ``f′(0) = 1`` (frozen
        coefficients per site and layer): ``max |1 − ω + ω Σ_o w_o e^{ioθ}|`` over its angles
        ``θ ∈ [0, π]`` (the certificate's grid), from the stencil weights directly — the full
        certificate also solves for the admissible ω and assembles every layer's matrix (25 s for a
        64-layer, 256-site time-dependent fit; this takes well under a second)."""
        if "U" not in net.shapes:                 # N-D: the step-IR certificate
            from ..inspect.stability import stability
            cert = stability(layer, {k: np.asarray(v, np.float64) for k, v in theta.items()},
                             spacing=tuple(spacing), omega=recipe.omega, slope=1.0)
            return float(cert.max_gain), ""
        from ..inspect.matrix import layer_weights
        from ..inspect.vonneumann import THETA_POINTS
        if recipe.activation == "reaction":        # runs on the step IR; f'(0) = 1: the identity layer's weights
            layer = _linear_layer(self, recipe.family, recipe.width)
            theta = {k: v for k, v in theta.items() if k not in ("A2", "A3")}
        offsets, w = layer_weights(layer, {k: np.asarray(v, np.float64) for k, v in theta.items()}, spacing[0])
        flat = w.reshape(-1, len(offsets))
        phase = np.exp(1j * np.outer(np.asarray(offsets, np.float64), np.linspace(0.0, np.pi, THETA_POINTS + 1)))
        omega, best = recipe.omega, 0.0
        for s in range(0, len(flat), 1024):
            best = max(best, float(np.abs(1 - omega + omega * (flat[s:s + 1024] @ phase)).max()))
        return best, ""

    def rescale_depth(self, name, value, ratio, omega):
        """``(1 + ωR)^L`` and ``L·(U, D, C…)`` kept when ``L → L/ratio``."""
        if name == "R":
            base = np.maximum(1 + omega * value, 1e-6)
            return (base ** ratio - 1) / omega
        if name in ("A2", "A3"):
            return value
        return value * ratio


_LINEAR: dict = {}


def _linear_layer(kind, family: str, width: int):
    """The 1-D identity-activation layer of ``family`` and ``width`` (cached): the linear part of a
    ``reaction`` layer, whose stencil weights are the same functions of ``R, U, D, …``."""
    key = (family, width)
    if key not in _LINEAR:
        _LINEAR[key] = kind.layer(Recipe(kind.name, family, width, 1, "identity"), 1)
    return _LINEAR[key]


def _widen(theta: dict, narrow: int, wide: int, spacing: float) -> dict:
    """1-D moment parameters of the ``narrow``-point stencil as those of the ``wide``-point stencil
    with zero weights at the new offsets (:meth:`MomentStencil.transfer`); other names as they are."""
    names = [name for _, name, _ in moment_parameters(1, wide)]
    h = narrow // 2
    offsets = np.arange(-h, h + 1) * spacing
    small = np.stack([offsets ** k for k in range(narrow)])                       # (narrow, narrow)
    values = [np.asarray(theta[n], np.float64) for n in names[:narrow]]
    shape = np.broadcast_shapes(*(v.shape for v in values))
    W = np.stack([np.broadcast_to(_moment(n, v), shape) for n, v in zip(names, values)], axis=-1)
    w = np.linalg.solve(small, W.reshape(-1, narrow).T)                           # weights per site
    big = np.stack([offsets ** k for k in range(wide)]) @ w                       # moments of the padded stencil
    out = dict(theta)
    for k, n in enumerate(names):
        out[n] = _parameter(n, big[k].reshape(shape))
    return out


def _moment(name: str, value):
    """``W_k`` of the 1-D parameter ``name`` (``R → 1 + R``, ``U → −U``, ``D → 2D``, ``Ck → k!·Ck``)."""
    if name == "R":
        return 1 + value
    if name == "U":
        return -value
    if name == "D":
        return 2 * value
    return math.factorial(int(name[1:])) * value


def _parameter(name: str, moment):
    """Inverse of :func:`_moment`."""
    if name == "R":
        return moment - 1
    if name == "U":
        return -moment
    if name == "D":
        return moment / 2
    return moment / math.factorial(int(name[1:]))


def _axes(name: str) -> tuple:
    """Axes of a moment parameter: ``U`` → (0,), ``D`` → (0, 0), ``D_xy`` → (0, 1)."""
    if name in ("R", "A2", "A3"):
        return ()
    if "_" in name:
        return tuple(_LETTERS.index(c) for c in name.split("_", 1)[1])
    order = {"U": 1, "D": 2}.get(name) or int(name[1:])
    return (0,) * order


class StarStencil(MomentStencil):
    r"""N-D: the star of the axes, ``α = k e_a`` (``k < w``): ``Z = u + Ru − Σ_a U_a u_a + Σ_a D_aa u_aa
    + Σ_a C_a… ∂_a^k u`` with no mixed derivative. In 2-D, width 3 is the 5-point stencil
    (``R, U_x, U_y, D_xx, D_yy``: the ADR layer with a diagonal diffusion tensor), width 5 the
    9-point star (adds ``C_xxx, C_yyy, C_xxxx, C_yyyy``). The box kind ``moments`` holds it (zero
    mixed moments)."""
    name = "star"
    shape = "star"
    dims = (2, 3)


register(MomentStencil())
register(StarStencil())


