"""kernel_moments: known kernels give known moments and cumulants; explained fraction, nearest
stencil, locality; dense, sparse and bad input (issue 5)."""
import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings, strategies as st

from npdegen import NeuralPDE, kernel_moments
from npdegen.inspect import (banded_matrix, cumulants_from_moments, layer_matrix, moments_from_cumulants,
                             nearest_stencil, stencil_from_moments)


def _adr(adr_syms, **kw):
    q, z, U, D, R = adr_syms
    return NeuralPDE(z + R * z - U * z.diff(q) + D * z.diff(q, 2), z,
                     params={U: "homogeneous", D: "homogeneous", R: "homogeneous"}, **kw)


@pytest.mark.parametrize("spacing", [1.0, 0.1])
def test_adr_matrix_moments_and_cumulants(adr, spacing):
    U, D, R = 0.3, 0.2, -0.05
    layer = _adr(adr)
    n = 40
    W = layer_matrix(layer, {"U": U, "D": D, "R": R}, n=n, spacing=spacing)
    km = kernel_moments(W, coords=spacing * np.arange(n), period=n * spacing)
    h = spacing
    # W0 = 1 + R, W1 = -U, W2 = 2D, W3 = -U h², W4 = 2D h² (no 1/k!) on every row
    expected = [1 + R, -U, 2 * D, -U * h**2, 2 * D * h**2]
    np.testing.assert_allclose(km.moments, np.tile(expected, (n, 1)), rtol=1e-12, atol=1e-12)
    # the same numbers as the layer's own SymPy moments
    sym = layer.moments(4, spacing=sp.nsimplify(spacing))
    subs = {s: v for s, v in zip(sp.symbols("U D R"), (U, D, R))}
    np.testing.assert_allclose([float(sym[k].subs(subs)) for k in range(5)], expected, rtol=1e-12)
    # cumulants of the normalised kernel: κ1 = -U/(1+R), κ2 = 2D/(1+R) - U²/(1+R)²
    k = km.cumulants[0]
    assert k[0] == pytest.approx(np.log(1 + R))
    assert k[1] == pytest.approx(-U / (1 + R))
    assert k[2] == pytest.approx(2 * D / (1 + R) - U**2 / (1 + R) ** 2)
    assert km.best_order <= 2 and km.explained[2] > 1 - 1e-12


def test_symbolic_cumulants_of_adr(adr):
    _, _, U, D, R = adr
    W = [1 + R, -U, 2 * D]
    kappa = cumulants_from_moments(W)
    assert sp.simplify(kappa[0] - sp.log(1 + R)) == 0
    assert sp.simplify(kappa[1] + U / (1 + R)) == 0
    assert sp.simplify(kappa[2] - (2 * D / (1 + R) - U**2 / (1 + R) ** 2)) == 0
    back = moments_from_cumulants(kappa)
    assert all(sp.simplify(a - b) == 0 for a, b in zip(back, W))


def test_gaussian_kernel_moments_finite_odd_zero():
    n, sigma = 96, 3.0
    q = np.arange(n)
    r = (q[None, :] - q[:, None] + n / 2) % n - n / 2
    W = np.exp(-r**2 / (2 * sigma**2)) / np.sqrt(2 * np.pi * sigma**2)
    km = kernel_moments(W, max_order=6, period=n)
    assert np.all(np.isfinite(km.moments))
    np.testing.assert_allclose(km.moments[:, [1, 3, 5]], 0, atol=1e-9)
    # Gaussian moments (no 1/k!): 1, σ², 3σ⁴, 15σ⁶; cumulants: only κ2 = σ²
    np.testing.assert_allclose(km.moments[:, [0, 2, 4, 6]],
                               np.tile([1, sigma**2, 3 * sigma**4, 15 * sigma**6], (n, 1)), rtol=1e-9)
    np.testing.assert_allclose(km.cumulants[:, 2], sigma**2, rtol=1e-9)
    np.testing.assert_allclose(km.cumulants[:, [3, 4, 5, 6]], 0, atol=1e-6)


def test_kernel_from_given_moments_round_trips(adr):
    """Symbolic from_moments → matrix → kernel_moments, and the numeric twin."""
    r, c, d, e = sp.symbols("r c d e")
    moments = {0: 1 + r, 1: -c, 2: 2 * d, 4: -2 * e}
    layer = NeuralPDE.from_moments(moments, offsets=(-2, -1, 0, 1, 2),
                                   params={s: "homogeneous" for s in (r, c, d, e)})
    values = {"r": -0.1, "c": 0.3, "d": 0.2, "e": 0.05}
    km = kernel_moments(layer_matrix(layer, values, n=32), period=32)
    subs = {sp.Symbol(name): v for name, v in values.items()}
    expected = [float(sp.sympify(moments.get(k, 0)).subs(subs)) for k in range(5)]
    np.testing.assert_allclose(km.moments[0], expected, atol=1e-12)
    given = {0: 0.9, 1: -0.2, 2: 0.6, 3: 0.1, 4: -0.3}
    w = stencil_from_moments(given, (-2, -1, 0, 1, 2), spacing=0.5)
    km2 = kernel_moments(banded_matrix(w, 24), coords=0.5 * np.arange(24), period=12.0)
    np.testing.assert_allclose(km2.moments[5], list(given.values()), atol=1e-12)


def assert_round_trip(tail, w0):
    """W_k -> cumulants -> W_k, to round-off relative to each order's scale w0 * r^k (r: the
    largest |W_j / W_0|), not an absolute tolerance (W_6 ~ 1e4 carries round-off ~1e-12 * 1e4)."""
    moments = np.array([w0, *tail])
    back = np.array(moments_from_cumulants(cumulants_from_moments(list(moments))), float)
    r = max(1.0, float(np.max(np.abs(moments / w0))))
    scale = abs(w0) * r ** np.arange(len(moments))
    assert np.all(np.abs(back - moments) <= 1e-10 * scale), (moments, back)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.lists(st.floats(-2, 2), min_size=2, max_size=6), st.floats(0.2, 3))
def test_moments_cumulants_round_trip(tail, w0):
    assert_round_trip(tail, w0)


def test_moments_cumulants_round_trip_hard_cases():
    """Large high moments over a small W_0 (the case that once failed an absolute tolerance)."""
    rng = np.random.default_rng(11)
    for _ in range(200):
        assert_round_trip(list(rng.uniform(-2, 2, rng.integers(2, 7))), float(rng.uniform(0.2, 3)))
    assert_round_trip([2.0, -2.0, 2.0, -2.0, 2.0, -2.0], 0.2)


@pytest.mark.parametrize("periodic", [True, False])
def test_exact_banded_matrix_is_explained(periodic):
    n = 50
    stencil = {-2: 0.05, -1: 0.3, 0: 0.4, 1: 0.2, 2: -0.02}
    W = banded_matrix(stencil, n, periodic=periodic)
    km = kernel_moments(W, period=n if periodic else None)
    assert km.explained[4] >= 1 - 1e-12
    assert np.all(km.explained_local >= 1 - 1e-12)
    assert km.verdict.startswith("well explained")
    fit = km.nearest_stencil(5)
    assert fit.residual < 1e-14
    assert fit.stencil == pytest.approx(stencil, abs=1e-15)
    assert km.locality_radius(1.0) == 2


def test_non_uniform_coordinates_exact():
    q = np.cumsum(np.r_[0.0, np.random.default_rng(1).uniform(0.5, 1.5, 29)])
    W = np.zeros((30, 30))
    for i in range(30):                       # a 3-point operator on an irregular grid
        for j in (i - 1, i, i + 1):
            if 0 <= j < 30:
                W[i, j] = 1.0 + 0.1 * (j - i) + 0.01 * q[i]
    km = kernel_moments(W, coords=q, max_order=2)
    r = q[None, :] - q[:, None]
    np.testing.assert_allclose(km.moments[:, 1], (W * r).sum(1), rtol=1e-12)
    assert km.explained[2] >= 1 - 1e-12


def test_random_dense_matrix_is_explained_poorly():
    W = np.random.default_rng(0).standard_normal((64, 64))
    km = kernel_moments(W)
    assert km.explained.max() < 0.2
    assert "poorly explained" in km.verdict and "not a local operator" in km.verdict
    assert km.nearest_stencil(3).residual > 0.9
    assert km.locality_radius() > 40
    assert "poorly" in str(km) and km.to_dict()["verdict"] == km.verdict


def test_sparse_matches_dense():
    sparse = pytest.importorskip("scipy.sparse")
    rng = np.random.default_rng(3)
    W = banded_matrix({-1: 0.3, 0: 0.5, 1: 0.1}, 40) + np.diag(rng.uniform(0, 0.1, 40))
    a = kernel_moments(W, period=40)
    b = kernel_moments(sparse.csr_matrix(W), period=40)
    np.testing.assert_allclose(b.moments, a.moments, atol=1e-14)
    np.testing.assert_allclose(b.explained, a.explained, atol=1e-12)
    np.testing.assert_allclose(b.locality, a.locality, atol=1e-14)
    assert b.nearest_stencil(3).stencil == pytest.approx(a.nearest_stencil(3).stencil)
    bad = sparse.csr_matrix(np.ones((3, 3)))
    bad.data[0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        kernel_moments(bad)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_tiny_matrices(n):
    W = np.eye(n) * 0.5 + np.roll(np.eye(n), 1, axis=1) * 0.5
    for period in (None, float(n)):
        km = kernel_moments(W, period=period)
        assert km.moments.shape == (n, 5) and np.all(np.isfinite(km.explained))
        assert np.all((0 <= km.explained) & (km.explained <= 1))


def test_heterogeneous_nearest_stencil_and_locality():
    n = 20
    rng = np.random.default_rng(5)
    rows = rng.uniform(0, 1, (n, 3))
    W = np.zeros((n, n))
    for i in range(n):
        for k, j in enumerate((-1, 0, 1)):
            W[i, (i + j) % n] = rows[i, k]
    fit = nearest_stencil(W, 3, homogeneous=False, periodic=True)
    np.testing.assert_allclose(fit.weights, rows)
    assert fit.residual < 1e-15
    km = kernel_moments(W, period=n)
    assert km.locality.shape == (n // 2 + 1,) and km.locality[2:].sum() == 0
    assert km.locality.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("W, kw, exc, match", [
    (np.ones((3, 4)), {}, ValueError, "square"),
    (np.ones(5), {}, ValueError, "square"),
    (np.array([[1.0, np.nan], [0, 1]]), {}, ValueError, "NaN"),
    (np.array([[1.0, np.inf], [0, 1]]), {}, ValueError, "NaN or inf"),
    (np.eye(4), {"coords": np.arange(5)}, ValueError, "coords has 5 entries"),
    (np.eye(4), {"coords": [0, 2, 1, 3]}, ValueError, "increasing"),
    (np.eye(4), {"max_order": -1}, ValueError, "max_order"),
    (np.eye(4), {"max_order": 2.5}, TypeError, "max_order"),
    (np.eye(4), {"period": 2.0}, ValueError, "period"),
    (np.array([["a", "b"], ["c", "d"]]), {}, TypeError, "real numbers"),
    (np.eye(2) * 1j, {}, TypeError, "real numbers"),
    ("not a matrix", {}, TypeError, "2-D array"),
])
def test_bad_input(W, kw, exc, match):
    with pytest.raises(exc, match=match):
        kernel_moments(W, **kw)


def test_bad_stencil_requests():
    with pytest.raises(ValueError, match="odd"):
        nearest_stencil(np.eye(5), width=2)
    with pytest.raises(ValueError, match="at most"):
        stencil_from_moments({3: 1.0}, (-1, 0, 1))
    with pytest.raises(ValueError, match="wrap"):
        nearest_stencil(np.eye(4), width=5, periodic=True)
