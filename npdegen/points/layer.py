r"""``PointLayer``: the nonlocal relaxation layer on scattered points, in the cluster representation (issue 14 item 4).

.. math::
    z_{t+1} = (1-ω)\, z_t + ω\, f(Z_t), \qquad
    Z_t(q_i) = \int W(q_i, r; θ)\, z_t(q_i + r)\, dr - b_i
             \;≈\; \sum_j W(q_i, q_j - q_i; θ)\, w_j\, z_t(q_j) - b_i ,

with the points grouped into clusters and ``w_j = V_c/N_c`` (:mod:`.clusters`; MODEL.md §4). The
sum is taken by one of four rules (:mod:`.operator`): ``dense`` (every pair), ``radius`` (the pairs
inside a compact kernel's support, found by a KD-tree), ``parcel`` (exact within a cluster, the
kernel piecewise constant between clusters: ``W(Q_{c′} − Q_c)`` at the centroids) and ``cluster``
(piecewise constant everywhere: one value of ``Z`` per cluster, ``C²`` kernel values per call and
``O(N)`` work per layer — the rule for large data). ``rule="auto"`` takes ``radius`` for a compact
kernel and ``parcel`` otherwise (exact, = ``dense``, when every point is its own cluster).

A regular grid of points, each its own cluster, gives the grid rectangle rule: the layer equals
:class:`~npdegen.integral.NonlocalPDE` with zero Dirichlet boundaries (nothing outside the points).
The layer's moments are the kernel's exact ones (:meth:`PointLayer.moments`); what the discrete sum
implies in each cluster (boundaries, sparse data, the parcel approximation) is
:meth:`PointNetwork.cluster_moments <npdegen.points.network.PointNetwork.cluster_moments>`.
"""
from __future__ import annotations

import math
import numbers

import sympy as sp

from ..integral.kernel import Kernel
from ..integral.layer import Activation
from .clusters import make_clusters
from .evaluate import PointKernel
from .network import PointNetwork
from .operator import RULES

__all__ = ["PointLayer"]

KERNEL_FAMILIES = ("homogeneous", "clustered", "time-dependent")
POINT_FAMILIES = ("homogeneous", "heterogeneous", "clustered", "time-dependent")
DTYPES = ("float32", "float64")
#: Largest number of row units (points for ``dense``, clusters otherwise) of the ``U × U`` parcel matrix.
GRID_LIMIT = 8192


class PointLayer:
    r"""A nonlocal neural-PDE layer on points ``q_i ∈ R^d`` (module docstring).

    Parameters
    ----------
    kernel : :class:`~npdegen.integral.kernel.Kernel` with ``d`` displacement symbols (``gaussian(σ,
        r=sympy.symbols("r0:8"))`` in 8-D; the named constructors make 1–3-D ``r`` by themselves).
    points : ``(N, d)`` array of finite coordinates.
    clusters : ``None`` (every point its own cluster), an int ``C`` (scikit-learn KMeans, fixed
        ``seed``), ``N`` labels or a scikit-learn clusterer (:func:`~npdegen.points.clusters.make_clusters`).
    activation : as for :class:`~npdegen.integral.NonlocalPDE` (a name, or a SymPy expression with
        trainable parameters listed in ``params``).
    params : ``{symbol or name: family}`` for every kernel and activation parameter. Kernel
        parameters: ``"homogeneous"``, ``"clustered"`` (one value per cluster) or ``"time-dependent"``
        (one per layer); activation parameters also ``"heterogeneous"`` (one per point, per layer and
        point when time-dependent).
    bias : ``None`` or the family of ``b`` (as an activation parameter).
    volume, spacing, domain_volume, seed : the cluster volumes and clustering (:mod:`.clusters`).
    """

    def __init__(self, kernel, points, clusters=None, activation="identity", params=None, bias=None,
                 name="points", volume="box", spacing=None, domain_volume=None, seed: int = 0):
        if not isinstance(kernel, Kernel):
            raise TypeError(f"kernel must be an npdegen Kernel (npdegen.integral.kernel(W, r), gaussian(sigma), ...), "
                            f"got {type(kernel).__name__}")
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"name must be an identifier, got {name!r}")
        self.kernel, self.name = kernel, name
        self.clusters = make_clusters(points, clusters, volume=volume, spacing=spacing, domain_volume=domain_volume,
                                      seed=seed)
        if self.clusters.dim != kernel.dim:
            raise ValueError(f"the points have {self.clusters.dim} coordinate(s) but the kernel's r has {kernel.dim} "
                             f"({', '.join(s.name for s in kernel.r)}): give r with one symbol per coordinate, e.g. "
                             f"gaussian(sigma, r=sympy.symbols('r0:{self.clusters.dim}'))")
        symbols = [k for k in (params or {}) if isinstance(k, sp.Symbol) and k not in kernel.params]
        self.activation = Activation(activation, symbols)
        self.families = self._families(params, bias)
        self.evaluator = PointKernel(kernel)

    def _families(self, params, bias) -> dict:
        by_name = {}
        for key, family in dict(params or {}).items():
            name = key.name if isinstance(key, sp.Symbol) else key
            if not isinstance(name, str):
                raise TypeError(f"params keys must be kernel or activation parameter symbols or names, got {key!r}")
            by_name[name] = family
        kernel_names = [p.name for p in self.kernel.params]
        wanted = set(kernel_names) | set(self.activation.names)
        missing, extra = wanted - set(by_name), set(by_name) - wanted
        if missing:
            raise ValueError(f"parameter(s) {', '.join(sorted(missing))} need a family in params, e.g. "
                             f"params={{{sorted(missing)[0]}: 'homogeneous'}}")
        if extra:
            raise ValueError(f"params {', '.join(sorted(extra))} are neither parameters of the kernel nor of the "
                             f"activation ({', '.join(sorted(wanted)) or 'there are none'})")
        for name, family in by_name.items():
            allowed = KERNEL_FAMILIES if name in kernel_names else POINT_FAMILIES
            if family not in allowed:
                hint = " (a kernel parameter varies per cluster: 'clustered')" if family == "heterogeneous" else ""
                raise ValueError(f"params[{name!r}] = {family!r}: choose one of {', '.join(allowed)}{hint}")
        families = {p: by_name[p] for p in [*kernel_names, *self.activation.names]}
        if bias is not None:
            if bias not in POINT_FAMILIES:
                raise ValueError(f"bias = {bias!r}: choose None or one of {', '.join(POINT_FAMILIES)}")
            families["b"] = bias
        return families

    @property
    def dim(self) -> int:
        return self.kernel.dim

    @property
    def points(self):
        return self.clusters.points

    # ------------------------------------------------------------------ physics
    def moments(self, max_order: int = 4):
        """The kernel's exact moments ``W_k = ∫ r^k W dr`` (divergent ones listed)."""
        return self.kernel.moments(max_order)

    def explain(self, max_order: int = 4):
        """Physics table moment → process of the kernel (reaction, advection, diffusion, …)."""
        return self.kernel.explain(max_order)

    # ------------------------------------------------------------------ compile
    def compile(self, layers: int = 1, omega: float = 1.0, dtype: str = "float64", rule: str = "auto",
                train_omega: bool = False, allow_unstable: bool = False, margin: float = 1.5) -> PointNetwork:
        """A runnable network of ``layers`` steps on the points.

        ``omega`` in (0, 2) (``allow_unstable`` lifts the bound); ``rule`` one of ``auto | dense |
        radius | parcel | cluster`` (module docstring); ``train_omega`` adds ``"omega"`` to the
        parameters; ``margin`` > 1: the radius rule finds neighbours out to ``margin·h`` and reuses
        them while the support ``h`` stays within ``[H/margin², H]``.
        """
        if not isinstance(layers, int) or isinstance(layers, bool) or layers < 1:
            raise ValueError(f"layers must be a positive integer, got {layers!r}")
        for what, v in (("omega", omega), ("margin", margin)):
            if not isinstance(v, numbers.Real) or isinstance(v, bool) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"{what} must be a positive finite number, got {v!r}")
        if omega >= 2 and not allow_unstable:
            raise ValueError(f"omega = {omega!r} is outside (0, 2): the leak (1 - omega) z amplifies; pass "
                             "allow_unstable=True to run it anyway")
        if margin < 1:
            raise ValueError(f"margin must be at least 1 (the neighbour radius over the support), got {margin!r}")
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        if rule == "auto":
            rule = "radius" if self.evaluator.compact else "parcel"
        if rule not in RULES:
            raise ValueError(f"rule must be 'auto' or one of {', '.join(RULES)}, got {rule!r}")
        units = self.clusters.size if rule == "dense" else self.clusters.count
        if rule in ("parcel", "cluster") and units > GRID_LIMIT:
            raise ValueError(f"rule={rule!r} builds a {units} x {units} matrix between clusters; at most {GRID_LIMIT} "
                             "clusters (give clusters=C with fewer), or rule='radius' for a compact kernel")
        return PointNetwork(self, layers, float(omega), dtype, rule, train_omega, float(margin))

    def __repr__(self):
        bias = " - b" if "b" in self.families else ""
        return (f"PointLayer({self.name!r}: Z_i = sum_j W(q_j - q_i) w_j z_j{bias}, W = {self.kernel.density}, "
                f"f = {self.activation.name}; {self.clusters!r})")
