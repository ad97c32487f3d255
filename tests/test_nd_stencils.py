"""N-D stencils and moments against independent references (findiff and tests/reference_nd.py).

* The reference's own 1-D weights (an exact Vandermonde solve) equal ``findiff.coefficients``, and
  its tensor-product N-D stencils equal findiff's interior stencils (``Diff(...).stencil(shape)``)
  and findiff's periodic operator matrices: findiff is the independent check of the reference.
* ``layer.stencil()`` equals the reference symbolically (keys are offset tuples in the order of the
  field's coordinates, spacing symbols ``Delta_<coord>``), ``layer.stencil(spacing)`` numerically,
  and ``layer.stencil(spacing)`` equals findiff's operator with the same coefficients.
* ``layer.moments(k)`` are ``W_α = Σ_o Π_k (o_k Δ_k)^{α_k} w_o`` (no 1/α!), i.e.
  ``Σ_o w_o z(x + oΔ) ≈ Σ_α W_α/α! ∂^α z``: for the anisotropic ADR stencil
  ``W_00 = 1 + R``, ``W_10 = −U``, ``W_01 = −V``, ``W_20 = 2 Dxx``, ``W_11 = 2 Dxy``, ``W_02 = 2 Dyy``.

Tolerances: symbolic equality (``simplify(a − b) == 0``); numbers 1e-12 relative to the largest
weight (findiff's own coefficients carry ~1e-15 round-off).
"""
import itertools

import numpy as np
import pytest
import sympy as sp
from findiff import Diff, Identity, coefficients

import npdegen
from reference_nd import (axis_weights, central_offsets, derivative_weights, multi_indices, numeric_stencil,
                          reference_moments, reference_stencil, spacing_symbols, stencil_matrix,
                          symbolic_mismatches)

x, y, w = sp.symbols("x y w")
z2 = sp.Function("z")(x, y)
z3 = sp.Function("z")(x, y, w)
U, V, W, R = sp.symbols("U V W R")
Dxx, Dxy, Dyy, Dww, Dxw = sp.symbols("Dxx Dxy Dyy Dww Dxw")

VALUES = {"U": 0.3, "V": -0.2, "W": 0.15, "R": -0.1, "Dxx": 0.2, "Dxy": 0.05, "Dyy": 0.12, "Dww": 0.3,
          "Dxw": -0.04}

#: name -> (dim, {alpha: coefficient}); the transform is Σ_α c_α ∂^α z.
OPERATORS = {
    "laplacian-2d": (2, {(2, 0): 1, (0, 2): 1}),
    "mixed-2d": (2, {(1, 1): 1}),
    "anisotropic-2d": (2, {(2, 0): Dxx, (1, 1): 2 * Dxy, (0, 2): Dyy}),
    "adr-2d": (2, {(0, 0): 1 + R, (1, 0): -U, (0, 1): -V, (2, 0): Dxx, (1, 1): 2 * Dxy, (0, 2): Dyy}),
    "laplacian-3d": (3, {(2, 0, 0): 1, (0, 2, 0): 1, (0, 0, 2): 1}),
    "mixed-3d": (3, {(1, 1, 0): 1, (0, 1, 1): 1, (1, 0, 1): 1}),
    "adr-3d": (3, {(0, 0, 0): 1 + R, (1, 0, 0): -U, (0, 1, 0): -V, (0, 0, 1): -W, (2, 0, 0): Dxx,
                   (0, 2, 0): Dyy, (0, 0, 2): Dww, (1, 0, 1): 2 * Dxw}),
}
SPACING = {2: (0.5, 0.7), 3: (0.5, 0.7, 0.9)}


def field_of(dim):
    return z2 if dim == 2 else z3


def transform_of(dim, terms):
    z = field_of(dim)
    coords = z.args
    expr = 0
    for alpha, c in terms.items():
        d = z
        if any(alpha):
            d = z.diff(*[(coords[k], a) for k, a in enumerate(alpha) if a])
        expr += c * d
    return expr


def params_of(terms):
    syms = set()
    for c in terms.values():
        syms |= sp.sympify(c).free_symbols
    return {s: "homogeneous" for s in sorted(syms, key=lambda s: s.name)}


def make_layer(name, accuracy):
    dim, terms = OPERATORS[name]
    return npdegen.NeuralPDE(transform_of(dim, terms), field_of(dim), params=params_of(terms), accuracy=accuracy), \
        dim, terms


def findiff_operator(dim, terms, spacing, accuracy, periodic):
    """The same operator in findiff, coefficients substituted with VALUES."""
    op = None
    for alpha, c in terms.items():
        coef = float(sp.sympify(c).xreplace({s: VALUES[s.name] for s in sp.sympify(c).free_symbols}))
        term = None
        for k, a in enumerate(alpha):
            if a:
                d = Diff(k, spacing[k], periodic=periodic, acc=accuracy) ** a
                term = d if term is None else term * d
        term = coef * (Identity() if term is None else term)
        op = term if op is None else op + term
    return op


def numeric(stencil_dict, spacing_syms=(), spacing=()):
    vals = dict(VALUES)
    vals.update({s.name: v for s, v in zip(spacing_syms, spacing)})
    return numeric_stencil(stencil_dict, vals)


def assert_stencils_close(actual, expected, rel=1e-12):
    scale = max(abs(v) for v in expected.values())
    for key in set(actual) | set(expected):
        a, e = actual.get(key, 0.0), expected.get(key, 0.0)
        assert abs(a - e) <= rel * scale, (key, a, e)


# ---------------------------------------------------------------------------- the reference vs findiff
@pytest.mark.parametrize("accuracy", [2, 4, 6])
@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_reference_axis_weights_match_findiff(order, accuracy):
    fd = coefficients(order, accuracy)["center"]
    ours = axis_weights(order, accuracy)
    assert tuple(int(o) for o in fd["offsets"]) == central_offsets(order, accuracy)
    for o, c in zip(fd["offsets"], fd["coefficients"]):
        assert abs(float(ours[int(o)]) - float(c)) < 1e-12 * max(abs(float(v)) for v in ours.values())


def test_reference_axis_weights_closed_forms():
    assert axis_weights(1, 2) == {-1: sp.Rational(-1, 2), 0: 0, 1: sp.Rational(1, 2)}
    assert axis_weights(2, 2) == {-1: 1, 0: -2, 1: 1}
    assert axis_weights(0, 4) == {0: 1}
    assert derivative_weights((1, 1), 2) == {(1, 1): sp.Rational(1, 4), (1, -1): sp.Rational(-1, 4),
                                             (-1, 1): sp.Rational(-1, 4), (-1, -1): sp.Rational(1, 4)}


@pytest.mark.parametrize("accuracy", [2, 4])
@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_reference_stencil_matches_findiff(name, accuracy):
    """Interior stencil of findiff's (non-periodic) operator and its periodic matrix."""
    dim, terms = OPERATORS[name]
    spacing = SPACING[dim]
    ours = numeric(reference_stencil(terms, dim, accuracy, spacing))
    shape = (11,) * dim if dim == 2 else (9,) * dim
    fd_st = findiff_operator(dim, terms, spacing, accuracy, periodic=False).stencil(shape).data[("C",) * dim]
    assert_stencils_close(ours, {tuple(int(v) for v in k): float(c) for k, c in fd_st.items()})
    n = (6, 5) if dim == 2 else (5, 6, 5)
    M_fd = findiff_operator(dim, terms, spacing, accuracy, periodic=True).matrix(n).toarray()
    M_ours = stencil_matrix(ours, n, "periodic")
    np.testing.assert_allclose(M_ours, M_fd, rtol=0, atol=1e-12 * np.max(np.abs(M_fd)))


def test_reference_moments_closed_form():
    dim, terms = OPERATORS["adr-2d"]
    d = spacing_symbols((x, y))
    mom = reference_moments(reference_stencil(terms, dim, 2, d), d, 2)
    expected = {(0, 0): 1 + R, (1, 0): -U, (0, 1): -V, (2, 0): 2 * Dxx, (1, 1): 2 * Dxy, (0, 2): 2 * Dyy}
    assert symbolic_mismatches(mom, expected) == []


# ---------------------------------------------------------------------------- npdegen stencils
@pytest.mark.parametrize("accuracy", [2, 4])
@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_layer_stencil_symbolic(name, accuracy):
    layer, dim, terms = make_layer(name, accuracy)
    coords = field_of(dim).args
    deltas = spacing_symbols(coords)
    st = layer.stencil()
    assert all(isinstance(k, tuple) and len(k) == dim and all(isinstance(v, int) for v in k) for k in st), \
        sorted(st, key=str)
    assert symbolic_mismatches(st, reference_stencil(terms, dim, accuracy, deltas)) == []


@pytest.mark.parametrize("accuracy", [2, 4])
@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_layer_stencil_numeric_matches_findiff(name, accuracy):
    layer, dim, terms = make_layer(name, accuracy)
    spacing = SPACING[dim]
    st = numeric(layer.stencil(spacing))
    shape = (11,) * dim if dim == 2 else (9,) * dim
    fd_st = findiff_operator(dim, terms, spacing, accuracy, periodic=False).stencil(shape).data[("C",) * dim]
    assert_stencils_close(st, {tuple(int(v) for v in k): float(c) for k, c in fd_st.items()})


@pytest.mark.parametrize("name", ["laplacian-2d", "adr-3d"])
def test_spacing_symbols_api(name):
    """The contract: ``npdegen.spacing_symbols(layer)`` gives ``(Delta_x, Delta_y[, Delta_w])``."""
    layer, dim, _ = make_layer(name, 2)
    assert tuple(npdegen.spacing_symbols(layer)) == spacing_symbols(field_of(dim).args)


def test_five_point_laplacian_and_mixed_closed_forms():
    layer, _, _ = make_layer("laplacian-2d", 2)
    dx, dy = spacing_symbols((x, y))
    expected = {(0, 0): -2 / dx**2 - 2 / dy**2, (1, 0): 1 / dx**2, (-1, 0): 1 / dx**2, (0, 1): 1 / dy**2,
                (0, -1): 1 / dy**2}
    assert symbolic_mismatches(layer.stencil(), expected) == []
    layer, _, _ = make_layer("mixed-2d", 2)
    q = 1 / (4 * dx * dy)
    assert symbolic_mismatches(layer.stencil(), {(1, 1): q, (1, -1): -q, (-1, 1): -q, (-1, -1): q}) == []
    num = layer.stencil((0.5, 0.25))
    assert symbolic_mismatches(num, {(1, 1): 2, (1, -1): -2, (-1, 1): -2, (-1, -1): 2}) == []


def test_one_dimensional_layer_keeps_int_keys():
    q = sp.Symbol("q")
    z = sp.Function("z")(q)
    D = sp.Symbol("D")
    layer = npdegen.NeuralPDE(z + D * z.diff(q, 2), z, params={D: "homogeneous"})
    st = layer.stencil()
    assert set(st) == {-1, 0, 1} and all(type(k) is int for k in st)
    delta = sp.Symbol("Delta", positive=True)
    assert symbolic_mismatches(st, {-1: D / delta**2, 0: 1 - 2 * D / delta**2, 1: D / delta**2}) == []


# ---------------------------------------------------------------------------- moments
@pytest.mark.parametrize("accuracy", [2, 4])
def test_anisotropic_moments_are_the_tensor_entries(accuracy):
    layer, dim, terms = make_layer("adr-2d", accuracy)
    mom = layer.moments(2)
    assert set(mom) == set(multi_indices(2, 2))
    expected = {(0, 0): 1 + R, (1, 0): -U, (0, 1): -V, (2, 0): 2 * Dxx, (1, 1): 2 * Dxy, (0, 2): 2 * Dyy}
    assert symbolic_mismatches(mom, expected) == []


@pytest.mark.parametrize("accuracy", [2, 4])
@pytest.mark.parametrize("name", ["adr-2d", "adr-3d", "mixed-3d"])
def test_moments_match_definition(name, accuracy):
    """All moments up to order 4 (beyond the exact ones: the stencil's truncation terms too)."""
    layer, dim, terms = make_layer(name, accuracy)
    deltas = spacing_symbols(field_of(dim).args)
    ref = reference_moments(reference_stencil(terms, dim, accuracy, deltas), deltas, 4)
    mom = layer.moments(4)
    assert set(mom) == set(ref)
    assert symbolic_mismatches(mom, ref) == []


def test_adr_3d_moments_closed_form():
    layer, _, _ = make_layer("adr-3d", 2)
    mom = layer.moments(2)
    expected = {a: 0 for a in multi_indices(3, 2)}
    expected.update({(0, 0, 0): 1 + R, (1, 0, 0): -U, (0, 1, 0): -V, (0, 0, 1): -W, (2, 0, 0): 2 * Dxx,
                     (0, 2, 0): 2 * Dyy, (0, 0, 2): 2 * Dww, (1, 0, 1): 2 * Dxw})
    assert set(mom) == set(expected)
    assert symbolic_mismatches(mom, expected) == []


def test_moment_convention_taylor():
    """Σ_o w_o z(x + oΔ) = Σ_α W_α/α! ∂^α z exactly for a cubic polynomial z (accuracy 4 stencil,
    moments to order 3), at a point away from 0: the convention has no 1/α! in W_α."""
    layer, dim, terms = make_layer("adr-2d", 4)
    sp_vals = (0.5, 0.7)
    deltas = spacing_symbols((x, y))
    vals = dict(VALUES)
    vals.update({d.name: v for d, v in zip(deltas, sp_vals)})
    st = numeric_stencil(layer.stencil(), vals)
    mom = numeric_stencil(layer.moments(3), vals)
    poly = lambda a, b: 1 + 2 * a - b + a * b + 0.5 * a**2 - b**2 + a**3 - 2 * a * b**2 + 0.3 * b**3
    X0, Y0 = 0.3, -0.2
    lhs = sum(wt * poly(X0 + o[0] * sp_vals[0], Y0 + o[1] * sp_vals[1]) for o, wt in st.items())
    P = poly(x, y)
    rhs = sum(mom[a] / (sp.factorial(a[0]) * sp.factorial(a[1])) * float(P.diff(x, a[0]).diff(y, a[1]).subs({x: X0, y: Y0}))
              for a in mom)
    assert abs(lhs - float(rhs)) < 1e-10 * max(1.0, abs(lhs))
