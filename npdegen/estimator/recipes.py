r"""The recipe space the estimator searches: layer kinds × families × width × depth × activation.

A :class:`Recipe` names one network: a layer **kind** (a registered :class:`LayerKind`), a parameter
**family**, a stencil **width** ``w`` (points per axis; 0 for a kernel that is not a stencil), a
**depth** ``L`` (layers), an **activation** and the relaxation ``ω``. Every layer runs
``z_{t+1} = (1 − ω) z_t + ω f(Z_t)``; the kinds differ in ``Z``:

==============  ==========================================================================
kind            ``Z`` of one layer, and what of the space it uses
==============  ==========================================================================
``moments``     the free ``w``-point stencil in its moments ``R, U, D, C3, …`` (N-D: the
                free ``w^d`` box, e.g. the 9-point stencil with the cross term ``D_xy``)
                (:mod:`.moments`): every family, width, depth and activation, the space's ``ω``
``star``        N-D only: the stencil of the axes, pure-axis moments only (2-D width 3:
                the 5-point ADR stencil, no cross term); as ``moments`` otherwise
``nonlocal``    ``A ∫ G_σ(r − μ) z(q + r) dr``, a Gaussian kernel of learned width, shift
                and amplitude (:mod:`.kernels`): homogeneous; one layer when linear, the
                space's depths with ``tanh`` and ``reaction``; ``ω = 1``
``flux``        ``z − ΔF/Δq + D δ²z/Δq²``, Godunov's flux of ``g = c z²/2 + a z``
                (:mod:`.flux`): homogeneous then per-layer coefficients, identity, the depth
                that keeps the CFL bound for the data, ``ω = 1``; only for data that
                conserve mass
``transport``   2-D: ``z − ωc u·∇z + ωνΔz`` with the velocity ``u = ∇⊥(−Δ)⁻¹z`` the field
                induces (vorticity form; integrating-factor Heun, spectral;
                :mod:`.transport`): homogeneous ``c``, ``ν``, identity, depths 8/16/32,
                ``ω = 1/L``; only for data that keep their mean
==============  ==========================================================================

==============  ==========================================================================
families        ``homogeneous`` (one value per parameter), ``heterogeneous`` (one per site),
                ``time-dependent`` (one per layer and site); searched in this order, each
                family warm-started from the best fits of the one before
widths          odd stencil widths per axis: 1 (reaction only: a local ODE), 3 (ADR),
                5 (+ dispersion, hyper-diffusion), …
depths          numbers of layers ``L``; a deeper fit starts from the shallower one rescaled
                (the generator per layer ∝ 1/L); after the homogeneous and per-site stages the
                depth round fits the best stencil recipe at a depth between two fitted ones
                (:mod:`.rounds`: between the grid 4, 16, 64 it reaches 8 or 32)
activations     ``identity``; ``tanh``; ``reaction``: the learnable polynomial reaction
                ``f(x) = x + A2 x² + A3 x³`` (``A2``, ``A3`` homogeneous, trained; ``A2 = A3 = 0``
                is the identity, so it starts from the identity fit: logistic and Allen–Cahn
                reactions are in reach)
==============  ==========================================================================

A layer kind subclasses :class:`LayerKind` (``layer``, ``bounds``, ``random_starts``; optionally
``prepare`` (the kind specialised to the data, or :class:`NotApplicable`), ``recipes``,
``compile``, ``weight``, ``data_start``, ``rescale_depth``, ``reach``, ``physics``, ``gain`` (the
stability certificate's gain per layer), and
``families``/``dims``/``max_samples``/``max_starts``/``loss``/``depth_round``) and :func:`register` s itself; the estimator's ``kinds``
then names it. The search loop (:mod:`npdegen.estimator.search`) only calls this interface: the
kinds' first-family recipes make the first stage, and each later family promotes the best fits of
every kind that supports it (from the latest stage that fitted that kind).
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, replace
from itertools import product

import numpy as np
import sympy as sp

__all__ = ["Recipe", "LayerKind", "NotApplicable", "KINDS", "register", "RecipeSpace", "ACTIVATIONS",
           "FAMILIES", "STAGE_WEIGHTS", "DEFAULT_KINDS", "activation_expression"]

FAMILIES = ("homogeneous", "heterogeneous", "time-dependent")
ACTIVATIONS = ("identity", "tanh", "reaction")
#: The kinds the estimator searches by default, in the order of the first stage.
DEFAULT_KINDS = ("star", "moments", "nonlocal", "flux", "transport")
#: Relative share of the time left that a recipe of each family gets (:meth:`LayerKind.weight`): a
#: heterogeneous recipe gets 4x a time-dependent one's (refine the small family before enriching
#: it: on varcoef-adr the heterogeneous fit was still improving when its share ran out)
STAGE_WEIGHTS = {"homogeneous": 1.0, "heterogeneous": 12.0, "time-dependent": 3.0}
LETTERS = "xyz"


class NotApplicable(ValueError):
    """Raised by :meth:`LayerKind.prepare` when a kind cannot fit the data; the message says why."""


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


def activation_expression(name: str, params: dict):
    """The activation of ``name``: ``"identity"``, ``"tanh"``, or for ``"reaction"`` the SymPy
    polynomial ``x + A2 x² + A3 x³`` (``A2``, ``A3`` added to ``params`` as homogeneous)."""
    if name in ("identity", "tanh"):
        return name
    x, a2, a3 = sp.Symbol("x"), sp.Symbol("A2"), sp.Symbol("A3")
    params.update({a2: "homogeneous", a3: "homogeneous"})
    return x + a2 * x**2 + a3 * x**3


class LayerKind:
    """What the search needs of a kind of layer. Subclasses set ``name`` and implement
    :meth:`layer`, :meth:`bounds` and :meth:`random_starts`; the rest has working defaults.

    A registered kind holds no data: :meth:`prepare` returns the copy that one search uses (the
    flux kind's copy holds its frame speed, depth and bounds)."""
    name = ""
    #: grid dimensions the kind supports
    dims = (1, 2, 3)
    #: parameter families the kind supports (a flux-form layer, for one, has no per-site family)
    families = FAMILIES
    #: at most this many training pairs fit a recipe (None: all of them; :meth:`samples`); validation uses all
    max_samples = None
    #: at most this many starts per first-stage recipe (None: the estimator's ``n_starts``)
    max_starts = None
    #: the training loss (``npdegen.train``): ``"mean"`` squared error, or ``"relative"`` (the nRMSE
    #: the search selects by)
    loss = "mean"
    #: the kind's recipes take the space's depths, and a depth between two of them may fit where neither
    #: does: the search's depth round (:mod:`~npdegen.estimator.rounds`) tries one for the kind's best fit
    depth_round = False

    def samples(self, recipe: Recipe) -> int | None:
        """Training pairs a recipe fits on, at most (default :attr:`max_samples`)."""
        return self.max_samples

    def prepare(self, problem) -> "LayerKind":
        """This kind for the data of ``problem`` (:class:`~npdegen.estimator.search.Problem`): itself,
        or a copy holding what the data say; raise :class:`NotApplicable` when it cannot fit them."""
        return self

    def specialise(self, **facts) -> "LayerKind":
        """A shallow copy with ``facts`` as attributes (for :meth:`prepare`)."""
        out = copy.copy(self)
        out.__dict__.update(facts)
        return out

    def recipes(self, space: "RecipeSpace", family: str) -> list:
        """The first-stage recipes of ``family``, cheap to expensive: by depth; within a depth the
        activations in the order identity, tanh, reaction, each over the widths; each
        warm-started from its shallower, narrower and identity neighbours."""
        out = []
        for L, act, w in product(space.depths, space.activations, space.widths):
            warm = []
            i = space.depths.index(L)
            if i:
                warm.append(Recipe(self.name, family, w, space.depths[i - 1], act, space.omega).label)
            j = space.widths.index(w)
            if j:
                warm.append(Recipe(self.name, family, space.widths[j - 1], L, act, space.omega).label)
            if act != "identity" and "identity" in space.activations:
                warm.append(Recipe(self.name, family, w, L, "identity", space.omega).label)
            out.append(Recipe(self.name, family, w, L, act, space.omega, tuple(warm)))
        return out

    def weight(self, family: str) -> float:
        """Relative share of the time left that one recipe of ``family`` gets (:data:`STAGE_WEIGHTS`)."""
        return STAGE_WEIGHTS.get(family, 1.0)

    def layer(self, recipe: Recipe, dim: int):
        """The layer of ``recipe`` on a ``dim``-axis grid (independent of the data, of the depth and
        of ``ω``: it is derived once per process)."""
        raise NotImplementedError

    def compile(self, layer, recipe: Recipe, grid: tuple, spacing: tuple, boundary, backend: str, dtype: str):
        """The runnable network of ``layer`` for ``recipe`` (``layer.compile`` with the depth and ω)."""
        return layer.compile(n=grid if len(grid) > 1 else grid[0], spacing=spacing if len(grid) > 1 else spacing[0],
                             layers=recipe.depth, omega=recipe.omega, boundary=boundary, backend=backend,
                             dtype=dtype)

    def bounds(self, recipe: Recipe, dim: int) -> dict:
        """Box constraints ``{name: (low, high)}`` for L-BFGS (e.g. non-negative diffusion)."""
        return {}

    def random_starts(self, net, recipe: Recipe, spacing: tuple, count: int, rng) -> list:
        """``count`` homogeneous random starts (dicts of the network's shapes)."""
        raise NotImplementedError

    def data_start(self, net, recipe: Recipe, spacing: tuple, estimate) -> dict | None:
        """A start from the data's linear response (:class:`~npdegen.estimator.starts.SpectralEstimate`,
        or None), or None."""
        return None

    def rescale_depth(self, name: str, value, ratio: float, omega: float):
        """A parameter of a ``L``-layer fit as a start for ``L' = L/ratio`` layers (default: as is)."""
        return value

    def physics(self, layer, theta: dict, spacing, recipe: Recipe | None = None):
        """What the fitted layer means (default: :func:`~npdegen.estimator.physics.fitted_physics`,
        the explain table with the fitted moments)."""
        from .physics import fitted_physics
        return fitted_physics(layer, theta, spacing)

    def gain(self, layer, net, theta: dict, recipe: Recipe, spacing: tuple) -> tuple:
        """``(gain per layer, note)`` of a fit for its stability certificate
        (:func:`~npdegen.estimator.choice.certify`): the largest amplification of one layer linearised
        about the zero state, over modes, sites and layers; ``(None, why)`` when the kind has no
        certificate (then its fits rank after the certified ones)."""
        return None, f"the {self.name!r} kind has no stability certificate"

    def reach(self, recipe: Recipe) -> float:
        """Cells one layer can move data along an axis (a stable explicit step moves at most its
        stencil's half-width): ``L·reach`` is the farthest a recipe transports."""
        return recipe.width // 2

    def transfer(self, theta: dict, source: Recipe, net, recipe: Recipe) -> dict:
        """Warm start for ``recipe`` (compiled as ``net``) from ``theta`` fitted for ``source``:
        shared names carry over (homogeneous → per site → per layer by broadcasting, per layer →
        per site by the mean over layers, rescaled for a new depth); new names start at 0."""
        out, grid = {}, tuple(getattr(net, "grid", ()))
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


@dataclass(frozen=True)
class RecipeSpace:
    """The documented search space (module docstring); :meth:`validate` checks it against the data."""
    kinds: tuple = DEFAULT_KINDS
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
        if not any(dim in KINDS[k].dims for k in kinds):      # the others get a report row saying so
            raise ValueError(f"no layer kind of {list(kinds)} supports {dim}-D grids")
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

    def initial(self, kinds: dict | None = None) -> list:
        """The first family's recipes: each kind's :meth:`LayerKind.recipes`, interleaved by depth
        (shallow to deep; at one depth the kinds in the order of ``self.kinds``, each kind's recipes
        in its own order), so that a budget that runs out drops the deepest recipes of every kind
        rather than all the recipes of the last kinds (fisher-kpp-2d, kinds one after the other: the
        kernel + reaction recipes came last and were skipped). ``kinds``: the kind objects by name,
        e.g. prepared for the data; default the registered ones; a name missing from it is left out."""
        kinds = KINDS if kinds is None else kinds
        family = self.families[0]
        out = []
        for name in self.kinds:
            kind = kinds.get(name)
            if kind is not None and family in kind.families:
                out += kind.recipes(self, family)
        return sorted(out, key=lambda r: r.depth)          # stable: kinds and each kind's order kept per depth

    def promote(self, family: str, history: list, top: int, kinds: dict | None = None) -> list:
        """Recipes of ``family`` warm-started from fitted recipes: for every kind that supports
        ``family``, the ``top`` best of the latest stage that fitted that kind (``history``: one list
        of fitted recipes per stage, best first)."""
        kinds = KINDS if kinds is None else kinds
        seen, out = set(), []
        for name in self.kinds:
            if name not in kinds or family not in kinds[name].families:
                continue
            for stage in reversed(history):
                mine = [r for r in stage if r.kind == name]
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
