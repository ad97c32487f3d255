r"""The integral operator on clustered points, ``Z_i = Σ_j K_{ij} z_j``, its adjoint and parameter gradients.

Four rules (``rule=``) give ``K_{ij} ≈ W(q_i, q_j − q_i; θ) w_j`` with the quadrature weights
``w_j = V_c/N_c`` of :mod:`.clusters` (``c(i)`` the cluster of point ``i``, ``Q_c`` its centroid):

=========  ==========================================================  ================================
rule       ``K_{ij}``                                                   cost per evaluation / layer
=========  ==========================================================  ================================
dense      ``W(q_i, q_j − q_i) w_j`` for every pair (exact sum)          ``N²`` (``N ≤`` :data:`DENSE_LIMIT`)
radius     the same, kept where ``|q_j − q_i|_∞ ≤ h`` (compact kernels:  pairs within the support, found
           exact; neighbours by ``scipy.spatial.cKDTree``)               once by a KD-tree
parcel     ``W(q_i, q_j − q_i) w_j`` within a cluster,                   ``Σ_c N_c²`` pairs ``+ C²``
           ``W(Q_{c(i)}, Q_{c(j)} − Q_{c(i)}) w_j`` between clusters
cluster    ``W(Q_{c(i)}, Q_{c(j)} − Q_{c(i)}) w_j`` for every pair       ``C²`` values, ``O(N)`` per layer
=========  ==========================================================  ================================

The radius rule's KD-tree search is cheap in few dimensions and not in many: 100 000 uniform
points in ``[0, 1]^8`` with ``h = 0.15`` took 23 s (176 000 pairs, 2 loaded cores); it runs again
only when ``h`` leaves ``[H/margin², H]``. For such data the ``cluster`` rule is the one that trains
fast (12–15 steps/s at 100 000 points, d = 8, 512 clusters, 4 layers, batch 4, float32).

``cluster`` is the paper's representation in full: the kernel piecewise constant over every
parcel pair, ``Z_i = Σ_c W(Q_c − Q_{c(i)}) S_c`` with ``S_c = Σ_{j∈c} w_j z_j``, so ``Z`` is one
value per cluster. ``parcel`` keeps the exact sum inside each cluster and the piecewise-constant
kernel between them. With one point per cluster both equal ``dense``.

Storage: the pair part as a CSR matrix (rows ``i``, structure fixed, values per call) and the
parcel part as a ``U × U`` matrix ``G`` between the units ``a(i)`` (points for ``dense``,
clusters otherwise): ``Z_i += Σ_v G_{a(i), v} S_v`` with the unit sums ``S_v = Σ_{a(j)=v} w_j z_j``
(one ``bincount`` per call). Products with ``G`` use ``einsum``, not BLAS: a threaded BLAS call
on a busy machine was measured to stall for 10–50 ms where ``einsum`` takes 0.2 ms (4 × 512 by
512 × 512, float32, 2 loaded cores). Adjoint:
``λ_j = Σ_i K_{ij} μ_i``; the gradient of a kernel parameter is ``Σ_{ij} μ_i (∂K_{ij}/∂θ) z_j``,
collected per cluster of the row (the unit of ``clustered`` parameters).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sps

__all__ = ["PointOperator", "RULES", "DENSE_LIMIT", "within_pairs"]

RULES = ("dense", "radius", "parcel", "cluster")
#: Largest number of points the dense rule takes (two ``N × N`` float64 matrices per parameter).
DENSE_LIMIT = 4096


def within_pairs(labels, sizes):
    """Every ordered pair ``(i, j)`` of points in the same cluster, sorted by ``i`` then ``j``."""
    n = len(labels)
    order = np.argsort(labels, kind="stable")
    start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    counts = sizes[labels]
    rows = np.repeat(np.arange(n), counts)
    first = np.repeat(np.cumsum(counts) - counts, counts)
    cols = order[np.repeat(start[labels], counts) + np.arange(len(rows)) - first]
    return rows, cols


class _Values:
    """One parameter set's operator: pair values (CSR) and the parcel matrix, float64 and the dtype."""

    def __init__(self, pairs64, dpairs, grid64, dgrid, dtype):
        self.pairs64, self.dpairs, self.grid64, self.dgrid = pairs64, dpairs, grid64, dgrid
        self.pairs = None if pairs64 is None else pairs64.astype(dtype, copy=False)
        self.grid = None if grid64 is None else grid64.astype(dtype, copy=False)


class PointOperator:
    """The operator of one rule on one :class:`~npdegen.points.clusters.Clusters` (module docstring)."""

    def __init__(self, clusters, kernel, rule: str, dtype, margin: float = 1.5):
        if rule not in RULES:
            raise ValueError(f"rule must be one of {', '.join(RULES)}, got {rule!r}")
        n = clusters.size
        if rule == "dense" and n > DENSE_LIMIT:
            raise ValueError(f"rule='dense' builds {n} x {n} matrices; it takes at most {DENSE_LIMIT} points: use "
                             "'radius' (compact kernels), 'parcel' or 'cluster'")
        if rule == "radius" and not kernel.compact:
            raise ValueError("rule='radius' sums over the neighbours inside a compact kernel's support; this kernel "
                             "has none (give kernel(..., support=h) or top_hat/epanechnikov), or use 'parcel' or "
                             "'cluster'")
        self.clusters, self.kernel, self.rule = clusters, kernel, rule
        self.dtype, self.margin = np.dtype(dtype), float(margin)
        self.size, self.count = n, clusters.count
        self.labels, self.weights = clusters.labels, clusters.weights
        self.rows = self.cols = self.indptr = None
        self.radius = None                  # the candidate radius H of the radius rule
        self.grid_part = rule != "radius"
        if rule == "dense":
            self.row_of = self.col_of = np.arange(n)
            self.rows_at = self.cols_at = clusters.points
            self.row_cluster = clusters.labels
        elif rule in ("parcel", "cluster"):
            self.row_of = self.col_of = clusters.labels
            self.rows_at = self.cols_at = clusters.centroids
            self.row_cluster = np.arange(self.count)
        if self.grid_part:
            self.units = len(self.rows_at)
            self._identity = rule == "dense"          # row and column units are the points themselves
            self._displacements = {}
            self._offsets = {}
        if rule == "parcel":
            self._set_pairs(*within_pairs(clusters.labels, clusters.sizes))

    # ------------------------------------------------------------------ structure
    def _set_pairs(self, rows, cols):
        order = np.lexsort((cols, rows))
        self.rows, self.cols = rows[order], cols[order]
        self.indptr = np.concatenate([[0], np.cumsum(np.bincount(self.rows, minlength=self.size))])

    def _neighbours(self, radius):
        from scipy.spatial import cKDTree
        tree = getattr(self, "_tree", None)
        if tree is None:
            tree = self._tree = cKDTree(self.clusters.points)
        pairs = tree.query_pairs(radius, p=np.inf, output_type="ndarray")
        idx = np.arange(self.size)
        self._set_pairs(np.concatenate([pairs[:, 0], pairs[:, 1], idx]),
                        np.concatenate([pairs[:, 1], pairs[:, 0], idx]))
        self.radius = radius

    def prepare(self, value_sets) -> None:
        """Make the structure cover every parameter set of a call: the radius rule's neighbour lists
        are found for ``H = margin·max h`` and kept while ``H/margin² ≤ max h ≤ H``."""
        if self.rule != "radius":
            return
        h = max(float(np.max(self.kernel.support(v))) for v in value_sets)
        if not (np.isfinite(h) and h > 0):
            raise ValueError(f"the kernel's support half-width must be positive and finite, got {h}")
        if self.radius is None or h > self.radius or h * self.margin ** 2 < self.radius:
            self._neighbours(h * self.margin)

    @property
    def pair_count(self) -> int:
        return 0 if self.rows is None else len(self.rows)

    # ------------------------------------------------------------------ values
    def _per(self, value, index):
        v = np.asarray(value, np.float64)
        return v if v.ndim == 0 else v[index]

    def evaluate(self, values: dict, grad: bool = True) -> _Values:
        """The operator for one set of parameter values (scalars, or one per cluster)."""
        pairs64 = dpairs = grid64 = dgrid = None
        n = self.size
        if self.rows is not None:
            rows, cols = self.rows, self.cols
            w, dw = self.kernel.on_pairs(self.clusters.points, rows, cols,
                                         lambda s: {k: self._per(v, self.labels[rows[s]]) for k, v in values.items()},
                                         grad)
            wj = self.weights[cols]
            pairs64 = sps.csr_matrix((w * wj, cols, self.indptr), shape=(n, n))
            if grad:
                dpairs = {k: sps.csr_matrix((d * wj, cols, self.indptr), shape=(n, n)) for k, d in dw.items()}
        if self.grid_part:
            theta_rows = {k: self._per(v, self.row_cluster) for k, v in values.items()}
            grid64, dgrid = self.kernel.on_grid(self.rows_at, self.cols_at, theta_rows, grad,
                                                skip_diagonal=self.rule == "parcel", cache=self._displacements)
        return _Values(pairs64, dpairs, grid64, dgrid, self.dtype)

    # ------------------------------------------------------------------ application
    def _sum_units(self, a, units_of):
        """``S[b, u] = Σ_{i: units_of[i] = u} a[b, i]`` (float64), one ``bincount`` for the whole batch."""
        if self._identity:
            return np.asarray(a, np.float64)
        batch = a.shape[0]
        key = (id(units_of), batch)
        flat = self._offsets.get(key)
        if flat is None:
            flat = self._offsets[key] = (units_of[None, :] + self.units * np.arange(batch)[:, None]).ravel()
        return np.bincount(flat, a.ravel(), minlength=batch * self.units).reshape(batch, self.units)

    def _spread(self, g, units_of):
        """``out[b, i] = g[b, units_of[i]]`` (``np.take``: 4x faster than fancy indexing here)."""
        return g if self._identity else np.take(g, units_of, axis=1)

    def apply(self, vals: _Values, z, exact: bool = False):
        """``Z = K z`` for states ``z`` of shape ``(batch, N)`` (``exact``: the float64 operator)."""
        pairs, grid = (vals.pairs64, vals.grid64) if exact else (vals.pairs, vals.grid)
        dtype = np.float64 if exact else self.dtype
        out = np.zeros(z.shape, dtype)
        if pairs is not None:
            out += (pairs @ z.T).T
        if grid is not None:
            sums = self._sum_units(z * self.weights, self.col_of).astype(dtype, copy=False)
            out += self._spread(np.einsum("bv,av->ba", sums, grid), self.row_of)
        return out

    def adjoint(self, vals: _Values, mu):
        """``Kᵀ μ`` (the dot-product adjoint of :meth:`apply`)."""
        return self.backward(vals, mu, None)[0]

    def gradient(self, vals: _Values, mu, z) -> dict:
        """``{name: g}``, ``g[c] = Σ_{i∈c} Σ_j μ_i ∂K_{ij}/∂θ z_j`` summed over the batch (float64)."""
        return self.backward(vals, mu, z)[1]

    def backward(self, vals: _Values, mu, z):
        """``(Kᵀ μ, gradient)`` in one pass (the unit sums of ``μ`` shared); no gradient if ``z`` is None."""
        out = np.zeros(mu.shape, mu.dtype)
        grads = {}
        if vals.pairs is not None:
            out += (vals.pairs.T @ mu.T).T
            if z is not None and vals.dpairs is not None:
                zt = np.asarray(z.T, np.float64)
                for k, dk in vals.dpairs.items():
                    per_point = np.einsum("bi,ib->i", mu, dk @ zt, dtype=np.float64)
                    grads[k] = np.bincount(self.labels, per_point, minlength=self.count)
        if vals.grid is not None:
            sums_mu = self._sum_units(mu, self.row_of)
            spread = np.einsum("ba,av->bv", sums_mu.astype(vals.grid.dtype, copy=False), vals.grid)
            out += self._spread(spread, self.col_of) * self.weights.astype(mu.dtype)
            if z is not None and vals.dgrid is not None:
                sums_z = self._sum_units(z * self.weights, self.col_of)
                for k, dk in vals.dgrid.items():
                    per_row = np.einsum("ba,ab->a", sums_mu, np.einsum("av,bv->ab", dk, sums_z))
                    grads[k] = grads.get(k, 0.0) + np.bincount(self.row_cluster, per_row, minlength=self.count)
        return out, grads

    # ------------------------------------------------------------------ inspection
    def moments(self, vals: _Values):
        """Per point ``(Σ_j K_ij, Σ_j K_ij (q_j − q_i), Σ_j K_ij (q_j − q_i)(q_j − q_i)ᵀ)``, float64:
        the operator applied to ``1``, ``y_k`` and ``y_k y_l`` (``y = q − mean q``) and recentred."""
        y = self.clusters.points - self.clusters.points.mean(axis=0)
        n, d = y.shape
        upper = [(k, l) for k in range(d) for l in range(k, d)]
        fields = np.concatenate([np.ones((1, n)), y.T, np.stack([y[:, k] * y[:, l] for k, l in upper])])
        applied = self.apply(vals, fields, exact=True)
        m0, m1y = applied[0], applied[1:1 + d].T                        # Σ K, Σ K y_j
        first = m1y - y * m0[:, None]
        second = np.empty((n, d, d))
        for col, (k, l) in enumerate(upper):
            v = applied[1 + d + col] - y[:, k] * m1y[:, l] - y[:, l] * m1y[:, k] + y[:, k] * y[:, l] * m0
            second[:, k, l] = second[:, l, k] = v
        return m0, first, second
