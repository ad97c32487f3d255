"""npdegen.stability for nonlocal layers (npdegen.inspect.stability_nonlocal) against references
written here: dense layer matrices assembled by hand-written loops from the closed-form kernels, their
singular values (numpy.linalg.svd), matrix powers, and the nonlinear step itself."""
import json
import math

import numpy as np
import pytest
import sympy as sp

import npdegen
from npdegen.integral import NonlocalPDE, gaussian, kernel
from npdegen.inspect.stability_nonlocal import NonlocalStability, activation_lipschitz

q = sp.Symbol("q")
SIG, MU, AMP = sp.symbols("sigma mu A")
MAX_REACH = {"periodic": lambda n: n // 2, "dirichlet": lambda n: n - 1, "neumann": lambda n: n}


def _layer(families="homogeneous", activation="identity", dim=1):
    fam = families if isinstance(families, dict) else {"sigma": families, "mu": families, "A": families}
    if dim == 1:
        return NonlocalPDE(AMP * gaussian(SIG, MU), sp.Function("z")(q), activation=activation,
                           params={SIG: fam["sigma"], MU: fam["mu"], AMP: fam["A"]})
    x, y = sp.symbols("x y")
    return NonlocalPDE(AMP * gaussian(SIG, MU, dim=2), sp.Function("u")(x, y), activation=activation,
                       params={SIG: fam["sigma"], MU: fam["mu"], AMP: fam["A"]})


def _weight(site, o, h, p):
    """Closed-form sampled Gaussian ``Π_a h_a A exp(-(o_a h_a - mu)^2 / 2 sigma^2) / (sqrt(2 pi) sigma)``;
    ``p[k]`` a number or an array indexed by the site."""
    val = lambda k: float(p[k] if np.ndim(p[k]) == 0 else p[k][site])
    s, m, a = val("sigma"), val("mu"), val("A")
    out = a
    for oa, ha in zip(o, h):
        out *= ha * math.exp(-(oa * ha - m) ** 2 / (2 * s * s)) / (math.sqrt(2 * math.pi) * s)
    return out


def _source(p, n, b):
    if b == "periodic":
        return p % n
    if b == "neumann":
        m = p % (2 * n)
        return m if m < n else 2 * n - 1 - m
    return p if 0 <= p < n else None


def _dense(grid, boundary, h, p):
    """The layer matrix ``M`` (``Z = M z``) by loops over sites and offsets."""
    grid, h = tuple(grid), tuple(h)
    size = int(np.prod(grid))
    M = np.zeros((size, size))
    boxes = [range(-MAX_REACH[boundary](n), MAX_REACH[boundary](n) + 1) for n in grid]
    for site in np.ndindex(*grid):
        i = np.ravel_multi_index(site, grid)
        for o in np.ndindex(*[len(b) for b in boxes]):
            off = tuple(b[k] for b, k in zip(boxes, o))
            src = [_source(s + d, n, boundary) for s, d, n in zip(site, off, grid)]
            if any(v is None for v in src):
                continue
            M[i, np.ravel_multi_index(tuple(src), grid)] += _weight(site, off, h, p)
    return M


def _step(M, omega, s):
    return (1 - omega) * np.eye(len(M)) + omega * s * M


def _smax(A):
    return float(np.linalg.svd(A, compute_uv=False)[0])


# ------------------------------------------------------------------------------ exact: the sampled DFT
@pytest.mark.parametrize("sigma, mu, amp, omega, slope", [
    (1.5, 0.0, 1.0, 0.9, 1.0),      # heat kernel: stable, gain 1 (the mean)
    (0.6, 0.4, 1.0, 1.0, 1.0),      # shifted narrow kernel
    (2.5, -1.3, 1.1, 0.7, 0.8),     # growth and a slope
    (0.3, 0.0, 1.0, 1.9, 1.0),      # narrower than a cell, large omega
])
def test_periodic_gain_is_the_largest_singular_value(sigma, mu, amp, omega, slope):
    n, h = 24, 0.5
    p = {"sigma": sigma, "mu": mu, "A": amp}
    cert = npdegen.stability(_layer(), p, n=n, spacing=h, omega=omega, slope=slope)
    M = _dense((n,), "periodic", (h,), p)
    assert isinstance(cert, NonlocalStability) and cert.exact and cert.method == "symbol"
    assert cert.max_gain == pytest.approx(_smax(_step(M, omega, slope)), rel=1e-12, abs=1e-13)
    assert cert.kernel_norm == pytest.approx(_smax(M), rel=1e-12)
    assert cert.stable == (cert.max_gain <= 1 + 1e-9 or cert.criterion == "Lax-Richtmyer")


def test_2d_periodic_and_compiled_network():
    grid, h = (8, 6), (0.5, 0.4)
    p = {"sigma": 0.7, "mu": 0.3, "A": 0.95}
    net = _layer(dim=2).compile(grid, spacing=h, omega=0.8)
    theta = {k: np.asarray(v) for k, v in p.items()}
    cert = npdegen.stability(net, theta)               # omega from the network
    M = _dense(grid, "periodic", h, p)
    assert cert.omega == 0.8 and cert.exact
    assert cert.max_gain == pytest.approx(_smax(_step(M, 0.8, 1.0)), rel=1e-12)
    assert cert.stable and cert.criterion == "von Neumann"


def test_neumann_symmetric_kernel_is_exact_shifted_one_bounded():
    n, h = 16, 1.0
    sym = {"sigma": 1.2, "mu": 0.0, "A": 1.0}
    cert = npdegen.stability(_layer(), sym, n=n, spacing=h, boundary="neumann", omega=1.3, slope=0.9)
    assert cert.exact
    assert cert.max_gain == pytest.approx(_smax(_step(_dense((n,), "neumann", (h,), sym), 1.3, 0.9)), rel=1e-12)
    shifted = {"sigma": 1.2, "mu": 0.6, "A": 1.0}
    cert = npdegen.stability(_layer(), shifted, n=n, spacing=h, boundary="neumann", omega=1.3)
    A = _step(_dense((n,), "neumann", (h,), shifted), 1.3, 1.0)
    assert cert.method == "Schur bound" and not cert.exact
    assert _smax(A) <= cert.max_gain + 1e-12
    assert cert.max_gain <= math.sqrt(np.abs(A).sum(0).max() * np.abs(A).sum(1).max()) + 1e-12


def test_omega_range_against_the_dense_matrix():
    n, p = 20, {"sigma": 0.8, "mu": 0.5, "A": 1.0}
    M = _dense((n,), "periodic", (1.0,), p)
    cert = npdegen.stability(_layer(), p, n=n, omega=1.0)
    top = cert.omega_max_von_neumann
    assert 0 < top < 4
    assert _smax(_step(M, top * (1 - 1e-7), 1.0)) <= 1 + 1e-9
    assert _smax(_step(M, top * (1 + 1e-3), 1.0)) > 1 + 1e-9


# ------------------------------------------------------------------------------ bounds: site-dependent kernels
@pytest.mark.parametrize("boundary", ["periodic", "dirichlet", "neumann"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_schur_bound_holds_on_random_heterogeneous_kernels(boundary, seed):
    rng = np.random.default_rng(seed)
    n, h = 14, 0.7
    p = {"sigma": rng.uniform(0.3, 2.0, n), "mu": rng.uniform(-0.8, 0.8, n), "A": rng.uniform(-0.3, 1.3, n)}
    omega, slope = float(rng.uniform(0.3, 1.5)), float(rng.uniform(0.2, 1.2))
    cert = npdegen.stability(_layer("heterogeneous"), p, n=n, spacing=h, boundary=boundary, omega=omega, slope=slope)
    M = _dense((n,), boundary, (h,), p)
    A = _step(M, omega, slope)
    assert cert.method == "Schur bound" and cert.heterogeneous
    assert _smax(A) <= cert.max_gain + 1e-12
    assert _smax(M) <= cert.kernel_norm + 1e-12
    schur = math.sqrt(np.abs(A).sum(0).max() * np.abs(A).sum(1).max())     # the dense matrix's own Schur bound
    if boundary == "dirichlet":      # no two offsets read one site: the bound is the dense one exactly
        assert cert.max_gain == pytest.approx(schur, rel=1e-12)
    else:                            # offsets that read one site add up by the triangle inequality
        assert schur <= cert.max_gain + 1e-12
    lr = _step(M, omega, slope) - omega * np.diag(slope * M.sum(1) - 1)
    if cert.criterion == "Lax-Richtmyer":
        assert _smax(lr) <= 1 + 1e-9 and _smax(A) <= 1 + cert.growth_per_layer + 1e-9


def test_schur_omega_max_is_where_the_dense_bound_reaches_one():
    n = 12
    p = {"sigma": np.linspace(0.5, 1.5, n), "mu": np.zeros(n), "A": np.full(n, 0.9)}
    cert = npdegen.stability(_layer("heterogeneous"), p, n=n, boundary="dirichlet", omega=1.0)
    M = _dense((n,), "dirichlet", (1.0,), p)
    schur = lambda om: math.sqrt(np.abs(_step(M, om, 1)).sum(0).max() * np.abs(_step(M, om, 1)).sum(1).max())
    top = cert.omega_max_von_neumann
    assert 1 < top < 10 and cert.stable
    assert schur(top * (1 - 1e-9)) <= 1 + 1e-12 and schur(top * (1 + 1e-6)) > 1


def test_position_dependent_kernel_is_bounded():
    r = sp.Symbol("r", real=True)
    s = sp.Symbol("s", positive=True)
    W = kernel(sp.exp(-r**2 / (2 * s**2 * (1 + q / 8))) / sp.sqrt(2 * sp.pi * s**2 * (1 + q / 8)), r, params=[s],
               position=q)
    layer = NonlocalPDE(W, sp.Function("z")(q), params={s: "homogeneous"})
    n = 12
    cert = npdegen.stability(layer, {"s": 0.9}, n=n, omega=1.0)
    M = np.zeros((n, n))
    for i in range(n):
        width = 0.81 * (1 + i / 8)
        for o in range(-n // 2, n // 2 + 1):
            M[i, (i + o) % n] += math.exp(-o * o / (2 * width)) / math.sqrt(2 * math.pi * width)
    assert cert.method == "Schur bound" and _smax(M) <= cert.max_gain + 1e-12


# ------------------------------------------------------------------------------ layers, growth
def test_time_dependent_gain_per_layer_and_over_the_stack():
    L, n = 3, 16
    per_layer = {"sigma": [0.6, 1.1, 2.0], "mu": [0.3, -0.2, 0.0], "A": [1.02, 0.97, 1.0]}
    p = {k: np.repeat(np.asarray(v)[:, None], n, axis=1) for k, v in per_layer.items()}    # one value per layer
    cert = npdegen.stability(_layer("time-dependent"), p, n=n, omega=0.9)
    mats = [_step(_dense((n,), "periodic", (1.0,), {k: v[t] for k, v in per_layer.items()}), 0.9, 1)
            for t in range(L)]
    assert cert.layers == L and cert.exact
    np.testing.assert_allclose(cert.gain_per_layer, [_smax(A) for A in mats], rtol=1e-12)
    assert cert.network_gain == pytest.approx(_smax(mats[2] @ mats[1] @ mats[0]), rel=1e-12)
    assert cert.max_gain == pytest.approx(max(cert.gain_per_layer))
    rng = np.random.default_rng(5)            # values per layer and site: a bound per layer and over the stack
    p = {"sigma": rng.uniform(0.4, 1.5, (L, n)), "mu": rng.uniform(-0.5, 0.5, (L, n)),
         "A": rng.uniform(0.8, 1.1, (L, n))}
    cert = npdegen.stability(_layer("time-dependent"), p, n=n, boundary="neumann", omega=0.9)
    site = lambda t: {k: v[t] for k, v in p.items()}
    mats = [_step(_dense((n,), "neumann", (1.0,), site(t)), 0.9, 1) for t in range(L)]
    assert not cert.exact and len(cert.gain_per_layer) == L
    assert all(_smax(A) <= g + 1e-12 for A, g in zip(mats, cert.gain_per_layer))
    assert _smax(mats[2] @ mats[1] @ mats[0]) <= cert.network_gain + 1e-12
    assert cert.network_gain == pytest.approx(np.prod(cert.gain_per_layer))


def test_lax_richtmyer_growth_bounds_the_powers():
    n, L = 20, 60
    p = {"sigma": 1.0, "mu": 0.4, "A": 1.04}      # a growing mean (reaction), the rest damped
    cert = npdegen.stability(_layer(), p, n=n, omega=0.8)
    M = _dense((n,), "periodic", (1.0,), p)
    A = _step(M, 0.8, 1.0)
    assert cert.stable and cert.criterion == "Lax-Richtmyer"
    assert cert.growth_per_layer == pytest.approx(0.8 * (M.sum(1).max() - 1), rel=1e-12)   # ~0.8*0.04 (aliasing)
    assert cert.max_gain <= 1 + cert.growth_per_layer + 1e-12
    assert _smax(np.linalg.matrix_power(A, L)) <= math.exp(cert.growth_per_layer * L) * (1 + 1e-9)
    bad = npdegen.stability(_layer(), p, n=n, omega=2.6)       # the grid-scale modes grow too
    B = _step(_dense((n,), "periodic", (1.0,), p), 2.6, 1.0)
    assert not bad.stable and bad.criterion == "none"
    assert _smax(np.linalg.matrix_power(B, L)) > math.exp(bad.growth_per_layer * L) * 10
    assert _smax(np.linalg.matrix_power(B, L)) == pytest.approx(bad.max_gain ** L, rel=1e-8)


def test_positive_and_markov_against_the_matrix():
    n = 16
    for p, omega in [({"sigma": 1.0, "mu": 0.0, "A": 1.0}, 0.9), ({"sigma": 1.0, "mu": 0.0, "A": 1.0}, 1.5),
                     ({"sigma": 1.0, "mu": 0.3, "A": 0.9}, 1.0)]:
        cert = npdegen.stability(_layer(), p, n=n, omega=omega)
        A = _step(_dense((n,), "periodic", (1.0,), p), omega, 1.0)
        assert cert.positive == bool(np.all(A >= -1e-12))
        assert cert.markov == (cert.positive and bool(np.allclose(A.sum(1), 1, rtol=0, atol=1e-12)))


# ------------------------------------------------------------------------------ the nonlinear step
@pytest.mark.parametrize("name, lip", [("identity", 1), ("tanh", 1), ("sigmoid", 0.25), ("relu", 1),
                                       ("softplus", 1), ("square", math.inf)])
def test_activation_lipschitz_constants(name, lip):
    from npdegen.integral.layer import Activation
    act = Activation(name)
    assert activation_lipschitz(act) == lip
    if math.isfinite(lip):
        x = np.linspace(-20, 20, 400001)
        slope = np.abs(np.broadcast_to(act.slope(x), x.shape))
        assert slope.max() <= lip + 1e-12 and slope.max() >= 0.999 * lip


def test_custom_activation_lipschitz():
    from npdegen.integral.layer import Activation
    X, rho = sp.symbols("X rho")
    assert activation_lipschitz(Activation(X + rho * X**2, [rho]), {"rho": np.asarray(0.0)}) == 1.0
    assert activation_lipschitz(Activation(X + rho * X**2, [rho]), {"rho": np.asarray(0.1)}) == math.inf
    assert activation_lipschitz(Activation(3 * X)) == 3.0
    assert activation_lipschitz(Activation(sp.atan(X))) is None          # not tabulated: unknown, not guessed


def test_lipschitz_gain_bounds_the_nonlinear_step():
    n = 24
    p = {"sigma": np.asarray(1.3), "mu": np.asarray(0.5), "A": np.asarray(1.2)}
    net = _layer(activation="tanh").compile(n, omega=0.7)
    cert = npdegen.stability(net, p)
    assert cert.lipschitz == 1 and cert.lipschitz_gain == pytest.approx(0.3 + 0.7 * cert.kernel_norm)
    rng = np.random.default_rng(3)
    z, w = rng.normal(size=(200, n)) * 3, rng.normal(size=(200, n)) * 3
    dz = np.linalg.norm(net.step(z, p, 0) - net.step(w, p, 0), axis=1)
    assert np.all(dz <= cert.lipschitz_gain * np.linalg.norm(z - w, axis=1) * (1 + 1e-12))


def test_operating_point_uses_the_activation_slope():
    cert = npdegen.stability(_layer(activation="tanh"), {"sigma": 1.0, "mu": 0.0, "A": 1.0}, n=16,
                             operating_point=0.5)
    assert cert.slope == pytest.approx(1 - math.tanh(0.5) ** 2)


# ------------------------------------------------------------------------------ surface, errors
def test_report_json_and_monitor():
    net = _layer().compile(16, omega=0.9)
    theta = {"sigma": np.asarray(1.5), "mu": np.asarray(0.2), "A": np.asarray(1.0)}
    cert = npdegen.stability(net, theta)
    text = str(cert)
    assert "stable (von Neumann)" in text and "exact" in text and "Lipschitz" in text
    data = json.loads(json.dumps(cert.to_dict(), allow_nan=False))
    assert data["stable"] and data["max_gain"] == pytest.approx(cert.max_gain) and data["omega_range"][0] == 0
    monitor = npdegen.inspect.stability_monitor(net)
    assert monitor(theta) is None
    assert "left the stable region" in monitor({**theta, "A": np.asarray(3.0)})


def test_bad_input():
    layer = _layer()
    p = {"sigma": 1.0, "mu": 0.0, "A": 1.0}
    with pytest.raises(ValueError, match="n="):
        npdegen.stability(layer, p)
    with pytest.raises(ValueError, match="fixed by the compiled"):
        npdegen.stability(layer.compile(8), p, n=8)
    with pytest.raises(ValueError, match="omega"):
        npdegen.stability(layer, p, n=8, omega=-1.0)
    with pytest.raises(ValueError, match="missing"):
        npdegen.stability(layer, {"sigma": 1.0}, n=8)
    with pytest.raises(ValueError, match="sigma"):
        npdegen.stability(layer, {**p, "sigma": -1.0}, n=8)
    with pytest.raises(TypeError, match="dict"):
        npdegen.stability(layer, [1.0], n=8)
    X, rho = sp.symbols("X rho")
    het = NonlocalPDE(gaussian(SIG), sp.Function("z")(q), activation=X + rho * X**2,
                      params={SIG: "homogeneous", rho: "heterogeneous"})
    with pytest.raises(ValueError, match="slope="):
        npdegen.stability(het, {"sigma": 1.0, "rho": np.zeros(8)}, n=8, operating_point=0.1)


# ------------------------------------------------------------------------------ quadrature update, estimator
def _jacobian(net, theta, n, h=1e-6):
    """Central differences of the network's own step at z = 0 (float64): the linearised update."""
    E = np.eye(n) * h
    return ((net.step(E, theta, 0) - net.step(-E, theta, 0)) / (2 * h)).T


@pytest.mark.parametrize("boundary", ["periodic", "dirichlet"])
@pytest.mark.parametrize("activation", ["identity", "tanh"])
def test_quadrature_update_certifies_the_collapsed_operator(boundary, activation):
    from npdegen.integral import QuadraturePDE
    n = 16
    theta = {"sigma": np.asarray(0.5), "mu": np.asarray(0.3), "A": np.asarray(1.0)}
    net = QuadraturePDE(_layer(activation=activation), Q=2).compile(n, omega=0.8, boundary=boundary)
    cert = npdegen.stability(net, theta)                # slope 1 = tanh'(0)
    J = _jacobian(net, theta, n)
    if boundary == "periodic":
        assert cert.exact and cert.max_gain == pytest.approx(_smax(J), rel=1e-8)
    else:
        assert not cert.exact and _smax(J) <= cert.max_gain + 1e-8
    grid_layer = npdegen.stability(_layer(activation=activation).compile(n, omega=0.8, boundary=boundary), theta)
    assert cert.max_gain != pytest.approx(grid_layer.max_gain, rel=1e-6)     # K_Q, not the grid layer's K
    assert (cert.lipschitz_gain is None) == (activation == "tanh")


def test_agrees_with_the_estimators_kernel_gain():
    """The estimator's nonlocal kind measures ||K||_2 from the FFT of one layer's impulse response."""
    from npdegen.estimator.kernels import GaussianKernel
    from npdegen.estimator.recipes import Recipe
    kind, recipe = GaussianKernel(), Recipe("nonlocal", "homogeneous", 0, 1, "identity", 1.0)
    layer = kind.layer(recipe, 1)
    net = kind.compile(layer, recipe, (32,), (0.25,), "periodic", "numpy", "float64")
    theta = {"sigma": np.asarray(0.4), "mu": np.asarray(-0.3), "A": np.asarray(1.1)}
    gain, _ = kind.gain(layer, net, theta, recipe, (0.25,))
    cert = npdegen.stability(net, theta)
    assert cert.kernel_norm == pytest.approx(gain, rel=1e-12) and cert.max_gain == pytest.approx(gain, rel=1e-12)
