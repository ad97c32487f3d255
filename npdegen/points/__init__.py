"""Nonlocal layers on scattered points: the cluster representation (issue 14 item 4, MODEL.md §4).

Points ``q_i ∈ R^d`` are grouped into clusters (scikit-learn), integrals become weighted sums with
weights ``V_c/N_c`` (:mod:`.clusters`), and the kernel ``W(r)`` of :mod:`npdegen.integral` is
applied by a documented rule (:mod:`.operator`): exactly, within a compact kernel's support
(KD-tree), or piecewise constant over the cluster parcels. :class:`PointLayer` compiles to a
:class:`PointNetwork` with the training surface of every npdegen network. Needs scikit-learn and
scipy (``pip install npdegen[learn]``).
"""
from .clusters import Clusters, make_clusters
from .layer import PointLayer
from .network import ClusterMoments, PointNetwork

__all__ = ["PointLayer", "PointNetwork", "Clusters", "ClusterMoments", "make_clusters"]
