"""Flux-form layers (npdegen.conservation_law) against independent references.

* one step equals a hand-written NumPy loop of the textbook numerical fluxes for Burgers
  (Godunov's exact Riemann flux by its min/max definition, Engquist–Osher by its integral form,
  Rusanov, central) on every boundary kind;
* Σ z is conserved to round-off over 1,000 layers (periodic, zero-flux walls), 1-D and 2-D;
* under the CFL bound the monotone fluxes obey the maximum principle and never increase the total
  variation (property test, derandomised);
* gradients equal central finite differences (float64) and the adjoint passes the dot-product test;
* NumPy ≡ numba ≡ the CUDA emulator;
* second-order convergence of the central flux to a pseudo-spectral viscous Burgers solution, first
  order for the monotone fluxes;
* bad input: a flux that is neither convex nor concave with godunov, a reserved name (wall mask,
  lo-face value), a flux with derivatives — clear errors.
"""
import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings, strategies as st

import npdegen
from npdegen.conservation import conservation_law
from test_cuda_compile import NVRTC, NVRTC_MISSING, compile_job, emulator  # noqa: F401
from test_step_cuda import compare, emulated_network

q, x, y = sp.symbols("q x y")
z = sp.Function("z")(q)
z2 = sp.Function("z")(x, y)
c = sp.Symbol("c", positive=True)
nu = sp.Symbol("nu")
METHODS = ("godunov", "engquist_osher", "rusanov", "central")


def burgers_layer(method, dim=1, **kw):
    field = z if dim == 1 else z2
    return conservation_law(c * field ** 2 / 2, field, diffusion=nu, params={c: "homogeneous", nu: "homogeneous"},
                            numerical_flux=method, name=f"burgers_{method}_{dim}d", **kw)


# ---------------------------------------------------------------- the hand-written reference
def riemann_flux(method, a, b, k):
    """Textbook numerical fluxes of g(u) = k u²/2 (k > 0), written from their definitions."""
    g = lambda u: k * u * u / 2
    if method == "central":
        return (g(a) + g(b)) / 2
    if method == "rusanov":
        return (g(a) + g(b)) / 2 - np.maximum(np.abs(k * a), np.abs(k * b)) * (b - a) / 2
    if method == "engquist_osher":      # F = g(0) + ∫_0^a max(g', 0) + ∫_0^b min(g', 0)
        return g(np.maximum(a, 0)) + g(np.minimum(b, 0))
    # Godunov: min of g over [a, b] if a <= b, max over [b, a] otherwise
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    gmin = np.where((lo <= 0) & (hi >= 0), 0.0, np.minimum(g(lo), g(hi)))
    gmax = np.maximum(g(lo), g(hi))
    return np.where(a <= b, gmin, gmax)


def reference_step(u, method, k, d, h, boundary):
    """One flux-form step on a 1-D grid by an explicit loop over faces."""
    n = u.shape[-1]
    out = u.copy()
    faces = range(n) if boundary == "periodic" else range(n - 1)
    for f in faces:                     # face between cell f and f + 1
        a, b = u[..., f], u[..., (f + 1) % n]
        flux = riemann_flux(method, a, b, k) / h - d * (b - a) / h ** 2
        out[..., f] -= flux
        out[..., (f + 1) % n] += flux
    if boundary == "dirichlet":         # ghost value 0 outside: the two boundary faces are open
        for cell, a, b, sign in ((0, 0 * u[..., 0], u[..., 0], 1), (n - 1, u[..., -1], 0 * u[..., -1], -1)):
            flux = riemann_flux(method, a, b, k) / h - d * (b - a) / h ** 2
            out[..., cell] += sign * flux
    return out


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("boundary", ["periodic", "neumann", "dirichlet"])
def test_one_step_equals_the_handwritten_fluxes(method, boundary):
    rng = np.random.default_rng(1)
    u = rng.uniform(-1, 1, (4, 17))
    net = burgers_layer(method).compile(n=17, spacing=0.1, layers=1, boundary=boundary)
    theta = {"c": np.array(0.03), "nu": np.array(0.002)}
    expected = reference_step(u, method, 0.03, 0.002, 0.1, boundary)
    np.testing.assert_allclose(net.forward(u, theta), expected, rtol=0, atol=1e-14)


@pytest.mark.parametrize("method", ["godunov", "engquist_osher", "rusanov"])
@pytest.mark.parametrize("boundary", ["periodic", "neumann"])
def test_mass_is_conserved_over_1000_layers(method, boundary):
    rng = np.random.default_rng(2)
    u = rng.uniform(-1, 1, (3, 64))
    net = burgers_layer(method).compile(n=64, spacing=1 / 64, layers=1000, boundary=boundary)
    theta = {"c": np.array(0.005), "nu": np.array(0.00005)}
    out = net.forward(u, theta)
    np.testing.assert_allclose(out.sum(axis=1), u.sum(axis=1), rtol=0, atol=1e-12 * np.abs(u).sum(axis=1).max())
    assert np.ptp(out, axis=1).max() < np.ptp(u, axis=1).max()       # it did something: the data smoothed


@pytest.mark.parametrize("boundary", [("periodic", "neumann"), ("neumann", "neumann")])
def test_mass_is_conserved_in_2d(boundary):
    rng = np.random.default_rng(3)
    u = rng.uniform(-1, 1, (2, 12, 10))
    layer = conservation_law((c * z2 ** 2 / 2, c * z2), z2, diffusion=nu, params={c: "homogeneous", nu: "homogeneous"},
                             numerical_flux="godunov", name="flux2d")
    net = layer.compile(n=(12, 10), spacing=(0.1, 0.1), layers=300, boundary=boundary)
    out = net.forward(u, {"c": np.array(0.02), "nu": np.array(0.001)})
    np.testing.assert_allclose(out.sum(axis=(1, 2)), u.sum(axis=(1, 2)), rtol=0, atol=1e-12 * np.abs(u).sum())


@settings(derandomize=True, max_examples=12, deadline=None)
@given(st.sampled_from(["godunov", "engquist_osher", "rusanov"]), st.floats(0.05, 1.0), st.floats(0.0, 0.45),
       st.integers(0, 2 ** 31 - 1))
def test_maximum_principle_and_tvd_under_the_cfl_bound(method, courant, mesh_peclet, seed):
    h = 1 / 32
    k = courant * h            # max |g'| = k·max|u| <= k, so k/h = courant
    d = mesh_peclet * h ** 2 * (1 - courant) / 0.9
    layer = burgers_layer(method)
    theta = {"c": np.array(k), "nu": np.array(d)}
    cert = layer.certificate(theta, h, state_range=(-1, 1))
    assert cert.cfl <= 1 and cert.positive and cert.tvd
    net = layer.compile(n=32, spacing=h, layers=1, boundary="periodic")
    u = np.random.default_rng(seed).uniform(-1, 1, (2, 32))
    for _ in range(20):
        v = net.forward(u, theta)
        assert v.max() <= u.max() + 1e-14 and v.min() >= u.min() - 1e-14
        tv = lambda w: np.abs(np.diff(w, axis=1, append=w[:, :1])).sum(axis=1)
        assert np.all(tv(v) <= tv(u) + 1e-12)
        u = v


def test_certificate_refuses_central_and_large_steps():
    theta = {"c": np.array(0.1), "nu": np.array(0.0)}
    assert not burgers_layer("central").certificate(theta, 0.1).positive
    big = burgers_layer("godunov").certificate({"c": np.array(0.5), "nu": np.array(0.0)}, 0.1)
    assert big.cfl == pytest.approx(5.0) and not big.positive
    assert "NOT certified" in str(big)


@pytest.mark.parametrize("method", METHODS)
def test_gradients_equal_finite_differences(method):
    rng = np.random.default_rng(4)
    net = burgers_layer(method).compile(n=11, spacing=0.2, layers=6, boundary="neumann")
    u, target = rng.uniform(-1, 1, (2, 11)), rng.uniform(-1, 1, (2, 11))
    theta = {"c": np.array(0.04), "nu": np.array(0.003)}
    loss, grads = net.loss_and_grad(u, target, theta, input_grad=True)
    eps = 1e-6
    for key in theta:
        hi = {**theta, key: theta[key] + eps}
        lo = {**theta, key: theta[key] - eps}
        fd = (net.loss_and_grad(u, target, hi)[0] - net.loss_and_grad(u, target, lo)[0]) / (2 * eps)
        assert abs(fd - float(grads[key])) <= 1e-6 * max(1.0, abs(fd)), key
    v = rng.standard_normal(u.shape)
    w = rng.standard_normal(u.shape)
    jv = (net.forward(u + eps * v, theta) - net.forward(u - eps * v, theta)) / (2 * eps)
    dx, _ = net.vjp(u, theta, w)
    assert abs(np.sum(jv * w) - np.sum(v * dx)) <= 1e-7 * max(1.0, abs(np.sum(v * dx)))


@pytest.mark.parametrize("method", ["godunov", pytest.param("rusanov", marks=pytest.mark.slow)])
def test_numba_equals_numpy(method):
    pytest.importorskip("numba")
    rng = np.random.default_rng(5)
    layer = burgers_layer(method)
    u, target = rng.uniform(-1, 1, (3, 40)), rng.uniform(-1, 1, (3, 40))
    theta = {"c": np.array(0.01), "nu": np.array(0.0004)}
    nets = [layer.compile(n=40, spacing=0.05, layers=8, boundary="neumann", backend=b) for b in ("numpy", "numba")]
    (la, ga), (lb, gb) = (n.loss_and_grad(u, target, theta, input_grad=True) for n in nets)
    assert abs(la - lb) <= 1e-12 * abs(lb)
    for k in gb:
        np.testing.assert_allclose(ga[k], gb[k], rtol=1e-11, atol=1e-13)


def test_cuda_emulation_equals_numpy(emulator):  # noqa: F811
    from npdegen.codegen.step_render import StepOptions
    layer = burgers_layer("godunov")
    options = StepOptions(backend="cupy", boundary=("neumann",), dtype="float64")
    cu, _ = emulated_network(layer, options, (13,), (0.1,), emulator, "flux", layers=4, omega=0.8)
    ref = layer.compile(n=13, spacing=0.1, layers=4, omega=0.8, boundary="neumann")
    compare(cu, ref, {"c": np.array(0.03), "nu": np.array(0.002)}, layers=4)


@pytest.mark.skipif(NVRTC is None, reason=NVRTC_MISSING)
@pytest.mark.parametrize("method", METHODS)
def test_cuda_source_compiles_with_nvrtc(method):
    from npdegen.codegen.step_render import StepOptions, render_step
    layer = burgers_layer(method)
    code = render_step(layer.lowered, StepOptions(backend="cupy", boundary=("neumann",), dtype="float32")).files[".cu"]
    log, entries = compile_job(code, "90", True)
    assert log is None, log
    assert {"forward_step", "adjoint_site", "adjoint_gather"} <= set(entries)


# ---------------------------------------------------------------- convergence
def spectral_burgers(u0, k, d, T, steps=2000):
    """u_t + (k u²/2)_x = d u_xx on (0, 1), periodic: Fourier pseudo-spectral with 2/3 dealiasing,
    the diffusion integrated exactly (integrating-factor RK4, Trefethen's "Spectral methods in MATLAB")."""
    n = u0.size
    freq = np.fft.rfftfreq(n, 1 / n)
    wave, keep, dt = 2j * np.pi * freq, freq < n / 3, T / steps
    E = np.exp(-d * (2 * np.pi * freq) ** 2 * dt / 2)
    E2 = E * E

    def N(vh):
        u = np.fft.irfft(vh * keep, n)
        return -dt * wave * np.fft.rfft(k * u * u / 2) * keep
    vh = np.fft.rfft(u0)
    for _ in range(steps):
        a = N(vh); b = N(E * (vh + a / 2)); cc = N(E * vh + b / 2); e = N(E2 * vh + E * cc)
        vh = E2 * vh + (E2 * a + 2 * E * (b + cc) + e) / 6
    return np.fft.irfft(vh, n)


@pytest.mark.parametrize("method,order", [("central", 2), ("rusanov", 1), ("godunov", 1)])
def test_convergence_to_spectral_viscous_burgers(method, order):
    k, d, T = 1.0, 0.05, 0.2
    fine = 512
    xf = (np.arange(fine) + 0.5) / fine
    exact_fine = spectral_burgers(0.5 + 0.5 * np.sin(2 * np.pi * xf), k, d, T)
    errors = []
    layer = burgers_layer(method)
    for n in (32, 64, 128):
        h = 1 / n
        xc = (np.arange(n) + 0.5) / n
        steps = int(np.ceil(T / (0.2 * h * h / d)))
        dt = T / steps
        net = layer.compile(n=n, spacing=h, layers=steps)
        out = net.forward(0.5 + 0.5 * np.sin(2 * np.pi * xc), {"c": np.array(k * dt), "nu": np.array(d * dt)})
        exact = exact_fine.reshape(n, fine // n).mean(axis=1)      # cell averages
        errors.append(np.sqrt(np.mean((out - exact) ** 2)))
    rates = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all(rates > order - 0.25), (errors, rates)


# ---------------------------------------------------------------- bad input
def test_bad_input_is_refused_clearly():
    with pytest.raises(ValueError, match="convex or concave"):
        conservation_law(z ** 3, z, numerical_flux="godunov")
    with pytest.raises(ValueError, match="convex or concave"):
        conservation_law(nu * z ** 2 / 2, z, params={nu: "homogeneous"}, numerical_flux="engquist_osher")
    conservation_law(nu * z ** 2 / 2, z, params={nu: "homogeneous"}, numerical_flux="rusanov")   # fine
    with pytest.raises(ValueError, match="reserved"):    # the lo-face value of a face coefficient
        taken = sp.Symbol("c_face_lo_q")
        conservation_law(c * z ** 2 / 2, z, diffusion=taken, params={c: "heterogeneous", taken: "homogeneous"})
    with pytest.raises(ValueError, match="reserved"):
        w = sp.Symbol("wall_lo_q")
        conservation_law(z ** 2 / 2, z, diffusion=w, params={w: "homogeneous"})
    with pytest.raises(ValueError, match="function of the field"):
        conservation_law(z.diff(q), z)
    with pytest.raises(ValueError, match="numerical_flux"):
        conservation_law(z ** 2 / 2, z, numerical_flux="roe")
    with pytest.raises(TypeError):
        conservation_law("z**2/2", z)


def test_linear_flux_is_upwind_and_pickles():
    import pickle
    U = sp.Symbol("U")
    layer = conservation_law(U * z, z, params={U: "homogeneous"})
    assert set(layer.stencil(spacing=1)) == {-1, 0, 1}
    net = layer.compile(n=16, spacing=1.0, layers=3, boundary="neumann")
    again = pickle.loads(pickle.dumps(net))
    u = np.random.default_rng(6).uniform(-1, 1, (2, 16))
    for U_value in (0.3, -0.3):
        theta = {"U": np.array(U_value)}
        np.testing.assert_array_equal(again.forward(u, theta), net.forward(u, theta))
        one = layer.compile(n=16, spacing=1.0, layers=1, boundary="periodic").forward(u, theta)
        upwind = u - U_value * ((u - np.roll(u, 1, axis=1)) if U_value > 0 else (np.roll(u, -1, axis=1) - u))
        np.testing.assert_allclose(one, upwind, atol=1e-15)
    assert "flux" in str(layer.explain())


def test_npdegen_stability_and_the_training_monitor_use_the_flux_certificate():
    from npdegen.inspect.stability import stability_monitor
    net = burgers_layer("godunov").compile(n=16, spacing=0.1, layers=2)
    cert = npdegen.stability(net, {"c": np.array(0.02), "nu": np.array(0.001)})
    assert cert.stable and cert.cfl == pytest.approx(0.02 / 0.1 + 2 * 0.001 / 0.01)
    monitor = stability_monitor(net)
    assert monitor({"c": np.array(0.02), "nu": np.array(0.001)}) is None
    assert "CFL" in monitor({"c": np.array(0.2), "nu": np.array(0.001)})
