r"""Clusters of scattered points and their quadrature weights (MODEL.md §4, the cluster representation).

Points ``q_i ∈ R^d`` (``i = 1 … N``) are grouped into clusters ``c = 1 … C`` (scikit-learn
``KMeans``, ``MiniBatchKMeans`` for ``N > 20 000``, any estimator with ``fit_predict``, or labels
you give), and integrals become weighted sums:

.. math::  \int g(q)\, dq \;≈\; \sum_i w_i\, g(q_i), \qquad w_i = V_c / N_c \quad (i ∈ c),

with ``N_c`` the cluster's number of points and ``V_c = Π_k ℓ_{ck}`` the volume of the smallest
axis-aligned box enclosing it, ``ℓ_{ck} = max_{i∈c} q_{ik} − min_{i∈c} q_{ik}``.

**Degenerate clusters.** A side ``ℓ_{ck} = 0`` (a single point, or points sharing coordinate ``k``)
is replaced by the mean spacing of the whole point set along axis ``k``,

.. math::  s_k = \frac{\max_i q_{ik} − \min_i q_{ik}}{N^{1/d} − 1},

which is exactly ``Δ_k`` on a regular grid of ``n^d`` points (so with every point its own cluster
``w_i = Π_k Δ_k``, the grid's rectangle rule) and about the mean distance between ``N`` uniform
points per axis; ``spacing=`` sets ``s_k`` yourself (a number or one per axis).

**The hypercube.** The paper's ``V_c`` is the smallest enclosing *hypercube*, ``(max_k ℓ_{ck})^d``
(``volume="cube"``). The box is the default because the cube overestimates badly in higher
dimensions. Measured, uniform points in ``[0, 1]^d`` and (MiniBatch)KMeans: ``Σ_c V_c`` is 0.82 (box) and 1.00
(cube) for ``d = 2`` with 20 points per cluster, 1.10 and 1.27 with 80, and 3.3 (box) against 43
(cube) for ``d = 8`` with 100. Neither is consistent: a Voronoi cell's bounding box is not its
volume, so the weights carry an ``O(1)`` bias that refining the points does not remove. Give
``domain_volume`` (the volume the points sample) to rescale ``V_c`` so that ``Σ_c V_c`` equals it;
the quadrature then converges like Monte Carlo, error ``∝ N^{-1/2}`` for i.i.d. points at a fixed
number of points per cluster (tests/test_points.py measures the rate).
"""
from __future__ import annotations

import numbers

import numpy as np

__all__ = ["Clusters", "make_clusters", "VOLUMES", "MINIBATCH_ABOVE"]

VOLUMES = ("box", "cube")
#: Above this many points an integer ``clusters`` uses ``MiniBatchKMeans`` instead of ``KMeans``.
MINIBATCH_ABOVE = 20_000


def _positive(value, what):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value) or value <= 0:
        raise ValueError(f"{what} must be a positive finite number, got {value!r}")
    return float(value)


def as_points(points) -> np.ndarray:
    """``points`` as a read-only float64 ``(N, d)`` array (a 1-D array is ``N`` points in 1-D)."""
    arr = np.asarray(points)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"points must be real numbers, got dtype {arr.dtype}")
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] < 1:
        raise ValueError(f"points must have shape (N, d), got {np.shape(points)}")
    if arr.shape[0] < 2:
        raise ValueError(f"need at least 2 points, got {arr.shape[0]}")
    out = np.array(arr, np.float64)
    bad = ~np.isfinite(out)
    if bad.any():
        i, k = np.argwhere(bad)[0]
        raise ValueError(f"points contain NaN or inf ({int(bad.any(axis=1).sum())} point(s), first: point {i}, "
                         f"coordinate {k} = {out[i, k]})")
    out.flags.writeable = False
    return out


class Clusters:
    """Points, their cluster labels and quadrature weights (module docstring).

    Attributes: ``points`` ``(N, d)``, ``labels`` ``(N,)`` in ``0 … C−1``, ``count`` ``C``,
    ``sizes`` ``N_c``, ``centroids`` (the mean of each cluster's points, ``(C, d)``), ``lower``/``upper``
    (the enclosing boxes), ``sides`` ``ℓ_{ck}`` after the degenerate rule, ``volumes`` ``V_c``,
    ``weights`` ``w_i``, ``spacing`` ``s_k``, ``method`` (how the labels were made).
    """

    def __init__(self, points, labels, method, volume="box", spacing=None, domain_volume=None):
        self.points = points
        n, d = points.shape
        _, labels = np.unique(labels, return_inverse=True)
        self.labels = labels.reshape(-1).astype(np.intp)
        self.labels.flags.writeable = False
        self.count = int(self.labels.max()) + 1
        self.method, self.volume = method, volume
        self.sizes = np.bincount(self.labels, minlength=self.count)
        self.centroids = np.zeros((self.count, d))
        np.add.at(self.centroids, self.labels, points)
        self.centroids /= self.sizes[:, None]
        self.lower = np.full((self.count, d), np.inf)
        self.upper = np.full((self.count, d), -np.inf)
        np.minimum.at(self.lower, self.labels, points)
        np.maximum.at(self.upper, self.labels, points)
        self.spacing = self._spacing(spacing)
        sides = self.upper - self.lower
        self.sides = np.where(sides > 0, sides, self.spacing[None, :])
        volumes = np.prod(self.sides, axis=1) if volume == "box" else np.max(self.sides, axis=1) ** d
        if domain_volume is not None:
            volumes = volumes * (_positive(domain_volume, "domain_volume") / volumes.sum())
        self.volumes = volumes
        self.weights = volumes[self.labels] / self.sizes[self.labels]
        for arr in (self.sizes, self.centroids, self.lower, self.upper, self.sides, self.volumes, self.weights):
            arr.flags.writeable = False

    def _spacing(self, spacing) -> np.ndarray:
        n, d = self.points.shape
        if spacing is not None:
            values = spacing if isinstance(spacing, (tuple, list, np.ndarray)) else [spacing] * d
            if len(values) != d:
                raise ValueError(f"spacing must be a number or one per axis ({d}), got {spacing!r}")
            return np.array([_positive(v, "spacing") for v in values])
        extent = self.points.max(axis=0) - self.points.min(axis=0)
        flat = np.flatnonzero(extent == 0)
        if flat.size:
            raise ValueError(f"every point has the same coordinate along axis {int(flat[0])}: the points span no "
                             "volume there; drop that coordinate, or give spacing= for it")
        return extent / (n ** (1.0 / d) - 1.0)

    @property
    def dim(self) -> int:
        return self.points.shape[1]

    @property
    def size(self) -> int:
        return self.points.shape[0]

    def members(self) -> list:
        """The point indices of each cluster (a list of ``C`` arrays, ascending)."""
        order = np.argsort(self.labels, kind="stable")
        return np.split(order, np.cumsum(self.sizes)[:-1])

    def __repr__(self):
        return (f"Clusters({self.size} points in {self.dim}-D, {self.count} clusters by {self.method}, "
                f"sizes {self.sizes.min()}..{self.sizes.max()}, sum of volumes {self.volumes.sum():.4g})")


def _fit_labels(points, clusters, seed):
    n = points.shape[0]
    if clusters is None:
        return np.arange(n), "points"
    if isinstance(clusters, str):
        if clusters == "points":
            return np.arange(n), "points"
        raise ValueError(f"clusters must be None/'points', a count, labels or a scikit-learn clusterer, got "
                         f"{clusters!r}")
    if isinstance(clusters, numbers.Integral) and not isinstance(clusters, bool):
        count = int(clusters)
        if count < 1:
            raise ValueError(f"clusters must be at least 1, got {count}")
        if count > n:
            raise ValueError(f"clusters = {count} is more than the number of points ({n})")
        distinct = len(np.unique(points, axis=0))
        if count > distinct:
            raise ValueError(f"clusters = {count} is more than the number of distinct points ({distinct} of {n})")
        if count == n:
            return np.arange(n), "points"
        from sklearn.cluster import KMeans, MiniBatchKMeans
        if n > MINIBATCH_ABOVE:
            est = MiniBatchKMeans(n_clusters=count, n_init=1, random_state=seed, batch_size=4096)
            name = "MiniBatchKMeans"
        else:
            est = KMeans(n_clusters=count, n_init=1, random_state=seed)
            name = "KMeans"
        return est.fit_predict(points), f"{name}({count}, random_state={seed})"
    if hasattr(clusters, "fit_predict"):
        return np.asarray(clusters.fit_predict(points)), type(clusters).__name__
    labels = np.asarray(clusters)
    if labels.dtype.kind not in "iu" or labels.shape != (n,):
        raise ValueError(f"cluster labels must be {n} integers (one per point), got dtype {labels.dtype}, "
                         f"shape {labels.shape}")
    return labels, "labels"


def make_clusters(points, clusters=None, volume: str = "box", spacing=None, domain_volume=None,
                  seed: int = 0) -> Clusters:
    """Cluster ``points`` and weigh them (module docstring).

    Parameters
    ----------
    points : ``(N, d)`` array (finite; ``N ≥ 2``).
    clusters : ``None`` or ``"points"`` (every point its own cluster), an int ``C`` (KMeans with
        ``random_state=seed``; ``MiniBatchKMeans`` above :data:`MINIBATCH_ABOVE` points), ``N``
        integer labels, or a scikit-learn clusterer (anything with ``fit_predict``).
    volume : ``"box"`` (default) or ``"cube"`` (the paper's hypercube).
    spacing : the side given to a zero-extent axis (default: the mean spacing ``s_k``).
    domain_volume : rescale the volumes to add up to this (the volume the points sample).
    """
    pts = as_points(points)
    if volume not in VOLUMES:
        raise ValueError(f"volume must be one of {', '.join(VOLUMES)}, got {volume!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    labels, method = _fit_labels(pts, clusters, int(seed))
    return Clusters(pts, labels, method, volume, spacing, domain_volume)
