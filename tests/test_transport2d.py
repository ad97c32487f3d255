"""Self-transport layers (npdegen.integral.transport): forward against a hand-written DFT reference, the
hand-written adjoint against finite differences and dot-product tests, convergence to the vorticity
solver, and clear errors on bad input."""
import math
import pickle

import numpy as np
import pytest

from npdegen.integral.transport import TransportNetwork, transport_network
from npdegen.runtime.network import NonFiniteError
from npdegen.tasks.twod import vorticity_on_grid


# ---------------------------------------------------------------------- independent reference
def _dft(n):
    """The DFT matrix ``F[j, k] = exp(−2πi jk/n)`` built by loops."""
    F = np.empty((n, n), complex)
    for j in range(n):
        for k in range(n):
            F[j, k] = np.exp(-2j * np.pi * j * k / n)
    return F


def _signed(n):
    """Signed integer frequencies of a full DFT axis, by a loop."""
    return np.array([k if k < n / 2 else k - n for k in range(n)], float)


class Reference:
    """One IF-Heun layer written with dense DFT matrices (full complex transforms) and loops."""

    def __init__(self, nx, ny, lengths=(1.0, 1.0)):
        self.Fx, self.Fy = _dft(nx), _dft(ny)
        self.nx, self.ny = nx, ny
        kx, ky = _signed(nx), _signed(ny)
        self.k2 = np.zeros((nx, ny))
        self.dx = np.zeros((nx, ny), complex)
        self.dy = np.zeros((nx, ny), complex)
        self.mask = np.zeros((nx, ny))
        for i in range(nx):
            for j in range(ny):
                ax, ay = 2 * np.pi * kx[i] / lengths[0], 2 * np.pi * ky[j] / lengths[1]
                self.k2[i, j] = ax * ax + ay * ay
                # a derivative's symbol is zero at a Nyquist index (|k| = n/2 has no sign)
                self.dx[i, j] = 0 if 2 * abs(kx[i]) == nx else 1j * ax
                self.dy[i, j] = 0 if 2 * abs(ky[j]) == ny else 1j * ay
                self.mask[i, j] = float(abs(kx[i]) < nx / 3 and abs(ky[j]) < ny / 3)

    def fft(self, z):
        return self.Fx @ z @ self.Fy.T

    def ifft(self, Z):
        return (np.conj(self.Fx) @ Z @ np.conj(self.Fy).T / (self.nx * self.ny)).real

    def J(self, z):
        Z = self.fft(z)
        inv = np.array([[0.0 if k == 0 else 1.0 / k for k in row] for row in self.k2])
        psi = inv * Z
        u, v = self.ifft(self.dy * psi), self.ifft(-self.dx * psi)
        zx, zy = self.ifft(self.dx * Z), self.ifft(self.dy * Z)
        return self.ifft(self.mask * self.fft(u * zx + v * zy))

    def step(self, z, c, nu, omega):
        E = lambda f: self.ifft(np.exp(-omega * nu * self.k2) * self.fft(f))
        zt = E(z - omega * c * self.J(z))
        return 0.5 * (E(z) + zt - omega * c * self.J(zt))


def _smooth(rng, batch, nx, ny, modes=3):
    X, Y = np.meshgrid(np.arange(nx) / nx, np.arange(ny) / ny, indexing="ij")
    out = np.zeros((batch, nx, ny))
    for b in range(batch):
        for _ in range(modes):
            p, q = rng.integers(-2, 3, size=2)
            out[b] += rng.normal() * np.cos(2 * np.pi * (p * X + q * Y) + rng.uniform(0, 2 * np.pi))
    return out


def _theta(c, nu):
    return {"c": np.asarray(c, float), "nu": np.asarray(nu, float)}


@pytest.mark.parametrize("grid", [(8, 6), (9, 7), (8, 9)])
def test_forward_matches_dft_reference(grid):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, *grid))
    ref = Reference(*grid, lengths=(1.3, 0.7))
    net = transport_network(grid, spacing=(1.3 / grid[0], 0.7 / grid[1]), layers=2, omega=0.03)
    expected = np.stack([ref.step(ref.step(s, 0.8, 4e-3, 0.03), 0.8, 4e-3, 0.03) for s in x])
    out = net.forward(x, _theta(0.8, 4e-3))
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12 * np.abs(expected).max())
    np.testing.assert_allclose(net.forward(x[0], _theta(0.8, 4e-3)), expected[0], atol=1e-12 * np.abs(expected).max())
    # the velocity is ∇⊥(−Δ)⁻¹ z: divergence-free, and (u, v) = (ψ_y, −ψ_x) of the reference
    u, v = net.velocity(x[0])
    Z = ref.fft(x[0])
    inv = np.where(ref.k2 > 0, 1 / np.where(ref.k2 > 0, ref.k2, 1), 0)
    np.testing.assert_allclose(u, ref.ifft(ref.dy * inv * Z), atol=1e-13)
    np.testing.assert_allclose(v, ref.ifft(-ref.dx * inv * Z), atol=1e-13)


def _fd(f, h=1e-3):
    """Fourth-order central difference of a scalar function of one number at 0."""
    return (f(-2 * h) - 8 * f(-h) + 8 * f(h) - f(2 * h)) / (12 * h)


@pytest.mark.parametrize("grid", [(12, 10), (9, 11)])
def test_gradient_matches_finite_differences(grid):
    rng = np.random.default_rng(2)
    net = transport_network(grid, layers=4, omega=0.05)
    x, y = _smooth(rng, 3, *grid), _smooth(rng, 3, *grid)
    theta = _theta(0.9, 3e-3)
    loss, g = net.loss_and_grad(x, y, theta, input_grad=True)
    assert loss == pytest.approx(0.5 * np.sum((net.forward(x, theta) - y) ** 2), rel=1e-13)
    for k, scale in (("c", 1.0), ("nu", 1e-3)):
        fd = _fd(lambda e: net.loss_and_grad(x, y, {**theta, k: theta[k] + e * scale})[0]) / scale
        assert abs(float(g[k]) - fd) <= 1e-6 * abs(fd), (k, float(g[k]), fd)
    d = rng.standard_normal(x.shape)
    fd = _fd(lambda e: net.loss_and_grad(x + e * d, y, theta)[0])
    assert abs(np.sum(g["x"] * d) - fd) <= 1e-6 * abs(fd)


def test_adjoint_dot_product():
    """One layer is a polynomial of degree 4 in ``z`` (and 3 in ``c``): the 5-point central difference
    is its exact directional derivative, so ⟨λ, J δ⟩ = ⟨Jᵀλ, δ⟩ holds to rounding."""
    rng = np.random.default_rng(3)
    grid = (10, 8)
    net = transport_network(grid, layers=1, omega=0.2)
    x, lam, d = (rng.standard_normal((2, *grid)) for _ in range(3))
    theta = _theta(1.1, 5e-3)
    dx, grads = net.vjp(x, theta, lam)
    jvp = _fd(lambda e: net.forward(x + e * d, theta), h=0.5)
    assert abs(np.sum(lam * jvp) - np.sum(dx * d)) <= 1e-12 * np.sum(np.abs(lam * jvp))
    jc = _fd(lambda e: net.forward(x, {**theta, "c": theta["c"] + e}), h=0.5)
    assert abs(np.sum(lam * jc) - float(grads["c"])) <= 1e-12 * np.sum(np.abs(lam * jc))
    # the transport's transpose alone (bilinear: J(z + δ) − J(z) − J(δ) is its exact linearisation)
    s = net.spectrum
    J = lambda z: s.irfft(s.transport(s.fields(s.rfft(z))))
    z, g = x[0], lam[0]
    lin = J(z + d[0]) - J(z) - J(d[0])
    jt = s.irfft(s.transport_t(s.fields(s.rfft(z)), s.rfft(g)))
    assert abs(np.sum(g * lin) - np.sum(jt * d[0])) <= 1e-12 * np.sum(np.abs(g * lin))
    # the spectral inner product is the grid's
    assert s.dot(s.rfft(z), s.rfft(g)) == pytest.approx(np.sum(z * g), rel=1e-13)


def test_float32_close_to_float64():
    rng = np.random.default_rng(4)
    x, y = _smooth(rng, 2, 16, 16), _smooth(rng, 2, 16, 16)
    out = {}
    for dt in ("float32", "float64"):
        net = transport_network((16, 16), layers=8, omega=1 / 8, dtype=dt)
        out[dt] = (net.forward(x, _theta(1.0, 2e-3)), net.loss_and_grad(x, y, _theta(1.0, 2e-3))[1])
        assert out[dt][0].dtype == np.dtype(dt) and out[dt][1]["c"].dtype == np.dtype(dt)
    np.testing.assert_allclose(out["float32"][0], out["float64"][0], atol=2e-5 * np.abs(out["float64"][0]).max())
    for k in ("c", "nu"):
        assert float(out["float32"][1][k]) == pytest.approx(float(out["float64"][1][k]), rel=1e-3)


def test_converges_to_the_vorticity_solver():
    """With ``c = 1``, ``ν`` the viscosity and ``ω = T/L``, ``L`` layers are the second-order scheme of the
    solver's semi-discretisation: the error to :func:`vorticity_on_grid` falls ~4x per doubling of ``L``."""
    rng = np.random.default_rng(5)
    x = 2 * _smooth(rng, 2, 16, 16)          # max|u| ≈ 0.53, as the task's samples (up to 0.72)
    T, nu = 0.5, 2e-3
    ref = vorticity_on_grid(x, nu, T)
    errors = []
    for L in (8, 16, 32):
        net = transport_network((16, 16), layers=L, omega=T / L)
        errors.append(np.linalg.norm(net.forward(x, _theta(1.0, nu)) - ref) / np.linalg.norm(ref))
    assert errors[-1] < 3e-4, errors          # measured 2.5e-3, 6.3e-4, 1.6e-4
    for a, b in zip(errors, errors[1:]):
        assert 3.0 < a / b < 5.0, errors
    # the transport matters: without it (c = 0) the map is far from the solver's
    still = transport_network((16, 16), layers=32, omega=T / 32).forward(x, _theta(0.0, nu))
    assert np.linalg.norm(still - ref) / np.linalg.norm(ref) > 100 * errors[-1]


def test_bad_input_gives_clear_errors():
    with pytest.raises(ValueError, match="2-D"):
        transport_network(16)
    with pytest.raises(ValueError, match="2-D"):
        transport_network((8, 8, 8))
    with pytest.raises(ValueError, match="periodic"):
        transport_network((8, 8), boundary="dirichlet")
    with pytest.raises(ValueError, match="periodic"):
        transport_network((8, 8), boundary=("periodic", "neumann"))
    with pytest.raises(ValueError, match="layers"):
        transport_network((8, 8), layers=0)
    with pytest.raises(ValueError, match="omega"):
        transport_network((8, 8), omega=-1.0)
    with pytest.raises(ValueError, match="dtype"):
        transport_network((8, 8), dtype="int32")
    with pytest.raises(ValueError, match="grid"):
        transport_network((8, 2))
    net = transport_network((8, 8), layers=2, omega=0.1)
    theta = _theta(1.0, 1e-3)
    with pytest.raises(ValueError, match="shape"):
        net.forward(np.zeros((2, 8, 7)), theta)
    with pytest.raises(ValueError, match="shape"):
        net.forward(np.zeros(8), theta)
    bad = np.zeros((1, 8, 8))
    bad[0, 1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        net.forward(bad, theta)
    with pytest.raises(ValueError, match="shape of x"):
        net.loss_and_grad(np.zeros((2, 8, 8)), np.zeros((3, 8, 8)), theta)
    with pytest.raises(ValueError, match="nu must be >= 0"):
        net.forward(np.zeros((1, 8, 8)), _theta(1.0, -1e-3))
    with pytest.raises(ValueError, match="keys"):
        net.forward(np.zeros((1, 8, 8)), {"c": 1.0})
    with pytest.raises(ValueError, match="NaN"):
        net.forward(np.zeros((1, 8, 8)), _theta(math.inf, 0.0))
    with pytest.raises(TypeError, match="real"):
        net.forward(np.zeros((1, 8, 8), complex), theta)
    # an unstable step (ω c |u| κ far beyond Heun's reach) is reported, not returned
    wild = transport_network((16, 16), layers=64, omega=1.0)
    with pytest.raises(NonFiniteError, match="unstable"):
        wild.forward(50 * _smooth(np.random.default_rng(0), 1, 16, 16), _theta(5.0, 0.0))


def test_pickle_and_init():
    net = transport_network((8, 10), spacing=0.5, layers=3, omega=0.2, dtype="float32")
    again = pickle.loads(pickle.dumps(net))
    assert isinstance(again, TransportNetwork) and again.grid == (8, 10) and again.spacing == (0.5, 0.5)
    theta = net.init_params(values={"nu": 1e-3})
    assert float(theta["c"]) == 1.0 and float(theta["nu"]) == pytest.approx(1e-3)
    x = np.random.default_rng(0).standard_normal((2, 8, 10))
    np.testing.assert_array_equal(net.forward(x, theta), again.forward(x, theta))
    with pytest.raises(ValueError, match="unknown"):
        net.init_params(values={"sigma": 1.0})
    # layer_losses (HostNetworkAPI) runs through the trajectory: its last entry is the loss
    y = np.zeros_like(x)
    assert net.layer_losses(x, y, theta)[-1] == pytest.approx(0.5 * np.sum(net.forward(x, theta).astype(float) ** 2),
                                                               rel=1e-5)


# ---------------------------------------------------------------------- the estimator's "transport" kind
def _problem(x, y, boundary="periodic"):
    from npdegen.estimator.problem import Problem
    from npdegen.estimator.starts import spectral_estimate
    h = tuple(1.0 / n for n in x.shape[1:])
    return Problem(x[:-2], y[:-2], x[-2:], y[-2:], h, boundary, estimate=spectral_estimate(x[:-2], y[:-2], h))


def test_transport_kind_recovers_the_parameters():
    """Data made by the 2-D vorticity solver (c = 1, ν = 3e-3, T = 1): the kind's scan and L-BFGS fit
    find c and ν; the recipe space lists the kind for 2-D grids only."""
    from npdegen.estimator import KINDS, RecipeSpace
    from npdegen.estimator.search import Search
    rng = np.random.default_rng(6)
    x = 2 * _smooth(rng, 10, 16, 16)
    y = vorticity_on_grid(x, 3e-3, 1.0)
    problem = _problem(x, y)
    space = RecipeSpace(kinds=("transport",), families=("homogeneous",)).validate(2, (16, 16))
    kind = KINDS["transport"].prepare(problem)
    assert [r.depth for r in space.initial({"transport": kind})] == [8, 16, 32]
    assert kind.transported and kind.weight("homogeneous") > 1       # the scan sees the self-transport
    assert kind._best[0] == 1.0
    # data that only diffuse are not transported by their own velocity: the kind keeps the stencils' share
    k2 = (2 * np.pi * np.fft.fftfreq(16, 1 / 16)[:, None]) ** 2 + (2 * np.pi * np.fft.fftfreq(16, 1 / 16)[None]) ** 2
    heat = np.fft.ifft2(np.exp(-3e-3 * k2) * np.fft.fft2(x)).real
    diffusing = KINDS["transport"].prepare(_problem(x, heat))
    assert not diffusing.transported and diffusing.weight("homogeneous") == 1.0 and diffusing._best[0] == 0.0
    fit, report = Search(problem, space, budget=5.0, n_starts=2, max_iter=60).run()
    assert fit.recipe.kind == "transport" and fit.certificate.certified
    assert float(fit.theta["c"]) == pytest.approx(1.0, abs=2e-3)
    assert float(fit.theta["nu"]) == pytest.approx(3e-3, rel=2e-2)
    assert fit.val_nrmse < 1e-3
    assert "self-transport" in str(kind.physics(fit.layer, fit.theta, problem.spacing, fit.recipe))


def test_transport_kind_refuses_what_it_cannot_fit():
    from npdegen.estimator import KINDS, NotApplicable
    rng = np.random.default_rng(7)
    x = _smooth(rng, 6, 16, 16)
    with pytest.raises(NotApplicable, match="mean"):
        KINDS["transport"].prepare(_problem(x, x + 1.0))
    with pytest.raises(NotApplicable, match="periodic"):
        KINDS["transport"].prepare(_problem(x, x, boundary="dirichlet"))
    with pytest.raises(NotApplicable, match="2-D"):
        KINDS["transport"].prepare(_problem(x[:, :, 0], x[:, :, 0]))
    assert KINDS["transport"].dims == (2,)


@pytest.mark.slow
def test_vorticity_task_is_reached():
    """The ``vorticity-2d`` task (96² solver restricted to 32²): the layer with the true parameters is within
    the grid's own error of the targets, and the estimator restricted to the kind finds c and ν."""
    import npdegen.tasks as tasks
    from npdegen.estimator import NeuralPDERegressor
    task = tasks.make("vorticity-2d", n=32, n_train=48, n_test=8, seed=3, cache=False)

    def err(pred, y):
        return float(np.mean(np.linalg.norm((pred - y).reshape(len(y), -1), axis=1)
                             / np.linalg.norm(y.reshape(len(y), -1), axis=1)))
    errors = [err(transport_network((32, 32), task.spacing, layers=L, omega=1 / L).forward(task.x_test,
                                                                                       _theta(1.0, 2e-3)),
                  task.y_test) for L in (8, 16, 32)]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 6e-3, errors
    est = NeuralPDERegressor(budget=20, kinds=("transport",), random_state=0).fit(task.x_train, task.y_train)
    assert est.recipe_["kind"] == "transport" and est.certified_
    assert float(est.theta_["c"]) == pytest.approx(1.0, abs=1e-2)
    assert float(est.theta_["nu"]) == pytest.approx(2e-3, rel=2e-2)
    assert err(est.predict(task.x_test), task.y_test) < 2 * errors[2] + 1e-3
