"""Consistency at the stencil's order: the ADR layer z + dt (R z − U z_q + D z_qq) with f = id, ω = 1.

L layers are L forward-Euler steps of u_t = −U u_q + D u_qq + R u. Against a reference that is
exact in space but takes the SAME forward-Euler steps (per Fourier mode k = 2πm: the factor
(1 + dt(R − iUk − Dk²))^L applied to the exact Fourier coefficients of a periodic Gaussian sum),
the remaining difference is the spatial truncation error alone, O(h^p) for accuracy p.
"""
import numpy as np
import pytest
import sympy as sp

from npdegen import NeuralPDE

U_TRUE, D_TRUE, R_TRUE = 1.0, 0.01, -0.5
SIGMA, CENTRE = 0.08, 0.3
DT, LAYERS = 4e-4, 50                # D dt / h² = 0.26 at n = 256 (stable for accuracy 2 and 4)
GRIDS = (32, 64, 128, 256)


def adr_layer(accuracy, dt=None):
    """The neural ADR step; dt a number (baked into the transform) or None (a parameter ``dt``)."""
    q = sp.Symbol("q")
    z = sp.Function("z")(q)
    U, D, R = sp.symbols("U D R")
    params = {U: "homogeneous", D: "homogeneous", R: "homogeneous"}
    if dt is None:
        dt = sp.Symbol("dt")
        params[dt] = "homogeneous"
    else:
        dt = sp.Float(dt)
    return NeuralPDE(z + dt * (R * z - U * z.diff(q) + D * z.diff(q, 2)), z, activation="identity",
                     params=params, accuracy=accuracy)


def theta_true(**extra):
    return {"U": np.array(U_TRUE), "D": np.array(D_TRUE), "R": np.array(R_TRUE), **extra}


def gaussian_modes(q, modes=40):
    """Input and same-time-stepping reference on the grid q, from exact Fourier coefficients.

    Periodic sum of Gaussians Σ_i exp(−(q − q0 − i)²/2σ²) = Σ_m c_m e^{ikq}, k = 2πm,
    c_m = σ √(2π) exp(−k²σ²/2) e^{−ikq0}; each mode is multiplied by the forward-Euler factor.
    """
    k = 2 * np.pi * np.arange(-modes, modes + 1)
    c = SIGMA * np.sqrt(2 * np.pi) * np.exp(-0.5 * (k * SIGMA) ** 2) * np.exp(-1j * k * CENTRE)
    growth = (1 + DT * (R_TRUE - 1j * U_TRUE * k - D_TRUE * k**2)) ** LAYERS
    basis = np.exp(1j * np.outer(q, k))
    return np.real(basis @ c), np.real(basis @ (c * growth))


def stencil_symbol(layer, theta, h, k):
    """Σ_j w_j e^{ikjh}: the amplification factor of one layer (ω = 1, f = id) for mode k."""
    names = sorted(theta)
    st = layer.stencil(h)
    fn = {j: sp.lambdify([sp.Symbol(p) for p in names], w, "numpy") for j, w in st.items()}
    vals = [float(theta[p]) for p in names]
    return sum(complex(fn[j](*vals)) * np.exp(1j * k * j * h) for j in st)


def test_gaussian_input_matches_its_fourier_series():
    """The reference's input really is the sampled periodic Gaussian (the modes are enough)."""
    q = np.arange(64) / 64
    x, _ = gaussian_modes(q)
    direct = sum(np.exp(-((q - CENTRE - i) ** 2) / (2 * SIGMA**2)) for i in range(-4, 5))
    np.testing.assert_allclose(x, direct, rtol=0, atol=1e-13)


@pytest.mark.parametrize("accuracy", [2, 4])
def test_network_is_the_discrete_symbol_exactly(accuracy):
    """On the grid, the network is the FFT multiplier G(k) = Σ_j w_j e^{ikjh}, L times, to rounding."""
    layer = adr_layer(accuracy, DT)
    n = 64
    h = 1.0 / n
    net = layer.compile(n=n, spacing=h, layers=LAYERS, omega=1.0, boundary="periodic")
    x = np.random.default_rng(0).standard_normal((3, n))
    k = 2 * np.pi * np.fft.fftfreq(n, d=h)
    G = stencil_symbol(layer, theta_true(), h, k)
    ref = np.real(np.fft.ifft(np.fft.fft(x, axis=-1) * G**LAYERS, axis=-1))
    np.testing.assert_allclose(net.forward(x, theta_true()), ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("accuracy", [2, 4])
def test_spatial_truncation_error_has_the_stencil_order(accuracy):
    """Max error vs the same-time-step, exact-in-space reference falls like h^accuracy."""
    layer = adr_layer(accuracy, DT)
    errors = []
    for n in GRIDS:
        h = 1.0 / n
        if n == GRIDS[-1]:   # stability of every grid mode at the finest grid (|G| ≤ 1)
            G = stencil_symbol(layer, theta_true(), h, 2 * np.pi * np.fft.fftfreq(n, d=h))
            assert np.max(np.abs(G)) <= 1.0 and D_TRUE * DT / h**2 <= 0.4
        q = np.arange(n) * h
        x, ref = gaussian_modes(q)
        net = layer.compile(n=n, spacing=h, layers=LAYERS, omega=1.0, boundary="periodic")
        errors.append(np.max(np.abs(net.forward(x, theta_true()) - ref)))
    errors = np.array(errors)
    log_h = np.log(1.0 / np.array(GRIDS))
    fitted = np.polyfit(log_h, np.log(errors), 1)[0]
    finest = (np.log(errors[-2]) - np.log(errors[-1])) / (log_h[-2] - log_h[-1])
    assert abs(fitted - accuracy) < 0.1, (fitted, errors)
    assert abs(finest - accuracy) < 0.1, (finest, errors)
    assert np.all(np.diff(errors) < 0)
    assert errors[-1] > 1e-10  # well above rounding: the slope measures truncation, not noise


def periodic_adr_exact(q, centre, width, t, U, D, R):
    """Exact periodic solution of u_t = −U u_q + D u_qq + R u for a Gaussian initial condition."""
    var = width**2 + 2 * D * t
    images = sum(np.exp(-((q - centre - U * t - i) ** 2) / (2 * var)) for i in range(-4, 5))
    return np.exp(R * t) * width / np.sqrt(var) * images


@pytest.mark.parametrize("accuracy", [2, 4])
def test_converges_to_the_exact_continuous_solution(accuracy):
    """Refining space and time together (dt ∝ h², fixed T): the error against the advected,
    spread and damped Gaussian falls by ≈ 4 per halving of h (forward Euler's O(dt) = O(h²))."""
    U, D, R, T = 0.5, 0.05, -1.0, 0.1
    layer = adr_layer(accuracy)
    centre, width = np.array([[0.2], [0.7]]), np.array([[0.08], [0.06]])
    errors = []
    for n, L in [(32, 16), (64, 64), (128, 256), (256, 1024)]:     # D dt / h² = 0.32 throughout
        h = 1.0 / n
        q = (np.arange(n) + 0.5) * h
        net = layer.compile(n=n, spacing=h, layers=L, omega=1.0, boundary="periodic")
        x = periodic_adr_exact(q, centre, width, 0.0, U, D, R)
        y = periodic_adr_exact(q, centre, width, T, U, D, R)
        out = net.forward(x, {"U": np.array(U), "D": np.array(D), "R": np.array(R), "dt": np.array(T / L)})
        errors.append(np.max(np.abs(out - y)))
    errors = np.array(errors)
    assert errors[0] < 0.02
    ratios = errors[:-1] / errors[1:]
    assert np.all(ratios > 3.0), (errors, ratios)
