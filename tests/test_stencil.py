"""Derivation: the ADR stencil, its moments and physics, from_moments, Fornberg weights."""
from fractions import Fraction

import pytest
import sympy as sp

import npdegen
from npdegen import NeuralPDE, stencil_weights

h = sp.Symbol("Delta", positive=True)


def adr_layer(adr, **kw):
    q, z, U, D, R = adr
    return NeuralPDE(z + R * z - U * z.diff(q) + D * z.diff(q, 2), z,
                     params={U: "homogeneous", D: "homogeneous", R: "homogeneous"}, **kw)


def test_adr_stencil_is_exact(adr):
    _, _, U, D, R = adr
    st = adr_layer(adr).stencil(h)
    assert set(st) == {-1, 0, 1}
    expected = {-1: U / (2 * h) + D / h**2, 0: 1 + R - 2 * D / h**2, 1: -U / (2 * h) + D / h**2}
    for j in st:
        assert sp.simplify(st[j] - expected[j]) == 0


def test_adr_stencil_numeric_spacing(adr):
    _, _, U, D, R = adr
    st = adr_layer(adr).stencil(sp.Rational(1, 10))
    assert sp.simplify(st[1] - (-5 * U + 100 * D)) == 0


def test_adr_moments_match_grid_formulas(adr):
    _, _, U, D, R = adr
    layer = adr_layer(adr)
    A, C, B = (layer.stencil(h)[j] for j in (-1, 0, 1))
    m = layer.moments(4, spacing=h)
    assert sp.simplify(m[0] - (A + B + C)) == 0
    assert sp.simplify(m[1] - (B - A) * h) == 0
    assert sp.simplify(m[2] - (A + B) * h**2) == 0
    assert m[0] == 1 + R and m[1] == -U and m[2] == 2 * D
    assert m[3] == -U * h**2 and sp.simplify(m[4] - 2 * D * h**2) == 0


def test_explain_names_the_processes(adr):
    _, _, U, D, R = adr
    table = adr_layer(adr).explain()
    assert [r.process for r in table] == ["reaction", "advection", "diffusion"]
    assert table[2].coefficient == D and table[1].coefficient == -U
    text = str(table)
    assert "diffusion" in text and "advection" in text


@pytest.mark.parametrize("offsets", [(-1, 0, 1), (-2, -1, 0, 1, 2), (-1, 0, 1, 2)])
def test_from_moments_round_trip(adr, offsets):
    _, _, U, D, R = adr
    moments = {0: 1 + R, 1: -U, 2: 2 * D}
    layer = NeuralPDE.from_moments(moments, offsets=offsets,
                                   params={U: "homogeneous", D: "homogeneous", R: "homogeneous"})
    got = layer.moments(len(offsets) - 1)
    for k in range(len(offsets)):
        assert sp.simplify(got[k] - moments.get(k, 0)) == 0, (k, got[k])


def test_from_moments_reproduces_the_adr_layer(adr):
    _, _, U, D, R = adr
    a = adr_layer(adr).stencil(h)
    b = NeuralPDE.from_moments({0: 1 + R, 1: -U, 2: 2 * D}, offsets=(-1, 0, 1),
                               params={U: "homogeneous", D: "homogeneous", R: "homogeneous"}).stencil(h)
    assert all(sp.simplify(a[j] - b[j]) == 0 for j in a)


def test_from_moments_rejects_too_many_moments():
    with pytest.raises(ValueError, match="at most"):
        NeuralPDE.from_moments({0: 1, 1: 0, 2: 1, 3: 1}, offsets=(-1, 0, 1))


def test_higher_accuracy_widens_the_stencil(adr):
    q, z, U, D, R = adr
    layer = NeuralPDE(D * z.diff(q, 2), z, params={D: "homogeneous"}, accuracy=4)
    st = layer.stencil(1)
    assert [st[j] / D for j in range(-2, 3)] == [sp.Rational(-1, 12), sp.Rational(4, 3), sp.Rational(-5, 2),
                                                 sp.Rational(4, 3), sp.Rational(-1, 12)]


def test_one_sided_offsets(adr):
    q, z, U, D, R = adr
    layer = NeuralPDE(-U * z.diff(q), z, params={U: "homogeneous"}, offsets=(-2, -1, 0))
    st = layer.stencil(1)
    assert st == {-2: -U / 2, -1: 2 * U, 0: -3 * U / 2}


# ---------------------------------------------------------------- Fornberg tables
# Central weights, Fornberg (1988) Table 1 / standard tables, indexed (derivative, accuracy).
CENTRAL = {
    (1, 2): "-1/2 0 1/2",
    (1, 4): "1/12 -2/3 0 2/3 -1/12",
    (1, 6): "-1/60 3/20 -3/4 0 3/4 -3/20 1/60",
    (1, 8): "1/280 -4/105 1/5 -4/5 0 4/5 -1/5 4/105 -1/280",
    (2, 2): "1 -2 1",
    (2, 4): "-1/12 4/3 -5/2 4/3 -1/12",
    (2, 6): "1/90 -3/20 3/2 -49/18 3/2 -3/20 1/90",
    (2, 8): "-1/560 8/315 -1/5 8/5 -205/72 8/5 -1/5 8/315 -1/560",
    (3, 2): "-1/2 1 0 -1 1/2",
    (3, 4): "1/8 -1 13/8 0 -13/8 1 -1/8",
    (3, 6): "-7/240 3/10 -169/120 61/30 0 -61/30 169/120 -3/10 7/240",
    (4, 2): "1 -4 6 -4 1",
    (4, 4): "-1/6 2 -13/2 28/3 -13/2 2 -1/6",
    (4, 6): "7/240 -2/5 169/60 -122/15 91/8 -122/15 169/60 -2/5 7/240",
}
# One-sided (forward) weights at offsets 0..P-1, indexed (derivative, accuracy).
FORWARD = {
    (1, 1): "-1 1",
    (1, 2): "-3/2 2 -1/2",
    (1, 3): "-11/6 3 -3/2 1/3",
    (1, 4): "-25/12 4 -3 4/3 -1/4",
    (2, 1): "1 -2 1",
    (2, 2): "2 -5 4 -1",
    (2, 3): "35/12 -26/3 19/2 -14/3 11/12",
    (3, 1): "-1 3 -3 1",
    (3, 2): "-5/2 9 -12 7 -3/2",
    (4, 1): "1 -4 6 -4 1",
    (4, 2): "3 -14 26 -24 11 -2",
}


def _table(row):
    return [sp.Rational(Fraction(w)) for w in row.split()]


@pytest.mark.parametrize("key", sorted(CENTRAL))
def test_fornberg_central_tables(key):
    m, p = key
    expected = _table(CENTRAL[key])
    half = len(expected) // 2
    offsets = range(-half, half + 1)
    assert list(stencil_weights(m, offsets).values()) == expected


@pytest.mark.parametrize("key", sorted(FORWARD))
def test_fornberg_forward_tables(key):
    m, p = key
    expected = _table(FORWARD[key])
    assert list(stencil_weights(m, range(len(expected))).values()) == expected
    backward = stencil_weights(m, [-j for j in range(len(expected))])
    assert list(backward.values()) == [(-1) ** m * w for w in expected]


def test_fornberg_rejects_too_few_offsets():
    with pytest.raises(ValueError, match="at least 3 offsets"):
        stencil_weights(2, [0, 1])


def test_public_api_exports():
    for name in ("NeuralPDE", "train", "stencil_weights", "parse_expression", "load_spec", "__version__"):
        assert hasattr(npdegen, name)
