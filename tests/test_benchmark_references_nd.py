"""The hand-written references of benchmarks/bench_nd.py (benchmarks/references_nd.py) agree with
npdegen's NumPy backend and with finite differences on tiny sizes, and ``bench_nd.py --quick`` runs.
Correctness only; nothing here is timed. The PyTorch references are skipped without torch."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import sympy as sp

import npdegen

_BENCH = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"
if str(_BENCH) not in sys.path:
    sys.path.insert(0, str(_BENCH))

import references_flux as ref_flux  # noqa: E402
import references_nd as ref  # noqa: E402

# torch emits a DeprecationWarning from its own internals when torch.compile loads
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

OMEGA = 0.7
L = 3
H2 = (0.9, 1.2)          # unequal spacings: catches a swapped axis or a wrong cross-term factor
H1 = 0.9
RTOL = 1e-10


def _needs_torch(f):
    return pytest.param(f, marks=pytest.mark.skipif(f is None, reason="torch not importable"))


def _close(got, want, rtol=RTOL):
    (lg, gg), (lw, gw) = got, want
    assert abs(lg - lw) <= rtol * abs(lw), (lg, lw)
    assert set(gg) == set(gw)
    for k in gw:
        g, w = np.asarray(gg[k], np.float64), np.asarray(gw[k], np.float64)
        assert g.shape == w.shape, (k, g.shape, w.shape)
        assert np.max(np.abs(g - w)) <= rtol * max(np.max(np.abs(w)), 1e-300), (k, g, w)


# ------------------------------------------------------------------------------------------- 2-D
def _case2d(batch=2, nx=7, ny=5, seed=3):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(batch, nx, ny)), rng.normal(size=(batch, nx, ny))
    theta = {"U": rng.uniform(-0.3, 0.3, (nx, ny)), "V": rng.uniform(-0.3, 0.3, (nx, ny)),
             "Dxx": rng.uniform(0.05, 0.2, (nx, ny)), "Dxy": rng.uniform(-0.05, 0.05, (nx, ny)),
             "Dyy": rng.uniform(0.05, 0.2, (nx, ny)), "R": rng.uniform(-0.2, 0.2, (nx, ny))}
    return x, y, theta


@pytest.fixture(scope="module")
def npdegen_2d():
    x, y = sp.symbols("x y")
    z = sp.Function("z")(x, y)
    U, V, Dxx, Dxy, Dyy, R = sp.symbols("U V Dxx Dxy Dyy R")
    layer = npdegen.NeuralPDE(
        z + R * z - U * z.diff(x) - V * z.diff(y) + Dxx * z.diff(x, 2) + 2 * Dxy * z.diff(x, y) + Dyy * z.diff(y, 2),
        z, activation="tanh", params={p: "heterogeneous" for p in (U, V, Dxx, Dxy, Dyy, R)})
    return layer.compile(n=(7, 5), spacing=H2, layers=L, omega=OMEGA, boundary="periodic", dtype="float64",
                         backend="numpy")


@pytest.mark.parametrize("impl", [
    ref.adr2d_numpy_rolls,
    ref.adr2d_numpy_buffered,
    lambda *a: ref.adr2d_numpy_buffered(*a, block_elems=10, reuse_workspace=False),   # one-row blocks
    lambda *a: ref.adr2d_numpy_buffered(*a, block_elems=30),                          # ragged last block
    _needs_torch(ref.adr2d_torch_eager),
])
def test_adr2d_reference_matches_npdegen(npdegen_2d, impl):
    x, y, theta = _case2d()
    want = npdegen_2d.loss_and_grad(x, y, theta)
    want = (float(want[0]), {k: np.asarray(v) for k, v in want[1].items()})
    _close(impl(x, y, theta, H2, OMEGA, L), want)


def test_adr2d_buffered_finite_differences():
    x, y, theta = _case2d(seed=5)
    loss, grads = ref.adr2d_numpy_buffered(x, y, theta, H2, OMEGA, L, reuse_workspace=False)
    rng = np.random.default_rng(0)
    for k in ref.PARAMS_2D:
        d = rng.normal(size=theta[k].shape)
        eps = 1e-6
        lp = ref.adr2d_numpy_buffered(x, y, {**theta, k: theta[k] + eps * d}, H2, OMEGA, L, reuse_workspace=False)[0]
        lm = ref.adr2d_numpy_buffered(x, y, {**theta, k: theta[k] - eps * d}, H2, OMEGA, L, reuse_workspace=False)[0]
        fd = (lp - lm) / (2 * eps)
        assert abs(fd - np.sum(grads[k] * d)) <= 1e-6 * max(1.0, abs(fd)), (k, fd, np.sum(grads[k] * d))


def test_adr2d_float32_buffered_close_to_float64():
    x, y, theta = _case2d()
    l64, g64 = ref.adr2d_numpy_buffered(x, y, theta, H2, OMEGA, L)
    l32, g32 = ref.adr2d_numpy_buffered(x.astype(np.float32), y.astype(np.float32),
                                        {k: v.astype(np.float32) for k, v in theta.items()}, H2, OMEGA, L)
    assert all(g.dtype == np.float32 for g in g32.values())
    _close((l32, g32), (l64, g64), rtol=1e-4)


# -------------------------------------------------------------------------------- nonlinear 1-D
def _case1d(batch=3, n=11, seed=7):
    rng = np.random.default_rng(seed)
    return 0.5 * rng.normal(size=(batch, n)), rng.normal(size=(batch, n)), rng.uniform(0.05, 0.2, n)


@pytest.fixture(scope="module", params=["tanh", "identity"])
def npdegen_burgers(request):
    q = sp.Symbol("q")
    z = sp.Function("z")(q)
    nu = sp.Symbol("nu")
    layer = npdegen.NeuralPDE(z + nu * z.diff(q, 2) - z * z.diff(q), z, activation=request.param,
                              params={nu: "heterogeneous"})
    return request.param, layer.compile(n=11, spacing=H1, layers=L, omega=OMEGA, boundary="periodic",
                                        dtype="float64", backend="numpy")


@pytest.mark.parametrize("impl", [
    ref.burgers_numpy_rolls,
    ref.burgers_numpy_buffered,
    lambda *a: ref.burgers_numpy_buffered(*a, block_elems=11, reuse_workspace=False),   # one-row blocks
    lambda *a: ref.burgers_numpy_buffered(*a, block_elems=4),                            # column blocks
    _needs_torch(ref.burgers_torch_eager),
])
def test_burgers_reference_matches_npdegen(npdegen_burgers, impl):
    act, net = npdegen_burgers
    x, y, nu = _case1d()
    loss, grads = net.loss_and_grad(x, y, {"nu": nu})
    _close(impl(x, y, nu, H1, OMEGA, L, act), (float(loss), {"nu": np.asarray(grads["nu"])}))


@pytest.mark.parametrize("act", ["tanh", "identity"])
def test_burgers_buffered_finite_differences(act):
    x, y, nu = _case1d(seed=9)
    _, g = ref.burgers_numpy_buffered(x, y, nu, H1, OMEGA, L, act, reuse_workspace=False)
    d = np.random.default_rng(1).normal(size=nu.shape)
    eps = 1e-6
    lp = ref.burgers_numpy_buffered(x, y, nu + eps * d, H1, OMEGA, L, act, reuse_workspace=False)[0]
    lm = ref.burgers_numpy_buffered(x, y, nu - eps * d, H1, OMEGA, L, act, reuse_workspace=False)[0]
    fd = (lp - lm) / (2 * eps)
    assert abs(fd - np.sum(g["nu"] * d)) <= 1e-6 * max(1.0, abs(fd))


# ---------------------------------------------------------------------- flux-form Burgers layer
C_FLUX, NU_FLUX = 0.6, 0.1


def _case_flux(batch=3, n=11, seed=11):
    rng = np.random.default_rng(seed)
    return 0.4 * rng.normal(size=(batch, n)), rng.normal(size=(batch, n))


def _flux_net(method, n=11, dtype="float64", layers=L):
    q = sp.Symbol("q")
    z = sp.Function("z")(q)
    c, nu = sp.Symbol("c", positive=True), sp.Symbol("nu")
    layer = npdegen.conservation_law(c * z ** 2 / 2, z, diffusion=nu, params={c: "homogeneous", nu: "homogeneous"},
                                     numerical_flux=method)
    return layer.compile(n=n, spacing=H1, layers=layers, omega=OMEGA, boundary="periodic", dtype=dtype,
                         backend="numpy")


@pytest.fixture(scope="module", params=ref_flux.FLUXES)
def npdegen_flux(request):
    return request.param, _flux_net(request.param)


def _npdegen_flux(net, x, y, c=C_FLUX, nu=NU_FLUX, input_grad=False):
    loss, grads = net.loss_and_grad(x, y, {"c": np.array(c), "nu": np.array(nu)}, input_grad=input_grad)
    return float(loss), {k: np.asarray(v) for k, v in grads.items()}


@pytest.mark.parametrize("impl", [
    ref_flux.flux_numpy_buffered,
    lambda *a: ref_flux.flux_numpy_buffered(*a, block_elems=12, reuse_workspace=False),   # one-row blocks
    lambda *a: ref_flux.flux_numpy_buffered(*a, block_elems=24),                          # ragged last block
    _needs_torch(ref_flux.flux_torch_eager),
])
def test_flux_reference_matches_npdegen(npdegen_flux, impl):
    method, net = npdegen_flux
    x, y = _case_flux()
    _close(impl(x, y, C_FLUX, NU_FLUX, H1, OMEGA, L, method), _npdegen_flux(net, x, y))


@pytest.mark.parametrize("method", ref_flux.FLUXES)
def test_flux_reference_at_ties_matches_npdegen(method):
    """States with exact ties (a = −b for Godunov's max, |a| = |b| for Rusanov's, zeros at the sonic
    point) in the input: its gradient is split half and half there, as npdegen's Heaviside(0) = 1/2
    and torch's maximum do (a one-sided choice changes the input gradient). One layer: later layers'
    states are tied or not depending on each implementation's rounding."""
    x = np.array([[0.5, -0.5, 0.5, -0.5, 0.0, 0.0, 0.25, 0.25, -0.25, 0.5, -0.5, 0.0]])
    y = np.linspace(-1, 1, 12)[None]
    want = _npdegen_flux(_flux_net(method, n=12, layers=1), x, y, input_grad=True)
    assert set(want[1]) == {"c", "nu", "x"}
    impls = [ref_flux.flux_numpy_buffered] + ([ref_flux.flux_torch_eager] if ref_flux.flux_torch_eager else [])
    for impl in impls:
        _close(impl(x, y, C_FLUX, NU_FLUX, H1, OMEGA, 1, method, input_grad=True), want)


@pytest.mark.parametrize("method", ref_flux.FLUXES)
def test_face_flux_is_the_textbook_flux(method):
    """Godunov: min of g over [a, b] if a <= b, max over [b, a] otherwise; Rusanov: the local
    Lax–Friedrichs formula with max |g'| = c max(|a|, |b|); g = c u²/2, by dense sampling."""
    c = 0.7
    a, b = np.meshgrid(np.linspace(-1, 1, 41), np.linspace(-1, 1, 41))
    g = lambda u: c * u * u / 2  # noqa: E731
    if method == "godunov":        # sampled extrema: off by at most c/2 (|b - a|/4000)^2 < 1e-7
        s = np.linspace(0, 1, 4001)[:, None, None]
        vals = g(a + s * (b - a))
        want, atol = np.where(a <= b, vals.min(axis=0), vals.max(axis=0)), 1e-7
    else:
        want = (g(a) + g(b)) / 2 - np.maximum(np.abs(c * a), np.abs(c * b)) * (b - a) / 2
        atol = 1e-15
    np.testing.assert_allclose(ref_flux.face_flux(a, b, c, method), want, rtol=0, atol=atol)


@pytest.mark.parametrize("method", ref_flux.FLUXES)
def test_flux_buffered_finite_differences(method):
    x, y = _case_flux(seed=13)
    _, g = ref_flux.flux_numpy_buffered(x, y, C_FLUX, NU_FLUX, H1, OMEGA, L, method, reuse_workspace=False)
    eps = 1e-6
    for key, (dc, dn) in (("c", (eps, 0)), ("nu", (0, eps))):
        lp = ref_flux.flux_numpy_buffered(x, y, C_FLUX + dc, NU_FLUX + dn, H1, OMEGA, L, method, reuse_workspace=False)[0]
        lm = ref_flux.flux_numpy_buffered(x, y, C_FLUX - dc, NU_FLUX - dn, H1, OMEGA, L, method, reuse_workspace=False)[0]
        fd = (lp - lm) / (2 * eps)
        assert abs(fd - float(g[key])) <= 1e-7 * max(1.0, abs(fd)), (key, fd, float(g[key]))


def test_flux_float32_buffered_close_to_float64():
    x, y = _case_flux()
    l64, g64 = ref_flux.flux_numpy_buffered(x, y, C_FLUX, NU_FLUX, H1, OMEGA, L)
    l32, g32 = ref_flux.flux_numpy_buffered(x.astype(np.float32), y.astype(np.float32), C_FLUX, NU_FLUX, H1, OMEGA, L)
    assert all(g.dtype == np.float32 and g.shape == () for g in g32.values())
    _close((l32, g32), (l64, g64), rtol=1e-5)


def test_flux_reference_refuses_bad_input():
    x, y = _case_flux()
    with pytest.raises(ValueError, match="flux must be one of"):
        ref_flux.flux_numpy_buffered(x, y, C_FLUX, NU_FLUX, flux="roe")
    with pytest.raises(ValueError, match="scalars"):
        ref_flux.flux_numpy_buffered(x, y, np.full(11, C_FLUX), NU_FLUX)
    with pytest.raises(ValueError, match="positive"):
        ref_flux.flux_numpy_buffered(x, y, -C_FLUX, NU_FLUX)
    with pytest.raises(ValueError, match="same shape"):
        ref_flux.flux_numpy_buffered(x, y[:, :5], C_FLUX, NU_FLUX)


# ------------------------------------------------------------------------------- torch.compile
@pytest.mark.slow
@pytest.mark.skipif(ref.adr2d_torch_compiled is None, reason="torch not importable")
def test_torch_compiled_references_agree():
    x, y, theta = _case2d()
    _close(ref.adr2d_torch_compiled(x, y, theta, H2, OMEGA, L), ref.adr2d_numpy_buffered(x, y, theta, H2, OMEGA, L))
    x, y, nu = _case1d()
    _close(ref.burgers_torch_compiled(x, y, nu, H1, OMEGA, L, "tanh"),
           ref.burgers_numpy_buffered(x, y, nu, H1, OMEGA, L, "tanh"))
    x, y = _case_flux()
    for method in ref_flux.FLUXES:
        _close(ref_flux.flux_torch_compiled(x, y, C_FLUX, NU_FLUX, H1, OMEGA, L, method),
               ref_flux.flux_numpy_buffered(x, y, C_FLUX, NU_FLUX, H1, OMEGA, L, method))


# ---------------------------------------------------------------------------------- smoke test
def test_bench_nd_quick_runs():
    """``bench_nd.py --quick`` end to end in a subprocess (one round, without the numba rows: a cold
    numba cache would compile for tens of seconds; the numba backend has its own tests). Without
    torch the script reports the torch rows as unavailable and runs the rest."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    out = subprocess.run([sys.executable, str(_BENCH / "bench_nd.py"), "--quick", "--repeat", "1", "--no-numba"],
                         capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = out.stdout
    assert "Markdown for benchmarks/RESULTS.md" in text
    for name in ("numpy_rolls", "numpy_buffered", "npdegen_numpy", "burgers-tanh", "burgers-identity",
                 "burgers-flux", "burgers-rusanov"):
        assert name in text
    assert "MISMATCH" not in text
    if ref.adr2d_torch_eager is None:
        assert "torch_eager: unavailable" in text
