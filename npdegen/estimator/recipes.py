r"""The recipe space the estimator searches: layer kinds × families × width × depth × activation.

A :class:`Recipe` names one network: a layer **kind** (a registered :class:`LayerKind`), a parameter
**family**, a stencil **width** ``w`` (points per axis), a **depth** ``L`` (layers), an
**activation** and the relaxation ``ω``. Every layer runs ``z_{t+1} = (1 − ω) z_t + ω f(W z_t)``.

Kind ``"moments"`` (the only one today) is the free ``w``-point stencil written in its moments
(docs/theory.md §2, no ``1/k!``): with ``W_α = Σ_o Π_a (o_a Δ_a)^{α_a} w_o`` the parameters are the
PDE coefficients of ::

    1-D:  Z = z + R z − U z_q + D z_qq + C3 z_qqq + C4 z_qqqq + …     (W_0 = 1 + R, W_1 = −U,
                                                                        W_k = k!·coefficient)
    N-D:  Z = u + R u − U_x u_x − U_y u_y + D_xx u_xx + 2 D_xy u_xy + D_yy u_yy + C_xxx u_xxx + …

(``D`` the diffusion tensor, ``W_α = 2 D`` for ``|α| = 2``; other orders' parameters are the
coefficients of their derivatives, ``W_α = α!·C``) with every multi-index ``|α| ≤ w − 1`` that the
``w``-point box fixes (1-D: all ``w`` moments, so the layer is exactly the free ``w``-point
stencil, reparametrised by the invertible Vandermonde map; width 3 is the neural ADR layer).
:meth:`npdegen.NeuralPDE.from_moments` solves the moment system.

==============  ==========================================================================
families        ``homogeneous`` (one value per parameter), ``heterogeneous`` (one per site),
                ``time-dependent`` (one per layer and site); searched in this order, each
                family warm-started from the best fits of the one before
widths          odd stencil widths per axis: 1 (reaction only: a local ODE), 3 (ADR),
                5 (+ dispersion, hyper-diffusion), …
depths          numbers of layers ``L``; a deeper homogeneous fit starts from the shallower one
                rescaled (the generator per layer ∝ 1/L)
activations     ``identity``; ``tanh``; ``reaction``: the learnable polynomial reaction
                ``f(x) = x + A2 x² + A3 x³`` (``A2``, ``A3`` homogeneous, trained; ``A2 = A3 = 0``
                is the identity, so it starts from the identity fit: logistic and Allen–Cahn
                reactions are in reach)
==============  ==========================================================================

New layer kinds (flux form, nonlocal kernels, soft-min layers) subclass :class:`LayerKind`
(``layer``, ``bounds``, ``random_starts``; optionally ``data_start``, ``rescale_depth``, ``reach``,
and ``families``/``dims`` when they support fewer) and :func:`register` themselves; the estimator's
``kinds`` then names them. The search loop (:mod:`npdegen.estimator.search`) only calls this
interface: a kind's recipes join the first stage, and each later family promotes the best fits of
every kind that supports it (from the latest stage that fitted that kind).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from itertools import product

import numpy as np
import sympy as sp

__all__ = ["Recipe", "LayerKind", "MomentStencil", "KINDS", "register", "RecipeSpace", "ACTIVATIONS",
           "FAMILIES", "moment_parameters"]

FAMILIES = ("homogeneous", "heterogeneous", "time-dependent")
ACTIVATIONS = ("identity", "tanh", "reaction")
_LETTERS = "xyz"


@dataclass(frozen=True)
class Recipe:
    """One point of the recipe space. ``warm_from``: labels of fitted recipes whose parameters
    seed this one (transferred by :meth:`LayerKind.transfer`)."""
    kind: str
    family: str
    width: int
    depth: int
    activation: str
    omega: float = 0.5
    warm_from: tuple = field(default=(), compare=False)

    @property
    def label(self) -> str:
        return f"{self.kind}/{self.family}/w{self.width}/L{self.depth}/{self.activation}"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["warm_from"] = list(self.warm_from)
        return d


def moment_parameters(dim: int, width: int) -> list:
    """``[(alpha, name, W_alpha as a function of the parameter symbol)]`` of the width-``w`` moment layer."""
    out = []
    orders = [a for a in product(range(width), repeat=dim) if sum(a) <= width - 1]
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


class LayerKind:
    """What the search needs of a kind of layer. Subclasses set ``name`` and implement
    :meth:`layer`, :meth:`bounds` and :meth:`random_starts`; the rest has working defaults."""
    name = ""
    #: grid dimensions the kind supports
    dims = (1, 2, 3)
    #: parameter families the kind supports (a flux-form layer, for one, has no per-site family)
    families = FAMILIES

    def layer(self, recipe: Recipe, dim: int):
        """The :class:`~npdegen.NeuralPDE` of ``recipe`` on a ``dim``-axis grid."""
        raise NotImplementedError

    def bounds(self, recipe: Recipe, dim: int) -> dict:
        """Box constraints ``{name: (low, high)}`` for L-BFGS (e.g. non-negative diffusion)."""
        return {}

    def random_starts(self, net, recipe: Recipe, spacing: tuple, count: int, rng) -> list:
        """``count`` homogeneous random starts (dicts of the network's shapes)."""
        raise NotImplementedError

    def data_start(self, net, recipe: Recipe, spacing: tuple, estimate) -> dict | None:
        """A start from the data's linear response (:class:`~npdegen.estimator.starts.SpectralEstimate`),
        or None."""
        return None

    def rescale_depth(self, name: str, value, ratio: float, omega: float):
        """A parameter of a ``L``-layer fit as a start for ``L' = L/ratio`` layers (default: as is)."""
        return value

    def physics(self, layer, theta: dict, spacing):
        """What the fitted layer means (default: :func:`~npdegen.estimator.physics.fitted_physics`,
        the explain table with the fitted moments)."""
        from .physics import fitted_physics
        return fitted_physics(layer, theta, spacing)

    def reach(self, recipe: Recipe) -> float:
        """Cells one layer can move data along an axis (a stable explicit step moves at most its
        stencil's half-width): ``L·reach`` is the farthest a recipe transports."""
        return recipe.width // 2

    def transfer(self, theta: dict, source: Recipe, net, recipe: Recipe) -> dict:
        """Warm start for ``recipe`` (compiled as ``net``) from ``theta`` fitted for ``source``:
        shared names carry over (homogeneous → per site → per layer by broadcasting, per layer →
        per site by the mean over layers, rescaled for a new depth); new names start at 0."""
        out, grid = {}, tuple(net.grid)
        ratio = source.depth / recipe.depth
        for k, shape in net.shapes.items():
            if k not in theta:
                out[k] = np.zeros(shape, net.dtype)
                continue
            v = np.asarray(theta[k], np.float64)
            if v.ndim == len(grid) + 1 and (len(shape) < v.ndim or ratio != 1):
                v = v.mean(axis=0)             # per-layer values: their mean over the layers
            if ratio != 1:
                v = np.asarray(self.rescale_depth(k, v, ratio, recipe.omega), np.float64)
            if v.ndim > len(shape):
                v = np.asarray(v.mean())       # per-site values as one value: their mean
            out[k] = np.array(np.broadcast_to(v, shape), dtype=net.dtype)
        return out


#: Registered kinds by name.
KINDS: dict = {}


def register(kind: LayerKind) -> LayerKind:
    """Add a layer kind to the recipe space (by its ``name``)."""
    if not isinstance(kind, LayerKind) or not kind.name:
        raise TypeError("register() takes a LayerKind instance with a name")
    KINDS[kind.name] = kind
    return kind


def _activation(name: str, params: dict):
    if name in ("identity", "tanh"):
        return name
    x, a2, a3 = sp.Symbol("x"), sp.Symbol("A2"), sp.Symbol("A3")
    params.update({a2: "homogeneous", a3: "homogeneous"})
    return x + a2 * x**2 + a3 * x**3


class MomentStencil(LayerKind):
    """The free ``w``-point stencil in its moments: ``R``, ``U``, ``D``, ``C3``, … (module docstring)."""
    name = "moments"

    def layer(self, recipe, dim):
        from ..layer import NeuralPDE
        if dim == 1:
            field = sp.Function("z")(sp.Symbol("q"))
        else:
            field = sp.Function("u")(*sp.symbols(" ".join(_LETTERS[:dim])))
        h = recipe.width // 2
        offsets = tuple(range(-h, h + 1))
        params, moments = {}, {}
        for alpha, name, moment in moment_parameters(dim, recipe.width):
            s = sp.Symbol(name)
            params[s] = recipe.family
            moments[alpha[0] if dim == 1 else alpha] = moment(s)
        activation = _activation(recipe.activation, params)
        tag = f"est_w{recipe.width}_{recipe.activation[:3]}_{recipe.family[:3]}_{dim}d"
        return NeuralPDE.from_moments(moments, offsets if dim == 1 else (offsets,) * dim, field=field,
                                      activation=activation, params=params, name=tag)

    def bounds(self, recipe, dim):
        names = [n for _, n, _ in moment_parameters(dim, recipe.width)]
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

    def rescale_depth(self, name, value, ratio, omega):
        """``(1 + ωR)^L`` and ``L·(U, D, C…)`` kept when ``L → L/ratio``."""
        if name == "R":
            base = np.maximum(1 + omega * value, 1e-6)
            return (base ** ratio - 1) / omega
        if name in ("A2", "A3"):
            return value
        return value * ratio


def _axes(name: str) -> tuple:
    """Axes of a moment parameter: ``U`` → (0,), ``D`` → (0, 0), ``D_xy`` → (0, 1)."""
    if name in ("R", "A2", "A3"):
        return ()
    if "_" in name:
        return tuple(_LETTERS.index(c) for c in name.split("_", 1)[1])
    order = {"U": 1, "D": 2}.get(name) or int(name[1:])
    return (0,) * order


register(MomentStencil())


@dataclass(frozen=True)
class RecipeSpace:
    """The documented search space (module docstring); :meth:`validate` checks it against the data."""
    kinds: tuple = ("moments",)
    families: tuple = FAMILIES
    widths: tuple = (3, 5)
    depths: tuple = (4, 16, 64)
    activations: tuple = ACTIVATIONS
    omega: float = 0.5

    def validate(self, dim: int, grid: tuple) -> "RecipeSpace":
        """A normalised copy (tuples, sorted widths and depths); ValueError on anything unknown."""
        def seq(value, what):
            if isinstance(value, (str, bytes)):
                value = (value,)
            try:
                out = tuple(value)
            except TypeError:
                raise ValueError(f"{what} must be a sequence, got {value!r}") from None
            if not out:
                raise ValueError(f"{what} must not be empty")
            return out
        kinds, families = seq(self.kinds, "kinds"), seq(self.families, "families")
        widths, depths = seq(self.widths, "widths"), seq(self.depths, "depths")
        acts = seq(self.activations, "activations")
        for what, values, known in (("kinds", kinds, tuple(KINDS)), ("families", families, FAMILIES),
                                    ("activations", acts, ACTIVATIONS)):
            bad = [v for v in values if v not in known]
            if bad:
                raise ValueError(f"unknown {what} {bad}; choose from {', '.join(known)}")
        for k in kinds:
            if dim not in KINDS[k].dims:
                raise ValueError(f"layer kind {k!r} does not support {dim}-D grids")
        for w in widths:
            if not isinstance(w, (int, np.integer)) or isinstance(w, bool) or w < 1 or w % 2 == 0:
                raise ValueError(f"widths must be odd positive integers (points per axis), got {w!r}")
            if any(n <= w - 1 for n in grid):
                raise ValueError(f"stencil width {w} needs more than {w - 1} sites per axis; the grid is {grid}")
        for L in depths:
            if not isinstance(L, (int, np.integer)) or isinstance(L, bool) or L < 1:
                raise ValueError(f"depths must be positive integers (numbers of layers), got {L!r}")
        w = self.omega
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 < w < 2:
            raise ValueError(f"omega must be a number in (0, 2), got {w!r}")
        order = sorted(set(families), key=FAMILIES.index)
        acts = tuple(sorted(set(acts), key=ACTIVATIONS.index))
        return replace(self, kinds=tuple(dict.fromkeys(kinds)), families=tuple(order),
                       widths=tuple(sorted({int(v) for v in widths})), depths=tuple(sorted({int(v) for v in depths})),
                       activations=acts, omega=float(w))

    def initial(self) -> list:
        """The first family's recipes, cheap to expensive (by depth; within a depth the activations
        in the order identity, tanh, reaction, each over the widths), each warm-started from its
        shallower, narrower and identity neighbours."""
        out = []
        family = self.families[0]
        for kind, L, act, w in product(self.kinds, self.depths, self.activations, self.widths):
            if family not in KINDS[kind].families:
                continue
            warm = []
            i = self.depths.index(L)
            if i:
                warm.append(Recipe(kind, family, w, self.depths[i - 1], act, self.omega).label)
            j = self.widths.index(w)
            if j:
                warm.append(Recipe(kind, family, self.widths[j - 1], L, act, self.omega).label)
            if act != "identity" and "identity" in self.activations:
                warm.append(Recipe(kind, family, w, L, "identity", self.omega).label)
            out.append(Recipe(kind, family, w, L, act, self.omega, tuple(warm)))
        return out

    def promote(self, family: str, history: list, top: int) -> list:
        """Recipes of ``family`` warm-started from fitted recipes: for every kind that supports
        ``family``, the ``top`` best of the latest stage that fitted that kind (``history``: one list
        of fitted recipes per stage, best first)."""
        seen, out = set(), []
        for kind in self.kinds:
            if family not in KINDS[kind].families:
                continue
            for stage in reversed(history):
                mine = [r for r in stage if r.kind == kind]
                if mine:
                    break
            else:
                continue
            for r in mine[:top]:
                new = replace(r, family=family, warm_from=(r.label,))
                if new.label not in seen:
                    seen.add(new.label)
                    out.append(new)
        return out
