"""The fast paths of the nonlocal layer (npdegen.integral.fastsweep, .fused): the compiled loops against
hand-written NumPy loops, the unnormalised transforms against numpy.fft, the whole-network sweep
against a dense-matrix network written here (forward, hand-derived adjoint, finite differences),
kept buffers that never leak between calls, the NumPy fallback and the auto rule's crossover."""
import math

import numpy as np
import pytest
import sympy as sp

from npdegen.integral import NonlocalPDE, gaussian
from npdegen.integral import fastsweep, fused
from npdegen.integral.layer import Activation
from npdegen.integral.network import NonlocalNetwork

q = sp.Symbol("q", real=True)
z1 = sp.Function("z")(q)
sigma = sp.Symbol("sigma")
BOUNDARIES = ("periodic", "dirichlet", "neumann")


# ---------------------------------------------------------------------- fused loops vs plain loops
@pytest.mark.parametrize("use_numba", [True, False])
def test_fused_loops_equal_plain_loops(use_numba):
    rng = np.random.default_rng(0)
    B, n, taps = 3, 4100, 7                     # n > BLOCK: several column blocks
    z, f = rng.standard_normal((2, B, n))
    out = np.empty_like(z)
    fused.relax(out, z, f, 0.3, 0.7, use_numba=use_numba)
    np.testing.assert_allclose(out, 0.3 * z + 0.7 * f, rtol=0, atol=1e-15)
    zp = rng.standard_normal((B, n + taps - 1))
    w = rng.standard_normal(taps)
    fused.correlate(zp, w, out, use_numba=use_numba)
    want = np.zeros((B, n))
    for j in range(taps):                       # one tap at a time, as the definition reads
        for b in range(B):
            want[b] += w[j] * zp[b, j:j + n]
    np.testing.assert_allclose(out, want, rtol=0, atol=1e-12)
    mu = rng.standard_normal((B, n))
    lags = fused.lag_sums(mu, zp, taps, use_numba=use_numba)
    np.testing.assert_allclose(lags, [math.fsum((mu * zp[:, j:j + n]).ravel()) for j in range(taps)],
                               rtol=1e-12, atol=1e-10)
    m = rng.standard_normal((B, 33)) + 1j * rng.standard_normal((B, 33))
    s = rng.standard_normal((B, 33)) + 1j * rng.standard_normal((B, 33))
    s_out, out2 = np.empty_like(z), np.empty_like(z)
    for kind, slope in ((1, 1 - f * f), (2, f * (1 - f))):
        fused.relax_slope(out2, z, f, s_out, 0.3, 0.7, kind, use_numba=use_numba)
        np.testing.assert_allclose(out2, 0.3 * z + 0.7 * f, rtol=0, atol=1e-15)
        np.testing.assert_allclose(s_out, slope, rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="kind must be 1 or 2"):
        fused.relax_slope(out2, z, f, s_out, 0.3, 0.7, 3, use_numba=use_numba)
    fused.product(out2, z, f, 0.6, use_numba=use_numba)
    np.testing.assert_allclose(out2, 0.6 * z * f, rtol=0, atol=1e-15)
    k = (rng.standard_normal(33) + 1j * rng.standard_normal(33)).astype(np.complex64)
    acc = np.full(33, 1.0 + 2.0j)
    m32, s32 = m.astype(np.complex64), s.astype(np.complex64)
    want = 1.0 + 2.0j + sum(np.conj(m32[b]) * s32[b] for b in range(B))
    scaled = m32 * k
    fused.correlate_spectra(acc, m32, s32, k, use_numba=use_numba)
    np.testing.assert_allclose(acc, want, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(m32, scaled, rtol=1e-6, atol=1e-6)        # the spectrum scaled in place


@pytest.mark.parametrize("direct", [True, False])
@pytest.mark.parametrize("periods", [(16,), (15,), (6, 10), (5, 7)])
def test_unnormalised_transforms_equal_numpy_fft(direct, periods):
    rng = np.random.default_rng(1)
    T = fastsweep.Transforms(periods, 1, direct=direct)
    a = rng.standard_normal((3, *periods))
    axes = tuple(range(1, 1 + len(periods)))
    spec = np.empty((3, *periods[:-1], periods[-1] // 2 + 1), np.complex128)
    np.testing.assert_allclose(T.r2c(a, spec), np.fft.rfftn(a, axes=axes), rtol=0, atol=1e-12)
    back = np.empty_like(a)
    np.testing.assert_allclose(T.c2r(spec.copy(), back), a * np.prod(periods), rtol=0, atol=1e-10)


# ---------------------------------------------------------------------- a dense reference network
def dense_matrix(n, dx, s, reach, kind):
    """M[i, p]: the weight with which site i reads grid value p (wrap / zero / repeated mirror)."""
    M = np.zeros((n, n))
    for i in range(n):
        for j in range(-reach, reach + 1):
            p = i + j
            if kind == "periodic":
                p %= n
            elif kind == "dirichlet" and not 0 <= p < n:
                continue
            while not 0 <= p < n:
                p = -p - 1 if p < 0 else 2 * n - 1 - p
            M[i, p] += dx * math.exp(-(j * dx) ** 2 / (2 * s * s)) / (math.sqrt(2 * math.pi) * s)
    return M


ACTIVATIONS = {                                  # f and f' by hand
    "tanh": (np.tanh, lambda v: 1 / np.cosh(v) ** 2),
    "sigmoid": (lambda v: 1 / (1 + np.exp(-v)), lambda v: np.exp(-v) / (1 + np.exp(-v)) ** 2),
    "softplus": (lambda v: np.log1p(np.exp(v)), lambda v: 1 / (1 + np.exp(-v))),
}


def reference_loss_and_grad(M, x, y, b, omega, L, activation="tanh"):
    """Forward z_{t+1} = (1-ω) z_t + ω f(z_t Mᵀ - b) and its adjoint, derived by hand."""
    f, df = ACTIVATIONS[activation]
    traj, pres = [x], []
    for _ in range(L):
        Z = traj[-1] @ M.T - b
        pres.append(Z)
        traj.append((1 - omega) * traj[-1] + omega * f(Z))
    lam = traj[-1] - y
    loss = 0.5 * np.sum(lam ** 2)
    gb, gomega = np.zeros_like(b), 0.0
    for t in reversed(range(L)):
        gomega += np.sum(lam * (f(pres[t]) - traj[t]))
        mu = omega * lam * df(pres[t])
        gb -= mu.sum(axis=0)
        lam = (1 - omega) * lam + mu @ M
    return loss, gb, gomega, lam


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "softplus"])
@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("method", ["stencil", "fft"])
def test_sweep_equals_dense_reference_network(boundary, method, activation):
    """tanh and sigmoid keep f′(Z) from the forward (slope of the value), softplus keeps Z."""
    n, dx, s, L, omega, reach = 29, 0.1, 0.23, 5, 0.7, 8
    layer = NonlocalPDE(gaussian(sigma), z1, activation=activation, params={sigma: "homogeneous"},
                        bias="heterogeneous")
    assert layer.activation.slope_of_value == {"tanh": 1, "sigmoid": 2, "softplus": 0}[activation]
    net = layer.compile(n, spacing=dx, layers=L, omega=omega, boundary=boundary, method=method, reach=reach,
                        train_omega=True)
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((2, 3, n))
    b = 0.1 * rng.standard_normal(n)
    theta = {"sigma": np.array(s), "b": b, "omega": np.array(omega)}
    loss, grads = net.loss_and_grad(x, y, theta, input_grad=True)
    ref_loss, gb, gomega, gx = reference_loss_and_grad(dense_matrix(n, dx, s, reach, boundary), x, y, b, omega, L,
                                                       activation)
    assert loss == pytest.approx(ref_loss, rel=1e-13)
    np.testing.assert_allclose(grads["b"], gb, rtol=0, atol=1e-12)
    np.testing.assert_allclose(grads["x"], gx, rtol=0, atol=1e-12)
    assert float(grads["omega"]) == pytest.approx(gomega, rel=1e-12, abs=1e-12)
    h = 1e-6                                    # the kernel parameter by central differences
    fd = (reference_loss_and_grad(dense_matrix(n, dx, s + h, reach, boundary), x, y, b, omega, L, activation)[0]
          - reference_loss_and_grad(dense_matrix(n, dx, s - h, reach, boundary), x, y, b, omega, L, activation)[0]
          ) / (2 * h)
    assert float(grads["sigma"]) == pytest.approx(fd, rel=1e-6, abs=1e-8)


def test_slope_of_value_is_found_only_where_it_holds():
    x = sp.Symbol("x")
    rho = sp.Symbol("rho")
    cases = {"tanh": 1, "sigmoid": 2, 1 / (1 + sp.exp(-x)): 2, sp.tanh(x): 1, sp.tanh(2 * x): 0, "softplus": 0,
             "relu": 0, "square": 0, "identity": 0}
    for activation, code in cases.items():
        assert Activation(activation).slope_of_value == code, activation
    assert Activation(sp.tanh(rho * x), [rho]).slope_of_value == 0          # parameters: Z is kept


# ---------------------------------------------------------------------- kept buffers
@pytest.mark.parametrize("method", ["stencil", "fft"])
def test_kept_buffers_do_not_leak_between_calls(method):
    layer = NonlocalPDE(gaussian(sigma), z1, activation="tanh", params={sigma: "homogeneous"}, bias="homogeneous")
    net = layer.compile(40, spacing=0.1, layers=3, omega=0.6, boundary="neumann", method=method, reach=6)
    rng = np.random.default_rng(3)
    x1, x2, y = rng.standard_normal((3, 2, 40))
    theta = {"sigma": np.array(0.2), "b": np.array(0.05)}
    fresh = lambda x: layer.compile(40, spacing=0.1, layers=3, omega=0.6, boundary="neumann", method=method,
                                    reach=6).loss_and_grad(x, y, theta, input_grad=True)
    want1, want2 = fresh(x1), fresh(x2)
    got1 = net.loss_and_grad(x1, y, theta, input_grad=True)
    kept = {k: np.array(v, copy=True) for k, v in got1[1].items()}
    got2 = net.loss_and_grad(x2, y, theta, input_grad=True)
    for got, want in ((got1, want1), (got2, want2)):
        assert got[0] == want[0]
        for k in want[1]:
            np.testing.assert_array_equal(got[1][k], want[1][k])
    for k in kept:                              # the first call's results were not overwritten
        np.testing.assert_array_equal(got1[1][k], kept[k])
    tape1, tape2 = net.forward(x1, theta, keep=True), net.forward(x2, theta, keep=True)
    first = net.backward(tape1, y)
    again = net.backward(tape1, y)              # a tape backpropagates twice to the same result
    other = net.backward(tape2, y)
    ref1, ref2 = net.vjp(x1, theta, y), net.vjp(x2, theta, y)
    for (dx, g), (rdx, rg) in ((first, ref1), (again, ref1), (other, ref2)):
        np.testing.assert_array_equal(dx, rdx)
        for k in rg:
            np.testing.assert_array_equal(g[k], rg[k])


# ---------------------------------------------------------------------- fallbacks, the auto rule
@pytest.mark.parametrize("method", ["stencil", "fft"])
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_numpy_fallback_equals_compiled_path(monkeypatch, method, boundary):
    layer = NonlocalPDE(gaussian(sigma), z1, activation="tanh", params={sigma: "homogeneous"}, bias="homogeneous")
    make = lambda: layer.compile(33, spacing=0.1, layers=3, omega=0.6, boundary=boundary, method=method, reach=7)
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((2, 2, 33))
    theta = {"sigma": np.array(0.25), "b": np.array(-0.1)}
    fast = make().loss_and_grad(x, y, theta, input_grad=True)
    monkeypatch.setattr(fused, "HAVE_NUMBA", False)
    monkeypatch.setattr(fastsweep, "_pocketfft", None)
    slow_net = make()
    assert slow_net._fast_sweep(slow_net.plan(theta)) == (method == "fft")
    slow = slow_net.loss_and_grad(x, y, theta, input_grad=True)
    assert slow[0] == pytest.approx(fast[0], rel=1e-13)
    for k in fast[1]:
        np.testing.assert_allclose(slow[1][k], fast[1][k], rtol=0, atol=1e-12)


@pytest.mark.parametrize("numba_on", [True, False])
def test_auto_rule_crossover(monkeypatch, numba_on):
    """auto: stencil while 2K+1 <= c log2 N (c = 3.5 with numba's 1-D loops, 0.5 otherwise)."""
    monkeypatch.setattr(fused, "HAVE_NUMBA", numba_on and fused.HAVE_NUMBA)
    c = NonlocalNetwork.STENCIL_PER_LOG2_NUMBA if fused.HAVE_NUMBA else NonlocalNetwork.STENCIL_PER_LOG2
    n = 4096
    net = NonlocalPDE(gaussian(sigma), z1, params={sigma: "homogeneous"}).compile(n, method="auto")
    limit = c * math.log2(n)
    for k in range(0, 30):
        assert net._choose((k,)) == ("stencil" if 2 * k + 1 <= limit else "fft"), k
    for s in (0.3, 1.0, 2.0, 5.0):              # the reach the sampler decides, then the rule
        th = net.check_params({"sigma": np.array(s)})
        k = net._reach(th)[0]
        assert net.plan(th).op.name == ("stencil" if 2 * k + 1 <= limit else "fft")


@pytest.mark.slow
def test_benchmark_script_quick_mode(capsys):
    """benchmarks/bench_nonlocal.py --quick runs and reports the target line for both activations (~11 s:
    it compiles the local numba layers)."""
    import importlib.util
    import pathlib
    path = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "bench_nonlocal.py"
    spec = importlib.util.spec_from_file_location("bench_nonlocal", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert out.count("fft / local = ") == 2 and "transforms" in out
