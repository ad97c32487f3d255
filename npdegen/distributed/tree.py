"""A fixed order of summation: the dyadic tree over leaves ``0 … m−1``, evaluated in pieces.

Floating-point addition is not associative, so a sum is reproducible only if its bracketing is.
Here the bracketing is the dyadic (segment) tree over the ``m`` leaves: node ``(j, k)`` covers the
leaves ``[k·2ʲ, min((k+1)·2ʲ, m))`` and

.. math::

    v(0, k) = \\text{leaf}_k, \\qquad
    v(j, k) = \\begin{cases} v(j-1, 2k) + v(j-1, 2k+1) & (2k+1)·2^{j-1} < m \\\\
                             v(j-1, 2k) & \\text{otherwise (no right child)} \\end{cases}

with the root ``(J, 0)``, ``J = ⌈log₂ m⌉``: ``((l₀ + l₁) + (l₂ + l₃)) + l₄`` for ``m = 5``.

A worker holding the contiguous leaves ``[a, b)`` evaluates every node that lies inside its range
(at most ``2·log₂(b − a)`` remain); pieces of adjacent ranges merge by evaluating the nodes that
become complete. Every node value is computed by the same additions, with the same operands in the
same order, whoever computes it and whatever the ranges were: the root is bit-identical for any
partition of the leaves into ranges and any order in which the pieces are merged.

A *piece* is a dict ``{(j, k): value}`` of nodes with disjoint leaf ranges. :func:`insert` keeps it
maximal: no node has its sibling in the piece, and no left child without a right sibling stays.
"""
from __future__ import annotations

__all__ = ["Tree"]


class Tree:
    """The dyadic tree over ``leaves`` leaves, with ``add(left, right)`` the addition of two values."""

    def __init__(self, leaves: int, add):
        if not isinstance(leaves, int) or leaves < 1:
            raise ValueError(f"a reduction tree needs at least one leaf, got {leaves!r}")
        self.leaves, self.add = leaves, add
        self.levels = (leaves - 1).bit_length()          # J = ⌈log₂ m⌉ (0 for one leaf)

    def span(self, node) -> tuple[int, int]:
        """The leaves ``[first, stop)`` a node covers."""
        j, k = node
        return k << j, min((k + 1) << j, self.leaves)

    def insert(self, piece: dict, node, value) -> None:
        """Add ``value`` of ``node`` to ``piece`` (in place), evaluating every node it completes."""
        j, k = node
        if not (0 <= j <= self.levels and 0 <= k << j < self.leaves):
            raise ValueError(f"node {node} is not in the tree over {self.leaves} leaves")
        while j < self.levels:
            if k % 2 == 0 and (k + 1) << j >= self.leaves:      # a left child with no right sibling
                j, k = j + 1, k // 2
                continue
            sibling = (j, k ^ 1)
            if sibling not in piece:
                break
            other = piece.pop(sibling)
            value = self.add(value, other) if k % 2 == 0 else self.add(other, value)
            j, k = j + 1, k // 2
        if (j, k) in piece or self._overlaps(piece, (j, k)):
            raise ValueError(f"leaves {self.span((j, k))} were given twice")
        piece[(j, k)] = value

    def _overlaps(self, piece, node) -> bool:
        first, stop = self.span(node)
        return any(a < stop and first < b for a, b in map(self.span, piece))

    def leaf_piece(self, first: int, values) -> dict:
        """The piece of the consecutive leaves ``first, first + 1, …`` with the given values."""
        piece: dict = {}
        for i, value in enumerate(values):
            self.insert(piece, (0, first + i), value)
        return piece

    def merge(self, *pieces) -> dict:
        """One piece from several (their leaf ranges disjoint); the inputs are left unchanged."""
        out: dict = {}
        for piece in pieces:
            for node in sorted(piece, key=self.span):
                self.insert(out, node, piece[node])
        return out

    def root(self, piece: dict):
        """The value of the whole sum; ``piece`` must cover every leaf."""
        top = (self.levels, 0)
        if set(piece) != {top}:
            covered = sum(b - a for a, b in map(self.span, piece))
            raise ValueError(f"the pieces cover {covered} of {self.leaves} leaves: a shard is missing")
        return piece[top]
