"""Conservation laws as layers: viscous Burgers z_t + (z²/2)_q = ν z_qq learned by a flux-form layer,
and a Fokker–Planck drift–diffusion learned as a Markov chain. Flux layer, per step:
Z = z − (F(z, z₊) − F(z₋, z))/Δ + D (z₊ − 2z + z₋)/Δ² with Godunov's flux F of g(z) = c z²/2.

1. Burgers ``u_t + (u²/2)_x = ν u_xx`` on (0, 1), periodic, ν = 0.01: the target pairs come from a
   pseudo-spectral solver (Fourier, 2/3 dealiasing, integrating-factor RK4 — not from npdegen).
   The layer ``z − (F(z, z₊) − F(z₋, z))/Δ + D (z₊ − 2z + z₋)/Δ²`` with the Godunov flux of
   ``g = c z²/2`` (c > 0: convex, so Godunov's flux is exact) learns c = dt and D = ν·dt.
   Mass is conserved by construction; a linear ADR layer cannot transport with a speed that depends
   on the state.
2. A Markov chain with drift b(x) = 0.5 sin(2πx) and diffusion a = 0.02: data made by Kushner's
   upwind chain; ``npdegen.markov_chain`` (positive rows summing to one, any logits) learns the
   per-site transition rows; the chain report reads back the drift.

``NPDEGEN_EXAMPLE_STEPS`` caps the training steps (the test suite runs it small).
"""
import os

import numpy as np
import sympy as sp

import npdegen
from npdegen.inspect.markov import chain_report

steps = int(os.environ.get("NPDEGEN_EXAMPLE_STEPS", 200))
q = sp.Symbol("q")
z = sp.Function("z")(q)
rng = np.random.default_rng(0)


def spectral_burgers(u0, nu, T, steps=400):
    """Reference solver of u_t + (u²/2)_x = nu u_xx (rows of u0 on a periodic cell-centre grid)."""
    n = u0.shape[-1]
    freq = np.fft.rfftfreq(n, 1 / n)
    wave, keep, dt = 2j * np.pi * freq, freq < n / 3, T / steps
    E = np.exp(-nu * (2 * np.pi * freq) ** 2 * dt / 2)
    E2 = E * E

    def N(vh):
        u = np.fft.irfft(vh * keep, n)
        return -dt * wave * np.fft.rfft(u * u / 2) * keep
    vh = np.fft.rfft(u0)
    for _ in range(steps):
        a = N(vh); b = N(E * (vh + a / 2)); c = N(E * vh + b / 2); d = N(E2 * vh + E * c)
        vh = E2 * vh + (E2 * a + 2 * E * (b + c) + d) / 6
    return np.fft.irfft(vh, n)


# ------------------------------------------------------------------ 1. Burgers by a flux layer
n, T, nu_true = 128, 0.1, 0.01
x_grid = (np.arange(n) + 0.5) / n
fine = 4 * n
xf = (np.arange(fine) + 0.5) / fine
modes = [rng.standard_normal((24, 1)) / m * np.sin(2 * np.pi * m * xf + rng.uniform(0, 2 * np.pi, (24, 1)))
         for m in range(1, 4)]
u0_fine = 0.5 * sum(modes)
u0 = u0_fine.reshape(24, n, 4).mean(-1)                                 # cell averages
u1 = spectral_burgers(u0_fine, nu_true, T, steps=800).reshape(24, n, 4).mean(-1)

c, D = sp.Symbol("c", positive=True), sp.Symbol("D")
layer = npdegen.conservation_law(c * z ** 2 / 2, z, diffusion=D, params={c: "homogeneous", D: "homogeneous"},
                                 numerical_flux="godunov", name="burgers_flux")
L = 80
h, dt = 1 / n, T / L
net = layer.compile(n=n, spacing=h, layers=L)
start = {"c": np.array(0.5 * dt), "D": np.array(0.0)}
theta, history = npdegen.train(net, u0, u1, start, steps=steps, optimizer="lbfgs", bounds={"D": (0, None)},
                               progress=False)
print("Burgers u_t + (u^2/2)_x = nu u_xx by a Godunov flux-form layer")
print(f"  learned flux coefficient c/dt = {float(theta['c']) / dt:.4f}   (truth 1)")
print(f"  learned viscosity D/dt = {float(theta['D']) / dt:.5f}         (truth {nu_true}; "
      f"the Godunov flux adds ~max|u|·h/2 = {np.abs(u0).max() * h / 2:.4f} of its own)")
pred = net.forward(u0, theta)
print(f"  relative L2 error {np.linalg.norm(pred - u1) / np.linalg.norm(u1):.3e}; mass drift "
      f"{np.abs(pred.sum(1) - u0.sum(1)).max():.2e}")
print(layer.certificate(theta, h, state_range=(u0.min(), u0.max())))

# ------------------------------------------------------------------ 2. Fokker–Planck as a Markov chain
m, h2 = 32, 1 / 32
sites = (np.arange(m) + 0.5) / m
drift, diffusion = 0.5 * np.sin(2 * np.pi * sites), np.full(m, 0.02)
dt2 = 0.5 * h2 * h2 / (0.02 + h2 * 0.5)
truth = npdegen.kushner_logits(drift, diffusion, dt=dt2, spacing=h2)
chain = npdegen.markov_chain(family="heterogeneous")
cnet = chain.compile(n=m, spacing=h2, layers=8)
xs = rng.standard_normal((64, m))
ys = cnet.forward(xs, truth)
learned, _ = npdegen.train(cnet, xs, ys, {k: np.zeros(m) for k in truth}, steps=steps, optimizer="lbfgs",
                           progress=False)
report = chain_report(chain, learned, m, spacing=h2)
err = np.abs(report.drift[0] / dt2 - drift).max()
print("Fokker-Planck drift-diffusion learned as a Markov chain")
print(f"  max |learned drift - b(x)| = {err:.3e}   (|b| <= 0.5); rows positive: {report.min_weight > 0}, "
      f"row sums - 1 <= {report.row_sum_error:.1e}")
