"""Soft-min stencil layers: the Cole–Hopf image of the heat step, viscous Hamilton–Jacobi, min-plus limit.

Layer: Z_i = −ε log Σ_j w_j exp(−z_{i+j}/ε) with the heat stencil w = (d, 1 − 2d, d) of φ_t = ε φ_qq
(d = ε Δt/Δ²). With z = −ε log φ it steps the viscous Hamilton–Jacobi equation z_t + z_q² = ε z_qq
exactly as the linear layer steps φ, and as ε → 0 (costs c_j = −ε log w_j fixed) it becomes the
min-plus layer Z_i = min_j (z_{i+j} + c_j). Here: the identity with the linear layer, second-order
convergence to the exact Hopf–Cole solution, the ε → 0 limit, attribution entropy, and a fit of
ε and the log-weights from data. ``NPDEGEN_EXAMPLE_STEPS`` caps the training steps.
"""
import os

import numpy as np
import sympy as sp

import npdegen
from npdegen.inspect.softmin import attribution, cole_hopf, inverse_cole_hopf
from npdegen.softmin import minplus_layer, softmin_layer

q, D, s = sp.Symbol("q"), sp.Symbol("D"), sp.Symbol("logeps")
z = sp.Function("z")(q)
eps, T = 0.05, 0.25
heat = npdegen.NeuralPDE(z + D * z.diff(q, 2), z, params={D: "homogeneous"})


def u0(x):
    return 0.5 * np.sin(2 * np.pi * x) + 0.2 * np.cos(6 * np.pi * x)


def exact(x, t):
    """Hopf–Cole: φ0 = exp(−u0/ε) evolved by φ_t = ε φ_qq exactly (Fourier), u = −ε log φ."""
    fine = 4096
    xf = np.arange(fine) / fine
    phi = np.fft.rfft(np.exp(-u0(xf) / eps))
    phi *= np.exp(-eps * (2 * np.pi * np.fft.rfftfreq(fine, 1 / fine)) ** 2 * t)
    return np.interp(x, xf, -eps * np.log(np.fft.irfft(phi, fine)), period=1.0)


# 1. the layer from the heat step, and what it computes
n = 64
h = 1 / n
dt = 0.4 * h * h / eps
steps = int(np.ceil(T / dt))
dt = T / steps
layer = softmin_layer(heat, eps=eps, spacing=h, values={"D": eps * dt})
print(layer.explain(spacing=h), "\n")

# 2. Cole-Hopf: the soft-min network equals -eps log of the linear network on exp(-u/eps)
x = np.arange(n) * h
soft = layer.compile(n=n, spacing=h, layers=steps).forward(u0(x), {})
linear = heat.compile(n=n, spacing=h, layers=steps).forward(cole_hopf(u0(x), eps), {"D": eps * dt})
print(f"Cole-Hopf identity over {steps} layers: max |Z - (-eps log L[phi])| = "
      f"{np.max(np.abs(soft - inverse_cole_hopf(linear, eps))):.2e}")

# 3. convergence to the exact viscous Hamilton-Jacobi solution z_t + z_q^2 = eps z_qq
errors = []
for m in (32, 64, 128):
    hm = 1 / m
    k = int(np.ceil(T / (0.4 * hm * hm / eps)))
    net = softmin_layer(heat, eps=eps, spacing=hm, values={"D": eps * T / k}).compile(n=m, spacing=hm, layers=k)
    xm = np.arange(m) * hm
    errors.append(np.max(np.abs(net.forward(u0(xm), {}) - exact(xm, T))))
rates = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
print("max error vs the exact Hopf-Cole solution, n = 32, 64, 128:", " ".join(f"{e:.2e}" for e in errors),
      " orders", " ".join(f"{r:.2f}" for r in rates))

# 4. eps -> 0 with the costs fixed: the min-plus (Hopf-Lax) layer, |Z_eps - Z_0| <= eps log 3
costs = {-1: 0.02, 0: 0.0, 1: 0.01}
hard = minplus_layer(costs).compile(n=n).forward(u0(x), {})
for e in (0.1, 0.01, 0.001):
    gap = np.max(np.abs(minplus_layer(costs).soften(e).compile(n=n).forward(u0(x), {}) - hard))
    print(f"eps = {e:g}: max |Z_eps - Z_min-plus| = {gap:.3e}  (bound eps log 3 = {e * np.log(3):.3e})")

# 5. attribution: which neighbour each site's value comes from, and how sure
att = attribution(layer, u0(x), {}, spacing=h)
print(f"attribution entropy: mean {att.entropy.mean():.3f} nats (max log 3 = {np.log(3):.3f}); "
      f"sites dominated by one neighbour (pi > 0.9): {np.mean(att.weights.max(axis=-1) > 0.9):.0%}")

# 6. learn eps and the log-weights from data of a known soft-min layer
learn = softmin_layer([-1, 0, 1], eps=sp.exp(s), params={s: "homogeneous"}, name="softmin_fit")
net = learn.compile(n=n, layers=4, boundary="periodic")
truth = {"logeps": np.log(0.2), "lw_m1": np.log(0.3), "lw_0": np.log(0.5), "lw_p1": np.log(0.2)}
rng = np.random.default_rng(0)
xs = sum(rng.standard_normal((16, 1)) / k * np.sin(2 * np.pi * k * x + rng.uniform(0, 6.3, (16, 1)))
         for k in range(1, 8))
ys = net.forward(xs, truth)
start = {"logeps": np.log(0.5), "lw_m1": 0.0, "lw_0": 0.0, "lw_p1": 0.0}
theta, history = npdegen.train(net, xs, ys, start, steps=int(os.environ.get("NPDEGEN_EXAMPLE_STEPS", 200)),
                               optimizer="lbfgs", progress=False)
print(f"fit: loss {history.loss[0]:.3g} -> {history.final_loss:.3g}; eps {np.exp(float(theta['logeps'])):.4f} "
      f"(true 0.2), weights " + " ".join(f"{np.exp(float(theta[k])):.4f}" for k in ("lw_m1", "lw_0", "lw_p1"))
      + " (true 0.3 0.5 0.2)")
