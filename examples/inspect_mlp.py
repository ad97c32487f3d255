"""Inspect the hidden weights of an ordinary MLP as a PDE kernel (issue 5, docs/theory.md §2, §5).

A two-layer tanh MLP, y = tanh(W2 tanh(W1 x + b1) + b2) on n = 32 periodic sites, is trained with
plain NumPy (Adam, no torch, no downloads) on input/output pairs of an unknown local process: two
neural ADR layers z <- tanh(A z), A = I + R - U d/dq + D d²/dq² (U = 0.4, D = 0.25, R = -0.05,
central differences, Δ = 1). Nothing tells the MLP that its 32×32 hidden matrix W1 should be local.

kernel_moments(W1) then reads the physics off the trained dense matrix: per-row moments
W_k = Σ_j (q_j - q_i)^k W1_ij (no 1/k!; the teacher has W0 = 1 + R, W1 = -U, W2 = 2D), how much
of W1's action a short moment PDE explains, how local it is, and the nearest 3-point stencil,
whose moments give (R, U, D) of an ADR layer that stability() then certifies. The trained W1
keeps a faint far field (what training and weight decay left of its random start, rms ~1e-3):
kernel_moments reads it as a noise floor, sums the moments within the kernel's support only and
gives each its noise uncertainty; summed over all 32 columns that floor would have doubled W2.
km.notes says why when the explained fraction falls as the order k grows (far-away weights
dominate the high moments). An untrained dense layer (random, variance 1/n), for contrast, is
explained poorly. Set NPDEGEN_EXAMPLE_STEPS to shorten training,
NPDEGEN_EXAMPLE_PLOT=path.png to save the figure of the fitted stencil.
"""
import os

import numpy as np
import sympy as sp

import npdegen
from npdegen.inspect import kernel_moments, layer_matrix, physics_report, plots, stability

STEPS = int(os.environ.get("NPDEGEN_EXAMPLE_STEPS", "1500"))
n, batch = 32, 256
rng = np.random.default_rng(0)

# The teacher: a neural ADR layer, its matrix assembled by npdegen (periodic, Δ = 1).
q = sp.Symbol("q")
z = sp.Function("z")(q)
U, D, R = sp.symbols("U D R")
adr = npdegen.NeuralPDE(z + R * z - U * z.diff(q) + D * z.diff(q, 2), z, activation="tanh",
                        params={U: "homogeneous", D: "homogeneous", R: "homogeneous"})
truth = {"U": 0.4, "D": 0.25, "R": -0.05}
A = layer_matrix(adr, truth, n=n)
x = rng.standard_normal((batch, n))
y = np.tanh(np.tanh(x @ A.T) @ A.T)

# The student: an ordinary MLP, trained with Adam and a little weight decay.
params = [np.eye(n) + 0.01 * rng.standard_normal((n, n)), np.zeros(n),
          np.eye(n) + 0.01 * rng.standard_normal((n, n)), np.zeros(n)]
m1 = [np.zeros_like(p) for p in params]
m2 = [np.zeros_like(p) for p in params]
lr, decay = 1e-2, 1e-3
for step in range(1, STEPS + 1):
    W1, b1, W2, b2 = params
    h = np.tanh(x @ W1.T + b1)
    out = np.tanh(h @ W2.T + b2)
    e = (out - y) * (1 - out**2) / batch
    dh = (e @ W2) * (1 - h**2)
    grads = [dh.T @ x + decay * W1, dh.sum(0), e.T @ h + decay * W2, e.sum(0)]
    for p, g, a, v in zip(params, grads, m1, m2):
        a *= 0.9
        a += 0.1 * g
        v *= 0.999
        v += 0.001 * g * g
        p -= lr * (a / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-8)
print(f"trained {STEPS} steps: loss {0.5 * np.mean(np.sum((out - y) ** 2, axis=1)):.3g} per sample")

# What does the hidden matrix do?
W1 = params[0]
km = kernel_moments(W1, max_order=4, period=n)
teacher = kernel_moments(A, max_order=4, period=n)
print("\nmean moments over rows   W0        W1        W2    (teacher: 1+R, -U, 2D)")
for label, res in (("trained hidden W1", km), ("teacher A", teacher)):
    print(f"  {label:<18}" + "".join(f"{v:10.4f}" for v in res.moments[:, :3].mean(axis=0)))
print("explained fraction by a k-moment PDE, k = 0..4:", np.round(km.explained, 4))
print("noise uncertainty of W0..W4 (median over rows):", np.round(np.median(km.uncertainty, axis=0), 4))
for note in km.notes:       # the noise floor, unresolved moments, and why the explained fraction falls (if it does)
    print("note:", note)
print("verdict:", km.verdict)
print("90% of the weight mass within", km.locality_radius(0.9), "sites")
fit = km.nearest_stencil(3)
print("nearest 3-point stencil:", {j: round(w, 4) for j, w in fit.stencil.items()},
      f"(relative residual {fit.residual:.3g}; teacher {({j: round(float(A[1, 1 + j]), 4) for j in (-1, 0, 1)})})")

# The fitted stencil's moments name an ADR layer; report its physics and certify it.
w = fit.stencil
fitted = {"R": w[-1] + w[0] + w[1] - 1, "U": w[-1] - w[1], "D": (w[-1] + w[1]) / 2}
print("\nfitted ADR parameters:", {k: round(v, 4) for k, v in fitted.items()}, " truth:", truth)
report = physics_report(adr, fitted, spacing=1.0, omega=1.0, layers=2, max_order=2)
for row in report:
    print(f"  {row.process:<10} c_{row.order} = {float(row.values[0]):+.4f}   {row.meaning}")
print(stability(adr, fitted, omega=1.0))

rand = kernel_moments(rng.standard_normal((n, n)) / np.sqrt(n), period=n)
print("\nuntrained dense layer:", rand.verdict)
for note in rand.notes:
    print("note:", note)

if os.environ.get("NPDEGEN_EXAMPLE_PLOT"):
    fig = plots.plot_stencil(km.nearest_stencil(5, homogeneous=False), title="MLP hidden layer W1, nearest stencil",
                             reference={j: float(A[2, 2 + j]) for j in (-2, -1, 0, 1, 2)},
                             reference_label="teacher ADR stencil")
    print("wrote", plots.save(fig, os.environ["NPDEGEN_EXAMPLE_PLOT"]))
